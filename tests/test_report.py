"""`bench report`: a hand-made results folder -> statistics checked against independent formulas.

Every expected number here is recomputed from the values the test wrote, with numpy formulas (the
pooled-variance t statistic and scipy.stats.t for its p-value; brute-force Pareto dominance), never
read back from bench.report.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import time
from contextlib import redirect_stdout
from pathlib import Path

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from matplotlib.figure import Figure

from bench.core.errors import UserError
from bench.report import figures
from bench.report.report import (
    aggregate,
    cli_main,
    models,
    pareto_front,
    per_tag_delta,
    per_tag_matrix,
    per_tag_table,
    published_comparison,
    read_runs,
    report,
    run_folders,
    select,
    tidy_table,
)

from .test_figures_readability import heading

TAGS = ("drums", "piano", "vibrato", "ticks")
SEEDS = (0, 1, 2)
# (arch, sample_rate, n_mels, hop, log) -> GMAC per clip; all mtat, width 1.
CONFIGS = {
    ("vgg", 12000, 96, 1, "dB"): 10.01,  # the reference
    ("vgg", 12000, 128, 1, "dB"): 13.35,
    ("vgg", 12000, 48, 1, "dB"): 5.01,
    ("vgg", 12000, 96, 2, "dB"): 5.00,  # seed 2 failed
    ("vgg", 12000, 48, 10, "dB"): 0.49,  # seed 2 has a folder without result.json
    ("vgg", 12000, 8, 1, "dB"): 0.83,  # one seed only: no t-test
    ("vgg", 16000, 48, 1, "dB"): 6.67,  # no 16 kHz reference: no relative change, no t-test
    ("musicnn", 16000, 96, 1, "dB"): 6.40,
    ("musicnn", 16000, 48, 1, "dB"): 3.20,
}
FAILED = (("vgg", 12000, 96, 2, "dB"), 2)
INCOMPLETE = (("vgg", 12000, 48, 10, "dB"), 2)
SINGLE_SEED = ("vgg", 12000, 8, 1, "dB")
REFERENCES = {("vgg", 12000, "dB"): ("vgg", 12000, 96, 1, "dB"),
              ("musicnn", 16000, "dB"): ("musicnn", 16000, 96, 1, "dB")}


def run_id(config, seed):
    arch, rate, mels, hop, log = config
    digest = hashlib.sha256(repr((config, seed)).encode()).hexdigest()[:10]
    return f"{arch}-{rate // 1000}k-{mels}mel-x{hop}-{log}-s{seed}-{digest}"


def result_doc(config, seed, gmac, roc_by_tag, pr):
    arch, rate, mels, hop, log = config
    frames = -(-{12000: 1366, 16000: 1820}[rate] // hop)
    return {
        "run_id": run_id(config, seed), "spec": "test",
        "config": {"arch": arch, "width": 1.0, "sample_rate": rate, "n_mels": mels, "hop_multiplier": hop, "log": log,
                   "seed": seed, "dataset": "mtat", "n_frames": frames},
        "canonical": {"arch": arch, "dataset": {"name": "mtat", "clip_seconds": 29.1, "n_tags": 50,
                                                "drop_untagged": False},
                      # as the runner writes them: the architecture's options, defaults included
                      "options": {"width": 1.0, **({"segment_seconds": 3.0} if arch == "musicnn" else {})}},
        "status": "ok",
        "metrics": {"roc_auc": float(np.mean(list(roc_by_tag.values()))), "pr_auc": pr, "n_tags": len(TAGS),
                    "excluded_tags": [],
                    "per_tag": {t: {"roc_auc": v, "pr_auc": pr, "positives": 5} for t, v in roc_by_tag.items()}},
        "valid": {"roc_auc": 0.8},
        "cost": {"gmac": gmac, "gmac_analytic": gmac * 0.99, "params": 1000, "fvcore_unsupported": {},
                 "segments": None, "storage_bytes": mels * frames * 4, "storage_bytes_f16": mels * frames * 2,
                 # different for each seed, so that the aggregate's mean is told from a max, min or first
                 "train_seconds": 10.0 * gmac + seed, "eval_seconds": 1.0, "epochs": 5 + seed, "best_epoch": 3,
                 "clips_per_second": 100.0 + 10 * seed},
        "training": {"history": []}, "data": {"cache_failed": 0, "cache_padded": 0}, "provenance": {},
    }


def write_results(root: Path, configs=CONFIGS, seed_values: int = 7) -> dict:
    """Write the runs; returns {config: {seed: (roc_auc, pr_auc, {tag: roc_auc})}} for the ok ones."""
    rng = np.random.default_rng(seed_values)
    values = {}
    for config, gmac in configs.items():
        seeds = (0,) if config == SINGLE_SEED else SEEDS
        for seed in seeds:
            folder = root / "runs" / run_id(config, seed)
            folder.mkdir(parents=True)
            if (config, seed) == INCOMPLETE:
                (folder / "checkpoint.pt").write_bytes(b"")
                continue
            if (config, seed) == FAILED:
                doc = {"run_id": run_id(config, seed), "config": result_doc(config, seed, gmac, {"x": 0}, 0)["config"],
                       "status": "failed", "error": "NonFiniteLoss: loss is nan"}
            else:
                # lower resolution lowers accuracy, plus noise; "vibrato" suffers most at few mel bands
                level = 0.85 - 0.002 * (96 - config[2]) / 8 - 0.004 * config[3] + 0.03 * (config[0] == "musicnn")
                tags = {t: float(level + rng.normal(0, 0.01) - (0.1 * (config[2] < 96) if t == "vibrato" else 0))
                        for t in TAGS}
                pr = float(level - 0.4 + rng.normal(0, 0.01))
                doc = result_doc(config, seed, gmac, tags, pr)
                values.setdefault(config, {})[seed] = (doc["metrics"]["roc_auc"], pr, tags)
            (folder / "result.json").write_text(json.dumps(doc))
    return values


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("results") / "test"
    values = write_results(root)
    summary = report(root)
    return root, values, summary


def key_of(frame_row) -> tuple:
    return (frame_row["arch"], frame_row["sample_rate"], frame_row["n_mels"], frame_row["hop_multiplier"],
            frame_row["log"])


def csv(written, name):
    return pd.read_csv(written[0] / "report" / name, keep_default_na=True)


def student_p(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    t = (a.mean() - b.mean()) / np.sqrt(pooled * (1 / len(a) + 1 / len(b)))
    return float(2 * scipy.stats.t.sf(abs(t), len(a) + len(b) - 2))


def test_every_file_is_written(written):
    out = written[0] / "report"
    expected = ["summary.csv", "aggregate.csv", "comparison.csv", "per_tag.csv", "per_tag_delta.csv",
                "per_tag_delta_global.csv", "runs_not_ok.csv", "tables.md", "tables.tex", "published.md"]
    for stem in ("fig1_vgg", "fig1_musicnn", "per_tag_vgg", "per_tag_musicnn", "tradeoff_gmac", "tradeoff_storage"):
        expected += [f"{stem}.png", f"{stem}.pdf"]
    for name in expected:
        assert (out / name).stat().st_size > 0, name
        assert out / name in written[2].files
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for pdf in out.glob("*.pdf"):
        assert pdf.read_bytes()[:5] == b"%PDF-"
    assert [path.name for path in out.glob(".*")] == [".written"], "no temporary files left behind"
    assert sorted((out / ".written").read_text().split()) == sorted(path.name for path in written[2].files)
    # every run is dB: no model has a 96/x1 log run, so no global per-tag figure, and a note says so
    assert not list(out.glob("per_tag_global_*"))
    notes = [w for w in written[2].warnings if "per_tag_global" in w]
    assert len(notes) == 2 and all("16k 96/x1 log" in note for note in notes)


def test_summary_has_one_row_per_ok_run(written):
    _, values, summary = written
    table = csv(written, "summary.csv")
    assert len(table) == sum(len(seeds) for seeds in values.values()) == summary.n_ok
    assert list(table.columns[:8]) == ["run_id", "arch", "width", "sample_rate", "n_mels", "hop_multiplier", "log",
                                       "seed"]
    for row in table.to_dict("records"):
        roc, pr, _ = values[key_of(row)][row["seed"]]
        assert row["roc_auc"] == pytest.approx(roc) and row["pr_auc"] == pytest.approx(pr)
        assert row["gmac"] == pytest.approx(CONFIGS[key_of(row)]) and row["clip_seconds"] == 29.1
        assert row["dataset"] == "mtat" and row["n_tags"] == 50 and row["split"] == "default"


def test_failed_and_incomplete_runs_are_listed_not_averaged(written):
    _, _, summary = written
    not_ok = csv(written, "runs_not_ok.csv").set_index("run_id")
    assert not_ok.loc[run_id(*FAILED), "status"] == "failed"
    assert "NonFiniteLoss" in not_ok.loc[run_id(*FAILED), "reason"]
    assert not_ok.loc[run_id(*INCOMPLETE), "status"] == "incomplete"
    assert not_ok.loc[run_id(*INCOMPLETE), "n_mels"] == 48  # read from the run id: no config.json was written
    assert len(not_ok) == 2
    ok_ids = set(csv(written, "summary.csv")["run_id"])
    assert run_id(*FAILED) not in ok_ids and run_id(*INCOMPLETE) not in ok_ids
    aggregated = csv(written, "aggregate.csv")
    for config, _ in (FAILED, INCOMPLETE):
        row = aggregated[[key_of(r) == config for r in aggregated.to_dict("records")]].iloc[0]
        assert row["n_seeds"] == 2 and str(row["seeds_missing"]) == "2" and row["seeds"] == "0;1"
    text = summary.text()
    assert run_id(*FAILED) in text and run_id(*INCOMPLETE) in text
    assert "96/x2 (n=2, missing seeds 2)" in text and "48/x10 (n=2, missing seeds 2)" in text


def test_aggregate_means_and_stds(written):
    _, values, summary = written
    aggregated = csv(written, "aggregate.csv")
    assert len(aggregated) == len(CONFIGS) == summary.n_configurations
    for row in aggregated.to_dict("records"):
        seeds = values[key_of(row)]
        roc = np.array([seeds[s][0] for s in sorted(seeds)])
        pr = np.array([seeds[s][1] for s in sorted(seeds)])
        assert row["n_seeds"] == len(roc)
        assert row["roc_auc_mean"] == pytest.approx(roc.sum() / len(roc))
        assert row["pr_auc_mean"] == pytest.approx(pr.sum() / len(pr))
        if len(roc) > 1:
            assert row["roc_auc_std"] == pytest.approx(np.sqrt(((roc - roc.mean()) ** 2).sum() / (len(roc) - 1)))
            assert row["pr_auc_std"] == pytest.approx(np.sqrt(((pr - pr.mean()) ** 2).sum() / (len(pr) - 1)))
        else:
            assert np.isnan(row["roc_auc_std"])
        assert row["gmac"] == pytest.approx(CONFIGS[key_of(row)])
        mean_seed = sum(sorted(seeds)) / len(seeds)  # result_doc: the seed added to each of the three
        assert row["train_seconds_mean"] == pytest.approx(10.0 * CONFIGS[key_of(row)] + mean_seed)
        assert row["epochs_mean"] == pytest.approx(5 + mean_seed)
        assert row["clips_per_second_mean"] == pytest.approx(100.0 + 10 * mean_seed)


def test_relative_changes_and_p_values(written):
    _, values, _ = written
    comparison = csv(written, "comparison.csv")
    tested = 0
    for row in comparison.to_dict("records"):
        config = key_of(row)
        reference = REFERENCES.get((config[0], config[1], config[4]))
        if reference is None:  # vgg 16 kHz: no reference run
            assert np.isnan([row["roc_auc_change_pct"], row["roc_auc_p"], row["gmac_change_pct"]]).all()
            continue
        if config == reference:
            assert row["is_reference"] and np.isnan(row["roc_auc_p"])
            continue
        for k, metric in enumerate(("roc_auc", "pr_auc")):
            ours = [values[config][s][k] for s in sorted(values[config])]
            ref = [values[reference][s][k] for s in sorted(values[reference])]
            change = 100 * (np.mean(ours) - np.mean(ref)) / np.mean(ref)
            assert row[f"{metric}_change_pct"] == pytest.approx(change)
            if config == SINGLE_SEED:
                assert np.isnan(row[f"{metric}_p"])
            else:
                assert row[f"{metric}_p"] == pytest.approx(student_p(ours, ref), rel=1e-9)
                tested += 1
        assert row["gmac_change_pct"] == pytest.approx(100 * (CONFIGS[config] / CONFIGS[reference] - 1))
    assert tested == 2 * 5


def brute_force_front(points: dict) -> set:
    """Configurations no other one beats: cost <= and accuracy >= with one strict."""
    front = set()
    for name, (cost, acc) in points.items():
        beaten = any(c <= cost and a >= acc and (c, a) != (cost, acc) for other, (c, a) in points.items()
                     if other != name)
        if not beaten:
            front.add(name)
    return front


def test_pareto_front_matches_brute_force(written):
    _, values, _ = written
    aggregated = csv(written, "aggregate.csv")
    accuracy = {config: np.mean([v[0] for v in seeds.values()]) for config, seeds in values.items()}
    storage = {config: config[2] * -(-{12000: 1366, 16000: 1820}[config[1]] // config[3]) * 4 for config in CONFIGS}
    for column, cost in (("pareto_gmac", CONFIGS), ("pareto_storage", storage)):
        expected = brute_force_front({c: (cost[c], accuracy[c]) for c in CONFIGS})
        found = {key_of(r) for r in aggregated.to_dict("records") if r[column]}
        assert found == expected and found


def test_pareto_front_ties_and_missing_values():
    assert list(pareto_front([1, 1, 2, 3, np.nan], [0.5, 0.5, 0.4, 0.6, 0.9])) == [True, True, False, True, False]


def test_a_mean_one_ulp_cheaper_does_not_put_a_dominated_configuration_on_the_front():
    """MusiCNN 12 kHz 48/x1 costs 7.0615212 GMAC per clip with log and with dB: averaged over three seeds
    and over two (a failed seed), the two means differ in their last bit, and the less accurate dB was
    the strictly cheaper, on the front."""
    gmac = 7.0615212
    three, two = np.mean([gmac] * 3), np.mean([gmac] * 2)
    assert three != two  # the floats the report averages
    assert list(pareto_front([three, two], [0.9017, 0.9031])) == [False, True]
    assert list(pareto_front([two, three], [0.9031, 0.9017])) == [True, False]
    # random clouds against the brute force, including duplicate costs
    rng = np.random.default_rng(3)
    for _ in range(20):
        cost, acc = rng.integers(1, 6, 12).astype(float), rng.integers(1, 6, 12).astype(float)
        expected = brute_force_front({i: (cost[i], acc[i]) for i in range(12)})
        assert set(np.flatnonzero(pareto_front(cost, acc))) == expected


def test_per_tag_change_against_reference(written):
    root, values, _ = written
    ok, _ = read_runs(run_folders(root))
    delta = per_tag_delta(per_tag_table(ok))
    config, reference = ("vgg", 12000, 48, 1, "dB"), ("vgg", 12000, 96, 1, "dB")
    for tag in TAGS:
        row = delta[[key_of(r) == config and r["tag"] == tag for r in delta.to_dict("records")]].iloc[0]
        expected = np.mean([v[2][tag] for v in values[config].values()]) - np.mean(
            [v[2][tag] for v in values[reference].values()])
        assert row["roc_auc_diff"] == pytest.approx(expected)
    matrix = per_tag_matrix(select(delta, {"dataset": "mtat", "arch": "vgg", "width": 1.0}))
    assert matrix.index[0] == "vibrato"  # the tag that drops at fewer mel bands comes first
    assert list(matrix.columns) == ["128/x1", "96/x2", "48/x1", "48/x10", "8/x1"]  # paper order, no reference
    assert (matrix.min(axis=1).diff().dropna() >= 0).all()


def test_tables_mark_best_and_report_p_values(written):
    _, values, _ = written
    out = written[0] / "report"
    md, tex = (out / "tables.md").read_text(), (out / "tables.tex").read_text()
    vgg12 = {c: v for c, v in values.items() if c[:2] == ("vgg", 12000)}
    best = max(vgg12, key=lambda c: np.mean([s[0] for s in vgg12[c].values()]))
    roc = [s[0] for s in vgg12[best].values()]
    cell = f"{100 * np.mean(roc):.2f} ({100 * np.std(roc, ddof=1):.2f})"
    assert f"**{cell}" in md and rf"\textbf{{{cell}" in tex
    assert "†" in md and r"$^\dagger$" in tex  # fewer seeds
    assert "n/a" in md and "reference" in md
    ours = [values[("vgg", 12000, 48, 1, "dB")][s][0] for s in SEEDS]
    ref = [values[("vgg", 12000, 96, 1, "dB")][s][0] for s in SEEDS]
    p = student_p(ours, ref)
    assert f"{100 * (np.mean(ours) / np.mean(ref) - 1):+.2f} ({'<0.001' if p < 0.001 else f'{p:.3f}'}" in md
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 4  # 2 models x (results, change)
    first, *body = tex.splitlines()
    assert first.startswith("% needs \\usepackage{booktabs}") and "\\usepackage{graphicx}" in first
    # every % is escaped, but the one that ends \resizebox{...}{!}{% (no space before the tabular)
    assert r"\toprule" in tex and all("%" not in line.replace(r"\%", "") for line in body
                                      if not line.startswith(r"\resizebox"))


def test_published_numbers_beside_ours(written):
    _, values, summary = written
    published = (written[0] / "report" / "published.md").read_text()
    assert "88.65" in published  # VGG 12 kHz dB 96/x1 (the authors' results page)
    assert "90.60" in published and "38.09" in published  # MusiCNN 16 kHz dB 96/x1 (Table IV)
    ours = 100 * np.mean([v[0] for v in values[("musicnn", 16000, 96, 1, "dB")].values()])
    assert f"{ours:.2f} vs 90.60 ({ours - 90.60:+.2f} pp)" in summary.text()  # the header's "ours - published"
    # published.md: ours as mean (standard deviation over seeds, ddof 1) in %, as the paper's
    std = 100 * np.std([v[0] for v in values[("musicnn", 16000, 96, 1, "dB")].values()], ddof=1)
    assert f"{ours:.2f} ({std:.2f})" in published
    assert len(summary.published) == 7  # vgg 12k dB 128, 96, 48/x1, 96/x2; vgg 16k dB 48/x1; musicnn 16k dB 96, 48/x1


def test_no_published_numbers_for_other_datasets():
    frame = pd.DataFrame([{"dataset": "synthetic", "arch": "vgg", "width": 1.0, "sample_rate": 12000, "n_mels": 96,
                           "hop_multiplier": 1, "log": "dB", "roc_auc_mean": 0.9, "roc_auc_std": 0.01,
                           "pr_auc_mean": 0.4, "pr_auc_std": 0.01, "n_seeds": 3, "clip_seconds": 29.1,
                           "n_tags": 50, "split": "default", "arch_options": ""}])
    assert published_comparison(frame).empty
    assert len(published_comparison(frame.assign(dataset="mtat"))) == 1


def _points(line) -> int:
    return len(line.get_xdata()) if line.get_marker() not in (None, "None", "", " ") else 0


def _small_texts(fig) -> list[str]:
    fig.canvas.draw()  # texts set at draw time (tick labels) exist only after a draw
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)
            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < 8]


@pytest.fixture(scope="module")
def frames(written):
    ok, _ = read_runs(run_folders(written[0]))
    summary = tidy_table(ok)
    aggregated = aggregate(summary)
    return aggregated, per_tag_delta(per_tag_table(ok))


def test_fig1_panels_and_points(frames):
    aggregated, _ = frames
    vgg = select(aggregated, {"dataset": "mtat", "arch": "vgg", "width": 1.0})
    fig = figures.fig1(vgg, "vgg")
    axes = fig.axes
    assert len(axes) == 3  # ROC-AUC, PR-AUC, GMAC at 12 kHz; 16 kHz holds one configuration: no column
    for ax in axes:
        assert sum(_points(line) for line in ax.lines if line.get_marker() != "_") == 6
    assert "16 kHz 48/x1 dB" in heading(fig)
    assert axes[-1].get_yscale() == "log"
    fig.draw_without_rendering()
    assert [t.get_text() for t in axes[-1].get_xticklabels()] == ["8", "48", "96", "128"]  # mel bands
    assert _small_texts(fig) == []


def test_tradeoff_labels_the_pareto_front(frames, written):
    aggregated, _ = frames
    _, values, _ = written
    accuracy = {config: np.mean([v[0] for v in seeds.values()]) for config, seeds in values.items()}
    front = brute_force_front({c: (CONFIGS[c], accuracy[c]) for c in CONFIGS})
    for cost in ("gmac", "storage_bytes"):
        fig = figures.tradeoff(aggregated, cost)
        (ax,) = fig.axes
        assert ax.get_xscale() == "log"
        assert sum(_points(line) for line in ax.lines) == len(CONFIGS)
        assert len(ax.texts) == len(CONFIGS)  # every point labelled (all dB: no log/dB pair shares a label)
        if cost == "gmac":
            assert len([t for t in ax.texts if t.get_fontweight() == "bold"]) == len(front)
            key = fig.legends[1].get_texts()
            assert len(key) == len(front)
            for config in front:
                label = f"{config[0]} w1 {config[2]}/x{config[3]} {config[1] // 1000}k {config[4]}"  # all width 1
                assert any(t.get_text().split(": ", 1)[1].startswith(label) for t in key), label
        assert _small_texts(fig) == []


def test_per_tag_heatmap(frames):
    _, delta = frames
    matrix = per_tag_matrix(select(delta, {"dataset": "mtat", "arch": "vgg", "width": 1.0}))
    fig = figures.per_tag(matrix, "vgg")
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (len(TAGS), 5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(matrix.index)
    assert _small_texts(fig) == []


def test_tag_names_holding_dollars_are_drawn_as_written(frames, tmp_path):
    """A manifest's tag "money $$" had stopped the whole report (matplotlib read the pair as a formula: a
    ValueError before any file was written), and "$uicideboy$" was drawn as "uicideboy" in math italics."""
    _, delta = frames
    matrix = per_tag_matrix(select(delta, {"dataset": "mtat", "arch": "vgg", "width": 1.0}))
    names = ["money $$", "a$_$b", "$uicideboy$", "uicideboy", *matrix.index[4:]]
    fig = figures.per_tag(matrix.set_axis(names), "vgg")
    assert sorted(path.suffix for path in figures.save(fig, tmp_path / "per_tag")) == [".pdf", ".png"]
    labels = {t.get_text(): t for t in fig.axes[0].get_yticklabels()}
    assert list(labels) == names
    # as text the two $ add their width; as a formula they are dropped and the rest set in italics
    assert labels["$uicideboy$"].get_window_extent().width > 1.1 * labels["uicideboy"].get_window_extent().width


def test_models_name_figures_by_arch(frames):
    aggregated, _ = frames
    assert sorted(slug for slug, _, _ in models(aggregated)) == ["musicnn", "vgg"]
    wide = aggregated.assign(width=np.where(aggregated["n_mels"] == 8, 0.5, aggregated["width"]))
    assert sorted(slug for slug, _, _ in models(wide)) == ["musicnn", "vgg-w0.5", "vgg-w1"]


@pytest.mark.parametrize("widths", [(1 / 3, 0.333333), (0.0625, 0.06250000000000001)])
def test_two_widths_that_print_alike_with_six_digits_are_two_models_everywhere(tmp_path, widths):
    """Two widths alike to `:g`'s six digits (1/3 in one spec, 0.333333 in another) had one slug: one
    model's Fig. 1 replaced the other's, unsaid, and tables, legends and aggregate.csv could not tell them
    apart."""
    from bench.report.columns import width_label

    for i, (width, gmac) in enumerate(zip(widths, (10.01, 9.0), strict=True)):
        for seed in SEEDS:  # the run ids of one configuration apart: other seeds
            doc = result_doc(("vgg", 12000, 96, 1, "log"), seed + 3 * i, gmac, {t: 0.85 for t in TAGS}, 0.4)
            doc["config"]["width"] = doc["canonical"]["options"]["width"] = width
            write_doc(tmp_path, doc)
    with redirect_stdout(io.StringIO()):
        cli_main(tmp_path)
    out = tmp_path / "report"
    fig1 = sorted(p.name for p in out.glob("fig1_*.png"))
    assert len(fig1) == 2, fig1
    aggregate = (out / "aggregate.csv").read_text().splitlines()
    assert len(aggregate) == 3 and len(set(line.split(",ref")[0] for line in aggregate[1:])) == 2
    assert sorted(pd.read_csv(out / "aggregate.csv")["width"]) == sorted(widths)  # read back exactly
    titles = [line for line in (out / "tables.md").read_text().splitlines() if line.startswith("### vgg")]
    assert len(titles) == 4 and len(set(titles)) == 4, titles  # two sections per model
    assert width_label(1 / 3) == "1/3" and width_label(0.333333) == "0.333333"
    assert width_label(0.0625) == "1/16" and width_label(0.06250000000000001) == "0.06250000000000001"


def test_the_same_results_give_byte_identical_pdfs(tmp_path):
    """A PDF had its creation date in it: every rerun of the report changed every PDF."""
    from bench.report.figures import rendered

    fig = Figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    first = rendered(fig, "f")
    time.sleep(1.1)  # the date is to the second
    assert rendered(fig, "f")["f.pdf"] == first["f.pdf"] and b"CreationDate" not in first["f.pdf"]


def test_only_failed_runs_still_report(tmp_path):
    config = ("vgg", 12000, 96, 1, "log")
    folder = tmp_path / "runs" / run_id(config, 0)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"run_id": run_id(config, 0), "status": "failed",
                                                    "error": "RuntimeError: out of memory"}))
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        assert cli_main(tmp_path) == 0
    assert "out of memory" in stdout.getvalue() and "1 failed" in stdout.getvalue()
    assert (tmp_path / "report" / "runs_not_ok.csv").read_text().count("failed") == 1
    assert "No successful runs" in (tmp_path / "report" / "tables.md").read_text()
    assert not list((tmp_path / "report").glob("*.png"))


def test_a_result_it_may_not_read_stops_the_report_and_keeps_the_earlier_one(tmp_path, capsys, monkeypatch):
    """Another user's run whose result.json is mode 600: the report had listed the finished run
    "unreadable", averaged the other seeds and replaced the figures, exit 0 (bench status stops there)."""
    from bench.cli import main

    root = tmp_path / "test"
    write_results(root)
    assert main(["report", str(root)]) == 0
    before = (root / "report" / "summary.csv").read_bytes()
    from bench.report import reading

    secret = next(root.glob("runs/*/result.json"))
    real = reading.read_regular_file

    def read_regular_file(path):
        if path == secret:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    access = os.access
    monkeypatch.setattr(reading, "read_regular_file", read_regular_file)
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and (path, mode) != (secret, os.R_OK))
    capsys.readouterr()
    assert main(["report", str(root)]) == 2
    assert capsys.readouterr().err == (f"bench report: error: cannot read {secret}: Permission denied; make it "
                                       "readable, then rerun\n")
    assert (root / "report" / "summary.csv").read_bytes() == before


def test_results_on_read_only_storage_are_reported_with_out_elsewhere(written, tmp_path, capsys, monkeypatch):
    """An archive on read-only storage, another user's results: the report had no other place to go than the
    results folder's report/, so no figures could be made of them."""
    import errno
    import tempfile

    from bench.cli import main

    root = tmp_path / "archive"
    shutil.copytree(written[0] / "runs", root / "runs")
    real = tempfile.mkstemp

    def read_only_archive(*args, dir=None, **kwargs):
        if dir is not None and (os.path.realpath(dir) + os.sep).startswith(f"{root}{os.sep}"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_archive)
    assert main(["report", str(root)]) == 2
    assert capsys.readouterr().err == (f"bench report: error: results folder {root / 'report'}: cannot create files "
                                       f"in {root} (Read-only file system); give --out DIR to write the report "
                                       "elsewhere\n")
    (tmp_path / "figs").mkdir()  # a paper's figures folder: files of the user's named like a report's stay
    for mine in ("fig1_crnn.png", "tradeoff_latency.pdf"):
        (tmp_path / "figs" / mine).write_text("mine")
    assert main(["report", str(root), "--out", str(tmp_path / "figs")]) == 0
    assert [(tmp_path / "figs" / mine).read_text() for mine in ("fig1_crnn.png", "tradeoff_latency.pdf")] == \
        ["mine", "mine"]
    assert "figs" in capsys.readouterr().out
    assert (tmp_path / "figs" / "summary.csv").read_bytes() == (written[0] / "report" / "summary.csv").read_bytes()
    assert (tmp_path / "figs" / "fig1_vgg.pdf").exists() and not (root / "report").exists()
    monkeypatch.undo()
    assert main(["report", str(root), "--out", str(root / "runs" / "notes")]) == 2
    assert "is inside the run folders of" in capsys.readouterr().err
    linked = tmp_path / "linked"  # its runs/ a link to the archive's
    linked.mkdir()
    (linked / "runs").symlink_to(root / "runs")
    assert main(["report", str(linked), "--out", str(root / "runs" / "notes")]) == 2
    assert "is inside the run folders of" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["bogus", "Agg "])
