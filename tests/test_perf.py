"""`bench perf`: its counting, selection and projection arithmetic, and one small end-to-end run."""

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from architectures import InputConfig, build
from bench.cli import main
from bench.spec import load_spec
from bench.tools import input_path, timing
from bench.tools.cases import select_cases, spec_cases
from bench.tools.perf import _conv_inputs, conv_macs
from bench.tools.projection import (
    interpolate,
    linear_fit,
    measured_or_mean,
    project,
    projected_fraction,
    shared_run_fraction,
)
from bench.tools.timing import time_calls
from bench.train.fastpath import baseline, native_bf16

from .conftest import SPECS
from .test_spec import SHIPPED_RUNS


def test_conv_macs_by_hand():
    # out 2 x 8 x 10 x 20 elements, each 3 input channels x a 3 x 5 kernel
    assert conv_macs(nn.Conv2d(3, 8, (3, 5), padding=(1, 2)), torch.Size([2, 3, 10, 20])) == 2 * 8 * 10 * 20 * 3 * 15
    # 'valid' 1-D conv with groups: out length 100 - 7 + 1 = 94, each output sees 16 / 4 channels x 7 taps
    assert conv_macs(nn.Conv1d(16, 32, 7, groups=4), torch.Size([1, 16, 100])) == 32 * 94 * 4 * 7


def test_captured_convs_of_the_paper_vgg_cost_10_01_gmac():
    """The convolutions the conv-peak measurement times are the whole network but the classifier:
    10.01 GMAC per clip at 96 x 1366 (the paper's Table I network, hand-counted from its pools)."""
    with torch.device("meta"):
        model = build("vgg", InputConfig(12000, 96, 1, 1366), 50)
        captured = _conv_inputs(model, torch.empty(2, 96, 1366), baseline(torch.device("meta")))
        macs = sum(conv_macs(conv, shape) for conv, shape in captured) / 2
    assert len(captured) == 4
    assert round((macs + 2048 * 50) / 1e9, 2) == 10.01


def test_selection_on_the_paper_grid():
    headline, smallest, scaling = select_cases(spec_cases(load_spec(SPECS / "paper-mtat-vgg.toml")), 6)
    assert headline.label == "vgg 12k 96x1366 x1"
    assert smallest.label == "vgg 12k 48x137 x10"  # 0.49 GMAC, the paper grid's cheapest input
    assert round(smallest.gmac_per_input, 2) == 0.49
    assert len(scaling) == 6 and scaling[0] is smallest
    assert [c.gmac_per_input for c in scaling] == sorted(c.gmac_per_input for c in scaling)
    # spread evenly in log GMAC from 0.49 to 17.6 (a step of about 2.05x): the small, overhead-bound
    # configurations, where a line through the costs misses most, are measured too
    gmac = [c.gmac_per_input for c in scaling]
    assert round(gmac[-1], 1) == 17.6 and all(1.5 <= b / a <= 3 for a, b in zip(gmac, gmac[1:], strict=False))


@pytest.mark.parametrize("spec_name, headline_label", [
    ("scaling-mtat-vgg.toml", "vgg 16k 96x1820 x1"),  # width 1 (13.3 GMAC), not w0.125 of the same input
    ("paper-msd.toml", "vgg 12k 96x1366 x1"),  # VGG's whole clip, not a MusiCNN segment
])
def test_the_headline_is_the_costliest_network_at_the_reference_input(spec_name, headline_label):
    headline, _, _ = select_cases(spec_cases(load_spec(SPECS / spec_name)), 6)
    assert headline.label == headline_label


def test_widths_of_one_input_are_projected_from_their_own_step_times():
    """scaling-mtat-vgg trains one input at several widths: each width's runs take its own measured step
    time (the labels of three widths were one, and the last width measured was projected for all)."""
    spec = load_spec(SPECS / "scaling-mtat-vgg.toml")
    cases = spec_cases(spec)
    labels = {c.label for c in cases if c.input_config.n_frames == 1820 and c.configuration.mel.n_mels == 96}
    assert {"vgg w0.125 16k 96x1820 x1", "vgg w0.25 16k 96x1820 x1", "vgg 16k 96x1820 x1"} <= labels
    assert len({c.label for c in cases}) == len({c.configuration.cost_key for c in cases})


def test_projection_arithmetic():
    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    cases = spec_cases(spec)
    projection = project(spec, cases, lambda case: 1.0, batch=8, epochs=30)
    # per run: 30 x (18706 clips / 8 per 1-s step + 1825 clips at a third of that) + 5329 test clips
    per_run = 30 * (18706 / 8 + 1825 / 24) + 5329 / 24
    assert projection["runs"] == 264
    assert projection["device_hours"] == pytest.approx(264 * per_run / 3600)
    # work: 6 flops per MAC in a training step, 2 in a forward pass; at 96 x 1366 (10.01 GMAC) one run is
    # 30 x (18706 x 6 + 1825 x 2) + 5329 x 2 GFLOP per GMAC
    reference = next(c for c in projection["per_config"] if c["case"] == "vgg 12k 96x1366 x1" and c["log"] == "log")
    assert reference["pflop"] == pytest.approx(3 * 10.01e9 * (30 * (18706 * 6 + 1825 * 2) + 5329 * 2) / 1e15, rel=1e-3)


def test_projection_of_runs_sharing_a_gpu_takes_each_run_its_share():
    """K runs at a time: a run whose GPU is busy 20 % of its time alone takes a K-th of its time (4: a
    quarter), one busy 90 % takes 90 %; the work is the same."""

    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    cases = spec_cases(spec)
    alone = project(spec, cases, lambda case: 1.0, batch=8, epochs=30)
    busy = {c.configuration.cost_key: (0.2 if c.configuration.mel.hop_multiplier > 1 else 0.9) for c in cases}
    shared = project(spec, cases, lambda case: 1.0, batch=8, epochs=30, runs_at_once=4,
                     share=lambda case: shared_run_fraction(busy[case.configuration.cost_key], 4))
    per_run = (30 * (18706 / 8 + 1825 / 24) + 5329 / 24) / 3600
    hop_1 = sum(c.configuration.mel.hop_multiplier == 1 for c in cases)
    assert shared["device_hours"] == pytest.approx(3 * per_run * (0.9 * hop_1 + 0.25 * (len(cases) - hop_1)))  # 3 seeds
    bound = (100 * (18706 / 8 + 1825 / 24) + 5329 / 24) / 3600  # at the spec's max_epochs, shared alike
    assert shared["max_epochs_hours"] == pytest.approx(3 * bound * (0.9 * hop_1 + 0.25 * (len(cases) - hop_1)))
    assert shared["pflop"] == alone["pflop"] and shared["assumptions"]["runs_at_once"] == 4
    assert alone["assumptions"]["runs_at_once"] == 1


def test_the_shared_gpu_model_is_a_lower_bound_of_what_h200s_measured():
    """`make gpu-check`'s P1 ran the smallest configuration alone and 3 runs of it at once on H200s:
    the model's throughput for the 3 runs (alone / the share of the GPU each takes) was above what was
    measured every time (runs slow each other), by less than 1.6x."""

    rows = json.loads((Path(__file__).parent / "data" / "h200_p1_shared.json").read_text())["rows"]
    assert len(rows) == 3
    for row in rows:
        model = row["clips_per_second_alone"] / shared_run_fraction(row["busy_alone"], row["runs_at_once"])
        assert row["clips_per_second_shared"] < model < 1.6 * row["clips_per_second_shared"], row


def test_a_training_measurement_can_say_how_busy_the_device_was(write_spec, monkeypatch):
    """`busy` (bench perf's scaling rows on CUDA): the profiler's measurement over further training
    steps of the same model, as many as were timed, at least 3; its line in the projection."""
    import dataclasses

    from bench.tools import perf

    steps = []

    def fake_busy(step, n):
        for _ in range(n):
            step()
        steps.append(n)
        return 0.25, 0.01, (0.0, 1.0)

    monkeypatch.setattr(perf, "busy_fraction", fake_busy)
    case = spec_cases(load_spec(write_spec(TINY)))[0]
    path = dataclasses.replace(baseline(torch.device("cpu")), reuse_host_memory=False)
    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1)
    measured = perf.measure_training(case, path, torch.device("cpu"), settings, busy=True)
    assert measured["busy_fraction"] == 0.25 and steps == [3]
    assert "busy_fraction" not in perf.measure_training(case, path, torch.device("cpu"), settings)
    line = perf.shared_projection_line({"runs_at_once": 4, "why": "largest footprint 14.9 GiB (estimated) on 139 "
                                        "GiB free", "device_hours": 8.25, "max_epochs_hours": 27.5}, "cuda")
    assert line.startswith("  4 runs at a time, as the grid places them here (largest footprint 14.9 GiB")
    assert "at least 8" in line and "1/4 of its time alone" in line


