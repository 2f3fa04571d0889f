"""Aggregation over seeds, the Pareto front, t-tests against the reference, per-tag changes."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.columns import (
    AGGREGATE_COLUMNS,
    ARCH_OPTIONS,
    CONDITION,
    CONFIG,
    GLOBAL_REFERENCE,
    KEY,
    METRICS,
    MODEL,
    REFERENCE,
    SETUP,
    as_text,
    config_label,
    input_label,
    paper_order,
)


def aggregate(summary: pd.DataFrame, expected_seeds: Mapping[str, Iterable[int]] | None = None) -> pd.DataFrame:
    """aggregate.csv: one row per configuration, statistics over its seeds.

    `{metric}_mean`, `{metric}_std` (ddof=1; NaN for one seed), `n_seeds`, `seeds`; cost per clip (gmac,
    gmac_analytic, params, storage_bytes: the same for every seed); means of train_seconds, epochs and
    clips_per_second. `seeds_missing` lists the `expected_seeds` of the configuration's dataset (dataset ->
    seeds; default: every seed `summary` holds for the dataset) this configuration has no ok run for;
    `pareto_gmac` / `pareto_storage` / `pareto_latency` flag the Pareto front of each `front_groups`
    group (a dataset; a dataset and data setup when the dataset was trained on several).
    The SETUP columns hold the seeds' common value (NaN, or "mixed" for `split` and `data`, when they differ
    or a summary without them is given); `setup_mixed` is True where the seeds' data setups differ.
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
        # measured timings: the median over seeds (one slow pass on a shared machine moves a mean)
        latency_ms=("latency_ms", "median"), throughput_clips_per_second=("throughput_clips_per_second", "median"),
        **{name: (name, _common) for name in (*SETUP, ARCH_OPTIONS) if name in summary.columns},
    ).reset_index()
    if ARCH_OPTIONS not in frame.columns:
        frame[ARCH_OPTIONS] = None
    for name in SETUP:
        if name not in frame.columns:
            frame[name] = np.nan
    # seeds trained with other architecture options (a spec edited between grids) mix two experiments too
    present = [name for name in (*SETUP, ARCH_OPTIONS) if name in summary.columns]
    frame["setup_mixed"] = (grouped[present].nunique(dropna=False).gt(1).any(axis=1).to_numpy() if present
                            else False)
    if expected_seeds is None:
        expected_seeds = summary.groupby("dataset", dropna=False)["seed"].agg(set).to_dict()
    have = [set(int(s) for s in seeds.split(";")) for seeds in frame["seeds"]]
    frame["seeds_missing"] = [";".join(str(s) for s in sorted(expected_seeds.get(dataset, ())) if s not in seeds)
                              for dataset, seeds in zip(frame["dataset"], have, strict=True)]
    groups = front_groups(frame)
    frame["pareto_gmac"] = _per_group_front(frame, groups, "gmac")
    frame["pareto_storage"] = _per_group_front(frame, groups, "storage_bytes")
    frame["pareto_latency"] = _per_group_front(frame, groups, "latency_ms")
    return paper_order(frame[list(AGGREGATE_COLUMNS)])


def _common(values: pd.Series):
    """The one value all seeds share; else NaN (numbers) or "mixed" (text)."""
    if values.nunique(dropna=False) == 1:
        return values.iloc[0]
    return np.nan if pd.api.types.is_numeric_dtype(values) else "mixed"


def pareto_front(cost: Iterable[float], value: Iterable[float]) -> np.ndarray:
    """True where no other point has cost <= and value >= with at least one strictly better (NaN: False).
    Numbers within FRONT_RTOL of each other are equal: a configuration's GMAC is the mean over its seeds,
    and the mean of three equal values can be one ulp off the mean of two (the log and dB runs of one input
    cost the same, and one with a failed seed would pass for the cheaper)."""
    x, y = np.asarray(cost, dtype=float), np.asarray(value, dtype=float)
    valid = np.isfinite(x) & np.isfinite(y)
    on_front = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(valid):
        same_x, same_y = np.isclose(x, x[i], rtol=FRONT_RTOL, atol=0), np.isclose(y, y[i], rtol=FRONT_RTOL, atol=0)
        better_x, better_y = (x < x[i]) & ~same_x, (y > y[i]) & ~same_y
        dominated = valid & (better_x | same_x) & (better_y | same_y) & (better_x | better_y)
        on_front[i] = not dominated.any()
    return on_front


