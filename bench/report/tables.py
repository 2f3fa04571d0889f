"""Markdown and LaTeX tables of the aggregated results."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.report.columns import (
    LOG_ORDER,
    METRIC_NAMES,
    METRICS,
    REFERENCE,
    SIGNIFICANCE,
    config_label,
    paper_order,
    rate_label,
    significant,
    width_text,
)
from bench.report.published import PUBLISHED_SETUP
from bench.report.statistics import TIE_PP, off_reference, setup_text


@dataclass
class Table:
    """A paper-shaped table: rows (n_mels, hop), column groups per sample rate (and log type)."""

    title: str
    groups: list[tuple[str, list[str]]]
    """(group header, sub-column headers)."""
    rows: list[tuple[str, str, list[tuple[str, bool]]]]
    """(mels, hop, [(cell text, bold)]): the two row-header cells, then the cells of the groups."""
    notes: list[str] = field(default_factory=list)
    row_header: tuple[str, str] = ("mels", "hop")
    """The headers of the two row-header columns."""


def _pct(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{100 * mean:.2f}" + (f" ({100 * std:.2f})" if np.isfinite(std) else "")


def _gmac(value: float) -> str:
    """Two decimals from 0.1 GMAC, else two significant digits, trailing zero kept (0.0070, not 0.007)."""
    return "–" if not np.isfinite(value) else f"{value:.2f}" if value >= 0.1 else significant(value)


def _signed(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:+.2f}"


def _p(value: float) -> str:
    """Three decimals, or as many more as a p under SIGNIFICANCE needs not to print as its threshold
    (0.04974 as 0.0497*, never 0.050* beside "* p < 0.05")."""
    if not np.isfinite(value):
        return "n/a"
    if value < 0.001:
        return "<0.001*" if value < SIGNIFICANCE else "<0.001"
    decimals = 3
    while value < SIGNIFICANCE and float(f"{value:.{decimals}f}") >= SIGNIFICANCE:
        decimals += 1
    return f"{value:.{decimals}f}" + ("*" if value < SIGNIFICANCE else "")


def _layout(frame: pd.DataFrame):
    """Sample rates, (sample rate, log type) pairs that were run, in the paper's order, and configurations."""
    rates = sorted(frame["sample_rate"].unique())
    logs = [v for v in LOG_ORDER if v in set(frame["log"])] + sorted(set(frame["log"]) - set(LOG_ORDER))
    run = set(zip(frame["sample_rate"], frame["log"], strict=True))
    pairs = [(rate, log) for rate in rates for log in logs if (rate, log) in run]
    configs = paper_order(frame[["n_mels", "hop_multiplier"]].drop_duplicates())
    return rates, pairs, list(zip(configs["n_mels"], configs["hop_multiplier"], strict=True))


def _column_groups(rates, pairs, metric_header, gmac_header: str):
    """Column groups (each sample rate x log type that was run: the metrics; then the rate's GMAC) and
    their keys."""
    groups, columns = [], []
    for rate in rates:
        for log in [log for r, log in pairs if r == rate]:
            groups.append((f"{rate_label(rate)} {log}", [metric_header(m) for m in METRICS]))
            columns += [(rate, log, m) for m in METRICS]
        groups.append((f"{rate_label(rate)}", [gmac_header]))
        columns.append((rate, None, "gmac"))
    return groups, columns


