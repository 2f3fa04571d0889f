"""What a reader of the report sees: published numbers only where they compare, one unit per axis, every
point keyed or labelled, seeds and clip length stated, Fig. 1 as the paper draws it, no one-point panels,
and bold only where a column offers a choice.

The figures are inspected as matplotlib objects (tick label texts, lines, legends, titles); the inputs
are small hand-made result files or tidy tables, never numbers read back from bench.report.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from bench.report import figures
from bench.report.report import (
    SUMMARY_COLUMNS,
    aggregate,
    published_comparison,
    published_setup_problems,
    report,
    results_table,
    select,
    to_markdown,
)

# --- published numbers: shown only for the paper's width and setup ----------------------------------------


def result_doc(config, seed, *, width=1.0, clip_seconds=29.1, n_tags=50, split=None, roc=0.88, dataset="mtat"):
    arch, rate, mels, hop, log = config
    digest = hashlib.sha256(repr((config, seed, width, clip_seconds, n_tags, split)).encode()).hexdigest()[:10]
    run_id = f"{arch}-{rate // 1000}k-{mels}mel-x{hop}-{log}-s{seed}-{digest}"
    canonical_dataset = {"name": dataset, "clip_seconds": clip_seconds, "n_tags": n_tags, "drop_untagged": False}
    if split is not None:
        canonical_dataset["split"] = split
    return {
        "run_id": run_id, "spec": "test", "status": "ok",
        "config": {"arch": arch, "width": width, "sample_rate": rate, "n_mels": mels, "hop_multiplier": hop,
                   "log": log, "seed": seed, "dataset": dataset, "n_frames": 100},
        "canonical": {"arch": arch, "options": {"width": width}, "dataset": canonical_dataset},
        "metrics": {"roc_auc": roc + 0.001 * seed, "pr_auc": 0.4, "n_tags": 3, "excluded_tags": [],
                    "per_tag": {t: {"roc_auc": roc, "pr_auc": 0.4, "positives": 5} for t in ("a", "b", "c")}},
        "cost": {"gmac": 10.0 * mels / 96 / hop, "gmac_analytic": 10.0, "params": 1000, "storage_bytes": mels * 400,
                 "train_seconds": 1.0, "epochs": 1, "best_epoch": 1, "clips_per_second": 1.0},
    }


def write_runs(root: Path, configs, seeds=(0, 1), **setup) -> Path:
    for config in configs:
        for seed in seeds:
            doc = result_doc(config, seed, **setup)
            folder = root / "runs" / doc["run_id"]
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps(doc))
    return root


PUBLISHED_CONFIGS = [("vgg", 16000, 96, 1, "log"), ("vgg", 16000, 48, 1, "log")]  # 88.91 and 89.17 published


@pytest.mark.usefixtures("figures_unrendered")
def test_published_comparison_shown_for_the_papers_setup(tmp_path):
    summary = report(write_runs(tmp_path / "paper", PUBLISHED_CONFIGS))
    text = summary.text()
    assert len(summary.published) == 2 and summary.published_skipped == []
    assert "vs 88.91" in text and "vs 89.17" in text and "skipped" not in text
    published_md = (tmp_path / "paper" / "report" / "published.md").read_text()
    assert "88.91" in published_md and "skipped" not in published_md


@pytest.mark.usefixtures("figures_unrendered")
def test_published_comparison_skipped_for_a_narrow_model_on_short_clips(tmp_path):
    summary = report(write_runs(tmp_path / "small", PUBLISHED_CONFIGS, width=0.0625, clip_seconds=6.0))
    text = summary.text()
    assert summary.published.empty
    assert " vs " not in text and "88.91" not in text
    (line,) = [line for line in text.splitlines() if "published comparison skipped" in line]
    assert "width 1/16 (the paper trains width 1)" in line and "6 s clips (the paper's are 29.1 s)" in line
    published_md = (tmp_path / "small" / "report" / "published.md").read_text()
    assert "published comparison skipped" in published_md and "88.91" not in published_md


@pytest.mark.usefixtures("figures_unrendered")
def test_published_comparison_skipped_for_clips_a_second_longer_than_the_papers(tmp_path):
    """30 s clips (the length of MSD's previews) are not the paper's 29.1 s: fewer frames per clip."""
    summary = report(write_runs(tmp_path / "long", PUBLISHED_CONFIGS, clip_seconds=30.0))
    (line,) = summary.published_skipped
    assert "30 s clips (the paper's are 29.1 s)" in line and summary.published.empty


@pytest.mark.usefixtures("figures_unrendered")
def test_published_comparison_skipped_for_another_tag_set_or_split(tmp_path):
    summary = report(write_runs(tmp_path / "tags", PUBLISHED_CONFIGS, n_tags=10, split="won"))
    (line,) = summary.published_skipped
    assert "top 10 tags (the paper uses the top 50)" in line and "split 'won'" in line
    assert "width" not in line.split(":", 1)[1] and "clips" not in line.split(":", 1)[1]
    assert summary.published.empty


@pytest.mark.usefixtures("figures_unrendered")
def test_one_configuration_left_out_of_the_published_comparison_is_named_not_its_model(tmp_path):
    """16k 48/x1 (89.17 published) on 10 s clips beside 96/x1 as the paper trained it: the note names 48/x1;
    "skipped for vgg, width 1, mtat" alone read as if the compared 96/x1 row above it had been skipped too."""
    root = write_runs(tmp_path / "mixed", PUBLISHED_CONFIGS[:1])
    write_runs(root, PUBLISHED_CONFIGS[1:], clip_seconds=10.0)
    summary = report(root)
    assert list(summary.published["n_mels"]) == [96]
    assert summary.published_skipped == ["published comparison skipped for vgg, width 1, mtat at 16k 48/x1 log: "
                                         "10 s clips (the paper's are 29.1 s)"]


@pytest.mark.usefixtures("figures_unrendered")
def test_no_note_for_datasets_without_published_numbers(tmp_path):
    summary = report(write_runs(tmp_path / "synthetic", PUBLISHED_CONFIGS, width=0.0625, clip_seconds=6.0,
                                dataset="synthetic"))
    assert summary.published.empty and summary.published_skipped == []
    assert not (tmp_path / "synthetic" / "report" / "published.md").exists()


def test_published_setup_problems_name_each_difference():
    paper = {"width": 1.0, "clip_seconds": 29.1, "n_tags": 50, "split": "default"}
    assert published_setup_problems(paper) == []
    assert published_setup_problems(paper | {"width": 0.25}) == ["width 1/4 (the paper trains width 1)"]
    assert published_setup_problems(paper | {"clip_seconds": 8.0}) == ["8 s clips (the paper's are 29.1 s)"]
    assert "not recorded" in published_setup_problems(paper | {"clip_seconds": np.nan})[0]
    assert published_setup_problems(paper | {"split": "splits/mine"})[0].startswith("split 'splits/mine'")
    frame = pd.DataFrame([{"dataset": "mtat", "arch": "vgg", "sample_rate": 16000, "n_mels": 96, "hop_multiplier": 1,
                           "log": "log", "roc_auc_mean": 0.9, "roc_auc_std": 0.01, "pr_auc_mean": 0.4,
                           "pr_auc_std": 0.01, "n_seeds": 3, "arch_options": "", **paper}])
    assert len(published_comparison(frame)) == 1
    assert published_comparison(frame.assign(width=0.5)).empty
    # MusiCNN trained on 1 s segments is not the paper's (3 s), whatever else matches
    musicnn = paper | {"arch": "musicnn", "arch_options": "segment_seconds=3"}
    assert published_setup_problems(musicnn) == []
    assert published_setup_problems(musicnn | {"arch_options": "segment_seconds=1"}) == [
        "segment_seconds=1 (the paper's: segment_seconds=3)"]
    assert published_setup_problems(musicnn | {"arch_options": None})[0].startswith("options not recorded")
    assert published_setup_problems(musicnn | {"arch_options": ""}) == [  # a foreign result: width alone
        "no options beside the width recorded (the paper's: segment_seconds=3)"]


def test_seeds_trained_with_other_architecture_options_are_a_mixed_setup():
    """A spec edited between two grids (MusiCNN's segments from 3 s to 1 s, a seed added): the
    configuration's seeds mix two experiments, as seeds on different data do."""
    from bench.report.statistics import mixed_setups

    three = tidy([(16000, 96, 1, "log"), (16000, 48, 1, "log")], seeds=(0, 1), arch="musicnn")
    one = tidy([(16000, 96, 1, "log"), (16000, 48, 1, "log")], seeds=(2,), arch="musicnn")
    summary = pd.concat([three.assign(arch_options="segment_seconds=3"), one.assign(arch_options="segment_seconds=1")],
                        ignore_index=True)
    aggregated = aggregate(summary)
    assert aggregated["setup_mixed"].all() and (aggregated["arch_options"] == "mixed").all()
    assert not aggregated["pareto_gmac"].any()
    assert mixed_setups(summary)[0] == ("mtat musicnn 1.0 16000 96 1 log: its seeds ran with different options "
                                        "(arch_options segment_seconds=1 / segment_seconds=3): averaged anyway, and "
                                        "not compared with its reference")


# --- tidy tables for the figures --------------------------------------------------------------------------


def tidy(configs, seeds=(0, 1, 2), clip_seconds=29.1, arch="vgg", width=1.0, dataset="mtat") -> pd.DataFrame:
    """summary.csv rows: configs are (sample_rate, n_mels, hop, log); accuracy falls with fewer mels and
    longer hops, dB a little below log, and the seeds differ."""
    rows = []
    for rate, mels, hop, log in configs:
        frames = -(-{12000: 1366, 16000: 1820}.get(rate, round(29.1 * rate / 256)) // hop)
        for seed in seeds:
            roc = 0.89 - 0.0004 * (128 - mels) - 0.002 * hop - 0.001 * (log == "dB") + 0.001 * seed
            rows.append({"run_id": f"{arch}-{rate}-{mels}-{hop}-{log}-{seed}", "arch": arch, "width": width,
                         "sample_rate": rate, "n_mels": mels, "hop_multiplier": hop, "log": log, "seed": seed,
                         "roc_auc": roc, "pr_auc": roc - 0.5, "gmac": 10 * mels / 96 * frames / 1366,
                         "gmac_analytic": 10.0, "params": 1e6, "storage_bytes": 4 * mels * frames,
                         "train_seconds": 1.0, "epochs": 1, "best_epoch": 1, "clips_per_second": 1.0,
                         "clip_seconds": clip_seconds, "dataset": dataset, "n_tags": 50, "split": "default",
                         "data": "default"})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


GRID = [(rate, mels, hop, log) for rate in (12000, 16000) for mels in (128, 96, 48) for hop in (1, 2, 10)
        for log in ("log", "dB")] + [(rate, 16, 1, log) for rate in (12000, 16000) for log in ("log", "dB")]
DEMO = [(16000, 96, 1, "log"), (16000, 8, 1, "log"), (16000, 96, 10, "log"), (12000, 96, 1, "log"),
        (16000, 96, 1, "dB")]
"""The demo's VGG runs: one factor at a time around 16 kHz 96/x1 log, so 12 kHz holds one configuration."""


@pytest.fixture(scope="module")
def grid():
    return aggregate(tidy(GRID))


@pytest.fixture(scope="module")
def demo():
    vgg = tidy(DEMO, seeds=(0,), clip_seconds=8.0, width=0.0625, dataset="synthetic")
    musicnn = tidy([(16000, 96, 1, "log")], seeds=(0,), clip_seconds=8.0, arch="musicnn", width=0.25,
                   dataset="synthetic")
    return aggregate(pd.concat([vgg, musicnn], ignore_index=True))


def tick_texts(axis) -> list[str]:
    axis.axes.figure.figure.draw_without_rendering()  # the whole figure, where the axes are in a part of it
    return [t.get_text() for t in axis.get_majorticklabels() if t.get_text()]


def minor_texts(axis) -> list[str]:
    return [t.get_text() for t in axis.get_minorticklabels() if t.get_text()]


def marker_lines(ax) -> list:
    """Lines that draw data points (not error-bar caps, not marker-less lines)."""
    return [line for line in ax.lines if line.get_marker() not in (None, "None", "", " ", "_", "|")
            and len(line.get_xdata())]


def legend_texts(fig) -> set[str]:
    """The texts of every legend of `fig`, its parts' (subfigures) included."""
    legends = fig.legends + [legend for sub in fig.subfigs for legend in sub.legends]
    return {t.get_text() for legend in legends for t in legend.get_texts()}


def heading(fig) -> str:
    """The figure's suptitle on one line (`Figure.get_suptitle` is matplotlib >= 3.8; 3.7 is supported)."""
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return title.replace("\n", " ")


PLAIN_NUMBER = re.compile(r"^\d+(\.\d+)?$")


# --- 1: one unit per axis ---------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["grid", "demo"])
def test_storage_axis_is_in_kB_throughout(frame, request):
    fig = figures.tradeoff(request.getfixturevalue(frame), "storage_bytes")
    for ax in fig.axes:
        labels = tick_texts(ax.xaxis)
        assert len(labels) >= 2
        assert all(re.fullmatch(r"\d+(\.\d+)? kB", text) for text in labels), labels
        assert minor_texts(ax.xaxis) == []


@pytest.mark.parametrize("frame", ["grid", "demo"])
def test_gmac_axes_are_plain_numbers(frame, request):
    aggregated = request.getfixturevalue(frame)
    fig = figures.tradeoff(aggregated, "gmac")
    labels = tick_texts(fig.axes[0].xaxis)
    assert len(labels) >= 2 and all(PLAIN_NUMBER.match(text) for text in labels), labels
    assert minor_texts(fig.axes[0].xaxis) == []
    fig = figures.fig1(select(aggregated, {"arch": "vgg"}), "vgg")
    gmac_axes = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    labelled = [tick_texts(ax.yaxis) for ax in gmac_axes]  # a shared y axis is labelled in the first column
    assert len(labelled[0]) >= 2
    for ax, labels in zip(gmac_axes, labelled, strict=True):
        assert all(PLAIN_NUMBER.match(text) for text in labels), labels
        assert minor_texts(ax.yaxis) == []


def test_log_ticks_give_two_labels_on_narrow_ranges():
    for lo, hi in ((0.014, 0.0188), (16032, 19584), (0.9, 1.05), (3.0, 3.0)):
        ticks, low, high = figures.log_ticks(lo, hi)
        assert len(ticks) >= 2 and low <= lo and high >= hi
        assert all(low <= t <= high for t in ticks)
    ticks, _, _ = figures.log_ticks(1e-3, 1e6)  # nine decades: at most 7 labels
    assert 2 <= len(ticks) <= 7


# --- 2: every point keyed or labelled ---------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["grid", "demo"])
@pytest.mark.parametrize("cost", ["gmac", "storage_bytes"])
def test_tradeoff_labels_every_point(frame, cost, request):
    aggregated = request.getfixturevalue(frame)
    fig = figures.tradeoff(aggregated, cost)
    (ax,) = fig.axes
    assert sum(len(line.get_xdata()) for line in marker_lines(ax)) == len(aggregated)
    for row in aggregated.itertuples(index=False):  # a label naming the point, at the point's cost
        label = f"{row.n_mels}/x{row.hop_multiplier}"
        assert any((t.get_text() == label or t.get_text().endswith(f": {label}")) and t.xy[0] == getattr(row, cost)
                   for t in ax.texts), label
    # marker shape and fill are keyed: every drawn marker shape is in the legend, as are filled and hollow
    handles = [h for legend in fig.legends for h in legend.legend_handles]
    assert {line.get_marker() for line in marker_lines(ax)} <= {h.get_marker() for h in handles}
    keyed = legend_texts(fig)
    assert "log (filled)" in keyed and ("dB (hollow)" in keyed)


def test_fig1_every_point_is_in_a_keyed_series(grid):
    fig = figures.fig1(select(grid, {"arch": "vgg"}), "vgg")
    keyed = legend_texts(fig)
    points = 0
    for ax in fig.axes:
        for line in marker_lines(ax):
            assert line.get_label() in keyed
            points += len(line.get_xdata())
    # ROC-AUC and PR-AUC panels: every configuration; GMAC: one point per input, log and dB costing the same
    inputs = {(rate, mels, hop) for rate, mels, hop, _ in GRID}
    assert points == 2 * len(GRID) + len(inputs) and len(inputs) < len(GRID)
    assert "GMAC: log and dB cost the same, drawn once (log)" in heading(fig)


# --- 3: seeds and clip length on every figure -------------------------------------------------------------


def test_figures_state_seeds_and_clip_length(grid):
    per_tag = pd.DataFrame({"48/x1": [-1.0, 0.5]}, index=["vibrato", "drums"])
    texts = [heading(figures.fig1(select(grid, {"arch": "vgg"}), "vgg")),
             heading(figures.tradeoff(grid, "gmac")), heading(figures.tradeoff(grid, "storage_bytes")),
             figures.per_tag(per_tag, "vgg", figures.caption(grid)).axes[0].get_title(loc="left")]
    for text in texts:
        assert "mean ± std over 3 seeds" in text and "29.1\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips" in text, text


def test_one_seed_says_no_mean_and_std_and_draws_no_error_bars(demo):
    vgg = select(demo, {"arch": "vgg"})
    for fig in (figures.fig1(vgg, "vgg"), figures.tradeoff(demo, "gmac")):
        text = heading(fig)
        assert "1 seed" in text and "8\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips" in text
        assert "±" not in text and "mean" not in text
        assert all(not ax.containers for ax in fig.axes)  # no error bars


def test_caption_counts_configurations_with_fewer_seeds():
    frame = pd.DataFrame({"n_seeds": [3, 3, 2], "clip_seconds": [29.1] * 3})
    assert figures.caption(frame) == \
        "mean ± std over 3 seeds (1 configuration with fewer), 29.1\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips"
    assert figures.caption(frame.assign(n_seeds=1)) == "1 seed, 29.1\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips"
    assert figures.caption(frame.drop(columns="clip_seconds")).endswith("clip length not recorded")


def test_a_wrapped_title_keeps_a_clip_length_on_one_line():
    """The value, its unit and "clips" stay together wherever the title wraps ("..., 4" then "s clips"
    reads as 4 clips)."""
    caption = figures.caption(pd.DataFrame({"n_seeds": [2, 2], "clip_seconds": [4.0, 8.0]}))
    for width in np.arange(2.0, 7.0, 0.05):
        for line in figures._heading([f"test ROC-AUC against GMAC per clip: {caption}"], width).splitlines():
            assert not line.startswith(("s ", "s\N{NO-BREAK SPACE}", "clips")) and not line.endswith(" s"), line


# --- 4: Fig. 1 as the paper draws it ----------------------------------------------------------------------


def test_fig1_lines_per_hop_over_mel_bands(grid):
    vgg = select(grid, {"arch": "vgg"})
    fig = figures.fig1(vgg, "vgg")
    axes = np.array(fig.axes).reshape(3, 2)  # (ROC-AUC, PR-AUC, GMAC) x (12 kHz, 16 kHz)
    assert [ax.get_title(loc="left") for ax in axes[0]] == ["12 kHz", "16 kHz"]
    assert tick_texts(axes[-1, 0].xaxis) == ["16", "48", "96", "128"]
    for ax in axes.flat:
        lines = {line.get_label(): line for line in marker_lines(ax)}
        if ax in axes[-1]:  # GMAC: the same for log and dB, drawn once
            assert set(lines) == {f"hop x{h}, log" for h in (1, 2, 10)}
            continue
        assert set(lines) == {f"hop x{h}, {log}" for h in (1, 2, 10) for log in ("log", "dB")}
        ratio = np.sort(lines["hop x1, log"].get_xdata()) / [16, 48, 96, 128]  # x = mel bands (dodged a little)
        assert np.allclose(ratio, ratio[0]) and 0.9 < ratio[0] < 1.1
        assert len(lines["hop x2, log"].get_xdata()) == 3
        # dB is its own series, beside (not on) the log line of the same hop
        log_x, db_x = lines["hop x1, log"].get_xdata(), lines["hop x1, dB"].get_xdata()
        assert not set(np.round(log_x, 6)) & set(np.round(db_x, 6))
    for row in axes:  # one y range per metric across sample rates
        assert row[0].get_ylim() == row[1].get_ylim()


def test_fig1_marker_style_means_the_same_in_every_panel(grid, demo):
    for frame in (select(grid, {"arch": "vgg"}), select(demo, {"arch": "vgg"})):
        fig = figures.fig1(frame, "vgg")
        styles = {}
        for ax in fig.axes:
            for line in marker_lines(ax):
                style = (line.get_marker(), str(line.get_markerfacecolor()), line.get_linestyle())
                assert styles.setdefault(line.get_label(), style) == style
        hollow = {label for label, (_, face, _) in styles.items() if face in ("white", "(1.0, 1.0, 1.0, 1.0)")}
        assert hollow == {label for label in styles if label.endswith("dB")}


# --- 5: no one-point panels -------------------------------------------------------------------------------


def test_fig1_of_a_grid_beyond_the_papers_stays_readable():
    """Seven sample rates x twelve band counts: at 7 in, the band counts of a column ran together ("2432",
    "96128") and each column's axis title overprinted the next. Hops 1-20 are more hops than there are
    marker shapes: those that share a shape differ in colour."""
    from tests.test_per_tag_figures import overlapping_texts

    rates, mels = (8000, 11025, 12000, 16000, 22050, 44100, 48000), (8, 16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 256)
    fig = figures.fig1(aggregate(tidy([(r, m, 1, "log") for r in rates for m in mels], seeds=(0,))))
    assert fig.get_figwidth() <= 7.0 and overlapping_texts(fig) == []
    hops = list(range(1, 21))
    styles = [figures.series_style(h, "log", hops) for h in hops]
    assert len({(style["marker"], style["color"]) for style in styles}) == 20


def test_fig1_draws_no_panel_with_a_single_point(demo):
    fig = figures.fig1(select(demo, {"arch": "vgg"}), "vgg")
    assert len(fig.axes) == 3  # 12 kHz holds one configuration: no column of its own
    for ax in fig.axes:
        assert sum(len(line.get_xdata()) for line in marker_lines(ax)) >= 2
    assert "12 kHz 96/x1 log" in heading(fig)  # named in the caption instead


def test_fig1_of_a_single_configuration_is_one_labelled_panel(demo):
    fig = figures.fig1(select(demo, {"arch": "musicnn"}), "musicnn")
    (ax,) = fig.axes
    assert sum(len(line.get_xdata()) for line in marker_lines(ax)) == 1
    (label,) = ax.texts
    assert "PR-AUC" in label.get_text() and "GMAC" in label.get_text()
    assert [t.replace("\n", " ") for t in tick_texts(ax.xaxis)] == ["16 kHz 96/x1 log"]  # named by its tick


def test_fig1_merges_sample_rates_of_one_point_each_into_one_panel():
    two = aggregate(tidy([(12000, 48, 1, "log"), (16000, 96, 1, "log")], seeds=(0, 1)))
    fig = figures.fig1(two, "vgg")
    (ax,) = fig.axes
    assert sum(len(line.get_xdata()) for line in marker_lines(ax)) == 2
    assert [t.replace("\n", " ") for t in tick_texts(ax.xaxis)] == ["12 kHz 48/x1 log", "16 kHz 96/x1 log"]
    # over mel bands, each label two lines at a fixed offset, the 12 kHz one had run through the 16 kHz
    # point's whisker, and labels of equal means were printed on top of each other
    renderer = _drawn(fig)
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    caps = [line.get_window_extent(renderer) for line in ax.lines if line not in marker_lines(ax)]
    assert len(boxes) == 2 and not boxes[0].overlaps(boxes[1])
    assert not any(box.overlaps(cap) for box in boxes for cap in caps)


def test_fig1_of_a_sample_rate_sweep_at_one_band_count_gives_each_rate_its_own_place():
    # 12 and 16 kHz both at 96/x1: over mel bands they would share one x, markers and labels on top of
    # each other. One configuration per place instead, named by its tick.
    sweep = aggregate(tidy([(12000, 96, 1, "log"), (16000, 96, 1, "log")], seeds=(0, 1)))
    fig = figures.fig1(sweep, "vgg")
    (ax,) = fig.axes
    xs = [x for line in marker_lines(ax) for x in line.get_xdata()]
    assert len(xs) == 2 and len(set(xs)) == 2
    ticks = dict(zip(ax.get_xticks(), tick_texts(ax.xaxis), strict=True))
    assert [ticks[x].replace("\n", " ") for x in xs] == ["12 kHz 96/x1 log", "16 kHz 96/x1 log"]
    renderer = _drawn(fig)
    a, b = (t.get_window_extent(renderer) for t in ax.texts)
    assert not a.overlaps(b)


def test_fig1_of_a_hop_sweep_at_one_band_count_gives_each_configuration_its_own_place():
    # six hops at 96 mels, 16 kHz: over mel bands every point sat at x = 96, one line per hop reduced to
    # a point, their markers and whiskers on top of each other
    sweep = aggregate(tidy([(16000, 96, hop, "log") for hop in (1, 2, 3, 4, 5, 10)], seeds=(0, 1)))
    fig = figures.fig1(sweep, "vgg")
    (ax,) = fig.axes
    xs = [x for line in marker_lines(ax) for x in line.get_xdata()]
    assert len(xs) == 6 and len(set(xs)) == 6
    # more than four: numbered, and named in a key with their numbers (each had been 1.2 in wide beside its
    # point: 30.7 in for the paper's 24 hop configurations at 96 bands)
    ticks = dict(zip(ax.get_xticks(), tick_texts(ax.xaxis), strict=True))
    key = {text.split(": ")[0]: text.split(": ")[1] for text in legend_texts(fig) if ": " in text}
    assert sorted(key[ticks[x]] for x in xs) == sorted(f"16 kHz 96/x{hop} log" for hop in (1, 2, 3, 4, 5, 10))
    assert fig.get_figwidth() <= figures.PAGE_WIDTH


def test_fig1_of_the_papers_hops_at_96_bands_fits_a_page_and_keys_every_configuration():
    configs = [(rate, 96, hop, log) for rate in (12000, 16000) for hop in (1, 2, 3, 4, 5, 10) for log in ("log", "dB")]
    fig = figures.fig1(aggregate(tidy(configs, seeds=(0, 1, 2))), "vgg")
    (ax,) = fig.axes
    assert fig.get_figwidth() <= figures.PAGE_WIDTH and len(tick_texts(ax.xaxis)) == 24
    key = sorted((text for text in legend_texts(fig) if ": " in text), key=lambda text: int(text.split(":")[0]))
    assert len(key) == 24 and key_in_table_order(key)
    renderer = _drawn(fig)
    legends = fig.legends + [legend for sub in fig.subfigs for legend in sub.legends]
    texts = [t for legend in legends for t in legend.get_texts()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])  # no two legends on one place
    assert all(0 <= box.x0 and box.x1 <= fig.bbox.width for box in boxes)


def test_fig1_of_sixty_configurations_in_one_panel_keeps_its_numbers_apart():
    """At 7 in, 48 or more places left under 0.12 in each: the numbers had run together ("9101112")."""
    rates = (8000, 12000, 16000, 22050, 44100)
    configs = [(rate, 96, hop, log) for rate in rates for hop in (1, 2, 3, 4, 5, 10) for log in ("log", "dB")]
    fig = figures.fig1(aggregate(tidy(configs, seeds=(0, 1))), "vgg")
    (ax,) = fig.axes
    renderer = _drawn(fig)
    labels = [label for label in ax.get_xticklabels() if label.get_text()]
    boxes = [label.get_window_extent(renderer) for label in labels]
    assert len(ax.get_xticks()) == 60 and labels[0].get_text() == "1"
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:], strict=False))
    numbers = [int(label.get_text()) for label in labels]
    assert max(b - a for a, b in zip(numbers, numbers[1:], strict=False)) <= 2  # every place next to a number


