"""Figures of the report, drawn from the tables of `bench.report.report` (aggregate rows, per-tag matrix) only.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global state, no GUI; PNGs
are rendered by Agg); `rendered` gives its PNG and PDF bytes, `save` writes them atomically. Print
rules: every text is >= 8 pt at the saved size, and series are told apart by marker shape, fill and line
style, so the figures survive grayscale printing; colour only repeats what shape already says (the
per-tag heatmaps write each change in its cell where they have room). Readability rules: every tick
label of an axis is in one unit (plain numbers, or kB throughout), every point is keyed in a legend or
labelled, each figure states its seed count and clip length (`caption`; "mean ± std" and error bars only
with more than one seed), and no Fig. 1 panel holds a single point.
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, fontManager
from matplotlib.lines import Line2D
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from bench.core.store import atomic_write_bytes
from bench.core.text import invisible
from bench.report.columns import (
    LOG_ORDER,
    METRIC_NAMES,
    METRICS,
    REFERENCE,
    config_label,
    rate_label,
    significant,
    width_text,
)
from bench.report.statistics import front_groups, off_reference

STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "figure.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False,
    "pdf.fonttype": 42, "savefig.dpi": 200, "lines.linewidth": 1.0, "lines.markersize": 4.5,
    "text.parse_math": False,
}
"""Font sizes in pt at the saved size; pdf.fonttype 42 embeds TrueType (text stays text in the PDF). No text
is TeX: labels are the user's names (a tag "money $$", a spec or file name), drawn as written; as mathtext
two $ had been a formula, or a ValueError that stopped the whole report."""
PAGE_WIDTH = 7.0
"""Inches: a two-column paper's text width, the widest a figure should be printed."""
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h", "*", "p")
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
          "tab:cyan", "tab:gray")
"""Ten: the six usual hops and up to four others each get their own colour."""
HOPS = (1, 2, 3, 4, 5, 10)
"""The paper's hop multipliers: each keeps its marker (and colour) in every panel and every Fig. 1."""
LOG_STYLES = {"log": {"linestyle": "-", "filled": True}, "dB": {"linestyle": "--", "filled": False}}
"""Fill and line style of a log type, the same in every panel: log = filled, solid; dB = hollow, dashed."""
DODGE = 1.07
"""Fig. 1: with both log types, dB points sit this factor right of the log points (log x axis), so that
a dB marker does not cover its log twin (where the two score alike, it may still sit on the log line)."""


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically (rendered in memory, then `bench.core.store`)."""
    stem = Path(stem)
    return [atomic_write_bytes(stem.with_name(name), data) for name, data in rendered(fig, stem.name).items()]


def rendered(fig: Figure, stem: str) -> dict[str, bytes]:
    """`fig` as the files `stem`.png and `stem`.pdf: file name -> bytes. Matplotlib's warning for each
    character no font has is left out: the report says once which tag names have them (`fonts_for`). No
    creation date in the PDF: the same results give the same files."""
    files = {}
    with mpl.rc_context(STYLE), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        for fmt, metadata in (("png", None), ("pdf", {"CreationDate": None})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, bbox_inches="tight", pad_inches=0.03, metadata=metadata)
            files[f"{stem}.{fmt}"] = buffer.getvalue()
    return files


PLACEHOLDER_FONTS = frozenset({"Last Resort High-Efficiency"})
"""Installed fonts whose glyphs are placeholders (one box per Unicode block), not letters."""


@functools.cache
def _characters(path: str) -> frozenset[int]:
    """The code points the font file at `path` has glyphs for."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file FreeType cannot read draws nothing
        return frozenset()


def fonts_for(texts: Iterable[str]) -> tuple[list[str], list[str]]:
    """(families, undrawn) for drawing `texts` (a dataset's tag names, in any script): `families` empty
    where the figures' font has every character they use, else that font's family and then installed
    fonts that have characters it lacks, the one having most of those first (matplotlib draws each
    character in the first family that has it); `undrawn`, the texts with characters no installed font
    has, which show as empty boxes."""
    main = FontProperties()
    # a control or format character (an escape sequence's ESC, a zero-width space) has no glyph in any
    # font: nothing to install for it
    wanted = {ord(ch) for text in texts for ch in str(text) if not ch.isspace() and not invisible(ch)}
    missing = wanted - _characters(findfont(main))
    if not missing:
        return [], []
    covers: dict[str, set[int]] = {}  # each family's upright regular face: what its text is drawn in
    for entry in fontManager.ttflist:
        if entry.name not in PLACEHOLDER_FONTS and entry.style == "normal" and entry.weight in (400, "normal"):
            covers.setdefault(entry.name, set()).update(_characters(entry.fname) & missing)
    families = list(main.get_family())
    while missing:
        name = max(covers, key=lambda n: (len(covers[n] & missing), n), default=None)
        if name is None or not covers[name] & missing:
            break
        families.append(name)
        missing -= covers[name]
    undrawn = [str(text) for text in texts if missing & {ord(ch) for ch in str(text)}]
    return families, undrawn


def rate_khz(sample_rate: float) -> str:
    return f"{sample_rate / 1000:g} kHz"


def caption(frame: pd.DataFrame, spread: bool = True) -> str:
    """Seeds and clip length of aggregate rows, e.g. "mean ± std over 3 seeds, 29.1 s clips" or "1 seed,
    8 s clips": "mean ± std" only when some configuration has more than one seed, "mean" alone for a
    figure that draws no spread (`spread` False)."""
    seeds = pd.to_numeric(frame["n_seeds"] if "n_seeds" in frame else pd.Series([], dtype=float),
                          errors="coerce").dropna()
    n = int(seeds.max()) if len(seeds) else 0
    if n > 1:
        fewer = int((seeds < n).sum())
        fewer_text = f" ({fewer} configuration{'s' if fewer > 1 else ''} with fewer)" if fewer else ""
        text = f"{'mean ± std' if spread else 'mean'} over {n} seeds{fewer_text}"
    else:
        text = f"{n} seed{'' if n == 1 else 's'}"
    clips = sorted(set(pd.to_numeric(frame["clip_seconds"], errors="coerce").dropna())) \
        if "clip_seconds" in frame else []
    # no-break spaces: a wrapped title keeps "4 s clips" on one line
    clip_text = " / ".join(f"{c:g}\N{NO-BREAK SPACE}s" for c in clips) + "\N{NO-BREAK SPACE}clips" if clips \
        else "clip length not recorded"
    return f"{text}, {clip_text}"