def test_a_matplotlib_backend_it_does_not_know_is_no_matter_to_the_report(written, tmp_path, backend):
    """MPLBACKEND=bogus (or "Agg " with a space) had ended bench report, and a grid whose runs were all ok,
    in matplotlib's ValueError at its import: the figures are drawn without pyplot, on no backend."""
    import sys

    root = tmp_path / "test"
    shutil.copytree(written[0] / "runs", root / "runs")
    proc = subprocess.run([sys.executable, "-m", "bench", "report", str(root)], capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": backend}, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert (root / "report" / "fig1_vgg.png").exists()


def test_missing_or_empty_results_folder(tmp_path):
    with pytest.raises(UserError, match="no such results folder"):
        report(tmp_path / "nope")
    with pytest.raises(UserError, match="holds no runs"):
        report(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError, match="holds no runs"):
        report(tmp_path)
    (tmp_path / "demo" / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs").rmdir()
    with pytest.raises(UserError, match="did you mean .*demo"):
        report(tmp_path)


def test_published_numbers_are_the_papers_and_its_results_pages():
    """Every number the authors published (tests/data/eusipco2020/README.md) and nothing else: the
    results page's 36 table rows, of which Tables IV and V print the dB values."""
    import csv

    from bench.report.report import published_numbers

    table = published_numbers()
    page = {}
    with open(Path(__file__).parent / "data" / "eusipco2020" / "results_page.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            for column in ("12kHz-log", "12kHz-dB", "16kHz-log", "16kHz-dB"):
                if row[column] != "-":
                    key = ({"MagnaTagATune": "mtat", "MSD": "msd"}[row["dataset"]], row["model"].lower(),
                           int(column[:2]) * 1000, int(row["mels"]), int(row["hop"][1:]), column.split("-")[1])
                    page.setdefault(key, {})[{"ROC": "roc_auc", "PR": "pr_auc"}[row["metric"]]] = float(row[column])
    ours = {(r.dataset, r.arch, r.sample_rate, r.n_mels, r.hop_multiplier, r.log): {"roc_auc": r.roc_auc,
                                                                                     "pr_auc": r.pr_auc}
            for r in table.itertuples()}
    assert len(ours) == len(table) == 59
    assert ours == page
    # the design brief's table and Table IV, cell by cell where they print them
    assert ours[("mtat", "vgg", 16000, 48, 1, "dB")]["roc_auc"] == 89.32
    assert ours[("mtat", "vgg", 12000, 96, 2, "log")]["roc_auc"] == 88.37
    assert ours[("mtat", "musicnn", 16000, 128, 1, "dB")] == {"roc_auc": 90.83, "pr_auc": 38.92}
    assert ours[("msd", "musicnn", 16000, 48, 1, "dB")] == {"roc_auc": 87.10, "pr_auc": 26.64}
    sources = table.groupby(["dataset", "arch", "log"])["source"].unique().map(tuple).to_dict()
    assert sources[("mtat", "musicnn", "dB")] == ("paper Table IV (MusiCNN, MTAT)",)
    assert sources[("msd", "vgg", "dB")] == sources[("msd", "musicnn", "dB")] == ("paper Table V (MSD)",)
    assert all("results page" in source for key, (source,) in sources.items()
               if key not in {("mtat", "musicnn", "dB"), ("msd", "vgg", "dB"), ("msd", "musicnn", "dB")})


def write_doc(root: Path, doc: dict) -> None:
    folder = root / "runs" / doc["run_id"]
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(doc))


def three_seeds(root: Path, config, gmac, rocs, clip_seconds=29.1, pr=0.4):
    for seed, roc in enumerate(rocs):
        doc = result_doc(config, seed, gmac, {t: roc for t in TAGS}, pr)
        doc["canonical"]["dataset"]["clip_seconds"] = clip_seconds[seed] if isinstance(clip_seconds, tuple) \
            else clip_seconds
        write_doc(root, doc)


@pytest.mark.usefixtures("figures_unrendered")
def test_runs_on_other_data_are_not_compared_with_the_reference_and_are_named(tmp_path):
    """An edited spec (6 s clips) leaves its old runs in the folder: a configuration whose seeds, or
    whose reference, ran on other data is not t-tested against it, and the report says so."""
    reference, shorter, mixed = (("vgg", 12000, m, 1, "log") for m in (96, 48, 32))
    three_seeds(tmp_path, reference, 10.01, (0.85, 0.86, 0.87))
    three_seeds(tmp_path, shorter, 0.99, (0.80, 0.81, 0.80), clip_seconds=6.0)  # 6 s clips: 1/5 of the GMAC
    three_seeds(tmp_path, mixed, 3.3, (0.84, 0.845, 0.70), clip_seconds=(29.1, 29.1, 6.0))
    said = "\n".join(report(tmp_path).warnings)
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv").set_index("n_mels")
    for mels in (48, 32):
        assert comparison.loc[mels, "setup_differs"]
        assert comparison.loc[mels, ["roc_auc_diff", "roc_auc_p", "gmac_change_pct"]].isna().all()
    assert not comparison.loc[96, "setup_differs"]
    from bench.report.tables import comparison_table

    table = comparison_table(comparison.reset_index(), "t")
    for mels, _, cells in table.rows:  # ROC-AUC, PR-AUC: no change to state (docs/report.md's "–")
        assert [text for text, _ in cells[:2]] == (["reference"] * 2 if mels == "96" else ["–", "–"])
    assert "mtat vgg 1.0 12000 32 1 log: its seeds ran on different data (clip_seconds 29.1 / 6.0)" in said
    assert "2 configuration(s) not compared with their reference" in said


@pytest.mark.usefixtures("figures_unrendered")
def test_runs_of_another_jamendo_subset_are_other_data(tmp_path):
    """A spec edited from MTG-Jamendo's top50tags to its genre subset, run into the same folder: the
    reference's old and new seeds are two experiments (not one mean, not compared), and 48/x1, on the
    genre subset alone, is not compared with the reference's mix of both."""
    def write(config, seed, roc, subset):
        doc = result_doc(config, seed, 10.0, {t: roc for t in TAGS}, 0.4)
        doc["config"]["dataset"] = "jamendo"
        doc["canonical"]["dataset"].update(name="jamendo", **({"subset": subset} if subset else {}))
        write_doc(tmp_path, doc)

    reference, fewer = ("vgg", 16000, 96, 1, "log"), ("vgg", 16000, 48, 1, "log")
    for seed, roc in enumerate((0.82, 0.83, 0.84)):
        write(reference, seed, roc, None)  # the default subset, top50tags
    for seed, roc in enumerate((0.86, 0.87, 0.88), start=3):
        write(reference, seed, roc, "genre")
        write(fewer, seed, roc - 0.01, "genre")
    said = "\n".join(report(tmp_path).warnings)
    aggregated = pd.read_csv(tmp_path / "report" / "aggregate.csv").set_index("n_mels")
    assert aggregated.loc[96, "setup_mixed"] and aggregated.loc[96, "data"] == "mixed"
    assert not aggregated.loc[48, "setup_mixed"] and aggregated.loc[48, "data"] == "subset genre"
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv").set_index("n_mels")
    assert comparison.loc[48, "setup_differs"] and np.isnan(comparison.loc[48, "roc_auc_diff"])
    assert "its seeds ran on different data (data subset genre / subset top50tags)" in said
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert sorted(set(summary["data"])) == ["subset genre", "subset top50tags"]


def test_synthetic_datasets_of_other_clips_or_seeds_are_other_data():
    """The synthetic dataset regenerated with another seed or clip count (`bench grid` replaces it in
    place) is other data: its runs form a Pareto group of their own."""
    from bench.report.reading import run_setup
    from bench.report.statistics import front_groups

    def setup(**dataset):
        return run_setup({"canonical": {"dataset": {"name": "synthetic", "clip_seconds": 4.0, "n_tags": 17,
                                                    "drop_untagged": False, **dataset}}})

    first, reseeded, larger = setup(clips=400, seed=0), setup(clips=400, seed=5), setup(clips=2000, seed=0)
    assert len({first["data"], reseeded["data"], larger["data"]}) == 3
    # a spec that leaves `clips` out generates the default 600 (docs/synthetic.md): "None clips" it said
    assert setup(seed=0)["data"] == setup(clips=600, seed=0)["data"] == "600 clips, seed 0"
    assert {k: v for k, v in first.items() if k != "data"} == {k: v for k, v in reseeded.items() if k != "data"}
    frame = pd.DataFrame([{"dataset": "synthetic", **first, "setup_mixed": False},
                          {"dataset": "synthetic", **reseeded, "setup_mixed": False}])
    assert list(front_groups(frame)) == ["synthetic (4 s clips, 17 tags, split default, 400 clips, seed 0)",
                                         "synthetic (4 s clips, 17 tags, split default, 400 clips, seed 5)"]
    mtat = run_setup({"canonical": {"dataset": {"name": "mtat", "clip_seconds": 29.1, "n_tags": 50,
                                                "drop_untagged": False, "clips": None, "seed": 0}}})
    assert mtat["data"] == "default"


def test_seeds_that_agree_to_rounding_have_no_t_test():
    from bench.report.report import student_t_test

    for a, b in (([0.39] * 3, [0.40] * 3), ([0.5] * 3, [0.5] * 3)):
        t, p = student_t_test(a, b)
        assert np.isnan(t) and np.isnan(p)
    # one side varies: a test. Pooled variance (2 x 1e-4 + 0) / 4, t = -0.02 / sqrt(5e-5 x 2/3) = -2 sqrt(3)
    t, p = student_t_test([0.39, 0.40, 0.41], [0.42] * 3)
    # two-sided, 4 degrees of freedom: scipy.stats.ttest_ind([0.39, 0.40, 0.41], [0.42] * 3).pvalue
    assert t == pytest.approx(-2 * np.sqrt(3)) and p == pytest.approx(0.025721, abs=1e-6)


@pytest.mark.usefixtures("figures_unrendered")
def test_the_gmac_change_column_uses_whichever_condition_has_a_reference(tmp_path):
    """96/x1 run in dB only; 48/x1 in both log types: its ΔGMAC is against the dB reference."""
    from bench.report.tables import comparison_table

    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "dB"), 10.01, (0.85, 0.86, 0.87))
    for log in ("log", "dB"):
        three_seeds(tmp_path, ("vgg", 12000, 48, 1, log), 5.0, (0.84, 0.85, 0.83))
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv")
    table = comparison_table(comparison, "t")
    (cells,) = [cells for mels, hop, cells in table.rows if mels == "48"]
    assert cells[-1][0] == f"{100 * (5.0 - 10.01) / 10.01:+.2f}"  # the last column: ΔGMAC %


