"""The paper's published numbers, and when ours may be put beside them (same width and setup)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.core.framing import PAPER_CLIP_SECONDS
from bench.report.columns import ARCH_OPTIONS, KEY, METRICS, MODEL, input_label, paper_order, width_label, width_text

_VGG_MTAT_SOURCE = "paper authors' results page (VGG-CNN, MTAT)"
_MUSICNN_MTAT_SOURCE = "paper Table IV (MusiCNN, MTAT)"
_MUSICNN_MTAT_PAGE = "paper authors' results page (MusiCNN, MTAT)"
_MSD_SOURCE = "paper Table V (MSD)"
_MUSICNN_MSD_PAGE = "paper authors' results page (MusiCNN, MSD)"
PUBLISHED_COLUMNS = ("source", "dataset", "arch", "sample_rate", "n_mels", "hop_multiplier", "log", "roc_auc",
                     "pr_auc")
PUBLISHED = (
    # VGG-CNN on MTAT, from the authors' results page (https://andrebola.github.io/EUSIPCO2020/results).
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 128, 1, "log", 88.67, 35.47),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 128, 1, "dB", 88.76, 35.83),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 128, 1, "log", 88.81, 35.48),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 128, 1, "dB", 89.07, 35.73),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 1, "log", 88.83, 35.18),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 1, "dB", 88.65, 35.33),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 1, "log", 88.91, 35.65),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 1, "dB", 89.12, 35.97),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 48, 1, "log", 89.10, 35.62),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 48, 1, "dB", 89.02, 35.87),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 48, 1, "log", 89.17, 36.17),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 48, 1, "dB", 89.32, 36.41),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 128, 2, "log", 88.66, 35.56),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 128, 2, "dB", 88.53, 35.44),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 128, 2, "log", 88.51, 35.41),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 128, 2, "dB", 88.81, 35.79),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 2, "log", 88.37, 35.23),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 2, "dB", 88.58, 35.13),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 2, "log", 88.78, 35.70),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 2, "dB", 88.86, 35.97),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 48, 2, "log", 88.64, 35.35),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 48, 2, "dB", 88.68, 35.71),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 48, 2, "log", 88.98, 35.78),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 48, 2, "dB", 88.97, 35.89),
    # Table IV: MusiCNN on MTAT, dB, hop x1.
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 12000, 128, 1, "dB", 90.40, 38.54),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 12000, 96, 1, "dB", 90.50, 37.70),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 12000, 48, 1, "dB", 90.33, 37.80),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 16000, 128, 1, "dB", 90.83, 38.92),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 16000, 96, 1, "dB", 90.60, 38.09),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 16000, 48, 1, "dB", 90.50, 37.70),
    # MusiCNN on MTAT, log, hop x1: the authors' results page (Table IV shows dB only).
    (_MUSICNN_MTAT_PAGE, "mtat", "musicnn", 12000, 128, 1, "log", 90.39, 37.67),
    (_MUSICNN_MTAT_PAGE, "mtat", "musicnn", 12000, 96, 1, "log", 90.59, 38.25),
    (_MUSICNN_MTAT_PAGE, "mtat", "musicnn", 12000, 48, 1, "log", 90.44, 38.03),
    (_MUSICNN_MTAT_PAGE, "mtat", "musicnn", 16000, 128, 1, "log", 90.66, 38.22),
    (_MUSICNN_MTAT_PAGE, "mtat", "musicnn", 16000, 96, 1, "log", 90.58, 37.74),
    (_MUSICNN_MTAT_PAGE, "mtat", "musicnn", 16000, 48, 1, "log", 90.44, 37.76),
    # Table V: both models on MSD, dB.
    (_MSD_SOURCE, "msd", "vgg", 12000, 128, 1, "dB", 86.48, 27.56),
    (_MSD_SOURCE, "msd", "vgg", 12000, 96, 1, "dB", 86.67, 27.70),
    (_MSD_SOURCE, "msd", "vgg", 12000, 48, 1, "dB", 86.53, 27.27),
    (_MSD_SOURCE, "msd", "vgg", 12000, 128, 2, "dB", 86.28, 27.24),
    (_MSD_SOURCE, "msd", "vgg", 12000, 96, 2, "dB", 86.18, 26.93),
    (_MSD_SOURCE, "msd", "vgg", 12000, 48, 2, "dB", 85.86, 26.42),
    (_MSD_SOURCE, "msd", "vgg", 16000, 128, 1, "dB", 86.84, 28.10),
    (_MSD_SOURCE, "msd", "vgg", 16000, 96, 1, "dB", 86.71, 28.06),
    (_MSD_SOURCE, "msd", "vgg", 16000, 48, 1, "dB", 86.73, 27.78),
    (_MSD_SOURCE, "msd", "vgg", 16000, 128, 2, "dB", 86.34, 27.06),
    (_MSD_SOURCE, "msd", "vgg", 16000, 96, 2, "dB", 86.63, 27.70),
    (_MSD_SOURCE, "msd", "vgg", 16000, 48, 2, "dB", 86.41, 26.83),
    (_MSD_SOURCE, "msd", "musicnn", 12000, 128, 1, "dB", 87.10, 26.97),
    (_MSD_SOURCE, "msd", "musicnn", 12000, 96, 1, "dB", 87.16, 27.10),
    (_MSD_SOURCE, "msd", "musicnn", 12000, 48, 1, "dB", 86.99, 26.66),
    (_MSD_SOURCE, "msd", "musicnn", 16000, 128, 1, "dB", 87.21, 26.91),
    (_MSD_SOURCE, "msd", "musicnn", 16000, 96, 1, "dB", 87.21, 26.96),
    (_MSD_SOURCE, "msd", "musicnn", 16000, 48, 1, "dB", 87.10, 26.64),
    # MusiCNN on MSD, log, hop x1: the authors' results page (16 kHz, 48 mels not published).
    (_MUSICNN_MSD_PAGE, "msd", "musicnn", 12000, 128, 1, "log", 87.21, 26.98),
    (_MUSICNN_MSD_PAGE, "msd", "musicnn", 12000, 96, 1, "log", 87.13, 27.05),
    (_MUSICNN_MSD_PAGE, "msd", "musicnn", 12000, 48, 1, "log", 87.02, 26.77),
    (_MUSICNN_MSD_PAGE, "msd", "musicnn", 16000, 128, 1, "log", 87.19, 27.09),
    (_MUSICNN_MSD_PAGE, "msd", "musicnn", 16000, 96, 1, "log", 87.08, 26.74),
)
"""Published ROC-AUC and PR-AUC in %, one row per configuration (width 1): every number of the paper's
Tables IV and V and of the authors' results page, which holds the paper's numbers and those of the other
configurations they trained (the tables' values agree with the page's)."""
PUBLISHED_SETUP = {"width": 1.0, "clip_seconds": PAPER_CLIP_SECONDS, "n_tags": 50, "split": "default"}
"""What every published number above was trained on: full-size models (width 1), the dataset's 29.1 s
clips, its top-50 tags and its usual split (MTAT: folders 0-b / c / d-f; MSD: Lee et al.)."""
PUBLISHED_OPTIONS = {"vgg": "", "musicnn": "segment_seconds=3"}
"""The architectures' other options the published numbers were trained with (the `arch_options` column):
MusiCNN on 3 s segments."""


def published_numbers() -> pd.DataFrame:
    return pd.DataFrame.from_records(PUBLISHED, columns=PUBLISHED_COLUMNS).astype({"roc_auc": float, "pr_auc": float})


def _setup_value(row, name: str):
    value = row.get(name) if isinstance(row, dict) else getattr(row, name, None)
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value


def published_setup_problems(row) -> list[str]:
    """Why a configuration (an aggregate row: width and SETUP columns) is not comparable with the published
    numbers, e.g. ["width 1/16 (the paper trains width 1)", "6 s clips (the paper's are 29.1 s)"]; empty
    when it is."""
    paper = PUBLISHED_SETUP
    problems = []
    width = _setup_value(row, "width")
    if width is None or not math.isclose(float(width), paper["width"]):
        problems.append(f"width {'not recorded' if width is None else width_label(float(width))} "
                        f"(the paper trains width {paper['width']:g})")
    seconds = _setup_value(row, "clip_seconds")
    if seconds is None:
        problems.append(f"clip length not recorded or not the same for every seed (the paper's clips are "
                        f"{paper['clip_seconds']:g} s)")
    elif not math.isclose(float(seconds), paper["clip_seconds"], abs_tol=1e-6):
        problems.append(f"{float(seconds):g} s clips (the paper's are {paper['clip_seconds']:g} s)")
    n_tags = _setup_value(row, "n_tags")
    if n_tags is None:
        problems.append(f"tag count not recorded or not the same for every seed (the paper uses the top "
                        f"{paper['n_tags']} tags)")
    elif int(n_tags) != paper["n_tags"]:
        problems.append(f"top {int(n_tags)} tags (the paper uses the top {paper['n_tags']})")
    arch = _setup_value(row, "arch")
    options = _setup_value(row, ARCH_OPTIONS)
    if arch in PUBLISHED_OPTIONS and options != PUBLISHED_OPTIONS[arch]:
        said = ("options not recorded or not the same for every seed" if options in (None, "mixed")
                else options or "no options beside the width recorded")
        problems.append(f"{said} (the paper's: {PUBLISHED_OPTIONS[arch] or 'none'})")
    split = _setup_value(row, "split")
    if split != paper["split"]:
        problems.append(f"split {'not recorded' if split is None else repr(split)} (the paper uses the dataset's "
                        "usual split: MTAT folders 0-b / c / d-f, MSD Lee et al.)")
    return problems


def _published_matches(aggregated: pd.DataFrame) -> pd.DataFrame:
    """Our configurations that have a published number (whatever their width and setup), beside it."""
    ours = aggregated.assign(**{f"{m}_ours": 100 * aggregated[f"{m}_mean"] for m in METRICS},
                             **{f"{m}_ours_std": 100 * aggregated[f"{m}_std"] for m in METRICS})
    on = ["dataset", "arch", "sample_rate", "n_mels", "hop_multiplier", "log"]
    published = published_numbers().rename(columns={m: f"{m}_published" for m in METRICS})
    frame = ours.merge(published, on=on, how="inner")
    for metric in METRICS:
        frame[f"{metric}_diff_pp"] = frame[f"{metric}_ours"] - frame[f"{metric}_published"]
    frame["problems"] = [published_setup_problems(row) for row in frame.to_dict("records")]
    return frame


def published_comparison(aggregated: pd.DataFrame) -> pd.DataFrame:
    """Our configurations that have a published number and were trained as the paper's were (width 1,
    PUBLISHED_SETUP), in % beside it (`*_diff_pp`: ours - published). `published_skipped` says why the
    other configurations with a published number are left out."""
    frame = _published_matches(aggregated)
    frame = frame[frame["problems"].map(len).eq(0).to_numpy(dtype=bool)]
    columns = ["source", *KEY, "n_seeds"] + [f"{m}_{s}" for m in METRICS
                                             for s in ("ours", "ours_std", "published", "diff_pp")]
    return paper_order(frame[columns])


def published_skipped(aggregated: pd.DataFrame) -> list[str]:
    """Why configurations with published numbers are left out: one line per model when none of its
    configurations is compared, e.g. "published comparison skipped for vgg, width 0.0625, mtat: width 1/16
    (the paper trains width 1), 6 s clips (the paper's are 29.1 s)"; else one line per reason naming the
    configurations it leaves out ("... for vgg, width 1, mtat at 12k 48/x1 log: clip length not recorded
    ..."), so that the line does not read as if the model's compared rows were skipped too."""
    frame = _published_matches(aggregated)
    lines = []
    for (dataset, arch, width), rows in frame.groupby(list(MODEL), sort=False):
        model = f"published comparison skipped for {arch}, width {width_text(width)}, {dataset}"
        left_out = rows[rows["problems"].map(len).gt(0).to_numpy(dtype=bool)]
        if left_out.empty:
            continue
        if len(left_out) == len(rows):
            problems = list(dict.fromkeys(p for row_problems in rows["problems"] for p in row_problems))
            lines.append(f"{model}: " + ", ".join(problems))
            continue
        by_reason: dict[str, list[str]] = {}
        for row in paper_order(left_out).itertuples(index=False):
            label = input_label(row.sample_rate, row.n_mels, row.hop_multiplier, row.log)
            by_reason.setdefault(", ".join(row.problems), []).append(label)
        lines += [f"{model} at {', '.join(labels)}: {reason}" for reason, labels in by_reason.items()]
    return lines