def _heading(lines: list[str], width_in: float) -> str:
    """Title lines wrapped to a figure `width_in` inches wide (8-9 pt text)."""
    chars = max(30, int(width_in / 0.068))
    # file names (a split file's) are broken only where they are longer than a line, never at a hyphen
    return "\n".join(part for line in lines for part in textwrap.wrap(line, chars, break_on_hyphens=False))


def _logs(frame: pd.DataFrame) -> list[str]:
    present = set(frame["log"])
    return [v for v in LOG_ORDER if v in present] + sorted(present - set(LOG_ORDER))


def _decimal(value: float) -> str:
    """A tick value as a plain decimal: 0.002, 0.5, 20 (never 2e-03 or 2x10^1)."""
    return np.format_float_positional(float(f"{value:.6g}"), trim="-")


def _nice(mantissa: float, exponent: int) -> float:
    return float(f"{mantissa}e{exponent}")


def log_ticks(lo: float, hi: float) -> tuple[list[float], float, float]:
    """(major ticks, low limit, high limit) for a log axis that shows [lo, hi]: 1-2-5 values (1-3 when
    they are more than 5, decades when those are more than 6, 1-1.5-2-3-5-7 when 1-2-5 leaves fewer
    than 2). When even those leave fewer than 2, the limits widen to the 1-2-5 values around [lo, hi],
    so an axis always has 2 labelled ticks."""
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        return [], lo, hi
    exponents = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)

    def candidates(subs) -> list[float]:
        return sorted(_nice(m, e) for e in exponents for m in subs)

    def inside(subs) -> list[float]:
        return [t for t in candidates(subs) if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]

    ticks = inside((1, 2, 5))
    if len(ticks) > 5:  # long decimal labels (0.0005, 0.001) need room: 1-3 steps, else decades
        ticks = inside((1, 3))
    if len(ticks) > 6:
        ticks = inside((1,))
        ticks = ticks[::math.ceil(len(ticks) / 7)]
    if len(ticks) >= 2:
        return ticks, lo, hi
    ticks = inside((1, 1.5, 2, 3, 5, 7))
    if len(ticks) >= 2:
        return ticks, lo, hi
    coarse = candidates((1, 2, 5))
    lo = max(t for t in coarse if t <= lo * (1 + 1e-9))
    hi = min(t for t in coarse if t >= hi * (1 - 1e-9))
    return [t for t in coarse if lo <= t <= hi], lo, hi


def log_axis(axis, lo: float, hi: float, unit: str = "") -> None:
    """Log scale over [lo, hi] with `log_ticks`; every label in one unit ("" = plain number, "kB" = bytes
    / 1000); minor ticks unlabelled."""
    ticks, lo, hi = log_ticks(lo, hi)
    if unit == "kB":
        formatter = FuncFormatter(lambda v, _: f"{_decimal(v / 1e3)} kB")
    else:
        formatter = FuncFormatter(lambda v, _: _decimal(v))
    axis.axes.set_xlim(lo, hi) if axis is axis.axes.xaxis else axis.axes.set_ylim(lo, hi)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(formatter)
    axis.set_minor_locator(LogLocator(subs="auto"))
    axis.set_minor_formatter(NullFormatter())


# --- Fig. 1 ------------------------------------------------------------------------------------------------


def _hop_index(hop: int, hops: list[int]) -> int:
    extra = [h for h in hops if h not in HOPS]
    return HOPS.index(hop) if hop in HOPS else len(HOPS) + extra.index(hop)


def series_style(hop: int, log: str, hops: list[int]) -> dict:
    """Line2D keywords of the (hop multiplier, log type) series: marker shape and colour = hop (past the
    twelve shapes, the shapes repeat in other colours), fill and line style = log type (LOG_STYLES;
    another log type: half-filled, dotted)."""
    k = _hop_index(int(hop), [int(h) for h in hops])
    color = COLORS[k % len(COLORS)]
    log_style = LOG_STYLES.get(log, {"linestyle": ":", "filled": None})
    style = {"marker": MARKERS[k % len(MARKERS)], "color": color, "mec": color, "linestyle": log_style["linestyle"]}
    if log_style["filled"] is None:
        style |= {"mfc": color, "fillstyle": "bottom", "markerfacecoloralt": "white"}
    else:
        style["mfc"] = color if log_style["filled"] else "white"
    return style


def series_label(hop: int, log: str) -> str:
    return f"hop x{int(hop)}, {log}"


def _mel_axis(ax, mels: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(mels) / 1.3, max(mels) * 1.3)
    ax.xaxis.set_major_locator(FixedLocator(mels))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def _shade_reference(ax) -> None:
    mels = REFERENCE["n_mels"]
    ax.axvspan(mels / 1.12, mels * 1.12, color="0.92", zorder=0, lw=0)


def _legend_handles(frame: pd.DataFrame, hops: list[int]) -> list[Line2D]:
    present = set(zip(frame["hop_multiplier"], frame["log"], strict=True))
    return [Line2D([], [], label=series_label(hop, log), **series_style(hop, log, hops))
            for hop in hops for log in _logs(frame) if (hop, log) in present]


def _dropped_note(frame: pd.DataFrame) -> str:
    parts = [f"{rate_khz(r.sample_rate)} {config_label(r.n_mels, r.hop_multiplier)} {r.log}: "
             f"ROC-AUC {100 * r.roc_auc_mean:.2f} %" for r in frame.itertuples(index=False)]
    return "not drawn (one mel-band count at its sample rate; see tables.md): " + "; ".join(parts)


def failed_note(lost: int) -> list[str]:
    """The heading line of a figure that cannot draw `lost` configurations: every run of them failed."""
    plural = "s" if lost > 1 else ""
    return [f"not shown: {lost} configuration{plural} whose every run failed (runs_not_ok.csv)"] if lost else []


