"""The report's numbers as drawn and tabled: each figure's points, whiskers, order and key, and each
table's cells, read back from the matplotlib objects and the table rows against values computed here
(numpy, scipy) from hand-made seeds, never from bench.report's own aggregates.

The seeds of a configuration spread by their own amount (its whiskers differ from its neighbours'), PR-AUC
sits far below ROC-AUC (a panel drawn from the other metric is off by 50 points), and the grid has 8 kHz
beside 12 and 16 (8000 sorts after 16000 as text) and mel counts that sort otherwise as text.
"""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bench.report import figures
from bench.report.columns import SUMMARY_COLUMNS
from bench.report.statistics import aggregate, compare_to_reference, per_tag_delta, per_tag_matrix
from bench.report.tables import comparison_table, results_table, to_latex

RATES, MELS, HOPS, LOGS = (8000, 12000, 16000), (8, 16, 48, 96, 128), (1, 2, 10), ("log", "dB")


def summary(configs: dict, seeds=(0, 1, 2), arch: str = "vgg") -> pd.DataFrame:
    """summary.csv rows: configs maps (sample_rate, n_mels, hop, log) to (ROC-AUC, PR-AUC, GMAC) of seed
    0; later seeds add 1 % x (1 + mels/128) of ROC-AUC per seed and 3 % of PR-AUC."""
    rows = []
    for (rate, mels, hop, log), (roc, pr, gmac) in configs.items():
        for seed in seeds:
            rows.append({"run_id": f"{arch}-{rate}-{mels}-{hop}-{log}-{seed}", "arch": arch, "width": 1.0,
                         "sample_rate": rate, "n_mels": mels, "hop_multiplier": hop, "log": log, "seed": seed,
                         "roc_auc": roc + 0.01 * seed * (1 + mels / 128), "pr_auc": pr + 0.03 * seed, "gmac": gmac,
                         "gmac_analytic": gmac, "params": 1e6, "storage_bytes": 4 * mels * 1000 // hop,
                         "train_seconds": 1.0, "epochs": 1, "best_epoch": 1, "clips_per_second": 1.0,
                         "clip_seconds": 29.1, "dataset": "mtat", "n_tags": 50, "split": "default", "data": "default"})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def accuracy(rate, mels, hop, log) -> tuple[float, float, float]:
    roc = 0.80 + 0.0005 * mels - 0.003 * hop - 0.002 * (log == "dB") + rate / 1e7
    return roc, roc - 0.5 + 0.001 * mels, 10.0 * mels / 96 / hop * rate / 16000


GRID = {(rate, mels, hop, log): accuracy(rate, mels, hop, log)
        for rate in RATES for mels in MELS for hop in HOPS for log in LOGS}
SUMMARY = summary(GRID)


def by_hand(metric: str, stat: str, rows: pd.DataFrame = SUMMARY) -> pd.Series:
    """The mean or the standard deviation (ddof 1, as docs/report.md defines the whiskers) over seeds, in %."""
    seeds = rows.groupby(["sample_rate", "n_mels", "hop_multiplier", "log"])[metric]
    return 100 * (seeds.mean() if stat == "mean" else seeds.std(ddof=1))


def marker_lines(ax) -> list:
    """The lines of points (not the whiskers' caps, drawn as lines of "_" markers)."""
    return [line for line in ax.lines if line.get_marker() not in (None, "None", "", " ", "_", "|")
            and len(line.get_xdata())]


def whisker_half_lengths(ax) -> list[float]:
    return sorted(float(segment[1, 1] - segment[0, 1]) / 2 for collection in ax.collections
                  for segment in collection.get_segments())


def front(points) -> list[tuple[float, float]]:
    """The points no other is at least as cheap and at least as accurate as, cheapest first (brute force)."""
    points = list(points)
    return sorted(p for p in points if not any(c <= p[0] and a >= p[1] and (c, a) != p for c, a in points))


@pytest.fixture(scope="module")
def fig1():
    return figures.fig1(aggregate(SUMMARY), "vgg")