def key_in_table_order(key: list[str]) -> bool:
    """Sample rate, mel bands down, hop, log before dB (the tables' order): 12 kHz 96/x1 log first."""
    return key[0].startswith("1: 12 kHz 96/x1 log") and key[1].startswith("2: 12 kHz 96/x1 dB") \
        and key[-1].startswith("24: 16 kHz 96/x10 dB")


# --- 6: bold only where a column offers a choice ----------------------------------------------------------


def markdown_columns(markdown: str) -> list[list[str]]:
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| mels")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return [list(column) for column in zip(*cells, strict=True)][2:]


def test_tables_bold_only_columns_with_a_choice(demo, grid):
    for frame, model in ((demo, {"arch": "vgg"}), (demo, {"arch": "musicnn"}), (grid, {"arch": "vgg"})):
        markdown = to_markdown(results_table(select(frame, model), "t"))
        header = next(line for line in markdown.splitlines() if line.startswith("| mels"))
        gmac = [name.strip().endswith("GMAC") for name in header.strip("|").split("|")][2:]
        for column, is_gmac in zip(markdown_columns(markdown), gmac, strict=True):
            values = {cell.strip("*").split()[0] for cell in column if cell != "–"}
            bold = [cell for cell in column if cell.startswith("**")]
            if len(values) < 2 or is_gmac:
                assert not bold, column  # one value, or a cost (no best)
            else:  # the best value, and only it (ties on the printed value included)
                best = max(float(v) for v in values)
                assert bold and {float(b.strip("*").split()[0]) for b in bold} == {best}, column
    musicnn = to_markdown(results_table(select(demo, {"arch": "musicnn"}), "t"))
    assert "**" not in musicnn
    vgg_md = to_markdown(results_table(select(demo, {"arch": "vgg"}), "t"))
    header = next(line for line in vgg_md.splitlines() if line.startswith("| mels"))
    names = [name.strip() for name in header.strip("|").split("|")][2:]
    roc_16k_log = markdown_columns(vgg_md)[names.index("16k log ROC-AUC")]
    (bold,) = [cell for cell in roc_16k_log if cell.startswith("**")]
    # the best 16 kHz log configuration by tidy()'s formula, seed 0: 96/x1, 0.89 - 0.0004 x 32 - 0.002 x 1
    assert bold.strip("*").split()[0] == "87.52"