def test_an_unreadable_result_is_listed_with_its_configuration(tmp_path):
    config = ("vgg", 12000, 48, 10, "dB")
    write_doc(tmp_path, result_doc(config, 1, 1.0, {t: 0.8 for t in TAGS}, 0.4))
    (folder,) = (tmp_path / "runs").iterdir()
    (folder / "result.json").write_text('{"run_id": "trunc')  # a copy cut short
    with redirect_stdout(io.StringIO()):
        cli_main(tmp_path)
    (row,) = pd.read_csv(tmp_path / "report" / "runs_not_ok.csv").to_dict("records")
    assert row["status"] == "unreadable"
    assert (row["arch"], row["sample_rate"], row["n_mels"], row["hop_multiplier"], row["log"], row["seed"]) == \
        (*config, 1)
    (folder / "result.json").write_text("[" * 100_000 + "]" * 100_000)  # nested past what json reads
    with redirect_stdout(io.StringIO()):
        cli_main(tmp_path)
    (row,) = pd.read_csv(tmp_path / "report" / "runs_not_ok.csv").to_dict("records")
    assert row["status"] == "unreadable" and "recursion" in row["reason"]


@pytest.mark.usefixtures("figures_unrendered")
@pytest.mark.parametrize("edit, reason", [
    (lambda d: d["metrics"].update(per_tag="x"), "metrics.per_tag is not an object"),
    (lambda d: d.update(config={}), "config.sample_rate is None"),
    (lambda d: d["config"].update(n_mels=None), "config.n_mels is None"),
    (lambda d: d["config"].update(sample_rate="x"), "config.sample_rate is 'x'"),
    (lambda d: d["config"].update(width="wide"), "width is 'wide'"),
    (lambda d: d.update(canonical=[]), "canonical is not an object"),
    (lambda d: (d["config"].update(width=None), d.update(canonical="x")), "canonical is not an object"),
    (lambda d: (d["config"].update(width=None), d["canonical"].update(options={"width": "x"})), "width is 'x'"),
    (lambda d: d["config"].pop("dataset"), "config.dataset is None"),  # it keys the seeds of every comparison
    # a dataset written as its config table, or a list: the report groups not-ok rows by it too
    (lambda d: d["config"].update(dataset={"name": "mtat"}), "config.dataset is {'name': 'mtat'}"),
    (lambda d: d["config"].update(dataset=["mtat"]), "config.dataset is ['mtat']"),
    (lambda d: d["cost"].pop("gmac"), "cost.gmac is None"),  # Fig. 1's log axis
    (lambda d: d["cost"].update(gmac="x"), "cost.gmac is 'x'"),
    (lambda d: d["cost"].update(gmac=0), "cost.gmac is 0, expected a positive number"),  # no log of 0
    # inf had passed `> 0`: its configuration fell out of Fig. 1 as if no GMAC had been recorded
    (lambda d: d["cost"].update(gmac=float("inf")), "cost.gmac is inf, expected a positive number"),
    # a trade-off figure's log axis: 0 had been put on the Pareto front, named in its key, and not drawn
    (lambda d: d["cost"].update(storage_bytes=0), "cost.storage_bytes is 0, expected a positive number"),
    (lambda d: d["cost"].update(latency_ms=-1), "cost.latency_ms is -1, expected a positive number"),
    (lambda d: d["cost"].update(train_seconds="x"), "cost.train_seconds is 'x', expected a finite, non-negative"),
    (lambda d: d["cost"].update(params=float("nan")), "cost.params is nan, expected a finite, non-negative"),
    # docs/report.md: per-tag metrics of the wrong type are invalid; "x" had gone into per_tag.csv as is
    (lambda d: d["metrics"]["per_tag"]["drums"].update(roc_auc="x"),
     "metrics.per_tag['drums'].roc_auc is 'x', expected a number in [0, 1]"),
    (lambda d: d["metrics"]["per_tag"]["drums"].update(pr_auc=1.5), "metrics.per_tag['drums'].pr_auc is 1.5"),
    (lambda d: d["metrics"]["per_tag"]["drums"].pop("roc_auc"), "metrics.per_tag['drums'].roc_auc is None"),
    (lambda d: d["metrics"]["per_tag"]["drums"].update(positives=-2), "metrics.per_tag['drums'].positives is -2"),
    # JSON's integers are unbounded; a table's column of one beyond int64 holds Python objects
    (lambda d: d["config"].update(seed=10**30), "config.seed is an integer beyond 64 bits"),
    (lambda d: d["config"].update(n_mels=2**63), "config.n_mels is an integer beyond 64 bits"),
    (lambda d: d["cost"].update(gmac=10**400), "cost.gmac is an integer beyond 64 bits"),
    (lambda d: d["cost"].update(params=2**64), "cost.params is an integer beyond 64 bits"),
    (lambda d: d["metrics"].update(n_tags=10**400), "metrics.n_tags is an integer beyond 64 bits"),
    (lambda d: d["config"].update(width=10**400), "config.width is an integer beyond 64 bits"),
])
def test_a_result_with_a_field_of_the_wrong_type_is_listed_and_the_others_reported(tmp_path, edit, reason):
    """A result.json the grid takes as done (ok, AUCs in range) whose other fields the report cannot read
    (hand-edited, or written by another tool): listed as invalid with the reason; the good runs are
    reported as ever."""
    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    bad = result_doc(("vgg", 12000, 48, 1, "log"), 0, 5.0, {t: 0.8 for t in TAGS}, 0.4)
    edit(bad)
    write_doc(tmp_path, bad)
    with redirect_stdout(io.StringIO()):
        cli_main(tmp_path)
    not_ok = pd.read_csv(tmp_path / "report" / "runs_not_ok.csv")
    assert not_ok["status"].tolist() == ["invalid"] and reason in not_ok["reason"][0]
    assert len(pd.read_csv(tmp_path / "report" / "summary.csv")) == 3