def test_projection_counts_the_mel_front_end_and_states_its_bound():
    """A grid run computes the mel of every clip it evaluates (once: MusiCNN's segments are cut from it)
    and of every clip it trains on (MusiCNN: one segment of its clip, 1/segments of the frames). The
    spec's max_epochs (100) gives the hours no run can exceed."""
    spec = load_spec(SPECS / "paper-mtat-musicnn.toml")
    cases = spec_cases(spec)
    segments = {c.segments for c in cases}
    assert segments == {9}  # 3 s segments of a 29.1 s clip
    projection = project(spec, cases, lambda case: 1.0, batch=8, epochs=30, eval_seconds=lambda case: 0.01,
                         frontend_seconds=lambda case: 0.09)
    train = 18706 * (1.0 / 8 + 0.09 / 9)  # 0.01 s of mel per training clip
    evaluate = 9 * 0.01 + 0.09  # per clip evaluated: 9 segments and one whole-clip mel
    # Table IV: 2 sample rates x 3 mel counts x 2 log compressions, 3 seeds each
    assert projection["runs"] == 36
    assert projection["device_hours"] == pytest.approx(36 * (30 * (train + 1825 * evaluate) + 5329 * evaluate)
                                                       / 3600)
    assert projection["max_epochs_hours"] == pytest.approx(36 * (100 * (train + 1825 * evaluate)
                                                                 + 5329 * evaluate) / 3600)
    assert projection["assumptions"]["front_end"] == "measured" and projection["assumptions"]["runs_at_once"] == 1


def test_unmeasured_configurations_are_interpolated_between_the_measured_ones():
    """Step times between two measured configurations lie on the segment joining them: small
    configurations are overhead-bound (here 0.20 s at 0.5 and 1 GMAC), which a least-squares line
    through every point (0.094 s + 0.136 s/GMAC) puts at 0.16 s at 0.5 GMAC, a fifth too fast."""
    gmac, seconds = [0.5, 1.0, 4.0, 10.0], [0.20, 0.20, 0.62, 1.46]
    at = interpolate(gmac, seconds)
    assert at(0.75) == pytest.approx(0.20) and at(7.0) == pytest.approx(1.04) and at(4.0) == pytest.approx(0.62)
    assert at(0.1) == pytest.approx(0.20) and at(20.0) == pytest.approx(1.46)  # outside: the nearest end
    assert linear_fit(gmac, seconds)["relative_residuals"][0] > 0.2
    assert interpolate([1.0, 1.0, 2.0], [0.5, 0.7, 1.0])(1.0) == pytest.approx(0.6)  # one cost: the mean
    # one cost measured (--scaling 1: the smallest configuration only): in proportion to GMAC, not the
    # smallest's time for the 36 times costlier networks
    assert interpolate([0.49], [0.18])(17.64) == pytest.approx(0.18 * 36)


def test_linear_fit_recovers_a_line():
    fit = linear_fit([1.0, 2.0, 4.0], [0.7, 0.9, 1.3])  # 0.5 s + 0.2 s per GMAC
    assert fit["intercept_seconds"] == pytest.approx(0.5) and fit["seconds_per_gmac"] == pytest.approx(0.2)
    assert max(map(abs, fit["relative_residuals"])) < 1e-9


def test_one_measured_cost_gives_a_proportional_fit_without_numpy_warnings():
    """A spec of one configuration (or --scaling 1): one cost, no line through it; np.polyfit warned
    RankWarning and fitted 0.136 s + 84,809 ms/GMAC through one point."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = linear_fit([2.0], [0.5])
        twice = linear_fit([2.0, 2.0], [0.5, 0.7])
    assert fit["intercept_seconds"] == 0 and fit["seconds_per_gmac"] == pytest.approx(0.25) and fit["proportional"]
    assert twice["seconds_per_gmac"] == pytest.approx(0.3)  # (0.25 + 0.35) / 2
    assert "proportional" not in linear_fit([1.0, 2.0], [0.7, 0.9])


def test_time_calls_warms_up_then_respects_budget_and_count():
    calls = []
    timing = time_calls(lambda: calls.append(1), torch.device("cpu"), budget=10.0, max_calls=3)
    assert len(calls) == 4 and timing["calls"] == 3  # one warm-up call, then the count caps it
    timing = time_calls(lambda: calls.append(1), torch.device("cpu"), budget=0.0, max_calls=3)
    assert timing["calls"] == 1  # a zero budget still times one call
    timing = time_calls(lambda: calls.append(1), torch.device("cpu"), budget=0.0, max_calls=3, warmup_may_count=True)
    assert timing["calls"] == 0 and timing["seconds"] == timing["first_seconds"]


TINY = """
name = "perf-tiny"
seeds = [0]
[dataset]
name = "synthetic"
clip_seconds = 3.0
[arch.vgg]
width = 0.03125
[[grid]]
arch = ["vgg"]
sample_rate = [12000]
n_mels = [96, 16]
hop_multiplier = [1, 10]
log = ["log", "dB"]
"""


@pytest.mark.slow
def test_bench_perf_says_why_it_makes_no_projection_where_the_split_sizes_are_unknown(write_spec, tmp_path, capsys):
    """Which clips lack one of the tags is known only once the annotations are read: perf measures
    everything else, and says why there is no projection, in its output and in its JSON."""
    out = tmp_path / "perf.json"
    dropping = TINY.replace('clip_seconds = 3.0', 'clip_seconds = 3.0\ndrop_untagged = true')
    argv = ["perf", str(write_spec(dropping)), "--device", "cpu", "--batch", "2", "--budget", "0.1",
            "--scaling", "2", "--no-compile", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    why = ("clips lacking one of the 17 tags are dropped (drop_untagged = true), and which those are is known "
           "only when the annotations are read")
    assert report["complete"] and report["projection"] is None and report["no_projection"] == why
    assert f"Projection: none: {why}" in printed


@pytest.mark.slow
def test_bench_perf_end_to_end(write_spec, tmp_path, capsys, monkeypatch):
    import dataclasses

    from bench.tools import perf

    chosen = perf.fast_path  # a grid this long would compile (as on a GPU box): --no-compile says no
    monkeypatch.setattr(perf, "fast_path", lambda *a, **k: dataclasses.replace(chosen(*a, **k), compile=True))
    out = tmp_path / "perf.json"
    argv = ["perf", str(write_spec(TINY)), "--device", "cpu", "--batch", "2", "--budget", "0.2",
            "--scaling", "3", "--no-compile", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    # 3 s at 12 kHz: 36000 samples padded to 36096 = 141 hops of 256, so 142 frames; x10: 15
    assert report["headline"] == "vgg w0.03125 12k 96x142 x1" and report["smallest"] == "vgg w0.03125 12k 16x15 x10"
    assert [r["lever"] for r in report["levers"]][:2] == ["fp32 eager (baseline)", "pool before ELU"]
    # the CPU fast path: fp32 NCHW eager with host memory reused (a lever row) where bf16 is emulated, bf16
    # channels_last (a row of its own)
    expected = "fast path" if native_bf16(torch.device("cpu")) else "+ host memory reused"
    assert report["fast"]["lever"] == expected and report["fast"]["lever"] in {r["lever"] for r in report["levers"]}
    assert len(report["scaling"]["rows"]) == 3 and report["no_projection"] is None
    # the synthetic set's 600 clips take MTAT's 16 folders in turn: 12 train folders (8 of 38 clips, 4 of
    # 37), 1 valid, 3 test; each of its 8 runs at the 30 epochs docs/performance.md assumes (the spec's
    # max_epochs, 100 by default, is more)
    projection = report["projection"]
    assert projection["assumptions"]["train_valid_test_clips"] == [452, 37, 111] and projection["runs"] == 8
    assert projection["assumptions"]["epochs_per_run"] == 30
    assert "Projection: 8 runs of perf-tiny at 30 epochs per run" in printed
    assert {t["target"] for t in report["targets"]} >= {"fraction of the conv peak", "front end share of a step"}
    assert report["frontend"]["headline"]["librosa_ms_per_clip"] > 0
    data_path = report["data_path"]
    if data_path["page_cache_fraction_after_evicting"] <= 0.05:  # not on a tmpfs: a cold read was timed
        assert 0 < data_path["clips_per_second_evicted"]
    else:
        assert data_path["clips_per_second_evicted"] is None
    assert "Targets" in printed and "Conv peak on the same shapes" in printed
    assert report["fast_path"]["compile"] is False and "--no-compile" in report["fast_path"]["compile_note"]
    # the networks timed are those the grid trains: as many outputs as the synthetic set's 17 tags, not
    # the spec's n_tags = 50
    assert {case.n_tags for case in perf.spec_cases(load_spec(write_spec(TINY)))} == {17}
    # hours from 1 up with one decimal, as bench plan prints them (5.4838 is not "5")
    hours = {**report["projection"], "device_hours": 5.4838, "max_epochs_hours": 12.25}
    assert "= 5.5 CPU-hours (12.2 at the spec's max_epochs" in perf.format_report({**report, "projection": hours})
    documented = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    fields = [*report, *report["settings"], *report["levers"][0], *report["conv_peak"], *report["frontend"],
              *report["frontend"]["headline"], *report["scaling"], *report["scaling"]["rows"][0], *report["targets"][0]]
    assert [f for f in fields if f"`{f}`" not in documented] == []  # the JSON's fields, each named in the docs


def test_the_report_judges_the_fast_path_against_the_baseline_and_the_conv_peak(write_spec, monkeypatch):
    """With every measurement stood in for: a training step counts 6 flops per MAC (2 forward, 4
    backward); the fast path's speedup is the baseline's step time over its own (2.0 s / 0.5 s = 4x); the
    conv peak's fraction is the fast path's; the mel's share of a step meets its target only at or below
    5 %; a front end timed on a batch is per clip over the batch; and runs are projected at 30 epochs,
    or at the spec's max_epochs where that is fewer."""
    from bench.tools import perf

    calls = []

    def measure_training(case, path, device, settings, warm=False, busy=False, **options):
        seconds = 2.0 if not calls else 0.5  # the baseline is timed first
        calls.append(case.label)
        timing = {"seconds": seconds, "first_seconds": seconds, "calls": 1}
        return {**perf._throughput(timing, settings.batch, round(case.gmac_per_input * 1e9), True),
                "peak_memory_mb": None, "compile_seconds": 0.0}

    monkeypatch.setattr(perf, "measure_training", measure_training)
    monkeypatch.setattr(perf, "measure_training_fresh", measure_training)
    monkeypatch.setattr(perf, "measure_conv_peak", lambda case, device, settings: {"gflops": 50.0})
    monkeypatch.setattr(perf, "measure_frontend", lambda case, device, settings, step: {
        "ms_per_clip": 1.0, "training_ms_per_clip": 1.0, "share_of_step": 0.5, "librosa_ms_per_clip": None})
    monkeypatch.setattr(perf, "measure_forward", lambda case, path, device, settings: {
        "first_step_seconds": 0.1, "step_seconds": 0.1, "seconds_per_input": 0.01})
    monkeypatch.setattr(perf, "measure_data_path", lambda *a, **k: {"over_consumption": 3.0})
    monkeypatch.setattr(perf, "measure_eval", lambda *a, **k: {})
    monkeypatch.setattr(perf, "frontend_seconds", lambda mel, seconds, device, settings, segment_frames=None: 0.8)
    spec = load_spec(write_spec(TINY + "[protocol]\nmax_epochs = 8\n"))
    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, scaling_cases=2, compile=False,
                                 librosa=False)
    report = perf.run_perf(spec, torch.device("cpu"), settings, log=lambda *a: None)
    headline = next(case for case in spec_cases(spec) if case.label == report["headline"])
    base, fast = report["levers"][0], report["fast"]
    assert base["speedup"] == 1.0 and fast["speedup"] == pytest.approx(4.0)
    assert [row["speedup"] for row in report["levers"][1:]] == pytest.approx([4.0] * (len(report["levers"]) - 1))
    assert fast["gflops"] == pytest.approx(6 * headline.gmac_per_input * 2 / 0.5, rel=1e-6)
    assert report["fraction_of_conv_peak"] == pytest.approx(fast["gflops"] / 50.0)
    targets = {t["target"]: t for t in report["targets"]}
    assert targets["fast path / fp32 eager baseline"]["met"] is True  # 4x against 2.5x
    assert targets["front end share of a step"]["met"] is False  # half the step against 5 %
    assert targets["data path / consumption (smallest)"]["met"] is True  # 3x: at its bound
    per_clip = [row["ms_per_clip"] for row in report["frontend"]["per_clip_ms"]]
    assert per_clip == pytest.approx([400.0] * len(per_clip))  # 0.8 s for a batch of 2
    # timed at the most bands of each rate and hop (96 of TINY's 96 and 16): an upper bound for fewer
    assert {row["n_mels"] for row in report["frontend"]["per_clip_ms"]} == {96}
    assert report["projection"]["assumptions"]["epochs_per_run"] == 8
    frontend = {**report["frontend"]["headline"], "share_of_step": 0.05}
    assert {t["target"]: t["met"] for t in perf._targets({**report, "frontend": {"headline": frontend}})}[
        "front end share of a step"] is True  # at the bound: met