def test_tables_leave_out_conditions_that_were_not_run_and_keep_two_significant_digits(demo):
    """The demo's VGG ran 12 kHz only with log compression: no "12k dB" columns of dashes. A GMAC under 0.1
    keeps two significant digits, trailing zero included (0.0070 beside 0.0092, as in the README)."""
    table = results_table(select(demo, {"arch": "vgg"}), "t")
    assert [group for group, _ in table.groups] == ["12k log", "12k", "16k log", "16k dB", "16k"]
    assert all(any(text != "–" for text, _ in (cells[i] for _, _, cells in table.rows))
               for i in range(len(table.rows[0][2])))  # no column of dashes
    from bench.report.columns import significant

    assert [significant(v) for v in (0.006994, 0.0092, 0.000700, 17.58, 1.9449)] == \
        ["0.0070", "0.0092", "0.00070", "18", "1.9"]
    # and the tables write them so: 12 kHz 96/x1 at 0.0070 GMAC, 16 kHz 8/x10 at 0.0092 x 8 / 96 / 10
    cells = [text for _, _, row in results_table(select(_demo_grid(), {"arch": "vgg", "width": 0.0625}), "t").rows
             for text, _ in row]
    assert {"0.0070", "0.0092", "0.000077"} <= set(cells)


def _drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    return renderer


