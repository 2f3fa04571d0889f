"""Figures of the report, drawn from the tables of `bench.report` (aggregate rows, per-tag matrix) only.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global state, no GUI;
PNGs are rendered by Agg) and `save` writes it as PNG and PDF atomically. Print rules: every text is
>= 8 pt at the saved size, and series are told apart by marker shape, fill and line style, so the
figures survive grayscale printing; colour only repeats what shape already says.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter

from bench.report import (
    LOG_ORDER,
    METRIC_NAMES,
    METRICS,
    REFERENCE,
    config_label,
    paper_order,
    rate_label,
)
from bench.store import atomic_write_bytes

STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "figure.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False,
    "pdf.fonttype": 42, "savefig.dpi": 200, "lines.linewidth": 1.0, "lines.markersize": 4.5,
}
"""Font sizes in pt at the saved size; pdf.fonttype 42 embeds TrueType (text stays text in the PDF)."""
PAGE_WIDTH = 7.0
"""Inches: a two-column paper's text width, the widest a figure should be printed."""
SERIES_STYLES = (
    {"marker": "o", "linestyle": "-", "color": "0.0", "mfc": "0.0"},
    {"marker": "s", "linestyle": "--", "color": "0.4", "mfc": "white"},
    {"marker": "^", "linestyle": ":", "color": "0.2", "mfc": "0.2"},
    {"marker": "D", "linestyle": "-.", "color": "0.4", "mfc": "white"},
)
"""Black/grey, filled/hollow, solid/dashed: series stay apart in grayscale."""
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "*", "p")
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically (rendered in memory, then `bench.store`)."""
    stem = Path(stem)
    written = []
    with mpl.rc_context(STYLE):
        for fmt in ("png", "pdf"):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, bbox_inches="tight", pad_inches=0.03)
            written.append(atomic_write_bytes(stem.with_name(f"{stem.name}.{fmt}"), buffer.getvalue()))
    return written


def rate_khz(sample_rate: float) -> str:
    return f"{sample_rate / 1000:g} kHz"


def _configs(frame: pd.DataFrame) -> list[tuple[int, int]]:
    ordered = paper_order(frame[["n_mels", "hop_multiplier"]].drop_duplicates())
    return list(zip(ordered["n_mels"], ordered["hop_multiplier"], strict=True))


def _logs(frame: pd.DataFrame) -> list[str]:
    present = set(frame["log"])
    return [v for v in LOG_ORDER if v in present] + sorted(present - set(LOG_ORDER))


def _shade_reference(ax, configs: list[tuple[int, int]]) -> None:
    reference = (REFERENCE["n_mels"], REFERENCE["hop_multiplier"])
    if reference in configs:
        x = configs.index(reference)
        ax.axvspan(x - 0.5, x + 0.5, color="0.9", zorder=0, lw=0)


def _segments(configs: list[tuple[int, int]]) -> list[list[int]]:
    """Runs of neighbouring configurations that share mel bands or hop (a sweep along one axis): lines
    join points only within a run, so no line suggests a trend between unrelated configurations."""
    runs = [[0]] if configs else []
    for i in range(1, len(configs)):
        (m0, h0), (m1, h1) = configs[i - 1], configs[i]
        if m0 == m1 or h0 == h1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _plot_series(ax, x: np.ndarray, y: np.ndarray, yerr: np.ndarray | None, slots: np.ndarray, runs, style: dict):
    """Markers (with error bars) at x, and lines joining points whose slots lie in the same run."""
    marker = {k: v for k, v in style.items() if k != "linestyle"}
    ax.errorbar(x, y, yerr=yerr, linestyle="none", capsize=2 if yerr is not None else 0, elinewidth=0.8, **marker)
    line = {k: v for k, v in style.items() if k in ("color", "linestyle")}
    for run in runs:
        inside = np.isin(slots, run)
        if inside.sum() > 1:
            ax.plot(x[inside], y[inside], **line)


def _plain_log_ticks(axis) -> None:
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def fig1(aggregated: pd.DataFrame, title: str = "") -> Figure:
    """The paper's Fig. 1 for one model: mean +- std of each metric per configuration, and GMAC.

    One panel per (metric, sample rate) with one series per log type (marker and line style), then a
    GMAC panel (log scale) with one series per sample rate. The x axis lists configurations "mels/xhop"
    in the paper's order; lines join only sweeps along one axis; the reference configuration is shaded.
    """
    rates = sorted(aggregated["sample_rate"].unique())
    logs, configs = _logs(aggregated), _configs(aggregated)
    position = {c: i for i, c in enumerate(configs)}
    runs = _segments(configs)
    n_panels = len(METRICS) * len(rates) + 1
    width = min(PAGE_WIDTH, max(3.5, 1.3 + 0.28 * len(configs)))
    # log types keep their style whichever are present: log = filled circles, dB = hollow squares
    log_styles = {log: SERIES_STYLES[LOG_ORDER.index(log) if log in LOG_ORDER else 2 + j % 2]
                  for j, log in enumerate(logs)}
    rate_styles = {rate: SERIES_STYLES[(2 + k) % len(SERIES_STYLES)] | {"color": "0.0" if k % 2 == 0 else "0.4"}
                   for k, rate in enumerate(rates)}
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width, 0.4 + 1.45 * n_panels), layout="constrained")
        axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
        offsets = np.linspace(-0.12, 0.12, len(logs)) if len(logs) > 1 else [0.0]
        for k, (metric, rate) in enumerate((m, r) for m in METRICS for r in rates):
            ax = axes[k]
            for j, log in enumerate(logs):
                rows = aggregated[(aggregated["sample_rate"] == rate) & (aggregated["log"] == log)]
                slots = np.array([position[c] for c in zip(rows["n_mels"], rows["hop_multiplier"], strict=True)])
                if len(rows):
                    _plot_series(ax, slots + offsets[j], 100 * rows[f"{metric}_mean"].to_numpy(),
                                 100 * rows[f"{metric}_std"].fillna(0).to_numpy(), slots, runs, log_styles[log])
            ax.set_ylabel(f"{METRIC_NAMES[metric]} (%)\n{rate_khz(rate)}")
            ax.grid(axis="y", color="0.85", lw=0.5)
            _shade_reference(ax, configs)
        ax = axes[-1]
        for rate in rates:
            rows = aggregated[aggregated["sample_rate"] == rate].drop_duplicates(["n_mels", "hop_multiplier"])
            slots = np.array([position[c] for c in zip(rows["n_mels"], rows["hop_multiplier"], strict=True)])
            _plot_series(ax, slots, rows["gmac"].to_numpy(), None, slots, runs, rate_styles[rate])
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_ylabel("GMAC per clip")
        ax.grid(axis="y", which="major", color="0.85", lw=0.5)
        ax.legend(handles=[_handle(rate_khz(rate), rate_styles[rate]) for rate in rates], loc="center left",
                  bbox_to_anchor=(1.0, 0.5), frameon=False)
        _shade_reference(ax, configs)
        ax.set_xticks(range(len(configs)), [config_label(m, h) for m, h in configs],
                      rotation=90 if len(configs) > 8 else 0)
        ax.set_xlim(-0.6, len(configs) - 0.4)
        ax.set_xlabel("configuration (mel bands / hop multiplier); shaded: reference")
        fig.legend(handles=[_handle(log, log_styles[log]) for log in logs], loc="outside lower center",
                   ncols=len(logs), frameon=False, title="log compression (accuracy panels)")
        fig.suptitle(f"{title}: mean ± std over seeds" if title else "mean ± std over seeds", x=0.02, ha="left")
    return fig


def _handle(label: str, style: dict) -> Line2D:
    return Line2D([], [], label=label, **style)


def _series_styles(aggregated: pd.DataFrame) -> dict:
    """(arch, width, sample_rate) -> (marker, colour): the marker shape alone tells the series apart."""
    keys = aggregated[["arch", "width", "sample_rate"]].drop_duplicates().sort_values(["arch", "width",
                                                                                       "sample_rate"])
    models = list(dict.fromkeys(zip(keys["arch"], keys["width"], strict=True)))
    return {(a, w, r): (MARKERS[i % len(MARKERS)], COLORS[models.index((a, w)) % len(COLORS)])
            for i, (a, w, r) in enumerate(keys.itertuples(index=False))}


def tradeoff(aggregated: pd.DataFrame, cost: str = "gmac") -> Figure:
    """Mean ROC-AUC (± std) against cost per clip (log axis), with the Pareto front drawn and labelled.

    `cost` is "gmac" or "storage_bytes"; the front is the aggregate's `pareto_gmac` / `pareto_storage`
    flag (highest accuracy for at most this cost), drawn as a staircase. Its configurations are numbered
    on the plot (1 = cheapest) and named in a key beside it. Marker shape: arch, width and sample rate;
    filled: log, hollow: dB. One panel per dataset.
    """
    flag = {"gmac": "pareto_gmac", "storage_bytes": "pareto_storage"}[cost]
    datasets = list(dict.fromkeys(aggregated["dataset"]))
    styles = _series_styles(aggregated)
    several_models = len({(a, w) for a, w, _ in styles}) > 1
    key = []
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(PAGE_WIDTH, 3.4 + 0.6 * (len(datasets) - 1)), layout="constrained")
        axes = fig.subplots(len(datasets), 1, squeeze=False)[:, 0]
        for ax, dataset in zip(axes, datasets, strict=True):
            rows = aggregated[aggregated["dataset"] == dataset]
            ax.errorbar(rows[cost], 100 * rows["roc_auc_mean"], yerr=100 * rows["roc_auc_std"].fillna(0), fmt="none",
                        ecolor="0.7", elinewidth=0.6, zorder=1)
            for (arch, width, rate), (marker, color) in styles.items():
                for log in _logs(rows):
                    points = rows[(rows["arch"] == arch) & (rows["width"] == width) & (rows["sample_rate"] == rate)
                                  & (rows["log"] == log)]
                    if not points.empty:
                        ax.plot(points[cost], 100 * points["roc_auc_mean"], linestyle="none", marker=marker, ms=5,
                                mec=color, mfc="white" if log == "dB" else color, zorder=3)
            front = rows[rows[flag]].sort_values([cost, "roc_auc_mean"])
            ax.step(front[cost], 100 * front["roc_auc_mean"], where="post", color="black", lw=1, ls="--", zorder=2)
            for r in front.itertuples(index=False):
                number = len(key) + 1
                ax.annotate(str(number), (getattr(r, cost), 100 * r.roc_auc_mean), xytext=(-3, 5),
                            textcoords="offset points", ha="right", fontsize=8, fontweight="bold", zorder=4)
                name = (f"{r.arch} " if several_models else "") + f"{config_label(r.n_mels, r.hop_multiplier)} " \
                    f"{rate_label(r.sample_rate)} {r.log}"
                value = f"{r.gmac:.2g} GMAC" if cost == "gmac" else f"{r.storage_bytes / 1e3:.0f} kB"
                key.append(f"{number}: {name} ({value}, {100 * r.roc_auc_mean:.2f} %)")
            ax.set_xscale("log")
            if cost == "storage_bytes":
                ax.xaxis.set_major_formatter(EngFormatter(unit="B"))
            else:
                _plain_log_ticks(ax.xaxis)
            ax.set_xlabel("GMAC per clip (log scale)" if cost == "gmac"
                          else "storage per clip, float32 mel spectrogram (log scale)")
            ax.set_ylabel("ROC-AUC (%)")
            if len(datasets) > 1:
                ax.set_title(dataset, loc="left")
            ax.grid(color="0.9", lw=0.5, which="major")
            ax.margins(x=0.06, y=0.08)
        handles = [Line2D([], [], ls="none", marker=m, mec=c, mfc=c, ms=5,
                          label=(f"{a} w{w:g} " if several_models else "") + rate_khz(r))
                   for (a, w, r), (m, c) in styles.items()]
        handles += [Line2D([], [], ls="none", marker="o", mec="0.3", mfc="0.3", ms=5, label="log (filled)"),
                    Line2D([], [], ls="none", marker="o", mec="0.3", mfc="white", ms=5, label="dB (hollow)"),
                    Line2D([], [], color="black", ls="--", lw=1, label="Pareto front")]
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
        if key:
            fig.legend(handles=[Line2D([], [], ls="none", label=text) for text in key], loc="outside right lower",
                       title="Pareto front (numbered)", alignment="left", handlelength=0, handletextpad=0,
                       frameon=False)
    return fig


def per_tag(matrix: pd.DataFrame, title: str = "") -> Figure:
    """Heatmap of one model's per-tag ROC-AUC change (percentage points) against the reference.

    `matrix` is `report.per_tag_matrix`: tags (rows, worst drop first) x configurations (columns). The
    colour map is monotonic in lightness (darker = larger drop) and symmetric about 0, so it reads in
    grayscale; tags missing for a configuration are light grey.
    """
    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    limit = max(0.5, float(np.abs(finite).max())) if finite.size else 1.0  # symmetric: 0 is the middle shade
    n_tags, n_configs = values.shape
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(min(PAGE_WIDTH, max(3.4, 2.4 + 0.24 * n_configs)), max(2.8, 1.4 + 0.135 * n_tags)),
                     layout="constrained")
        ax = fig.subplots()
        cmap = mpl.colormaps["viridis"].with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap,
                          norm=Normalize(-limit, limit), interpolation="nearest")
        ax.set_xticks(range(n_configs), list(matrix.columns), rotation=90 if n_configs > 6 else 0)
        ax.set_yticks(range(n_tags), list(matrix.index))
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
        ax.set_xlabel("configuration (mel bands / hop multiplier)")
        reference = config_label(REFERENCE["n_mels"], REFERENCE["hop_multiplier"])
        colorbar = fig.colorbar(image, ax=ax, shrink=0.6 if n_tags > 20 else 1.0, aspect=25)
        colorbar.set_label(f"ΔROC-AUC vs {reference} (pp)")
        heading = "per-tag ROC-AUC change, worst drop first"
        ax.set_title(f"{title}\n{heading}" if title else heading, loc="left")
    return fig
