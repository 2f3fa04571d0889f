"""Measured inference cost (bench.train.latency) and `bench plan --latency`."""

import pytest
import torch

from bench.cli import main
from bench.train import latency
from bench.train.frontend import MelFrontend

from .device_fakes import tiny_runs


def test_measure_inference_times_the_front_end_and_the_network(monkeypatch):
    (run,) = tiny_runs(archs=("musicnn",))
    calls = []
    real = latency._median_seconds

    def counted(step, device, repeats, warmup):
        calls.append((repeats, warmup))
        return real(step, device, repeats, warmup)

    monkeypatch.setattr(latency, "_median_seconds", counted)
    measured = latency.untrained_latency(run.configuration, run.dataset.clip_seconds, 3, torch.device("cpu"))
    assert measured["latency_ms"] > 0 and measured["network_latency_ms"] > 0
    assert measured["throughput_clips_per_second"] > 0 and measured["batch"] == 64
    # the median of 5 passes each: batch 1 with and without the front end after 2 warm-ups, batch 64 after one
    assert calls == [(5, 2), (5, 2), (5, 1)] and measured["repeats"] == 5


def test_latency_is_measured_with_cudnn_autotuning_off_and_leaves_the_flag_as_it_was(monkeypatch):
    """A grid run measures after training, with its training setting (autotuning on, on CUDA) still set;
    `bench plan --latency` measures with it off: both now measure with it off, and give it back."""
    (run,) = tiny_runs(archs=("vgg",))
    seen = []
    real = latency._median_seconds

    def spying(step, device, repeats, warmup):
        seen.append(torch.backends.cudnn.benchmark)
        return real(step, device, repeats, warmup)

    monkeypatch.setattr(latency, "_median_seconds", spying)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    latency.untrained_latency(run.configuration, run.dataset.clip_seconds, 3, torch.device("cpu"))
    assert seen == [False, False, False] and torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize(("precision", "tf32"), [("fp32", False), ("auto", True), ("bf16", True)])
def test_plan_latency_and_a_runs_served_latency_use_tf32_as_the_specs_precision_says(monkeypatch, precision, tf32):
    """On Ampere and later, strict fp32 convolutions and TF32 ones differ by several times. A run of an
    fp32 spec measured its served latency with TF32 off (its training's setting, left on), `bench plan
    --latency` with torch's default (on): both now set it from the spec's precision, and give it back."""
    import dataclasses

    import architectures
    from bench.train import loop as train

    (run,) = tiny_runs(archs=("vgg",))
    run = dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, precision=precision))
    seen = []

    def spying(step, device, repeats, warmup):
        seen.append(torch.backends.cudnn.allow_tf32)
        return 0.001

    monkeypatch.setattr(latency, "_median_seconds", spying)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", not tf32)  # what the process left it at
    latency.untrained_latency(run.configuration, run.dataset.clip_seconds, 3, torch.device("cpu"), precision)
    config = run.mel.input_config(run.dataset.clip_seconds)
    state = architectures.build("vgg", config, 3, **dataclasses.asdict(run.configuration.options)).state_dict()
    frontend = MelFrontend.from_config(run.mel)
    train.served_inference(run, state, 3, frontend, torch.device("cpu"))
    assert seen == [tf32] * 6 and torch.backends.cudnn.allow_tf32 is (not tf32)