@pytest.mark.usefixtures("figures_unrendered")
def test_a_result_whose_aucs_rounded_above_one_is_reported_as_one(tmp_path):
    """Results written before the metrics were clipped hold scikit-learn's average precision of a perfectly
    ranked tag as it summed it, 1 + 2**-52: the report listed such a run as invalid (and its seed as
    missing) while the grid counted it done and never redid it. A value past rounding is still invalid."""
    config = ("vgg", 12000, 96, 1, "log")
    three_seeds(tmp_path, config, 10.01, (0.85, 0.86, 0.87))
    rounded = result_doc(config, 3, 10.01, {t: 0.8 for t in TAGS}, 1 + 2 ** -52)
    write_doc(tmp_path, rounded)
    beyond = result_doc(("vgg", 12000, 48, 1, "log"), 0, 5.0, {t: 0.8 for t in TAGS}, 0.4)
    beyond["metrics"]["per_tag"]["drums"]["pr_auc"] = 1 + 1e-6
    write_doc(tmp_path, beyond)
    with redirect_stdout(io.StringIO()):
        cli_main(tmp_path)
    not_ok = pd.read_csv(tmp_path / "report" / "runs_not_ok.csv")
    assert not_ok["run_id"].tolist() == [beyond["run_id"]] and "pr_auc is 1.000001" in not_ok["reason"][0]
    per_tag = pd.read_csv(tmp_path / "report" / "per_tag.csv")
    assert per_tag.loc[per_tag["run_id"] == rounded["run_id"], "pr_auc"].tolist() == [1.0] * len(TAGS)
    summary = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("run_id")
    assert summary.loc[rounded["run_id"], "pr_auc"] == 1.0


