"""`bench report RESULTS_DIR`: result.json files -> tidy tables, statistics, Markdown/LaTeX tables, figures.

The report is a pure function of `RESULTS_DIR/runs/*/result.json` (DESIGN.md section 1): it never
imports training code. Every analysis step is a function from DataFrames to DataFrames; the figures
(`bench.figures`) read only what these functions return.

Terms used throughout:

- *configuration*: (arch, width, sample_rate, n_mels, hop_multiplier, log) on one dataset. Seeds are
  its repetitions; means and standard deviations (ddof=1) are taken over seeds.
- *model*: (dataset, arch, width) -- one paper-shaped table, one Fig. 1 and one per-tag heatmap each.
- *reference configuration*: 96 mel bands, hop x1 (the paper's baseline input) with the same dataset,
  arch, width, sample rate and log type. Relative changes and t-tests are taken against it.
- accuracies (`roc_auc`, `pr_auc`) are macro averages over tags, stored as fractions (0-1) in the CSV
  files as scikit-learn returns them; tables and figures show them in %.
- `gmac`: 1e9 multiply-adds for one forward pass over one clip (fvcore's count); `storage_bytes`: one
  float32 mel spectrogram of one clip.
- *setup*: what a run was trained on besides its configuration -- `clip_seconds`, `n_tags` and `split`
  from the run's canonical dataset config. Published numbers are put beside ours only where the
  model width and the setup are the paper's (`published_setup_problems`).
- failed runs (status != "ok"), unreadable result files, result files that do not describe their run
  (`bench.runner.result_problem`) and run folders without result.json are listed in
  `runs_not_ok.csv` and in the summary and never enter an average.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.errors import UserError
from bench.framing import PAPER_CLIP_SECONDS
from bench.runner import result_problem
from bench.store import atomic_write_text

RESULT = "result.json"

CONFIG = ("arch", "width", "sample_rate", "n_mels", "hop_multiplier", "log")
KEY = ("dataset", *CONFIG)
"""One configuration: the unit of aggregation (the dataset is part of it so that nothing is mixed)."""
MODEL = ("dataset", "arch", "width")
CONDITION = ("sample_rate", "log")
"""Within a model, the reference is looked up per condition (same sample rate and log type)."""
REFERENCE = {"n_mels": 96, "hop_multiplier": 1}
METRICS = ("roc_auc", "pr_auc")
METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}
LOG_ORDER = ("log", "dB")

COST_FIELDS = ("gmac", "gmac_analytic", "params", "storage_bytes", "train_seconds", "epochs", "best_epoch",
               "clips_per_second")
SETUP = ("clip_seconds", "n_tags", "split")
"""The run's data setup (canonical dataset config): clip length in s, tag vocabulary size, and split:
"default" (the dataset's usual split: MTAT's folders 0-b / c / d-f, MSD's Lee et al. lists, MTG-Jamendo's
split-0), else the spec's `split` or `split_file`, with ", untagged clips dropped" for `drop_untagged`."""
SUMMARY_COLUMNS = ("run_id", *CONFIG, "seed", *METRICS, *COST_FIELDS, "clip_seconds", "dataset", "n_tags", "split")
NOT_OK_COLUMNS = ("run_id", "status", "reason", *CONFIG, "seed", "dataset")
AGGREGATE_COLUMNS = (*KEY, "roc_auc_mean", "roc_auc_std", "pr_auc_mean", "pr_auc_std", "n_seeds", "seeds", "gmac",
                     "gmac_analytic", "params", "storage_bytes", "train_seconds_mean", "epochs_mean",
                     "clips_per_second_mean", "seeds_missing", "pareto_gmac", "pareto_storage", *SETUP)
PER_TAG_COLUMNS = ("run_id", *KEY, "seed", "tag", "roc_auc", "pr_auc", "positives")
SIGNIFICANCE = 0.05
"""p-values below this are starred in the comparison tables (the paper reports P > 0.08 as 'no difference')."""

# --- published numbers (in %) --------------------------------------------------------------------------

_VGG_MTAT_SOURCE = "paper authors' results page (VGG-CNN, MTAT)"
_MUSICNN_MTAT_SOURCE = "paper Table IV (MusiCNN, MTAT)"
_MSD_SOURCE = "paper Table V (MSD)"
PUBLISHED_COLUMNS = ("source", "dataset", "arch", "sample_rate", "n_mels", "hop_multiplier", "log", "roc_auc",
                     "pr_auc")