def _demo_grid() -> pd.DataFrame:
    """The demo's shape: VGG at 16 kHz over 96, 48, 16, 8 mels x hops 1, 3, 10, plus 12 kHz and dB at 96/x1,
    and a narrower VGG and a MusiCNN off the front; the accuracies of the demo's report, 2 seeds."""
    roc = {(96, 1): 89.7, (96, 3): 88.6, (96, 10): 83.5, (48, 1): 87.0, (48, 3): 87.0, (48, 10): 79.6,
           (16, 1): 82.1, (16, 3): 80.9, (16, 10): 76.9, (8, 1): 77.1, (8, 3): 74.9, (8, 10): 70.6}
    rows = []
    def add(arch, width, rate, mels, hop, log, value, gmac):
        for seed in (0, 1):
            rows.append({"run_id": f"{arch}-{width}-{rate}-{mels}-{hop}-{log}-{seed}", "arch": arch, "width": width,
                         "sample_rate": rate, "n_mels": mels, "hop_multiplier": hop, "log": log, "seed": seed,
                         "roc_auc": (value + (seed - 0.5)) / 100, "pr_auc": value / 200, "gmac": gmac,
                         "gmac_analytic": gmac, "params": 1e5, "storage_bytes": 4 * mels * 126 // hop,
                         "train_seconds": 1.0, "epochs": 8, "best_epoch": 8, "clips_per_second": 1.0,
                         "latency_ms": 25 * gmac ** 0.5, "throughput_clips_per_second": 1000.0,
                         "clip_seconds": 4.0, "dataset": "synthetic", "n_tags": 17, "split": "default",
                         "tags_scored": 17, "tags_excluded": 0})
    for (mels, hop), value in roc.items():
        add("vgg", 0.0625, 16000, mels, hop, "log", value, 0.0092 * mels / 96 / hop)
    add("vgg", 0.0625, 16000, 96, 1, "dB", 88.2, 0.0092)
    add("vgg", 0.0625, 12000, 96, 1, "log", 87.2, 0.0070)
    add("vgg", 0.03125, 16000, 96, 1, "log", 81.6, 0.0029)
    add("musicnn", 0.125, 16000, 96, 1, "log", 73.8, 0.037)
    add("musicnn", 0.125, 16000, 48, 1, "log", 70.5, 0.024)
    return aggregate(pd.DataFrame(rows))