def test_a_result_that_claims_ok_but_fails_the_check_is_listed_as_invalid(tmp_path):
    config = ("vgg", 12000, 96, 1, "log")
    doc = result_doc(config, 0, 10.01, {t: 0.8 for t in TAGS}, 0.4)
    doc["metrics"]["roc_auc"] = float("nan")
    write_doc(tmp_path, doc)
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        cli_main(tmp_path)
    not_ok = pd.read_csv(tmp_path / "report" / "runs_not_ok.csv")
    assert not_ok["status"].tolist() == ["invalid"] and "roc_auc is nan" in not_ok["reason"][0]
    assert "1 ok" not in stdout.getvalue()


def test_a_tag_mean_counts_only_the_seeds_that_have_a_value_for_it():
    """A seed whose test split has no positive for a tag has no ROC-AUC for it: the tag's mean is over
    the other seeds, and n_seeds says how many."""
    rows = []
    for mels in (96, 48):
        for seed, drums in enumerate((0.8, None, 0.9)):
            for tag, value in (("drums", drums), ("piano", 0.7 + 0.01 * seed)):
                rows.append({"run_id": f"r{mels}{seed}", "dataset": "mtat", "arch": "vgg", "width": 1.0,
                             "sample_rate": 12000, "n_mels": mels, "hop_multiplier": 1, "log": "log", "seed": seed,
                             "tag": tag, "roc_auc": value, "pr_auc": None, "positives": 3})
    delta = per_tag_delta(pd.DataFrame(rows)).set_index("tag")
    assert delta.loc["drums", "n_seeds"] == 2 and delta.loc["piano", "n_seeds"] == 3
    assert delta.loc["drums", "roc_auc_mean"] == pytest.approx((0.8 + 0.9) / 2)


@pytest.mark.usefixtures("figures_unrendered")
def test_runs_that_record_no_width_are_their_own_size(tmp_path):
    """An architecture without a width option records none: its runs are width 1 and the report draws
    them. A result whose config lacks the width but whose canonical options have it takes it from there."""
    for config in (("vgg", 12000, 96, 1, "log"), ("vgg", 12000, 48, 1, "log")):
        for seed, roc in enumerate((0.85, 0.86, 0.84)):
            doc = result_doc(config, seed, 10.01 * config[2] / 96, {t: roc for t in TAGS}, 0.4)
            del doc["config"]["width"]
            write_doc(tmp_path, doc)
    narrow = result_doc(("musicnn", 16000, 96, 1, "log"), 0, 0.1, {t: 0.8 for t in TAGS}, 0.4)
    del narrow["config"]["width"]
    narrow["canonical"]["options"] = {"width": 0.125}
    write_doc(tmp_path, narrow)
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert summary.groupby("arch")["width"].unique().map(list).to_dict() == {"musicnn": [0.125], "vgg": [1.0]}
    assert (tmp_path / "report" / "fig1_vgg.png").exists()


@pytest.mark.usefixtures("figures_unrendered")
def test_missing_seeds_are_counted_per_dataset(tmp_path):
    """A folder holding MTAT runs with seeds 0-2 and MSD runs with seed 0 (a spec edited from one dataset
    to the other): the MSD runs miss no seed; the MTAT configuration without seed 2 misses it."""
    for config, seeds, dataset in ((("vgg", 12000, 96, 1, "log"), (0, 1, 2), "mtat"),
                                   (("vgg", 12000, 48, 1, "log"), (0, 1), "mtat"),
                                   (("vgg", 12000, 96, 1, "log"), (0,), "msd")):
        for seed in seeds:
            doc = result_doc(config, seed, 10.01, {t: 0.8 + 0.01 * seed for t in TAGS}, 0.4)
            doc["config"]["dataset"] = doc["canonical"]["dataset"]["name"] = dataset
            digest = hashlib.sha256(repr((config, seed, dataset)).encode()).hexdigest()[:10]
            doc["run_id"] = run_id(config, seed)[:-10] + digest
            write_doc(tmp_path, doc)
    with redirect_stdout(io.StringIO()):
        summary = report(tmp_path)
    aggregated = pd.read_csv(tmp_path / "report" / "aggregate.csv", dtype={"seeds_missing": str})
    aggregated["seeds_missing"] = aggregated["seeds_missing"].fillna("")
    missing = {(r.dataset, r.n_mels): r.seeds_missing for r in aggregated.itertuples()}
    assert missing == {("mtat", 96): "", ("mtat", 48): "2", ("msd", 96): ""}
    assert len(summary.incomplete_configurations) == 1 and "48/x1" in summary.incomplete_configurations[0]


@pytest.mark.usefixtures("figures_unrendered")
def test_a_run_folder_named_with_a_seed_beyond_64_bits_leaves_the_seeds_missing_true(tmp_path, capsys):
    """A folder without config.json or result.json whose name (its only record) carries a seed of 23
    digits: the seed is left empty in runs_not_ok.csv, as such an integer in a config is. It had been
    kept there, and the seeds every configuration is missing read -9223372036854775808 (wrapped to 64 bits)."""
    from bench.cli import main

    for seed in (0, 1):
        write_doc(tmp_path, result_doc(("vgg", 12000, 96, 1, "log"), seed, 10.01, dict.fromkeys(TAGS, 0.8), 0.4))
    name = "vgg-16k-96mel-x1-log-s99999999999999999999999-0123456789"
    (tmp_path / "runs" / name).mkdir()
    assert main(["report", str(tmp_path)]) == 0
    assert "missing seeds" not in capsys.readouterr().out
    aggregated = pd.read_csv(tmp_path / "report" / "aggregate.csv")
    assert aggregated[["n_seeds", "seeds"]].values.tolist() == [[2, "0;1"]] and aggregated["seeds_missing"].isna().all()
    (row,) = pd.read_csv(tmp_path / "report" / "runs_not_ok.csv").to_dict("records")
    assert row["run_id"] == name and row["n_mels"] == 96 and pd.isna(row["seed"])