def results_table(aggregated: pd.DataFrame, title: str,
                  failed: Collection[tuple[int, str, int, int]] = ()) -> Table:
    """Mean (std) over seeds in %, GMAC per clip beside each sample rate; bold: the best displayed mean of a
    column, only in columns that show at least two different means (a column of one value has no best).
    `failed`: (sample rate, log, n_mels, hop) of the configurations whose every run failed, written "failed"."""
    keys = ["sample_rate", "log", "n_mels", "hop_multiplier"]
    rates, pairs, configs = _layout(pd.concat([aggregated[keys], pd.DataFrame(list(failed), columns=keys)],
                                              ignore_index=True) if failed else aggregated)
    by_key = {(r.sample_rate, r.log, r.n_mels, r.hop_multiplier): r for r in aggregated.itertuples(index=False)}
    other_data = {key for key, off in zip(by_key, off_reference(aggregated), strict=True) if off}
    setups = dict(zip(by_key, setup_text(aggregated), strict=True))
    groups, columns = _column_groups(rates, pairs, lambda m: METRIC_NAMES[m], "GMAC")
    cells = {}
    for mels, hop in configs:
        for rate, log, what in columns:
            if what == "gmac":
                # the cost of the configuration on the column's data: a log or dB one trained on other
                # data (‡) only where no other was run
                found = sorted((key in other_data, r.gmac) for key, r in by_key.items()
                               if (key[0], key[2], key[3]) == (rate, mels, hop))
                cells[mels, hop, rate, log, what] = _gmac(found[0][1] if found else np.nan)
                continue
            row = by_key.get((rate, log, mels, hop))
            text = (_pct(getattr(row, f"{what}_mean"), getattr(row, f"{what}_std")) if row
                    else "failed" if (rate, log, mels, hop) in failed else "–")
            if row is not None and row.seeds_missing:
                text += " †"
            if (rate, log, mels, hop) in other_data:
                text += " ‡"
            cells[mels, hop, rate, log, what] = text
    best, unranked = {}, False
    for column in columns:
        if column[2] != "gmac":  # the best of a column: among the configurations trained on its data
            compared = [(*column[:2], m, h) for m, h in configs if (*column[:2], m, h) in by_key
                        and (*column[:2], m, h) not in other_data]
            shown = {_leading_number(cells[(*key[2:], *column)]) for key in compared} - {None}
            # without a reference to say which data is the column's, configurations on different data
            # are not ranked against each other
            several = len({setups[key] for key in compared}) > 1
            unranked |= several and len(shown) >= 2
            best[column] = max(shown) if len(shown) >= 2 and not several else None
    rows = [(str(mels), f"x{hop}", [(cells[(mels, hop, *c)], c in best and best[c] is not None
                                     and (*c[:2], mels, hop) not in other_data
                                     and _leading_number(cells[(mels, hop, *c)]) == best[c]) for c in columns])
            for mels, hop in configs]
    notes = ["ROC-AUC and PR-AUC in %: mean (standard deviation) over seeds; bold: the best mean of its column "
             "(in columns with at least two different means).",
             "GMAC: 1e9 multiply-adds per clip, one forward pass."]
    if aggregated["seeds_missing"].astype(bool).any():
        notes.append("†: fewer seeds than the other configurations (failed or unfinished runs).")
    if failed:
        notes.append("failed: every run of the configuration failed (runs_not_ok.csv says why).")
    if unranked:
        notes.append("A column without bold holds configurations trained on different data (clip length, tags, "
                     f"split or data) and no {config_label(**REFERENCE)} reference to say which is the column's: "
                     "they are not ranked against each other.")
    if other_data:
        notes.append(f"‡: trained on other data (clip length, tags, split or data) than the column's "
                     f"{config_label(**REFERENCE)} reference, or seeds on different data: not comparable with the "
                     "column, never bold (comparison.csv: setup_differs, where the reference was run).")
    return Table(title, groups, rows, notes)


def _leading_number(text: str) -> float | None:
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def comparison_table(comparison: pd.DataFrame, title: str) -> Table:
    """Relative change against the reference in % with the t-test's p-value, and the GMAC change."""
    rates, pairs, configs = _layout(comparison)
    by_key = {(r.sample_rate, r.log, r.n_mels, r.hop_multiplier): r for r in comparison.itertuples(index=False)}
    groups, columns = _column_groups(rates, pairs, lambda m: f"Δ{METRIC_NAMES[m]} % (p)", "ΔGMAC %")
    rows = []
    for mels, hop in configs:
        cells = []
        for rate, log, what in columns:
            if what == "gmac":
                found = [r.gmac_change_pct for (sr, _, m, h), r in by_key.items()
                         if (sr, m, h) == (rate, mels, hop) and np.isfinite(r.gmac_change_pct)]
                cells.append((_signed(found[0] if found else np.nan), False))
                continue
            row = by_key.get((rate, log, mels, hop))
            if row is None:
                text = "–"
            elif row.is_reference:
                text = "reference"
            elif not np.isfinite(getattr(row, f"{what}_change_pct")):  # no reference, or one on other data
                text = "–"
            else:
                text = f"{_signed(getattr(row, f'{what}_change_pct'))} ({_p(getattr(row, f'{what}_p'))})"
            cells.append((text, False))
        rows.append((str(mels), f"x{hop}", cells))
    notes = [f"Relative change in % against {config_label(**REFERENCE)} (same model, sample rate and log type); "
             f"p: two-sided independent-samples Student's t-test over seeds (* p < {SIGNIFICANCE}); "
             "–: the configuration was not run, or its reference was not run or was trained on other data "
             "(comparison.csv: setup_differs); n/a in place of p: fewer "
             "than 2 seeds on either side, or seeds that agree to rounding (nothing to test). p is not corrected "
             "for the grid's many comparisons: at p < 0.05, about 1 in 20 configurations that lose nothing is "
             "starred by chance."]
    return Table(title, groups, rows, notes)