def test_a_forward_pass_counts_2_flops_per_mac_and_a_training_step_6():
    """The paper's VGG at 96 x 1366 (10,010,669,056 MACs a clip), 32 clips in 0.5 s."""
    from bench.tools import perf

    timing = {"seconds": 0.5, "first_seconds": 0.5, "calls": 1}
    for training, flops in ((False, 2), (True, 6)):
        measured = perf._throughput(timing, 32, 10_010_669_056, training)
        assert measured["gflops"] == pytest.approx(flops * 10.010669056 * 32 / 0.5)
        assert measured["inputs_per_second"] == 64


def test_the_baseline_and_the_fast_path_are_timed_warm_however_short_the_budget(write_spec, monkeypatch):
    """A lever whose warm-up outlasts the budget is timed by that cold step alone (cheap, and it loses
    either way); the baseline and the fast path, the targets' ratio, always get a warm step: a cold
    baseline beside a warm lever read as an 8.6x speedup."""
    from bench.spec import load_spec
    from bench.tools import perf

    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, scaling_cases=2, compile=False,
                                 librosa=False)
    monkeypatch.setattr(perf, "measure_data_path", lambda *a, **k: {})
    monkeypatch.setattr(perf, "measure_eval", lambda *a, **k: {})
    monkeypatch.setattr(perf, "_targets", lambda report: [])
    report = perf.run_perf(load_spec(write_spec(TINY)), torch.device("cpu"), settings, log=lambda *a: None)
    assert report["levers"][0]["steps_timed"] >= 1 and report["fast"]["steps_timed"] >= 1
    assert any(row["steps_timed"] == 0 for row in report["levers"][1:] if row is not report["fast"])


def test_where_the_fast_path_compiles_vgg_is_also_timed_with_block_1_fused(write_spec, monkeypatch):
    """The switch acts only in compiled training, so its row is the compiled fast path with it on, and
    the fusion is what that row's step traced (the compiled fast path without it is the `fast` row)."""

    import architectures.layers
    from bench.spec import load_spec
    from bench.tools import perf

    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "aot_eager")  # dynamo's trace, without inductor's C++
    chosen = perf.fast_path
    monkeypatch.setattr(perf, "fast_path", lambda *a, **k: chosen(*a, **k).compiling(True))
    real, fused = architectures.layers.conv_pool, []

    def conv_pool(*args):
        fused.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(architectures.layers, "conv_pool", conv_pool)
    for name in ("measure_data_path", "measure_eval", "measure_conv_peak", "measure_frontend"):
        monkeypatch.setattr(perf, name, lambda *a, **k: {"gflops": 1.0, "ms_per_clip": 1.0,
                                                         "training_ms_per_clip": 1.0})
    monkeypatch.setattr(perf, "_targets", lambda report: [])
    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, scaling_cases=2, librosa=False)
    rows = []
    measure = perf.measure_training
    monkeypatch.setattr(perf, "measure_training", lambda case, path, *a, **k: (
        rows.append((path.compile, k.get("fuse_block1_pool", False), len(fused))), measure(case, path, *a, **k))[1])
    report = perf.run_perf(load_spec(write_spec(TINY)), torch.device("cpu"), settings, log=lambda *a: None)
    row = next(r for r in report["levers"] if r["lever"] == perf.FUSED_ROW)
    assert row["module_options"] == {"fuse_block1_pool": True} and row["settings"]["compile"] is True
    assert report["fast"]["settings"]["compile"] is True and report["fast"]["module_options"] == {}
    assert fused and all(shape[1] == 1 for shape in fused)  # traced with the one-channel input
    first_fused = next(i for i, (_, fuse, _) in enumerate(rows) if fuse)
    assert rows[first_fused][2] == 0  # nothing traced it before that row


def test_the_host_memory_lever_is_timed_after_every_row_without_it(write_spec, monkeypatch):
    """Reusing freed host memory cannot be undone as if it had never been on (glibc's mmap threshold no
    longer rises), so every step timed without it, the baseline's warm step included, comes first."""
    from bench.spec import load_spec
    from bench.tools import perf

    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, scaling_cases=2, compile=False,
                                 librosa=False)
    monkeypatch.setattr(perf, "measure_data_path", lambda *a, **k: {})
    monkeypatch.setattr(perf, "measure_eval", lambda *a, **k: {})
    monkeypatch.setattr(perf, "_targets", lambda report: [])
    reused = []
    real = perf.measure_training

    def recording(case, path, *args, **kwargs):
        reused.append(path.reuse_host_memory)
        return real(case, path, *args, **kwargs)

    monkeypatch.setattr(perf, "measure_training", recording)
    report = perf.run_perf(load_spec(write_spec(TINY)), torch.device("cpu"), settings, log=lambda *a: None)
    without = [row for row in report["levers"] if not row["settings"]["reuse_host_memory"]]
    assert "+ host memory reused" in [row["lever"] for row in report["levers"]]
    first = reused.index(True)
    assert first == len(without) + 1 and all(reused[first:])  # each row once, the baseline twice (cold, warm)


