"""`bench perf`: how fast the suite trains on this device, measured in one process.

For a selection of a spec's configurations it measures, with the same data and the same clock:

- training-step throughput (clips/s) and achieved GFLOP/s = 6 x MACs x batch / step time (one MAC
  is two flops, and a training step costs about three forward passes) for the plain fp32 eager
  baseline, for each lever of the fast path alone, and for the fast path the suite chooses;
- the device's conv peak on the same shapes: every convolution of the network, captured with its
  input shape, timed alone (forward + both backward products; the convolutions whose input
  gradient the network does not compute, those of its input BatchNorm's output, forward + weight
  gradient) in the fastest layout and precision the device offers; the fraction of that peak the
  fast path reaches;
- the mel front end per clip against librosa on the same clips, and as a share of a training step;
- the data path (cache -> batches on the device) against the model's consumption at the smallest
  configuration, with the file in the page cache and evicted from it;
- evaluation throughput (no autograd, larger batches) and peak memory;
- step time against GMAC across the grid (a linear fit: where does cost stop following GMAC?) and a
  projection of the whole spec's device-hours from these measurements.

Timings are medians of steps after a warm-up step (the warm-up includes `torch.compile`'s compile
time, reported apart). Each measurement has a time budget, so a slow lever costs one step, not ten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import nn

from architectures.musicnn import conv1d_over_bands
from bench.core.errors import UserError, is_out_of_memory
from bench.core.machine import can_reuse_freed_memory
from bench.core.store import atomic_write_json
from bench.cost.plan import amount, hours_unit
from bench.data.known import split_sizes, unknown_split_why
from bench.run.gpus import others_on_cuda_device, sharing_note
from bench.run.grid import CUDA_CONTEXT_BYTES, auto_runs_per_gpu
from bench.spec import Spec
from bench.tools.busy import busy_fraction
from bench.tools.cases import Case, select_cases, spec_cases
from bench.tools.input_path import (
    consumption_clips_per_second,
    describe_cold_read,
    frontend_seconds,
    measure_data_path,
    measure_frontend,
)
from bench.tools.peaks import (
    HEADLINE_FRACTION_OF_BF16_PEAK,
    PROJECTED_FRACTION_OF_BF16_PEAK,
    bf16_peak_tflops,
    hours_at_peak,
)
from bench.tools.projection import (
    linear_fit,
    measured_or_interpolated,
    measured_or_mean,
    project,
    projected_fraction,
    shared_run_fraction,
)
from bench.tools.timing import PerfSettings, peak_memory_mb, reset_peak_memory, time_calls
from bench.train.fastpath import (
    FastPath,
    baseline,
    check_environment,
    compile_backend,
    compile_blocker,
    compile_switched_off,
    eval_clips,
    fast_path,
    native_bf16,
    planned_steps,
)
from bench.train.loop import forward, make_optimizer, optimise, release_run_memory

TARGETS = {
    "fast_path_speedup": 2.5,
    "fraction_of_conv_peak": 0.60,
    "frontend_share_max": 0.05,
    "data_path_over_consumption": 3.0,
}
"""The targets of `bench perf` on a CPU (README, "Performance"), as ratios measured in one run. On a
GPU the first two are replaced by shares of its bf16 dense peak (`bench.tools.peaks`): a GPU's fp32
baseline and conv peak are not what its tensor cores can do."""


DEFAULT_EPOCHS = 30.0
"""Epochs per run the projection assumes unless told: the protocol stops early (patience 10 of at
most 100 epochs in the shipped paper specs), and the paper reports no epoch counts."""


# ----------------------------------------------------------------------------------------------
# training steps


def _batch(case: Case, batch: int, device: torch.device, seed: int = 0):
    """A random (B, n_mels, input_frames) log-mel-like batch and multi-hot targets."""
    g = torch.Generator().manual_seed(seed)
    model_frames = case.build(torch.device("meta")).input_frames
    mel = torch.rand(batch, case.configuration.mel.n_mels, model_frames, generator=g) * 3.0
    target = (torch.rand(batch, case.n_tags, generator=g) < 0.1).float()
    return mel.to(device), target.to(device)


def measure_training(case: Case, path: FastPath, device: torch.device, settings: PerfSettings, warm: bool = False,
                     busy: bool = False, **module_options) -> dict:
    """Training-step time of `case` executed as `path` says (random data, a real optimiser step). A
    warm-up slower than the budget is the measurement (`steps_timed` 0) unless `warm`: then at least one
    step after it is timed. With `busy` (CUDA), also `busy_fraction`: the share of the wall time of as
    many steps again, at least 3, in which a kernel ran (`bench.tools.busy`)."""
    torch.manual_seed(0)
    model = path.prepare_model(case.build(device, **module_options))
    model.train()
    optimizer = make_optimizer(model, path, lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=path.torch_amp_dtype == torch.float16)
    loss_fn = nn.BCEWithLogitsLoss()
    mel, target = _batch(case, settings.batch, device)

    def step():
        optimise(loss_fn(forward(model, path, mel), target), optimizer, scaler)

    counted_from_here = reset_peak_memory(device)
    timing = time_calls(step, device, settings.budget_seconds, settings.max_steps,
                        warmup_may_count=not path.compile and not warm, warmups=2 if path.cuda_graphs else 1)
    macs = model.analytic_macs()
    result = _throughput(timing, settings.batch, macs, training=True)
    result["peak_memory_mb"] = peak_memory_mb(device) if counted_from_here else None
    result["compile_seconds"] = max(0.0, timing["first_seconds"] - timing["seconds"]) if path.compile else 0.0
    if busy:
        result["busy_fraction"] = busy_fraction(step, max(3, timing["calls"]))[0]
    return result


FRESH_PROCESS_LEVERS = ("+ cudnn.benchmark",)
"""Levers timed in a process of their own. cuDNN keeps the plan it chose for a convolution by shape,
dtype, layout and TF32 setting, not by `cudnn.benchmark` (torch's Conv_v8.cpp `CacheKeyWrapper`): after
the fp32 rows before it, the flag would find their heuristic plans and never autotune, and its row would
time the baseline again."""


def measure_training_fresh(case: Case, path: FastPath, device: torch.device, settings: PerfSettings,
                           **module_options) -> dict:
    """`measure_training` in a new process (spawned: a CUDA context does not survive a fork), whose cuDNN
    plan caches are empty; `fresh_process` says so in its row."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        measured = pool.submit(measure_training, case, path, device, settings, **module_options).result()
    return {**measured, "fresh_process": True}


def runs_at_once_here(spec: Spec, device: torch.device, compiled: bool) -> tuple[int, str]:
    """The runs a grid of `spec` would place on this GPU at once (`auto_runs_per_gpu`), after the
    measurements: what this process still holds there (its allocator's cache, its CUDA context, which
    the free-memory probe, a process of its own, sees as used) is counted free, as a grid's probe finds it."""
    release_run_memory(device, compiled)
    held = torch.cuda.memory_reserved(device) + CUDA_CONTEXT_BYTES
    return auto_runs_per_gpu(spec, spec.runs(), Path(tempfile.gettempdir()) / "bench-perf-no-results",
                             held_here=held)


def _throughput(timing: dict, batch: int, macs_per_input: int, training: bool) -> dict:
    flops = (6 if training else 2) * macs_per_input * batch
    return {"step_seconds": timing["seconds"], "first_step_seconds": timing["first_seconds"],
            "steps_timed": timing["calls"], "inputs_per_second": batch / timing["seconds"],
            "gflops": flops / timing["seconds"] / 1e9}


def _eval_model(case: Case, path: FastPath, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return path.prepare_model(case.build(device)).eval()


def _time_forward(model: nn.Module, case: Case, path: FastPath, device: torch.device, settings: PerfSettings,
                  batch: int, grad: bool) -> dict:
    """Forward passes of `model` on a random batch of `batch` inputs, with or without autograd."""
    mel, _ = _batch(case, batch, device)
    with torch.set_grad_enabled(grad):
        timing = time_calls(lambda: forward(model, path, mel), device, settings.budget_seconds / 2, settings.max_steps)
    result = _throughput(timing, batch, model.analytic_macs(), training=False)
    result["seconds_per_input"] = timing["seconds"] / batch
    return result


def eval_batch(case: Case, path: FastPath, batch: int) -> int:
    """The evaluation batch of a run of `case` at training batch `batch` (`eval_batch_size`): the fast
    path's factor, fewer clips where a tensor would pass 32-bit indexing."""
    return eval_clips(case.configuration.arch, case.input_config, case.n_tags,
                      dataclasses.asdict(case.configuration.options), batch * path.eval_batch_factor)


def measure_forward(case: Case, path: FastPath, device: torch.device, settings: PerfSettings) -> dict:
    """Evaluation as a run does it: no autograd, at the fast path's evaluation batch of clips, each clip
    every one of its segments (`Trainer.predict` passes a batch's segments at once)."""
    return _time_forward(_eval_model(case, path, device), case, path, device, settings,
                         eval_batch(case, path, settings.batch) * case.segments, grad=False)


def measure_eval(case: Case, path: FastPath, device: torch.device, settings: PerfSettings) -> dict:
    """Forward passes in eval mode: autograd on at the training batch (baseline) vs none at the
    fast path's larger evaluation batch (of clips; the inputs are their segments, as in `measure_forward`)."""
    model = _eval_model(case, path, device)
    factor = path.eval_batch_factor
    return {"autograd, training batch": _time_forward(model, case, path, device, settings,
                                                      settings.batch * case.segments, True),
            f"no autograd, {factor}x batch": _time_forward(model, case, path, device, settings,
                                                           eval_batch(case, path, settings.batch) * case.segments,
                                                           False)}


# ----------------------------------------------------------------------------------------------
# the device's convolution peak on the network's own shapes


def _conv_inputs(model: nn.Module, mel: torch.Tensor, path: FastPath) -> list[tuple[nn.Module, torch.Size]]:
    """Each convolution module of the network and its input's shape, in a forward pass of `mel` with
    the modules as written (MusiCNN's CPU arrangement, which calls its timbral filters' weights
    through functions that module hooks do not see, off)."""
    seen: list[tuple[nn.Module, torch.Size]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0].shape)))
             for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    rearrange = getattr(model, "rearrange", None)
    try:
        if rearrange is not None:
            model.rearrange = False
        with torch.no_grad():
            forward(model, path, mel)
    finally:
        for hook in hooks:
            hook.remove()
        if rearrange is not None:
            model.rearrange = rearrange
    return seen