def matched_gmac_tables(matched: pd.DataFrame) -> list[Table]:
    """One table per family (dataset, arch, sample rate, log type) of `statistics.matched_gmac`: each narrower
    network (the reference input at a smaller width) beside the smaller input of closest GMAC at the full
    width, their ROC-AUC and change against the full reference in percentage points, and which loses less."""
    tables = []
    for (dataset, arch, rate, log), rows in matched.groupby(["dataset", "arch", "sample_rate", "log"], sort=False):
        first = rows.iloc[0]
        top = width_text(first.ref_width)
        groups = [(f"narrower network ({config_label(**REFERENCE)})", ["ROC-AUC %", "Δ pp"]),
                  (f"smaller input (width {top})", ["mels/hop", "GMAC", "ROC-AUC %", "Δ pp"]),
                  ("matched", ["GMAC ratio", "loses less", "p (Welch)"])]
        body = []
        for r in rows.itertuples(index=False):
            cells = [_pct(r.roc_auc_mean, r.roc_auc_std), _signed(100 * r.roc_auc_diff),
                     config_label(r.input_n_mels, r.input_hop_multiplier), _gmac(r.input_gmac),
                     _pct(r.input_roc_auc_mean, r.input_roc_auc_std), _signed(100 * r.input_roc_auc_diff),
                     f"{r.gmac_ratio:.2f}", r.loses_less, _p(r.welch_p)]
            body.append((width_text(r.width), _gmac(r.gmac), [(text, False) for text in cells]))
        reference = f"{config_label(**REFERENCE)} at width {top}"
        if np.isfinite(first.ref_roc_auc_mean):
            accuracy = _pct(first.ref_roc_auc_mean, first.ref_roc_auc_std)
            reference += f": {_gmac(first.ref_gmac)} GMAC, ROC-AUC {accuracy} %"
        else:
            reference += " was not run, so no changes (Δ)"
        notes = [f"Full reference: {reference}. Δ pp: change of the mean ROC-AUC against it, in percentage points; "
                 "ROC-AUC: mean (standard deviation) over seeds.",
                 "Each narrower network is paired with the smaller input whose GMAC per clip is closest in log ratio "
                 "(ties: the cheaper); GMAC ratio: narrower network / smaller input.",
                 "Loses less: the configuration with the higher mean ROC-AUC; tie when the means differ by at most "
                 f"max(the larger of the two standard deviations, {TIE_PP:g} pp).",
                 f"p: two-sided Welch t-test between the two configurations' seeds (* p < {SIGNIFICANCE}); "
                 "n/a: fewer than 2 seeds on either side, or seeds that agree to rounding."]
        title = f"{arch}, {dataset}, {rate_label(rate)} {log}: smaller input or narrower network at matched GMAC"
        tables.append(Table(title, groups, body, notes, row_header=("width", "GMAC")))
    return tables


def to_markdown(table: Table) -> str:
    header = [*table.row_header] + [f"{group} {sub}" for group, subs in table.groups for sub in subs]
    lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for mels, hop, cells in table.rows:
        lines.append("| " + " | ".join([mels, hop] + [f"**{t}**" if bold else t for t, bold in cells]) + " |")
    return "\n".join(lines + [""] + [f"{note}  " for note in table.notes] + [""])


def _tex(text: str) -> str:
    text = text.replace("\\", r"\textbackslash{}")
    for char in "%&_#$":
        text = text.replace(char, "\\" + char)
    return (text.replace("Δ", r"$\Delta$").replace("–", "--").replace("†", r"$^\dagger$")
            .replace("‡", r"$^\ddagger$").replace("<", r"$<$")
            .replace("*", r"$^*$"))


LATEX_PACKAGES = (r"% needs \usepackage{booktabs} (rules) and \usepackage{graphicx} (a table wider or taller than"
                  " the text is scaled down to it)")


def to_latex(table: Table) -> str:
    """A booktabs table* (needs \\usepackage{booktabs} and graphicx): a tabular wider than the text is
    scaled down to the text width, one taller than 0.8 of the text height (60 configurations) down to
    that; a smaller one is left at its size."""
    n_cols = 2 + sum(len(subs) for _, subs in table.groups)
    top, rules, column = [], [], 3
    for group, subs in table.groups:
        top.append(rf"\multicolumn{{{len(subs)}}}{{c}}{{{_tex(group)}}}")
        rules.append(rf"\cmidrule(lr){{{column}-{column + len(subs) - 1}}}")
        column += len(subs)
    subs = [_tex(sub) for _, group_subs in table.groups for sub in group_subs]
    lines = [r"\begin{table*}[t]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{_tex(table.title)}. {' '.join(_tex(n) for n in table.notes)}}}",
             r"\resizebox{\ifdim\width>\textwidth\textwidth\else\width\fi}{!}{%",
             # and taller than most of a page: down to that (the caption needs the rest)
             r"\resizebox*{!}{\ifdim\totalheight>0.8\textheight 0.8\textheight\else\totalheight\fi}{%",
             rf"\begin{{tabular}}{{ll{'r' * (n_cols - 2)}}}", r"\toprule",
             " & & " + " & ".join(top) + r" \\", "".join(rules),
             " & ".join([*(_tex(h) for h in table.row_header), *subs]) + r" \\", r"\midrule"]
    for mels, hop, cells in table.rows:
        texts = [rf"\textbf{{{_tex(t)}}}" if bold else _tex(t) for t, bold in cells]
        lines.append(" & ".join([mels, hop, *texts]) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}}}", r"\end{table*}", ""])


def published_markdown(comparison: pd.DataFrame, skipped: Iterable[str] = ()) -> str:
    """published.md: our mean (std) in % beside the published numbers, one table per source, after one line
    per model left out (`published_skipped`)."""
    paper = PUBLISHED_SETUP
    lines = ["## Published numbers beside ours", "",
             f"Only configurations trained as the paper's are compared: width {paper['width']:g}, "
             f"{paper['clip_seconds']:g} s clips, the top {paper['n_tags']} tags and the dataset's usual split "
             "(MusiCNN: on 3 s segments). "
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
