"""Smaller input or narrower network at matched GMAC: hand-made results in, the pairing, the changes
against the full reference, the verdict and the Welch p-value out.

Every expected number is worked out here from the values the test wrote (the log ratios of the GMAC
counts, the means of the seed lists, scipy's and a hand-written Welch test), never read back from
bench.report.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bench.report import figures
from bench.report.report import SUMMARY_COLUMNS, aggregate, matched_gmac, matched_gmac_tables, report, to_markdown

from .conftest import unrendered_figures

# (width, n_mels, hop) -> (GMAC per clip, ROC-AUC of seeds 0, 1, 2); all vgg, mtat, 16 kHz, log
REFERENCE = (1.0, 96, 1)
NARROW = (0.5, 96, 1)
MELS_48 = (1.0, 48, 1)
HOP_4 = (1.0, 96, 4)
SCALING = {
    REFERENCE: (10.0, (0.895, 0.900, 0.905)),  # mean 90 %, std 0.5 pp
    NARROW: (2.5, (0.865, 0.870, 0.875)),  # mean 87 %: -3 pp, std 0.5 pp
    MELS_48: (5.0, (0.885, 0.890, 0.895)),  # mean 89 %: -1 pp
    HOP_4: (2.4, (0.876, 0.880, 0.884)),  # mean 88 %: -2 pp, std 0.4 pp
}


def summary_rows(configs: dict, rate=16000, log="log", arch="vgg", dataset="mtat") -> list[dict]:
    """summary.csv rows, one per (configuration, seed)."""
    rows = []
    for (width, mels, hop), (gmac, rocs) in configs.items():
        for seed, roc in enumerate(rocs):
            rows.append({"run_id": f"{arch}-{width}-{rate}-{mels}-{hop}-{log}-{seed}", "arch": arch, "width": width,
                         "sample_rate": rate, "n_mels": mels, "hop_multiplier": hop, "log": log, "seed": seed,
                         "roc_auc": roc, "pr_auc": roc - 0.5, "gmac": gmac, "gmac_analytic": gmac, "params": 1e6,
                         "storage_bytes": 4 * mels * 1820 // hop, "train_seconds": 1.0, "epochs": 1, "best_epoch": 1,
                         "clips_per_second": 1.0, "clip_seconds": 29.1, "dataset": dataset, "n_tags": 50,
                         "split": "default", "data": "default"})
    return rows


def tables(configs: dict, **where) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = pd.DataFrame(summary_rows(configs, **where), columns=SUMMARY_COLUMNS)
    return aggregate(summary), summary


def welch_p_by_hand(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(2 * scipy.stats.t.sf(abs(t), df))


def test_the_narrower_network_meets_the_input_closest_in_log_gmac():
    assert abs(math.log(2.5 / 2.4)) < abs(math.log(2.5 / 5.0))  # 96/x4 is the match, not 48/x1
    matched = matched_gmac(*tables(SCALING))
    assert len(matched) == 1
    row = matched.iloc[0]
    assert (row["dataset"], row["arch"], row["sample_rate"], row["log"]) == ("mtat", "vgg", 16000, "log")
    assert row["ref_width"] == 1.0 and row["ref_gmac"] == 10.0 and row["ref_roc_auc_mean"] == pytest.approx(0.90)
    assert row["width"] == 0.5 and row["gmac"] == 2.5 and row["n_seeds"] == 3
    assert (row["input_n_mels"], row["input_hop_multiplier"], row["input_gmac"]) == (96, 4, 2.4)
    assert row["roc_auc_mean"] == pytest.approx(0.87) and row["input_roc_auc_mean"] == pytest.approx(0.88)
    assert 100 * row["roc_auc_diff"] == pytest.approx(-3.0)
    assert 100 * row["input_roc_auc_diff"] == pytest.approx(-2.0)
    assert row["gmac_ratio"] == pytest.approx(2.5 / 2.4)
    # the means differ by 1 pp, more than the larger std (0.5 pp): the smaller input loses less
    assert row["tie_margin"] == pytest.approx(0.005)
    assert row["loses_less"] == "smaller input"


def test_closest_is_a_ratio_not_a_difference_of_gmac():
    """A narrower network of 2.5 GMAC: 5.0 is twice it and 1.0 is 2.5 times less, so 5.0 is the closer in
    log ratio (0.69 against 0.92), though 1.0 is the closer by difference (1.5 against 2.5 GMAC)."""
    assert abs(math.log(2.5 / 5.0)) < abs(math.log(2.5 / 1.0)) and abs(2.5 - 1.0) < abs(2.5 - 5.0)
    hop_10 = (1.0, 96, 10)
    configs = {REFERENCE: SCALING[REFERENCE], NARROW: SCALING[NARROW], MELS_48: SCALING[MELS_48],
               hop_10: (1.0, (0.86, 0.87, 0.88))}
    (row,) = matched_gmac(*tables(configs)).to_dict("records")
    assert (row["input_n_mels"], row["input_hop_multiplier"], row["input_gmac"]) == (48, 1, 5.0)


def test_welch_p_value_is_scipys_on_the_seed_lists():
    row = matched_gmac(*tables(SCALING)).iloc[0]
    narrow, hop4 = SCALING[NARROW][1], SCALING[HOP_4][1]
    expected = scipy.stats.ttest_ind(narrow, hop4, equal_var=False)
    assert row["welch_p"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert row["welch_t"] == pytest.approx(expected.statistic, rel=1e-9)
    assert row["welch_p"] == pytest.approx(welch_p_by_hand(narrow, hop4), rel=1e-9)
    # and it is Welch's, not Student's: the stds differ (0.5 vs 0.4 pp), so the two tests differ
    assert row["welch_p"] != pytest.approx(scipy.stats.ttest_ind(narrow, hop4, equal_var=True).pvalue, rel=1e-6)


def test_one_seed_gives_no_p_value():
    single = {key: (gmac, rocs[:1]) for key, (gmac, rocs) in SCALING.items()}
    row = matched_gmac(*tables(single)).iloc[0]
    assert np.isnan(row["welch_p"]) and np.isnan(row["welch_t"])
    (table,) = matched_gmac_tables(matched_gmac(*tables(single)))
    assert table.rows[0][2][-1] == ("n/a", False)
    # one seed: no std, so the margin is 0.1 pp; 86.5 vs 87.6 % (1.1 pp apart) is still decided
    assert row["tie_margin"] == pytest.approx(0.001) and row["loses_less"] == "smaller input"


@pytest.mark.parametrize(("narrow_rocs", "hop4_rocs", "verdict"), [
    ((0.875, 0.880, 0.885), (0.876, 0.880, 0.884), "tie"),  # same mean
    ((0.8745, 0.8770, 0.8795), (0.876, 0.880, 0.884), "tie"),  # 0.3 pp apart, within the larger std (0.4 pp)
    ((0.885, 0.890, 0.895), (0.876, 0.880, 0.884), "narrower network"),  # 1 pp better than 96/x4
    ((0.8795,), (0.8800,), "tie"),  # one seed each: 0.05 pp is within 0.1 pp
    ((0.8780,), (0.8800,), "smaller input"),  # one seed each: 0.2 pp is not
])
def test_verdict_rule(narrow_rocs, hop4_rocs, verdict):
    configs = dict(SCALING)
    configs[NARROW] = (2.5, narrow_rocs)
    configs[HOP_4] = (2.4, hop4_rocs)
    (loses_less,) = matched_gmac(*tables(configs))["loses_less"]
    assert loses_less == verdict


def test_equal_log_distance_goes_to_the_cheaper_input():
    configs = {REFERENCE: (10.0, (0.90, 0.91)), (0.5, 96, 1): (4.0, (0.88, 0.89)),
               (1.0, 48, 1): (8.0, (0.89, 0.90)), (1.0, 96, 2): (2.0, (0.87, 0.88))}
    assert math.log(4.0 / 2.0) == math.log(8.0 / 4.0)
    (row,) = matched_gmac(*tables(configs)).itertuples(index=False)
    assert (row.input_n_mels, row.input_hop_multiplier, row.input_gmac) == (96, 2, 2.0)


def test_every_narrower_width_gets_a_row_widest_first():
    configs = dict(SCALING)
    configs[(0.25, 96, 1)] = (0.7, (0.84, 0.85, 0.86))  # nearest: 96/x4 (2.4), not 48/x1 (5)
    configs[(1.0, 16, 1)] = (0.8, (0.85, 0.86, 0.87))  # ... until 16/x1 (0.8) is there
    matched = matched_gmac(*tables(configs))
    assert list(matched["width"]) == [0.5, 0.25]
    assert list(zip(matched["input_n_mels"], matched["input_hop_multiplier"], strict=True)) == [(96, 4), (16, 1)]
    assert matched["ref_width"].tolist() == [1.0, 1.0]


def test_the_full_reference_is_the_largest_width_present():
    configs = {(w / 2, mels, hop): value for (w, mels, hop), value in SCALING.items()}  # widths 0.5 and 0.25
    (row,) = matched_gmac(*tables(configs)).itertuples(index=False)
    assert (row.ref_width, row.width, row.input_n_mels, row.input_hop_multiplier) == (0.5, 0.25, 96, 4)
    assert 100 * row.roc_auc_diff == pytest.approx(-3.0)


def test_only_families_with_both_kinds_get_rows():
    only_inputs = {k: v for k, v in SCALING.items() if k != NARROW}
    only_widths = {k: v for k, v in SCALING.items() if k[1:] == (96, 1)}
    assert matched_gmac(*tables(only_inputs)).empty
    assert matched_gmac(*tables(only_widths)).empty
    # narrower networks at 12 kHz and smaller inputs at 16 kHz are not compared
    split = pd.DataFrame(summary_rows(only_widths, rate=12000) + summary_rows(only_inputs, rate=16000),
                         columns=SUMMARY_COLUMNS)
    assert matched_gmac(aggregate(split), split).empty


def test_without_the_full_reference_the_pair_is_still_judged():
    configs = {k: v for k, v in SCALING.items() if k != REFERENCE}
    (row,) = matched_gmac(*tables(configs)).itertuples(index=False)
    assert np.isnan(row.ref_roc_auc_mean) and np.isnan(row.roc_auc_diff) and np.isnan(row.input_roc_auc_diff)
    assert (row.input_n_mels, row.input_hop_multiplier, row.loses_less) == (96, 4, "smaller input")


def test_table_shows_percent_and_percentage_points():
    (table,) = matched_gmac_tables(matched_gmac(*tables(SCALING)))
    assert table.row_header == ("width", "GMAC")
    (width, gmac, cells) = table.rows[0]
    texts = [text for text, _ in cells]
    assert (width, gmac) == ("0.5", "2.50")
    assert texts[:8] == ["87.00 (0.50)", "-3.00", "96/x4", "2.40", "88.00 (0.40)", "-2.00", "1.04", "smaller input"]
    markdown = to_markdown(table)
    assert "| width | GMAC |" in markdown and "10.00 GMAC, ROC-AUC 90.00 (0.50) %" in markdown


# --- the report: matched_gmac.csv, the tables' section and the printed summary ------------------------------


def write_runs(root: Path, configs: dict) -> Path:
    for (width, mels, hop), (gmac, rocs) in configs.items():
        for seed, roc in enumerate(rocs):
            digest = hashlib.sha256(repr((width, mels, hop, seed)).encode()).hexdigest()[:10]
            run_id = f"vgg-16k-{mels}mel-x{hop}-log-s{seed}-{digest}"
            doc = {"run_id": run_id, "spec": "test", "status": "ok",
                   "config": {"arch": "vgg", "width": width, "sample_rate": 16000, "n_mels": mels,
                              "hop_multiplier": hop, "log": "log", "seed": seed, "dataset": "mtat",
                              "n_frames": -(-1820 // hop)},
                   "canonical": {"arch": "vgg", "options": {"width": width},
                                 "dataset": {"name": "mtat", "clip_seconds": 29.1, "n_tags": 50,
                                             "drop_untagged": False}},
                   "metrics": {"roc_auc": roc, "pr_auc": 0.4, "n_tags": 2, "excluded_tags": [],
                               "per_tag": {t: {"roc_auc": roc, "pr_auc": 0.4, "positives": 5} for t in ("a", "b")}},
                   "cost": {"gmac": gmac, "gmac_analytic": gmac, "params": 1000,
                            "storage_bytes": 4 * mels * -(-1820 // hop), "train_seconds": 1.0, "epochs": 1,
                            "best_epoch": 1, "clips_per_second": 1.0}}
            folder = root / "runs" / run_id
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def scaling_report(tmp_path_factory):
    root = write_runs(tmp_path_factory.mktemp("results") / "scaling", SCALING)
    with unrendered_figures():
        return root, report(root)


def test_report_writes_matched_gmac_csv(scaling_report):
    root, summary = scaling_report
    path = root / "report" / "matched_gmac.csv"
    assert path in summary.files
    (row,) = pd.read_csv(path).to_dict("records")
    assert (row["width"], row["gmac"], row["input_n_mels"], row["input_hop_multiplier"]) == (0.5, 2.5, 96, 4)
    assert row["roc_auc_diff"] == pytest.approx(-0.03) and row["input_roc_auc_diff"] == pytest.approx(-0.02)
    assert row["loses_less"] == "smaller input"
    assert row["welch_p"] == pytest.approx(scipy.stats.ttest_ind(SCALING[NARROW][1], SCALING[HOP_4][1],
                                                                 equal_var=False).pvalue, rel=1e-6)


def test_report_tables_and_summary_name_the_pair(scaling_report):
    root, summary = scaling_report
    markdown = (root / "report" / "tables.md").read_text()
    section = markdown.split("## Smaller input or narrower network at matched GMAC", 1)[1]
    (line,) = [line for line in section.splitlines() if line.startswith("| 0.5 |")]
    assert "| -3.00 |" in line and "| 96/x4 |" in line and "| -2.00 |" in line and "smaller input" in line
    latex = (root / "report" / "tables.tex").read_text()
    assert "smaller input or narrower network at matched GMAC" in latex and "width & GMAC &" in latex
    text = summary.text()
    assert "smaller input or narrower network at matched GMAC" in text
    (pair,) = [line for line in text.splitlines() if "loses less" in line]
    assert "width 0.5 (2.5 GMAC) -3.00 vs 96/x4 at width 1 (2.4 GMAC) -2.00: smaller input loses less" in pair


@pytest.mark.usefixtures("figures_unrendered")
def test_no_narrower_widths_no_matched_gmac_output(tmp_path):
    root = write_runs(tmp_path / "paper", {k: v for k, v in SCALING.items() if k != NARROW})
    summary = report(root)
    assert not (root / "report" / "matched_gmac.csv").exists()
    assert "matched GMAC" not in (root / "report" / "tables.md").read_text()
    assert "matched GMAC" not in summary.text()


def test_tradeoff_gmac_keys_each_width_with_its_own_marker():
    aggregated = tables(SCALING)[0]
    fig = figures.tradeoff(aggregated, "gmac")
    handles = {h.get_label(): h.get_marker() for legend in fig.legends for h in legend.legend_handles}
    assert "vgg w1 16 kHz" in handles and "vgg w0.5 16 kHz" in handles
    assert handles["vgg w1 16 kHz"] != handles["vgg w0.5 16 kHz"]


def test_every_column_of_the_reports_csv_files_is_named_in_the_docs(scaling_report):
    """docs/report.md describes each CSV file's columns: a script reading them finds every column
    there, by name or by its pattern (`*_diff`: roc_auc_diff, pr_auc_diff, ...)."""
    import fnmatch
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "report.md").read_text()
    files = text[text.index("## Files in"):text.index("## Tables (")]
    matched = text[text.index("## Smaller input or narrower network"):text.index("## The demo's results")]
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", files + matched))
    patterns = re.findall(r"`(\*_[a-z_]+)`", files + matched)
    root, _ = scaling_report
    csvs = sorted((root / "report").glob("*.csv"))
    assert {p.name for p in csvs} >= {"summary.csv", "aggregate.csv", "comparison.csv", "per_tag.csv",
                                      "per_tag_delta.csv", "matched_gmac.csv"}
    unnamed = {p.name: [c for c in pd.read_csv(p, nrows=0).columns
                        if c not in named and not any(fnmatch.fnmatch(c, pattern) for pattern in patterns)]
               for p in csvs}
    assert not any(unnamed.values()), {name: columns for name, columns in unnamed.items() if columns}