def test_fig1_draws_each_configurations_mean_and_spread_of_its_own_metric(fig1):
    """Rows ROC-AUC, PR-AUC, GMAC; a column per sample rate, in rate order; a line per hop and log over
    the mel bands (log axis), in increasing mel order; each point the mean over seeds of its row's
    metric, its whisker one standard deviation; the GMAC axis spans every configuration's GMAC."""
    axes = np.array(fig1.axes).reshape(3, 3)
    assert [ax.get_title(loc="left") for ax in axes[0]] == ["8 kHz", "12 kHz", "16 kHz"]
    for row, metric in enumerate(("roc_auc", "pr_auc")):
        mean, std = by_hand(metric, "mean"), by_hand(metric, "std")
        for column, rate in enumerate(RATES):
            ax = axes[row, column]
            assert ax.get_xscale() == "log"
            lines = marker_lines(ax)
            assert len(lines) == len(HOPS) * len(LOGS)
            for line in lines:
                hop, log = line.get_label().removeprefix("hop x").split(", ")
                x = np.asarray(line.get_xdata(), float)
                # each series a little aside of the others at its mel count (dodged, on the log axis)
                assert x == pytest.approx(MELS, rel=0.1) and np.all(np.diff(x) > 0)  # fewest bands first
                expected = [mean[rate, mels, int(hop), log] for mels in MELS]
                assert line.get_ydata() == pytest.approx(expected), (metric, rate, hop, log)
            assert whisker_half_lengths(ax) == pytest.approx(sorted(std[rate].tolist()))
    gmac = SUMMARY["gmac"]
    for ax in axes[2]:
        low, high = ax.get_ylim()
        assert low <= gmac.min() and high >= gmac.max()


def test_fig1_key_matches_the_lines_it_names(fig1):
    """Each entry of the key shows the marker, fill and line style of the lines of its label."""
    drawn = {line.get_label(): (line.get_marker(), str(line.get_markerfacecolor()), line.get_linestyle())
             for ax in fig1.axes for line in marker_lines(ax)}
    handles = fig1.legends[0].legend_handles
    assert len(handles) == len(HOPS) * len(LOGS)
    for handle in handles:
        assert drawn[handle.get_label()] == (handle.get_marker(), str(handle.get_markerfacecolor()),
                                             handle.get_linestyle()), handle.get_label()


def test_fig1_labels_and_notes_give_each_metric_its_own_number():
    """Two configurations, one per rate: a panel each, labelled with their PR-AUC (30 and 40 %). A
    configuration left out of the lines is named in the title with its ROC-AUC (85 %)."""
    two = aggregate(summary({(12000, 48, 1, "log"): (0.80, 0.30, 1.0), (16000, 96, 1, "log"): (0.90, 0.40, 2.0)},
                            seeds=(0,)))
    texts = " ".join(text.get_text() for text in figures.fig1(two, "vgg").axes[0].texts)
    assert "PR-AUC 30.00 %" in texts and "PR-AUC 40.00 %" in texts
    three = aggregate(summary({(16000, 96, 1, "log"): (0.90, 0.40, 2.0), (16000, 48, 1, "log"): (0.88, 0.38, 1.0),
                               (12000, 96, 1, "log"): (0.85, 0.35, 1.5)}, seeds=(0,)))
    title = figures.fig1(three, "vgg")._suptitle.get_text().replace("\n", " ")
    assert "12 kHz 96/x1 log: ROC-AUC 85.00 %" in title


