"""The report's vocabulary: column names, the unit of aggregation, labels of configurations and models."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd

from bench.core.text import significant  # noqa: F401 - the report's number format, with its labels

CONFIG = ("arch", "width", "sample_rate", "n_mels", "hop_multiplier", "log")
KEY = ("dataset", *CONFIG)
"""One configuration: the unit of aggregation (the dataset is part of it so that nothing is mixed)."""
MODEL = ("dataset", "arch", "width")
CONDITION = ("sample_rate", "log")
"""Within a model, the reference is looked up per condition (same sample rate and log type)."""
REFERENCE = {"n_mels": 96, "hop_multiplier": 1}
GLOBAL_REFERENCE = {**REFERENCE, "log": "log"}
"""A model's one global reference: the paper's reference input (96 mels, hop x1, log compression) at the
highest sample rate the model was run at; every configuration of the model, whatever its sample rate and
log type, is compared with it in `per_tag_delta_global`."""
METRICS = ("roc_auc", "pr_auc")
METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}
LOG_ORDER = ("log", "dB")
COST_FIELDS = ("gmac", "gmac_analytic", "params", "storage_bytes", "train_seconds", "epochs", "best_epoch",
               "clips_per_second", "latency_ms", "network_latency_ms", "throughput_clips_per_second")
"""Per run (result.json `cost`); latency and throughput are measured after training on the run's device."""
SETUP = ("clip_seconds", "n_tags", "split", "data")
"""The run's data setup (canonical dataset config): clip length in s, tag vocabulary size, split:
"default" (the dataset's usual split: MTAT's folders 0-b / c / d-f, MSD's Lee et al. lists, MTG-Jamendo's
split-0), else the spec's `split` or `split_file`, with ", untagged clips dropped" for `drop_untagged`;
and data: what else of the dataset's config decides the clips and tags, "default" where nothing does
(MTG-Jamendo's subset, "subset genre", with ", most frequent tags" where n_tags keeps fewer than the
subset's; "most frequent tags" for fewer than the MSD's 50; the synthetic dataset's clips and generator
seed, "400 clips, seed 0")."""
ARCH_OPTIONS = "arch_options"
"""The architecture's options beside its width, as the spec's [arch.<name>] table set them ("segment_seconds=3"
for MusiCNN; "" where there are none): one spec trains each architecture with one set, so they are no axis,
but a published number was trained with the paper's."""
SUMMARY_COLUMNS = ("run_id", *CONFIG, "seed", *METRICS, *COST_FIELDS, "clip_seconds", "dataset", "n_tags", "split",
                   "data", ARCH_OPTIONS, "tags_scored", "tags_excluded")
NOT_OK_COLUMNS = ("run_id", "status", "reason", *CONFIG, "seed", "dataset")
AGGREGATE_COLUMNS = (*KEY, "roc_auc_mean", "roc_auc_std", "pr_auc_mean", "pr_auc_std", "n_seeds", "seeds", "gmac",
                     "gmac_analytic", "params", "storage_bytes", "train_seconds_mean", "epochs_mean",
                     "clips_per_second_mean", "latency_ms", "throughput_clips_per_second", "seeds_missing",
                     "pareto_gmac", "pareto_storage", "pareto_latency", *SETUP, "setup_mixed", ARCH_OPTIONS)
PER_TAG_COLUMNS = ("run_id", *KEY, "seed", "tag", "roc_auc", "pr_auc", "positives", *SETUP)
SIGNIFICANCE = 0.05
"""p-values below this are starred in the comparison tables (the paper reports P > 0.08 as 'no difference')."""


