"""`make gpu-check`: the GPU acceptance of the suite, in at most a few minutes on one GPU.

One PASS/FAIL line per check and a JSON file with every number. Functional checks run the real
`bench grid` command on a tiny synthetic dataset (48 clips of 3 s, width 1/16 networks, batch 16);
performance checks time the paper's networks on random batches at the shipped specs' batch size (32).

  C1  a tiny grid (VGG and MusiCNN, 2 epochs) on CUDA with device-resident waveforms in bf16
  C2  the same grid for 4 epochs reading per batch from the cache (forced), fp16 with loss scaling, pinned
      memory
  C3  `--workers 2` with CUDA_VISIBLE_DEVICES set to one GPU: both workers on it, each run executed once
  C4  torch.compile on: every run compiled and trained
  C5  three or more configurations compiled in one process with no recompile-limit hit
  C6  the folds (the first convolutions without their input gradient, VGG's block-1 BatchNorm in its
      convolution's weights), eager and compiled, and compiled VGG's block-1 convolution and max-pool
      as one, give the gradients of the modules as written on this GPU (float32, TF32 off, at most 1e-3
      apart), and a fast-path step with them (autocast, channels_last) is finite
  P1  training throughput at the smallest, the headline (96x1366) and the largest (128x1820)
      configuration: effective TFLOP/s (6 x MACs per clip x clips/s) against the GPU's bf16 dense
      peak, and GPU-busy fraction (profiler kernel time over wall time); the smallest also with
      several runs on the GPU at once
  P2  peak memory of training and evaluation at the largest, against the footprint estimate that
      chooses how many runs share a GPU
  P3  the free-memory rule after a run: memory cached by PyTorch's allocator counts as available
  P4  reading per batch at 16 kHz from the page cache against what the smallest configuration consumes
      (a step and its mel); the rate from the disk (page cache evicted) is reported beside it

C4 and C5 run last (compilation is the slowest part). P1 times the step as the paper's runs train:
compiled, as the grid compiles runs of 5,000 steps or more (eager where compilation is off, e.g. no C
compiler). P2 measures eager steps. The
checks judge the default execution path: BENCH_RESIDENT, BENCH_COMPILE and BENCH_COMPILE_BACKEND
are cleared, and set only where a check checks them.

On a GPU that lets one process at a time use it (nvidia-smi's Exclusive_Process compute mode), C3 and
P1's runs at once do not apply (SKIP, `not_applicable` in the JSON, not a failure), and C4-C5 run
right after C2: once this process has measured on the GPU, no grid's worker could start CUDA there.

All of it keeps to `--deadline` (600 s by default): a check that would start with less time left than
it needs is not run (SKIP, and exit status 1), and each grid gets at most the time left. Stopped by
SIGTERM or Ctrl-C, it kills the grids it started (their own process groups) and leaves the JSON with
what was measured and the check it stopped in.

Without CUDA it prints "no CUDA device: nothing checked" and exits 0: that is not a pass. A machine
with NVIDIA GPUs that this process cannot use (a driver older than torch's CUDA, a CPU-only torch,
`CUDA_VISIBLE_DEVICES` hiding them) is not a machine without CUDA: one FAIL line says why, exit 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.core.errors import exit_description
from bench.run.gpus import exclusive_gpus, others_on_cuda_device, sharing_note, visible_selection
from bench.tools.busy import busy_fraction
from bench.tools.peaks import HEADLINE_FRACTION_OF_BF16_PEAK, bf16_peak_tflops
from bench.tools.process_groups import LIVE, cleaned_up, communicate_all, kill_live_of, run_group, start_group

ROOT = Path(__file__).resolve().parents[2]  # the repository (bench/tools/gpucheck.py)


def paper_spec_path() -> Path:
    """specs/paper-mtat-vgg.toml of the checkout this code runs from, else of the working directory
    (an installed copy has no specs/: run it from a clone)."""
    beside = ROOT / "specs" / "paper-mtat-vgg.toml"
    return beside if beside.is_file() else Path("specs") / "paper-mtat-vgg.toml"


TINY_SPEC = """
name = "{name}"
seeds = {seeds}
[dataset]
name = "synthetic"
path = "{data}"
clips = 48
clip_seconds = 3.0
[arch.vgg]
width = 0.0625
[arch.musicnn]
width = 0.0625
segment_seconds = 1.0
[protocol]
batch_size = 16
max_epochs = {epochs}
patience = {patience}
[[grid]]
arch = {archs}
sample_rate = [16000]
n_mels = [32]
hop_multiplier = [2]
log = ["log"]
{extra}
"""
"""A grid small enough for a test: 48 synthetic clips of 3 s, VGG and MusiCNN at 1/16 width."""

TARGETS = {"headline_fraction_of_peak": HEADLINE_FRACTION_OF_BF16_PEAK, "busy_headline": 0.80,
           "busy_smallest_shared": 0.60}


@dataclass
class Check:
    id: str
    title: str
    ok: bool | None = None
    detail: str = ""
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "ok": self.ok, "detail": self.detail, "numbers": self.numbers}

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        return f"{word} {self.id} {self.title}: {self.detail}"


# ------------------------------------------------------------------------------------------------
# functional checks: the real command on a tiny grid


def clear_switches(environ) -> list[str]:
    """Remove the execution path's environment switches (`bench.train.fastpath.ENVIRONMENT`) from
    `environ` (this process's, inherited by the grids and the shared-GPU processes); returns what was
    set, as NAME=value. The checks judge the default path and set a switch only where they check it
    (an exported `BENCH_RESIDENT=0` would fail C1, `BENCH_COMPILE=1` compile every tiny run and P1's
    steps)."""
    from bench.train.fastpath import ENVIRONMENT

    return [f"{name}={environ.pop(name)}" for name in ENVIRONMENT if name in environ]


class Deadline:
    """When the whole check must be done (`--deadline`): a check starts only with the time it needs
    left, and a grid or a group of processes is given at most the time left."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return math.inf if self.end is None else self.end - time.monotonic()

    def bound(self, timeout: float) -> float:
        """`timeout`, or less where less time is left (at least a second: a process gets to start)."""
        return max(1.0, min(timeout, self.left()))


class Workspace:
    def __init__(self, root: Path, device: str = "cuda", deadline: Deadline | None = None):
        self.root = root
        self.data = root / "synth"
        self.device = device
        """What the grids are run with; only the harness's own tests use another."""
        self.deadline = deadline or Deadline(None)

    def spec(self, name: str, archs=("vgg", "musicnn"), mels=(32,), precision: str = "auto",
             extra_archs: tuple[str, ...] | None = None, epochs: int = 2) -> Path:
        """The stress harness's tiny grid (48 clips of 3 s, width 1/16, batch 16) of `archs` at 32 mels,
        with each other mel count of `mels` as an extra grid block of `extra_archs` (default `archs`),
        at `precision`, for `epochs` epochs (2 by default; as many of patience)."""
        more = json.dumps(list(extra_archs or archs))
        extra = "".join(f'[[grid]]\narch = {more}\nsample_rate = [16000]\nn_mels = [{m}]\n'
                        f'hop_multiplier = [2]\nlog = ["log"]\n' for m in mels if m != 32)
        text = TINY_SPEC.format(name=name, seeds="[0]", data=self.data, epochs=epochs, patience=epochs,
                                archs=json.dumps(list(archs)), extra=extra)
        path = self.root / f"{name}.toml"
        path.write_text(text.replace("[protocol]\n", f'[protocol]\nprecision = "{precision}"\n'))
        return path

    def grid(self, spec: Path, *args: str, env: dict | None = None, timeout: float = 600
             ) -> tuple[subprocess.CompletedProcess, dict]:
        environment = {**os.environ, "BENCH_CACHE": str(self.root / "cache"),
                       "BENCH_GPU_LOCKS": str(self.root / "gpu-locks"), **(env or {})}
        command = [sys.executable, "-m", "bench", "grid", str(spec), "--device", self.device, "--no-report",
                   "--results", str(self.root / "results"), *args]
        bounded = self.deadline.bound(timeout)
        proc = run_group(command, environment, bounded)
        if proc.returncode is not None and proc.returncode < 0 and bounded < timeout and self.deadline.left() <= 1:
            # killed because the check's deadline came, not because it outlasted its own limit
            raise DeadlineReached(f"not finished: the deadline came {bounded:.0f} s into it, and it was stopped")
        runs = self.root / "results" / spec.stem / "runs"
        results = {p.name: json.loads((p / "result.json").read_text())
                   for p in sorted(runs.glob("*")) if (p / "result.json").exists()}
        return proc, results


def _grid_failure(proc: subprocess.CompletedProcess, results: dict, expected: int) -> str | None:
    bad = [r["run_id"] + ": " + str(r.get("error")) for r in results.values() if r["status"] != "ok"]
    if proc.returncode != 0 or len(results) != expected or bad:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return (f"exit {proc.returncode}, {len(results)}/{expected} results, failed: {bad or 'none'}; "
                + " | ".join(tail))
    return None


FOLD_CASES = (("vgg", (16000, 48, 3, 63), {"width": 1 / 16}), ("musicnn", (16000, 48, 1, 187), {"width": 0.125}),
              ("vgg-605k", (16000, 96, 1, 187), {"width": 0.125}))
"""C6's networks, small: (arch, InputConfig fields, options). Each folds its input BatchNorm into its
first convolutions; VGG also block 1's BatchNorm (`architectures.layers.conv_bn`)."""

FOLD_TOLERANCE = 1e-3
"""C6: the largest relative difference allowed between a parameter's gradient with the folds and as
written, in float32 without TF32 (rounding alone gave at most 8e-5 on CPUs with AVX512, 1.5e-4 on one
with AVX2 only, mostly about 1e-5; in float64 at most 5e-13)."""


def _fold_switches(model, on: bool) -> None:
    for name in ("fold_input_bn", "fold_block1_bn"):
        if hasattr(model, name):
            setattr(model, name, on)


FUSED_CASE = "vgg, block 1 fused, compiled"
"""C6's row for VGG compiled with block 1's convolution and max-pool as one (`fuse_block1_pool`)."""

COMPILED_CASES = ("vgg", "musicnn")
"""C6's networks also compiled as a run compiles them (the folds, no fusion): rows "<arch>, compiled".
The box's own torch and its GPU code generator are held to the modules eager: a release whose
compiler gets a gradient wrong (torch 2.11 zeroed the fused block 1's) fails C6, not a grid."""


def fold_gradient_errors(device, compiled_backend: str | None = None) -> dict[str, dict[str, float]]:
    """Per network of FOLD_CASES: each parameter's relative difference between one training step's
    gradients with the folds on and with the modules as written, in float32 with TF32 off, from the
    same weights and batch (dropout off: the same function). A difference is taken relative to the
    parameter's gradient, or to a thousandth of the whole gradient's norm where that is larger (the
    convolution bias before a BatchNorm has a gradient of exactly 0, which either way computes as
    rounding). With `compiled_backend`, also COMPILED_CASES' folded steps compiled by that backend and
    FUSED_CASE, VGG's with block 1's convolution and pool fused, each against the modules eager."""
    import torch
    from torch import nn

    import architectures
    from architectures import InputConfig

    # (row, arch, InputConfig fields, options, compiled, block 1 fused)
    cases = [(arch, arch, shape, options, False, False) for arch, shape, options in FOLD_CASES]
    if compiled_backend:
        cases += [(f"{case[0]}, compiled", *case[1:4], True, False) for case in cases if case[0] in COMPILED_CASES]
        cases += [(FUSED_CASE, *case[1:4], True, True) for case in cases if case[0] == "vgg"]
    errors = {}
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for name, arch, shape, options, compiled, fused in cases:
            grads = []
            for fold in (True, False):
                torch.manual_seed(0)
                model = architectures.build(arch, InputConfig(*shape), 10, **options).to(device).train()
                _fold_switches(model, fold)
                for module in model.modules():
                    if isinstance(module, nn.Dropout):
                        module.p = 0.0
                forward = model
                if fold and compiled:
                    if fused:
                        model.fuse_block1_pool = True
                    torch._dynamo.reset()
                    # graph breaks allowed, as a run's compile allows them; the fused row asks for one
                    # graph, since the fusion acts only while dynamo traces (a break there would skip it)
                    forward = torch.compile(model, backend=compiled_backend, dynamic=False, fullgraph=fused)
                clips = torch.Generator().manual_seed(1)
                x = 2 + torch.randn(4, 1, shape[1], model.input_frames, generator=clips)
                target = torch.rand(4, 10, generator=clips).round()
                loss = nn.functional.binary_cross_entropy_with_logits(forward(x.to(device)), target.to(device))
                loss.backward()
                grads.append({n: p.grad.double().cpu() for n, p in model.named_parameters()})
            if compiled:
                torch._dynamo.reset()
            folded, written = grads
            total = math.sqrt(sum(float(g.square().sum()) for g in written.values()))
            errors[name] = {n: float((folded[n] - g).norm()) / max(float(g.norm()), 1e-3 * total)
                            for n, g in written.items()}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    return errors


def check_folds(check: Check, device=None) -> None:
    """C6: the folds (no first-convolution input gradient; VGG's block-1 BatchNorm in its convolution),
    eager and, where a compiler is there, compiled, and compiled VGG's block-1 convolution and max-pool
    as one, train with the gradients of the modules as written on this device, and a step of the fast
    path (autocast, channels_last) with them gives finite gradients."""
    import torch

    import architectures
    from architectures import InputConfig
    from bench.train.fastpath import compile_backend, compile_blocker, fast_path
    from bench.train.loop import forward

    device = device or torch.device("cuda")
    blocker = compile_blocker(device)
    errors = fold_gradient_errors(device, None if blocker else compile_backend())
    # per row the largest difference, and every parameter past the tolerance: where all of block 1's
    # gradients came out zero, the largest alone named only its input BatchNorm's bias
    rows = {}
    for arch, per in errors.items():
        error, parameter = max((e, n) for n, e in per.items())
        rows[arch] = {"error": error, "parameter": parameter,
                      "over_tolerance": sorted(n for n, e in per.items() if not e <= FOLD_TOLERANCE)}
    check.numbers = {"relative_errors": rows, "tolerance": FOLD_TOLERANCE, "fused_not_compiled": blocker}
    finite = {}
    for arch, shape, options in FOLD_CASES:  # eager: what compiles is C4's
        path = replace(fast_path(device, arch=arch), compile=False, compile_backend=None, compile_mode=None,
                       reuse_host_memory=False)
        model = path.prepare_model(architectures.build(arch, InputConfig(*shape), 10, **options).to(device)).train()
        mel = torch.randn(4, shape[1], model.input_frames, device=device)
        forward(model, path, mel).square().mean().backward()
        finite[arch] = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    check.numbers["fast_path_finite"] = finite
    over = {arch: row["over_tolerance"] for arch, row in rows.items() if row["over_tolerance"]}
    arch, worst = max(rows.items(), key=lambda item: item[1]["error"])
    check.ok = not over and all(finite.values())
    check.detail = (f"float32 gradients folded vs as written: largest relative difference {worst['error']:.1e} "
                    f"({arch} {worst['parameter']}; at most {FOLD_TOLERANCE:g})"
                    + "".join(f"; {a}: {len(names)} parameters past it ({', '.join(names)})"
                              for a, names in over.items())
                    + (f"; block 1 fused not compiled: {blocker}" if blocker else "") + "; fast-path steps "
                    + ("finite" if all(finite.values()) else
                       "NOT finite: " + ", ".join(a for a, ok in finite.items() if not ok)))


def check_resident_bf16(ws: Workspace, check: Check) -> None:
    import torch

    from bench.train.fastpath import native_bf16

    proc, results = ws.grid(ws.spec("c1"))
    problem = _grid_failure(proc, results, 2)
    if problem:
        check.ok, check.detail = False, problem
        return
    wanted = "bfloat16" if native_bf16(torch.device("cuda")) else "float16"
    rows = [(r["config"]["arch"], r["training"]["amp_dtype"], r["training"]["fast_path"]["resident_data"],
             r["provenance"]["device"]) for r in results.values()]
    check.numbers = {"runs": rows, "roc_auc": [r["metrics"]["roc_auc"] for r in results.values()]}
    check.ok = all(dtype == wanted and resident and device.startswith("cuda") for _, dtype, resident, device in rows)
    check.detail = ", ".join(f"{a} {d} resident={r} on {dev}" for a, d, r, dev in rows)


def check_read_fp16(ws: Workspace, check: Check) -> None:
    # 4 epochs of 2 steps: GradScaler's calibration may skip the first steps (an overflow at its
    # initial scale), and a run that took no step at all fails
    proc, results = ws.grid(ws.spec("c2", precision="fp16", epochs=4), env={"BENCH_RESIDENT": "0"})
    problem = _grid_failure(proc, results, 2)
    if problem:
        check.ok, check.detail = False, problem
        return
    paths = [r["training"]["fast_path"] for r in results.values()]
    dtypes = [r["training"]["amp_dtype"] for r in results.values()]
    check.ok = all(d == "float16" for d in dtypes) and all(
        not p["resident_data"] and p["pin_memory"] and p.get("loss_scaling") for p in paths)
    check.detail = f"amp {set(dtypes)}, loss scaling {[p.get('loss_scaling') for p in paths]}, resident " \
                   f"{[p['resident_data'] for p in paths]}, pinned {[p['pin_memory'] for p in paths]}, " \
                   f"steps skipped by the scaler " \
                   f"{[sum(e.get('skipped_steps', 0) for e in r['training']['history']) for r in results.values()]}"


def first_visible_gpu(environ: dict) -> str:
    """The GPU that `CUDA_VISIBLE_DEVICES=<it>` selects among those this process may use: the first of
    an existing selection (an index or a UUID; a scheduler may have handed out GPU 3 alone), else 0."""
    selection = visible_selection(environ)
    return selection[0] if selection else "0"


def check_two_workers_one_gpu(ws: Workspace, check: Check) -> None:
    spec = ws.spec("c3", archs=("vgg",), mels=(32, 24, 16, 8))
    proc, results = ws.grid(spec, "--workers", "2", env={"CUDA_VISIBLE_DEVICES": first_visible_gpu(os.environ)})
    problem = _grid_failure(proc, results, 4)
    if problem:
        check.ok, check.detail = False, problem
        return
    runs = ws.root / "results" / "c3" / "runs"
    executions = {p.name: (p / "executions.jsonl").read_text().splitlines() for p in runs.iterdir()}
    # the processes that trained: a worker that announced itself and then crashed trained nothing
    pids = {json.loads(line)["pid"] for lines in executions.values() for line in lines}
    crashed = "stopped with an error" in proc.stdout + proc.stderr
    devices = {r["provenance"]["device"] for r in results.values()}
    # each of several local workers' lines starts with its "[wN] "
    workers = sorted({line for line in proc.stdout.splitlines() if re.match(r"(\[w\d+\] )?worker ", line)})
    counts = sorted(len(lines) for lines in executions.values())
    check.ok = devices == {"cuda:0"} and set(counts) == {1} and len(pids) == 2 and not crashed
    check.detail = (f"devices {devices}, executions per run {counts}, {len(pids)} worker processes trained"
                    f"{', a worker crashed' if crashed else ''}; {'; '.join(workers)}")


def check_compile(ws: Workspace, c4: Check, c5: Check) -> None:
    # three configurations (VGG and MusiCNN at 32 mels, VGG at 24) in one worker, one after another:
    # by default a GPU would get several workers, each compiling one configuration. Each compiles
    # its own graphs, which is most of this check's time: one run per GPU gives the worker the
    # machine's CPUs for inductor's compile processes (the default, 4 per GPU, a quarter of them).
    spec = ws.spec("c4", archs=("vgg", "musicnn"), mels=(32, 24), extra_archs=("vgg",))
    proc, results = ws.grid(spec, "--workers", "1", "--runs-per-gpu", "1",
                            env={"BENCH_COMPILE": "1", "BENCH_COMPILE_BACKEND": "inductor"}, timeout=900)
    problem = _grid_failure(proc, results, 3)
    if problem:
        c4.ok, c4.detail = False, problem
        c5.ok, c5.detail = False, "see C4"
        return
    paths = {r["run_id"]: r["training"]["fast_path"] for r in results.values()}
    compiled = sum(bool(p["compile"] and p["compiled"] and p["compile_backend"] == "inductor") for p in paths.values())
    # why compilation was turned off (e.g. no C compiler for Triton), as the runs recorded it
    notes = sorted({p["compile_note"] for p in paths.values() if p.get("compile_note")})
    c4.ok = compiled == len(paths)
    c4.detail = f"{compiled}/{len(paths)} runs compiled by inductor{' (' + '; '.join(notes) + ')' if notes else ''}; " \
                f"training times {[round(r['cost']['train_seconds'], 1) for r in results.values()]} s"
    pids = {json.loads(line)["pid"] for p in (ws.root / "results" / "c4" / "runs").iterdir()
            for line in (p / "executions.jsonl").read_text().splitlines()}
    hits = sum(p["recompile_limit_hits"] for p in paths.values())
    # no recompile-limit hit proves nothing of configurations that were not compiled
    c5.ok = len(pids) == 1 and hits == 0 and len(paths) >= 3 and compiled == len(paths)
    c5.detail = f"{len(paths)} configurations in {len(pids)} process(es), {compiled} compiled, " \
                f"{hits} recompile-limit hits"
    c5.numbers = {"recompile_limit_hits": hits}


# ------------------------------------------------------------------------------------------------
# performance checks: the paper's networks at the shipped specs' batch size


@functools.cache
def _cases() -> dict:
    from bench.spec import load_spec
    from bench.tools.cases import select_cases, spec_cases

    cases = spec_cases(load_spec(paper_spec_path()))
    headline, smallest, _ = select_cases(cases, 2)
    largest = max(cases, key=lambda c: c.gmac_per_input)
    reading_case = min((c for c in cases if c.configuration.mel.sample_rate == 16000),
                      key=lambda c: c.gmac_per_input)
    return {"smallest": smallest, "headline": headline, "largest": largest, "reading": reading_case}


def step_seconds(step: Callable[[], object], steps: int) -> float:
    """Seconds per step of `steps` steps after a warm-up step, without the profiler (its tracing
    slows the launches of small steps), synchronised once at the end so the steps queue as they do
    in training (`bench.tools.timing.time_calls` synchronises after every call, for a median)."""
    import torch

    step()
    torch.cuda.synchronize()
    clock = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - clock) / steps