def test_a_stopped_perf_keeps_what_it_measured_and_the_last_complete_report(write_spec, monkeypatch, tmp_path,
                                                                          capsys):
    """`bench perf --out OUT` stopped part-way (a GPU job's time limit, Ctrl-C) leaves the sections it
    finished in OUT's `.partial.json`, marked incomplete, and OUT as it was: an earlier complete report
    is replaced only by a complete one, which removes the partial file."""
    from bench.tools import perf

    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, scaling_cases=2, compile=False,
                                 librosa=False)
    monkeypatch.setattr(perf, "measure_data_path", lambda *a, **k: {})
    monkeypatch.setattr(perf, "measure_eval", lambda *a, **k: {})
    monkeypatch.setattr(perf, "_targets", lambda report: [])
    real_forward = perf.measure_forward

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # during the scaling section

    monkeypatch.setattr(perf, "measure_forward", stopped)
    out = tmp_path / "perf" / "tiny.json"
    out.parent.mkdir()
    out.write_text('{"spec": "tiny", "complete": true}')
    spec = str(write_spec(TINY))
    with pytest.raises(KeyboardInterrupt):
        perf.cli_main(spec, "cpu", str(out), settings)
    partial = tmp_path / "perf" / "tiny.partial.json"
    kept = json.loads(partial.read_text())
    assert kept["complete"] is False and kept["levers"] and kept["fast"] and kept["conv_peak"] and kept["frontend"]
    assert "scaling" not in kept and json.loads(out.read_text()) == {"spec": "tiny", "complete": True}
    assert f"what it measured is in {partial}" in capsys.readouterr().err

    monkeypatch.setattr(perf, "measure_forward", real_forward)
    monkeypatch.setattr(perf, "format_report", lambda report: "")  # of sections stubbed out above
    assert perf.cli_main(spec, "cpu", str(out), settings) == 0
    report = json.loads(out.read_text())
    assert report["complete"] is True and len(report["scaling"]["rows"]) == 2 and not partial.exists()


def test_the_conv_peak_times_every_conv_as_a_training_step_runs_it(write_spec):
    """A training step computes forward, input and weight gradients of every convolution but VGG's
    first, whose input gradient nothing needs (`fold_input_bn`; tests/test_input_bn_conv.py shows the
    step leaves it out): the peak times and counts the products each runs, 6 flops per MAC, 4 for the
    first. MACs by hand: batch 2, VGG at width 1/32 on 96 x 142 (3 x 3 kernels, same padding): 1 -> 4
    channels at 96 x 142."""
    from bench.spec import load_spec
    from bench.tools import perf

    headline, _, _ = select_cases(spec_cases(load_spec(write_spec(TINY))), 2)
    peak = perf.measure_conv_peak(headline, torch.device("cpu"), perf.PerfSettings(batch=2, budget_seconds=0.2))
    first, *others = peak["layers"]
    assert first["macs"] == 2 * 4 * 1 * 9 * 96 * 142 and first["input_gradient"] is False
    assert first["gflops"] == pytest.approx(4 * first["macs"] / first["seconds"] / 1e9)
    assert len(others) == 3
    for layer in others:
        batch, c_in, bands, frames = layer["input_shape"]
        assert layer["macs"] == batch * layer["out_channels"] * c_in * 9 * bands * frames and layer["input_gradient"]
        assert layer["gflops"] == pytest.approx(6 * layer["macs"] / layer["seconds"] / 1e9)
    seconds, macs = sum(layer["seconds"] for layer in peak["layers"]), sum(layer["macs"] for layer in peak["layers"])
    assert peak["gflops"] == pytest.approx(6 * macs / seconds / 1e9)  # as a training step's rate counts


def test_musicnn_is_measured_with_and_without_its_front_end_input_gradient():
    """MusiCNN's front-end convolutions read the one-channel input BatchNorm's output and compute no
    input gradient in training: a lever of its own, and the conv peak times them so (its mid-end
    convolutions, of many channels, with their input gradient)."""
    from bench.spec import load_spec
    from bench.tools import perf

    cpu = torch.device("cpu")
    names = [(name, options) for name, _, options in perf.levers(cpu, False, "musicnn")][:2]
    assert names == [("fp32 eager (baseline)", {"fold_input_bn": False}),
                     ("front: no input gradient", {"fold_input_bn": True})]
    case = min((c for c in spec_cases(load_spec(SPECS / "demo.toml")) if c.configuration.arch == "musicnn"),
               key=lambda c: c.gmac_per_input)
    assert case.build(cpu, fold_input_bn=False).fold_input_bn is False and case.build(cpu).fold_input_bn is True
    with pytest.raises(ValueError, match="musicnn has no switch 'pool_before_elu'"):
        case.build(cpu, pool_before_elu=False)
    peak = perf.measure_conv_peak(case, cpu, perf.PerfSettings(batch=2, budget_seconds=0.1))
    one_channel = [layer["input_gradient"] for layer in peak["layers"] if layer["input_shape"][1] == 1]
    more = [layer["input_gradient"] for layer in peak["layers"] if layer["input_shape"][1] > 1]
    assert one_channel and not any(one_channel)
    assert len(more) == 3 and all(more)  # the mid end's three