FRONT_RTOL = 1e-9
"""Relative difference below which `pareto_front` takes two costs (or two accuracies) as equal."""


def setup_text(frame: pd.DataFrame) -> pd.Series:
    """Per row, its data setup (the SETUP columns it has) as one text, "29.1 | 50 | default"; "" without them."""
    present = [name for name in SETUP if name in frame.columns]
    if not present or frame.empty:
        return pd.Series("", index=frame.index, dtype=object)
    return as_text(frame[present]).agg(" | ".join, axis=1)


def _setup_mixed(frame: pd.DataFrame) -> pd.Series:
    """Per aggregate row, whether its seeds ran on different data (False for a frame without the column)."""
    if "setup_mixed" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["setup_mixed"].fillna(False).astype(bool)


def front_groups(frame: pd.DataFrame) -> pd.Series:
    """Per aggregate row, the configurations it is compared with on a Pareto front (and drawn with in one
    trade-off panel): its dataset's, named by the dataset; where the dataset's configurations were trained
    on several data setups (another clip length, tag count, split or data), those of its setup only, named
    "dataset (4 s clips, 17 tags, split default)", with the data where it is not "default"
    ("synthetic (4 s clips, 17 tags, split default, 400 clips, seed 0)"). Among those, configurations
    whose seeds ran on different data, or whose data was not recorded, form a group of their own
    (UNSURE_SETUP) that has no front: they are compared with nothing."""
    setup = setup_text(frame)
    several = setup.groupby(frame["dataset"]).transform("nunique") > 1 if len(frame) else setup.astype(bool)

    mixed = _setup_mixed(frame)

    def name(row) -> str:
        if mixed[row.Index]:
            return f"{row.dataset} ({UNSURE_SETUP})"
        if not several[row.Index]:
            return str(row.dataset)
        clip = pd.to_numeric(getattr(row, "clip_seconds", np.nan), errors="coerce")
        tags = pd.to_numeric(getattr(row, "n_tags", np.nan), errors="coerce")
        split, data = getattr(row, "split", np.nan), getattr(row, "data", np.nan)
        if not (np.isfinite(clip) and np.isfinite(tags)) or not all(isinstance(v, str) and v != MIXED
                                                                    for v in (split, data)):
            return f"{row.dataset} ({UNSURE_SETUP})"
        other = "" if data == "default" else f", {data}"
        return f"{row.dataset} ({clip:g} s clips, {tags:g} tags, split {split}{other})"

    return pd.Series([name(row) for row in frame.itertuples()], index=frame.index, dtype=object)


UNSURE_SETUP = "seeds on different data, or data not recorded"
"""The `front_groups` name of configurations that cannot be placed on a data setup's front."""


def _per_group_front(frame: pd.DataFrame, groups: pd.Series, cost: str) -> np.ndarray:
    flags = np.zeros(len(frame), dtype=bool)
    for group, rows in groups.groupby(groups.to_numpy(), sort=False).indices.items():
        if not str(group).endswith(f"({UNSURE_SETUP})"):
            flags[rows] = pareto_front(frame[cost].to_numpy()[rows], frame["roc_auc_mean"].to_numpy()[rows])
    return flags


def student_t_test(a: Iterable[float], b: Iterable[float]) -> tuple[float, float]:
    """Independent-samples Student's t-test (equal variances, scipy's default; the paper names an "independent
    samples t-test" without saying over what: here over seeds): (t, two-sided p).

    NaN when either sample has fewer than 2 values, or both are constant (no variance to test).
    """
    return _t_test(a, b, equal_var=True)


def _t_test(a: Iterable[float], b: Iterable[float], equal_var: bool) -> tuple[float, float]:
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    # Seeds that agree to rounding (0.39 x 3 against 0.40 x 3) leave no variance to test: scipy would
    # give t = -1.8e14, p = 6e-57 from the floating-point noise, or t = -inf, p = 0.
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-300)
    if np.ptp(a) <= 1e-9 * scale and np.ptp(b) <= 1e-9 * scale:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=equal_var)
    return float(test.statistic), float(test.pvalue)


MIXED = "mixed"
"""The setup label of a configuration whose seeds were trained on different data setups."""