@pytest.mark.parametrize("cost", ["gmac", "storage_bytes"])
def test_the_tradeoff_draws_means_spreads_and_the_front_numbered_from_the_cheapest(cost):
    """The 16 kHz configurations against their cost: each point its mean ROC-AUC over seeds, its whisker one
    standard deviation, hollow for dB and filled for log; the Pareto front a post step through the
    points no other beats on both, its key numbered from the cheapest; storage in kB (1000 bytes)."""
    rows = SUMMARY[SUMMARY["sample_rate"] == 16000]
    fig = figures.tradeoff(aggregate(rows), cost)
    ax = fig.axes[0]
    mean = by_hand("roc_auc", "mean", rows)[16000]
    points = {(r.n_mels, r.hop_multiplier, r.log): (getattr(r, cost), mean[r.n_mels, r.hop_multiplier, r.log])
              for r in rows[rows["seed"] == 0].itertuples()}
    drawn = []
    for line in marker_lines(ax):
        if line.get_linestyle() == "--":
            continue
        drawn += list(zip(line.get_xdata(), line.get_ydata(), strict=True))
        hollow = str(line.get_markerfacecolor()) in ("white", "(1.0, 1.0, 1.0, 1.0)")
        assert hollow == line.get_label().endswith("dB"), line.get_label()
    np.testing.assert_allclose(sorted(drawn), sorted(points.values()))
    std = by_hand("roc_auc", "std", rows)[16000]
    assert whisker_half_lengths(ax) == pytest.approx(sorted(std.tolist()))
    low, high = ax.get_xlim()
    assert low <= min(c for c, _ in points.values()) and high >= max(c for c, _ in points.values())
    (stair,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    best = front(points.values())
    assert stair.get_drawstyle() == "steps-post"
    np.testing.assert_allclose(np.column_stack([stair.get_xdata(), stair.get_ydata()]), best)
    first = fig.legends[1].get_texts()[0].get_text()
    cheapest = best[0][0] if cost == "gmac" else best[0][0] / 1000
    assert first.startswith("1: ") and float(first.split("(")[1].split()[0]) == pytest.approx(cheapest, rel=0.01)
    assert ("GMAC" if cost == "gmac" else "kB") in first
    if cost == "storage_bytes":
        fig.draw_without_rendering()
        labelled = [(t.get_text(), x) for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
                    if t.get_text()]
        assert labelled and all(float(text.split()[0]) == pytest.approx(x / 1000) for text, x in labelled)


def test_the_storage_front_is_drawn_from_storage():
    """Two architectures on the same inputs store the same bytes at different GMAC: the storage figure's
    front is the one of storage, not the GMAC figure's."""
    vgg = summary({(16000, m, h, "log"): (0.80 + 0.0005 * m - 0.003 * h, 0.4, 10.0 * m / 96 / h)
                   for m in (16, 48, 96) for h in (1, 3)})
    musicnn = summary({(16000, m, h, "log"): (0.83 + 0.0002 * m - 0.004 * h, 0.4, 40.0 + m / h)
                       for m in (16, 48, 96) for h in (1, 3)}, arch="musicnn")
    both = pd.concat([vgg, musicnn], ignore_index=True)
    mean = both.groupby(["arch", "n_mels", "hop_multiplier"])["roc_auc"].mean()
    points = [(r.storage_bytes, 100 * mean[r.arch, r.n_mels, r.hop_multiplier])
              for r in both[both["seed"] == 0].itertuples()]
    ax = figures.tradeoff(aggregate(both), "storage_bytes").axes[0]
    (stair,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    np.testing.assert_allclose(sorted(zip(stair.get_xdata(), stair.get_ydata(), strict=True)), front(points))


def student_t(a, b) -> tuple[float, float]:
    """Student's t of mean(a) - mean(b) with the pooled variance, and its two-sided p (by hand)."""
    a, b = np.asarray(a), np.asarray(b)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    t = (a.mean() - b.mean()) / np.sqrt(pooled * (1 / len(a) + 1 / len(b)))
    return t, 2 * scipy.stats.t.sf(abs(t), len(a) + len(b) - 2)


def test_the_results_table_orders_rates_as_numbers_and_bolds_the_best():
    table = results_table(aggregate(SUMMARY), "vgg")
    assert [group for group, _ in table.groups][:3] == ["8k log", "8k dB", "8k"]
    assert [(m, h) for m, h, _ in table.rows][:4] == [("128", "x1"), ("128", "x2"), ("128", "x10"), ("96", "x1")]
    mean = by_hand("roc_auc", "mean")[8000]
    best = max(((m, h) for m in MELS for h in HOPS), key=lambda k: mean[k[0], k[1], "log"])
    assert [(m, h) for m, h, cells in table.rows if cells[0][1]] == [(str(best[0]), f"x{best[1]}")]


def test_the_comparison_gives_each_metric_its_own_change_t_and_p():
    """48/x2 against the 96/x1 reference at 16 kHz: the change in %, and Student's t (ours minus the
    reference) and p of each metric, by hand."""
    comparison = compare_to_reference(aggregate(SUMMARY), SUMMARY)
    table = comparison_table(comparison[comparison["sample_rate"] == 16000], "vgg")
    headers = [f"{group} {sub}" for group, subs in table.groups for sub in subs]
    cells = {(m, h): dict(zip(headers, [text for text, _ in row], strict=True)) for m, h, row in table.rows}
    (row,) = comparison[(comparison["sample_rate"] == 16000) & (comparison["n_mels"] == 48)
                        & (comparison["hop_multiplier"] == 2) & (comparison["log"] == "log")].itertuples()

    def seeds(mels, hop):
        return SUMMARY[(SUMMARY["sample_rate"] == 16000) & (SUMMARY["n_mels"] == mels)
                       & (SUMMARY["hop_multiplier"] == hop) & (SUMMARY["log"] == "log")]

    for metric, name in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
        ours, reference = seeds(48, 2)[metric], seeds(96, 1)[metric]
        t, p = student_t(ours, reference)
        text = cells["48", "x2"][f"16k log Δ{name} % (p)"]
        assert text.startswith(f"{100 * (ours.mean() - reference.mean()) / reference.mean():+.2f} (")
        shown = text.split("(")[1].rstrip(")*")
        assert shown == "<0.001" if p < 0.001 else float(shown) == pytest.approx(p, abs=6e-4), (name, text, p)
        assert getattr(row, f"{metric}_t") == pytest.approx(t)


def test_latex_escapes_every_special_character_of_its_notes():
    """A column holding a run on other data gets the ‡ note, which names comparison.csv's setup_differs:
    LaTeX stops at a bare underscore outside math."""
    reference = summary({(16000, 96, 1, "log"): (0.90, 0.40, 2.0), (16000, 16, 1, "log"): (0.85, 0.35, 0.5)})
    other = summary({(16000, 48, 1, "log"): (0.88, 0.38, 1.0)}).assign(clip_seconds=8.0)
    tex = to_latex(results_table(aggregate(pd.concat([reference, other], ignore_index=True)), "vgg"))
    caption = re.search(r"\\caption\{(.*)\}$", tex, re.MULTILINE).group(1)
    assert "setup\\_differs" in caption
    text = re.sub(r"\$[^$]*\$", "", caption.replace("\\%", "").replace("\\_", "").replace("\\&", "").replace("\\#", ""))
    assert not re.search(r"[_%&#$]", text), caption


def test_the_per_tag_matrix_averages_the_models_sample_rates():
    """vibrato loses 10 points at 12 kHz and 30 at 16 kHz with 48 bands: the matrix says -20."""
    records = []
    for rate, base, drop in ((12000, 0.9, 0.10), (16000, 0.8, 0.30)):
        for mels in (96, 48):
            records.append({"run_id": f"{rate}-{mels}", "dataset": "mtat", "arch": "vgg", "width": 1.0,
                            "sample_rate": rate, "n_mels": mels, "hop_multiplier": 1, "log": "log", "seed": 0,
                            "tag": "vibrato", "roc_auc": base - (drop if mels == 48 else 0), "pr_auc": 0.3,
                            "positives": 5, "clip_seconds": 29.1, "n_tags": 50, "split": "default",
                            "data": "default"})
    matrix = per_tag_matrix(per_tag_delta(pd.DataFrame(records)))
    assert matrix.loc["vibrato", "48/x1"] == pytest.approx(-20.0)


def test_bench_report_renders_what_each_file_is_named_for(tmp_path, monkeypatch):
    """Result files by hand (2 seeds, 2 tags): the global per-tag figure shows `air` at 12 kHz 96/x1 log
    50 points below the 16 kHz reference (0.5 against 1.0), and the storage trade-off has each
    configuration at the storage_bytes its result.json gives (mels x 400 bytes), not at its GMAC."""
    from bench.report import report

    from .test_per_tag_figures import write_runs

    air = {96: {16000: 1.0, 12000: 0.5}, 48: {16000: 0.9, 12000: 0.45}}
    runs = {("vgg", rate, mels, 1, "log"): [{"air": air[mels][rate], "drums": 0.9}] * 2
            for mels in (96, 48) for rate in (16000, 12000)}
    write_runs(tmp_path / "t", runs)
    drawn = {}
    monkeypatch.setattr(figures, "rendered", lambda fig, stem: drawn.setdefault(stem, fig) and {})
    with contextlib.redirect_stdout(io.StringIO()):
        report.report(tmp_path / "t")
    heat = drawn["per_tag_global_vgg"].axes[0]
    columns = [t.get_text() for t in heat.get_xticklabels()]
    tags = [t.get_text() for t in heat.get_yticklabels()]
    assert heat.images[0].get_array()[tags.index("air"), columns.index("12k 96/x1 log")] == pytest.approx(-50.0)
    ax = drawn["tradeoff_storage"].axes[0]
    xs = sorted(x for line in marker_lines(ax) if line.get_linestyle() != "--" for x in line.get_xdata())
    assert xs == sorted(mels * 400 for _, _, mels, _, _ in runs)