def test_median_of_the_timed_passes_after_warm_up(monkeypatch):
    # 2 slow warm-up passes, then 5 timed ones of 1-5 s: the median is 3 s; timing the warm-ups too
    # would give 4 s, and timing 5 passes from the first would call the step 5 times, not 7
    durations = iter([100.0, 100.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    clock = {"t": 0.0, "calls": 0}

    def step():
        clock["t"] += next(durations)
        clock["calls"] += 1

    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock["t"])
    assert latency._median_seconds(step, torch.device("cpu"), repeats=5, warmup=2) == 3.0
    assert clock["calls"] == 7
    # a pass slowed by the machine moves a mean (2.8 s), not the median
    durations = iter([100.0, 100.0, 1.0, 1.0, 1.0, 1.0, 10.0])
    assert latency._median_seconds(step, torch.device("cpu"), repeats=5, warmup=2) == 1.0


def test_plan_latency_adds_positive_columns(capsys, write_spec):
    from .conftest import MINIMAL_SPEC

    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 3.0').replace(
        "[[grid]]", "[arch.vgg]\nwidth = 0.0625\n[[grid]]"))
    assert main(["plan", str(spec), "--no-fvcore", "--latency", "--device", "cpu", "--format", "json"]) == 0
    import json

    (row,) = json.loads(capsys.readouterr().out)["configurations"]
    assert row["latency_ms"] > 0 and row["network_latency_ms"] > 0 and row["clips_per_second_b64"] > 0
    assert row["throughput_batch"] == 64


def test_plan_latency_where_not_even_one_clip_fits_is_one_line(capsys, write_spec, monkeypatch):
    """Under a memory limit (`ulimit -v`) torch's CPU allocator fails: the batch is halved down to one
    clip, and where even that fails `bench plan --latency` says so in one line, where it printed a
    traceback."""
    from .conftest import MINIMAL_SPEC

    spec = write_spec(MINIMAL_SPEC.replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 3.0'))
    asked = []

    def measure_inference(*args, batch, **kwargs):
        asked.append(batch)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 5898371072 bytes. Error code 12 (Cannot allocate memory)")
    monkeypatch.setattr(latency, "measure_inference", measure_inference)
    monkeypatch.setattr(latency, "available_host_bytes", lambda: 2**50)
    assert main(["plan", str(spec), "--no-fvcore", "--latency", "--device", "cpu"]) == 2
    assert asked == [64, 32, 16, 8, 4, 2, 1]
    err = capsys.readouterr().err
    assert err.startswith(f"bench plan: error: {spec}: vgg at 12000 Hz, 96 mels, hop x1: one clip's inference does "
                          "not fit in the memory of cpu ([enforce fail") and err.count("\n") == 1


def test_roc_auc_against_measured_latency_has_its_pareto_front():
    import numpy as np
    import pandas as pd

    from bench.report import figures
    from bench.report.columns import SUMMARY_COLUMNS
    from bench.report.statistics import aggregate

    rows = []
    # (n_mels, latency ms, ROC-AUC): 8 mels is cheapest, 128 best; 48 mels is slower than 96 and worse
    for n_mels, ms, roc in ((8, 5.0, 0.85), (96, 10.0, 0.90), (128, 20.0, 0.95), (48, 15.0, 0.88)):
        # one seed measured on a busy machine (+30 ms, a third of the throughput): the median keeps it out
        for seed, jitter in ((0, 0.0), (1, 1.0), (2, 30.0)):
            rows.append({"run_id": f"r{n_mels}-{seed}", "arch": "vgg", "width": 1.0, "sample_rate": 16000,
                         "n_mels": n_mels, "hop_multiplier": 1, "log": "log", "seed": seed, "roc_auc": roc,
                         "pr_auc": roc - 0.1, "gmac": n_mels / 10, "storage_bytes": n_mels * 1000,
                         "latency_ms": ms + jitter, "throughput_clips_per_second": 1000 / (ms + jitter),
                         "dataset": "mtat", "clip_seconds": 29.1})
    summary = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    aggregated = aggregate(summary).set_index("n_mels")
    assert aggregated["latency_ms"].to_dict() == {8: 6.0, 96: 11.0, 128: 21.0, 48: 16.0}  # median of the 3 seeds
    assert aggregated["throughput_clips_per_second"].to_dict() == pytest.approx(
        {8: 1000 / 6, 96: 1000 / 11, 128: 1000 / 21, 48: 1000 / 16})
    assert aggregated["pareto_latency"].to_dict() == {8: True, 96: True, 128: True, 48: False}
    fig = figures.tradeoff(aggregated.reset_index(), "latency_ms")
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("latency per clip at batch 1")
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(np.isfinite(float(t)) for t in labels)  # one unit: plain ms


def test_latency_at_batch_1_includes_the_front_end_and_the_network_alone_does_not(monkeypatch):
    """On a clock that the front end moves by 1 s per call and the network by 0.25 s, the clip latency is
    both (1.25 s), the network's latency the network's alone, and throughput a batch per 1.25 s."""
    clock = {"t": 0.0}

    class Frontend(torch.nn.Module):
        def forward(self, waves):
            clock["t"] += 1.0
            return torch.zeros(len(waves), 4, 10)

    class Network(torch.nn.Module):
        input_frames = 10

        def forward(self, x):
            clock["t"] += 0.25
            return torch.zeros(len(x), 3)

    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock["t"])
    measured = latency.measure_inference(Network(), Frontend(), 800, torch.device("cpu"), batch=4)
    assert measured["latency_ms"] == pytest.approx(1250) and measured["network_latency_ms"] == pytest.approx(250)
    assert measured["throughput_clips_per_second"] == pytest.approx(4 / 1.25)