def fig1(aggregated: pd.DataFrame, title: str = "", lost: int = 0) -> Figure:
    """The paper's Fig. 1 for one model: each metric and GMAC against mel bands, one line per hop.

    Rows: ROC-AUC, PR-AUC (%), GMAC per clip (log scale); one column per sample rate, with a shared y range in
    each row. x: mel bands (log scale; shaded: the reference's 96). One series per (hop multiplier, log type):
    marker shape and colour say the hop, fill and line style the log type (filled solid: log, hollow dashed:
    dB), the same in every panel; dB points are set slightly right of the log points. GMAC does not depend on
    the log type: where both cost the same, the GMAC row draws the first (log) alone, and the heading says so.
    Whiskers: one std over seeds, only where there are several. A sample rate holding a single mel-band count
    (one configuration, or hops at one band count: no line over mel bands, every point at one x) gets no column
    (the caption names its configurations); when no sample rate holds two, the figure is one panel of ROC-AUC
    with every point labelled. `lost`: the model's configurations whose every run failed, said in the heading.
    """
    rates = sorted(aggregated["sample_rate"].unique())
    counts = aggregated.groupby("sample_rate")["n_mels"].nunique()
    kept = [rate for rate in rates if counts[rate] >= 2]
    header = ([title] if title else []) + [caption(aggregated)] + failed_note(lost)
    if not kept:
        return _fig1_single(aggregated, header)
    shown = aggregated[aggregated["sample_rate"].isin(kept)]
    dropped = aggregated[~aggregated["sample_rate"].isin(kept)]
    if not dropped.empty:
        header.append(_dropped_note(dropped))
    apart = off_reference(shown)
    if apart.any():  # a line through them would read as one experiment
        header.append(f"not joined (on other data than their {config_label(**REFERENCE)} reference, or seeds on "
                      "different data): "
                      + "; ".join(
            f"{rate_khz(r.sample_rate)} {config_label(r.n_mels, r.hop_multiplier)} {r.log}"
            for r in shown[apart].itertuples(index=False)))
    joined = pd.Series(~apart, index=shown.index)
    hops = sorted(int(h) for h in shown["hop_multiplier"].unique())
    logs = _logs(shown)
    mels = sorted(int(m) for m in shown["n_mels"].unique())
    dodge = {log: DODGE ** (j - (len(logs) - 1) / 2) for j, log in enumerate(logs)}
    panels = (*METRICS, "gmac")
    width = PAGE_WIDTH if len(kept) > 1 else 3.9
    drawn_once = False
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width, 1.3 + 1.75 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), len(kept), sharex=True, sharey="row", squeeze=False)
        for c, rate in enumerate(kept):
            at_rate = shown[shown["sample_rate"] == rate]
            for r, what in enumerate(panels):
                ax = axes[r, c]
                for hop in hops:
                    costs: dict[int, float] = {}  # n_mels -> GMAC drawn at this hop
                    for log in logs:
                        rows = at_rate[(at_rate["hop_multiplier"] == hop) & (at_rate["log"] == log)]
                        if what == "gmac":  # log compression costs nothing: a dB point would sit on the log line
                            alike = np.array([np.isclose(costs.get(int(m), np.nan), g, rtol=1e-9)
                                              for m, g in zip(rows["n_mels"], rows["gmac"], strict=True)], dtype=bool)
                            drawn_once |= bool(alike.any())
                            rows = rows[~alike]
                            costs.update(zip(rows["n_mels"].astype(int), rows["gmac"].astype(float), strict=True))
                        if rows.empty:
                            continue
                        rows = rows.sort_values("n_mels")
                        x = rows["n_mels"].to_numpy(dtype=float) * dodge[log]
                        style = series_style(hop, log, hops)
                        if what == "gmac":
                            y = rows["gmac"].to_numpy(dtype=float)
                        else:
                            y = 100 * rows[f"{what}_mean"].to_numpy(dtype=float)
                            std = 100 * rows[f"{what}_std"].to_numpy(dtype=float)
                            ok = np.isfinite(std)
                            if ok.any():
                                ax.errorbar(x[ok], y[ok], yerr=std[ok], fmt="none", ecolor=style["color"],
                                            elinewidth=0.8, capsize=2, zorder=2)
                        on = joined[rows.index].to_numpy()
                        ax.plot(x[on], y[on], label=series_label(hop, log), zorder=3, **style)
                        if not on.all():
                            ax.plot(x[~on], y[~on], zorder=3, **(style | {"linestyle": "none"}))
                _shade_reference(ax)
                ax.grid(axis="y", color="0.88", lw=0.5)
                if r == 0:
                    ax.set_title(rate_khz(rate), loc="left")
                if c == 0:
                    ax.set_ylabel("GMAC per clip (log scale)" if what == "gmac" else f"{METRIC_NAMES[what]} (%)")
        # one axis title, under the first column: a title per narrow column overprints its neighbour's
        axes[-1, 0].set_xlabel("mel bands (log scale)", loc="left" if len(kept) > 1 else "center")
        _mel_axis(axes[0, 0], mels)
        gmac = shown["gmac"].to_numpy(dtype=float)
        gmac = gmac[np.isfinite(gmac) & (gmac > 0)]
        for ax in axes[-1]:
            ax.set_yscale("log")
        if gmac.size:
            log_axis(axes[-1, 0].yaxis, gmac.min() / 1.3, gmac.max() * 1.3)
        fig.legend(handles=_legend_handles(shown, hops), loc="outside lower center", ncols=min(6, 2 * len(hops)),
                   frameon=False, title=f"series (shaded: {REFERENCE['n_mels']} mel bands, the reference's)")
        if drawn_once:
            header.append(f"GMAC: {' and '.join(logs)} cost the same, drawn once ({logs[0]})")
        fig.suptitle(_heading(header, width), x=0.02, ha="left")
        fig.draw_without_rendering()  # the columns' drawn width decides which band counts have room
        labelled = spaced_ticks(mels, *axes[-1, 0].get_xlim(), axes_inches(axes[-1, 0])[0])
        axes[-1, 0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if round(v) in labelled else ""))
    return fig