@pytest.mark.usefixtures("figures_unrendered")
def test_configurations_on_mixed_data_are_compared_nowhere(tmp_path):
    """Old 6 s runs of an edited spec left beside the 29.1 s ones, in the reference and in 48/x1 alike:
    neither side's mean is one experiment, so neither comparison.csv nor the per-tag tables compare
    them; 32/x1, all on 29.1 s like the reference's first two seeds, is not compared either."""
    clips = (29.1, 29.1, 6.0)
    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.80), clip_seconds=clips)
    three_seeds(tmp_path, ("vgg", 12000, 48, 1, "log"), 5.0, (0.84, 0.845, 0.79), clip_seconds=clips)
    three_seeds(tmp_path, ("vgg", 12000, 32, 1, "log"), 3.3, (0.83, 0.835, 0.836))
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv").set_index("n_mels")
    for mels in (48, 32):
        assert comparison.loc[mels, "setup_differs"]
        assert comparison.loc[mels, ["roc_auc_diff", "roc_auc_p"]].isna().all()
    for name in ("per_tag_delta.csv", "per_tag_delta_global.csv"):
        assert pd.read_csv(tmp_path / "report" / name).empty, name


@pytest.mark.usefixtures("figures_unrendered")
def test_per_tag_changes_are_only_against_a_reference_on_the_same_data(tmp_path):
    """48/x1 on 6 s clips against a reference on 29.1 s: no per-tag change (comparison.csv gives none);
    32/x1 on 29.1 s: one per tag, its mean minus the reference's."""
    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    three_seeds(tmp_path, ("vgg", 12000, 48, 1, "log"), 0.99, (0.80, 0.81, 0.80), clip_seconds=6.0)
    three_seeds(tmp_path, ("vgg", 12000, 32, 1, "log"), 3.3, (0.83, 0.84, 0.85))
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    delta = pd.read_csv(tmp_path / "report" / "per_tag_delta.csv")
    assert set(delta["n_mels"]) == {32} and sorted(delta["tag"]) == sorted(TAGS)
    assert delta["roc_auc_diff"].to_numpy() == pytest.approx([0.84 - 0.86] * len(TAGS))
    per_tag = pd.read_csv(tmp_path / "report" / "per_tag.csv")
    assert set(per_tag.loc[per_tag["n_mels"] == 48, "clip_seconds"]) == {6.0}


@pytest.mark.usefixtures("figures_unrendered")
def test_a_report_removes_the_figures_of_models_no_longer_in_the_results(tmp_path):
    import shutil

    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    three_seeds(tmp_path, ("musicnn", 16000, 96, 1, "log"), 6.4, (0.88, 0.89, 0.87))
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    out = tmp_path / "report"
    assert (out / "fig1_musicnn.png").exists()
    # the user's own files beside the report's, named like its figures: no report wrote them
    mine = ("notes.md", "fig1_vgg_annotated.png", "per_tag_notes.md", "tradeoff_picked.csv", "fig1_musicnn-mine.pdf")
    for name in mine:
        (out / name).write_text("mine")
    for folder in (tmp_path / "runs").glob("musicnn-*"):
        shutil.rmtree(folder)
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    assert not list(out.glob("fig1_musicnn.*")) and (out / "fig1_vgg.png").exists()
    assert all((out / name).read_text() == "mine" for name in mine) and (out / "per_tag.csv").exists()


@pytest.mark.usefixtures("figures_unrendered")
def test_a_report_folder_written_before_the_report_recorded_its_files_loses_only_report_outputs(tmp_path):
    """A folder of an earlier version's report has no record of what it wrote: the figures of a model
    that is gone go by their names' form (`fig1_[<dataset>-]<arch>[-w<width>]`), the user's files stay."""
    from bench.report.report import WRITTEN

    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    out = tmp_path / "report"
    out.mkdir()
    old = ("fig1_musicnn.png", "per_tag_global_mtat-vgg-w0.5.pdf", "matched_gmac.csv", "tradeoff_latency.png",
           "per_tag_musicnn-787k-w1e-05.png")
    mine = ("fig1_vgg_annotated.png", "per_tag_notes.md", "tradeoff_picked.csv", "fig1_vgg.backup.png")
    for name in (*old, *mine):
        (out / name).write_text("earlier")
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    assert not [name for name in old if (out / name).exists()]
    assert all((out / name).exists() for name in mine) and (out / WRITTEN).exists()


@pytest.mark.usefixtures("figures_unrendered")
@pytest.mark.parametrize("record", [b"\xff\xfe\x00garbage\n", b"..\n.\nnotes\n"], ids=["not-utf8", "folders"])
def test_a_damaged_record_of_the_last_reports_files_costs_no_file_of_the_users(tmp_path, record):
    """The record of what the last report wrote, damaged (bytes that are not UTF-8) or naming folders (`..`,
    `.`, a folder of the user's): the report is written, the user's files and folders stay, and the
    record is written anew."""
    from bench.report.report import WRITTEN

    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes").mkdir()
    (out / "notes" / "draft.md").write_text("mine")
    (out / "fig1_vgg_annotated.png").write_text("mine")
    (out / WRITTEN).write_bytes(record)
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    assert (out / "notes" / "draft.md").read_text() == "mine" and (out / "fig1_vgg_annotated.png").exists()
    assert "fig1_vgg.png" in (out / WRITTEN).read_text(encoding="utf-8").split()


@pytest.mark.usefixtures("figures_unrendered")
def test_per_tag_tables_keep_the_datasets_tag_order(tmp_path):
    """MTAT's top-50 order (as musicnn and sota-music-tagging-models publish it) starts guitar, classical,
    slow, techno, strings: per_tag.csv keeps it, not the alphabet."""
    mtat_first_five = ("guitar", "classical", "slow", "techno", "strings")
    for mels in (96, 48):
        for seed in (0, 1):
            doc = result_doc(("vgg", 12000, mels, 1, "log"), seed, 10.01 * mels / 96,
                             {t: 0.8 + 0.01 * i for i, t in enumerate(mtat_first_five)}, 0.4)
            write_doc(tmp_path, doc)
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    per_tag = pd.read_csv(tmp_path / "report" / "per_tag.csv")
    first_run = per_tag[per_tag["run_id"] == per_tag["run_id"].iloc[0]]
    assert tuple(first_run["tag"]) == mtat_first_five
    delta = pd.read_csv(tmp_path / "report" / "per_tag_delta.csv")
    assert tuple(delta["tag"]) == mtat_first_five


@pytest.mark.usefixtures("figures_unrendered")
def test_a_run_averaged_over_fewer_tags_than_its_vocabulary_is_named(tmp_path):
    """A custom split can leave a tag without a positive test clip: the run's macro averages are over 4 of
    its 5 tags (result.json's excluded_tags), which summary.csv's n_tags (the spec's cap) does not show.
    A dataset with fewer tags than the cap (the synthetic 17 of a spec's 50) is not such a run."""
    doc = result_doc(("vgg", 12000, 96, 1, "log"), 0, 10.01, {t: 0.8 for t in TAGS}, 0.4)
    doc["metrics"]["excluded_tags"] = ["bells"]
    write_doc(tmp_path, doc)
    capped = result_doc(("vgg", 12000, 48, 1, "log"), 0, 5.0, {t: 0.8 for t in TAGS}, 0.4)  # 4 tags, n_tags 50
    write_doc(tmp_path, capped)
    with redirect_stdout(io.StringIO()):
        said = "\n".join(report(tmp_path).warnings)
    summary = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("run_id")
    assert summary.loc[doc["run_id"], ["tags_scored", "tags_excluded"]].tolist() == [4, 1]
    assert "1 run(s) averaged over fewer tags" in said and f"{doc['run_id']} (4 of 5)" in said


SPEC_BEFORE_EDIT = """
name = "edited"
seeds = [0, 1]
[dataset]
name = "synthetic"
clips = 60
[arch.vgg]
width = 0.0625
[protocol]
max_epochs = {epochs}
[[grid]]
arch = ["vgg"]
sample_rate = [16000]
n_mels = [96, 48]
hop_multiplier = [1]
log = ["log"]
"""