def test_the_served_batch_keeps_every_tensor_within_32_bit_indexing(monkeypatch):
    """The throughput pass (64 clips, fp32) is capped as evaluation batches are: VGG at 22.05 kHz, 128
    mels, hop x1 has 2,508 frames per 29.1 s clip (as librosa frames it, centred), so its first block
    holds 128 x 128 x 2,508 = 41,091,072 elements per clip: 2.6e9 at 64 clips, and 52 clips stay under
    2^31. At the paper's 16 kHz (1,820 frames, 29,818,880 per clip) 64 clips already fit."""
    import dataclasses

    import architectures
    from architectures import InputConfig
    from bench.spec import parse_spec
    from bench.train import loop as train

    for module in (latency, train):  # memory enough for any batch: the CPU's own cap is another test's
        monkeypatch.setattr(module, "available_host_bytes", lambda: 2**50)
    per_clip = 128 * 128 * 2508
    assert latency.served_batch("vgg", InputConfig(22050, 128, 1, 2508), 50, {}) == (2**31 - 1) // per_clip == 52
    assert latency.served_batch("vgg", InputConfig(16000, 128, 1, 1820), 50, {}) == 64
    raw = {"name": "wide", "seeds": [0], "dataset": {"name": "synthetic", "clip_seconds": 29.1, "n_tags": 50},
           "grid": [{"arch": ["vgg"], "sample_rate": [22050], "n_mels": [128], "hop_multiplier": [1], "log": ["log"]}]}
    (run,) = parse_spec(raw, "wide.toml").runs()
    asked = []

    def measure_inference(*args, batch, **kwargs):
        asked.append(batch)
        return {"batch": batch}
    monkeypatch.setattr(latency, "measure_inference", measure_inference)
    latency.untrained_latency(run.configuration, 29.1, 50, torch.device("cpu"))  # `bench plan --latency`
    config = run.mel.input_config(29.1)
    state = architectures.build("vgg", config, 50, **dataclasses.asdict(run.configuration.options)).state_dict()
    served = train.served_inference(run, state, 50, None, torch.device("cpu"))  # a grid run's, after training
    assert asked == [52, 52] and served["batch"] == 52


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB."),  # torch's caching allocator
    torch.AcceleratorError("CUDA error: out of memory"),  # cudaErrorMemoryAllocation, outside the allocator
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    # the host's, where a limit (ulimit -v) or no overcommit makes an allocation fail
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 2949251072 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
])
def test_a_trained_run_measures_its_serving_at_a_smaller_batch_where_memory_runs_out(monkeypatch, error):
    """After training, the fp32 throughput pass halves its batch when the GPU's (or the host's) memory runs
    out, in any of the words torch has for that, rather than failing a run whose training is done (and `bench
    plan --latency` rather than stop with a traceback); any other error is the run's."""
    import dataclasses

    import architectures
    from bench.train import loop as train

    (run,) = tiny_runs(archs=("vgg",))
    asked = []

    def measure_inference(*args, batch, **kwargs):
        asked.append(batch)
        if batch > 16:
            raise error
        return {"batch": batch}
    monkeypatch.setattr(latency, "measure_inference", measure_inference)
    config = run.mel.input_config(run.dataset.clip_seconds)
    state = architectures.build("vgg", config, 3, **dataclasses.asdict(run.configuration.options)).state_dict()
    served = train.served_inference(run, state, 3, None, torch.device("cpu"))
    assert asked == [64, 32, 16] and served["batch"] == 16
    asked.clear()  # `bench plan --latency` measures an untrained network the same way
    assert latency.untrained_latency(run.configuration, 1.0, 3, torch.device("cpu"))["batch"] == 16
    assert asked == [64, 32, 16]

    monkeypatch.setattr(latency, "measure_inference", lambda *a, batch, **k: (_ for _ in ()).throw(
        RuntimeError("CUDA error: an illegal memory access was encountered")))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        train.served_inference(run, state, 3, None, torch.device("cpu"))