def paper_order(frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Table II's order: by model and condition (log before dB), then mel bands descending, hop ascending
    (Table V nests them the other way, hop outside); then `extra`. Tags keep the order of their first
    appearance in their dataset: the networks' output order, which is the dataset's published one (MTAT's
    top 50 starts guitar, classical, slow; MSD's rock, pop, alternative), not the alphabet, nor another
    dataset's order of the tags they share."""
    order = [c for c in ("dataset", "arch", "width", "sample_rate", "log", "n_mels", "hop_multiplier", *extra)
             if c in frame.columns]
    ascending = [c != "n_mels" for c in order]
    if "tag" in order:
        datasets = frame["dataset"] if "dataset" in frame.columns else [""] * len(frame)
        by = ["run_id"] if "run_id" in frame.columns else [c for c in (*KEY, "seed") if c in frame.columns]
        groups = list(frame[by].astype(str).itertuples(index=False, name=None)) if by else [()] * len(frame)
        frame = frame.assign(**{TAG_RANK: _tag_ranks(datasets, frame["tag"], groups)})
        order[order.index("tag")] = TAG_RANK

    def key(column: pd.Series) -> pd.Series:
        if column.name != "log":
            return column
        return column.map(lambda v: (LOG_ORDER.index(v), "") if v in LOG_ORDER else (len(LOG_ORDER), str(v)))

    ordered = frame.sort_values(order, ascending=ascending, kind="stable", key=key).reset_index(drop=True)
    return ordered.drop(columns=TAG_RANK) if TAG_RANK in ordered.columns else ordered


TAG_RANK = "__tag_rank"
"""A sort column of `paper_order`: a tag's place in its dataset's order."""


def _tag_ranks(datasets, tags, groups) -> list[int]:
    """Each row's tag's place in its dataset's order, merged from the order in which each group of rows
    (a run's, a configuration's: `groups`, one key per row) names its tags: a tag one group names and
    the groups before it lack (no positive test clip in their split) goes right after the tag before it
    in that group, or right before the one after it, so that it keeps its place in the network's
    output order instead of going to the end."""
    keys = [dataset if isinstance(dataset, str) else "" for dataset in datasets]
    sequences: dict[tuple, list] = {}
    for key, group, tag in zip(keys, groups, tags, strict=True):
        sequences.setdefault((key, group), []).append(tag)
    orders: dict[str, list] = {}
    for (key, _), sequence in sequences.items():
        order = orders.setdefault(key, [])
        for i, tag in enumerate(sequence):
            if tag in order:
                continue
            before = next((t for t in reversed(sequence[:i]) if t in order), None)
            after = next((t for t in sequence[i + 1:] if t in order), None)
            order.insert(order.index(before) + 1 if before is not None
                         else order.index(after) if after is not None else len(order), tag)
    ranks = {key: {tag: i for i, tag in enumerate(order)} for key, order in orders.items()}
    return [ranks[key][tag] for key, tag in zip(keys, tags, strict=True)]


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as its str(), a missing one as "nan": pandas 3's `astype(str)` keeps missing values
    missing, which a join of the texts cannot take."""
    return frame.apply(lambda column: column.map(str)) if len(frame.columns) else frame.astype(object)


def width_text(width: float) -> str:
    """A model width as the shortest decimal that reads back as it (0.0625, 1, 0.3333333333333333): two
    widths never print alike (with `:g`, 1/3 and 0.333333 had, and one model's figures replaced the other's)."""
    return str(np.format_float_positional(float(width), trim="-"))


def width_label(width: float) -> str:
    """A model width as a fraction where it is one: 0.0625 -> "1/16", 0.25 -> "1/4", 1.0 -> "1"; else as
    `width_text`."""
    fraction = Fraction(float(width)).limit_denominator(1024)
    return str(fraction) if float(fraction) == float(width) else width_text(width)


def config_label(n_mels: int, hop_multiplier: int) -> str:
    """The x-axis label of a configuration within one condition, e.g. "96/x1"."""
    return f"{int(n_mels)}/x{int(hop_multiplier)}"


def rate_label(sample_rate: float) -> str:
    return f"{sample_rate / 1000:g}k"


def input_label(sample_rate: float, n_mels: int, hop_multiplier: int, log: str) -> str:
    """A configuration across conditions, e.g. "12k 96/x1 log"."""
    return f"{rate_label(sample_rate)} {config_label(n_mels, hop_multiplier)} {log}"


def models(aggregated: pd.DataFrame) -> list[tuple[str, str, dict]]:
    """(file slug, title, key) per model present, e.g. ("vgg", "vgg, width 1, mtat", {dataset, arch, width}).

    The slug is the arch name, with the width when an arch was run at several widths and the dataset
    when the results hold several datasets.
    """
    keys = aggregated[list(MODEL)].drop_duplicates().to_dict("records")
    several_datasets = len({k["dataset"] for k in keys}) > 1
    out = []
    for key in keys:
        several_widths = sum(1 for k in keys if (k["dataset"], k["arch"]) == (key["dataset"], key["arch"])) > 1
        slug = (f"{key['dataset']}-" if several_datasets else "") + key["arch"]
        slug += f"-w{width_text(key['width'])}" if several_widths else ""
        out.append((slug, f"{key['arch']}, width {width_text(key['width'])}, {key['dataset']}", key))
    return out


def select(frame: pd.DataFrame, key: dict) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for name, value in key.items():
        mask &= (frame[name] == value).to_numpy()
    return frame[mask]