def training_step(case, batch: int, as_runs: bool = False):
    """A closure running one fast-path training step of `case` on random data (what a run does):
    eager, or with `as_runs` as the paper's runs train (compiled where the grid compiles them, their
    thousands of steps: the compilation is in the first call)."""
    import torch
    from torch import nn

    from bench.spec import load_spec
    from bench.tools.perf import _batch, _planned_steps
    from bench.train.fastpath import fast_path
    from bench.train.loop import forward, make_optimizer, optimise

    device = torch.device("cuda")
    steps = _planned_steps(load_spec(paper_spec_path())) if as_runs else 0
    path = fast_path(device, "auto", planned_steps=steps, arch=case.configuration.arch)
    model = path.prepare_model(case.build(device))
    optimizer = make_optimizer(model, path, 1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=path.torch_amp_dtype == torch.float16)
    mel, target = _batch(case, batch, device)
    loss_fn = nn.BCEWithLogitsLoss()
    return lambda: optimise(loss_fn(forward(model, path, mel), target), optimizer, scaler), model, path


def check_throughput(check: Check, batch: int, shared_runs: int, peak: float | None = None,
                     deadline: Deadline | None = None, shared_alone: str | None = None) -> dict:
    """P1. `shared_alone`: why the several-runs-at-once part does not apply on this GPU (it takes one
    process at a time), or None to measure it."""
    import torch

    from bench.train.loop import release_run_memory

    name = torch.cuda.get_device_name()
    peak = peak or bf16_peak_tflops(name)
    rows = {}
    cases = _cases()
    for label, case in cases.items():
        if label == "reading":
            continue
        step, model, path = training_step(case, batch, as_runs=True)
        busy, profiled_step, _ = busy_fraction(step, 10)
        seconds = step_seconds(step, 10)
        tflops = 6 * model.analytic_macs() * batch / seconds / 1e12
        rows[label] = {"case": case.label, "compiled": path.compile, "step_seconds": seconds,
                       "clips_per_second": batch / seconds,
                       "tflops": tflops, "fraction_of_bf16_peak": tflops / peak if peak else None, "busy": busy,
                       "kernel_seconds_per_step": busy * profiled_step}
        del step, model, path
        release_run_memory(torch.device("cuda"), rows[label]["compiled"])  # as after a run
    if shared_alone:  # a GPU that takes one process at a time: the grid gives it one run, so this does not apply
        shared = {"not_applicable": shared_alone}
    else:
        try:
            shared = shared_busy(cases["smallest"], batch, shared_runs,
                                 shared_steps(rows["smallest"]["step_seconds"], shared_runs),
                                 kernel_per_step=rows["smallest"]["kernel_seconds_per_step"], deadline=deadline)
        except DeadlineReached as exc:
            shared = {"not_run": str(exc)}
    rows["smallest_shared"] = shared
    head, small = rows["headline"], rows["smallest"]
    fraction = head["fraction_of_bf16_peak"]
    check.numbers = {"device": name, "bf16_dense_peak_tflops": peak, "batch": batch, **rows}
    # a GPU whose peak is not in the table cannot prove the headline target: it fails, saying so
    alone_met = (head["busy"] >= TARGETS["busy_headline"]
                 and fraction is not None and fraction >= TARGETS["headline_fraction_of_peak"])
    check.ok = alone_met and (bool(shared_alone) or shared.get("busy", 0) >= TARGETS["busy_smallest_shared"])
    share = (f"{100 * fraction:.0f} % of bf16 peak" if fraction is not None
             else f"bf16 peak of {name!r} unknown: give it with --bf16-peak-tflops")
    if shared_alone:
        at_once = f"{shared_runs} runs at once not applicable ({shared_alone})"
    elif "error" in shared:  # they crashed or outlasted their limit: not a busy fraction of 0
        at_once = f"{shared_runs} runs at once not measured: {shared['error']}"
    elif "not_run" in shared:
        at_once = f"{shared_runs} runs at once {shared['not_run']}"
    else:
        at_once = f"{shared_runs} runs at once busy {100 * shared['busy']:.0f} %"
    how = "compiled" if head["compiled"] else "eager"
    check.detail = (f"{how}: headline {head['tflops']:.0f} TFLOP/s ({share}), busy {100 * head['busy']:.0f} %; "
                    f"smallest {small['clips_per_second']:.0f} clips/s busy {100 * small['busy']:.0f} %, {at_once}; "
                    f"largest {rows['largest']['tflops']:.0f} TFLOP/s")
    if "not_run" in shared and alone_met:  # what was measured passed; the rest says nothing either way
        raise DeadlineReached(check.detail)
    return rows