PUBLISHED = (
    # DESIGN.md section 9: VGG-CNN on MTAT, ROC-AUC only (https://andrebola.github.io/EUSIPCO2020/results).
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 128, 1, "log", 88.67, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 128, 1, "dB", 88.76, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 128, 1, "log", 88.81, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 128, 1, "dB", 89.07, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 1, "log", 88.83, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 1, "dB", 88.65, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 1, "log", 88.91, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 1, "dB", 89.12, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 48, 1, "log", 89.10, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 48, 1, "dB", 89.02, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 48, 1, "log", 89.17, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 48, 1, "dB", 89.32, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 2, "log", 88.37, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 12000, 96, 2, "dB", 88.58, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 2, "log", 88.78, None),
    (_VGG_MTAT_SOURCE, "mtat", "vgg", 16000, 96, 2, "dB", 88.86, None),
    # Table IV: MusiCNN on MTAT, dB, hop x1.
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 12000, 128, 1, "dB", 90.40, 38.54),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 12000, 96, 1, "dB", 90.50, 37.70),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 12000, 48, 1, "dB", 90.33, 37.80),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 16000, 128, 1, "dB", 90.83, 38.92),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 16000, 96, 1, "dB", 90.60, 38.09),
    (_MUSICNN_MTAT_SOURCE, "mtat", "musicnn", 16000, 48, 1, "dB", 90.50, 37.70),
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
)
"""Published ROC-AUC and PR-AUC in % (None: not published), one row per configuration (width 1)."""


PUBLISHED_SETUP = {"width": 1.0, "clip_seconds": PAPER_CLIP_SECONDS, "n_tags": 50, "split": "default"}
"""What every published number above was trained on: full-size models (width 1), the dataset's 29.1 s
clips, its top-50 tags and its usual split (MTAT: folders 0-b / c / d-f; MSD: Lee et al.)."""


def published_numbers() -> pd.DataFrame:
    return pd.DataFrame.from_records(PUBLISHED, columns=PUBLISHED_COLUMNS).astype({"roc_auc": float, "pr_auc": float})


# --- reading results --------------------------------------------------------------------------------------


def run_folders(results_dir: str | Path) -> list[Path]:
    """The run folders under RESULTS_DIR/runs/, or a UserError saying why there are none."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: no such results folder (expected results/<spec name>)")
    runs = results_dir / "runs"
    folders = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    if not folders:
        nested = sorted(str(p.parent) for p in results_dir.glob("*/runs") if p.is_dir())
        hint = f"; did you mean {' or '.join(nested)}?" if nested else ""
        raise UserError(f"{results_dir}: holds no runs (expected {runs}/<run_id>/{RESULT}){hint}")
    return folders


def _config_fields(doc: dict) -> dict:
    """Config fields from a result.json ("config") or a config.json (the canonical config)."""
    if isinstance(doc.get("config"), dict):
        config = doc["config"]
        return {name: config.get(name) for name in (*CONFIG, "seed", "dataset")}
    fields = {name: doc.get(name) for name in (*CONFIG, "seed")}
    fields["width"] = (doc.get("options") or {}).get("width")
    dataset = doc.get("dataset")
    fields["dataset"] = dataset.get("name") if isinstance(dataset, dict) else dataset
    return fields


_RUN_ID = re.compile(r"^(?P<arch>.+)-(?P<rate>\d+k?)-(?P<n_mels>\d+)mel-x(?P<hop_multiplier>\d+)-(?P<log>[^-]+)"
                     r"-s(?P<seed>\d+)-[0-9a-f]+$")


def _fields_from_run_id(run_id: str) -> dict:
    """Config fields readable from a run id ("vgg-16k-48mel-x2-log-s0-ae9e2d4410"), for folders without
    config.json; width and dataset are not in the id."""
    match = _RUN_ID.match(run_id)
    if not match:
        return {}
    rate = match["rate"]
    return {"arch": match["arch"], "sample_rate": int(rate[:-1]) * 1000 if rate.endswith("k") else int(rate),
            "n_mels": int(match["n_mels"]), "hop_multiplier": int(match["hop_multiplier"]), "log": match["log"],
            "seed": int(match["seed"])}


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_runs(folders: Iterable[Path]) -> tuple[list[dict], pd.DataFrame]:
    """(ok results, one row per run that is not: failed, unreadable or incomplete, with the reason)."""
    ok, not_ok = [], []
    for folder in folders:
        path = folder / RESULT
        if not path.exists():
            started = "interrupted or still running" if (folder / "checkpoint.pt").exists() else "not finished"
            config = _read_json(folder / "config.json")
            fields = _config_fields(config) if config else _fields_from_run_id(folder.name)
            not_ok.append({"run_id": folder.name, "status": "incomplete", "reason": f"no {RESULT} ({started})",
                           **fields})
            continue
        try:
            result = json.loads(path.read_text())
            if not isinstance(result, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            not_ok.append({"run_id": folder.name, "status": "unreadable", "reason": f"{path}: {exc}"})
            continue
        status = result.get("status")
        problem = result_problem(result, folder.name)  # the grid's own test of a done-marker
        if status == "ok" and problem is None:
            ok.append(result)
        else:
            reason = result.get("error") or problem or f"status {status!r}"
            not_ok.append({"run_id": result.get("run_id", folder.name), "status": status or "unknown",
                           "reason": reason, **_config_fields(result)})
    return ok, pd.DataFrame(not_ok, columns=NOT_OK_COLUMNS)


# --- tidy tables ------------------------------------------------------------------------------------------


def paper_order(frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The paper's order: by model and condition (log before dB), then mel bands descending, hop ascending."""
    order = [c for c in ("dataset", "arch", "width", "sample_rate", "log", "n_mels", "hop_multiplier", *extra)
             if c in frame.columns]
    ascending = [c != "n_mels" for c in order]

    def key(column: pd.Series) -> pd.Series:
        if column.name != "log":
            return column
        return column.map(lambda v: (LOG_ORDER.index(v), "") if v in LOG_ORDER else (len(LOG_ORDER), str(v)))

    return frame.sort_values(order, ascending=ascending, kind="stable", key=key).reset_index(drop=True)