def conv_macs(conv: nn.Module, input_shape: torch.Size) -> int:
    """Multiply-adds of one convolution on a batch: output elements x (C_in / groups) x kernel size."""
    with torch.device("meta"):
        out = conv.to("meta")(torch.empty(input_shape))
    return out.numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


def conv_variants(device: torch.device) -> list[tuple[torch.dtype, bool]]:
    """(dtype, channels_last) candidates for the conv peak: fp32 always, bf16 where it is native."""
    variants = [(torch.float32, False), (torch.float32, True)]
    if native_bf16(device):
        variants += [(torch.bfloat16, False), (torch.bfloat16, True)]
    return variants


def measure_conv_peak(case: Case, device: torch.device, settings: PerfSettings) -> dict:
    """Every conv of the network timed alone, forward + input and weight gradients, best variant; those
    of the input BatchNorm's output without their input gradient where the network computes none
    (`fold_input_bn`). The total GFLOP/s counts 3 products per MAC, as a training step's does; a
    layer's, the products it ran."""
    model = case.build(device)
    path = baseline(device)
    mel, _ = _batch(case, settings.batch, device)
    # MusiCNN's timbral filters, which a training step on the CPU computes as 1-D convolutions over
    # frequency: timed both ways, as written and so arranged (the same multiply-adds)
    rearranged = model.rearranged_convs(device) if hasattr(model, "rearranged_convs") else []
    layers = []
    for conv, shape in _conv_inputs(model, mel, path):
        # the convolutions of the one-channel input BatchNorm's output (VGG's first, MusiCNN's front end)
        input_gradient = not (getattr(model, "fold_input_bn", False) and conv.in_channels == 1)
        macs = conv_macs(conv, shape)
        arrangements = [("as written", conv, shape)]
        if any(conv is other for other in rearranged):
            arrangements.append(("1-D over bands", *conv1d_over_bands(conv, shape)))
        best = None
        for arrangement, layer_conv, layer_shape in arrangements:
            for dtype, channels_last in conv_variants(device):
                if channels_last and len(layer_shape) != 4:
                    continue
                seconds = _time_conv(layer_conv, layer_shape, input_gradient, device, dtype, channels_last, settings)
                if best is None or seconds < best["seconds"]:
                    best = {"seconds": seconds, "dtype": str(dtype).replace("torch.", ""),
                            "channels_last": channels_last, "arrangement": arrangement}
        layers.append({"input_shape": list(shape), "out_channels": conv.out_channels,
                       "kernel": list(conv.kernel_size), "macs": macs, **best, "input_gradient": input_gradient,
                       "gflops": (6 if input_gradient else 4) * macs / best["seconds"] / 1e9})
    total_seconds = sum(layer["seconds"] for layer in layers)
    total_macs = sum(layer["macs"] for layer in layers)
    return {"gflops": 6 * total_macs / total_seconds / 1e9, "seconds": total_seconds,
            "conv_macs_per_input": total_macs // settings.batch, "layers": layers}


def _time_conv(conv: nn.Module, shape, input_gradient: bool, device: torch.device, dtype: torch.dtype,
               channels_last: bool, settings: PerfSettings) -> float:
    """Seconds of one forward and backward pass of a copy of `conv` on an input of `shape`."""
    layer = _copy_conv(conv, device, dtype, channels_last)
    x = torch.randn(shape, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(input_gradient)
    with torch.no_grad():  # made once: in a step the output's gradient comes from the layers above
        upstream = torch.ones_like(layer(x))

    def fwd_bwd():
        x.grad = None  # a step's gradients are new, not added to earlier ones
        layer.zero_grad(set_to_none=True)
        layer(x).backward(upstream)

    return time_calls(fwd_bwd, device, settings.budget_seconds / 8, 3)["seconds"]


def _copy_conv(conv: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    layer = type(conv)(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                       bias=conv.bias is not None).to(device=device, dtype=dtype)
    return layer.to(memory_format=torch.channels_last) if channels_last else layer


# ----------------------------------------------------------------------------------------------
# levers, scaling, projection


FUSED_ROW = "+ block 1 conv+pool fused"
"""The row of VGG's compiled fast path with block 1's convolution and max-pool as one computation
(`fuse_block1_pool`, off by default until a GPU has measured it), measured where the chosen fast path
compiles."""


def levers(device: torch.device, compile_lever: bool, arch: str) -> list[tuple[str, FastPath, dict]]:
    """(name, execution settings, module options) of the baseline and of each lever alone (the module
    levers included, VGG's three and the others' one: the other levers are measured on top of them, as
    the suite runs)."""
    base = baseline(device)
    amp = "bfloat16" if device.type == "cpu" or native_bf16(device) else "float16"
    if arch == "vgg":
        textbook = {"pool_before_elu": False, "fold_input_bn": False, "fold_block1_bn": False}
        rows = [("fp32 eager (baseline)", base, textbook),
                ("pool before ELU", base, {**textbook, "pool_before_elu": True}),
                ("conv 1: no input gradient", base, {**textbook, "fold_input_bn": True}),
                ("block 1: BatchNorm in conv 1", base, {**textbook, "fold_block1_bn": True})]
    elif arch in ("musicnn", "musicnn-787k", "vgg-605k"):  # MusiCNN's front end, vgg-605k's first conv
        rows = [("fp32 eager (baseline)", base, {"fold_input_bn": False}),
                ("front: no input gradient", base, {"fold_input_bn": True})]
    else:
        rows = [("fp32 eager (baseline)", base, {})]
    rows += [
        ("+ channels_last", dataclasses.replace(base, channels_last=True), {}),
        (f"+ {amp} autocast", dataclasses.replace(base, amp_dtype=amp), {}),
    ]
    if device.type == "cuda":
        rows.append(("+ cudnn.benchmark", dataclasses.replace(base, cudnn_benchmark=True), {}))
    if compile_lever:
        rows.append(("+ torch.compile", base.compiling(True), {}))
    # last: turning it off again leaves glibc's allocator unlike a fresh process's; not where it cannot be set
    if device.type == "cpu" and can_reuse_freed_memory():
        rows.append(("+ host memory reused", dataclasses.replace(base, reuse_host_memory=True), {}))
    return rows


# ----------------------------------------------------------------------------------------------
# the whole benchmark


def default_batch(spec: Spec, device: torch.device) -> int:
    """The batch measured without `--batch`: the spec's on CUDA, 8 on the CPU (a few steps in budget)."""
    return spec.protocol.batch_size if device.type == "cuda" else 8


def run_perf(spec: Spec, device: torch.device, settings: PerfSettings, log: Callable = print,
             save: Callable[[dict], None] = lambda report: None) -> dict:
    """The report of `bench perf`; `save` is given it as it stands after each section (a run stopped
    part-way, e.g. by a GPU job's time limit, keeps what it measured)."""
    if settings.batch is None:
        settings = dataclasses.replace(settings, batch=default_batch(spec, device))
    if settings.epochs is None:
        settings = dataclasses.replace(settings, epochs=min(DEFAULT_EPOCHS, spec.protocol.max_epochs))
    all_cases = spec_cases(spec)
    headline, smallest, scaling = select_cases(all_cases, settings.scaling_cases)
    compile_lever = settings.compile and not compile_switched_off() and compile_blocker(device) is None
    report: dict = {
        "spec": spec.name, "dataset": spec.dataset.name, "device": device.type, "device_name": _device_name(device),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform(),
        "settings": dataclasses.asdict(settings), "headline": headline.label, "smallest": smallest.label,
    }
    if device.type == "cuda":
        report["bf16_peak_tflops"] = settings.bf16_peak_tflops or bf16_peak_tflops(report["device_name"])
        report["others_on_gpu"] = others_on_cuda_device(device.index or 0)
        note = sharing_note(report["others_on_gpu"])
        if note:  # every step time below includes that job's load
            log(f"warning: {note}")

    log(f"levers at {headline.label}, batch {settings.batch}")
    lever_rows = []
    measured_as = {}
    for name, path, options in levers(device, compile_lever, headline.configuration.arch):
        measure = measure_training_fresh if name in FRESH_PROCESS_LEVERS else measure_training
        measured = measure(headline, path, device, settings, **options)
        if not lever_rows and measured["steps_timed"] == 0:
            # the targets' denominator: a warm step, never the cold first one (timed before any lever
            # changes the process: the host-memory lever cannot be undone as if it had never been on)
            measured.update(measure_training(headline, path, device, settings, warm=True, **options))
        lever_rows.append({"lever": name, "settings": path.as_dict(), "module_options": options, **measured})
        measured_as[name] = (path, options)
        log(f"  {name:28s} {measured['step_seconds']:8.3f} s/step")
    base = lever_rows[0]
    for row in lever_rows:
        row["speedup"] = base["step_seconds"] / row["step_seconds"]
    report["levers"] = lever_rows

    steps = _planned_steps(spec)
    chosen = fast_path(device, "auto", planned_steps=steps, arch=headline.configuration.arch)
    if steps is None and not chosen.compile:
        why = unknown_split_why(spec.dataset)
        log(f"note: the train split's size is not known before reading the dataset ({why}): the fast path is "
            "timed as a grid's run of unknown length takes it (not compiled; BENCH_COMPILE=1 compiles it)")
    if chosen.compile and not settings.compile:  # --no-compile: nothing is compiled
        chosen = dataclasses.replace(chosen.compiling(False), compile_note="torch.compile off: bench perf --no-compile")
    report["fast_path"] = chosen.as_dict()
    fast = _matching_lever(lever_rows, chosen)
    if fast is None:
        fast = _extra_row("fast path", headline, chosen, device, settings, base, log, warm=True)
        lever_rows.append(fast)
    elif fast["steps_timed"] == 0 and not chosen.compile:  # as the baseline: warm
        path, options = measured_as[fast["lever"]]
        fast.update(measure_training(headline, path, device, settings, warm=True, **options))
        fast["speedup"] = base["step_seconds"] / fast["step_seconds"]
    report["fast"] = fast
    log(f"fast path: {fast['lever']} ({fast['speedup']:.2f}x the baseline)")
    if compile_lever and not chosen.compile:  # the choice not to compile, measured too
        lever_rows.append(_extra_row("fast path + torch.compile", headline,
                                     chosen.compiling(True), device, settings, base, log))
    if chosen.compile and headline.configuration.arch == "vgg":  # a switch of compiled training alone
        lever_rows.append(_extra_row(FUSED_ROW, headline, chosen, device, settings, base, log, warm=True,
                                     fuse_block1_pool=True))

    if settings.compile_modes:
        save(report)
        report["compile_modes"] = measure_compile_modes((headline, smallest), chosen, device, settings, log)

    save(report)
    log("conv peak on the same shapes")
    peak = measure_conv_peak(headline, device, settings)
    report["conv_peak"] = peak
    report["fraction_of_conv_peak"] = fast["gflops"] / peak["gflops"]

    save(report)
    log("front end")
    report["frontend"] = {"headline": measure_frontend(headline, device, settings, fast["step_seconds"])}

    save(report)
    # on a GPU the rows are compiled where the grid's runs would be (minutes of compilation on a CPU,
    # for a step the levers table already times compiled at the headline)
    compiled = chosen.compile and device.type == "cuda"
    how = "compiled" if compiled else "without compile"
    log(f"scaling over {len(scaling)} configurations (fast path {how}; training and evaluation)")
    def scaling_path(case: Case) -> FastPath:  # each architecture's own arrangement (channels_last on a CPU)
        path = fast_path(device, "auto", planned_steps=steps, arch=case.configuration.arch)
        return dataclasses.replace(path.compiling(compiled), amp_dtype=chosen.amp_dtype)

    scaling_rows = []
    for case in scaling:
        path = scaling_path(case)
        # on a GPU a first step slower than the budget is cuDNN's autotuning at a new shape (or the
        # compilation), not the step: the projection is built from these rows, so a step after it is timed
        measured = measure_training(case, path, device, settings, warm=device.type == "cuda",
                                    busy=device.type == "cuda")
        measured.setdefault("busy_fraction", None)
        evaluated = measure_forward(case, path, device, settings)
        compile_seconds = (measured["compile_seconds"]
                           + max(0.0, evaluated["first_step_seconds"] - evaluated["step_seconds"])) if compiled else 0.0
        scaling_rows.append({"case": case.label, "gmac_per_input": case.gmac_per_input, **measured,
                             "ms_per_gmac": 1000 * measured["step_seconds"] / (case.gmac_per_input * settings.batch),
                             "eval_seconds_per_input": evaluated["seconds_per_input"],
                             "run_compile_seconds": compile_seconds})
        log(f"  {case.label:28s} {case.gmac_per_input:8.4g} GMAC  {measured['step_seconds']:8.3f} s/step  "
            f"{1000 * evaluated['seconds_per_input']:8.2f} ms/input eval")
    fit = linear_fit([r["gmac_per_input"] * settings.batch for r in scaling_rows],
                     [r["step_seconds"] for r in scaling_rows])
    eval_fit = linear_fit([r["gmac_per_input"] for r in scaling_rows],
                          [r["eval_seconds_per_input"] for r in scaling_rows])
    report["scaling"] = {"rows": scaling_rows, "fit": fit, "eval_fit": eval_fit, "compiled": compiled}

    small = next((r for c, r in zip(scaling, scaling_rows, strict=True) if c is smallest), None)
    if small is None:
        small = measure_training(smallest, scaling_path(smallest), device, settings)
    small_step = small["step_seconds"]
    small_frontend = measure_frontend(smallest, device, dataclasses.replace(settings, librosa=False), small_step)
    report["frontend"]["smallest"] = small_frontend
    consumption = consumption_clips_per_second(small_step, small_frontend["training_ms_per_clip"], settings.batch)
    save(report)
    log("data path")
    report["data_path"] = measure_data_path(smallest, device, settings, consumption)

    save(report)
    log("evaluation")
    report["eval"] = measure_eval(headline, chosen, device, settings)

    step_seconds = measured_or_interpolated(scaling, scaling_rows, "step_seconds")
    eval_seconds = measured_or_interpolated(scaling, scaling_rows, "eval_seconds_per_input")
    compile_seconds = measured_or_mean(scaling, scaling_rows, "run_compile_seconds")  # not in proportion to GMAC

    save(report)
    projection = report["projection_shared"] = None
    report["no_projection"] = unknown_split_why(spec.dataset) or None
    if report["no_projection"]:  # a projection needs the splits' sizes
        log(f"no projection of device-hours: {report['no_projection']} (bench plan counts its GMAC)")
    else:
        mel_seconds = _projection_frontends(all_cases, device, settings, report, log)

        def mel_per_clip(case: Case) -> float:
            return mel_seconds[case.configuration.mel.sample_rate, case.configuration.mel.hop_multiplier]

        projection = project(spec, all_cases, step_seconds, settings.batch, settings.epochs, eval_seconds,
                             mel_per_clip, compile_seconds if compiled else None)
        if all(r.get("busy_fraction") is not None for r in scaling_rows):  # measured on CUDA
            k, why = runs_at_once_here(spec, device, compiled)
            busy = measured_or_interpolated(scaling, scaling_rows, "busy_fraction")

            def share(case: Case) -> float:
                return shared_run_fraction(busy(case), k)

            shared = project(spec, all_cases, step_seconds, settings.batch, settings.epochs, eval_seconds,
                             mel_per_clip, compile_seconds if compiled else None, share=share, runs_at_once=k)
            report["projection_shared"] = {"runs_at_once": k, "why": why, "device_hours": shared["device_hours"],
                                           "max_epochs_hours": shared["max_epochs_hours"],
                                           "per_config": shared["per_config"]}
    if projection:
        projection["assumptions"]["steps"] = (
            "compiled, as the grid compiles runs of 5,000 steps or more; each run's compilation (its training "
            "and evaluation graphs) counted" if compiled else
            "eager: the grid compiles runs of 5,000 steps or more where a compiler exists (the levers table "
            "times the compiled headline)")
        projection["assumptions"]["device_name"] = report["device_name"]
        projection["runs_fingerprint"] = spec.runs_fingerprint()
    report["projection"] = projection
    report["targets"] = _targets(report)
    return report


def _projection_frontends(cases: list[Case], device: torch.device, settings: PerfSettings, report: dict,
                          log: Callable) -> dict[tuple[int, int], float]:
    """Seconds of the mel of one whole clip by (sample rate, hop multiplier), for the projection: the
    mel's cost depends on the rate, the hop and the bands, not on the network, so it is measured once
    per rate and hop, at the most bands the spec gives them (an upper bound for fewer); recorded in
    `report["frontend"]["per_clip_ms"]`."""
    widest: dict[tuple[int, int], Case] = {}
    for case in cases:
        m = case.configuration.mel
        key = (m.sample_rate, m.hop_multiplier)
        if key not in widest or m.n_mels > widest[key].configuration.mel.n_mels:
            widest[key] = case
    log(f"front end at {len(widest)} sample rate and hop pair(s), for the projection")
    seconds = {key: frontend_seconds(case.configuration.mel, case.clip_seconds, device, settings) / settings.batch
               for key, case in widest.items()}
    report["frontend"]["per_clip_ms"] = [{"sample_rate": sr, "hop_multiplier": hop,
                                          "n_mels": widest[sr, hop].configuration.mel.n_mels, "ms_per_clip": 1000 * s}
                                         for (sr, hop), s in sorted(seconds.items())]
    return seconds


def _extra_row(name: str, case: Case, path: FastPath, device: torch.device, settings: PerfSettings,
               base: dict, log: Callable, warm: bool = False, **module_options) -> dict:
    """A training-step measurement with several levers together, in the form of a lever row."""
    row = {"lever": name, "settings": path.as_dict(), "module_options": module_options,
           **measure_training(case, path, device, settings, warm=warm, **module_options)}
    row["speedup"] = base["step_seconds"] / row["step_seconds"]
    log(f"  {name:28s} {row['step_seconds']:8.3f} s/step")
    return row


def measure_compile_modes(cases: tuple[Case, ...], chosen: FastPath, device: torch.device, settings: PerfSettings,
                          log: Callable) -> list[dict]:
    """Compiled training steps of each case under inductor's default mode and each of
    `settings.compile_modes` (the fast path otherwise), one after the other: `speedup` is over the
    default mode at the same case. Each row's `compile_seconds` is its first step's excess over the
    rest (autotuning included; it depends on what inductor's cache on disk holds already: the default
    mode's graphs of the headline are there from the levers); `cudagraph_skips`, the graphs that
    inductor compiled without CUDA graphs though the mode asked for them (torch's own count; its log
    says why). With CUDA graphs the second step, which records them, is not timed either."""
    from torch._dynamo.utils import counters

    log(f"compile modes at {', '.join(c.label for c in cases)}")
    rows = []
    for case in cases:
        default = None
        for mode in ("default", *settings.compile_modes):
            path = dataclasses.replace(chosen.compiling(True), compile_mode=mode)
            skips = counters["inductor"]["cudagraph_skips"]
            measured = measure_training(case, path, device, settings, warm=True)
            skips = counters["inductor"]["cudagraph_skips"] - skips
            release_run_memory(device, compiled=True)  # CUDA graphs' pools and the graphs go with dynamo's reset
            default = default or measured
            rows.append({"case": case.label, "mode": mode, "cuda_graphs": path.cuda_graphs, **measured,
                         "cudagraph_skips": skips if path.cuda_graphs else 0,
                         "speedup": default["step_seconds"] / measured["step_seconds"]})
            log(f"  {case.label:28s} {mode:28s} {measured['step_seconds']:8.4f} s/step "
                f"({rows[-1]['speedup']:.2f}x; compile {measured['compile_seconds']:.0f} s)")
    return rows


def check_compile_modes(modes: tuple[str, ...]) -> None:
    """`--compile-modes`: each a mode of this torch's inductor, other than "default" (always measured)."""
    from torch._inductor import list_mode_options

    known = [m for m in list_mode_options() if m != "default"]
    unknown = [m for m in modes if m not in known]
    if unknown:
        raise UserError(f"--compile-modes {','.join(unknown)}: not a torch.compile mode of this torch "
                        f"(it has {', '.join(known)}; \"default\" is always measured)")


def _planned_steps(spec: Spec) -> int | None:
    """The training steps of each of the spec's runs, as a run counts them (`planned_steps`), to choose
    the fast path as the grid's runs will; None where the train split's size is not known here."""
    sizes = split_sizes(spec.dataset)
    return None if sizes is None else planned_steps(sizes[0], spec.protocol.max_epochs, spec.protocol.batch_size)


def _matching_lever(rows: list[dict], chosen: FastPath) -> dict | None:
    """The lever row that executes a training step as the chosen fast path does (not a row that
    builds VGG's textbook module order)."""
    keys = ("amp_dtype", "channels_last", "cudnn_benchmark", "compile", "reuse_host_memory")
    for row in rows:
        if not row["module_options"] and all(row["settings"][k] == getattr(chosen, k) for k in keys):
            return row
    return None


def _targets(report: dict) -> list[dict]:
    """The targets and their values; a value None where it cannot be known (a GPU whose bf16 peak is
    not in the datasheet table and was not given): `met` is None then."""
    if report["device"] == "cuda":
        peak = report.get("bf16_peak_tflops")
        projection = report.get("projection")
        rows = [("headline step, share of bf16 peak", report["fast"]["gflops"] / 1e3 / peak if peak else None,
                 HEADLINE_FRACTION_OF_BF16_PEAK, ">=")]
        if projection:
            rows.append(("projected grid, share of bf16 peak", projected_fraction(projection, peak),
                         PROJECTED_FRACTION_OF_BF16_PEAK, ">="))
    else:
        rows = [
            ("fast path / fp32 eager baseline", report["fast"]["speedup"], TARGETS["fast_path_speedup"], ">="),
            ("fraction of the conv peak", report["fraction_of_conv_peak"], TARGETS["fraction_of_conv_peak"], ">="),
        ]
    rows += [
        ("front end share of a step", report["frontend"]["headline"]["share_of_step"],
         TARGETS["frontend_share_max"], "<="),
        ("data path / consumption (smallest)", report["data_path"]["over_consumption"],
         TARGETS["data_path_over_consumption"], ">="),
    ]
    return [{"target": name, "value": value, "goal": goal, "op": op,
             "met": None if value is None else value >= goal if op == ">=" else value <= goal}
            for name, value, goal, op in rows]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return platform.processor() or "cpu"


# ----------------------------------------------------------------------------------------------
# output


def _mb(value: float | None) -> str:
    return f"{value:9.0f}" if value is not None else f"{'-':>9s}"


def format_report(report: dict) -> str:
    lines = [f"bench perf: {report['spec']} on {report['device_name']} ({report['threads']} threads, "
             f"torch {report['torch']}), batch {report['settings']['batch']}", ""]
    lines.append(f"Training step at {report['headline']}")
    lines.append(f"  {'':28s} {'s/step':>9s} {'clips/s':>9s} {'GFLOP/s':>9s} {'speedup':>8s} {'peak MiB':>9s}")
    for row in report["levers"]:
        mark = " <- fast path" if row["lever"] == report["fast"]["lever"] else ""
        mark += " (one step)" if row["steps_timed"] == 0 else ""
        lines.append(f"  {row['lever']:28s} {row['step_seconds']:9.3f} {row['inputs_per_second']:9.2f} "
                     f"{row['gflops']:9.1f} {row['speedup']:7.2f}x {_mb(row['peak_memory_mb'])}{mark}")
        if row.get("compile_seconds"):
            lines.append(f"  {'':28s} (compile: {row['compile_seconds']:.0f} s, once per run)")
    peak = report["conv_peak"]
    if report.get("compile_modes"):
        lines += ["", "Compile modes (compiled training steps; speedup over the default mode)"]
        for row in report["compile_modes"]:
            graphs = ", CUDA graphs" if row["cuda_graphs"] else ""
            graphs += f" ({row['cudagraph_skips']} graph(s) without)" if row.get("cudagraph_skips") else ""
            lines.append(f"  {row['case']:28s} {row['mode'] + graphs:40s} {row['step_seconds']:9.4f} s/step "
                         f"{row['gflops']:9.1f} GFLOP/s {row['speedup']:6.2f}x  "
                         f"(compile {row['compile_seconds']:.0f} s)")
    lines += ["", f"Conv peak on the same shapes: {peak['gflops']:.1f} GFLOP/s "
              f"(fast path reaches {100 * report['fraction_of_conv_peak']:.0f} %)"]
    for layer in peak["layers"]:
        layout = ", channels_last" if layer["channels_last"] else ""
        layout += ", 1-D over bands" if layer.get("arrangement") == "1-D over bands" else ""
        lines.append(f"  {str(layer['input_shape']):24s} -> {layer['out_channels']:5d} ch  k{layer['kernel']}  "
                     f"{layer['gflops']:7.1f} GFLOP/s  ({layer['dtype']}{layout})")
    fe = report["frontend"]
    lines += ["", "Front end (mel + log)"]
    for name, row in fe.items():
        if name == "per_clip_ms":
            low, high = min(r["ms_per_clip"] for r in row), max(r["ms_per_clip"] for r in row)
            lines.append(f"  {'projected':9s} {low:7.2f}-{high:.2f} ms/clip over {len(row)} sample rate and hop "
                         "pair(s)")
            continue
        librosa = (f", librosa {row['librosa_ms_per_clip']:.1f} ms ({row['speedup_over_librosa']:.1f}x)"
                   if row.get("librosa_ms_per_clip") else "")
        segment = (f", one segment {row['segment_ms_per_clip']:.2f} ms/clip in training"
                   if row.get("segment_ms_per_clip") is not None else "")
        lines.append(f"  {name:9s} {row['ms_per_clip']:7.2f} ms/clip{librosa}{segment}; "
                     f"{100 * row['share_of_step']:.1f} % of a step")
    dp = report["data_path"]
    cold = ", " + describe_cold_read(dp)
    resident = (f"; resident {dp['clips_per_second_resident']:.0f} clips/s"
                if dp.get("clips_per_second_resident") else "")
    lines += ["", f"Data path at {report['smallest']}: read per batch, page cache "
              f"{dp['clips_per_second_page_cache']:.0f} clips/s{cold} ({dp['loader_over_consumption']:.1f}x)"
              f"{resident}; model consumes {dp['consumption_clips_per_second']:.1f} clips/s"]
    lines += ["", "Evaluation at " + report["headline"]]
    for name, row in report["eval"].items():
        lines.append(f"  {name:26s} {row['inputs_per_second']:9.2f} inputs/s")
    sc = report["scaling"]
    lines += ["", f"Scaling (fast path {'compiled' if sc.get('compiled') else 'without compile'}; the projection "
              "interpolates between these rows)",
              f"  {'':28s} {'GMAC/input':>10s} {'s/step':>9s} {'ms/GMAC':>9s} {'vs line':>7s} {'eval ms':>8s} "
              f"{'vs line':>7s}"]
    for row, residual, eval_residual in zip(sc["rows"], sc["fit"]["relative_residuals"],
                                            sc["eval_fit"]["relative_residuals"], strict=True):
        mark = " (one step)" if row["steps_timed"] == 0 else ""
        lines.append(f"  {row['case']:28s} {row['gmac_per_input']:10.4g} {row['step_seconds']:9.3f} "
                     f"{row['ms_per_gmac']:9.1f} {100 * residual:+6.0f}% {1000 * row['eval_seconds_per_input']:8.2f} "
                     f"{100 * eval_residual:+6.0f}%{mark}")
    if sc["fit"].get("proportional"):
        lines.append(f"  line: {1000 * sc['fit']['seconds_per_gmac']:.1f} ms/GMAC per step, proportional (one cost "
                     "measured: no line to fit)")
    else:
        lines.append(f"  line (least squares, for reading; not used): {sc['fit']['intercept_seconds']:.3f} s + "
                     f"{1000 * sc['fit']['seconds_per_gmac']:.1f} ms/GMAC per step")
    if report["projection"]:
        pr = report["projection"]
        a = pr["assumptions"]
        compiled = a.get("once_per_run") == "measured"
        steps = "compiled" if compiled else "eager"
        lines += ["", f"Projection: {pr['runs']} runs of {report['spec']} at {a['epochs_per_run']:g} epochs per run "
                  f"= {amount(pr['pflop'], 0)} PFLOP = {amount(pr['device_hours'], 1)} {hours_unit(report['device'])} "
                  f"({amount(pr['max_epochs_hours'], 1)} at the spec's max_epochs {a['max_epochs']}, the bound)"
                  + (f"; {amount(hours_at_peak(pr['pflop'], bf16), 2)} at the bf16 dense peak ({bf16:g} TFLOP/s)"
                     if (bf16 := report.get("bf16_peak_tflops")) else ""),
                  f"  one run at a time on one {report['device_name']}: measured {steps} training steps at batch "
                  f"{a['batch_measured']} and evaluation, interpolated in GMAC between the scaling rows, plus the "
                  f"mel front end, for {a['train_valid_test_clips'][0]:,} / {a['train_valid_test_clips'][1]:,} / "
                  f"{a['train_valid_test_clips'][2]:,} training / validation / test clips"
                  + (f" ({report['dataset']}'s published split)" if report.get("dataset") not in (None, "synthetic")
                     else "")
                  + ("; with each run's compilation; without" if compiled else "; without compilation,")
                  + " the latency measurement, checkpoints"
                  + ("; the grid runs several runs per GPU at once (--runs-per-gpu), which this does not credit"
                     if report["device"] == "cuda" and not report.get("projection_shared") else "")]
        if report.get("projection_shared"):
            lines.append(shared_projection_line(report["projection_shared"], report["device"]))
    elif report.get("no_projection"):
        lines += ["", f"Projection: none: {report['no_projection']}"]
    lines += ["", "Targets"]
    for t in report["targets"]:
        if t["value"] is None:
            lines.append(f"  {t['target']:38s} {'?':>8s}  {t['op']} {t['goal']:<5g} unknown: the bf16 peak of "
                         f"{report['device_name']!r} is not in the table; give it with --bf16-peak-tflops")
            continue
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"  {t['target']:38s} {t['value']:8.3f}  {t['op']} {t['goal']:<5g} {verdict}")
    return "\n".join(lines)


def shared_projection_line(shared: dict, device: str) -> str:
    """The projection's line for runs sharing the GPU (`report["projection_shared"]`)."""
    k = shared["runs_at_once"]
    return (f"  {k} runs at a time, as the grid places them here ({shared['why']}): at least "
            f"{amount(shared['device_hours'], 1)} {hours_unit(device)} ({amount(shared['max_epochs_hours'], 1)} at "
            f"max_epochs), if each run took only the larger of its GPU-busy share alone (measured at the scaling "
            f"rows, interpolated in GMAC) and 1/{k} of its time alone; runs slow each other more than that")


def cli_main(spec_path: str, device_name: str, out: str | None, settings: PerfSettings) -> int:
    from bench.spec import load_spec
    from bench.train.devices import warn_of_cpu_fallback
    from bench.train.loop import resolve_device

    spec = load_spec(spec_path)
    device = resolve_device(device_name)
    warn_of_cpu_fallback(device_name, device, "bench perf")
    if settings.bf16_peak_tflops is not None and device.type != "cuda":  # the GPU's peak, read on CUDA only
        raise UserError(f"--bf16-peak-tflops: only for GPUs (bench perf measures the CPU here: --device "
                        f"{device_name}); on the CPU it measures the convolutions' own peak")
    if settings.batch is not None:
        check_batch(spec, settings.batch)
    check_environment()  # the BENCH_* settings the measured steps read, as `bench grid` checks them
    if settings.compile_modes:
        check_compile_modes(settings.compile_modes)
        if not settings.compile:
            raise UserError("--compile-modes times compiled steps: not with --no-compile")
        if compile_switched_off():
            raise UserError("--compile-modes times compiled steps: not with "
                            f"BENCH_COMPILE={os.environ['BENCH_COMPILE'].strip()}")
        if compile_backend() != "inductor":
            raise UserError(f"--compile-modes: modes are inductor's, which BENCH_COMPILE_BACKEND="
                            f"{compile_backend()!r} does not use")
        blocker = compile_blocker(device)
        if blocker:
            why = blocker.removeprefix("torch.compile turned off: ").removesuffix("; training eager")
            raise UserError(f"--compile-modes: nothing can be compiled here ({why})")
    if settings.epochs is not None and settings.epochs > spec.protocol.max_epochs:  # hours no grid can take
        raise UserError(f"--epochs {settings.epochs:g}: more than {spec.path}'s max_epochs "
                        f"({spec.protocol.max_epochs}), which no run exceeds")
    partial = partial_path(Path(out)) if out else None

    def save(report: dict) -> None:
        if partial:
            atomic_write_json(partial, {**report, "complete": False})

    try:
        report = run_perf(spec, device, settings, log=lambda msg: print(msg, flush=True), save=save)
    except BaseException as exc:
        if partial and partial.exists():
            print(f"bench perf: stopped; what it measured is in {partial}", file=sys.stderr)
        if isinstance(exc, Exception) and is_out_of_memory(exc):
            batch = settings.batch or default_batch(spec, device)
            raise UserError(f"out of memory on {device} at batch {batch}: measure with a smaller --batch") from None
        raise
    print()
    print(format_report(report))
    if out:
        atomic_write_json(Path(out), {**report, "complete": True})
        if partial:
            partial.unlink(missing_ok=True)
        print(f"\nwrote {out}")
    return 0


def check_batch(spec: Spec, batch: int) -> None:
    """`--batch` no smaller than the fewest clips every configuration of `spec` trains on (a BatchNorm
    that normalises one value per clip cannot take one clip), as the spec's own batch size is checked."""
    import architectures

    for configuration in spec.configurations():
        mel = configuration.mel
        fewest = architectures.min_train_batch(configuration.arch, mel.input_config(spec.dataset.clip_seconds),
                                               **dataclasses.asdict(configuration.options))
        if batch < fewest:
            raise UserError(f"--batch {batch}: fewer clips than {configuration.arch} trains on at "
                            f"{mel.sample_rate} Hz, {mel.n_mels} mels, hop x{mel.hop_multiplier}: at least {fewest} "
                            "(a BatchNorm in it normalises one value per clip there)")


def partial_path(out: Path) -> Path:
    """Where `bench perf --out OUT` keeps its report while it measures (OUT itself, perhaps an earlier
    complete report, is replaced only by a complete one): OUT's name with `.partial` before `.json`."""
    return out.with_name(f"{out.stem}.partial{out.suffix or '.json'}")