DEMO_SUMMARY = Path(__file__).parent / "data" / "demo_summary.csv"
"""summary.csv of a demo grid (`make grid`, 34 runs): a real crowded trade-off figure."""


def assert_labels_by_their_points(fig, renderer, covered: float = 0.0) -> None:
    """No label covers more than `covered` of another's area, none crosses the Pareto staircase, and no
    other marker is nearer a label than the point it names (a label beside the wrong point misleads),
    unless a line joins it to its point."""
    (ax,) = fig.axes
    labels = [t for t in ax.texts if t.get_text()]
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text alone, not a leader line
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            both = a.intersection(a, boxes[j])
            smaller = min(a.width * a.height, boxes[j].width * boxes[j].height)
            assert both is None or both.width * both.height <= covered * smaller, (labels[i].get_text(),
                                                                                   labels[j].get_text())
    markers = np.concatenate([ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
                              for line in marker_lines(ax)])

    def distance(box, point):
        return np.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1))

    for text, box in zip(labels, boxes, strict=True):
        if text.arrow_patch is not None:  # joined to its point by a line
            continue
        own = ax.transData.transform(text.xy)
        mine = distance(box, own)
        nearest_other = min(distance(box, m) for m in markers if np.hypot(*(m - own)) > 2)
        assert mine <= nearest_other, text.get_text()
    (staircase,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    path = staircase.get_path().transformed(staircase.get_transform())
    for text, box in zip(labels, boxes, strict=True):
        assert not path.intersects_bbox(box, filled=False), text.get_text()


def test_tradeoff_labels_sit_by_their_own_point_clear_of_the_front_and_each_other():
    fig = figures.tradeoff(_demo_grid(), "gmac")
    assert_labels_by_their_points(fig, _drawn(fig))


@pytest.mark.parametrize("cost", ["gmac", "storage_bytes"])
def test_a_real_demo_grids_labels_each_read_as_their_own_points(cost):
    # The demo's 16 kHz 16/x10 and 8/x3 points lie close: their labels read swapped before.
    fig = figures.tradeoff(aggregate(pd.read_csv(DEMO_SUMMARY)), cost)
    assert_labels_by_their_points(fig, _drawn(fig), covered=figures.OVERPRINT)


@pytest.mark.parametrize("cost", ["gmac", "storage_bytes"])
def test_a_paper_scale_grids_labels_print_over_no_label_and_the_front_strikes_none(cost):
    """All 88 configurations of specs/paper-mtat-vgg.toml on one panel: "13: 96/x1" printed into "12:
    48/x1" (read as "12: 48/x113: 96/x1"), and the staircase ran through "128/x1" (labels sized by an
    estimate per character, 20 % of a label allowed under another, a crossed line only a cost)."""
    from bench.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "paper-mtat-vgg.toml")
    configs = sorted({(c.mel.sample_rate, c.mel.n_mels, c.mel.hop_multiplier, c.mel.log)
                      for c in spec.configurations()})
    assert len(configs) == 88
    fig = figures.tradeoff(aggregate(tidy(configs)), cost)
    assert_labels_by_their_points(fig, _drawn(fig))