def barrier(folder: Path, parties: int, timeout: float = 120.0) -> None:
    """Wait until `parties` processes have called this with `folder` (each leaves a file there)."""
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.01)


SHARED_SECONDS = 6.0
"""The window of the shared-GPU busy check, roughly: each process runs the same number of steps."""

SHARED_STEPS = (20, 400)
"""Bounds of that number: at least a few steps, and at most what the profiler records and this
process reads back in seconds (a small step launches ~200 kernels)."""


def shared_steps(step_seconds: float, runs: int) -> int:
    """Steps each of `runs` processes trains in the shared-GPU check, from one run's step time alone:
    the same count for all, so that none trains alone at the end of the window."""
    low, high = SHARED_STEPS
    return int(min(high, max(low, SHARED_SECONDS / (runs * step_seconds))))


def shared_busy(case, batch: int, runs: int, steps: int, timeout: float = 300.0,
                kernel_per_step: float | None = None, deadline: Deadline | None = None) -> dict:
    """GPU-busy fraction with `runs` processes training `case` at once, `steps` steps each, over the
    window from the first process's start to the last one's end: `kernel_per_step` (one run's kernel
    seconds per step, measured alone) times the steps they trained, where it is given; else the sum
    of the kernel times each process's profiler recorded, which time-slicing stretches (see below).
    The processes build and warm up
    first, then wait for each other, so that the window holds all of them training. All of them are
    killed where they have not finished within `timeout` seconds, or by `deadline`'s end (then
    DeadlineReached: cut short, they say nothing of the GPU)."""
    code = ("import json, sys, time, torch; from pathlib import Path; "
            "from bench.tools.busy import busy_fraction; "
            "from bench.tools.gpucheck import _cases, training_step, barrier; "
            "step, model, path = training_step(_cases()['smallest'], int(sys.argv[1]), as_runs=True); "
            "n = int(sys.argv[2]); "
            "busy, per_step, (t0, t1) = busy_fraction(step, n, lambda: barrier(Path(sys.argv[3]), int(sys.argv[4]))); "
            "print(json.dumps({'start': t0, 'end': t1, 'kernel': busy * per_step * n, 'steps': n}))")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-check-barrier-") as meeting:
        procs = [start_group([sys.executable, "-c", code, str(batch), str(steps), meeting, str(runs)])
                 for _ in range(runs)]
        bounded = (deadline or Deadline(None)).bound(timeout)
        try:
            outs = communicate_all(procs, bounded)
        except subprocess.TimeoutExpired:
            if bounded < timeout and deadline.left() <= 1:
                raise DeadlineReached(f"not finished: the deadline came {bounded:.0f} s into them, and they "
                                      "were stopped") from None
            return {"error": f"{runs} runs at once did not finish in {timeout:.0f} s"}
        finally:
            kill_live_of([p for p in procs if p.returncode is None])
            LIVE.difference_update(procs)
    failed = [(proc, err.strip()) for proc, (_, err) in zip(procs, outs, strict=True) if proc.returncode]
    if failed:  # what they printed last; else how they ended (the out-of-memory killer's SIGKILL prints nothing)
        said = [err.splitlines()[-1] for _, err in failed if err]
        return {"error": " | ".join(said or [f"{exit_description(proc.returncode)}, no output" for proc, _ in failed])}
    rows = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    window = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    clips = sum(r["steps"] * batch for r in rows) / window
    # kernels of different processes are time-sliced, not run together: a kernel's recorded span stays
    # open through the slices of the others, so the profiled sum over-counts once the GPU is contended
    # (above 1 it surely does). With one run's kernel time per step measured alone (`kernel_per_step`),
    # busy is that times the steps trained in the window, which slicing cannot stretch; the sum is kept
    kernel = sum(r["kernel"] for r in rows) / window
    total_steps = sum(r["steps"] for r in rows)
    busy = kernel if kernel_per_step is None else kernel_per_step * total_steps / window
    return {"runs": runs, "busy": min(1.0, busy), "kernel_time_over_window": kernel, "clips_per_second": clips,
            "window_seconds": window, "steps": total_steps}


