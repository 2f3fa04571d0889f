"""Aggregation over seeds, the Pareto front, t-tests against the reference, per-tag changes."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.columns import (
    AGGREGATE_COLUMNS,
    CONDITION,
    KEY,
    METRICS,
    MODEL,
    REFERENCE,
    SETUP,
    config_label,
    paper_order,
)


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