@pytest.mark.parametrize("frame", ["grid", "demo", "real demo", "demo grid"])
@pytest.mark.parametrize("cost", ["gmac", "storage_bytes"])
def test_tradeoff_labels_stay_inside_their_axes(frame, cost, request):
    """A label at the edge went outside the axes, over the tick labels ("2: 16/x10" across the y axis
    over its "75", "128/x1" past the right end): the axes widen by as much and the labels are placed again."""
    aggregated = {"real demo": lambda: aggregate(pd.read_csv(DEMO_SUMMARY)), "demo grid": _demo_grid}.get(
        frame, lambda: request.getfixturevalue(frame))()
    fig = figures.tradeoff(aggregated, cost)
    renderer = _drawn(fig)
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        for text in ax.texts:
            b = text.get_window_extent(renderer)
            assert box.x0 <= b.x0 + 0.5 and b.x1 <= box.x1 + 0.5 and box.y0 <= b.y0 + 0.5 and b.y1 <= box.y1 + 0.5, \
                text.get_text()


def test_a_panel_whose_labels_fit_keeps_one_set_of_them_while_another_makes_room():
    """Two datasets, two panels: the crowded one widened its axes and was labelled again, and so was
    the other, whose labels fit: every label of it was drawn twice."""
    from collections import Counter

    crowded = tidy(GRID, dataset="mtat")
    spread = tidy([(16000, 96, 1, "log"), (16000, 48, 2, "log"), (12000, 16, 1, "log")], dataset="msd")
    fig = figures.tradeoff(aggregate(pd.concat([crowded, spread], ignore_index=True)), "gmac")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        twice = [key for key, n in Counter((t.get_text(), tuple(t.xy)) for t in ax.texts).items() if n > 1]
        assert not twice, (ax.get_title(loc="left"), twice)


def test_a_far_labels_line_to_its_point_runs_through_no_label_placed_before_it(grid):
    """The line of "128/x2", sent farther out, ran through the label "128/x1": struck through, that
    label read as joined to the other point."""
    fig = figures.tradeoff(grid, "gmac")
    renderer = _drawn(fig)
    (ax,) = fig.axes
    # the texts' own boxes: an Annotation's extent holds its line's too, a box mostly empty on a diagonal
    boxes = [(text, Text.get_window_extent(text, renderer)) for text in ax.texts]
    far = [(text, box) for text, box in boxes if text.arrow_patch is not None]
    assert far
    for text, box in far:
        x, y = ax.transData.transform(text.xy)
        t = np.linspace(0.0, 1.0, 50)
        xs, ys = x + t * ((box.x0 + box.x1) / 2 - x), y + t * ((box.y0 + box.y1) / 2 - y)
        struck = [other.get_text() for other, b in boxes if other is not text
                  and ((xs > b.x0) & (xs < b.x1) & (ys > b.y0) & (ys < b.y1)).any()]
        assert not struck, (text.get_text(), struck)


@pytest.mark.parametrize("cost", ["gmac", "storage_bytes", "latency_ms"])
def test_tradeoff_figures_fit_the_page_without_overlapping_text(cost, tmp_path):
    fig = figures.tradeoff(_demo_grid(), cost)
    from tests.test_per_tag_figures import overlapping_texts

    assert overlapping_texts(fig) == []
    png, _ = figures.save(fig, tmp_path / cost)
    from PIL import Image

    assert Image.open(png).size[0] <= 7.0 * 200