def check_memory(check: Check, batch: int) -> None:
    import torch

    from bench.cost.gmac import training_footprint_bytes
    from bench.spec import RunSpec, load_spec
    from bench.train.fastpath import between_phases
    from bench.train.latency import cuda_passes_without_grad

    case = _cases()["largest"]
    torch.cuda.reset_peak_memory_stats()
    step, model, path = training_step(case, batch)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    train_peak = torch.cuda.max_memory_allocated()
    train_reserved = torch.cuda.max_memory_reserved()
    # the peak of steps after the first, which autotuned cuDNN (its trial workspaces count in the peak
    # above, as they do in a run's): where P2 fails, the two say whether the autotuning is why
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    warm_peak = torch.cuda.max_memory_allocated()
    model.eval()
    between_phases(torch.device("cuda"))  # as a run does before it evaluates
    from bench.tools.perf import _batch
    from bench.train.fastpath import eval_batch_size
    from bench.train.loop import forward

    spec = load_spec(paper_spec_path())
    run = RunSpec(case.configuration, 0, spec.dataset, replace(spec.protocol, batch_size=batch))
    eval_batch = eval_batch_size(run, path)  # as the run evaluates it
    mel, _ = _batch(case, eval_batch, torch.device("cuda"))
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        forward(model, path, mel)
    torch.cuda.synchronize()
    eval_peak = torch.cuda.max_memory_allocated()
    reserved = max(train_reserved, torch.cuda.max_memory_reserved())
    # the estimate at the batch measured; a run's recorded peak spans its training and its evaluation
    estimate = training_footprint_bytes(run, cuda_passes_without_grad(batch, run.protocol.precision))
    check.numbers = {"case": case.label, "train_peak_bytes": train_peak, "eval_peak_bytes": eval_peak,
                     "reserved_peak_bytes": reserved, "footprint_estimate_bytes": estimate, "batch": batch,
                     "eval_batch": eval_batch, "warm_train_peak_bytes": warm_peak}
    # what the run takes from the GPU is what its allocator reserves (allocated, and cached but free)
    check.ok = estimate >= max(train_peak, eval_peak, reserved)
    check.detail = (f"{case.label}: training {train_peak / 2**30:.1f} GiB (batch {batch}; "
                    f"{warm_peak / 2**30:.1f} GiB after the first steps), evaluation "
                    f"{eval_peak / 2**30:.1f} GiB (batch {eval_batch}), reserved {reserved / 2**30:.1f} GiB; "
                    f"estimate {estimate / 2**30:.1f} GiB {'covers' if check.ok else 'is below'} the largest")
    del step, model, mel


