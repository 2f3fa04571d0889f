"""Tables and figure of `bench transfer`'s tidy table (one row per upstream model and classifier).

Runs of one configuration trained on the same data (seeds) are aggregated: the downstream score is the
mean over seeds of each run's mean over folds; its spread is the standard deviation over seeds where
there are several, else over the folds of the one run (the caption says which). Imported models stay
one row each; the untrained controls (`trained` false: a configuration's network with initial weights,
one per run seed) are aggregated over their seeds like the runs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report.columns import CONFIG, SETUP, as_text, config_label, rate_label
from bench.report.figures import PAGE_WIDTH, STYLE, log_axis, place_labels, rate_khz, save, series_styles

SCORES = ("balanced_accuracy", "roc_auc")
SCORE_NAMES = {"balanced_accuracy": "balanced accuracy", "roc_auc": "ROC-AUC"}


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (or imported model), layer and classifier."""
    frame = frame.copy()
    frame["group"] = np.where(frame["run_id"].isna(), frame["model"], "")
    frame["trained"] = frame["trained"].astype(bool) if "trained" in frame else True
    keys = ["group", "dataset", *CONFIG, *SETUP, "trained", "layer", "classifier"]
    rows = []
    for key, runs in frame.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, key, strict=True))
        n = len(runs)
        row.update(n_seeds=n, models=" ".join(runs["model"]), gmac=runs["gmac"].mean(),
                   tagging_roc_auc=runs["tagging_roc_auc"].astype(float).mean())
        for score in SCORES:
            row[score] = runs[f"{score}_mean"].mean()
            row[f"{score}_std"] = runs[f"{score}_mean"].std(ddof=1) if n > 1 else runs[f"{score}_std"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["classifier", "trained", "gmac"], ascending=[True, False, False],
                                          ignore_index=True)


def _name(row, setups: bool = False) -> str:
    """The row's model; with `setups` (a table whose runs were trained on different data), its data too."""
    if row.group:
        return str(row.group)
    width = f" w{row.width:g}" if pd.notna(row.width) else ""
    control = "" if row.trained else " (untrained)"
    data = ""
    if setups and row.trained:  # a control is the architecture alone, trained on nothing
        parts = [str(row.dataset)] if pd.notna(row.dataset) else []
        parts += [f"{row.clip_seconds:g} s"] if pd.notna(row.clip_seconds) else []
        parts += [f"{int(row.n_tags)} tags"] if pd.notna(row.n_tags) else []
        parts += [str(row.split)] if pd.notna(row.split) and row.split != "default" else []
        parts += [str(row.data)] if pd.notna(row.data) and row.data != "default" else []
        data = f" [{', '.join(parts) or 'data not recorded'}]"
    return (f"{row.arch}{width} {rate_label(row.sample_rate)} {config_label(row.n_mels, row.hop_multiplier)} "
            f"{row.log}{control}{data}")


def _spread_note(aggregated: pd.DataFrame) -> str:
    runs = set(aggregated["n_seeds"].astype(int))
    if runs == {1}:
        return "1 run each: mean ± std over folds"
    if len(runs) == 1:
        return f"mean ± std over {runs.pop()} seeds"
    return "mean ± std over the seeds of a row with several runs, over the folds of a row with one"