def tidy_table(results: list[dict]) -> pd.DataFrame:
    """summary.csv: one row per ok run (SUMMARY_COLUMNS); accuracies as fractions, cost per clip."""
    rows = []
    for result in results:
        config, metrics, cost = result["config"], result["metrics"], result["cost"]
        dataset = (result.get("canonical") or {}).get("dataset") or {}
        rows.append({"run_id": result["run_id"], **{name: config.get(name) for name in (*CONFIG, "seed")},
                     **{name: metrics.get(name) for name in METRICS}, **{name: cost.get(name) for name in COST_FIELDS},
                     "clip_seconds": dataset.get("clip_seconds"), "dataset": config.get("dataset"),
                     "n_tags": dataset.get("n_tags"), "split": _split_label(dataset)})
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    numeric = [c for c in SUMMARY_COLUMNS if c not in ("run_id", "arch", "log", "dataset", "split")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return paper_order(frame, ("seed",))


def _split_label(dataset: dict) -> str | None:
    """The `split` column (see SETUP) of a canonical dataset config; None when the run records none.
    The canonical config leaves out `split` and `split_file` when they are not set (`DatasetSpec.identity`)."""
    if not dataset:
        return None
    label = dataset.get("split_file") or ("default" if dataset.get("split", "folders") == "folders"
                                          else str(dataset["split"]))
    return label + (", untagged clips dropped" if dataset.get("drop_untagged") else "")


def per_tag_table(results: list[dict]) -> pd.DataFrame:
    """per_tag.csv: one row per (ok run, tag) with the tag's test ROC-AUC and PR-AUC (fractions)."""
    rows = []
    for result in results:
        config = result["config"]
        ident = {"run_id": result["run_id"], **{name: config.get(name) for name in (*KEY, "seed")}}
        for tag, values in (result["metrics"].get("per_tag") or {}).items():
            rows.append({**ident, "tag": tag, **{k: values.get(k) for k in ("roc_auc", "pr_auc", "positives")}})
    return paper_order(pd.DataFrame(rows, columns=PER_TAG_COLUMNS), ("seed", "tag"))


def duplicate_seeds(summary: pd.DataFrame) -> pd.DataFrame:
    """Ok runs that share configuration and seed (e.g. a changed protocol): they would count twice."""
    return summary[summary.duplicated([*KEY, "seed"], keep=False)]


# --- aggregation, statistics, Pareto front ----------------------------------------------------------------


def aggregate(summary: pd.DataFrame, expected_seeds: Iterable[int] | None = None) -> pd.DataFrame:
    """aggregate.csv: one row per configuration, statistics over its seeds.

    `{metric}_mean`, `{metric}_std` (ddof=1; NaN for one seed), `n_seeds`, `seeds`; cost per clip (gmac,
    gmac_analytic, params, storage_bytes: the same for every seed); means of train_seconds, epochs and
    clips_per_second. `seeds_missing` lists the `expected_seeds` (default: every seed in `summary`) this
    configuration has no ok run for; `pareto_gmac` / `pareto_storage` flag the Pareto front per dataset.
    The SETUP columns hold the seeds' common value (NaN, or "mixed" for `split`, when they differ or a
    summary without them is given).
    """
    if summary.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    grouped = summary.groupby(list(KEY), sort=False, dropna=False)
    frame = grouped.agg(
        roc_auc_mean=("roc_auc", "mean"), roc_auc_std=("roc_auc", "std"),
        pr_auc_mean=("pr_auc", "mean"), pr_auc_std=("pr_auc", "std"),
        n_seeds=("seed", "size"), seeds=("seed", lambda s: ";".join(str(v) for v in sorted(s))),
        gmac=("gmac", "mean"), gmac_analytic=("gmac_analytic", "mean"), params=("params", "max"),
        storage_bytes=("storage_bytes", "max"), train_seconds_mean=("train_seconds", "mean"),
        epochs_mean=("epochs", "mean"), clips_per_second_mean=("clips_per_second", "mean"),
        **{name: (name, _common) for name in SETUP if name in summary.columns},
    ).reset_index()
    for name in SETUP:
        if name not in frame.columns:
            frame[name] = np.nan
    expected = sorted(set(summary["seed"]) if expected_seeds is None else set(expected_seeds))
    have = [set(int(s) for s in seeds.split(";")) for seeds in frame["seeds"]]
    frame["seeds_missing"] = [";".join(str(s) for s in expected if s not in seeds) for seeds in have]
    frame["pareto_gmac"] = _per_dataset_front(frame, "gmac")
    frame["pareto_storage"] = _per_dataset_front(frame, "storage_bytes")
    return paper_order(frame[list(AGGREGATE_COLUMNS)])


def _common(values: pd.Series):
    """The one value all seeds share; else NaN (numbers) or "mixed" (text)."""
    if values.nunique(dropna=False) == 1:
        return values.iloc[0]
    return np.nan if pd.api.types.is_numeric_dtype(values) else "mixed"


def pareto_front(cost: Iterable[float], value: Iterable[float]) -> np.ndarray:
    """True where no other point has cost <= and value >= with at least one strictly better (NaN: False)."""
    x, y = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    valid = np.isfinite(x) & np.isfinite(y)
    on_front = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(valid):
        dominated = valid & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        on_front[i] = not dominated.any()
    return on_front


def _per_dataset_front(frame: pd.DataFrame, cost: str) -> np.ndarray:
    flags = np.zeros(len(frame), dtype=bool)
    for _, rows in frame.groupby("dataset", sort=False).indices.items():
        flags[rows] = pareto_front(frame[cost].to_numpy()[rows], frame["roc_auc_mean"].to_numpy()[rows])
    return flags


def student_t_test(a: Iterable[float], b: Iterable[float]) -> tuple[float, float]:
    """Independent-samples Student's t-test (equal variances, as in the paper): (t, two-sided p).

    NaN when either sample has fewer than 2 values, or both are constant (no variance to test).
    """
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=True)
    return float(test.statistic), float(test.pvalue)