def leave_allocator_cache(device) -> None:
    """What a finished run leaves behind: memory PyTorch's caching allocator holds but no tensor uses
    (a block of up to 1 GiB, allocated and freed)."""
    import torch

    block = torch.empty(min(2**30, torch.cuda.mem_get_info(device)[0] // 4), dtype=torch.uint8, device=device)
    del block


def check_free_memory_rule(check: Check) -> None:
    import torch

    from bench.run.grid import CUDA_CONTEXT_BYTES
    from bench.train.fastpath import RESIDENT_FRACTION, resident_fits

    device = torch.device("cuda")
    leave_allocator_cache(device)
    free, total = torch.cuda.mem_get_info(device)
    reserved = torch.cuda.memory_reserved(device)
    cached = reserved - torch.cuda.memory_allocated(device)
    # what the GPU holds beside this process's allocator: its CUDA context (and any other process's
    # memory), which the runs-per-GPU choice allows CUDA_CONTEXT_BYTES for
    outside = total - free - reserved
    limit = RESIDENT_FRACTION * min(free + cached, total)
    fits, too_big = int(limit) - 2**20, int(limit) + 2**22
    check.numbers = {"free_bytes": free, "cached_bytes": cached, "total_bytes": total, "probe_bytes": fits,
                     "refused_probe_bytes": too_big, "outside_allocator_bytes": outside,
                     "context_allowance_bytes": CUDA_CONTEXT_BYTES}
    check.ok = (cached > 0 and fits > RESIDENT_FRACTION * free and resident_fits(fits, device)
                and not resident_fits(too_big, device))
    check.detail = (f"driver free {free / 2**30:.1f} GiB + allocator cache {cached / 2**30:.1f} GiB: "
                    f"{fits / 2**30:.2f} GiB of waveforms {'fit' if resident_fits(fits, device) else 'do not fit'}, "
                    f"{too_big / 2**30:.2f} GiB {'are refused' if not resident_fits(too_big, device) else 'fit too'} "
                    f"(counting free memory only allowed {RESIDENT_FRACTION * free / 2**30:.2f} GiB); "
                    f"held outside the allocator (the CUDA context) {outside / 2**30:.2f} GiB, "
                    f"allowed {CUDA_CONTEXT_BYTES / 2**30:.1f} GiB per run")


def smallest_consumption(rows: dict, batch: int) -> float:
    """Clips per second that one run of the smallest configuration trains on, as `bench perf` counts it:
    a training step (P1's, or measured here where P1 did not run or failed: the reads must be judged
    against a real rate) and the mel front end of its clips."""
    import torch

    from bench.tools.input_path import consumption_clips_per_second, measure_frontend
    from bench.tools.timing import PerfSettings

    case = _cases()["smallest"]
    seconds = rows.get("smallest", {}).get("step_seconds")
    if not seconds:
        step, model, _ = training_step(case, batch, as_runs=True)
        seconds = step_seconds(step, 5)
        del step, model
        torch.cuda.empty_cache()
    frontend = measure_frontend(case, torch.device("cuda"), PerfSettings(batch=batch, budget_seconds=2.0,
                                                                         librosa=False), seconds)
    return consumption_clips_per_second(seconds, frontend["training_ms_per_clip"], batch)


LOADER_BATCHES = 16
"""Batches in each of P4's passes through the cache."""


def check_reading(check: Check, batch: int, consumption: float) -> None:
    import torch

    from bench.tools.input_path import describe_cold_read, measure_data_path
    from bench.tools.timing import PerfSettings

    device = torch.device("cuda")
    case = _cases()["reading"]
    # 16 batches: a few would time mostly the reader's pipeline filling, not the rate it keeps up
    settings = PerfSettings(batch=batch, data_clips=LOADER_BATCHES * batch)
    result = measure_data_path(case, device, settings, consumption)
    # the reader is judged by what it reads from the page cache; from the disk it reads at the
    # storage's pace, which no reader passes (the H200 box's disk: 2.0 GB/s, 2,200 such clips/s)
    warm = result["clips_per_second_page_cache"] / consumption
    cold = result["clips_per_second_evicted"]
    storage_bound = cold is not None and cold < consumption
    check.numbers = {**result, "page_cache_over_consumption": warm, "storage_bound": storage_bound}
    check.ok = warm >= 1.0
    check.detail = (f"{case.label}: read per batch {result['clips_per_second_page_cache']:.0f} clips/s (page "
                    f"cache, {result['threads']} threads), "
                    f"{describe_cold_read(result)}, resident "
                    f"{result['clips_per_second_resident'] or 0:.0f}; the smallest configuration consumes "
                    f"{consumption:.0f} clips/s ({warm:.1f}x from the page cache"
                    + (f"; {cold / consumption:.1f}x from this box's storage, whose pace a dataset larger than "
                       "its RAM trains at" if storage_bound else "") + ")")


# ------------------------------------------------------------------------------------------------


class NoData(Exception):
    """The functional checks' synthetic dataset could not be generated."""


class DeadlineReached(Exception):
    """A check's grid was stopped because `--deadline` came: the check was not run to the end, which
    says nothing of what it checks (a cold compile on a new box can take minutes)."""


CHECKS = {
    "C1": "tiny grid on CUDA, resident data, bf16", "C2": "read per batch, fp16 + loss scaling, pinned",
    "C3": "--workers 2 with CUDA_VISIBLE_DEVICES=<one GPU>", "C4": "torch.compile on",
    "C5": "3+ configurations compiled in one process",
    "C6": "folds: the gradients of the modules as written", "P1": "training throughput and GPU busy",
    "P2": "peak memory at the largest configuration", "P3": "free-memory rule after a run",
    "P4": "reading per batch at 16 kHz vs consumption"}
"""The checks, by id (`--only` names them), in the order the report lists them."""

NEEDS_SECONDS = {"C1": 45, "C2": 45, "C3": 60, "C6": 90, "P1": 120, "P2": 20, "P3": 5, "P4": 30, "C4": 120}
"""Seconds a check needs at least, roughly (C4 with C5: three compilations): one that would start with
less of the deadline left is not run, rather than cut short by it."""

DEFAULT_DEADLINE = 600
"""Seconds the whole check may take by default: the checks are sized for about five minutes on one GPU,
and a first compilation on a new box (C4) can take several."""


def run_checks(out: Path, batch: int, shared_runs: int, keep: bool = False, only: set[str] | None = None,
               peak: float | None = None, deadline: float | None = DEFAULT_DEADLINE) -> int:
    """Run the checks (`only` some of them), writing `out` after each; returns the exit status: 1 where a
    check failed or was not run for the deadline (`deadline` seconds for all, None for no limit)."""
    import torch

    from bench.core.store import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    cleared = clear_switches(os.environ)
    if cleared:
        print(f"not used by the checks: {', '.join(cleared)} (they judge the default execution path)")
    one_process = exclusive_gpus()
    alone = (f"GPU {', '.join(one_process)} lets one process at a time use it" if one_process else None)
    if alone:
        print(f"note: {alone}: C3 and P1's runs at once do not apply (a grid gives such a GPU one worker), and "
              "C4/C5 run before the checks that measure in this process", flush=True)
    others = others_on_cuda_device(0)  # before any check: a job sharing the GPU is in every figure
    note = sharing_note(others)
    if note:
        print(f"warning: {note}", flush=True)
    limit = Deadline(deadline)
    root = Path(tempfile.mkdtemp(prefix="bench-gpu-check-"))
    ws = Workspace(root, deadline=limit)
    checks = {k: Check(k, t) for k, t in CHECKS.items()}
    started = time.perf_counter()
    rows: dict = {}
    not_run: list[str] = []
    not_applicable: list[str] = []

    def report() -> dict:  # numbers may hold numpy or torch values: as text where JSON has no type for them
        checks_run = [c.as_dict() for c in checks.values()]
        return json.loads(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                      "targets": TARGETS, "deadline_seconds": deadline,
                                      "seconds": time.perf_counter() - started, "not_run": not_run,
                                      "not_applicable": not_applicable,
                                      "others_on_gpu": others,
                                      "checks": checks_run}, default=str))

    @functools.cache
    def data() -> None:
        """The synthetic dataset of C1-C4, generated once, by the first of them to run. An error here
        (a box without soundfile) fails the functional checks; the performance checks still run."""
        from bench.data.synthetic import generate

        generate(ws.data, clips=48, seed=0, clip_seconds=3.0, progress=False)

    def attempt(ids: tuple[str, ...], fn: Callable[[], object], functional: bool = False) -> None:
        if only and not set(ids) & only:
            return
        left = limit.left()
        if left < NEEDS_SECONDS[ids[0]]:
            for key in ids:
                checks[key].detail = (f"not run: {max(0.0, left):.0f} s of the {deadline:.0f} s deadline left, "
                                      f"it needs about {NEEDS_SECONDS[ids[0]]} s")
                not_run.append(key)
        else:
            try:
                if functional:
                    try:
                        data()
                    except Exception as exc:
                        raise NoData(f"synthetic data not generated: {type(exc).__name__}: {exc}") from exc
                fn()
            except DeadlineReached as exc:
                for key in ids:
                    checks[key].ok, checks[key].detail = None, str(exc)
                    not_run.append(key)
            except Exception as exc:  # a check that crashes is a failed check, and the next one still runs
                text = str(exc) if isinstance(exc, NoData) else f"{type(exc).__name__}: {exc}"
                for key in ids:
                    checks[key].ok = False
                    checks[key].detail = " ".join(text.split())[:300]
            except BaseException as exc:  # stopped (SIGTERM, Ctrl-C): the report says where, then it stops
                why = f"exit status {exc.code}" if isinstance(exc, SystemExit) else type(exc).__name__
                for key in ids:
                    checks[key].ok = False
                    checks[key].detail = f"stopped during this check ({why})"
                    print(checks[key].line(), flush=True)
                atomic_write_json(out, report())
                raise
        for key in ids:
            print(checks[key].line(), flush=True)
        # after every check: a check run killed part-way (a job's time limit) keeps what was measured
        atomic_write_json(out, report())

    def compile_checks() -> None:
        attempt(("C4", "C5"), lambda: check_compile(ws, checks["C4"], checks["C5"]), functional=True)

    try:
        with cleaned_up():
            attempt(("C1",), lambda: check_resident_bf16(ws, checks["C1"]), functional=True)
            attempt(("C2",), lambda: check_read_fp16(ws, checks["C2"]), functional=True)
            if alone:
                if not only or "C3" in only:
                    checks["C3"].detail = f"not applicable: {alone}; a second worker on it could not start CUDA"
                    not_applicable.append("C3")
                    print(checks["C3"].line(), flush=True)
                compile_checks()  # the grids' processes first: once this process measures on the GPU it holds it
            else:
                attempt(("C3",), lambda: check_two_workers_one_gpu(ws, checks["C3"]), functional=True)
            attempt(("C6",), lambda: check_folds(checks["C6"]))
            attempt(("P1",), lambda: rows.update(check_throughput(checks["P1"], batch, shared_runs, peak, limit,
                                                                  alone)))
            attempt(("P2",), lambda: check_memory(checks["P2"], batch))
            attempt(("P3",), lambda: check_free_memory_rule(checks["P3"]))
            attempt(("P4",), lambda: check_reading(checks["P4"], batch, smallest_consumption(rows, batch)))
            if not alone:
                # compilation last: the slowest and least predictable, a time limit reached there keeps
                # P1-P4; its grid gets back the memory P1-P3 left in this process's allocator cache
                torch.cuda.empty_cache()
                compile_checks()
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    final = report()
    atomic_write_json(out, final)
    ran = [c for c in checks.values() if c.ok is not None]
    failed = [c.id for c in ran if not c.ok]
    print(f"{len(ran) - len(failed)}/{len(ran)} checks passed in {final['seconds']:.0f} s on {final['device']}"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}"
          f"{'; not run for the deadline: ' + ', '.join(not_run) if not_run else ''}"
          f"{'; not applicable: ' + ', '.join(not_applicable) if not_applicable else ''}; {out}")
    if keep:
        print(f"scratch folder kept: {root} (data, specs, run folders)")
    return 1 if failed or not_run else 0