def test_a_dataset_trained_on_two_setups_has_a_front_and_a_panel_per_setup():
    """A folder whose synthetic runs used 4 s and 8 s clips: the cheap, accurate 8 s configuration must
    not push the 4 s configurations off their front (they were never trained on the same data)."""
    from bench.report.statistics import front_groups

    short = tidy([(16000, 96, 1, "log"), (16000, 48, 1, "log")], seeds=(0, 1), clip_seconds=4.0, dataset="synthetic")
    long = tidy([(16000, 8, 10, "log")], seeds=(0, 1), clip_seconds=8.0, dataset="synthetic").assign(roc_auc=0.95)
    aggregated = aggregate(pd.concat([short, long], ignore_index=True))
    front = {(r.clip_seconds, r.n_mels): r.pareto_gmac for r in aggregated.itertuples(index=False)}
    assert front == {(4.0, 96): True, (4.0, 48): True, (8.0, 8): True}
    fig = figures.tradeoff(aggregated, "gmac")
    titles = sorted(ax.get_title(loc="left") for ax in fig.axes)
    assert len(titles) == 2
    assert titles[0].startswith("synthetic (4 s clips, ") and titles[1].startswith("synthetic (8 s clips, ")
    # a configuration whose two seeds ran on the two setups is on neither front, and says why
    mixed = pd.concat([tidy([(16000, 16, 1, "log")], seeds=(0,), clip_seconds=4.0, dataset="synthetic"),
                       tidy([(16000, 16, 1, "log")], seeds=(1,), clip_seconds=8.0, dataset="synthetic")])
    aggregated = aggregate(pd.concat([short, long, mixed.assign(roc_auc=0.99)], ignore_index=True))
    row = aggregated[aggregated["n_mels"] == 16].iloc[0]
    assert not row.pareto_gmac and not row.pareto_storage
    assert front_groups(aggregated)[row.name] == "synthetic (seeds on different data, or data not recorded)"
    assert aggregated[aggregated["n_mels"] != 16]["pareto_gmac"].all()


def test_a_long_data_setup_name_is_wrapped_and_leaves_the_panels_their_width():
    """A setup with a split file and dropped clips names its panel with a long title: unwrapped, it set
    the width of the laid-out figure and squeezed each panel to a sliver (constrained layout gave up)."""
    split = "data/splits/mtat-artist-filtered-lee2017.tsv, untagged clips dropped"
    short = tidy(DEMO, seeds=(0, 1), clip_seconds=4.0, dataset="synthetic").assign(split=split)
    long = tidy([(16000, 48, 1, "log"), (16000, 16, 3, "log")], seeds=(0, 1), clip_seconds=8.0, dataset="synthetic")
    fig = figures.tradeoff(aggregate(pd.concat([short, long], ignore_index=True)), "gmac")
    fig.draw_without_rendering()
    assert len(fig.axes) == 2
    assert all(figures.axes_inches(ax)[0] >= 3.0 for ax in fig.axes)
    assert any(split in ax.get_title(loc="left").replace("\n", " ") for ax in fig.axes)


def test_configurations_whose_seeds_ran_on_different_data_are_on_no_front():
    """Every configuration of the folder has one seed on 4 s clips and one on 8 s (the spec's clip length
    was edited between seeds): none is on a front, however they compare."""
    from bench.report.statistics import front_groups

    configs = [(16000, 96, 1, "log"), (16000, 48, 1, "log"), (16000, 16, 1, "log")]
    aggregated = aggregate(pd.concat([tidy(configs, seeds=(0,), clip_seconds=4.0, dataset="synthetic"),
                                      tidy(configs, seeds=(1,), clip_seconds=8.0, dataset="synthetic")],
                                     ignore_index=True))
    assert aggregated["setup_mixed"].all() and not aggregated["pareto_gmac"].any()
    assert set(front_groups(aggregated)) == {"synthetic (seeds on different data, or data not recorded)"}
    one_setup = aggregate(tidy(configs, seeds=(0, 1), clip_seconds=4.0, dataset="synthetic"))
    assert not one_setup["setup_mixed"].any() and one_setup["pareto_gmac"].all()


def test_every_hop_of_a_figure_has_its_own_colour_and_marker():
    """The paper's six hops and others a spec may add (any integer up to 100): colour and marker say
    the hop, so no two hops of one figure share either."""
    hops = [1, 2, 3, 4, 5, 10, 7, 20, 50, 100]
    styles = [figures.series_style(hop, "log", hops) for hop in hops]
    assert len({s["color"] for s in styles}) == len({s["marker"] for s in styles}) == len(hops)


def test_two_panels_key_says_whose_front_each_number_is_on():
    """Two datasets: the front's numbers run on from one panel to the next, and the key names the panel
    before its numbers, so that "1: 8/x10 ..." and "6: 8/x10 ..." do not read as one configuration."""
    both = pd.concat([tidy(DEMO, seeds=(0, 1), dataset="mtat"), tidy(DEMO, seeds=(0, 1), dataset="msd")],
                     ignore_index=True)
    fig = figures.tradeoff(aggregate(both), "gmac")
    key = [t.get_text() for t in fig.legends[1].get_texts()]
    heads = [i for i, text in enumerate(key) if text in ("mtat:", "msd:")]
    assert len(heads) == 2 and heads[0] == 0
    first, second = key[1:heads[1]], key[heads[1] + 1:]
    assert [int(t.split(":")[0]) for t in first + second] == list(range(1, len(first) + len(second) + 1))


def test_configurations_without_the_cost_are_counted_in_the_title():
    """Results from before latency was measured have none: they are left off the latency figure, and its
    title says how many."""
    aggregated = aggregate(tidy(DEMO, seeds=(0, 1)))
    aggregated["latency_ms"] = [2.0, np.nan, 1.0, np.nan, 2.5]
    fig = figures.tradeoff(aggregated, "latency_ms")
    assert "not shown: 2 configurations with no measured latency recorded" in heading(fig).replace("\n", " ")
    assert "not shown" not in heading(figures.tradeoff(aggregated, "gmac"))


def test_a_dataset_with_no_measured_cost_gets_no_empty_panel():
    both = aggregate(pd.concat([tidy(DEMO, seeds=(0, 1), dataset="mtat"), tidy(DEMO, seeds=(0, 1), dataset="msd")],
                               ignore_index=True))
    both["latency_ms"] = np.where(both["dataset"] == "msd", 2.0, np.nan)  # mtat's runs predate the measurement
    fig = figures.tradeoff(both, "latency_ms")
    assert [ax.get_title(loc="left").split(":")[0] for ax in fig.axes] == ["msd"]
    assert "not shown: 5 configurations with no measured latency recorded" in heading(fig).replace("\n", " ")