def spaced_ticks(ticks: list[int], lo: float, hi: float, inches: float, size: float = 8.0) -> set[int]:
    """The ticks of a log axis from `lo` to `hi`, `inches` long, that can be labelled side by side at
    `size` pt (`label_size`, and a gap of a character): the reference's band count first, then outwards
    from it, each that keeps its room. A grid of a dozen band counts in a column of 7 sample rates
    printed "2432" and "96128"."""
    def at(tick: float) -> float:
        return inches * (np.log(tick) - np.log(lo)) / (np.log(hi) - np.log(lo))

    def half(tick: int) -> float:
        return (label_size(f"{tick:g}", False, size)[0] + label_size("0", False, size)[0]) / 2

    start = REFERENCE["n_mels"] if REFERENCE["n_mels"] in ticks else ticks[len(ticks) // 2]
    kept = [start]
    for side in (sorted(t for t in ticks if t > start), sorted((t for t in ticks if t < start), reverse=True)):
        last = start
        for tick in side:
            if abs(at(tick) - at(last)) >= half(tick) + half(last):
                kept.append(tick)
                last = tick
    return set(kept)


SINGLE_BESIDE = 4
"""The single-panel Fig. 1 names each configuration under its point and writes its numbers beside it up
to this many configurations (6.7 in wide); past it, points are numbered and named in a key below."""


def _fig1_single(aggregated: pd.DataFrame, header: list[str]) -> Figure:
    """One ROC-AUC panel when no sample rate holds two mel-band counts: one configuration per place, in
    the order of the tables (sample rate, mel bands down, hop, log before dB), so that no two points,
    whiskers or labels share one. Up to `SINGLE_BESIDE` configurations each is named by its tick and its
    PR-AUC and GMAC are written beside it; more are numbered, and named with their numbers in a key, so
    the figure stays within a page's width."""
    hops = sorted(int(h) for h in aggregated["hop_multiplier"].unique())
    rows = aggregated.assign(_log=aggregated["log"].map(lambda log: LOG_ORDER.index(log) if log in LOG_ORDER
                                                         else len(LOG_ORDER)))
    rows = rows.sort_values(["sample_rate", "n_mels", "hop_multiplier", "_log"], ascending=[True, False, True, True],
                            kind="stable")
    beside = len(rows) <= SINGLE_BESIDE
    width = 1.9 + 1.2 * len(rows) if beside else min(PAGE_WIDTH, 2.6 + 0.3 * len(rows))
    with mpl.rc_context(STYLE):
        # the key, where there is one, in a part of its own below: two legends outside one side overlap
        fig = Figure(figsize=(max(3.9, width), 3.2 + (0 if beside else 0.16 * len(rows) + 0.1)), layout="constrained")
        plot, below = (fig, None) if beside else fig.subfigures(2, 1, height_ratios=[3.2, 0.16 * len(rows) + 0.1])
        ax = plot.subplots()
        names, key = [], []
        for position, r in enumerate(rows.itertuples(index=False)):
            style = series_style(r.hop_multiplier, r.log, hops)
            y, std = 100 * r.roc_auc_mean, 100 * r.roc_auc_std
            if np.isfinite(std):
                ax.errorbar([position], [y], yerr=[std], fmt="none", ecolor=style["color"], elinewidth=0.8,
                            capsize=2, zorder=2)
            ax.plot([position], [y], label=series_label(r.hop_multiplier, r.log), zorder=3, **style)
            name = f"{rate_khz(r.sample_rate)}\n{config_label(r.n_mels, r.hop_multiplier)} {r.log}"
            pr, gmac = f"PR-AUC {100 * r.pr_auc_mean:.2f} %", f"{significant(r.gmac)} GMAC"
            if beside:  # the configuration is the tick below; the numbers beside the point, clear of its whisker
                names.append(name)
                ax.annotate(f"{pr}\n{gmac}", (position, y), xytext=(6, 0), textcoords="offset points", ha="left",
                            va="center", fontsize=8)
            else:
                names.append(str(position + 1))
                key.append(f"{position + 1}: {name.replace(chr(10), ' ')}: ROC-AUC {y:.2f} %, {pr}, {gmac}")
        # room on the right of the last point for its numbers
        ax.set_xlim(-0.3 if beside else -0.6, len(rows) - (0.05 if beside else 0.4))
        if beside:
            ax.set_xticks(range(len(rows)), names)
        else:  # every place ticked; its number where it has room beside the last one labelled (1, 3, 5, ...)
            fig.draw_without_rendering()
            per_place = ax.get_window_extent().width / fig.dpi / (len(rows) + 0.2)  # the axes' inches per place
            widest = label_size(str(len(rows)), False)[0] + label_size("0", False)[0]
            every = max(1, int(np.ceil(widest / per_place)))
            ax.set_xticks(range(len(rows)), [name if i % every == 0 else "" for i, name in enumerate(names)])
        ax.set_xlabel("configuration (mel bands / hop)" if beside else "configuration (numbered in the key)")
        ax.margins(y=0.3)
        ax.set_ylabel("ROC-AUC (%)")
        ax.grid(axis="y", color="0.88", lw=0.5)
        plot.legend(handles=_legend_handles(aggregated, hops), loc="outside lower center", ncols=3, frameon=False)
        if below is not None:
            below.legend(handles=[Line2D([], [], ls="none", label=text) for text in key], loc="upper center",
                         handlelength=0, handletextpad=0, frameon=False, borderpad=0, labelspacing=0.3)
        fig.suptitle(_heading(header, fig.get_figwidth()), x=0.02, ha="left")
    return fig


# --- trade-off ---------------------------------------------------------------------------------------------


def series_styles(aggregated: pd.DataFrame) -> dict:
    """(arch, width, sample_rate) -> (marker, colour): the marker shape alone tells up to twelve series
    apart (MARKERS); past them the shapes repeat, and the colour, one per model, tells them apart."""
    keys = aggregated[["arch", "width", "sample_rate"]].drop_duplicates().sort_values(["arch", "width",
                                                                                       "sample_rate"])
    models = list(dict.fromkeys(zip(keys["arch"], keys["width"], strict=True)))
    return {(a, w, r): (MARKERS[i % len(MARKERS)], COLORS[models.index((a, w)) % len(COLORS)])
            for i, (a, w, r) in enumerate(keys.itertuples(index=False))}


_LABEL_SPOTS = ((4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
                (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"),
                (7, 0, "left", "center"), (-7, 0, "right", "center"),
                (6, 7, "left", "bottom"), (6, -7, "left", "top"), (-6, 7, "right", "bottom"), (-6, -7, "right", "top"),
                (0, 11, "center", "bottom"), (0, -11, "center", "top"))
"""Label positions around a point: offset in pt and alignment, tried in this order (the last six, a
little farther out, for crowded corners)."""


def axes_inches(ax) -> tuple[float, float]:
    """The drawn size of `ax` in inches, once its figure's layout has run (`fig.draw_without_rendering()`)."""
    box = ax.get_position()
    return box.width * ax.figure.get_figwidth(), box.height * ax.figure.get_figheight()


_FAR_SPOTS = tuple((round(r * np.cos(a)), round(r * np.sin(a)),
                    "left" if np.cos(a) > 0.3 else "right" if np.cos(a) < -0.3 else "center",
                    "bottom" if np.sin(a) > 0.3 else "top" if np.sin(a) < -0.3 else "center")
                   for r in (18, 28) for a in np.deg2rad(np.arange(30, 390, 45)))
"""Spots farther out, joined to their point by a thin line: for a label that would print over another
label at every spot of `_LABEL_SPOTS`. The line is then kept clear like the other lines."""
OVERPRINT = 0.0
"""A label overprints another when their boxes share more than this fraction of its own area: any. The
boxes are the text's measured width and a line's height (8 pt x 1.2), a little more than the glyphs."""


def label_size(text: str, bold: bool, size: float = 8.0) -> tuple[float, float]:
    """(width, height) in inches of a one-line label as drawn at `size` pt in the current font: its
    width measured from the glyphs (an estimate per character was up to a third off, either way), its
    height a line's."""
    weight = "bold" if bold else "normal"
    width, _, _ = TextToPath().get_text_width_height_descent(text, FontProperties(size=size, weight=weight),
                                                             ismath=False)
    return width / 72, size * 1.2 / 72


def place_labels(ax, points: list[tuple[float, float, str, bool]], markers: np.ndarray,
                 lines: Iterable[np.ndarray] = (), drop_plain: bool = False,
                 whiskers: Iterable[np.ndarray] = ()) -> int:
    """Write each label (x, y, text, bold) at the spot around (x, y) that covers the least of the markers
    (x, y rows of `markers`), the `lines` (polylines of (x, y) rows: a Pareto staircase, which a label
    must not cross), the `whiskers` (error bars: short, a label may cross one at a cost) and the labels
    placed before, stays inside the axes, and has no other marker nearer than its own, so that
    no label reads as another point's (texts measured at 8 pt, `label_size`). Bold labels are placed
    first. A label that would print over another, be crossed by one of the `lines`, or sit nearer another
    marker than its own at every near spot goes farther out, joined to its point by a line; with
    `drop_plain`, a plain label is left out instead (returned: how many were). Call it once
    the figure is laid out (`fig.draw_without_rendering()`): the spots are measured on the axes' drawn
    size."""
    width_in, height_in = axes_inches(ax)
    to_axes = ax.transScale + ax.transLimits

    def inches(xy) -> np.ndarray:
        return to_axes.transform(np.atleast_2d(np.asarray(xy, dtype=float))) * (width_in, height_in)

    centres = [inches((x, y))[0] for x, y, _, _ in points]
    marker = 3.5 / 72
    dots = inches(markers) if len(markers) else np.zeros((0, 2))
    boxes = [(cx - marker, cy - marker, cx + marker, cy + marker) for cx, cy in dots]
    placed = []  # the labels' own boxes, for the overprint test
    stroke = 1.0 / 72  # half the thickness a line is kept clear by
    strokes = []  # a line through a label reads as strike-through: each crossing weighs 0.4 of the label's area
    soft = []  # whiskers: crossing one costs as a line does, but leaves a spot clear
    for polylines, into in ((lines, strokes), (whiskers, soft)):
        for line in polylines:
            path = inches(line)
            for (x0, y0), (x1, y1) in zip(path[:-1], path[1:], strict=True):
                if np.isfinite([x0, y0, x1, y1]).all():
                    into.append((min(x0, x1) - stroke, min(y0, y1) - stroke, max(x0, x1) + stroke,
                                 max(y0, y1) + stroke))

    def overlap(a, b) -> float:
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    def distance(box, px, py) -> float:
        return float(np.hypot(max(box[0] - px, 0.0, px - box[2]), max(box[1] - py, 0.0, py - box[3])))

    along = np.linspace(0.0, 1.0, 20)[:, None]

    def through_placed(x0, y0, x1, y1) -> bool:
        """Whether the segment (x0, y0)-(x1, y1) runs through a label placed so far (tested at 20 points)."""
        if not placed:
            return False
        b = np.asarray(placed)
        xs, ys = x0 + along * (x1 - x0), y0 + along * (y1 - y0)
        return bool(((xs > b[:, 0]) & (xs < b[:, 2]) & (ys > b[:, 1]) & (ys < b[:, 3])).any())

    def best_spot(spots, cx, cy, w, h, others, leader=False):
        """(cost, overprinted area, spot, box, misleading) of the cheapest of `spots`, and of the cheapest
        that prints over no label and has no other marker nearer than its own (None if none does).
        `others`: the markers a spot may not be nearer (none for a spot joined to its point by a line);
        with `leader`, a spot whose line to its point runs through a label placed before counts as
        misleading too (a struck-through label reads as joined to that point)."""
        best = clear = None
        for dx, dy, ha, va in spots:
            left = cx + dx / 72 - {"left": 0, "center": w / 2, "right": w}[ha]
            bottom = cy + dy / 72 - {"bottom": 0, "center": h / 2, "top": h}[va]
            box = (left, bottom, left + w, bottom + h)
            outside = max(0.0, -box[0]) + max(0.0, box[2] - width_in) + max(0.0, -box[1]) + max(0.0, box[3] - height_in)
            crossed = sum(overlap(box, line) > 0 for line in strokes)
            crossings = crossed + sum(overlap(box, line) > 0 for line in soft)
            cost = (sum(overlap(box, other) for other in boxes) + crossings * 0.4 * w * h
                    + 4 * outside * h)  # outside: over the tick labels
            own = distance(box, cx, cy)
            misleading = any(distance(box, ox, oy) < own for ox, oy in others)  # reads as that point's label
            if leader and through_placed(cx, cy, left + w / 2, bottom + h / 2):
                misleading = True  # its line through a label would join that label to this point
            if misleading:
                cost += 0.5 * w * h
            candidate = (cost, sum(overlap(box, other) for other in placed), (dx, dy, ha, va), box, misleading)
            if best is None or cost < best[0] - 1e-12:
                best = candidate
            if (candidate[1] <= OVERPRINT * w * h and not misleading and not crossed
                    and (clear is None or cost < clear[0] - 1e-12)):
                clear = candidate
            if cost == 0:
                break
        return best, clear

    left_out = 0
    order = sorted(range(len(points)), key=lambda i: (not points[i][3], -centres[i][1]))
    for i in order:
        x, y, text, bold = points[i]
        cx, cy = centres[i]
        w, h = label_size(text, bold)
        others = dots[np.hypot(dots[:, 0] - cx, dots[:, 1] - cy) > 1e-9] if len(dots) else dots
        best, clear = best_spot(_LABEL_SPOTS, cx, cy, w, h, others)
        cost, printed_over, spot, box, misleading = best if clear is None else clear  # over a line before
        leader = False                                                                 # over a label
        if clear is None:
            far, far_clear = best_spot(_FAR_SPOTS, cx, cy, w, h, np.zeros((0, 2)), leader=True)  # the line says whose
            if drop_plain and not bold and (far_clear is None or far_clear[0] > 0):
                left_out += 1  # a plain label goes farther out only where it covers nothing there
                continue
            if far_clear is not None or (far[1] < printed_over and not far[4]):  # clear there, or over less
                cost, printed_over, spot, box, _ = far if far_clear is None else far_clear
                leader = True
                strokes.append((min(cx, box[0] + w / 2) - stroke, min(cy, box[1] + h / 2) - stroke,
                                max(cx, box[0] + w / 2) + stroke, max(cy, box[1] + h / 2) + stroke))
        dx, dy, ha, va = spot
        gap = 1.5 / 72  # the next labels keep clear of this one by a little more than the estimate's error
        boxes.append((box[0] - gap, box[1] - gap, box[2] + gap, box[3] + gap))
        placed.append(box)
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8,
                    fontweight="bold" if bold else "normal", color="0.0" if bold else "0.3", zorder=4,
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5, "shrinkA": 1, "shrinkB": 3}
                    if leader else None)
    return left_out


LABEL_ROOM_TRIES = 3
"""Placements of a trade-off figure's labels: a label that had to go outside its axes (over the tick
labels) widens the axes' limits by as much, and the labels are placed again on them."""


def _make_room_for_labels(axes, cost: str) -> list:
    """Widen each of `axes`' limits where its labels reach outside it (as drawn), by that much, and take its
    labels away to be placed again; returns those axes (none where every label is inside)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(axes[0].figure).get_renderer()
    widened = []
    for ax in axes:
        box = ax.get_window_extent(renderer)
        reach = [t.get_window_extent(renderer) for t in ax.texts]  # in pixels
        beyond = (max((box.x0 - b.x0 for b in reach), default=0.0), max((b.x1 - box.x1 for b in reach), default=0.0),
                  max((box.y0 - b.y0 for b in reach), default=0.0), max((b.y1 - box.y1 for b in reach), default=0.0))
        # and a label's height of air (pixels), so that one more placement mostly fits
        over = [edge + 12.0 if edge > 0.5 else 0.0 for edge in beyond]
        if not any(over):
            continue
        widened.append(ax)
        for text in list(ax.texts):
            text.remove()
        left, right, bottom, top = over
        x0, x1 = np.log10(ax.get_xlim())  # the x axis is logarithmic
        span = (x1 - x0) / max(box.width - left - right, box.width / 2)
        log_axis(ax.xaxis, 10 ** (x0 - left * span), 10 ** (x1 + right * span), COSTS[cost].unit)
        y0, y1 = ax.get_ylim()
        span = (y1 - y0) / max(box.height - bottom - top, box.height / 2)
        ax.set_ylim(y0 - bottom * span, y1 + top * span)
    return widened


def _point_labels(rows: pd.DataFrame, cost: str, numbers: dict) -> list[tuple[float, float, str, bool]]:
    """(x, y, text, bold) per label: "mels/xhop" for every point, "n: mels/xhop" (bold) for the Pareto
    front's point number n (`numbers`: configuration -> n). The log and dB points of one input share
    their GMAC and storage, so one label between them names both unless one is on the front; points
    whose cost differs (latency is measured per run) are labelled one by one."""
    labels = []
    groups = rows.groupby(["arch", "width", "sample_rate", "n_mels", "hop_multiplier"], sort=False, dropna=False)
    for (arch, width, rate, mels, hop), twins in groups:
        plain = []
        for r in twins.itertuples(index=False):
            x, y = getattr(r, cost), 100 * r.roc_auc_mean
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            number = numbers.get((arch, width, rate, mels, hop, r.log))
            if number is None:
                plain.append((x, y))
            else:
                labels.append((x, y, f"{number}: {config_label(mels, hop)}", True))
        while plain:
            x = plain[0][0]
            same = [y for px, y in plain if np.isclose(px, x, rtol=1e-9, atol=0)]
            labels.append((x, float(np.mean(same)), config_label(mels, hop), False))
            plain = [(px, y) for px, y in plain if not np.isclose(px, x, rtol=1e-9, atol=0)]
    return labels


@dataclass(frozen=True)
class Cost:
    """One cost a trade-off figure puts on x."""

    flag: str
    """The aggregate's Pareto-front column."""
    axis: str
    unit: str
    """Tick labels: "" plain numbers, "kB" bytes / 1000."""
    name: str
    """In the title: "test ROC-AUC against <name> per clip"."""
    key_format: str
    """A front point's cost in the key: `x` is the cost value times `scale`, to three significant digits."""
    scale: float = 1.0

    def value(self, x: float) -> str:
        return self.key_format.format(x=significant(x * self.scale, 3))


COSTS = {
    "gmac": Cost("pareto_gmac", "GMAC per clip (log scale)", "", "GMAC", "{x} GMAC"),
    "storage_bytes": Cost("pareto_storage", "storage per clip, float32 mel spectrogram (kB, log scale)", "kB",
                          "storage", "{x} kB", 1e-3),
    "latency_ms": Cost("pareto_latency",
                       "latency per clip at batch 1, front end included\n(ms, median over seeds, log scale)", "",
                       "measured latency", "{x} ms"),
}
"""The trade-off figures' costs, by the aggregate column on x."""


def tradeoff(aggregated: pd.DataFrame, cost: str = "gmac", lost: int = 0) -> Figure:
    """Mean ROC-AUC (± std where there are several seeds) against cost per clip (log axis), with the
    Pareto front drawn and every point labelled.

    `cost` is "gmac", "storage_bytes" (tick labels in kB throughout) or "latency_ms" (measured after
    training; configurations without it are left out); the front is the aggregate's
    `pareto_gmac` / `pareto_storage` / `pareto_latency` flag (highest accuracy for at most this cost), drawn
    as a staircase.
    Every point is labelled with its mel bands / hop multiplier; the front's points are numbered (1 =
    cheapest, bold) and named in a key beside the plot. Marker shape: arch, width and sample rate;
    filled: log, hollow: dB (legend). One panel per dataset, or per dataset and data setup where a dataset
    was trained on several (`statistics.front_groups`: the front's groups); the title gives seeds and clip
    length.
    """
    flag = COSTS[cost].flag
    groups = front_groups(aggregated)
    measured = np.isfinite(aggregated[cost].to_numpy(dtype=float))
    datasets = list(dict.fromkeys(groups[measured])) or list(dict.fromkeys(groups))  # no panel left empty
    named = groups.nunique() > 1  # panels named by their dataset (and data setup)
    styles = series_styles(aggregated)
    several_models = len({(a, w) for a, w, _ in styles}) > 1
    key, numbered = [], 0  # the front's points are numbered on through the panels
    drawn, fills, front_drawn = set(), set(), False  # what the legend keys: only what is drawn
    pending = []  # labels are placed once the figure is laid out, on the axes' drawn size
    # a panel grows with its labels (about 11 per inch of height), from 3 to 7 in
    heights = {d: min(7.0, max(3.0, 1.2 + 0.09 * len(_point_labels(aggregated[groups == d], cost, {}))))
               for d in datasets}
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(PAGE_WIDTH, 0.5 + sum(heights.values())), layout="constrained")
        axes = fig.subplots(len(datasets), 1, squeeze=False, height_ratios=[heights[d] for d in datasets])[:, 0]
        for ax, dataset in zip(axes, datasets, strict=True):
            rows = aggregated[groups == dataset]
            x_all = rows[cost].to_numpy(dtype=float)
            x_ok = x_all[np.isfinite(x_all) & (x_all > 0)]
            ax.set_xscale("log")
            if x_ok.size:
                log_axis(ax.xaxis, x_ok.min() / 1.35, x_ok.max() * 1.35, COSTS[cost].unit)
            rows = rows[np.isfinite(x_all)]  # runs without the measurement (older results) are left out
            x_all = x_all[np.isfinite(x_all)]
            mean = 100 * rows["roc_auc_mean"].to_numpy(dtype=float)
            std = 100 * rows["roc_auc_std"].to_numpy(dtype=float)
            with_std = np.isfinite(std)
            if with_std.any():
                ax.errorbar(x_all[with_std], mean[with_std], yerr=std[with_std], fmt="none", ecolor="0.7",
                            elinewidth=0.6, zorder=1)
            spread = np.concatenate([mean - np.where(with_std, std, 0), mean + np.where(with_std, std, 0)])
            spread = spread[np.isfinite(spread)]
            if spread.size:
                pad = max(0.5, 0.12 * (spread.max() - spread.min()))
                ax.set_ylim(spread.min() - pad, spread.max() + pad)
            for (arch, width, rate), (marker, color) in styles.items():
                for log in _logs(rows):
                    points = rows[(rows["arch"] == arch) & (rows["width"] == width) & (rows["sample_rate"] == rate)
                                  & (rows["log"] == log)]
                    if not points.empty:
                        drawn.add((arch, width, rate))
                        fills.add(log)
                        ax.plot(points[cost], 100 * points["roc_auc_mean"], linestyle="none", marker=marker, ms=5,
                                mec=color, mfc="white" if log == "dB" else color, zorder=3,
                                label=(f"{arch} w{width_text(width)} " if several_models else "")
                                + f"{rate_khz(rate)} {log}")
            front = rows[rows[flag]].sort_values([cost, "roc_auc_mean"])
            front_drawn |= len(front) > 1
            ax.step(front[cost], 100 * front["roc_auc_mean"], where="post", color="black", lw=1, ls="--", zorder=2)
            fx, fy = front[cost].to_numpy(dtype=float), 100 * front["roc_auc_mean"].to_numpy(dtype=float)
            staircase = np.column_stack([np.repeat(fx, 2)[1:], np.repeat(fy, 2)[:-1]]) if len(fx) else np.zeros((0, 2))
            whiskers = [np.array([[x, m - s], [x, m + s]]) for x, m, s in zip(x_all[with_std], mean[with_std],
                                                                              std[with_std], strict=True)]
            numbers = {}
            if named and not front.empty:  # the key's numbers run on across panels: say whose they are
                key.append(_heading([f"{dataset}:"], 3.7))
            for r in front.itertuples(index=False):
                numbered += 1
                numbers[(r.arch, r.width, r.sample_rate, r.n_mels, r.hop_multiplier, r.log)] = number = numbered
                name = (f"{r.arch} w{width_text(r.width)} " if several_models else "") \
                    + f"{config_label(r.n_mels, r.hop_multiplier)} {rate_label(r.sample_rate)} {r.log}"
                value = COSTS[cost].value(getattr(r, cost))
                key.append(f"{number}: {name} ({value}, {100 * r.roc_auc_mean:.2f} %)")
            plotted = np.column_stack([x_all, mean])
            pending.append((ax, _point_labels(rows, cost, numbers), plotted[np.isfinite(plotted).all(axis=1)],
                            [staircase], whiskers))
            ax.set_xlabel(COSTS[cost].axis)
            ax.set_ylabel("ROC-AUC (%)")
            if named:  # wrapped like the heading: a long split file's name would squash the axes
                ax.set_title(_heading([f"{dataset}: {caption(rows)}"], PAGE_WIDTH - 2.6), loc="left")
            ax.grid(color="0.9", lw=0.5, which="major")
        handles = [Line2D([], [], ls="none", marker=m, mec=c, mfc=c, ms=5,
                          label=(f"{a} w{width_text(w)} " if several_models else "") + rate_khz(r))
                   for (a, w, r), (m, c) in styles.items() if (a, w, r) in drawn]
        handles += [Line2D([], [], ls="none", marker="o", mec="0.3", mfc=fill, ms=5, label=label)
                    for log, fill, label in (("log", "0.3", "log (filled)"), ("dB", "white", "dB (hollow)"))
                    if log in fills]
        if front_drawn:
            handles.append(Line2D([], [], color="black", ls="--", lw=1, label="Pareto front"))
        fig.legend(handles=handles, loc="outside right upper", frameon=False,
                   title="labels: mel bands / hop", alignment="left")
        def write_key(extra: list[str]) -> None:
            if key or extra:
                fig.legend(handles=[Line2D([], [], ls="none", label=text) for text in key + extra],
                           loc="outside right lower", title="Pareto front (numbered)" if key else None,
                           alignment="left", handlelength=0, handletextpad=0, frameon=False)

        write_key([])
        what = COSTS[cost].name
        heading = [f"test ROC-AUC against {what} per clip"]
        if not named:
            heading[0] += f": {caption(aggregated[measured])}"
        unmeasured = int((~measured).sum())
        if unmeasured:  # results from before latency was measured, a cost that could not be counted
            heading.append(f"not shown: {unmeasured} configuration{'s' if unmeasured > 1 else ''} with no "
                           f"{what} recorded")
        heading += failed_note(lost)
        # wrapped to end clear of the legends on the right
        fig.suptitle(_heading(heading, PAGE_WIDTH - 2.6), x=0.02, ha="left")
        fig.draw_without_rendering()
        left, todo = {}, pending
        for attempt in range(LABEL_ROOM_TRIES):
            for ax, labels, markers, lines, bars in todo:
                left[ax] = place_labels(ax, labels, markers, lines, drop_plain=True, whiskers=bars)
            widened = [] if attempt == LABEL_ROOM_TRIES - 1 else _make_room_for_labels([ax for ax, *_ in todo], cost)
            if not widened:
                break
            todo = [item for item in pending if item[0] in widened]  # the others keep their labels
            fig.draw_without_rendering()
        left_out = sum(left.values())
        if left_out:  # a line at the key's end: the key only grows down, the axes keep the size labels were placed on
            if key:
                fig.legends[-1].remove()
            write_key([f"({left_out} label{'s' if left_out > 1 else ''} left out: no room)"])
    return fig