def report_unusable_cuda(out: Path, reason: str) -> int:
    """A GPU box whose GPUs this process cannot use (an old driver, a CPU-only torch, a selection that
    hides them): one FAIL line and the JSON, exit status 1."""
    import torch

    from bench.core.store import atomic_write_json

    check = Check("CUDA", "CUDA usable on this machine's GPUs", False, reason)
    print(check.line())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"device": None, "torch": torch.__version__, "targets": TARGETS, "not_run": [],
                            "checks": [check.as_dict()]})
    print(f"0/1 checks passed; failed: CUDA; {out}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/gpu-check.json", help="JSON report (default %(default)s)")
    parser.add_argument("--batch", type=int, default=32,
                        help="batch of the performance checks (the shipped specs': 32; the paper gives none)")
    parser.add_argument("--shared-runs", type=int, default=3, help="runs at once for the shared-GPU busy check")
    parser.add_argument("--only", help="comma-separated check ids, e.g. C1,P1")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data, results, logs)")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE,
                        help="seconds for all the checks (default %(default)s; 0 for no limit): a check "
                             "that would start with less left than it needs is not run, and the exit "
                             "status is 1")
    parser.add_argument("--bf16-peak-tflops", type=float,
                        help="the GPU's dense bf16 peak from its datasheet, for a GPU not in the built-in table")
    args = parser.parse_args(argv)
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()} if args.only is not None else None
    if only is not None and not (only and only <= CHECKS.keys()):  # a typo would check nothing and pass
        unknown = ", ".join(sorted(only - CHECKS.keys()))
        parser.error(f"argument --only: {f'unknown check id(s): {unknown}' if unknown else 'names no check'} "
                     f"(the checks: {', '.join(CHECKS)})")
    for name, value in (("--batch", args.batch), ("--shared-runs", args.shared_runs)):
        if value < 1:
            parser.error(f"argument {name}: must be 1 or more, got {value}")
    if not args.deadline >= 0:  # on a machine without CUDA too: the same command line fails on the GPU box
        parser.error(f"argument --deadline: must be 0 (no limit) or more seconds, got {args.deadline:g}")
    peak = args.bf16_peak_tflops
    if peak is not None and not 0 < peak < float("inf"):  # 0 would read the table, a negative give -13 %
        parser.error(f"argument --bf16-peak-tflops: must be a positive number, got {peak:g}")
    import torch

    if not torch.cuda.is_available():
        from bench.train.devices import why_no_cuda

        reason = why_no_cuda()
        if reason:  # a GPU box on which nothing could run on its GPUs: a failure, not a machine without CUDA
            return report_unusable_cuda(Path(args.out), reason)
        print("no CUDA device: nothing checked")
        return 0
    try:
        return run_checks(Path(args.out), args.batch, args.shared_runs, args.keep, only, args.bf16_peak_tflops,
                          args.deadline or None)
    except KeyboardInterrupt:  # the grids it started are killed; the JSON names the check it stopped in
        print(f"gpu-check: interrupted; what was measured is in {args.out}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