def test_a_crowded_tradeoff_figure_never_prints_one_label_over_another():
    """96 configurations in one panel: where a plain label has no spot clear of the others it is left out
    (the key says how many), a front label goes farther out on a line to its point; no label covers a
    fifth of another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    configs = [(16000, mels, hop, "log") for mels in range(8, 136, 8) for hop in (1, 2, 3, 4, 5, 10)]
    fig = figures.tradeoff(aggregate(tidy(configs, seeds=(0, 1))), "gmac")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    labels = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in fig.axes[0].texts]
    for i, (a, box_a) in enumerate(labels):
        for b, box_b in labels[i + 1:]:
            both = box_a.intersection(box_a, box_b)
            if both is not None:
                smaller = min(box_a.width * box_a.height, box_b.width * box_b.height)
                assert both.width * both.height <= 0.2 * smaller, (a, b)
    key = [t.get_text() for t in fig.legends[-1].get_texts()]
    left_out = len(configs) - len(labels)
    assert left_out > 0 and key[-1] == f"({left_out} labels left out: no room)"
    numbers = [int(text.split(":")[0]) for text, _ in labels if ":" in text]
    assert sorted(numbers) == list(range(1, len(key)))  # every front point keeps its numbered label


def test_configurations_on_other_data_are_marked_in_the_table_and_not_joined_in_fig1():
    """48 mels ran on 8 s clips, the rest of the grid on 29.1 s (an edited spec's old runs, a report of a
    folder): the table marks it and never makes it the column's best, Fig. 1 draws it without the line
    through the other mel-band counts, and both say why."""
    from bench.report.tables import results_table

    main = [(16000, 96, 1, "log"), (16000, 16, 1, "log"), (16000, 8, 1, "log")]
    rows = pd.concat([tidy(main, seeds=(0, 1)),
                      tidy([(16000, 48, 1, "log")], seeds=(0, 1), clip_seconds=8.0).assign(roc_auc=0.99)],
                     ignore_index=True)
    aggregated = aggregate(rows)
    table = results_table(aggregated, "vgg")
    cells = {mels: cells for mels, _, cells in table.rows}
    assert cells["48"][0][0].endswith(" ‡") and not cells["48"][0][1]  # the highest ROC-AUC, not bold
    assert cells["96"][0][1] and not cells["96"][0][0].endswith("‡")  # the best of the reference's data
    assert any(note.startswith("‡: trained on other data") for note in table.notes)
    fig = figures.fig1(aggregated, "vgg")
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_label() == "hop x1, log"]
    assert sorted(line.get_xdata()) == [8, 16, 96]  # joined: the 29.1 s configurations only
    assert any(48 in ln.get_xdata() and ln.get_linestyle() == "None" for ln in fig.axes[0].lines)
    assert "not joined (on other data than their 96/x1 reference, or seeds on different data): 16 kHz 48/x1 log" in \
        heading(fig).replace("\n", " ")


def test_the_gmac_beside_a_configuration_is_that_of_its_runs_on_the_columns_data():
    """48/x1 log ran on 10 s clips (‡, a fifth of the cost), 48/x1 dB on the 29.1 s clips of the rest:
    the GMAC column shows the 29.1 s cost, the one the ΔGMAC of the comparison table is of."""
    from bench.report.tables import results_table

    main = tidy([(16000, 96, 1, "log"), (16000, 96, 1, "dB"), (16000, 48, 1, "dB")], seeds=(0, 1))
    short = tidy([(16000, 48, 1, "log")], seeds=(0, 1), clip_seconds=10.0).assign(gmac=1.7)
    table = results_table(aggregate(pd.concat([short, main.assign(gmac=main["n_mels"] / 96 * 10.0)],
                                              ignore_index=True)), "vgg")
    at = [header for _, headers in table.groups for header in headers].index("GMAC")
    cells = {mels: cells for mels, _, cells in table.rows}
    assert cells["48"][at][0] == "5.00" and cells["96"][at][0] == "10.00"


def test_without_a_reference_configurations_on_different_data_are_not_ranked():
    """48/x1 on 29.1 s clips and 32/x1 on 10 s clips, no 96/x1 run: nothing says which data is the
    column's, so neither is bold (the 10 s one, with the higher mean, was), and the table says why;
    with both on one clip length the better is bold again."""
    from bench.report.tables import results_table

    rows = pd.concat([tidy([(16000, 48, 1, "log")], seeds=(0, 1)).assign(roc_auc=0.86),
                      tidy([(16000, 32, 1, "log")], seeds=(0, 1), clip_seconds=10.0).assign(roc_auc=0.96)],
                     ignore_index=True)
    table = results_table(aggregate(rows), "vgg")
    assert not any(bold for _, _, cells in table.rows for _, bold in cells[:2])
    assert any(note.startswith("A column without bold holds configurations trained on different data")
               for note in table.notes)
    same = results_table(aggregate(rows.assign(clip_seconds=29.1)), "vgg")
    assert {mels: cells[0] for mels, _, cells in same.rows} == {"48": ("86.00 (0.00)", False),
                                                               "32": ("96.00 (0.00)", True)}
    assert not any(note.startswith("A column without bold") for note in same.notes)


def test_log_and_db_twins_measured_at_other_latencies_are_labelled_at_their_own_points():
    # GMAC and storage are the same for the log and dB runs of one input; latency is measured per run.
    frame = tidy([(16000, 128, 1, "log"), (16000, 96, 1, "log"), (16000, 96, 1, "dB")], seeds=(0, 1))
    frame["latency_ms"] = frame["n_mels"].map({128: 0.5, 96: 3.0}) * np.where(frame["log"] == "dB", 10, 1)
    fig = figures.tradeoff(aggregate(frame), "latency_ms")  # 128/x1 alone is on the front
    (ax,) = fig.axes
    assert sorted(t.xy[0] for t in ax.texts if t.get_text() == "96/x1") == [3.0, 30.0]


def test_tradeoff_legends_key_only_what_is_drawn():
    log_only = aggregate(tidy([(16000, 96, 1, "log"), (16000, 48, 1, "log")], seeds=(0, 1)))
    assert "dB (hollow)" not in legend_texts(figures.tradeoff(log_only, "gmac"))
    assert "Pareto front" in legend_texts(figures.tradeoff(log_only, "gmac"))
    one = aggregate(tidy([(16000, 96, 1, "log")], seeds=(0, 1)))
    assert "Pareto front" not in legend_texts(figures.tradeoff(one, "gmac"))  # one point: no line drawn
    vgg = tidy([(16000, 96, 1, "log"), (16000, 48, 1, "log")], seeds=(0, 1))
    vgg["latency_ms"] = 2.0
    musicnn = tidy([(16000, 96, 1, "log")], seeds=(0, 1), arch="musicnn", width=0.25)  # latency not measured
    keyed = legend_texts(figures.tradeoff(aggregate(pd.concat([vgg, musicnn], ignore_index=True)), "latency_ms"))
    assert "vgg w1 16 kHz" in keyed and not any(text.startswith("musicnn") for text in keyed)