HOST_PEAK = """
import json, sys, torch
from architectures import InputConfig, build
from bench.core import framing
from bench.data.views import eval_segments
from bench.train.frontend import MelFrontend

def peak():  # this process's own: ru_maxrss starts at the RSS of the process it was forked from
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))

arch, rate, mels, hop, seconds, batch, options = json.loads(sys.argv[1])
config = InputConfig(rate, mels, hop, framing.n_frames(seconds, rate, hop))
model, frontend = build(arch, config, 1, **options).eval(), MelFrontend(rate, mels, hop, "log")
waveforms = 0.1 * torch.randn(batch, framing.clip_samples(seconds, rate))
with torch.inference_mode():
    before = peak()
    model(eval_segments(frontend(waveforms), model.input_frames)[0])
    grown = peak() - before
print((1024 * grown + waveforms.nbytes) // batch)
"""


@pytest.mark.parametrize("case", [
    ("vgg", 192000, 1, 1, 20.0, 4, {"width": 1 / 64}),  # the front end's: measured 93 MB a clip, estimated 128
    ("vgg-605k", 8000, 48, 1, 29.1, 16, {}),  # the network's, ReLU not in place: measured 63 MB, estimated 80
])
def test_the_cpus_throughput_batch_fits_in_half_the_memory_available(monkeypatch, case):
    """64 clips of 60 s at 192 kHz (1 band, a spec's extremes) took 21 GB in the throughput pass after
    training: Linux killed the grid (no error to halve the batch on), and its rerun went straight back to
    the same pass. On the CPU the batch is now as many clips as half the available memory holds, by an
    estimate of a clip's peak that is at least what a pass measures (its peak resident growth per clip,
    waveforms included, in a process of its own)."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys

    import architectures
    from architectures import InputConfig
    from bench.core import framing
    from bench.train import loop as train

    measured = int(subprocess.run([sys.executable, "-c", HOST_PEAK, json.dumps(case)], capture_output=True,
                                  text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout)
    arch, rate, mels, hop, seconds, _, options = case
    config = InputConfig(rate, mels, hop, framing.n_frames(seconds, rate, hop))
    estimate = latency.host_clip_bytes(arch, config, 1, options)
    assert measured <= estimate <= 2 * measured
    assert latency.served_batch(arch, config, 1, options, host_bytes=10 * estimate) == 5
    assert latency.served_batch(arch, config, 1, options, host_bytes=0) == 1
    (run,) = tiny_runs(archs=("vgg",))  # a grid run's measurement after training asks for that much
    options, config = dataclasses.asdict(run.configuration.options), run.mel.input_config(run.dataset.clip_seconds)
    asked = []
    monkeypatch.setattr(latency, "measure_inference", lambda *args, batch, **kwargs: asked.append(batch) or {})
    monkeypatch.setattr(train, "available_host_bytes", lambda: 6 * latency.host_clip_bytes("vgg", config, 3, options))
    train.served_inference(run, architectures.build("vgg", config, 3, **options).state_dict(), 3, None,
                           torch.device("cpu"))
    assert asked == [3]