def setup_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (KEY) of `frame`, one row per seed (or per seed and tag) with the SETUP columns:
    `setup`, its data setup as one text ("29.1 | 50 | default"; results that record none share "nan"),
    or MIXED when its seeds disagree. Two configurations are comparable when their labels are equal and
    neither is MIXED (`comparable`)."""
    labels = setup_text(frame).groupby([frame[name] for name in KEY], sort=False, dropna=False).agg(
        lambda values: values.iloc[0] if values.nunique() == 1 else MIXED)
    return labels.rename("setup").reset_index()


def comparable(setup: pd.Series, ref_setup: pd.Series) -> np.ndarray:
    """Element-wise: the two configurations were trained on the same data setup, each seed of each."""
    return ((setup == ref_setup) & (setup != MIXED) & (ref_setup != MIXED)).to_numpy()


def mixed_setups(summary: pd.DataFrame) -> list[str]:
    """Configurations whose seeds were trained on different data setups (clip length, tags, split, data) or
    with different architecture options (`arch_options`): their means mix two experiments. One line each,
    naming the values."""
    lines = []
    for key, rows in summary.groupby(list(KEY), sort=False, dropna=False):
        names = [name for name in (*SETUP, ARCH_OPTIONS)
                 if name in rows.columns and rows[name].nunique(dropna=False) > 1]
        differ = [f"{name} {' / '.join(sorted(str(v) for v in rows[name].unique()))}" for name in names]
        if differ:
            how = "on different data" if set(names) & set(SETUP) else "with different options"
            lines.append(f"{' '.join(str(v) for v in key)}: its seeds ran {how} ({'; '.join(differ)}): "
                         f"averaged anyway, and not compared with its reference")
    return lines


def is_reference(frame: pd.DataFrame) -> pd.Series:
    return (frame["n_mels"] == REFERENCE["n_mels"]) & (frame["hop_multiplier"] == REFERENCE["hop_multiplier"])


def off_reference(frame: pd.DataFrame) -> np.ndarray:
    """Per aggregate row: trained on other data (clip length, tags, split, data) than its reference (96/x1 of the
    same model, sample rate and log type, where that was run), or its seeds on different data: not
    comparable with the configurations around it (comparison.csv says `setup_differs`)."""
    if frame.empty:
        return np.zeros(0, dtype=bool)
    setup = setup_text(frame)
    mixed = _setup_mixed(frame).to_numpy()
    condition = [tuple(row) for row in frame[[*MODEL, *CONDITION]].itertuples(index=False)]
    reference = {key: value for key, value, ref in zip(condition, setup, is_reference(frame), strict=True) if ref}
    return np.array([m or (key in reference and value != reference[key])
                     for key, value, m in zip(condition, setup, mixed, strict=True)], dtype=bool)


def compare_to_reference(aggregated: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """comparison.csv: each configuration against its reference (96 mels, x1, same model and condition).

    `{metric}_diff` = mean - reference mean (fraction), `{metric}_change_pct` = relative change in %
    (the paper's "a decrease of 0.16 %"), `{metric}_t` / `{metric}_p` from `student_t_test` over seeds,
    `gmac_change_pct` likewise. Every reference column is NaN when the reference was not run, and
    when the configuration and its reference were trained on different data setups (`setup_differs`:
    another clip length, tag count, split or data, or seeds that disagree on one, e.g. old runs of an edited
    spec left in the folder).
    """
    keep = [*KEY, "n_seeds", "roc_auc_mean", "pr_auc_mean", "gmac"]
    compared = ("n_seeds", "roc_auc_mean", "pr_auc_mean", "gmac", "setup")
    with_setup = aggregated[keep].merge(setup_labels(summary), on=list(KEY), how="left")
    refs = with_setup.loc[is_reference(with_setup)].drop(columns=["n_mels", "hop_multiplier"])
    refs = refs.rename(columns={c: f"ref_{c}" for c in compared})
    frame = with_setup.merge(refs, on=[*MODEL, *CONDITION], how="left")
    has_ref = frame["ref_n_seeds"].notna()
    frame["setup_differs"] = has_ref & ~comparable(frame["setup"], frame["ref_setup"])
    frame.loc[frame["setup_differs"], [f"ref_{c}" for c in ("n_seeds", "roc_auc_mean", "pr_auc_mean", "gmac")]] = np.nan
    frame = frame.drop(columns=["setup", "ref_setup"])
    frame.insert(len(KEY), "is_reference", is_reference(frame).to_numpy())
    seeds = {key: rows for key, rows in summary.groupby(list(KEY), sort=False, dropna=False)}
    for metric in METRICS:
        frame[f"{metric}_diff"] = frame[f"{metric}_mean"] - frame[f"ref_{metric}_mean"]
        frame[f"{metric}_change_pct"] = 100 * frame[f"{metric}_diff"] / frame[f"ref_{metric}_mean"]
        tests = []
        for row in frame.itertuples(index=False):
            key = tuple(getattr(row, name) for name in KEY)
            ref_key = tuple(REFERENCE.get(name, value) for name, value in zip(KEY, key, strict=True))
            if row.is_reference or ref_key not in seeds or row.setup_differs:
                tests.append((float("nan"), float("nan")))
            else:
                tests.append(student_t_test(seeds[key][metric], seeds[ref_key][metric]))
        frame[f"{metric}_t"] = [t for t, _ in tests]
        frame[f"{metric}_p"] = [p for _, p in tests]
    frame["gmac_change_pct"] = 100 * (frame["gmac"] - frame["ref_gmac"]) / frame["ref_gmac"]
    return paper_order(frame)


def _tag_means(per_tag: pd.DataFrame) -> pd.DataFrame:
    """Per (configuration, tag): mean ROC-AUC over seeds (`roc_auc_mean`) and the number of seeds it is
    the mean of (`n_seeds`: seeds whose value for the tag is missing, e.g. no positive clip, not counted)."""
    roc = pd.to_numeric(per_tag["roc_auc"], errors="coerce")
    means = roc.groupby([per_tag[k] for k in (*KEY, "tag")], sort=False, dropna=False).agg(["mean", "count"])
    means = means.reset_index().rename(columns={"mean": "roc_auc_mean", "count": "n_seeds"})
    return means.merge(setup_labels(per_tag), on=list(KEY), how="left")


def per_tag_delta(per_tag: pd.DataFrame) -> pd.DataFrame:
    """per_tag_delta.csv: per (configuration, tag), mean ROC-AUC over seeds minus the reference's (fraction)."""
    means = _tag_means(per_tag)
    refs = means.loc[is_reference(means), [*MODEL, *CONDITION, "tag", "roc_auc_mean", "setup"]]
    frame = means.merge(refs.rename(columns={"roc_auc_mean": "ref_roc_auc_mean", "setup": "ref_setup"}),
                        on=[*MODEL, *CONDITION, "tag"])
    frame = frame[~is_reference(frame) & comparable(frame["setup"], frame["ref_setup"])].copy()
    frame["roc_auc_diff"] = frame["roc_auc_mean"] - frame["ref_roc_auc_mean"]
    return paper_order(frame.drop(columns=["setup", "ref_setup"]), ("tag",))


def global_references(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model of `frame` (any table with the KEY columns): its global reference, GLOBAL_REFERENCE
    at the highest sample rate the model was run at (`sample_rate`, `n_mels`, `hop_multiplier`, `log`), and
    `present`: whether `frame` holds that configuration. Without it the model has no global comparison."""
    columns = [*MODEL, *CONFIG[2:], "present"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    top = frame.groupby(list(MODEL), sort=False, dropna=False)["sample_rate"].max().reset_index()
    top = top.assign(**GLOBAL_REFERENCE)
    candidates = frame[list(KEY)].drop_duplicates().assign(present=True)
    merged = top.merge(candidates, on=list(KEY), how="left")
    merged["present"] = merged["present"].eq(True)
    return merged[columns]


def per_tag_delta_global(per_tag: pd.DataFrame) -> pd.DataFrame:
    """per_tag_delta_global.csv: per (configuration, tag), mean ROC-AUC over seeds minus the mean of the
    model's global reference (`global_references`; its sample rate in `ref_sample_rate`), whatever the
    configuration's sample rate and log type. Models whose global reference was not run are left out."""
    means = _tag_means(per_tag)
    refs = global_references(means)
    refs = refs.loc[refs["present"], [*MODEL, "sample_rate"]].rename(columns={"sample_rate": "ref_sample_rate"})
    ref_means = means.merge(refs, left_on=[*MODEL, "sample_rate"], right_on=[*MODEL, "ref_sample_rate"])
    ref_means = ref_means[is_reference(ref_means) & (ref_means["log"] == GLOBAL_REFERENCE["log"])]
    ref_means = ref_means[[*MODEL, "ref_sample_rate", "tag", "roc_auc_mean", "setup"]]
    frame = means.merge(ref_means.rename(columns={"roc_auc_mean": "ref_roc_auc_mean", "setup": "ref_setup"}),
                        on=[*MODEL, "tag"])
    own = is_reference(frame) & (frame["log"] == GLOBAL_REFERENCE["log"]) & (frame["sample_rate"]
                                                                           == frame["ref_sample_rate"])
    frame = frame[~own & comparable(frame["setup"], frame["ref_setup"])].copy()
    frame["roc_auc_diff"] = frame["roc_auc_mean"] - frame["ref_roc_auc_mean"]
    return paper_order(frame.drop(columns=["setup", "ref_setup"]), ("tag",))


def _matrix(delta: pd.DataFrame, fields: tuple[str, ...], label) -> pd.DataFrame:
    """Tags x labelled configurations of `delta`'s `roc_auc_diff` in percentage points: `label(*fields)`
    names a column, rows sharing a label are averaged; columns in the paper's order, rows sorted by their
    worst drop (most negative first)."""
    if delta.empty:
        return pd.DataFrame()
    ordered = paper_order(delta[list(fields)].drop_duplicates())
    columns = list(dict.fromkeys(label(*row) for row in ordered.itertuples(index=False)))
    labelled = delta.assign(config=[label(*row) for row in delta[list(fields)].itertuples(index=False)])
    matrix = 100 * labelled.pivot_table(index="tag", columns="config", values="roc_auc_diff", aggfunc="mean")
    matrix = matrix.reindex(columns=columns)
    worst = matrix.min(axis=1, skipna=True)
    return matrix.loc[worst.sort_values(kind="stable").index]


def per_tag_matrix(delta: pd.DataFrame) -> pd.DataFrame:
    """Tags x configurations ("48/x1") of one model's per-tag ROC-AUC difference in percentage points.

    Averaged over the model's conditions (sample rate x log type, each against its own reference);
    rows sorted by their worst drop (most negative first), columns in the paper's order.
    """
    return _matrix(delta, ("n_mels", "hop_multiplier"), config_label)


def per_tag_matrix_global(delta: pd.DataFrame) -> pd.DataFrame:
    """Tags x configurations ("12k 96/x1 log") of one model's `per_tag_delta_global` in percentage points:
    one column per configuration (sample rate, mel bands / hop, log type), nothing averaged; rows sorted
    by their worst drop, columns in the paper's order (sample rate, log before dB, mel bands, hop)."""
    return _matrix(delta, ("sample_rate", "n_mels", "hop_multiplier", "log"), input_label)


# --- smaller input or narrower network, at matched compute --------------------------------------------------

FAMILY = ("dataset", "arch", "sample_rate", "log")
"""The unit of the matched-GMAC comparison: one arch on one dataset, sample rate and log type, across widths."""
TIE_PP = 0.1
"""Matched-GMAC verdicts: ROC-AUC means closer than this (percentage points), or than the larger of the two
configurations' standard deviations over seeds, are a tie."""
MATCHED_GMAC_COLUMNS = (
    *FAMILY, "ref_width", "ref_gmac", "ref_roc_auc_mean", "ref_roc_auc_std", "ref_n_seeds",
    "width", "gmac", "roc_auc_mean", "roc_auc_std", "n_seeds", "roc_auc_diff",
    "input_n_mels", "input_hop_multiplier", "input_gmac", "input_roc_auc_mean", "input_roc_auc_std", "input_n_seeds",
    "input_roc_auc_diff", "gmac_ratio", "tie_margin", "loses_less", "welch_t", "welch_p")


def welch_t_test(a: Iterable[float], b: Iterable[float]) -> tuple[float, float]:
    """Welch's t-test (unequal variances): (t, two-sided p); NaN when either sample has fewer than 2 values,
    or both are constant."""
    return _t_test(a, b, equal_var=False)


def _closest_gmac(gmac: float, candidates: pd.DataFrame) -> pd.Series:
    """The candidate whose GMAC is closest to `gmac` in log ratio, |log(gmac / candidate)|; ties: the cheaper."""
    distance = np.abs(np.log(gmac / candidates["gmac"].to_numpy(dtype=float)))
    nearest = np.isclose(distance, distance.min(), rtol=1e-9, atol=1e-12)
    tied = candidates[nearest]
    return tied.iloc[int(np.argmin(tied["gmac"].to_numpy(dtype=float)))]


def matched_gmac(aggregated: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """matched_gmac.csv: at equal compute, does reducing the input beat reducing the network?

    Per family (dataset, arch, sample rate, log type) with W its largest width: the *narrower networks* are
    the reference input (96 mels, hop x1) at widths below W, the *smaller inputs* every other input at
    width W, and the *full reference* 96/x1 at W (`ref_*`; NaN when it was not run). Each narrower network
    is paired with the smaller input whose GMAC per clip is closest in log ratio (ties: the cheaper), one
    row per narrower network; families without both kinds have no rows.

    Accuracies are fractions, as in aggregate.csv: `roc_auc_diff` / `input_roc_auc_diff` = mean - the full
    reference's mean; `gmac_ratio` = narrower network's GMAC / smaller input's. `loses_less` is "smaller
    input" or "narrower network" (the higher mean ROC-AUC), or "tie" when the two means differ by at most
    `tie_margin` = the larger of their standard deviations over seeds and TIE_PP (0.1 pp). `welch_t` /
    `welch_p`: Welch's t-test between the two configurations' seeds (NaN with fewer than 2 on either side).
    """
    rows = []
    usable = aggregated[np.isfinite(aggregated["gmac"].to_numpy(dtype=float)) & (aggregated["gmac"] > 0)]
    usable = usable.merge(setup_labels(summary), on=list(KEY), how="left")
    usable = usable[usable["setup"] != MIXED]  # only configurations trained on one setup are compared ...
    seeds = {key: group["roc_auc"] for key, group in summary.groupby(list(KEY), sort=False, dropna=False)}
    for _, family in usable.groupby([*FAMILY, "setup"], sort=False, dropna=False):  # ... within that setup
        top = family["width"].max()
        reference_input = is_reference(family)
        narrower = family[reference_input & (family["width"] < top)]
        smaller = family[~reference_input & (family["width"] == top)]
        if narrower.empty or smaller.empty:
            continue
        full = family[reference_input & (family["width"] == top)]
        ref = full.iloc[0] if not full.empty else None
        ref_mean = ref["roc_auc_mean"] if ref is not None else np.nan
        for _, net in narrower.sort_values("width", ascending=False, kind="stable").iterrows():
            pair = _closest_gmac(net["gmac"], smaller)
            margin = max(np.nan_to_num(net["roc_auc_std"]), np.nan_to_num(pair["roc_auc_std"]), TIE_PP / 100)
            gap = pair["roc_auc_mean"] - net["roc_auc_mean"]
            verdict = "tie" if abs(gap) <= margin + 1e-12 else "smaller input" if gap > 0 else "narrower network"
            t, p = welch_t_test(seeds.get(tuple(net[list(KEY)]), []), seeds.get(tuple(pair[list(KEY)]), []))
            rows.append({
                **{name: net[name] for name in FAMILY}, "ref_width": top,
                **{f"ref_{name}": (ref[name] if ref is not None else np.nan)
                   for name in ("gmac", "roc_auc_mean", "roc_auc_std", "n_seeds")},
                **{name: net[name] for name in ("width", "gmac", "roc_auc_mean", "roc_auc_std", "n_seeds")},
                "roc_auc_diff": net["roc_auc_mean"] - ref_mean,
                **{f"input_{name}": pair[name] for name in ("n_mels", "hop_multiplier", "gmac", "roc_auc_mean",
                                                            "roc_auc_std", "n_seeds")},
                "input_roc_auc_diff": pair["roc_auc_mean"] - ref_mean,
                "gmac_ratio": net["gmac"] / pair["gmac"], "tie_margin": margin, "loses_less": verdict,
                "welch_t": t, "welch_p": p,
            })
    return pd.DataFrame(rows, columns=list(MATCHED_GMAC_COLUMNS))