@pytest.mark.usefixtures("figures_unrendered")
def test_the_report_of_a_spec_leaves_out_runs_the_edited_spec_no_longer_names(tmp_path, capsys):
    """A spec run at 96 and 48 mel bands for 8 epochs, then edited to 96 mel bands for 20 epochs: the old
    runs stay in the folder. `bench report SPEC` averages the two new runs only (0.90 and 0.92, not the
    old 0.70 and 0.72) and lists the four old ones as "not in spec"; `bench report FOLDER` averages all."""
    from bench.cli import main
    from bench.spec import load_spec

    spec_path = tmp_path / "edited.toml"
    root = tmp_path / "results"
    rocs = {8: (0.70, 0.72), 20: (0.90, 0.92)}
    for epochs in (8, 20):
        spec_path.write_text(SPEC_BEFORE_EDIT.format(epochs=epochs))
        spec = load_spec(spec_path)
        runs = spec.runs() if epochs == 8 else [r for r in spec.runs() if r.mel.n_mels == 96]
        for run in runs:
            config = (run.arch, run.mel.sample_rate, run.mel.n_mels, run.mel.hop_multiplier, run.mel.log)
            doc = result_doc(config, run.seed, 0.1, {t: rocs[epochs][run.seed] for t in TAGS}, 0.4)
            doc["run_id"] = run.run_id
            write_doc(root / "edited", doc)
    spec_path.write_text(SPEC_BEFORE_EDIT.format(epochs=20).replace("n_mels = [96, 48]", "n_mels = [96]"))

    assert main(["report", str(spec_path), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert re.search(r": 6 runs, 2 ok, 4 not in spec; 1 configuration$", out, re.MULTILINE), out
    assert f"4 run(s) not a run of {spec_path} as it now stands" in out
    aggregated = pd.read_csv(root / "edited" / "report" / "aggregate.csv")
    assert aggregated[["n_mels", "n_seeds"]].values.tolist() == [[96, 2]]
    assert aggregated["roc_auc_mean"].item() == pytest.approx(0.91)
    assert pd.isna(aggregated["seeds_missing"].item())
    not_ok = pd.read_csv(root / "edited" / "report" / "runs_not_ok.csv")
    assert set(not_ok["status"]) == {"not in spec"}
    assert sorted(not_ok["n_mels"]) == [48, 48, 96, 96]

    assert main(["report", str(root / "edited")]) == 0
    assert "share a configuration and seed" in capsys.readouterr().out
    aggregated = pd.read_csv(root / "edited" / "report" / "aggregate.csv")
    assert aggregated.set_index("n_mels")["n_seeds"].to_dict() == {96: 4, 48: 2}


@pytest.mark.usefixtures("figures_unrendered")
def test_the_report_of_a_spec_counts_its_runs_that_no_grid_has_started(tmp_path, capsys):
    """The spec names 4 runs (96 and 48 mel bands, 2 seeds); one is done, one was interrupted (a folder
    without result.json) and two have no folder yet: the report's runs and runs_not_ok.csv are those of
    the spec, as bench status counts them, not the folders that happen to exist."""
    from bench.cli import main
    from bench.spec import load_spec

    spec_path = tmp_path / "grid.toml"
    spec_path.write_text(SPEC_BEFORE_EDIT.format(epochs=8))
    root = tmp_path / "results"
    runs = load_spec(spec_path).runs()
    assert len(runs) == 4
    done, interrupted = runs[0], runs[1]
    config = (done.arch, done.mel.sample_rate, done.mel.n_mels, done.mel.hop_multiplier, done.mel.log)
    doc = result_doc(config, done.seed, 0.1, dict.fromkeys(TAGS, 0.8), 0.4)
    doc["run_id"] = done.run_id
    write_doc(root / "edited", doc)
    (root / "edited" / "runs" / interrupted.run_id).mkdir()
    assert main(["report", str(spec_path), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert re.search(r": 4 runs, 1 ok, 3 incomplete; 1 configuration$", out, re.MULTILINE), out
    # two runs without a folder: one line for both (a sharded or stopped paper grid has hundreds)
    assert "  not averaged: 2 run(s) no run folder (not started) (runs_not_ok.csv lists them)" in out.splitlines()
    assert f"  not averaged: {interrupted.run_id} [incomplete]" in out
    not_ok = pd.read_csv(root / "edited" / "report" / "runs_not_ok.csv").set_index("run_id")
    assert sorted(not_ok.index) == sorted(r.run_id for r in runs[1:])
    assert not_ok.loc[runs[2].run_id, "reason"] == "no run folder (not started)"
    assert not_ok.loc[runs[2].run_id, "n_mels"] == runs[2].mel.n_mels
    # its width and dataset, which its run id leaves out: the spec's VGG at 1/16 on the synthetic data, not
    # a full-width reference's missing run
    assert (not_ok.loc[runs[2].run_id, "width"], not_ok.loc[runs[2].run_id, "dataset"]) == (0.0625, "synthetic")


def test_per_tag_rows_keep_each_datasets_own_tag_order():
    """MTAT's top 50 starts guitar, classical, slow; MSD's rock, pop, alternative. In a folder holding
    both, the shared tags must not pull one dataset's rows into the other's order."""
    results = []
    for dataset, tags in (("mtat", ("guitar", "classical", "rock")), ("msd", ("rock", "pop", "guitar"))):
        doc = result_doc(("vgg", 16000, 96, 1, "log"), 0, 10.0, dict.fromkeys(tags, 0.8), 0.4)
        doc["config"]["dataset"] = dataset
        doc["run_id"] = run_id(("vgg", 16000, 96, 1, "log"), 0)[:-10] + f"{dataset:0>10}"
        results.append(doc)
    table = per_tag_table(results)
    assert table.groupby("dataset", sort=False)["tag"].apply(list).to_dict() == {
        "msd": ["rock", "pop", "guitar"], "mtat": ["guitar", "classical", "rock"]}


def test_an_old_run_the_spec_no_longer_names_does_not_keep_a_configuration_from_reading_failed():
    """A spec edited (20 epochs, not 8): its 96/x1 diverged in every seed, and the runs of the edit
    before, "not in spec", were taken for seeds that may yet succeed: the reference row vanished from the
    table. Runs the next grid runs (incomplete, invalid, unreadable) do keep it pending."""
    from bench.report.report import NOT_OK_COLUMNS, all_seeds_failed

    config = {"dataset": "mtat", "arch": "vgg", "width": 1.0, "sample_rate": 16000, "n_mels": 96,
              "hop_multiplier": 1, "log": "log"}
    rows = [{"run_id": f"r{seed}", "status": "failed", "reason": "NonFiniteLoss", **config, "seed": seed}
            for seed in (0, 1, 2)]
    for status, pending in (("not in spec", False), ("incomplete", True), ("invalid", True)):
        not_ok = pd.DataFrame([*rows, {"run_id": "old", "status": status, "reason": "", **config, "seed": 0}],
                              columns=NOT_OK_COLUMNS)
        lost = all_seeds_failed(not_ok, pd.DataFrame(columns=[*config, "seeds"]))
        assert (list(lost["seeds"]) == ["0;1;2"]) is not pending, status


@pytest.mark.usefixtures("figures_unrendered")
def test_a_results_folder_whose_name_is_not_utf8_is_reported(tmp_path):
    """A Latin-1 folder name ("résultats") stopped the report with a UnicodeEncodeError after its CSV
    files were replaced and before its tables were: a report folder mixing two reports."""
    import os

    root = tmp_path / os.fsdecode(b"r\xe9sultats")
    three_seeds(root, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    with redirect_stdout(io.StringIO()):
        report(root)
    assert (root / "report" / "tables.md").read_text().startswith("# Results: r\\xe9sultats\n")


def test_a_tag_the_first_runs_lack_keeps_its_place_in_the_datasets_order():
    """MTAT's top 50 starts guitar, classical, slow, techno: runs on a split without a positive test clip of
    `classical` have no row for it; read first (MusiCNN's folders sort before VGG's), they must not send it
    after `techno` in every later run's rows."""
    mtat = ("guitar", "classical", "slow", "techno")
    for lacked in ("classical", "guitar"):  # the order's first tag too: not after the first runs' last
        results = []
        for arch in ("musicnn", "vgg"):
            tags = [t for t in mtat if arch == "vgg" or t != lacked]
            results.append(result_doc((arch, 16000, 96, 1, "log"), 0, 10.0, dict.fromkeys(tags, 0.8), 0.4))
        table = per_tag_table(results)
        assert table.groupby("arch", sort=False)["tag"].apply(list).to_dict() == {
            "musicnn": [t for t in mtat if t != lacked], "vgg": list(mtat)}, lacked

@pytest.mark.usefixtures("figures_unrendered")
def test_a_killed_reports_temp_files_are_removed_by_the_next_one(tmp_path):
    """A report killed between writing a temp file and renaming it leaves a hidden `.<name>.<random>.tmp`.
    The next report removes those untouched for an hour; a younger one may be another live report's."""
    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    out = tmp_path / "report"
    out.mkdir()
    dead, live = out / ".aggregate.csv.k2j4x1ab.tmp", out / ".summary.csv.p9q8r7st.tmp"
    other = out / ".notes.tmp"  # not named as the suite names its temp files: someone else's
    for path in (dead, live, other):
        path.write_text("half a table")
    two_hours_ago = time.time() - 7200
    for path in (dead, other):
        os.utime(path, (two_hours_ago, two_hours_ago))
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    assert not dead.exists() and live.exists() and other.exists()


def test_two_reports_at_once_take_turns_and_the_last_reads_the_newest_results(tmp_path, monkeypatch):
    """Every grid worker reports at its end. Report A reads the runs while one is unfinished; meanwhile the
    run finishes and report B starts. B must wait for A and then read the finished run, so that the files
    left are one report's, of the newest results (not A's tables beside B's summary)."""
    import threading

    from bench.report import report as report_module

    config = ("vgg", 12000, 96, 1, "log")
    ok = result_doc(config, 0, 10.01, dict.fromkeys(TAGS, 0.8), 0.4)
    late = result_doc(config, 1, 10.01, dict.fromkeys(TAGS, 0.9), 0.5)
    for doc in (ok, late):
        (tmp_path / "runs" / doc["run_id"]).mkdir(parents=True)
    (tmp_path / "runs" / ok["run_id"] / "result.json").write_text(json.dumps(ok))
    read, a_has_read, finish_a = [], threading.Event(), threading.Event()
    original = report_module.read_runs

    def reading(folders):
        found = original(folders)
        read.append(len(found[0]))
        if len(read) == 1:  # report A: hold on after reading, as a slow report writing figures does
            a_has_read.set()
            assert finish_a.wait(30)
        return found

    monkeypatch.setattr(report_module, "read_runs", reading)
    a = threading.Thread(target=report, args=(tmp_path,))
    a.start()
    assert a_has_read.wait(30)
    (tmp_path / "runs" / late["run_id"] / "result.json").write_text(json.dumps(late))  # the run finishes
    b = threading.Thread(target=report, args=(tmp_path,))
    b.start()
    b.join(0.5)
    assert b.is_alive() and read == [1]  # B waits for A's lock
    finish_a.set()
    a.join(30)
    b.join(30)
    assert read == [1, 2]
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert len(summary) == 2
    assert "incomplete" not in (tmp_path / "report" / "runs_not_ok.csv").read_text()
    assert not (tmp_path / "report" / ".report.lock").exists()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_a_table_of_seventy_configurations_fits_a_two_column_page(tmp_path):
    """LaTeX's own verdict: a tall table is scaled to fit the page (with its caption), a wide one to the
    text width; pdflatex warns "Float too large for page" otherwise."""
    from bench.report.tables import LATEX_PACKAGES, Table, to_latex

    groups = [(f"{rate}k {log}", ["ROC-AUC", "PR-AUC"]) for rate in (12, 16) for log in ("log", "dB")]
    rows = [(str(mels), f"x{hop}", [("88.12 (0.34)", False)] * 8) for mels in range(8, 130, 10) for hop in range(1, 7)]
    table = Table("vgg w1 mtat", groups, rows, ["ROC-AUC and PR-AUC in %: mean (standard deviation) over seeds."])
    assert len(rows) == 78
    (tmp_path / "doc.tex").write_text("\n".join([LATEX_PACKAGES, r"\documentclass[twocolumn]{article}",
                                                 r"\usepackage{booktabs}", r"\usepackage{graphicx}",
                                                 r"\begin{document}", to_latex(table), r"\end{document}", ""]))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "Float too large" not in done.stdout and "Overfull" not in done.stdout


def test_a_heatmaps_caption_describes_only_the_configurations_it_shows(tmp_path, monkeypatch):
    """48/x1 ran on 6 s clips, its reference on 29.1 s: it is kept off the per-tag heatmaps, so their
    captions say 29.1 s clips only (the model's results table still has both)."""
    notes = {}

    def per_tag(matrix, title="", note="", reference="", lost=0):
        notes[reference or "own"] = (list(matrix.columns), note)
        return real_per_tag(matrix, title, note, reference, lost)

    real_per_tag = figures.per_tag
    monkeypatch.setattr(figures, "per_tag", per_tag)
    monkeypatch.setattr(figures, "rendered", lambda fig, stem: {})
    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    three_seeds(tmp_path, ("vgg", 12000, 32, 1, "log"), 3.3, (0.84, 0.845, 0.83))
    three_seeds(tmp_path, ("vgg", 12000, 48, 1, "log"), 0.99, (0.80, 0.81, 0.80), clip_seconds=6.0)
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    caption = "mean over 3 seeds, 29.1\N{NO-BREAK SPACE}s\N{NO-BREAK SPACE}clips"
    assert notes["own"] == (["32/x1"], caption) and notes["12k 96/x1 log"] == (["12k 32/x1 log"], caption)


def test_another_runs_result_in_a_folder_and_stray_folders_are_not_read_as_runs(tmp_path):
    """A result.json that is not its folder's done-marker (another run's id: the grid sets it aside and
    redoes the run) is listed as that folder's invalid run, never under the other run's id or as its
    failure; folders in runs/ that are no run's (notes/, .ipynb_checkpoints/) are not counted."""
    first, second = ("vgg", 12000, 96, 1, "log"), ("vgg", 12000, 48, 1, "log")
    ok = result_doc(first, 0, 10.01, {t: 0.8 for t in TAGS}, 0.4)
    write_doc(tmp_path, ok)
    foreign = result_doc(second, 1, 5.0, {t: 0.8 for t in TAGS}, 0.4)
    foreign.update(status="failed", error="RuntimeError: boom")
    folder = tmp_path / "runs" / run_id(first, 1)  # the folder of another run than the result names
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps(foreign))
    for stray in ("notes", ".ipynb_checkpoints"):
        (tmp_path / "runs" / stray).mkdir()
    assert [f.name for f in run_folders(tmp_path)] == sorted([ok["run_id"], folder.name])
    results, not_ok = read_runs(run_folders(tmp_path))
    assert [r["run_id"] for r in results] == [ok["run_id"]]
    assert not_ok[["run_id", "status"]].values.tolist() == [[folder.name, "invalid"]]
    assert foreign["run_id"] in not_ok["reason"][0] and int(not_ok["n_mels"][0]) == 96  # the folder's configuration


def test_the_difference_from_the_published_number_is_ours_minus_theirs():
    """`*_diff_pp`, the report's Δ beside a published number: ours - published, in percentage points
    (the authors' results page gives 89.32 ROC-AUC and 36.41 PR-AUC for VGG at 16 kHz, 48 bands, hop
    x1, dB on MTAT; the paper's Figure 1 plots them without printing them)."""
    import pandas as pd

    from bench.report.published import published_comparison

    aggregated = pd.DataFrame([{"dataset": "mtat", "arch": "vgg", "sample_rate": 16000, "n_mels": 48,
                                "hop_multiplier": 1, "log": "dB", "width": 1.0, "clip_seconds": 29.1, "n_tags": 50,
                                "split": "default", "arch_options": "", "n_seeds": 3, "roc_auc_mean": 0.89,
                                "roc_auc_std": 0.001, "pr_auc_mean": 0.40, "pr_auc_std": 0.002}])
    (row,) = published_comparison(aggregated).to_dict("records")
    assert row["roc_auc_published"] == 89.32
    assert row["roc_auc_diff_pp"] == pytest.approx(89.0 - 89.32)
    assert row["pr_auc_published"] == 36.41  # its PR-AUC beside it (the paper's results page)
    assert row["pr_auc_diff_pp"] == pytest.approx(40.0 - 36.41)


def test_a_p_value_is_starred_only_below_the_papers_5_percent():
    """The tables mark `* p < 0.05`: 0.05 itself is not significant, and a p just under it is printed
    with the decimals that show it under (0.0499*, never 0.050* beside the note)."""
    from bench.report.tables import _p

    assert _p(0.05) == "0.050" and _p(0.0504) == "0.050" and _p(0.0004) == "<0.001*" and _p(float("nan")) == "n/a"
    assert _p(0.0499) == "0.0499*" and _p(0.04997) == "0.04997*" and _p(0.0449) == "0.045*" and _p(0.2) == "0.200"


def test_a_configuration_whose_every_seed_failed_is_shown_failed_not_as_never_run(tmp_path, figures_unrendered):
    """aggregate.csv is made of ok runs: a configuration that diverged in every seed had no row, and its
    table cell read "–: the configuration was not run", though the grid ran it three times. The figures,
    which cannot draw it, say so in their headings (it was left out unsaid)."""
    from bench.report import figures

    headings = {}
    root = tmp_path / "test"
    lost = ("vgg", 12000, 48, 1, "dB")
    for config in (("vgg", 12000, 96, 1, "dB"), ("vgg", 12000, 96, 2, "dB"), lost):
        for seed in SEEDS:
            folder = root / "runs" / run_id(config, seed)
            folder.mkdir(parents=True)
            doc = result_doc(config, seed, 1.0, {t: 0.8 + 0.01 * seed for t in TAGS}, 0.4)
            if config == lost:
                doc = {"run_id": doc["run_id"], "config": doc["config"], "status": "failed",
                       "error": "NonFiniteLoss: training loss became nan at epoch 1 (step 0)"}
            (folder / "result.json").write_text(json.dumps(doc))
    # undone before figures_unrendered's own patch is (the monkeypatch fixture's undo may come after it)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "rendered", lambda fig, stem: headings.update(
            {stem: " ".join([heading(fig), *(ax.get_title(loc="left").replace("\n", " ") for ax in fig.axes)])})
            or {})
        summary = report(root)
    table = (root / "report" / "tables.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| 48 | x1 |"))
    assert row.count("failed") == 2  # ROC-AUC and PR-AUC
    assert "failed: every run of the configuration failed (runs_not_ok.csv says why)." in table
    assert "fewer seeds: vgg w1 12k dB 48/x1 (n=0: every run failed, seeds 0, 1, 2)" in summary.text()
    assert "| 96 | x2 |" in table and "failed" not in next(
        line for line in table.splitlines() if line.startswith("| 96 | x2 |"))
    assert sorted(headings) == ["fig1_vgg", "per_tag_vgg", "tradeoff_gmac", "tradeoff_storage"]
    # the heatmap's too: it had left the configuration's column out unsaid, where docs/report.md said that
    # figures count it in their headings
    for stem in ("fig1_vgg", "tradeoff_gmac", "tradeoff_storage", "per_tag_vgg"):
        assert "not shown: 1 configuration whose every run failed (runs_not_ok.csv)" in headings[stem], stem


def test_failed_is_said_only_once_every_seed_failed_and_of_a_model_with_no_ok_run(tmp_path, figures_unrendered):
    """A configuration with one failed seed and two still training is not 'every run failed' (each worker
    writes a report as it finishes, so this is what a running grid's report holds). An architecture whose
    every run diverged gets a table of `failed` cells: tables.md left it out, as if it had not been run."""
    root = tmp_path / "test"
    pending = ("vgg", 12000, 48, 1, "dB")
    for config in (("vgg", 12000, 96, 1, "dB"), pending, ("musicnn", 12000, 96, 1, "dB")):
        for seed in SEEDS:
            folder = root / "runs" / run_id(config, seed)
            folder.mkdir(parents=True)
            doc = result_doc(config, seed, 1.0, {t: 0.8 + 0.01 * seed for t in TAGS}, 0.4)
            if config[0] == "musicnn" or seed == 0 and config == pending:
                doc = {"run_id": doc["run_id"], "config": doc["config"], "status": "failed",
                       "error": "NonFiniteLoss: training loss became nan at epoch 1 (step 0)"}
            elif config == pending:  # still training: its config and a checkpoint, no result.json yet
                (folder / "config.json").write_text(json.dumps({**doc["config"], "options": {"width": 1.0}}))
                (folder / "checkpoint.pt").write_bytes(b"")
                continue
            (folder / "result.json").write_text(json.dumps(doc))
    summary = report(root)
    table = (root / "report" / "tables.md").read_text()
    assert "every run failed" not in "\n".join(line for line in summary.text().splitlines() if "48/x1" in line)
    assert not any(line.startswith("| 48 | x1 |") and "failed" in line for line in table.splitlines())
    musicnn = table[table.index("### musicnn, width 1, mtat"):]
    assert next(line for line in musicnn.splitlines() if line.startswith("| 96 | x1 |")).count("failed") == 2
    assert "fewer seeds: musicnn w1 12k dB 96/x1 (n=0: every run failed, seeds 0, 1, 2)" in summary.text()


@pytest.mark.usefixtures("figures_unrendered")
@pytest.mark.parametrize("failure", ["figure", "full disk"])
def test_a_report_that_fails_half_way_leaves_the_earlier_report_whole(tmp_path, monkeypatch, failure):
    """A figure that raises, or a disk that fills while the files are written, once the CSV files were
    made: the folder keeps the earlier report, every file of it (no new summary.csv beside old tables,
    no temp file left), and the error is the command's."""
    import errno

    from bench.core import store

    three_seeds(tmp_path, ("vgg", 12000, 96, 1, "log"), 10.01, (0.85, 0.86, 0.87))
    with redirect_stdout(io.StringIO()):
        report(tmp_path)
    out = tmp_path / "report"
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    three_seeds(tmp_path, ("vgg", 12000, 48, 1, "log"), 5.01, (0.84, 0.85, 0.83))
    if failure == "figure":
        def tradeoff(*args, **kwargs):
            raise RuntimeError("figure failed")

        monkeypatch.setattr(figures, "tradeoff", tradeoff)
        expected = RuntimeError
    else:
        writes = []
        real_fsync = os.fsync

        def fsync(fd):
            writes.append(fd)
            if len(writes) == 6:  # the sixth file: summary.csv and four more are written
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        monkeypatch.setattr(store.os, "fsync", fsync)
        expected = OSError
    with pytest.raises(expected), redirect_stdout(io.StringIO()):
        report(tmp_path)
    after = {path.name: path.read_bytes() for path in out.iterdir()}
    assert after == before


def test_a_not_ok_runs_config_keeps_what_a_table_holds_and_leaves_out_integers_beyond_64_bits():
    """runs_not_ok.csv's config fields of a file that may hold anything: an integer past int64 is left empty
    (a column of it could not be read), anything else kept as before, a bool included."""
    from bench.report.reading import _config_fields

    fields = _config_fields({"config": {"arch": "vgg", "sample_rate": 10**30, "n_mels": True, "hop_multiplier": 2,
                                        "log": "log", "seed": 2**63 - 1, "dataset": "mtat", "width": 0.5}})
    assert (fields["sample_rate"], fields["n_mels"], fields["seed"]) == (None, True, 2**63 - 1)