# --- per-tag heatmap ---------------------------------------------------------------------------------------


DIVERGING = "RdBu"
"""The per-tag heatmaps' colour map: red = loss, blue = gain, near white = no change; equal changes of
opposite sign get equally strong colours (the norm is symmetric about 0, so 0 is the middle)."""
CELL_TEXT_PT = (8.0, 5.0)
"""Per-tag heatmaps write each change of at least 1 pp in its cell, so that the sign and size read
without the colour bar (and in grayscale, where loss and gain look alike): at 8 pt, smaller where the
columns are narrow, down to 5 pt; columns too narrow for that are left unwritten."""


TICK_PT = (8.0, 4.0)
"""Per-tag heatmaps' column labels: 8 pt, smaller where the columns are narrow, down to 4 pt; a heatmap of
more configurations than fit the page at 4 pt (about 60) grows wider than the page instead."""


def per_tag(matrix: pd.DataFrame, title: str = "", note: str = "", reference: str = "", lost: int = 0) -> Figure:
    """Heatmap of one model's per-tag ROC-AUC change (percentage points) against a reference.

    `matrix` is tags (rows, worst drop first) x configurations (columns): `report.per_tag_matrix` (each
    condition against its own 96/x1 reference, `reference` empty) or `report.per_tag_matrix_global`
    (every configuration against the model's one global reference, named by `reference`, e.g. "16k 96/x1
    log"). The colour map is diverging (DIVERGING: red loss, blue gain) with a norm symmetric about 0, so
    equal gains and losses are equally strong and no change is the light middle; every change of at
    least 1 pp is also written in its cell where the columns leave room (CELL_TEXT_PT). Tags missing for a
    configuration are hatched grey. `note` (e.g. `caption` of the model's aggregate rows: seeds and clip
    length) is added to the title, and `lost` (the model's configurations whose every run failed: no
    column) counted there.
    """
    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    limit = max(0.5, float(np.abs(finite).max())) if finite.size else 1.0  # symmetric: 0 is the middle colour
    n_tags, n_configs = values.shape
    labels = [str(c) for c in matrix.columns]
    column_in = 0.42 if n_configs <= 12 else 0.24
    width = min(PAGE_WIDTH, max(3.4, 2.6 + column_in * n_configs))
    # a column holds its (rotated) label, one line of about 1.3 x the font size
    tick_pt = min(TICK_PT[0], (width - 2.6) / max(1, n_configs) * 72 / 1.3)
    if tick_pt < TICK_PT[1]:
        tick_pt, width = TICK_PT[1], 2.6 + n_configs * TICK_PT[1] * 1.3 / 72
    # a cell holds "−12" (3 characters of ~0.6 em) with some margin: the font size the column leaves room for
    cell_pt = min(CELL_TEXT_PT[0], (width - 2.6) / max(1, n_configs) * 72 / (3 * 0.6 + 0.6))
    annotate = cell_pt >= CELL_TEXT_PT[1]
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=(width,
                              max(2.8, 1.4 + 0.135 * n_tags + 0.06 * max(map(len, labels), default=0))),
                     layout="constrained")
        ax = fig.subplots()
        cmap = mpl.colormaps[DIVERGING].with_extremes(bad="none")
        ax.patch.set_facecolor("0.8")
        ax.patch.set_hatch("////")
        ax.patch.set_edgecolor("0.55")
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap,
                          norm=Normalize(-limit, limit), interpolation="nearest")
        if annotate:
            for (row, column), value in np.ndenumerate(values):
                if np.isfinite(value) and abs(value) >= 1:
                    shade = cmap(image.norm(value))
                    light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.55
                    ax.text(column, row, f"{value:+.0f}".replace("-", "\N{MINUS SIGN}"), ha="center",
                            va="center", fontsize=cell_pt, color="black" if light else "white")
        long = max(map(len, labels), default=0) > 6
        ax.set_xticks(range(n_configs), labels, rotation=90 if n_configs > 6 or long else 0, fontsize=tick_pt)
        families, _ = fonts_for(matrix.index)  # tag names in scripts the style's font lacks
        ax.set_yticks(range(n_tags), list(matrix.index), **({"fontfamily": families} if families else {}))
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
        if reference:
            ax.set_xlabel("configuration (sample rate, mel bands / hop multiplier, log type)")
            against = reference
        else:
            ax.set_xlabel("configuration (mel bands / hop multiplier)")
            reference = config_label(REFERENCE["n_mels"], REFERENCE["hop_multiplier"])
            against = f"{reference} of the same sample rate and log type"
        colorbar = fig.colorbar(image, ax=ax, shrink=0.6 if n_tags > 20 else 1.0, aspect=25)
        colorbar.set_label(f"ΔROC-AUC vs {reference} (pp): + gain, \N{MINUS SIGN} loss")
        colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+g}".replace("-", "\N{MINUS SIGN}")
                                                            if v else "0"))
        heading = f"per-tag ROC-AUC change against {against}, worst drop first"
        # every line wrapped to the figure: a longer one widened the saved image past its layout
        ax.set_title(_heading([t for t in (title, heading, note, *failed_note(lost)) if t], fig.get_figwidth() - 0.6),
                     loc="left")
    return fig