def is_reference(frame: pd.DataFrame) -> pd.Series:
    return (frame["n_mels"] == REFERENCE["n_mels"]) & (frame["hop_multiplier"] == REFERENCE["hop_multiplier"])


def compare_to_reference(aggregated: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """comparison.csv: each configuration against its reference (96 mels, x1, same model and condition).

    `{metric}_diff` = mean - reference mean (fraction), `{metric}_change_pct` = relative change in %
    (the paper's "a decrease of 0.16 %"), `{metric}_t` / `{metric}_p` from `student_t_test` over seeds,
    `gmac_change_pct` likewise. Every reference column is NaN when the reference was not run.
    """
    keep = [*KEY, "n_seeds", "roc_auc_mean", "pr_auc_mean", "gmac"]
    refs = aggregated.loc[is_reference(aggregated), keep].drop(columns=["n_mels", "hop_multiplier"])
    refs = refs.rename(columns={c: f"ref_{c}" for c in ("n_seeds", "roc_auc_mean", "pr_auc_mean", "gmac")})
    frame = aggregated[keep].merge(refs, on=[*MODEL, *CONDITION], how="left")
    frame.insert(len(KEY), "is_reference", is_reference(frame).to_numpy())
    seeds = {key: rows for key, rows in summary.groupby(list(KEY), sort=False, dropna=False)}
    for metric in METRICS:
        frame[f"{metric}_diff"] = frame[f"{metric}_mean"] - frame[f"ref_{metric}_mean"]
        frame[f"{metric}_change_pct"] = 100 * frame[f"{metric}_diff"] / frame[f"ref_{metric}_mean"]
        tests = []
        for row in frame.itertuples(index=False):
            key = tuple(getattr(row, name) for name in KEY)
            ref_key = tuple(REFERENCE.get(name, value) for name, value in zip(KEY, key, strict=True))
            if row.is_reference or ref_key not in seeds:
                tests.append((float("nan"), float("nan")))
            else:
                tests.append(student_t_test(seeds[key][metric], seeds[ref_key][metric]))
        frame[f"{metric}_t"] = [t for t, _ in tests]
        frame[f"{metric}_p"] = [p for _, p in tests]
    frame["gmac_change_pct"] = 100 * (frame["gmac"] - frame["ref_gmac"]) / frame["ref_gmac"]
    return paper_order(frame)


def per_tag_delta(per_tag: pd.DataFrame) -> pd.DataFrame:
    """per_tag_delta.csv: per (configuration, tag), mean ROC-AUC over seeds minus the reference's (fraction)."""
    means = per_tag.groupby([*KEY, "tag"], sort=False, dropna=False)["roc_auc"].agg(["mean", "size"]).reset_index()
    means = means.rename(columns={"mean": "roc_auc_mean", "size": "n_seeds"})
    refs = means.loc[is_reference(means), [*MODEL, *CONDITION, "tag", "roc_auc_mean"]]
    frame = means.merge(refs.rename(columns={"roc_auc_mean": "ref_roc_auc_mean"}), on=[*MODEL, *CONDITION, "tag"])
    frame = frame[~is_reference(frame)].copy()
    frame["roc_auc_diff"] = frame["roc_auc_mean"] - frame["ref_roc_auc_mean"]
    return paper_order(frame, ("tag",))


def per_tag_matrix(delta: pd.DataFrame) -> pd.DataFrame:
    """Tags x configurations ("48/x1") of one model's per-tag ROC-AUC difference in percentage points.

    Averaged over the model's conditions (sample rate x log type, each against its own reference);
    rows sorted by their worst drop (most negative first), columns in the paper's order.
    """
    if delta.empty:
        return pd.DataFrame()
    ordered = paper_order(delta[["n_mels", "hop_multiplier"]].drop_duplicates())
    columns = [config_label(m, h) for m, h in zip(ordered["n_mels"], ordered["hop_multiplier"], strict=True)]
    labelled = delta.assign(config=[config_label(m, h) for m, h in zip(delta["n_mels"], delta["hop_multiplier"],
                                                                         strict=True)])
    matrix = 100 * labelled.pivot_table(index="tag", columns="config", values="roc_auc_diff", aggfunc="mean")
    matrix = matrix.reindex(columns=columns)
    worst = matrix.min(axis=1, skipna=True)
    return matrix.loc[worst.sort_values(kind="stable").index]


def width_label(width: float) -> str:
    """A model width as a fraction where it is one: 0.0625 -> "1/16", 0.25 -> "1/4", 1.0 -> "1"."""
    fraction = Fraction(float(width)).limit_denominator(1024)
    return str(fraction) if math.isclose(float(fraction), width, rel_tol=1e-9) else f"{width:g}"


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
    """One line per model whose configurations have published numbers but a different width or setup,
    e.g. "published comparison skipped for vgg, width 0.0625, mtat: width 1/16 (the paper trains width 1),
    6 s clips (the paper's are 29.1 s)"."""
    frame = _published_matches(aggregated)
    lines = []
    for (dataset, arch, width), rows in frame.groupby(list(MODEL), sort=False):
        problems = list(dict.fromkeys(p for row_problems in rows["problems"] for p in row_problems))
        if problems:
            lines.append(f"published comparison skipped for {arch}, width {width:g}, {dataset}: "
                         + ", ".join(problems))
    return lines


# --- labels -----------------------------------------------------------------------------------------------


def config_label(n_mels: int, hop_multiplier: int) -> str:
    """The x-axis label of a configuration within one condition, e.g. "96/x1"."""
    return f"{int(n_mels)}/x{int(hop_multiplier)}"


def rate_label(sample_rate: float) -> str:
    return f"{sample_rate / 1000:g}k"


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
        slug += f"-w{key['width']:g}" if several_widths else ""
        out.append((slug, f"{key['arch']}, width {key['width']:g}, {key['dataset']}", key))
    return out


def select(frame: pd.DataFrame, key: dict) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for name, value in key.items():
        mask &= (frame[name] == value).to_numpy()
    return frame[mask]


# --- Markdown and LaTeX tables ----------------------------------------------------------------------------


@dataclass
class Table:
    """A paper-shaped table: rows (n_mels, hop), column groups per sample rate (and log type)."""

    title: str
    groups: list[tuple[str, list[str]]]
    """(group header, sub-column headers)."""
    rows: list[tuple[str, str, list[tuple[str, bool]]]]
    """(mels, hop, [(cell text, bold)])."""
    notes: list[str] = field(default_factory=list)


def _pct(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{100 * mean:.2f}" + (f" ({100 * std:.2f})" if np.isfinite(std) else "")


def _gmac(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def _signed(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:+.2f}"


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return ("<0.001" if value < 0.001 else f"{value:.3f}") + ("*" if value < SIGNIFICANCE else "")


def _layout(frame: pd.DataFrame):
    rates = sorted(frame["sample_rate"].unique())
    logs = [v for v in LOG_ORDER if v in set(frame["log"])] + sorted(set(frame["log"]) - set(LOG_ORDER))
    configs = paper_order(frame[["n_mels", "hop_multiplier"]].drop_duplicates())
    return rates, logs, list(zip(configs["n_mels"], configs["hop_multiplier"], strict=True))


def _column_groups(rates, logs, metric_header, gmac_header: str):
    """Column groups (sample rate x log type: the metrics; then the rate's GMAC) and their keys."""
    groups, columns = [], []
    for rate in rates:
        for log in logs:
            groups.append((f"{rate_label(rate)} {log}", [metric_header(m) for m in METRICS]))
            columns += [(rate, log, m) for m in METRICS]
        groups.append((f"{rate_label(rate)}", [gmac_header]))
        columns.append((rate, None, "gmac"))
    return groups, columns


def results_table(aggregated: pd.DataFrame, title: str) -> Table:
    """Mean (std) over seeds in %, GMAC per clip beside each sample rate; bold: the best displayed mean of a
    column, only in columns that show at least two different means (a column of one value has no best)."""
    rates, logs, configs = _layout(aggregated)
    by_key = {(r.sample_rate, r.log, r.n_mels, r.hop_multiplier): r for r in aggregated.itertuples(index=False)}
    groups, columns = _column_groups(rates, logs, lambda m: METRIC_NAMES[m], "GMAC")
    cells = {}
    for mels, hop in configs:
        for rate, log, what in columns:
            if what == "gmac":
                found = [r for (sr, _, m, h), r in by_key.items() if (sr, m, h) == (rate, mels, hop)]
                cells[mels, hop, rate, log, what] = _gmac(found[0].gmac if found else np.nan)
                continue
            row = by_key.get((rate, log, mels, hop))
            text = _pct(getattr(row, f"{what}_mean"), getattr(row, f"{what}_std")) if row else "–"
            if row is not None and row.seeds_missing:
                text += " †"
            cells[mels, hop, rate, log, what] = text
    best = {}
    for column in columns:
        if column[2] != "gmac":
            shown = {_leading_number(cells[(m, h, *column)]) for m, h in configs} - {None}
            best[column] = max(shown) if len(shown) >= 2 else None
    rows = [(str(mels), f"x{hop}", [(cells[(mels, hop, *c)], c in best and best[c] is not None
                                     and _leading_number(cells[(mels, hop, *c)]) == best[c]) for c in columns])
            for mels, hop in configs]
    notes = ["ROC-AUC and PR-AUC in %: mean (standard deviation) over seeds; bold: the best mean of its column "
             "(in columns with at least two different means).",
             "GMAC: 1e9 multiply-adds per clip, one forward pass."]
    if aggregated["seeds_missing"].astype(bool).any():
        notes.append("†: fewer seeds than the other configurations (failed or unfinished runs).")
    return Table(title, groups, rows, notes)


def _leading_number(text: str) -> float | None:
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def comparison_table(comparison: pd.DataFrame, title: str) -> Table:
    """Relative change against the reference in % with the t-test's p-value, and the GMAC change."""
    rates, logs, configs = _layout(comparison)
    by_key = {(r.sample_rate, r.log, r.n_mels, r.hop_multiplier): r for r in comparison.itertuples(index=False)}
    groups, columns = _column_groups(rates, logs, lambda m: f"Δ{METRIC_NAMES[m]} % (p)", "ΔGMAC %")
    rows = []
    for mels, hop in configs:
        cells = []
        for rate, log, what in columns:
            if what == "gmac":
                found = [r for (sr, _, m, h), r in by_key.items() if (sr, m, h) == (rate, mels, hop)]
                cells.append((_signed(found[0].gmac_change_pct if found else np.nan), False))
                continue
            row = by_key.get((rate, log, mels, hop))
            if row is None:
                text = "–"
            elif row.is_reference:
                text = "reference"
            else:
                text = f"{_signed(getattr(row, f'{what}_change_pct'))} ({_p(getattr(row, f'{what}_p'))})"
            cells.append((text, False))
        rows.append((str(mels), f"x{hop}", cells))
    notes = [f"Relative change in % against {config_label(**REFERENCE)} (same model, sample rate and log type); "
             f"p: two-sided independent-samples Student's t-test over seeds (* p < {SIGNIFICANCE}); "
             "n/a: fewer than 2 seeds on either side, or no reference run."]
    return Table(title, groups, rows, notes)


def to_markdown(table: Table) -> str:
    header = ["mels", "hop"] + [f"{group} {sub}" for group, subs in table.groups for sub in subs]
    lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for mels, hop, cells in table.rows:
        lines.append("| " + " | ".join([mels, hop] + [f"**{t}**" if bold else t for t, bold in cells]) + " |")
    return "\n".join(lines + [""] + [f"{note}  " for note in table.notes] + [""])


def _tex(text: str) -> str:
    text = text.replace("\\", r"\textbackslash{}")
    for char in "%&_#$":
        text = text.replace(char, "\\" + char)
    return (text.replace("Δ", r"$\Delta$").replace("–", "--").replace("†", r"$^\dagger$").replace("<", r"$<$")
            .replace("*", r"$^*$"))


def to_latex(table: Table) -> str:
    """A booktabs table* (needs \\usepackage{booktabs})."""
    n_cols = 2 + sum(len(subs) for _, subs in table.groups)
    top, rules, column = [], [], 3
    for group, subs in table.groups:
        top.append(rf"\multicolumn{{{len(subs)}}}{{c}}{{{_tex(group)}}}")
        rules.append(rf"\cmidrule(lr){{{column}-{column + len(subs) - 1}}}")
        column += len(subs)
    subs = [_tex(sub) for _, group_subs in table.groups for sub in group_subs]
    lines = [r"\begin{table*}[t]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{_tex(table.title)}. {' '.join(_tex(n) for n in table.notes)}}}",
             rf"\begin{{tabular}}{{ll{'r' * (n_cols - 2)}}}", r"\toprule",
             " & & " + " & ".join(top) + r" \\", "".join(rules),
             "mels & hop & " + " & ".join(subs) + r" \\", r"\midrule"]
    for mels, hop, cells in table.rows:
        texts = [rf"\textbf{{{_tex(t)}}}" if bold else _tex(t) for t, bold in cells]
        lines.append(" & ".join([mels, hop, *texts]) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}", r"\end{table*}", ""])


def published_markdown(comparison: pd.DataFrame, skipped: Iterable[str] = ()) -> str:
    """published.md: our mean (std) in % beside the published numbers, one table per source, after one line
    per model left out (`published_skipped`)."""
    paper = PUBLISHED_SETUP
    lines = ["## Published numbers beside ours", "",
             f"Only configurations trained as the paper's are compared: width {paper['width']:g}, "
             f"{paper['clip_seconds']:g} s clips, the top {paper['n_tags']} tags and the dataset's usual split. "
             "Ours: mean (std) over seeds, in %. Δ: ours - published, in percentage points.", ""]
    lines += [f"- {line}" for line in skipped]
    if skipped:
        lines.append("")
    for source, rows in comparison.groupby("source", sort=False):
        lines += [f"### {source}", "", "| arch | width | rate | mels | hop | log | n | ROC-AUC ours | published | Δ "
                  "| PR-AUC ours | published | Δ |", "|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows.itertuples(index=False):
            cells = [r.arch, f"{r.width:g}", rate_label(r.sample_rate), str(r.n_mels), f"x{r.hop_multiplier}", r.log,
                     str(r.n_seeds)]
            for metric in METRICS:
                ours, std, published = (getattr(r, f"{metric}_{s}") for s in ("ours", "ours_std", "published"))
                cells += [f"{ours:.2f}" + (f" ({std:.2f})" if np.isfinite(std) else ""),
                          f"{published:.2f}" if np.isfinite(published) else "–",
                          _signed(getattr(r, f"{metric}_diff_pp"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# --- the report -------------------------------------------------------------------------------------------


@dataclass
class ReportSummary:
    """What `report` found and wrote."""

    results_dir: Path
    out_dir: Path
    n_runs: int
    n_ok: int
    not_ok: pd.DataFrame
    """One row per run not averaged: run_id, status (failed | incomplete | unreadable | ...), reason."""
    n_configurations: int
    incomplete_configurations: list[str]
    """Configurations averaged over fewer seeds than expected, e.g. "vgg 16k log 48/x1 (n=2, missing 2)"."""
    published: pd.DataFrame
    warnings: list[str]
    files: list[Path]
    published_skipped: list[str] = field(default_factory=list)
    """One line per model with published numbers for its configurations but not the paper's width or setup."""

    def text(self) -> str:
        counts = self.not_ok["status"].value_counts()
        lines = [f"report of {self.results_dir}: {self.n_runs} runs, {self.n_ok} ok"
                 + "".join(f", {n} {status}" for status, n in counts.items())
                 + f"; {self.n_configurations} configurations"]
        for row in self.not_ok.itertuples(index=False):
            lines.append(f"  not averaged: {row.run_id} [{row.status}] {row.reason}")
        for label in self.incomplete_configurations:
            lines.append(f"  fewer seeds: {label}")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  {line}" for line in self.published_skipped]
        if not self.published.empty:
            lines.append("published numbers beside ours (%, ours - published):")
            for r in self.published.itertuples(index=False):
                parts = [f"{METRIC_NAMES[m]} {getattr(r, f'{m}_ours'):.2f} vs {getattr(r, f'{m}_published'):.2f}"
                         for m in METRICS if np.isfinite(getattr(r, f"{m}_published"))]
                lines.append(f"  {r.dataset} {r.arch} w{r.width:g} {rate_label(r.sample_rate)} {r.log} "
                             f"{config_label(r.n_mels, r.hop_multiplier)} (n={r.n_seeds}): " + ", ".join(parts))
        lines.append(f"wrote {len(self.files)} files to {self.out_dir}:")
        lines += [f"  {path.name}" for path in self.files]
        return "\n".join(lines)


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.10g", lineterminator="\n")


def report(results_dir: str | Path, out_dir: str | Path | None = None) -> ReportSummary:
    """Read RESULTS_DIR/runs/*/result.json and write the report to out_dir (default RESULTS_DIR/report/).

    Writes summary.csv, aggregate.csv, comparison.csv, per_tag.csv, per_tag_delta.csv, runs_not_ok.csv,
    tables.md, tables.tex, published.md (when a published number exists for our configurations: beside
    ours where width and setup are the paper's, else the reason it is left out) and the
    figures (PNG and PDF). Raises UserError when the folder does not exist or holds no runs.
    """
    from bench import figures  # matplotlib is only needed here

    results_dir = Path(results_dir)
    folders = run_folders(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir / "report"
    results, not_ok = read_runs(folders)
    summary = tidy_table(results)
    seeds_seen = set(summary["seed"].dropna().astype(int)) | set(pd.to_numeric(not_ok["seed"]).dropna().astype(int))
    aggregated = aggregate(summary, seeds_seen)
    comparison = compare_to_reference(aggregated, summary)
    per_tag = per_tag_table(results)
    delta = per_tag_delta(per_tag)
    published = published_comparison(aggregated)
    skipped = published_skipped(aggregated)

    notes = []
    duplicates = duplicate_seeds(summary)
    if not duplicates.empty:
        notes.append(f"{len(duplicates)} ok runs share a configuration and seed with another (changed protocol or "
                     f"data?); all are averaged: {', '.join(duplicates['run_id'])}")
    files: list[Path] = []

    def write(name: str, text: str) -> None:
        files.append(atomic_write_text(out / name, text))

    write("summary.csv", _csv(summary))
    write("aggregate.csv", _csv(aggregated))
    write("comparison.csv", _csv(comparison))
    write("per_tag.csv", _csv(per_tag))
    write("per_tag_delta.csv", _csv(delta))
    write("runs_not_ok.csv", _csv(not_ok))

    model_list = models(aggregated)
    md, tex = [f"# Results: {results_dir.name}", ""], []
    reference = config_label(**REFERENCE)
    for _, title, key in model_list:
        mine = select(aggregated, key)
        if not is_reference(mine).any():
            notes.append(f"{title}: no {reference} reference run, so no relative changes or t-tests")
        for table in (results_table(mine, title),
                      comparison_table(select(comparison, key), f"{title}: change against {reference}")):
            md.append(to_markdown(table))
            tex.append(to_latex(table))
    if not model_list:
        md.append("No successful runs yet.\n")
    write("tables.md", "\n".join(md))
    write("tables.tex", "\n".join(tex) or "% no successful runs yet\n")
    if not published.empty or skipped:
        write("published.md", published_markdown(published, skipped))

    for slug, title, key in model_list:
        files += figures.save(figures.fig1(select(aggregated, key), title), out / f"fig1_{slug}")
        matrix = per_tag_matrix(select(delta, key))
        if not matrix.empty:
            files += figures.save(figures.per_tag(matrix, title, figures.caption(select(aggregated, key))),
                                  out / f"per_tag_{slug}")
    if model_list:
        files += figures.save(figures.tradeoff(aggregated, "gmac"), out / "tradeoff_gmac")
        files += figures.save(figures.tradeoff(aggregated, "storage_bytes"), out / "tradeoff_storage")

    incomplete = [f"{r.arch} w{r.width:g} {rate_label(r.sample_rate)} {r.log} "
                  f"{config_label(r.n_mels, r.hop_multiplier)} (n={r.n_seeds}, "
                  f"missing seeds {r.seeds_missing.replace(';', ', ')})"
                  for r in aggregated.itertuples(index=False) if r.seeds_missing]
    return ReportSummary(results_dir, out, len(folders), len(results), not_ok, len(aggregated), incomplete,
                         published, notes, files, skipped)


def cli_main(results_dir: str | Path) -> int:
    """`bench report RESULTS_DIR`: write the report and print what was found and written."""
    print(report(results_dir).text())
    return 0