def test_the_conv_peak_times_musicnns_timbral_filters_as_its_training_step_computes_them(monkeypatch):
    """MusiCNN's timbral filters run through functions, not module calls that a hook sees (the fold's,
    or the CPU's 1-D arrangement): the peak still times each of them. With the fold (a step computes
    no input gradient for them) as the 2-D convolutions written; without it, where the CPU computes
    them as 1-D convolutions over frequency with the time taps as channels, both ways, the faster
    counting. MACs by hand: a (h, w) filter of f channels on (B, 1, F, T) with 'same' time padding makes
    B x f x (F - h + 1) x T outputs of h x w multiply-adds each."""
    from architectures.musicnn import conv1d_over_bands
    from bench.spec import load_spec
    from bench.tools import perf

    cpu = torch.device("cpu")
    case = min((c for c in spec_cases(load_spec(SPECS / "demo.toml")) if c.configuration.arch == "musicnn"),
               key=lambda c: c.gmac_per_input)
    folded, plain = case.build(cpu), case.build(cpu, fold_input_bn=False)
    plan, bands = plain.plan, plain.n_mels
    expected = sorted(2 * f * (bands - h + 1) * plan.segment_frames * h * w for h in plan.heights
                      for w, f in zip(plan.timbral_widths, plan.timbral_filters, strict=True))
    assert folded.rearranged_convs(cpu) == [] and plain.rearranged_convs(torch.device("cuda")) == []
    assert len(plain.rearranged_convs(cpu)) == len(expected)
    settings = perf.PerfSettings(batch=2, budget_seconds=0.05)
    real = perf._time_conv
    timed = []

    def recording(conv, shape, *args):
        timed.append((type(conv), shape))
        return real(conv, shape, *args)

    monkeypatch.setattr(perf, "_time_conv", recording)
    for model, arrangements in ((folded, {"as written"}), (plain, {"as written", "1-D over bands"})):
        timed.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(perf.Case, "build", lambda self, device, model=model, **options: model)
            peak = perf.measure_conv_peak(case, cpu, settings)
        fold = model is folded
        timbral = [layer for layer in peak["layers"] if len(layer["kernel"]) == 2 and layer["kernel"][0] > 1]
        assert sorted(layer["macs"] for layer in timbral) == expected
        assert all(layer["arrangement"] == "as written" for layer in peak["layers"] if layer not in timbral)
        assert {layer["arrangement"] for layer in timbral} <= arrangements
        one_d = [shape for kind, shape in timed if kind is torch.nn.Conv1d and len(shape) == 3 and shape[2] == bands]
        assert len(one_d) == (0 if fold else len(expected) * len(perf.conv_variants(cpu)) // 2)
    conv = plain.rearranged_convs(cpu)[0]
    shape = (2, 1, bands, plan.segment_frames)
    as_1d, shape_1d = conv1d_over_bands(conv, shape)
    assert perf.conv_macs(as_1d, shape_1d) == perf.conv_macs(conv, shape)
    assert shape_1d == (2 * plan.segment_frames, conv.kernel_size[1], bands)


def test_the_conv_peak_times_only_the_convolution(write_spec, monkeypatch):
    """A timed call runs the conv forward and its backward products, nothing else: a step's upstream
    gradient comes from the layers above (filling one the size of VGG's first output, 1 GB at the
    headline, was timed as part of that conv), and its gradients are new, not added to earlier ones."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from bench.spec import load_spec
    from bench.tools import perf

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(func.__name__)
            return func(*args, **(kwargs or {}))

    timed = []
    monkeypatch.setattr(perf, "time_calls", lambda fn, *args, **kwargs: timed.append(fn) or {"seconds": 1.0})
    headline, _, _ = select_cases(spec_cases(load_spec(write_spec(TINY))), 2)
    perf.measure_conv_peak(headline, torch.device("cpu"), perf.PerfSettings(batch=2, budget_seconds=0.2))
    assert len(timed) >= 4 * 2  # every conv, in every variant
    for fn in timed:
        fn()  # a first call, as the clock's warm-up makes
        with Ops() as seen:
            fn()
        assert seen.ops - {"detach.default"} == {"convolution.default", "convolution_backward.default"}


def test_bench_perf_user_errors(write_spec, capsys):
    assert main(["perf", str(write_spec(TINY)), "--batch", "0"]) == 2
    assert "argument --batch: must be >= 1, got 0" in capsys.readouterr().err
    assert main(["perf", "no-such-spec.toml"]) == 2
    capsys.readouterr()
    assert main(["perf", str(SPECS / "paper-mtat-vgg.toml"), "--epochs", "150"]) == 2  # max_epochs is 100
    assert "--epochs 150: more than" in capsys.readouterr().err
    assert main(["perf", str(write_spec(TINY)), "--compile-modes", "max-autotune,turbo"]) == 2
    assert "--compile-modes turbo: not a torch.compile mode of this torch" in capsys.readouterr().err
    assert main(["perf", str(write_spec(TINY)), "--compile-modes", "reduce-overhead", "--no-compile"]) == 2
    assert "--compile-modes times compiled steps: not with --no-compile" in capsys.readouterr().err


def test_bench_perf_refuses_a_batch_a_configuration_cannot_train_on_and_says_out_of_memory_in_one_line(
        write_spec, capsys, monkeypatch, tmp_path):
    """MusiCNN's back end normalises one value per clip: `--batch 1` ended minutes in with torch's
    "Expected more than 1 value per channel" traceback (the spec's own batch size is checked against
    it). A batch too large for the device ended with the allocator's traceback."""
    from bench.tools import perf

    assert main(["perf", str(SPECS / "paper-mtat-musicnn.toml"), "--batch", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--batch 1: fewer clips than musicnn trains on at 12000 Hz, 128 mels, hop x1: at least 2 (a BatchNorm in "
        "it normalises one value per clip there)")

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 312.00 GiB")

    monkeypatch.setattr(perf, "run_perf", out_of_memory)
    assert main(["perf", str(write_spec(TINY)), "--batch", "5000", "--out", str(tmp_path / "p.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "bench perf: error: out of memory on cpu at batch 5000: measure with a smaller --batch")


def test_bench_perf_checks_the_settings_its_steps_read(write_spec, capsys, monkeypatch):
    """A mistyped BENCH_COMPILE_MODE failed at the first compiled step (or a CUDA graph's step); modes
    with a backend that takes none were timed as if they differed."""
    monkeypatch.setenv("BENCH_COMPILE_MODE", "turbo")
    assert main(["perf", str(write_spec(TINY))]) == 2
    assert "BENCH_COMPILE_MODE='turbo': not a torch.compile mode" in capsys.readouterr().err
    monkeypatch.delenv("BENCH_COMPILE_MODE")
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "aot_eager")
    assert main(["perf", str(write_spec(TINY)), "--compile-modes", "reduce-overhead"]) == 2
    assert ("--compile-modes: modes are inductor's, which BENCH_COMPILE_BACKEND='aot_eager' does not use"
            in capsys.readouterr().err)


def test_compile_modes_are_timed_side_by_side_with_the_default_at_the_headline_and_the_smallest(write_spec,
                                                                                                 monkeypatch):
    """`bench perf --compile-modes M`: each of the two cases compiled in the default mode, then in M,
    on the fast path otherwise, with the graphs freed after each (CUDA graphs' memory pools too)."""
    import dataclasses

    from bench.spec import load_spec
    from bench.tools import perf

    asked, released = [], []
    monkeypatch.setattr(nn.Module, "compile", lambda self, **kwargs: asked.append(kwargs["mode"]))
    monkeypatch.setattr(perf, "release_run_memory", lambda device, compiled: released.append(compiled))
    headline, smallest, _ = select_cases(spec_cases(load_spec(write_spec(TINY))), 2)
    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, compile_modes=("reduce-overhead",))
    chosen = dataclasses.replace(baseline(torch.device("cpu")), amp_dtype=None)
    rows = perf.measure_compile_modes((headline, smallest), chosen, torch.device("cpu"), settings, lambda *a: None)
    assert asked == [None, "reduce-overhead", None, "reduce-overhead"] and released == [True] * 4
    assert [(r["case"], r["mode"]) for r in rows] == [(headline.label, "default"), (headline.label, "reduce-overhead"),
                                                       (smallest.label, "default"), (smallest.label, "reduce-overhead")]
    assert not any(r["cuda_graphs"] for r in rows)  # on the CPU inductor replays no CUDA graphs
    assert [r["cudagraph_skips"] for r in rows] == [0, 0, 0, 0]

    # each mode's speedup is over the default mode at the same case, not over the mode before it:
    # 2.0 s / 0.5 s and 2.0 s / 1.0 s at the headline, 0.3 s / 0.6 s at the smallest
    steps = {(headline.label, "default"): 2.0, (headline.label, "reduce-overhead"): 0.5,
             (headline.label, "max-autotune-no-cudagraphs"): 1.0, (smallest.label, "default"): 0.3,
             (smallest.label, "reduce-overhead"): 0.6, (smallest.label, "max-autotune-no-cudagraphs"): 0.3}
    monkeypatch.setattr(perf, "measure_training", lambda case, path, *a, **k: {
        "step_seconds": steps[case.label, path.compile_mode], "compile_seconds": 0.0})
    settings = dataclasses.replace(settings, compile_modes=("reduce-overhead", "max-autotune-no-cudagraphs"))
    rows = perf.measure_compile_modes((headline, smallest), chosen, torch.device("cpu"), settings, lambda *a: None)
    assert [r["speedup"] for r in rows] == [1.0, 4.0, 2.0, 1.0, 0.5, 1.0]


def test_graphs_compiled_without_the_cuda_graphs_their_mode_asked_for_are_counted(write_spec, monkeypatch):
    """Inductor falls back from CUDA graphs for reasons of its own (a CPU tensor in the graph, inputs it
    cannot keep static), logs why and bumps its counter; the row says how many graphs went without."""
    import dataclasses

    from torch._dynamo.utils import counters

    from bench.spec import load_spec
    from bench.tools import perf
    from bench.train import fastpath

    def compile_without_graphs(self, **kwargs):  # a forward and a backward graph, both without
        if kwargs["mode"] == "reduce-overhead":
            counters["inductor"]["cudagraph_skips"] += 2

    monkeypatch.setattr(nn.Module, "compile", compile_without_graphs)
    monkeypatch.setattr(perf, "release_run_memory", lambda device, compiled: None)
    monkeypatch.setattr(fastpath.FastPath, "cuda_graphs", property(lambda self: self.compile_mode == "reduce-overhead"))
    headline, _, _ = select_cases(spec_cases(load_spec(write_spec(TINY))), 2)
    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, compile_modes=("reduce-overhead",))
    chosen = dataclasses.replace(baseline(torch.device("cpu")), amp_dtype=None)
    rows = perf.measure_compile_modes((headline,), chosen, torch.device("cpu"), settings, lambda *a: None)
    assert [(r["mode"], r["cuda_graphs"], r["cudagraph_skips"]) for r in rows] == [
        ("default", False, 0), ("reduce-overhead", True, 2)]
    measured = json.loads((Path(__file__).resolve().parents[1] / "docs" / "measurements" / "h200"
                           / "perf-paper-mtat-vgg.json").read_text())
    text = perf.format_report({**measured, "compile_modes": rows})
    assert "reduce-overhead, CUDA graphs (2 graph(s) without)" in text


def test_a_gpu_missing_from_the_datasheet_table_is_given_its_peak_on_the_command_line(monkeypatch):
    from bench.tools import perf

    given = []
    monkeypatch.setattr(perf, "cli_main", lambda spec, device, out, settings: given.append(settings) or 0)
    assert main(["perf", str(SPECS / "paper-mtat-vgg.toml"), "--bf16-peak-tflops", "500"]) == 0
    assert main(["perf", str(SPECS / "paper-mtat-vgg.toml")]) == 0
    assert [s.bf16_peak_tflops for s in given] == [500.0, None]


def test_bench_perf_defaults_and_the_ends_of_its_ranges(monkeypatch):
    """docs/performance.md: batch 8 on the CPU unless --batch, the spec's (32) on a GPU; --epochs up to
    the spec's max_epochs (100) and a --batch down to the fewest clips a network trains on (MusiCNN's
    back end: 2) are accepted."""
    from bench.tools import perf

    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    assert perf.default_batch(spec, torch.device("cpu")) == 8
    assert perf.default_batch(spec, torch.device("cuda")) == spec.protocol.batch_size == 32
    class Measuring(Exception):
        """What the command reaches once every check of its settings passed."""

    def run_perf(spec, device, settings, **kwargs):
        raise Measuring(settings.epochs, settings.batch)

    monkeypatch.setattr(perf, "run_perf", run_perf)
    for argv, reached in ((["paper-mtat-vgg.toml", "--epochs", "100"], (100.0, None)),
                          (["paper-mtat-musicnn.toml", "--batch", "2"], (None, 2))):
        with pytest.raises(Measuring) as measuring:
            main(["perf", str(SPECS / argv[0]), *argv[1:], "--device", "cpu"])
        assert measuring.value.args == reached


def test_on_a_gpu_without_native_bf16_the_autocast_lever_is_float16(monkeypatch):
    """A V100 or T4: the fast path there is float16 with loss scaling, and so is the lever timed."""
    from bench.tools import perf

    monkeypatch.setattr(perf, "native_bf16", lambda device: False)
    rows = {name: path for name, path, _ in perf.levers(torch.device("cuda"), False, "vgg")}
    assert "+ float16 autocast" in rows and "+ bfloat16 autocast" not in rows
    assert rows["+ float16 autocast"].amp_dtype == "float16"


def test_bench_perf_without_a_spec_measures_the_papers_table_ii_grid(monkeypatch):
    from bench.tools import perf

    given = []
    monkeypatch.setattr(perf, "cli_main", lambda spec, device, out, settings: given.append(spec) or 0)
    assert main(["perf"]) == 0
    assert Path(given[0]).resolve() == (SPECS / "paper-mtat-vgg.toml").resolve()


def test_projection_with_measured_evaluation_times():
    """Evaluation measured per network input (no autograd, evaluation batch) replaces the assumption
    that a forward pass is a third of a training step."""
    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    projection = project(spec, spec_cases(spec), lambda case: 1.0, batch=32, epochs=30,
                         eval_seconds=lambda case: 0.01)
    per_run = 30 * (18706 / 32 + 1825 * 0.01) + 5329 * 0.01
    assert projection["device_hours"] == pytest.approx(264 * per_run / 3600)
    assert projection["assumptions"]["evaluation"] == "measured"


def test_projection_counts_each_runs_compilation_once():
    """A compiled run (the grid compiles runs of 5,000 steps or more) compiles its training and
    evaluation graphs once, whatever its epochs: 264 runs x 40 s is 2.9 hours of the projection, at 30
    epochs as at the bound of 100."""
    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    cases = spec_cases(spec)
    plain = project(spec, cases, lambda case: 1.0, batch=32, epochs=30, eval_seconds=lambda case: 0.01)
    compiled = project(spec, cases, lambda case: 1.0, batch=32, epochs=30, eval_seconds=lambda case: 0.01,
                       run_seconds_once=lambda case: 40.0)
    assert compiled["device_hours"] - plain["device_hours"] == pytest.approx(264 * 40 / 3600)
    assert compiled["max_epochs_hours"] - plain["max_epochs_hours"] == pytest.approx(264 * 40 / 3600)
    assert (plain["assumptions"]["once_per_run"], compiled["assumptions"]["once_per_run"]) == ("not counted",
                                                                                             "measured")
    # measured at two configurations (40 and 20 s), each with both log compressions, which the network
    # does not see: their 2 x 2 x 3 seeds runs take theirs, the other 252 runs the mean, 30 s
    measured = [cases[0], next(c for c in cases if c.configuration.cost_key != cases[0].configuration.cost_key)]
    once = measured_or_mean(measured, [{"run_compile_seconds": 40.0}, {"run_compile_seconds": 20.0}],
                            "run_compile_seconds")
    mixed = project(spec, cases, lambda case: 1.0, batch=32, epochs=30, eval_seconds=lambda case: 0.01,
                    run_seconds_once=once)
    assert mixed["device_hours"] - plain["device_hours"] == pytest.approx((6 * 40 + 6 * 20 + 252 * 30) / 3600)


def test_the_cudnn_benchmark_lever_is_timed_in_a_process_of_its_own(write_spec, monkeypatch):
    """cuDNN keys its cached convolution plans by shape, dtype, layout and TF32, not by cudnn.benchmark:
    timed after the fp32 rows, the flag found their heuristic plans and never autotuned (on an H100 its
    first step took 34 ms, as its timed ones, where the baseline's first took 602 ms). Its row is timed in
    a spawned process, whose caches are empty; here on the CPU, where the lever is not listed, by
    adding it."""
    import dataclasses

    from bench.spec import load_spec
    from bench.tools import perf

    settings = perf.PerfSettings(batch=2, budget_seconds=0.0, max_steps=1, scaling_cases=2, compile=False,
                                 librosa=False)
    for name in ("measure_data_path", "measure_eval"):
        monkeypatch.setattr(perf, name, lambda *a, **k: {})
    monkeypatch.setattr(perf, "_targets", lambda report: [])
    real_levers = perf.levers

    def with_the_cuda_lever(device, compile_lever, arch):
        rows = real_levers(device, compile_lever, arch)
        return [*rows, ("+ cudnn.benchmark", dataclasses.replace(rows[0][1], cudnn_benchmark=True), {})]

    monkeypatch.setattr(perf, "levers", with_the_cuda_lever)
    report = perf.run_perf(load_spec(write_spec(TINY)), torch.device("cpu"), settings, log=lambda *a: None)
    row = next(r for r in report["levers"] if r["lever"] == "+ cudnn.benchmark")
    assert row["fresh_process"] is True and row["step_seconds"] > 0
    assert not any(r.get("fresh_process") for r in report["levers"] if r is not row)


def test_every_lever_sets_cudnn_benchmark_itself():
    """A lever measured after `+ cudnn.benchmark` must not inherit it (the flag is global)."""
    import dataclasses

    cpu = torch.device("cpu")
    dataclasses.replace(baseline(cpu), cudnn_benchmark=True).prepare_model(nn.Linear(2, 2))
    assert torch.backends.cudnn.benchmark is True
    baseline(cpu).prepare_model(nn.Linear(2, 2))
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("page", ["README.md", "docs/running.md"])
def test_the_gpu_hours_tables_in_the_docs_are_the_work_of_each_shipped_spec(page):
    """Each row: the spec's runs, its training and evaluation work at 30 epochs (6 flops per MAC trained,
    2 evaluated, on the published split sizes) and those hours at 100, 40 and 15 % of an H100's 989
    TFLOP/s, as printed (each figure within half its last digit: `paper-mtat-musicnn` at 15 % read 0.30
    for 0.3055)."""
    import re

    from bench.spec import load_spec
    from bench.tools import perf
    from bench.tools.peaks import hours_at_peak
    from bench.tools.projection import project

    text = (Path(__file__).resolve().parents[1] / page).read_text()
    rows = re.findall(r"^\s*\| `([\w-]+)` \([^)]*\) \| (\d+) \| ([\d,]+) PFLOP \| ([\d.]+)(?: H100-hours)? \| "
                      r"([\d.]+)(?: H100-hours)? \| ([\d.]+)(?: H100-hours)? \|$", text, re.M)
    assert {name for name, *_ in rows} == set(SHIPPED_RUNS) - {"demo"}  # a spec a user adds needs no row

    def shown(text: str, value: float) -> bool:
        digits = len(text.split(".")[1]) if "." in text else 0
        return abs(float(text.replace(",", "")) - value) <= 0.5 * 10 ** -digits + 1e-12

    for name, runs, work, *hours in rows:
        spec = load_spec(SPECS / f"{name}.toml")
        projection = project(spec, perf.spec_cases(spec), lambda case: 1.0, 32, 30)
        floor = hours_at_peak(projection["pflop"], 989)
        assert int(runs) == projection["runs"] and shown(work, projection["pflop"]), name
        assert all(shown(h, floor / share) for h, share in zip(hours, (1.0, 0.4, 0.15), strict=True)), (name, hours)


def test_seed_stack_benchmark_stacks_the_networks_the_grid_trains():
    """benchmarks/seed_stack.py times K seeds' networks stacked by torch.func.vmap: the stacked network
    must compute what each seed's own network, built as a run builds it, computes on that seed's batch
    (fp32, training mode, dropout off: its draws differ; grouped and plain convolutions round
    differently, ~1e-5 of the largest logit)."""
    import importlib.util

    from bench.tools.perf import _batch

    path = SPECS.parent / "benchmarks" / "seed_stack.py"
    spec = importlib.util.spec_from_file_location("seed_stack", path)
    seed_stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_stack)
    cpu = torch.device("cpu")
    cases = spec_cases(load_spec(SPECS / "demo.toml"))
    for arch in ("vgg", "musicnn"):
        case = min((c for c in cases if c.configuration.arch == arch), key=lambda c: c.gmac_per_input)
        with torch.no_grad():
            _, logits = seed_stack.stacked_step(case, cpu, seeds=2, batch=2, dropout=False)
            stacked = logits(amp=False)
            own = []
            for seed in range(2):
                torch.manual_seed(seed)  # a run's initialisation
                model = case.build(cpu).train()
                for module in model.modules():
                    if isinstance(module, nn.Dropout | nn.Dropout2d):
                        module.eval()
                mel, _ = _batch(case, 2, cpu, seed=seed)
                own.append(model(mel.unsqueeze(1)).float())
        own = torch.stack(own)
        assert stacked.shape == own.shape == (2, 2, case.n_tags)
        assert float((stacked - own).abs().max() / own.abs().max()) < 1e-4


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"),
                    reason="no posix_fadvise (macOS): bench perf's cold read is skipped there")
def test_page_cache_fraction_of_a_file_and_its_eviction(tmp_path):
    """What `bench perf`'s cold read relies on: a file just written is in the page cache; once unmapped
    everywhere and dropped with posix_fadvise it is not (except on a tmpfs, whose pages are the file)."""
    from bench.data.page_cache import page_cache_fraction

    path = tmp_path / "waves.f16"
    path.write_bytes(os.urandom(4 * 2**20))
    assert page_cache_fraction(path) == 1.0
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    after = page_cache_fraction(path)
    if after == 1.0:
        pytest.skip(f"{tmp_path} keeps its pages (a tmpfs)")
    assert after <= 0.05


@pytest.mark.parametrize(("left", "cold"), [(0.0, True), (1.0, False)])
def test_a_cold_read_is_timed_only_where_the_file_left_the_page_cache(monkeypatch, left, cold):
    from bench.tools import perf

    monkeypatch.setattr(input_path.ScratchCache, "evict", lambda self: left)
    _, smallest, _ = select_cases(spec_cases(load_spec(SPECS / "paper-mtat-vgg.toml")), 2)
    result = perf.measure_data_path(smallest, torch.device("cpu"),
                                    perf.PerfSettings(batch=4, data_clips=8), consumption=10.0)
    assert result["page_cache_fraction_after_evicting"] == left
    assert (result["clips_per_second_evicted"] is not None) is cold


def test_the_cpu_peak_memory_is_in_megabytes_and_only_where_it_counts_from_the_case(monkeypatch):
    """getrusage's ru_maxrss is in kilobytes on Linux and in bytes on macOS (getrusage(2) of each),
    where `bench perf` printed peaks 1024 times too large; and where /proc/self/clear_refs cannot reset
    the peak (macOS), the process's peak is that of every case before, so none is reported."""
    import resource
    import types
    from pathlib import Path

    from bench.tools import perf

    real_read, real_write = Path.read_text, Path.write_text

    def no_proc(real):
        def call(self, *args, **kwargs):
            if str(self).startswith("/proc/"):
                raise FileNotFoundError(2, "No such file or directory", str(self))
            return real(self, *args, **kwargs)
        return call

    monkeypatch.setattr(Path, "read_text", no_proc(real_read))
    monkeypatch.setattr(Path, "write_text", no_proc(real_write))
    assert timing.reset_peak_memory(torch.device("cpu")) is False
    for platform, maxrss in (("darwin", 300 * 2**20), ("linux", 300 * 2**10)):
        monkeypatch.setattr(timing.sys, "platform", platform)
        monkeypatch.setattr(resource, "getrusage", lambda who, m=maxrss: types.SimpleNamespace(ru_maxrss=m))
        assert timing.peak_memory_mb(torch.device("cpu")) == 300
    monkeypatch.undo()
    _, smallest, _ = select_cases(spec_cases(load_spec(SPECS / "demo.toml")), 1)
    settings = perf.PerfSettings(batch=2, budget_seconds=0.1, max_steps=2)
    cpu = torch.device("cpu")
    counted = perf.measure_training(smallest, baseline(cpu), cpu, settings)["peak_memory_mb"]
    if os.path.exists("/proc/self/clear_refs"):  # Linux
        assert counted > 0
    monkeypatch.setattr(Path, "write_text", no_proc(real_write))
    assert perf.measure_training(smallest, baseline(cpu), cpu, settings)["peak_memory_mb"] is None


def test_perf_times_evaluation_at_the_batch_a_run_evaluates():
    """On CUDA evaluation takes 4 training batches, fewer clips where a tensor would pass 2^31 - 1
    elements: at the largest input, VGG's first block makes 128 x 128 x 1820 elements per clip, so 72
    clips; the headline's 128 x 96 x 1366 allow 127. Timing 128 there would crash the measurement."""
    from types import SimpleNamespace

    from bench.tools.perf import eval_batch

    cases = {c.label: c for c in spec_cases(load_spec(SPECS / "paper-mtat-vgg.toml"))}
    cuda_like = SimpleNamespace(eval_batch_factor=4)
    assert eval_batch(cases["vgg 16k 128x1820 x1"], cuda_like, 32) == 72
    assert eval_batch(cases["vgg 12k 96x1366 x1"], cuda_like, 32) == 127
    assert eval_batch(cases["vgg 16k 128x910 x2"], cuda_like, 32) == 128


def test_the_gpu_figures_in_the_docs_are_those_the_h200_measured():
    """README and docs/performance.md quote the H200's `make gpu-check` and `bench perf --device cuda`,
    whose JSON files are kept in docs/measurements/h200/: the quoted figures are those files' numbers."""
    root = Path(__file__).resolve().parents[1]
    folder = root / "docs" / "measurements" / "h200"
    checks = {c["id"]: c for c in json.loads((folder / "gpu-check.json").read_text())["checks"]}
    report = json.loads((folder / "perf-paper-mtat-vgg.json").read_text())
    readme, performance = (root / "README.md").read_text(), (root / "docs" / "performance.md").read_text()
    head = checks["P1"]["numbers"]["headline"]
    assert (round(head["tflops"]), round(100 * head["fraction_of_bf16_peak"])) == (131, 13)
    assert "131 TFLOP/s, 13 % of the bf16 peak" in performance and "at 13 % of the bf16 peak" in readme
    shared = checks["P1"]["numbers"]["smallest_shared"]
    assert round(100 * shared["busy"]) == 79 and "24 % / 79 %" in performance
    memory = checks["P2"]["numbers"]
    assert f"{memory['reserved_peak_bytes'] / 2**30:.1f}" == "11.6" and "7.5 / 8.6 / 11.6 GiB" in performance
    reads = checks["P4"]["numbers"]
    assert (round(reads["clips_per_second_page_cache"]), round(reads["clips_per_second_evicted"])) == (15427, 1229)
    assert "15,427 / 1,229 clips/s" in performance
    projection = report["projection"]
    assert (round(projection["device_hours"]), round(projection["max_epochs_hours"])) == (12, 38)
    assert "**12 H200-hours** at 30 epochs per run (38 at its `max_epochs` of 100)" in readme
    assert round(100 * projected_fraction(projection, 989.0), 1) == 8.7 and "8.7 %" in readme


def test_peer_speed_counts_both_sides_multiply_adds_after_the_mel():
    """benchmarks/peer_speed.py sets each side's step time beside its GMAC per clip: a peer network
    shaped as sota-music-tagging-models' are (`spec` and `to_db` first in its forward pass, a pooling
    layer built from a tensor size inside it, which fvcore's tracing cannot follow) counts the
    multiply-adds of what follows the mel, by hand: a 1 -> 4 channel 3 x 3 convolution 'same' on
    8 x 20 (4 x 9 x 160 = 5,760), a linear layer 4 -> 3 (12); and our VGG counts its plan's MACs."""
    import importlib.util

    path = SPECS.parent / "benchmarks" / "peer_speed.py"
    spec = importlib.util.spec_from_file_location("peer_speed", path)
    peer_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer_speed)

    class Peer(nn.Module):
        def __init__(self):
            super().__init__()
            self.spec = nn.Linear(20, 8 * 20)  # a stand-in mel: its multiply-adds must not count
            self.to_db = nn.Identity()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.dense = nn.Linear(4, 3)

        def forward(self, x):
            x = self.to_db(self.spec(x).view(-1, 8, 20)).unsqueeze(1)
            x = self.conv(x).flatten(2)
            x = nn.MaxPool1d(x.size(2))(x).squeeze(2)
            return self.dense(x)

    assert peer_speed.peer_gmac(Peer(), torch.randn(1, 20)) * 1e9 == pytest.approx(4 * 9 * 160 + 4 * 3)
    model = build("vgg", InputConfig(16000, 48, 3, 63), 10, width=0.0625)
    mel = torch.randn(1, 48, 63)
    assert peer_speed.forward_gmac(model, mel) * 1e9 == pytest.approx(model.analytic_macs())


