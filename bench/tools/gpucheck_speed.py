"""`make gpu-check`'s performance checks P1-P4 (`bench.tools.gpucheck`): the paper's networks timed on
random batches at the shipped specs' batch size, the memory they take, the free-memory rule after a run
and the data path against what the smallest configuration consumes."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.core.errors import exit_description
from bench.tools.busy import busy_fraction
from bench.tools.gpucheck_common import TARGETS, Check, Deadline, DeadlineReached, paper_spec_path
from bench.tools.peaks import bf16_peak_tflops
from bench.tools.process_groups import LIVE, communicate_all, kill_live_of, start_group


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
            "from bench.tools.gpucheck_speed import _cases, training_step, barrier; "
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
    check.numbers = {"free_bytes": free, "cached_bytes": cached, "total_bytes": total}
    if cached <= 0:  # the rule's point, counting the cache as free, cannot be seen: not proved
        off = os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING")
        why = f"PYTORCH_NO_CUDA_MEMORY_CACHING={off} turns its caching off" if off else "its caching is off"
        check.ok = False
        check.detail = (f"PyTorch's allocator kept nothing of a block allocated and freed ({why}): the rule "
                        "that counts its cache as free memory could not be checked")
        return
    # what the GPU holds beside this process's allocator: its CUDA context (and any other process's
    # memory), which the runs-per-GPU choice allows CUDA_CONTEXT_BYTES for
    outside = total - free - reserved
    limit = RESIDENT_FRACTION * min(free + cached, total)
    fits, too_big = int(limit) - 2**20, int(limit) + 2**22
    check.numbers.update({"probe_bytes": fits, "refused_probe_bytes": too_big, "outside_allocator_bytes": outside,
                          "context_allowance_bytes": CUDA_CONTEXT_BYTES})
    check.ok = (fits > RESIDENT_FRACTION * free and resident_fits(fits, device)
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