def transfer_markdown(frame: pd.DataFrame, task: str) -> str:
    agg = aggregate(frame)
    runs = agg[(agg["group"] == "") & agg["trained"]]  # controls were trained on nothing
    setups = len(as_text(runs[["dataset", *SETUP]]).drop_duplicates()) > 1
    lines = [f"# Transfer to `{task}`", "",
             f"Embeddings (mean over patches) -> standardised -> classifier, cross-validated; "
             f"{_spread_note(agg)}. Upstream: GMAC per clip and tagging test ROC-AUC.", ""]
    for classifier, rows in agg.groupby("classifier", sort=False):
        lines += [f"## {classifier}", "",
                  "| model | layer | runs | GMAC | tagging ROC-AUC (%) | balanced accuracy (%) | ROC-AUC (%) |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in rows.itertuples(index=False):
            tagging = f"{100 * r.tagging_roc_auc:.2f}" if np.isfinite(r.tagging_roc_auc) else "-"
            lines.append(f"| {_name(r, setups)} | {r.layer} | {r.n_seeds} | {r.gmac:.3g} | {tagging} | "
                         f"{100 * r.balanced_accuracy:.2f} ± {100 * np.nan_to_num(r.balanced_accuracy_std):.2f} | "
                         f"{100 * r.roc_auc:.2f} ± {100 * np.nan_to_num(r.roc_auc_std):.2f} |")
        lines.append("")
    return "\n".join(lines)


def transfer_figure(frame: pd.DataFrame, task: str, stem: str | Path, n_classes: int = 2, n_files: int | None = None,
                    score: str = "balanced_accuracy") -> Figure:
    """Downstream `score` against the upstream model's GMAC per clip (log axis) and against its tagging
    ROC-AUC, one row of panels per classifier; saved as `stem`.png and .pdf. Marker: arch, width and
    sample rate; filled: log, hollow: dB; every point labelled with its mel bands / hop."""
    agg = aggregate(frame)
    agg = agg.assign(width=agg["width"].fillna(1.0))
    styles = series_styles(agg)
    classifiers = list(dict.fromkeys(agg["classifier"]))
    chance = 1.0 / n_classes if score == "balanced_accuracy" else 0.5
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(PAGE_WIDTH, 0.6 + 3.0 * len(classifiers)), layout="constrained")
        axes = fig.subplots(len(classifiers), 2, squeeze=False, sharey="row")
        pending = []
        for (left, right), classifier in zip(axes, classifiers, strict=True):
            rows = agg[agg["classifier"] == classifier]
            for ax, x_column, x_name in ((left, "gmac", "upstream GMAC per clip (log scale)"),
                                         (right, "tagging_roc_auc", "upstream tagging ROC-AUC (%)")):
                x = rows[x_column].to_numpy(dtype=float) * (100 if x_column == "tagging_roc_auc" else 1)
                y = 100 * rows[score].to_numpy(dtype=float)
                spread = 100 * rows[f"{score}_std"].to_numpy(dtype=float)
                ok = np.isfinite(x) & np.isfinite(y)
                if x_column == "gmac" and ok.any():
                    ax.set_xscale("log")
                    log_axis(ax.xaxis, x[ok].min() / 1.35, x[ok].max() * 1.35)
                has = ok & np.isfinite(spread)
                ax.errorbar(x[has], y[has], yerr=spread[has], fmt="none", ecolor="0.7", elinewidth=0.6, zorder=1)
                for i, r in enumerate(rows.itertuples(index=False)):
                    if not ok[i]:
                        continue
                    if not r.trained:  # the control: the same network, untrained
                        ax.plot(x[i], y[i], linestyle="none", marker="x", ms=5, color="0.45", zorder=2)
                        continue
                    marker, color = styles[(r.arch, r.width, r.sample_rate)]
                    ax.plot(x[i], y[i], linestyle="none", marker=marker, ms=5, mec=color,
                            mfc="white" if r.log == "dB" else color, zorder=3)
                ax.axhline(100 * chance, color="0.5", lw=0.6, ls=":", zorder=0)
                labels = [(x[i], y[i], str(r.group) if r.group else config_label(r.n_mels, r.hop_multiplier), False)
                          for i, r in enumerate(rows.itertuples(index=False)) if ok[i] and r.trained]
                if labels:
                    ax.margins(x=0.08, y=0.15)
                    whiskers = [np.array([[a, b - c], [a, b + c]]) for a, b, c in zip(x[has], y[has], spread[has],
                                                                                        strict=True)]
                    pending.append((ax, labels, np.column_stack([x[ok], y[ok]]), whiskers))
                ax.set_xlabel(x_name)
                ax.set_ylabel(f"{task}: {SCORE_NAMES[score]} (%)" + (f", {classifier}" if len(classifiers) > 1
                                                                        else ""))
                ax.grid(color="0.9", lw=0.5)
        several = len({(a, w) for a, w, _ in styles}) > 1
        handles = [Line2D([], [], ls="none", marker=m, mec=c, mfc=c, ms=5,
                          label=(f"{a} w{w:g} " if several else "") + rate_khz(r))
                   for (a, w, r), (m, c) in styles.items()]
        handles += [Line2D([], [], ls="none", marker="o", mec="0.3", mfc="white", ms=5, label="dB (hollow)"),
                    Line2D([], [], color="0.5", ls=":", lw=0.6, label="chance")]
        if not agg["trained"].all():
            handles.append(Line2D([], [], ls="none", marker="x", color="0.45", ms=5, label="untrained (control)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
        files = f"{n_files} files, " if n_files else ""
        folds = f"{int(frame['folds'].max())}-fold CV" if "folds" in frame and len(frame) else ""
        fig.suptitle(f"downstream {task} ({SCORE_NAMES[score]}) against upstream cost and tagging accuracy\n"
                     f"{files}{folds}; {_spread_note(agg)}", x=0.02, ha="left")
        fig.draw_without_rendering()  # the labels go where the laid-out axes leave room
        for ax, labels, markers, bars in pending:
            place_labels(ax, labels, markers, whiskers=bars)
    save(fig, stem)
    return fig