def test_a_cases_gmac_per_input_is_its_networks_exact_count():
    """The measured cases carry the exact count of the network the grid trains (17 outputs, the synthetic
    set's tags), here torch's own FlopCounterMode over one forward pass (two FLOPs per multiply-add of its
    convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    case = min(spec_cases(load_spec(SPECS / "demo.toml")), key=lambda c: c.gmac_per_input)
    model = case.build(torch.device("cpu")).eval()
    with FlopCounterMode(display=False) as counted:
        model(torch.randn(1, case.configuration.mel.n_mels, model.input_frames))
    assert case.gmac_per_input * 1e9 == counted.get_total_flops() / 2 == 162_304


def test_musicnns_front_end_share_and_evaluation_batch_are_what_a_run_computes(monkeypatch):
    """A MusiCNN training step computes one 3 s segment's mel frames of each clip (140 of the 12 kHz
    clip's 1,366 at hop x1: int(3 x 12000 / 256)), and its evaluation passes every segment of a batch
    of clips at once (9 per 29.1 s clip): the front end's share of a step is that segment's, and the
    forward passes timed are of clips x 9 inputs."""
    from bench.tools import perf

    spec = load_spec(SPECS / "paper-mtat-musicnn.toml")
    case = next(c for c in spec_cases(spec) if c.configuration.mel.sample_rate == 12000
                and c.configuration.mel.n_mels == 96)
    assert case.segments == 9
    asked = []

    def frontend_seconds(mel, clip_seconds, device, settings, segment_frames=None):
        asked.append(segment_frames)
        return 0.9 if segment_frames is None else 0.1
    monkeypatch.setattr(input_path, "frontend_seconds", frontend_seconds)
    settings = perf.PerfSettings(batch=8, librosa=False)
    measured = perf.measure_frontend(case, torch.device("cpu"), settings, step_seconds=0.4)
    assert asked == [None, 140]
    assert measured["ms_per_clip"] == pytest.approx(900 / 8) and measured["segment_ms_per_clip"] == pytest.approx(12.5)
    assert measured["training_ms_per_clip"] == pytest.approx(12.5) and measured["share_of_step"] == pytest.approx(0.2)

    batches = []
    monkeypatch.setattr(perf, "_eval_model", lambda case, path, device: None)
    monkeypatch.setattr(perf, "_time_forward", lambda model, case, path, device, settings, batch, grad: (
        batches.append(batch), {})[1])
    path = baseline(torch.device("cpu"))
    perf.measure_forward(case, path, torch.device("cpu"), settings)
    assert batches == [perf.eval_batch(case, path, 8) * 9]


def test_the_segment_front_end_timed_is_the_one_a_training_step_computes(monkeypatch):
    """`frontend_seconds` with segment frames times one segment of each clip's mel (`MelFrontend.frames`,
    what `Trainer._training_mel` computes): the whole clip's mel cut at the segment's start."""
    from bench.spec import MelConfig
    from bench.tools import perf
    from bench.train.frontend import MelFrontend

    computed = []
    monkeypatch.setattr(input_path, "time_calls",
                        lambda fn, *args, **kwargs: (computed.append(fn()), {"seconds": 1.0})[1])
    mel = MelConfig(sample_rate=12000, n_mels=96, hop_multiplier=1, log="log")
    settings = perf.PerfSettings(batch=2)
    assert perf.frontend_seconds(mel, 29.1, torch.device("cpu"), settings, segment_frames=140) == 1.0
    (segments,) = computed
    whole = MelFrontend.from_config(mel)(torch.from_numpy(input_path.probe_clips(12000, 29.1, 2)))
    assert whole.shape == (2, 96, 1366) and segments.shape == (2, 96, 140)
    for clip in range(2):
        start = next(s for s in range(1366 - 140 + 1) if torch.allclose(whole[clip, :, s], segments[clip, :, 0],
                                                                          atol=1e-4))
        torch.testing.assert_close(segments[clip], whole[clip, :, start:start + 140], atol=1e-4, rtol=1e-4)


def test_timing_waits_for_the_last_warm_up_before_the_first_timed_call(monkeypatch):
    """CUDA graphs record on the second call: both are warm-ups, and the device is synchronised after
    the second too, so the first timed call does not wait for its queued work."""
    events = []
    monkeypatch.setattr(timing, "sync", lambda device: events.append("sync"))
    time_calls(lambda: events.append("call"), torch.device("cpu"), budget=10.0, max_calls=1, warmups=2)
    assert events == ["sync", "call", "sync", "call", "sync", "call", "sync"]


def test_perf_chooses_the_fast_path_from_the_steps_a_grid_run_takes(write_spec):
    """`bench perf` counted a run's steps rounding up, over the synthetic set's every clip, and over 1
    clip where the split's size is not known, so it timed as "the fast path" a compiled step the grid's
    runs would not take, or the reverse. The demo's 400 clips are 300 in the train split (folders 0-b of
    16): 37 whole batches of 8, 3,700 steps in 100 epochs, under the 5,000 a run compiles from (the
    perf count was 5,000). MTAT's 18,706: 58,400 at batch 32. A manifest's split is not known."""
    from bench.spec import load_spec
    from bench.tools import perf

    demo = (SPECS / "demo.toml").read_text().replace("max_epochs = 8", "max_epochs = 100").replace(
        "batch_size = 32", "batch_size = 8")
    assert "max_epochs = 100" in demo and "batch_size = 8" in demo and "clips = 400" in demo
    assert perf._planned_steps(load_spec(write_spec(demo))) == 3_700
    mtat = load_spec(SPECS / "paper-mtat-vgg.toml")
    assert (mtat.protocol.max_epochs, mtat.protocol.batch_size) == (100, 32)
    assert perf._planned_steps(mtat) == 58_400
    manifest = TINY.replace('name = "synthetic"\nclip_seconds = 3.0', 'name = "manifest"\npath = "m.csv"')
    assert perf._planned_steps(load_spec(write_spec(manifest))) is None


@pytest.mark.parametrize("word", ["0", "off", " False "])
def test_bench_compile_off_in_any_word_leaves_the_compile_lever_out(write_spec, monkeypatch, word):
    """`BENCH_COMPILE=off` kept the grid's runs eager, and `bench perf` still compiled its lever (minutes on
    a GPU): it read only "0" as off."""
    from bench.spec import load_spec
    from bench.tools import perf

    asked = []

    def levers(device, compile_lever, arch):
        asked.append(compile_lever)
        raise KeyboardInterrupt

    monkeypatch.setattr(perf, "compile_blocker", lambda device: None)  # a box with a compiler
    monkeypatch.setattr(perf, "levers", levers)
    monkeypatch.setenv("BENCH_COMPILE", word)
    with pytest.raises(KeyboardInterrupt):
        perf.run_perf(load_spec(write_spec(TINY)), torch.device("cpu"), perf.PerfSettings(), log=lambda *a: None)
    assert asked == [False]
    monkeypatch.setenv("BENCH_COMPILE", "auto")
    with pytest.raises(KeyboardInterrupt):
        perf.run_perf(load_spec(write_spec(TINY)), torch.device("cpu"), perf.PerfSettings(), log=lambda *a: None)
    assert asked == [False, True]


@pytest.mark.parametrize(("switch", "noted"), [("auto", True), ("1", False)])
def test_the_note_on_an_unknown_split_matches_the_fast_path_timed(write_spec, monkeypatch, switch, noted):
    """A manifest's split size is not known before reading it: perf noted "not compiled" and then, with
    BENCH_COMPILE=1, timed the fast path compiled."""
    from bench.spec import load_spec
    from bench.tools import perf

    monkeypatch.setenv("BENCH_COMPILE", switch)
    monkeypatch.setattr(perf, "compile_blocker", lambda device: None)
    cpu = torch.device("cpu")
    monkeypatch.setattr(perf, "levers", lambda device, compile_lever, arch: [("fp32 eager", baseline(cpu), {})])
    monkeypatch.setattr(perf, "measure_training", lambda *a, **k: {"step_seconds": 1.0, "steps_timed": 1})
    chosen = []

    def stop(rows, path):
        chosen.append(path.compile)
        raise KeyboardInterrupt

    monkeypatch.setattr(perf, "_matching_lever", stop)
    said = []
    manifest = TINY.replace('name = "synthetic"\nclip_seconds = 3.0', 'name = "manifest"\npath = "m.csv"')
    with pytest.raises(KeyboardInterrupt):
        perf.run_perf(load_spec(write_spec(manifest)), torch.device("cpu"), perf.PerfSettings(), log=said.append)
    assert chosen == [not noted]
    note = "note: the train split's size is not known before reading the dataset (a manifest's"
    assert any(line.startswith(note) for line in said) is noted


def _benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SPECS.parent / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script, args, message", [
    ("seed_stack", ["--cases", "smallest,foo"], "argument --cases: 'foo': the cases are smallest and headline"),
    ("seed_stack", ["--seeds", "0"], "argument --seeds: must be >= 1, got 0"),  # had been torch's empty-stack error
    ("seed_stack", ["--out", "{file}/x.json"], "--out {file}/x.json: "),  # had been found after the measuring
    ("seed_stack", ["--out", "numbers.txt"], "a name that does not end in .json"),
    ("peer_speed", ["--peer", ".", "--out", "{file}/x.json"], "--out {file}/x.json: "),
    ("peer_speed", ["--peer", ".", "--rounds", "0"], "argument --rounds: must be >= 1, got 0"),
    ("tag_speed", ["--runs", "0"], "argument --runs: must be >= 1, got 0"),  # had been statistics' error
    # these had been tracebacks too: a spec not there or not TOML, a file that is not audio as the track
    ("seed_stack", ["--spec", "{file}/nope.toml"], "nope.toml: spec file not found"),
    ("seed_stack", ["--spec", "{file}"], "not valid TOML"),
    ("tag_speed", ["--track", "{file}"], "--track {file}: not a recording libsndfile reads"),
])
def test_a_benchmarks_bad_argument_is_one_line_before_it_measures(tmp_path, monkeypatch, capsys, script, args,
                                                                  message):
    in_the_way = tmp_path / "file"
    in_the_way.write_text("[not toml")
    module = _benchmark(script)
    monkeypatch.setattr("sys.argv", [f"{script}.py", *(a.format(file=in_the_way) for a in args)])
    with pytest.raises(SystemExit) as ended:
        module.main()
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.count("\n") == 1 and message.format(file=in_the_way) in err, err
