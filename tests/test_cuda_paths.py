"""The CUDA paths, exercised on the CPU with fakes that fail the way a device does: tensors that
refuse `.numpy()` and count host syncs, patched `torch.cuda` memory queries, a stub submitit, and
GPU identities in place of real devices."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import itertools
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.core.errors import DeviceFailure, UserError
from bench.data import views
from bench.run import gpus
from bench.run.grid import GridOptions, WorkerJob, auto_runs_per_gpu, run_grid, submitit_parameters, worker_device
from bench.spec import load_spec
from bench.train import fastpath
from bench.train import loop as train

from .device_fakes import DeviceTensor, ToyCache, on_device, tiny_runs
from .processes import state

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_worker(monkeypatch):
    """Each test is a fresh worker: no resident copy from an earlier test, default compile settings, not
    told how many runs share its GPU and CPUs."""
    views.release_resident()
    for name, value in (("_runs_per_gpu", 1), ("_gpus_here", None), ("_workers_here", None)):
        monkeypatch.setattr(fastpath, name, value)
    monkeypatch.delenv("BENCH_COMPILE", raising=False)
    monkeypatch.delenv("BENCH_COMPILE_BACKEND", raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "")  # recorded, so that the undo removes what a
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS")       # CUDA worker sets (os.environ.setdefault)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    views.release_resident()


def device_resident(monkeypatch):
    """Waveforms 'fit on the device' and come out of the resident branch as device tensors."""
    monkeypatch.setattr(train, "resident_fits", lambda n_bytes, device, reusable=0: True)
    real = views.ResidentClips.batches

    def batches(self, batch_size, order):
        for wave, target in real(self, batch_size, order):
            yield on_device(wave), on_device(target)

    monkeypatch.setattr(views.ResidentClips, "batches", batches)


# ------------------------------------------------------------------------------------------------
# 1. evaluation on device-resident data


def test_a_run_on_device_resident_data_never_converts_device_tensors_to_numpy(monkeypatch, tmp_path):
    device_resident(monkeypatch)
    (run,) = tiny_runs(epochs=2)
    trained = train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)
    assert trained["fast_path"]["resident_data"] is True
    assert trained["epochs"] == 2 and 0 <= trained["test"]["roc_auc"] <= 1


def test_no_host_sync_inside_the_training_step_loop(monkeypatch, tmp_path):
    """11 steps: the summed loss is checked once after step 10 (FINITE_CHECK_STEPS = 5 here) and once
    at the end of the epoch; a sync per step (loss.item(), bool(isfinite)) would be 22."""
    device_resident(monkeypatch)
    monkeypatch.setattr(train, "FINITE_CHECK_STEPS", 5)
    (run,) = tiny_runs(batch_size=2, epochs=1)
    trainer = train.Trainer(run, ToyCache(clips=(23, 6, 6)), CPU, log=lambda *_: None)
    DeviceTensor.syncs = 0
    loss, seen, skipped = trainer.train_epoch(1)
    assert seen == 22  # 11 full batches of 2; the last partial batch (1 clip) is dropped
    assert DeviceTensor.syncs == 2 + 1 + 1  # checks after steps 5 and 10, the end-of-epoch check, the mean
    assert loss > 0


def test_a_nan_loss_still_fails_the_run_naming_epoch_and_steps(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "FINITE_CHECK_STEPS", 2)
    real = train.Trainer._forward
    monkeypatch.setattr(train.Trainer, "_forward", lambda self, mel: real(self, mel) * float("nan"))
    (run,) = tiny_runs(epochs=1)
    with pytest.raises(train.NonFiniteLoss, match=r"training loss became nan at epoch 1 \(steps 0-1\)"):
        train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)


# ------------------------------------------------------------------------------------------------
# 2. compilation across configurations


def test_three_configurations_compiled_in_one_process_stay_compiled(monkeypatch, tmp_path, caplog):
    """Partial training and evaluation batches and new models per run used to add graphs until dynamo's
    recompile limit (8) made the third configuration train uncompiled while claiming `compile: true`."""
    monkeypatch.setenv("BENCH_COMPILE", "1")
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")  # dynamo's graph capture without inductor
    cache = ToyCache(clips=(21, 9, 9))  # 21 = 2 x 8 + 5; 9 clips < one evaluation batch of 16
    shapes = []
    real = train.forward
    monkeypatch.setattr(train, "forward", lambda model, path, mel: (shapes.append(tuple(mel.shape)),
                                                                    real(model, path, mel))[1])
    caplog.set_level(logging.WARNING, logger="torch._dynamo")
    runs = tiny_runs(n_mels=(16, 24, 32), epochs=2)
    assert len(runs) == 3
    for run in runs:
        shapes.clear()
        trained = train.train_run(run, cache, tmp_path / run.run_id, CPU, log=lambda *_: None)
        assert trained["fast_path"]["compile"] and trained["fast_path"]["compiled"], run.run_id
        assert trained["fast_path"]["recompile_limit_hits"] == 0
        assert trained["fast_path"]["loss_scaling"] is False  # bf16 or fp32 on the CPU: no loss to scale
        assert len(set(shapes)) == 2, shapes  # one training shape (8 clips), one evaluation shape (16)
    assert "recompile_limit" not in caplog.text


def trained_across_a_resume(monkeypatch, folder: Path, before, after) -> tuple[dict, list[str]]:
    """A tiny run trained for one epoch after `before()`, interrupted at the second, and finished after
    `after()`; its result and what the finishing process logged."""
    from bench.train import checkpoint

    monkeypatch.setattr(checkpoint.CheckpointPolicy, "due", lambda self, now: True)  # every epoch
    (run,) = tiny_runs(epochs=2)
    real_epoch, said = train.Trainer.train_epoch, []

    def stopped_at_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    before()
    monkeypatch.setattr(train.Trainer, "train_epoch", stopped_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.train_run(run, ToyCache(), folder, CPU, log=lambda *_: None)
    after()
    monkeypatch.setattr(train.Trainer, "train_epoch", real_epoch)
    trained = train.train_run(run, ToyCache(), folder, CPU, log=said.append)
    assert any(line.startswith(f"resuming {run.run_id} after epoch 1") for line in said), said
    return trained, said


def test_a_run_resumed_under_another_compile_setting_is_not_recorded_as_compiled(monkeypatch, tmp_path):
    """result.json described the process that finished a run: one compiled for epoch 1, killed, and
    resumed eager recorded `compile: false` as if never compiled, and one resumed compiled after an
    eager epoch `compiled: true`. Each epoch now says how it trained, and `compiled` holds for all."""
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")
    for first, then in (("1", "0"), ("0", "1")):
        trained, said = trained_across_a_resume(
            monkeypatch, tmp_path / f"{first}-{then}", functools.partial(monkeypatch.setenv, "BENCH_COMPILE", first),
            functools.partial(monkeypatch.setenv, "BENCH_COMPILE", then))
        path = trained["fast_path"]
        assert [h["compiled"] for h in trained["history"]] == [first == "1", then == "1"]
        assert path["compiled"] is False and path["compiled_epochs"] == 1
        assert path["compile_backend"] == ("eager" if then == "1" else None)
        earlier = "compiled" if first == "1" else "eager"
        assert any(f"its earlier epochs trained {earlier}" in line for line in said), said


def inf_gradients_at(monkeypatch, poisoned: set):
    """Make the first parameter's gradient inf at the training steps in `poisoned` (counted from 0
    over the whole run), the loss staying finite: what fp16 overflow in the backward pass does."""
    real = train.make_optimizer
    steps = iter(range(10**6))

    def make_optimizer(model, *args, **kwargs):
        first = next(iter(model.parameters()))
        first.register_hook(lambda grad: grad.fill_(math.inf) if next(steps) in poisoned else grad)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train, "make_optimizer", make_optimizer)


def test_fp16_steps_skipped_for_inf_gradients_are_counted_and_a_run_that_stands_still_fails(monkeypatch, tmp_path):
    """GradScaler skips a step whose gradients are not finite and halves its scale; the loss, computed
    in float32, stays finite. A run whose every step was skipped trained nothing and was recorded as a
    success. Now each epoch counts its skipped steps; a scale at the floor (32 net halvings, which
    calibration never needs) fails the run at the next check, and so does a run that took no step."""
    (run,) = tiny_runs(epochs=2, precision="fp16")  # 20 training clips in batches of 8: 2 steps an epoch
    inf_gradients_at(monkeypatch, {0})  # as calibration does: a skipped first step is no fault
    trained = train.train_run(run, ToyCache(), tmp_path / "one", CPU, log=lambda *_: None)
    assert [h["skipped_steps"] for h in trained["history"]] == [1, 0]
    assert [h["amp_dtype"] for h in trained["history"]] == ["float16", "float16"]
    assert trained["amp_dtype"] == "float16" and trained["fast_path"]["loss_scaling"] is True

    inf_gradients_at(monkeypatch, set(range(10**6)))  # 4 steps: the scale only falls to 2^12
    with pytest.raises(train.NonFiniteLoss, match="fp16 loss scaling skipped every training step for inf or NaN "
                                                  "gradients: the weights never changed"):
        train.train_run(run, ToyCache(), tmp_path / "all", CPU, log=lambda *_: None)

    # in batches of 2, 10 steps an epoch, checked every 5: skipped from global step 2 on (and any of
    # the first two that calibration skips), the 32nd skip comes within epoch 4's first five steps
    monkeypatch.setattr(train, "FINITE_CHECK_STEPS", 5)
    (run,) = tiny_runs(epochs=6, batch_size=2, precision="fp16")
    inf_gradients_at(monkeypatch, set(range(2, 10**6)))
    with pytest.raises(train.NonFiniteLoss, match=r"skipped step after step for inf or NaN gradients at epoch 4 "
                                                  r"\(steps 0-4; its scale fell to ") as raised:
        train.train_run(run, ToyCache(), tmp_path / "later", CPU, log=lambda *_: None)
    scale = float(re.search(r"fell to ([-+.e\d]+)\)", str(raised.value)).group(1))
    assert 2.0**-19 <= scale <= 2.0**-16  # 2^16 halved 32 to 35 times

    # checked at every step, the run fails at the step whose skip brings the scale to 2^-16, no later
    monkeypatch.setattr(train, "FINITE_CHECK_STEPS", 1)
    inf_gradients_at(monkeypatch, set(range(2, 10**6)))
    with pytest.raises(train.NonFiniteLoss, match=r"its scale fell to ([-+.e\d]+)\)") as raised:
        train.train_run(run, ToyCache(), tmp_path / "every", CPU, log=lambda *_: None)
    assert float(re.search(r"fell to ([-+.e\d]+)\)", str(raised.value)).group(1)) == pytest.approx(2.0**-16, rel=0.01)


def test_a_resumed_fp16_run_keeps_its_loss_scale(monkeypatch, tmp_path):
    """The scale is what the floor check counts skips with: a run resumed at GradScaler's initial 2^16
    would forget the skips before its interruption, and recalibrate from scratch."""
    from bench.train import checkpoint

    monkeypatch.setattr(checkpoint.CheckpointPolicy, "due", lambda self, now: True)  # every epoch
    (run,) = tiny_runs(epochs=3, precision="fp16")  # 2 steps an epoch
    inf_gradients_at(monkeypatch, {0, 1})  # epoch 1's two steps skipped: the scale halves twice
    real_epoch, scales = train.Trainer.train_epoch, []

    def recorded(self, epoch, stop_at=None):
        scales.append(self.scaler.get_scale())
        if epoch == stop_at:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(train.Trainer, "train_epoch", functools.partialmethod(recorded, stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)
    monkeypatch.setattr(train.Trainer, "train_epoch", recorded)
    trained = train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)
    assert scales == [2.0**16, 2.0**14, 2.0**14, 2.0**14]  # epochs 1, 2 (interrupted), 2 and 3 resumed
    assert [h["skipped_steps"] for h in trained["history"]] == [2, 0, 0]


def test_a_run_resumed_in_another_precision_keeps_its_checkpoint_and_records_both(monkeypatch, tmp_path):
    """"auto" and "bf16" resolve per device, and a run may resume on another kind of device. A
    checkpoint written without loss scaling holds an empty scaler state, which GradScaler refuses to
    load: the checkpoint was set aside and the run trained again from scratch. And result.json named
    only the last process's dtype."""
    for first, then in ((None, torch.float16), (torch.float16, None)):
        trained, said = trained_across_a_resume(
            monkeypatch, tmp_path / f"{first}-{then}",
            functools.partial(monkeypatch.setattr, fastpath, "autocast_dtype", lambda device, precision, d=first: d),
            functools.partial(monkeypatch.setattr, fastpath, "autocast_dtype", lambda device, precision, d=then: d))
        assert not any("does not fit" in line for line in said), said
        names = [str(d).replace("torch.", "") if d else "float32" for d in (first, then)]
        assert [h["amp_dtype"] for h in trained["history"]] == names
        assert trained["amp_dtype"] == trained["fast_path"]["amp_dtype"] == "+".join(names)
        assert trained["fast_path"]["loss_scaling"] is True
        assert any(f"its earlier epochs trained in {names[0]}; any epoch left trains in {names[1]}" in line
                   for line in said), said


def test_the_evaluation_graph_is_compiled_with_a_static_batch(monkeypatch):
    """Dynamo's automatic dynamic shapes: a second batch size on the same code marks the batch
    dimension symbolic, unless the model is compiled with dynamic=False."""
    from torch.fx.experimental.symbolic_shapes import free_symbols

    graphs = []

    def recorder(graph_module, example_inputs):
        graphs.append([tuple(x.shape) if isinstance(x, torch.Tensor) else x for x in example_inputs])
        return graph_module.forward

    path = fastpath.FastPath(device="cpu", amp_dtype=None, channels_last=False, cudnn_benchmark=False, tf32=False,
                             compile=True, eval_batch_factor=4, pin_memory=False,
                             compile_backend=recorder)
    class Net(nn.Module):  # a model of its own class, as the architectures are: torch 2.9's Module.compile
        def __init__(self):  # traces no nn.Sequential on Python 3.10
            super().__init__()
            self.conv, self.linear = nn.Conv2d(1, 4, 3), nn.Linear(4 * 14 * 18, 2)

        def forward(self, x):
            return self.linear(self.conv(x).flatten(1))

    model = path.prepare_model(Net())
    model(torch.randn(8, 1, 16, 20))  # a training batch
    with torch.no_grad():
        model(torch.randn(32, 1, 16, 20))  # an evaluation batch
    assert len(graphs) == 2
    assert (32, 1, 16, 20) in graphs[1] and not any(free_symbols(x) for x in graphs[1]), graphs[1]


@pytest.mark.parametrize("arch", ["vgg", "musicnn"])
def test_a_capped_evaluation_batch_scores_as_the_full_one(monkeypatch, arch):
    """Where a configuration's evaluation batch would hold a tensor beyond 32-bit indexing, a run
    evaluates fewer clips at a time (down to one): the scores are those of the full batch."""
    (run,) = tiny_runs(archs=(arch,))
    full = train.Trainer(run, ToyCache(), CPU, log=lambda line: None)
    monkeypatch.setattr(fastpath, "INDEXED_ELEMENTS", 1)
    capped = train.Trainer(run, ToyCache(), CPU, log=lambda line: None)  # seeded alike: the same weights
    assert (full.eval_batch, capped.eval_batch) == (2 * 8, 1)
    clips = []
    capped.model.register_forward_pre_hook(lambda _module, args: clips.append(len(args[0])))
    targets, scores = full.predict("valid")
    capped_targets, capped_scores = capped.predict("valid")
    np.testing.assert_array_equal(targets, capped_targets)
    np.testing.assert_allclose(capped_scores, scores, rtol=1e-4, atol=1e-6)
    # the valid split's 10 clips one at a time; MusiCNN's 1 s clip (32 frames at hop 512) holds two
    # 0.5 s segments of 15 frames
    assert clips == [{"vgg": 1, "musicnn": 2}[arch]] * 10


@pytest.mark.parametrize("limit", ["recompile_limit", "accumulated_recompile_limit"])
def test_recompile_watch_counts_both_of_dynamos_limits(limit):
    from bench.train.fastpath import RecompileWatch

    with RecompileWatch() as watch:  # the warning as torch/_dynamo/convert_frame.py words it
        logging.getLogger("torch._dynamo.convert_frame").warning(
            "torch._dynamo hit config.%s (%s)\n   function: %s", limit, 8, "'forward' (vgg.py:120)")
    assert watch.hits == [f"torch._dynamo hit config.{limit} (8)"]


def test_no_c_compiler_turns_compile_off_with_a_note_not_a_failure(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_COMPILE", "1")
    monkeypatch.setattr(fastpath.shutil, "which", lambda name: None)
    monkeypatch.delenv("CC", raising=False)
    for device in (CPU, torch.device("cuda")):
        compile, note = fastpath.compile_choice(device, 10**6)
        assert not compile and "no " in note and "compiler" in note
    assert_run_trains_eager_saying_why(tmp_path, "torch.compile turned off: no C++")


def assert_run_trains_eager_saying_why(tmp_path, note_start: str):
    """A CPU run that would compile trains eager, its result's compile_note starting with `note_start`,
    and says so in one log line."""
    lines = []
    (run,) = tiny_runs(epochs=1)
    trained = train.train_run(run, ToyCache(), tmp_path, CPU, log=lines.append)
    assert trained["fast_path"]["compile"] is False
    assert trained["fast_path"]["compile_note"].startswith(note_start)
    assert sum("torch.compile turned off" in line for line in lines) == 1


def test_no_python_headers_turn_compile_off_on_every_device(monkeypatch, tmp_path):
    """Triton builds its CUDA kernel launcher, a Python extension, with `-I` sysconfig's include folder
    (Debian's "posix_local" scheme read as "posix_prefix"), and inductor on the CPU builds each C++
    kernel with Python bindings that include Python.h: a box with a compiler but no Python.h (a system
    Python without its -dev package) would fail every compiled run, on either device (each compiled run
    failed with "CppCompileError" on a CPU whose Python.h did not compile)."""
    import sysconfig

    include = {"posix_prefix": tmp_path / "prefix", "posix_local": tmp_path / "local", "venv": tmp_path / "venv"}
    monkeypatch.setattr(sysconfig, "get_default_scheme", lambda: "posix_local")
    monkeypatch.setattr(sysconfig, "get_paths", lambda scheme: {"include": str(include[scheme])})
    include["posix_local"].mkdir()
    (include["posix_local"] / "Python.h").touch()  # in the folder Triton does not look in
    assert fastpath.python_headers() is None
    include["posix_prefix"].mkdir()
    (include["posix_prefix"] / "Python.h").touch()
    assert fastpath.python_headers() == str(include["posix_prefix"])

    monkeypatch.setenv("BENCH_COMPILE", "1")
    monkeypatch.setattr(fastpath, "compiler_available", lambda device: True)
    monkeypatch.setattr(fastpath, "python_headers", lambda: None)
    python = ".".join(map(str, sys.version_info[:2]))
    for device, builds in ((torch.device("cuda"), "Triton builds its kernel launcher"),
                           (CPU, "inductor builds its C++ kernels")):
        compile, note = fastpath.compile_choice(device, 10**6)
        assert not compile and note.startswith(f"torch.compile turned off: no Python.h for Python {python}, "
                                               f"which {builds}")
    assert_run_trains_eager_saying_why(tmp_path / "run", "torch.compile turned off: no Python.h")
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")  # compiles nothing to C
    for device in (torch.device("cuda"), CPU):
        assert fastpath.compile_choice(device, 10**6) == (True, None)


def test_a_macos_framework_pythons_headers_are_found_where_inductor_looks(monkeypatch, tmp_path):
    """A framework build of Python on macOS can name an include folder that does not exist; inductor then
    compiles with the framework's Headers folder, two levels above the standard library
    (torch/_inductor/cpp_builder.py), so compile stays on there."""
    import sysconfig

    version = tmp_path / "Python.framework" / "Versions" / "3.12"
    paths = {"include": "/Library/Python/3.12/include", "stdlib": str(version / "lib" / "python3.12")}
    monkeypatch.setattr(sysconfig, "get_default_scheme", lambda: "posix_prefix")
    monkeypatch.setattr(sysconfig, "get_paths", lambda scheme: paths)
    monkeypatch.setattr(fastpath.sys, "platform", "darwin")
    assert fastpath.python_headers() is None
    (version / "Headers").mkdir(parents=True)
    (version / "Headers" / "Python.h").touch()
    assert fastpath.python_headers() == str(version / "Headers")
    monkeypatch.setattr(fastpath.sys, "platform", "linux")
    assert fastpath.python_headers() is None


def test_the_compiler_is_found_as_triton_and_inductor_find_it(monkeypatch):
    """Triton (triton/runtime/build.py `_find_compiler("c")`): $CC when set, and only that, else gcc,
    else clang; never cc. Inductor on the CPU (config.cpp.cxx): $CXX when set, else g++."""
    found = {"gcc"}
    monkeypatch.setattr(fastpath.shutil, "which", lambda name: name if name in found else None)
    for name in ("CC", "CXX"):
        monkeypatch.delenv(name, raising=False)
    cuda = torch.device("cuda")
    assert fastpath.compiler_available(cuda)
    found.clear()
    assert not fastpath.compiler_available(cuda)
    found.add("cc")  # Triton does not look for cc
    assert not fastpath.compiler_available(cuda)
    found.add("clang")
    assert fastpath.compiler_available(cuda)
    monkeypatch.setenv("CC", "/opt/cc")  # set by a module system, absent on this node: gcc is not tried
    found.add("gcc")
    assert not fastpath.compiler_available(cuda)
    found.add("/opt/cc")
    assert fastpath.compiler_available(cuda)
    found.clear()
    found.update({"c++", "clang++"})  # inductor tries g++ alone
    assert not fastpath.compiler_available(CPU)
    monkeypatch.setenv("CXX", "clang++")
    assert fastpath.compiler_available(CPU)


def test_a_torch_that_cannot_compile_on_this_python_trains_eager_with_a_note(monkeypatch):
    """torch 2.9's torch.compile raises at once on Python 3.14, and every torch on a Python newer than
    it knows: a run that wanted compiling failed. It trains eager, saying why."""
    import torch._dynamo

    monkeypatch.setenv("BENCH_COMPILE", "1")
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    compile, note = fastpath.compile_choice(CPU, 10**6)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert not compile and f"torch {torch.__version__} cannot compile on Python {python}" in note


def test_on_macos_inductor_needs_clang_and_an_openmp_it_can_find(monkeypatch, tmp_path):
    """Inductor's default compiler on macOS is clang++ (config.cpp.cxx), where /usr/bin/g++ is a stub
    that is always there; Apple's clang has no OpenMP, which inductor takes from $OMP_PREFIX,
    $CONDA_PREFIX or Homebrew's libomp (cpp_builder.py): without one every compiled run failed."""
    import torch._dynamo  # noqa: F401 - before the platform is patched: inductor reads it on import

    monkeypatch.setattr(fastpath.sys, "platform", "darwin")
    monkeypatch.setenv("BENCH_COMPILE", "1")
    for name in ("CXX", "OMP_PREFIX", "CONDA_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fastpath.shutil, "which", lambda name: name if name in ("g++", "clang++") else None)
    compile, note = fastpath.compile_choice(CPU, 10**6)
    assert not compile and "clang++ with libomp" in note
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "omp.h").touch()
    monkeypatch.setenv("OMP_PREFIX", str(tmp_path))
    assert fastpath.compile_choice(CPU, 10**6) == (True, None)


# ------------------------------------------------------------------------------------------------
# 3. which GPU each worker gets


def test_workers_spread_over_gpus_slot_by_slot(tmp_path):
    identities = ["GPU-aaa", "GPU-bbb"]
    claims = [gpus.claim_gpu(identities, runs_per_gpu=2, worker=k, folder=tmp_path) for k in range(4)]
    assert [c.index for c in claims] == [0, 1, 0, 1]
    assert [c.slot for c in claims] == [0, 0, 1, 1]
    for claim in claims:
        claim.release()


def test_two_grids_first_workers_take_two_gpus_before_a_second_slot_of_either(tmp_path):
    """Two grids on one box, `--runs-per-gpu 2`: each grid's worker 0 claims a slot. Slot 0 of every GPU
    is filled before slot 1, so the second grid's first worker gets the other GPU, not cuda:0 again."""
    identities = ["GPU-aaa", "GPU-bbb"]
    first, second = (gpus.claim_gpu(identities, runs_per_gpu=2, worker=0, folder=tmp_path) for _ in range(2))
    assert [(first.index, first.slot), (second.index, second.slot)] == [(0, 0), (1, 0)]
    first.release()
    second.release()


def test_more_workers_than_slots_share_a_gpu_and_say_so(tmp_path):
    identities = ["GPU-aaa", "GPU-bbb"]
    claims = [gpus.claim_gpu(identities, runs_per_gpu=1, worker=k, folder=tmp_path) for k in range(3)]
    assert [c.index for c in claims[:2]] == [0, 1] and claims[2].slot is None
    assert "sharing it beyond its slots" in gpus.describe(claims[2], 1)
    claims[0].release()  # a worker ends: its slot is free for the next one
    again = gpus.claim_gpu(identities, runs_per_gpu=1, worker=2, folder=tmp_path)
    assert (again.index, again.slot) == (0, 0)
    # the third worker, beyond the slots on cuda:0, is counted there: the next one to share goes to
    # cuda:1, where one run trains, not to cuda:0, where two do (its search would start at cuda:0)
    fourth = gpus.claim_gpu(identities, runs_per_gpu=1, worker=0, folder=tmp_path)
    assert (claims[2].index, fourth.index, fourth.slot, fourth.sharing) == (0, 1, None, 2)


def test_a_mig_instance_has_one_set_of_slots_however_it_is_named(tmp_path, monkeypatch):
    """A grid started with `CUDA_VISIBLE_DEVICES=MIG-a,MIG-b` claims instance a as `MIG-<uuid>`; a grid
    given that instance alone (or none, so CUDA shows it first) names it as CUDA does, `GPU-<uuid>` from
    the device's UUID (cuDeviceGetUuid_v2 gives a MIG device the instance's UUID): one slot, seen by both."""
    uuid = "4f0c6a2e-3b0f-4e8e-9c57-0a1b2c3d4e5f"
    first = gpus.claim_gpu([f"MIG-{uuid}", "MIG-8e2d0000-0000-4000-8000-000000000000"], runs_per_gpu=1,
                           folder=tmp_path)
    assert (first.index, first.slot) == (0, 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(uuid=uuid))
    alone = gpus.gpu_uuid(0)
    other = gpus.claim_gpu([alone], runs_per_gpu=1, folder=tmp_path)
    assert alone == f"GPU-{uuid}" and other.slot is None and other.sharing == 2  # it knows it shares
    for claim in (first, other):
        claim.release()


def test_a_free_slot_that_another_worker_is_counting_is_still_taken(tmp_path, monkeypatch):
    """A worker that shares counts each GPU's held slot files with a shared lock for a moment; a claim
    that meets that moment at the only free slot looks again, rather than share a GPU whose slot is free."""
    identities = ["GPU-aaa", "GPU-bbb"]
    held = gpus.claim_gpu(identities, runs_per_gpu=1, worker=0, folder=tmp_path)
    real_try_lock, looked_at = gpus.try_lock, []

    def try_lock(path, note):  # cuda:1's slot is being counted at the first try
        if path.name == "bbb.slot0" and not looked_at:
            looked_at.append(path)
            return None
        return real_try_lock(path, note)

    monkeypatch.setattr(gpus, "try_lock", try_lock)
    claim = gpus.claim_gpu(identities, runs_per_gpu=1, worker=1, folder=tmp_path)
    assert looked_at and (claim.index, claim.slot) == (1, 0)
    held.release()
    claim.release()


def test_two_grids_on_one_box_take_different_gpus(tmp_path):
    """Both grids' first workers are worker 0; the slot locks, not the worker number, decide."""
    identities = ["GPU-aaa", "GPU-bbb"]
    first = gpus.claim_gpu(identities, runs_per_gpu=1, worker=0, folder=tmp_path)
    second = gpus.claim_gpu(identities, runs_per_gpu=1, worker=0, folder=tmp_path)
    assert (first.index, second.index) == (0, 1)


def test_gpu_slots_are_the_machines_whatever_tmpdir_a_job_has(monkeypatch, tmp_path):
    """Slurm sites often give each job its own TMPDIR (/tmp/job.<id>, a local scratch folder); the
    slots of two jobs on one node must be in one folder for each to see the other's claims."""
    import tempfile

    monkeypatch.delenv("BENCH_GPU_LOCKS", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "job.4242"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "job.4242"))
    assert gpus.lock_dir() == Path(f"/tmp/bench-gpu-slots-{os.getuid()}")
    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path / "shared"))
    assert gpus.lock_dir() == tmp_path / "shared"


def test_a_dead_workers_slot_is_free_again(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from bench.run import gpus; "
            "print(gpus.claim_gpu(['GPU-aaa'], 1, 0, Path(sys.argv[1])).slot)")
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True, text=True)
    assert child.stdout.strip() == "0"  # the child held slot 0 until it exited, without releasing it
    claim = gpus.claim_gpu(["GPU-aaa"], 1, 0, tmp_path)
    assert claim.slot == 0


@pytest.mark.parametrize("preset", [None, "4,5", "GPU-1f2e3d4c-aaaa,GPU-9b8a7c6d-bbbb"])
def test_worker_device_is_an_index_among_visible_gpus_and_leaves_the_selection_alone(monkeypatch, tmp_path,
                                                                                     preset):
    """With CUDA_VISIBLE_DEVICES preset (indices or UUIDs) the process sees devices 0..n-1; a worker
    picks one of those indices and never rewrites the variable (the old code set it to str(k))."""
    if preset is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", preset)
    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 1)  # restored after the test: the workers change it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # once torch's CUDA state is up (set_device)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: type("Props", (), {"uuid": ["1f2e", "9b8a"][i]})())
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(fastpath.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 128)  # the machine: more cores than the mask
    devices = [worker_device("cuda", worker, runs_per_gpu=2, log=lambda *_: None) for worker in range(5)]
    assert [d.index for d, _ in devices] == [0, 1, 0, 1, 0] == chosen
    assert [c.slot for _, c in devices] == [0, 0, 1, 1, None]  # 5 workers, 2 GPUs x 2 slots
    # each worker's waveform copy gets its share of the GPU, and its share of the 16 CPUs: the fifth,
    # beyond the slots, is the third run on cuda:0
    assert fastpath._runs_per_gpu == 3 and devices[4][1].sharing == 3
    assert torch.get_num_threads() == 16 // (2 * 3)
    worker_device("cuda", 5, runs_per_gpu=2, log=lambda *_: None)
    assert fastpath._runs_per_gpu == 3  # the sixth, the third on cuda:1
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == preset
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device("auto", 0, 1)[0] == CPU
    with pytest.raises(UserError, match="no CUDA device"):
        worker_device("cuda", 0, 1)


MIG_INSTANCES = ["MIG-4f0c2a1e-7d3b-5a6c-9e8f-0a1b2c3d4e5f", "MIG-8e2d4c6a-1b3f-5d7e-9a0c-b1c2d3e4f5a6",
                 "MIG-c3b5a7e9-2d4f-5a1c-8e0b-c2d3e4f5a6b7"]
NVIDIA_SMI_L_MIG = f"""GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5d1c6a2e-3b0f-4e8e-9c57-0a1b2c3d4e5f)
  MIG 3g.40gb     Device  0: (UUID: {MIG_INSTANCES[0]})
  MIG 3g.40gb     Device  1: (UUID: {MIG_INSTANCES[1]})
GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff)
  MIG 7g.80gb     Device  0: (UUID: {MIG_INSTANCES[2]})
"""


def test_workers_on_mig_instances_each_show_cuda_the_instance_they_claimed(monkeypatch, tmp_path):
    """A CUDA process enumerates one MIG instance whatever CUDA_VISIBLE_DEVICES lists: the first. With
    three listed and 2 runs per GPU, each of six workers claims an instance and narrows the variable to
    it before CUDA starts (as cuInit, `is_available` reads it here): two runs per instance, each on
    cuda:0 of what its process sees (the old code left all six on the first instance)."""
    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 1)  # restored after the test: the workers change them
    monkeypatch.setattr(fastpath, "_gpus_here", None)
    seen_by_cuda = []

    def cuda_starts():
        seen_by_cuda.append(os.environ["CUDA_VISIBLE_DEVICES"])
        return True

    monkeypatch.setattr(torch.cuda, "is_available", cuda_starts)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(fastpath.os, "sched_getaffinity", lambda pid: set(range(48)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 128)  # the machine: more cores than the mask
    devices = []
    for worker in range(6):  # each a fresh process, with the grid's variable
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(MIG_INSTANCES))
        devices.append(worker_device("cuda", worker, runs_per_gpu=2, log=lambda *_: None))
    assert seen_by_cuda == MIG_INSTANCES * 2
    assert [c.identity for _, c in devices] == MIG_INSTANCES * 2 and [c.slot for _, c in devices] == [0] * 3 + [1] * 3
    assert chosen == [0] * 6 and {d for d, _ in devices} == {torch.device("cuda", 0)}
    assert torch.get_num_threads() == 48 // (3 * 2)  # six runs on this machine share its 48 CPUs
    for _, claim in devices:
        claim.release()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # the instance a worker claimed shows no device (a typo, an instance destroyed since): the worker stops
    # with one line naming it, where it trained at CPU speed among the GPU runs; its claim is free again
    for name in ("auto", "cuda"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(MIG_INSTANCES))  # a fresh worker's
        with pytest.raises(DeviceFailure, match=rf"^MIG instance {MIG_INSTANCES[0]}: "):
            worker_device(name, 0, 1)
        free = gpus.claim_gpu(MIG_INSTANCES[:1], 1, 0, tmp_path)
        assert free.slot == 0
        free.release()


def test_a_grid_on_mig_instances_starts_probes_and_spawns_a_worker_per_instance(monkeypatch, tmp_path):
    """Where CUDA_VISIBLE_DEVICES names three MIG instances, CUDA shows a process one (device_count 1):
    the grid starts K workers per instance, measures each instance's free memory in its own child
    process, and runs even a single worker in a process of its own, where CUDA has not started yet."""
    from bench.run import grid

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(MIG_INSTANCES))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert grid._gpu_count() == 3
    free = dict(zip(MIG_INSTANCES, (40 * 2**30, 38 * 2**30, 79 * 2**30), strict=True))
    probed = []

    def child(argv, env=None, **kwargs):
        probed.append(env["CUDA_VISIBLE_DEVICES"])
        return subprocess.CompletedProcess(argv, 0, stdout=f"{free[env['CUDA_VISIBLE_DEVICES']]}\n", stderr="")

    monkeypatch.setattr(grid.subprocess, "run", child)
    assert grid._gpu_free_bytes() == 38 * 2**30 and probed == MIG_INSTANCES
    started, in_process = [], []

    class Process:
        def __init__(self, target, args, name):
            self.name, self.pid, self.exitcode = name, None, 0

        def start(self):
            started.append(self.name)

        def join(self, timeout=None):
            pass

        def is_alive(self):
            return False

    context = multiprocessing.get_context("spawn")
    monkeypatch.setattr(grid.multiprocessing, "get_context",
                        lambda method: types.SimpleNamespace(Process=Process, SimpleQueue=context.SimpleQueue))
    monkeypatch.setattr(grid, "worker_entry", in_process.append)
    grid._launch_local(WorkerJob("", "", "", "cuda"), 1, cuda=True)
    assert started == ["bench-worker-0"] and in_process == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    grid._launch_local(WorkerJob("", "", "", "cuda"), 1, cuda=True)
    assert started == ["bench-worker-0"] and len(in_process) == 1


def test_a_mig_box_is_counted_as_cuda_shows_it_not_as_nvml_counts_it(monkeypatch, capsys):
    """Two GPUs in MIG mode, CUDA_VISIBLE_DEVICES unset: until torch's CUDA state is initialised,
    torch.cuda.device_count() counts through NVML (2 physical GPUs), while CUDA shows the process one
    MIG instance, and device 1 raises "Invalid device id". The workers' list of GPUs, the grid's worker
    count and the free-memory probe go by what CUDA shows (the old code failed in every worker)."""
    from bench.run import grid

    initialised = []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", lambda: 1)  # CUDA's own count
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if initialised else 2)
    monkeypatch.setattr(torch.cuda, "init", lambda: initialised.append(True))

    def on_device(index, answer):
        if index >= 1:
            raise AssertionError("Invalid device id")
        return answer

    uuid = "4f0c2a1e-7d3b-5a6c-9e8f-0a1b2c3d4e5f"
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: on_device(index, types.SimpleNamespace(uuid=uuid)))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: on_device(index, (7 * 2**30, 80 * 2**30)))
    assert gpus.visible_identities() == [f"GPU-{uuid}"]
    assert grid._gpu_count() == 1 and not initialised  # the grid's own process makes no CUDA state
    exec(grid.FREE_MEMORY_PROBE, {})  # what the probe's child process runs
    assert capsys.readouterr().out == f"{7 * 2**30}\n"


def test_the_free_memory_probe_gives_the_least_free_gpu(monkeypatch, capsys):
    """Runs per GPU are chosen once for every GPU: from the one another job fills most (7 of 80 GiB free
    on GPU 1 beside 70 on GPU 0), so that no GPU is given more runs than its memory holds."""
    from bench.run import grid

    free = {0: 70 * 2**30, 1: 7 * 2**30, 2: 40 * 2**30}
    monkeypatch.setattr(torch.cuda, "init", lambda: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (free[index], 80 * 2**30))
    exec(grid.FREE_MEMORY_PROBE, {})  # what the probe's child process runs
    assert capsys.readouterr().out == f"{7 * 2**30}\n"


@pytest.mark.parametrize("visible", [None, ",".join(MIG_INSTANCES)])
def test_a_grid_says_how_to_use_the_mig_instances_nvidia_smi_lists(capsys, monkeypatch, visible):
    """With CUDA_VISIBLE_DEVICES unset, CUDA shows a process one MIG instance, so a grid would train on
    the first alone: one line gives the variable that spreads it over every instance nvidia-smi -L lists."""
    from bench.run import grid

    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    asked = []

    def nvidia_smi(argv, **kwargs):
        asked.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=NVIDIA_SMI_L_MIG, stderr="")

    assert gpus.listed_mig_instances(nvidia_smi) == MIG_INSTANCES and asked == [["nvidia-smi", "-L"]]
    grid.warn_of_unnamed_mig_instances(nvidia_smi)
    said = capsys.readouterr().err
    if visible is None:
        assert said == (f"bench grid: warning: nvidia-smi lists 3 MIG instances and CUDA shows a process only "
                        f"the first; to train on each, set CUDA_VISIBLE_DEVICES={','.join(MIG_INSTANCES)}\n")
    else:
        assert said == ""
    assert gpus.mig_instances({"CUDA_VISIBLE_DEVICES": visible or ""}) == ([] if visible is None else MIG_INSTANCES)
    assert gpus.mig_instances({"CUDA_VISIBLE_DEVICES": MIG_INSTANCES[0]}) == []  # one instance: CUDA shows it
    assert gpus.mig_instances({"CUDA_VISIBLE_DEVICES": "MIG-GPU-5d1c6a2e/1/0,MIG-GPU-5d1c6a2e/2/0"}) == [
        "MIG-GPU-5d1c6a2e/1/0", "MIG-GPU-5d1c6a2e/2/0"]  # the older form
    assert gpus.listed_mig_instances(lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("nvidia-smi"))) == []


def test_a_gpu_that_refuses_a_worker_is_one_line_and_frees_its_slot(monkeypatch, tmp_path):
    """CUDA makes a worker's context when it selects its GPU; a GPU busy in the Exclusive_Process mode,
    or broken, refuses it there, before any run is claimed. The worker stops with one line naming the
    GPU and CUDA's message (the old code: a traceback per worker), and its slot is free again."""
    from bench.core.errors import DeviceFailure

    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="77aa0e1f"))

    def busy(index):
        raise RuntimeError("CUDA error: CUDA-capable device(s) is/are busy or unavailable\n"
                           "CUDA kernel errors might be asynchronously reported at some other API call, so the "
                           "stacktrace below might be incorrect.")

    monkeypatch.setattr(torch.cuda, "set_device", busy)
    with pytest.raises(DeviceFailure) as refused:
        worker_device("cuda", 0, runs_per_gpu=1, log=lambda *_: None)
    assert str(refused.value) == ("CUDA could not start on cuda:0 (GPU-77aa0e1f): "
                                  "CUDA error: CUDA-capable device(s) is/are busy or unavailable")
    assert gpus.claim_gpu(["GPU-77aa0e1f"], 1, 0, tmp_path).slot == 0


def test_a_cuda_worker_keeps_to_its_share_of_the_cpus(monkeypatch):
    """64 cores, 8 GPUs x 4 runs: 2 CPUs per run, for torch's threads and inductor's compile processes
    (inductor would start min(32, cores) each: 1,024 Pythons with torch loaded)."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)  # not on macOS
    monkeypatch.setattr(os, "cpu_count", lambda: 128)  # the machine: more cores than the mask
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 4)
    # the config's own patch restores it (monkeypatch's undo would hide the setting from later compiles)
    with inductor_config.patch(compile_threads=inductor_config.compile_threads):
        assert fastpath.limit_worker_threads() == 2
        assert torch.get_num_threads() == 2 and inductor_config.compile_threads == 2
        assert os.environ["TORCHINDUCTOR_COMPILE_THREADS"] == "2"
        monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "6")  # the user's choice
        fastpath.limit_worker_threads()
        assert inductor_config.compile_threads == 6


# ------------------------------------------------------------------------------------------------
# 4-5. submitit: GPUs requested, device resolved on the node


def test_submitit_jobs_request_the_gpus_their_workers_use():
    job = WorkerJob("s.toml", "r", "c", "auto", runs_per_gpu=2)
    from bench.run.grid import SlurmOptions

    local = submitit_parameters(job, "submitit-local", SlurmOptions(), wants_gpu=True, visible_gpus=2)
    assert local["gpus_per_node"] == 2 and local["tasks_per_node"] == 4  # was 0 GPUs: CUDA_VISIBLE_DEVICES=""
    slurm = submitit_parameters(job, "slurm", SlurmOptions(gpus_per_job=4, cpus_per_job=16, partition="gpu"),
                                wants_gpu=True)
    assert (slurm["gpus_per_node"], slurm["tasks_per_node"], slurm["cpus_per_task"]) == (4, 8, 2)
    assert slurm["slurm_partition"] == "gpu"
    cpu = submitit_parameters(job, "submitit-local", SlurmOptions(), wants_gpu=False)
    assert cpu["gpus_per_node"] == 0 and cpu["tasks_per_node"] == 1


class StubExecutor:
    """submitit.AutoExecutor as far as the grid uses it; records what it was asked."""

    made: list = []

    def __init__(self, folder, cluster):
        self.folder, self.cluster, self.parameters = folder, cluster, {}
        StubExecutor.made.append(self)

    def update_parameters(self, **params):
        self.parameters.update(params)

    def map_array(self, fn, jobs):
        self.fn, self.jobs = fn, list(jobs)
        return [StubJob(k, self.parameters.get("tasks_per_node", 1)) for k in range(len(self.jobs))]


class StubJob:
    """A finished submitit job as far as the grid uses it; like submitit's (core.py), `result()` refuses a
    job of several tasks ("You should use `results()` if your job has subtasks")."""

    state = "COMPLETED"

    def __init__(self, k: int, tasks: int, error: Exception | None = None):
        self.job_id, self.tasks, self.error = f"100_{k}", tasks, error

    def done(self):
        return True

    def result(self):
        assert self.tasks == 1, "You should use `results()` if your job has subtasks."
        return self.results()[0]

    def results(self):
        if self.error is not None:
            raise self.error
        return [[] for _ in range(self.tasks)]


def test_slurm_with_cuda_is_submitted_from_a_login_node_without_a_gpu(monkeypatch, tmp_path):
    import submitit

    from bench.run import prepare

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(submitit, "AutoExecutor", StubExecutor)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")  # a Slurm login node
    fake_cache = type("Cache", (), {"index_path": tmp_path / "cache" / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, fake_cache, None))
    StubExecutor.made.clear()
    spec = Path(__file__).resolve().parents[1] / "tests" / "data" / "demo6.toml"
    status = run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda", launcher="slurm",
                                             workers=3, runs_per_gpu=2))
    assert status == 1  # nothing ran here (the stub), so nothing is done yet
    (executor,) = StubExecutor.made
    assert executor.cluster == "slurm" and executor.parameters["gpus_per_node"] == 1
    assert executor.parameters["tasks_per_node"] == 2
    assert [j.worker for j in executor.jobs] == [0, 1, 2]
    assert {j.device for j in executor.jobs} == {"cuda"} and {j.runs_per_gpu for j in executor.jobs} == {2}
    with pytest.raises(UserError, match="no CUDA device"):  # a local grid checks the device here
        run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda"))


def test_submitit_local_jobs_get_a_preset_gpu_selection_back_in_the_worker(monkeypatch, tmp_path):
    """The local executor exports CUDA_VISIBLE_DEVICES=0..n-1 to its jobs. The grid's own selection
    (here UUIDs) travels in the job and the worker restores it before it touches CUDA. It is not a setup
    line: submitit then starts its controller through `sh -c "export ... && python ..."`, and where
    /bin/sh is bash the shell execs the last command, so the controller takes the grid's pid for its job
    id and waits 60 s for a `<pid>_submitted.pkl` that is never written (submitit/local/local.py)."""
    import submitit

    from bench.data import cache
    from bench.run import grid, prepare

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-x,GPU-y")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(submitit, "AutoExecutor", StubExecutor)
    fake_cache = type("Cache", (), {"index_path": tmp_path / "cache" / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, fake_cache, None))
    StubExecutor.made.clear()
    spec = Path(__file__).resolve().parents[1] / "tests" / "data" / "demo6.toml"
    run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda", launcher="submitit-local",
                                    runs_per_gpu=1))
    (executor,) = StubExecutor.made
    assert "local_setup" not in executor.parameters and executor.parameters["gpus_per_node"] == 2
    (job,) = executor.jobs
    assert job.visible_devices == "GPU-x,GPU-y"

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # what the local executor exports
    monkeypatch.setattr(cache.WaveformCache, "from_index", staticmethod(lambda path: None))
    seen = []

    def device(*args):
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
        raise KeyboardInterrupt

    monkeypatch.setattr(grid, "worker_device", device)
    with pytest.raises(KeyboardInterrupt):
        grid.worker_entry(job)
    assert seen == ["GPU-x,GPU-y"]


# ------------------------------------------------------------------------------------------------
# 6. free GPU memory and the worker's resident copy


def gpu_memory(monkeypatch, free_gb: float, total_gb: float, reserved_gb: float = 0, allocated_gb: float = 0):
    """CUDA's memory queries as a GPU with these GiB would answer them; returns the device."""
    gb = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_gb * gb, total_gb * gb))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved_gb * gb)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated_gb * gb)
    return torch.device("cuda")


def test_memory_cached_by_pytorch_counts_as_available(monkeypatch):
    """80 GB card: the driver reports 10 GB free, but PyTorch's allocator holds 58 GB it does not use
    (reserved 60, allocated 2) from the previous run. 24 GB of 16 kHz waveforms fit: 0.5 x 68 = 34."""
    gb = 2**30
    cuda = gpu_memory(monkeypatch, 10, 80, reserved_gb=60, allocated_gb=2)
    assert fastpath.resident_fits(24 * gb, cuda)
    assert not fastpath.resident_fits(35 * gb, cuda)
    assert fastpath.resident_fits(35 * gb, cuda, reusable_bytes=18 * gb)  # the 12 kHz copy it replaces
    assert not fastpath.resident_fits(1, CPU)


def test_workers_sharing_a_gpu_each_get_their_share_for_waveforms(monkeypatch):
    """141 GB H200, 4 runs per GPU, all starting together: each sees 139 GB free. One worker's 24 GB
    of MTAT at 16 kHz alone would fit in half of that, but four copies (96 GB) would leave four runs
    43 GB; a worker's share is 141 / 4 GB, half of it for waveforms: 17.6 GB."""
    gb = 2**30
    cuda = gpu_memory(monkeypatch, 139, 141)
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 1)
    assert fastpath.resident_fits(24 * gb, cuda)
    fastpath.set_runs_per_gpu(4)
    assert not fastpath.resident_fits(24 * gb, cuda)
    assert fastpath.resident_fits(17 * gb, cuda) and not fastpath.resident_fits(18 * gb, cuda)


def test_a_worker_whose_gpu_is_half_taken_still_gets_its_share_for_waveforms(monkeypatch):
    """80 GB card, 2 runs per GPU, the other worker's run holding 40 GB: this worker's share is 80 / 2 =
    40 GB, all of it free, so 18 GB of waveforms fit (half of 40), 21 GB do not."""
    gb = 2**30
    cuda = gpu_memory(monkeypatch, 40, 80)
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 2)
    assert fastpath.resident_fits(18 * gb, cuda) and not fastpath.resident_fits(21 * gb, cuda)


@pytest.mark.parametrize("device, emptied", [("cuda:0", 1), ("cpu", 0)])
def test_a_released_gpu_copy_goes_back_to_the_gpu_not_to_the_workers_allocator_cache(monkeypatch, device, emptied):
    """The copy of another sample rate, released: its blocks go back to the driver (torch.cuda.empty_cache),
    where other workers on the GPU can have them and the next run's peak does not start with them in it."""
    import types

    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(True))
    monkeypatch.setattr(views, "_resident", types.SimpleNamespace(device=torch.device(device)))
    views.release_resident()
    assert views._resident is None and len(calls) == emptied


def test_a_runs_peak_memory_leaves_out_the_workers_waveform_copy(monkeypatch):
    """The allocator's peak counts every live tensor, the worker's 24 GB resident copy of MTAT at
    16 kHz too; as a run's footprint (which chooses how many runs share a GPU) it would count once
    per run on top of the copy that `auto_runs_per_gpu` already leaves room for."""
    gb = 2**30
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 30 * gb)
    assert train.run_peak_memory(torch.device("cuda"), resident_bytes=24 * gb) == 6 * gb
    assert train.run_peak_memory(torch.device("cuda"), resident_bytes=0) == 30 * gb
    assert train.run_peak_memory(CPU, resident_bytes=0) is None
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 33 * gb)  # 3 GB cached, free
    assert train.run_peak_memory(torch.device("cuda"), resident_bytes=24 * gb, reserved=True) == 9 * gb


def test_a_runs_peak_is_counted_from_after_its_trainer_is_built(monkeypatch, tmp_path):
    """Building the trainer releases the worker's waveforms of the previous run's sample rate (23 GB
    for MTAT at 16 kHz) and uploads this rate's: a peak counted from before that would hold the old
    copy too, and the run's footprint, which chooses runs per GPU, would be that much too large."""
    events = []

    class Built(Exception):
        pass

    class Trainer:
        def __init__(self, *args, **kwargs):
            events.append("trainer built (the old copy released, the new one uploaded)")
            self.path = types.SimpleNamespace(compile=False)

    monkeypatch.setattr(train, "Trainer", Trainer)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: events.append("peak reset"))
    monkeypatch.setattr(train, "CheckpointPolicy", lambda: (_ for _ in ()).throw(Built()))
    (run,) = tiny_runs(epochs=1)
    with pytest.raises(Built):
        train.train_run(run, ToyCache(), tmp_path, torch.device("cuda"), log=lambda *_: None)
    assert events == ["trainer built (the old copy released, the new one uploaded)", "peak reset"]


def write_cache_folder(folder: Path, n: int, samples: int):
    """A finished waveform cache's two files (random float16 waveforms, every clip decoded); returns
    the waveforms."""
    from bench.data.cached_waveforms import MANIFEST, WAVEFORMS

    waves = np.random.default_rng(0).standard_normal((n, samples)).astype(np.float16)
    waves.tofile(folder / WAVEFORMS)
    (folder / MANIFEST).write_text(json.dumps({"sample_rate": 16000, "status": [1] * n, "n_clips": n,
                                               "clip_samples": samples}))
    return waves


def test_the_upload_to_the_device_copies_from_the_read_only_cache(monkeypatch, tmp_path):
    """The cache is mapped read-only: a tensor on a read-only array makes torch warn, once in each
    worker's log, that writing to it is undefined. The upload reads chunks of it into arrays of its own."""
    from types import SimpleNamespace

    from bench.data.cached_waveforms import CachedWaveforms

    waves = write_cache_folder(tmp_path, n=5, samples=100)
    cache = CachedWaveforms(tmp_path, SimpleNamespace(clips=[], tag_names=["a"]))
    assert not cache.waveforms.flags.writeable
    given = []
    real = torch.from_numpy
    monkeypatch.setattr(views.torch, "from_numpy", lambda array: (given.append(array.flags.writeable), real(array))[1])
    monkeypatch.setattr(views.ResidentWaveforms, "COPY_ROWS", 2)
    resident = views.ResidentWaveforms(cache, CPU)
    assert given == [True, True, True]  # rows 0-1, 2-3, 4
    assert np.array_equal(resident.waves.numpy(), waves)


def test_reading_per_batch_gives_the_cache_rows_epoch_after_epoch(tmp_path):
    """Waveforms that do not stay on the GPU (and on the CPU, all) are read per batch from the cache:
    epoch after epoch, each batch is the cached rows of its clips, in order."""
    from bench.data.cached_waveforms import CachedWaveforms
    from bench.data.index import Clip, DatasetIndex

    n = 24
    waves = write_cache_folder(tmp_path, n=n, samples=800)
    clips = tuple(Clip(str(i), f"{i}.wav", "train" if i % 3 else "valid", (i % 2,)) for i in range(n))
    cache = CachedWaveforms(tmp_path, DatasetIndex("toy", str(tmp_path), ("even", "odd"), clips))
    dataset = views.ClipDataset(cache, "train")
    reader = views.ReadBatches(dataset, 5)
    for epoch in range(2):
        order = views.epoch_order(len(dataset), True, torch.Generator().manual_seed(epoch))
        got = list(reader.batches(order))
        assert [len(w) for w, _ in got] == [5, 5, 5, 1]  # 16 training clips
        # on the CPU, whose cores the step uses, the reads are the calling thread's: no thread alongside
        assert not [t for t in threading.enumerate() if t.name.startswith("bench-reader")]
        for (wave, target), index in zip(got, order.split(5), strict=True):
            rows = dataset.rows[index.numpy()]
            assert torch.equal(wave, torch.from_numpy(waves[rows])) and wave.dtype == torch.float16
            assert target[:, 1].tolist() == [float(r % 2) for r in rows]  # clip i is tagged "odd" where i is
    reader.close()


def test_a_reader_serves_one_pass_at_a_time(tmp_path):
    """The pinned buffers are the reader's: an earlier pass iterated again after a later one started
    would be handed the later one's batches; it raises instead."""
    from bench.data.cached_waveforms import CachedWaveforms
    from bench.data.index import Clip, DatasetIndex

    write_cache_folder(tmp_path, n=8, samples=100)
    clips = tuple(Clip(str(i), f"{i}.wav", "train", (i % 2,)) for i in range(8))
    reader = views.ReadBatches(views.ClipDataset(CachedWaveforms(tmp_path, DatasetIndex(
        "toy", str(tmp_path), ("a", "b"), clips)), "train"), 2)
    first = reader.batches(torch.arange(8))
    next(first)
    second = reader.batches(torch.arange(8).flip(0))
    assert next(second)[1].shape == (2, 2)
    with pytest.raises(RuntimeError, match="one pass at a time"):
        next(first)
    assert len(list(second)) == 3
    reader.close()


def test_reading_on_cuda_reuses_pinned_buffers_only_once_their_copy_has_reached_the_gpu(monkeypatch, tmp_path):
    """On CUDA a batch is read into pinned buffers and copied to the device without waiting (a host sync
    per step otherwise); the buffers are reused in turn, each only after its last copy is done (the
    copy's CUDA event), and are allocated once per reader: 3 pairs, for the batch being copied and
    the 2 read ahead. The device copy is stood in for by a host copy."""
    from bench.data.cached_waveforms import CachedWaveforms
    from bench.data.index import Clip, DatasetIndex

    waves = write_cache_folder(tmp_path, n=16, samples=400)
    clips = tuple(Clip(str(i), f"{i}.wav", "train", (i % 2,)) for i in range(16))
    dataset = views.ClipDataset(CachedWaveforms(tmp_path, DatasetIndex("toy", str(tmp_path), ("a", "b"), clips)),
                                "train")
    pinned, log = [], []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: (pinned.append(tuple(self.shape)), self)[1])

    class Event:
        made = itertools.count()

        def __init__(self, blocking=False):
            self.serial = next(self.made)
            assert blocking  # the reader sleeps while it waits (cudaEventBlockingSync), not spin a core

        def record(self):
            log.append(("copied", self.serial))

        def synchronize(self):
            log.append(("waited", self.serial))

    monkeypatch.setattr(torch.cuda, "Event", Event)
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        if args and torch.device(args[0]).type == "cuda":
            assert kwargs.get("non_blocking") and self.data_ptr() in {p.data_ptr() for p in buffers()}
            return self.clone()
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    # the worker's GPU is the current device of the thread that made the reader; the reading thread's
    # starts at GPU 0 (CUDA's current device is per thread) and is set before it reads
    chosen = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: chosen.append((threading.current_thread().name, index)))
    reader = views.ReadBatches(dataset, 4, "cuda")

    def buffers():
        return [t for slot in reader.slots for t in slot[:2]]

    for epoch in range(2):
        order = views.epoch_order(16, True, torch.Generator().manual_seed(epoch))
        for (wave, _), index in zip(reader.batches(order), order.split(4), strict=True):
            assert torch.equal(wave, torch.from_numpy(waves[index.numpy()]))
    assert pinned == [(4, 400), (4, 2)] * 3
    recorded = [e for what, e in log if what == "copied"]
    waited = [e for what, e in log if what == "waited"]
    assert len(recorded) == 8 and len(waited) == 8 - 3  # every batch but the first use of each pair
    # each wait is for the last copy out of the same buffers: batch k of an epoch uses pair k % 3
    last_use, expected = {}, []
    for k, pair in enumerate([0, 1, 2, 0] * 2):
        if pair in last_use:
            expected.append(recorded[last_use[pair]])
        last_use[pair] = k
    assert waited == expected
    assert [(name.startswith("bench-reader"), index) for name, index in chosen] == [(True, 1)]
    reader.close()
    assert not reader.slots and not [t for t in threading.enumerate() if t.name.startswith("bench-reader")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
def test_a_released_gpu_slot_is_free_though_a_forked_process_shares_it(tmp_path):
    from bench.core.store import lock_held, try_lock
    from bench.run.gpus import GpuClaim

    claim = GpuClaim(0, "GPU-x", 0, try_lock(tmp_path / "slot", "worker"))
    child = os.fork()
    if child == 0:  # a forked process that keeps what it inherited, for a while
        time.sleep(5)
        os._exit(0)
    try:
        claim.release()
        held = lock_held(tmp_path / "slot")
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert not held


@pytest.mark.parametrize("written_on", ["cuda", "cpu"])
def test_resumed_adam_steps_as_this_device_says_whatever_device_wrote_the_checkpoint(written_on):
    """A checkpoint written on CUDA (fused Adam, channels_last weights and states) resumed on the CPU
    (NCHW, unfused), or the other way round. `load_state_dict` alone brings back the writer's `fused`
    flag and keeps its states' layout, and fused Adam on parameters and states of different strides
    computes wrong updates. The next step must equal the step the run would have taken where it was.
    (Fused Adam runs on the CPU too, which stands in for CUDA here.)"""
    from bench.train.fastpath import baseline

    cuda_like = {"fused": True, "layout": torch.channels_last}
    cpu_like = {"fused": None, "layout": torch.contiguous_format}
    writer, reader = (cuda_like, cpu_like) if written_on == "cuda" else (cpu_like, cuda_like)
    torch.manual_seed(0)
    there = nn.Conv2d(4, 8, 3).to(memory_format=writer["layout"])
    written = torch.optim.Adam(there.parameters(), lr=1e-2, fused=writer["fused"])
    grads = [[torch.randn(p.shape) for p in there.parameters()] for _ in range(3)]

    def set_grads(model, step):
        for p, g in zip(model.parameters(), step, strict=True):
            p.grad = torch.empty_like(p).copy_(g)

    for step in grads[:2]:
        set_grads(there, step)
        written.step()
    buffer = io.BytesIO()  # through a file, as a checkpoint: a state_dict shares the live state tensors
    torch.save(written.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, map_location="cpu", weights_only=True)
    here = nn.Conv2d(4, 8, 3).to(memory_format=reader["layout"])
    here.load_state_dict(there.state_dict())
    resumed = torch.optim.Adam(here.parameters(), lr=1e-2, fused=reader["fused"])
    path = dataclasses.replace(baseline(CPU), fused_adam=bool(reader["fused"]))
    train.load_optimizer_state(resumed, state, path)
    assert all(g["fused"] == reader["fused"] for g in resumed.param_groups)
    set_grads(there, grads[2])
    set_grads(here, grads[2])
    written.step()
    resumed.step()
    for a, b in zip(there.parameters(), here.parameters(), strict=True):
        torch.testing.assert_close(b.contiguous(), a.contiguous(), rtol=1e-6, atol=1e-7)


def test_a_finished_runs_model_is_freed_before_the_next_run(monkeypatch, tmp_path):
    """A compiled model lives in a reference cycle; left to the garbage collector's schedule, a
    worker's next run would start with the previous run's weights and optimiser state still held."""
    import gc
    import weakref

    monkeypatch.setenv("BENCH_COMPILE", "1")
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")
    built = []
    real = train.architectures.build
    monkeypatch.setattr(train.architectures, "build",
                        lambda *a, **k: (built.append(weakref.ref(m := real(*a, **k))), m)[1])
    (run,) = tiny_runs(epochs=1)
    gc.disable()  # only what train_run frees itself counts
    try:
        train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)
        assert built and all(model() is None for model in built)
    finally:
        gc.enable()


@pytest.mark.parametrize("compiled", ["1", "0"])
def test_a_failed_runs_model_is_freed_before_the_next_run(monkeypatch, tmp_path, compiled):
    """A run that fails (here a NaN loss) leaves its model in the exception's traceback: freeing it
    must not wait for the runner to drop the exception, nor for the collector, or the worker's next run
    starts with the dead run's weights on the GPU (in its memory peak, beside a second resident copy)."""
    import gc
    import weakref

    monkeypatch.setenv("BENCH_COMPILE", compiled)
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "eager")
    built, freed_at_release = [], []
    real = train.architectures.build
    monkeypatch.setattr(train.architectures, "build",
                        lambda *a, **k: (built.append(weakref.ref(m := real(*a, **k))), m)[1])
    forward = train.Trainer._forward
    monkeypatch.setattr(train.Trainer, "_forward", lambda self, mel: forward(self, mel) * float("nan"))
    release = train.release_run_memory

    def releasing(device, was_compiled):
        release(device, was_compiled)
        freed_at_release.append(all(model() is None for model in built))

    monkeypatch.setattr(train, "release_run_memory", releasing)
    (run,) = tiny_runs(epochs=1)
    gc.disable()  # only what train_run frees itself counts
    try:
        with pytest.raises(train.NonFiniteLoss) as failure:
            train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)
        assert built and freed_at_release == [True]  # freed while the failure was still being raised
        assert "_train_run" in "".join(traceback.format_tb(failure.value.__traceback__))  # the lines stay
    finally:
        gc.enable()


def test_one_resident_copy_per_worker_is_reused_by_its_runs(monkeypatch, tmp_path):
    uploads = []
    real = views.ResidentWaveforms.__init__

    def counting(self, cache, device):
        uploads.append(cache.folder)
        real(self, cache, device)

    monkeypatch.setattr(views.ResidentWaveforms, "__init__", counting)
    asked = []

    def fits(n_bytes, reusable):
        asked.append((n_bytes, reusable))
        return True

    rate_12k, rate_16k = ToyCache(sample_rate=12000), ToyCache()
    first = views.resident_waveforms(rate_16k, CPU, fits)
    assert views.resident_waveforms(rate_16k, CPU, fits) is first  # the next run at 16 kHz: no upload
    second = views.resident_waveforms(rate_12k, CPU, fits)
    assert second is not first and uploads == [rate_16k.folder, rate_12k.folder]
    # the 16 kHz copy (40 clips x 16000 samples x 2 bytes) was counted as reusable for the 12 kHz one
    assert asked == [(40 * 16000 * 2, 0), (40 * 12000 * 2, 40 * 16000 * 2)]
    assert views.resident_waveforms(rate_16k, CPU, lambda n, r: False) is None
    assert views._resident is None  # the 12 kHz copy is not kept for a run on the loader path


# ------------------------------------------------------------------------------------------------
# efficient training: fused Adam, checkpoints, MusiCNN segments


def test_cuda_fast_path_uses_fused_adam(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(fastpath.shutil, "which", lambda name: name)
    path = fastpath.fast_path(torch.device("cuda"), "auto", planned_steps=10**6)
    assert path.fused_adam and path.amp_dtype == "bfloat16" and path.compile and path.channels_last
    assert not fastpath.fast_path(CPU, "fp32").fused_adam


def test_a_gpu_that_only_emulates_bf16_trains_in_fp16(monkeypatch):
    """torch.cuda.is_bf16_supported() says True on a V100 or T4 (compute capability 7.x), where bf16
    is emulated; only Ampere (8.0) and later compute it. Those older GPUs must take fp16 + loss scaling."""
    def v100(including_emulation: bool = True) -> bool:  # torch's logic for a 7.0 device
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", v100)
    assert not fastpath.native_bf16(torch.device("cuda"))
    assert fastpath.fast_path(torch.device("cuda"), "auto").amp_dtype == "float16"
    assert fastpath.fast_path(torch.device("cuda"), "bf16").amp_dtype == "float16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an H100
    assert fastpath.fast_path(torch.device("cuda"), "auto").amp_dtype == "bfloat16"


def test_fp32_precision_means_no_tf32_convolutions_on_a_gpu(monkeypatch):
    """cuDNN runs fp32 convolutions in TF32 (10-bit mantissa) on Ampere and later unless told not to:
    a grid asked for fp32 must not train at TF32 precision."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # restored after the test
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    exact = fastpath.fast_path(torch.device("cuda"), "fp32")
    assert exact.amp_dtype is None and not exact.tf32
    exact.prepare_model(nn.Linear(2, 2))
    assert torch.backends.cudnn.allow_tf32 is False
    fastpath.fast_path(torch.device("cuda"), "auto").prepare_model(nn.Linear(2, 2))
    assert torch.backends.cudnn.allow_tf32 is True  # set both ways: a later run in the process is not left fp32


def test_the_cpus_are_shared_among_the_runs_on_the_machine(monkeypatch):
    """A run's CPUs (its torch threads, with which it reads its batches): one run alone on a 16-core
    GPU box has 16; 8 GPUs x 4 runs on a 64-core node get 64 // 32 = 2 each; 4 cores with 2 runs on one
    GPU, 2; 2 cores among 16 runs, still 1."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 1)

    def box(cpus: int, gpus: int) -> None:
        monkeypatch.setattr(fastpath.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 128)  # the machine: more cores than the mask
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)

    box(16, 1)
    assert fastpath.cpu_share() == 16
    box(64, 8)
    fastpath.set_runs_per_gpu(4)
    assert fastpath.cpu_share() == 2
    box(4, 1)
    fastpath.set_runs_per_gpu(2)
    assert fastpath.cpu_share() == 2
    box(2, 8)
    assert fastpath.cpu_share() == 1  # at least one


def gpu_box_grid(monkeypatch, tmp_path, count: int = 2, runs_per_gpu: int = 4) -> Path:
    """A box whose CUDA shows `count` GPUs (none exclusive) and whose memory allows `runs_per_gpu` runs on
    each, with the data prepared already: the demo6 spec to run `run_grid` on as far as its launch."""
    from bench.run import grid, prepare

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: count)
    monkeypatch.setattr(grid, "exclusive_gpus", lambda: [])
    monkeypatch.setattr(grid, "auto_runs_per_gpu", lambda *args, **kwargs: (runs_per_gpu, "the footprint's estimate"))
    fake_cache = type("Cache", (), {"index_path": tmp_path / "cache" / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, fake_cache, None))
    return Path(__file__).resolve().parents[1] / "tests" / "data" / "demo6.toml"


@pytest.mark.parametrize("options, runs_per_gpu, workers_here, says", [
    # one worker on a 2-GPU box whose memory allows 4 runs per GPU: it is alone on its GPU and the box
    ({"workers": 1}, 1, 1, "runs per GPU: 1 (--workers 1 on 2 GPU(s); the memory allows 4: "),
    ({"workers": 3}, 2, 3, "runs per GPU: 2 (--workers 3 on 2 GPU(s); the memory allows 4: "),
    # no more workers than the grid's 6 runs, whether asked for 9 or the GPUs' 8 slots allow them
    ({"workers": 9}, 3, 6, "runs per GPU: 3 (--workers 6 on 2 GPU(s); the memory allows 4: "),
    ({}, 4, 6, "runs per GPU: 4 ("),
    ({"workers": 1, "runs_per_gpu": 3}, 1, 1, None),  # an explicit K: at most K, here the one worker
])
def test_a_grid_of_fewer_workers_gives_each_its_share_of_the_gpu_and_the_cpus(
        monkeypatch, tmp_path, capsys, options, runs_per_gpu, workers_here, says):
    """Local workers spread over the GPUs, slot 0 of each first: `--workers N` on G GPUs puts ceil(N / G)
    on a GPU. A worker's share of its GPU's memory (its waveform copy) and of the box's CPUs is that of
    the workers there are, not of the K per GPU the memory would allow: the only worker on a 16-CPU box
    of 2 idle 80 GiB GPUs reads with 16 threads and may hold 24 GiB of waveforms (MTAT at 16 kHz)."""
    from bench.run import grid

    spec = gpu_box_grid(monkeypatch, tmp_path)
    launched = []
    monkeypatch.setattr(grid, "_launch_local", lambda job, n, cuda: launched.append((job, n)))
    run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda", **options))
    ((job, n),) = launched
    assert (job.runs_per_gpu, job.workers_here, n) == (runs_per_gpu, workers_here, workers_here)
    out = capsys.readouterr().out
    assert (says in out) if says else "runs per GPU" not in out, out

    monkeypatch.setattr(fastpath.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    fastpath.set_runs_per_gpu(job.runs_per_gpu, None, job.workers_here)  # as the worker's device claim does
    assert fastpath.cpu_share() == 16 // workers_here
    assert fastpath.resident_fits(24 * 2**30, torch.device("cuda", 0)) == (runs_per_gpu == 1)


def test_workers_beyond_the_runs_left_are_not_counted_against_an_exclusive_gpu(monkeypatch, tmp_path):
    """`--shard 1/6 --workers 4` leaves one run, so one worker starts: the check of a GPU that takes one
    process at a time counted the 4 asked for and refused the grid."""
    from bench.run import grid

    spec = gpu_box_grid(monkeypatch, tmp_path, count=1, runs_per_gpu=1)
    monkeypatch.setattr(grid, "exclusive_gpus", lambda: ["0 (GPU-77aa0e1f, Exclusive_Process)"])
    launched = []
    monkeypatch.setattr(grid, "_launch_local", lambda job, n, cuda: launched.append((n, job.workers_here)) or [])
    run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda", workers=4, shard_text="1/6"))
    assert launched == [(1, 1)]


@pytest.mark.parametrize("cuda", [True, False])
def test_this_machines_workers_train_on_the_device_the_grid_resolved(monkeypatch, tmp_path, cuda):
    """`--device auto`: the grid says where it trains (CUDA, or the CPU with a warning) and its workers
    train there, each not resolving `auto` again: a worker whose MIG instance CUDA cannot open stops
    with one line instead of training on the CPU among the GPU runs."""
    from bench.run import grid

    spec = gpu_box_grid(monkeypatch, tmp_path, count=2 if cuda else 0, runs_per_gpu=1)
    launched = []
    monkeypatch.setattr(grid, "_launch_local", lambda job, n, cuda: launched.append(job))
    run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="auto"))
    assert [job.device for job in launched] == ["cuda" if cuda else "cpu"]


def test_submitit_local_jobs_share_the_runs_per_gpu_the_memory_allows(monkeypatch, tmp_path, capsys):
    """Each submitit-local job runs K workers on every GPU of the machine: 2 jobs where the memory allows
    4 runs per GPU run 2 each, and their 2 x 2 GPUs x 2 tasks share the CPUs."""
    import submitit

    spec = gpu_box_grid(monkeypatch, tmp_path)
    monkeypatch.setattr(submitit, "AutoExecutor", StubExecutor)
    StubExecutor.made.clear()
    run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda", launcher="submitit-local",
                                    workers=2))
    (executor,) = StubExecutor.made
    jobs = executor.jobs
    per_gpu = len(jobs) * executor.parameters["tasks_per_node"] // executor.parameters["gpus_per_node"]
    assert per_gpu == 4 and all(job.runs_per_gpu == 2 and job.workers_here == 8 for job in jobs)
    assert "runs per GPU: 2 (the footprint's estimate, shared by --workers 2 submitit-local jobs: 2 each" in \
        capsys.readouterr().out


def test_submitit_local_jobs_on_the_cpu_share_its_cores_as_local_workers_do(monkeypatch, tmp_path):
    """N local workers on the CPU each get 1/N of the cores; N submitit-local jobs each ran torch on all
    of them (2 jobs on 2 cores trained 20-30x slower than 2 local workers)."""
    import submitit

    from bench.run import grid

    spec = gpu_box_grid(monkeypatch, tmp_path, count=0)
    monkeypatch.setattr(grid, "usable_cpus", lambda: 8)
    monkeypatch.setattr(submitit, "AutoExecutor", StubExecutor)
    StubExecutor.made.clear()
    run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cpu", launcher="submitit-local",
                                    workers=2))
    (executor,) = StubExecutor.made
    assert [job.threads for job in executor.jobs] == [4, 4]


def test_a_slurm_task_reads_with_its_own_cpus(monkeypatch):
    """`--launcher slurm` runs GPUs x runs-per-GPU tasks per job, each given cpus_per_task CPUs (64 //
    8 = 8 here) and seeing all the job's GPUs: its CPUs are its share already, bound to it or not.
    Dividing them again by the runs on the node would leave each split one reader."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 4)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "8")
    for bound in (8, 64):  # the task bound to its 8 CPUs, or free to use the job's 64
        monkeypatch.setattr(fastpath.os, "sched_getaffinity", lambda pid, n=bound: set(range(n)), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 128)  # the machine: more cores than the mask
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
        assert fastpath.cpu_share() == 8
        # `bench grid` itself inside an allocation (the local launcher): its workers share the CPUs
        monkeypatch.delenv("SUBMITIT_EXECUTOR")
        assert fastpath.cpu_share() == {8: 1, 64: 8}[bound]  # 8 runs share them
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert fastpath.cpu_share() == 2


def test_checkpoint_policy_keeps_checkpointing_under_five_percent():
    policy = train.CheckpointPolicy(max_overhead=0.05)
    assert policy.due(0.0)  # the first epoch: nothing written yet
    policy.written(10.0, 12.0)  # a checkpoint took 2 s
    assert not policy.due(12.0 + 39.9)
    assert policy.due(12.0 + 40.0)  # 2 s / 0.05


def test_best_weights_between_checkpoints_survive_a_kill(monkeypatch, tmp_path):
    """Checkpoints only every other epoch: a kill right after a checkpoint whose best epoch has no
    best.pt yet finds the best weights inside the checkpoint, and the run resumes from there."""
    monkeypatch.setattr(train.CheckpointPolicy, "due", lambda self, now: self.last_written is None)
    saved = []
    real_save = train.save_torch

    def save_then_die(path, obj):
        real_save(path, obj)
        saved.append(Path(path).name)
        if Path(path).name == train.CHECKPOINT and len(saved) > 2:
            raise KeyboardInterrupt  # killed between checkpoint.pt and best.pt

    scores = iter([0.5, 0.9, 0.6])  # validation ROC-AUC per epoch: epoch 2 is the best
    real_evaluate = train.Trainer.evaluate
    monkeypatch.setattr(train.Trainer, "evaluate",
                        lambda self, split: {**real_evaluate(self, split), "roc_auc": next(scores)})
    (run,) = tiny_runs(epochs=3)
    cache = ToyCache()
    monkeypatch.setattr(train, "save_torch", save_then_die)
    try:
        train.train_run(run, cache, tmp_path, CPU, log=lambda *_: None)
    except KeyboardInterrupt:
        pass
    state = train.read_checkpoint(tmp_path / train.CHECKPOINT, run.run_id)
    assert state["epoch"] == 3
    monkeypatch.setattr(train, "save_torch", real_save)
    lines = []
    resumed = train.resume_state(tmp_path, run.run_id, lines.append)
    assert resumed is not None and resumed["epoch"] == 3
    assert saved == [train.CHECKPOINT, train.BEST, train.CHECKPOINT]  # epoch 1 (best), then epoch 3
    assert state["best"]["epoch"] == 2
    model = train.read_best(tmp_path / train.BEST, 2)  # rewritten from the checkpoint on resume
    assert all(torch.equal(model[k], state["best_model"][k]) for k in state["best_model"])
    assert not any(torch.equal(state["model"][k], state["best_model"][k]) for k in state["model"]
                   if k.endswith("weight"))


def test_musicnn_trains_on_segment_frames_only(monkeypatch, tmp_path):
    """The front end computes the segment's frames, not the whole clip's (which it used to cut). Here
    16 kHz with hop 2 x 256 = 512 samples: a 0.5 s segment is 8,000 / 512 = 15 whole frames; a 2 s
    clip, centred, 1 + 32,000 / 512 = 63, in which evaluation finds 63 // 15 = 4 segments."""
    (run,) = tiny_runs(archs=("musicnn",), epochs=1, seconds=2.0)
    trainer = train.Trainer(run, ToyCache(seconds=2.0), CPU, log=lambda *_: None)
    frames = []  # the frames of every power spectrogram the mel filterbank is given
    real = trainer.frontend.mel.mel_scale.forward
    monkeypatch.setattr(trainer.frontend.mel.mel_scale, "forward",
                        lambda power: (frames.append(power.shape[-1]), real(power))[1])
    inputs = []
    trainer.model.register_forward_pre_hook(lambda _module, args: inputs.append(tuple(args[0].shape[-2:])))
    trainer.train_epoch(1)
    assert frames and set(frames) == {15}  # training never computed the whole clip's frames
    assert set(inputs) == {(16, 15)}  # 16 mel bands
    frames.clear()
    inputs.clear()
    trainer.evaluate("valid")
    assert set(frames) == {63} and trainer.model.segments == 4  # evaluation: the clip, every segment used


# ------------------------------------------------------------------------------------------------
# runs per GPU


def test_runs_per_gpu_from_memory_and_footprint(tmp_path):
    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "paper-mtat-vgg.toml")
    runs = spec.runs()
    k_small, _ = auto_runs_per_gpu(spec, [r for r in runs if r.mel.n_mels == 48 and r.mel.hop_multiplier == 10],
                                   tmp_path, memory_bytes=80 * 2**30)
    k_large, why = auto_runs_per_gpu(spec, runs, tmp_path, memory_bytes=80 * 2**30)
    # the largest, 128 x 1820 at 16 kHz, holds 14.9 GiB in evaluation (tests/test_cost.py): 40 GiB // 14.9 = 2
    assert k_small == 4 and k_large == 2 and "14.9 GiB (estimated)" in why
    assert auto_runs_per_gpu(spec, runs, tmp_path, memory_bytes=16 * 2**30)[0] == 1


def test_runs_per_gpu_counts_the_memory_other_processes_hold(monkeypatch, tmp_path):
    """Without --gpu-mem-gb, K comes from the GPUs' free memory, measured by a child process (a CUDA
    context in the grid's own process would hold memory on every GPU while it waits): an 80 GB GPU
    of which another tenant holds 48 GB takes one run of the largest configuration, not two."""
    from bench.run import grid

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "paper-mtat-vgg.toml")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    probes = []

    def child(argv, **kwargs):
        probes.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=f"{32 * 2**30}\n", stderr="")

    monkeypatch.setattr(grid.subprocess, "run", child)
    monkeypatch.setattr(grid, "exclusive_gpus", lambda: [])  # the default compute mode
    k, why = auto_runs_per_gpu(spec, spec.runs(), tmp_path)
    assert k == 1 and why.endswith("on 32 GiB free") and probes[0][0] == sys.executable
    monkeypatch.setattr(grid.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(
        subprocess.CalledProcessError(1, a[0])))
    assert auto_runs_per_gpu(spec, spec.runs(), tmp_path)[0] == 1  # not measured: one run per GPU


def test_bench_perf_counts_free_what_it_holds_itself_when_it_asks_how_many_runs_a_grid_would_place(monkeypatch):
    """`bench perf`'s shared projection takes K from a free-memory probe, a process of its own, which sees
    the memory `bench perf` still holds after its measurements (its allocator's cache, ~10 GiB on an H100,
    and its CUDA context) as used; a grid's probe finds it free. The cache is emptied first and what stays
    (live tensors and the context allowance) is counted free."""
    from bench.run import grid
    from bench.tools import perf

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "paper-mtat-vgg.toml")
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2**29)  # 0.5 GiB still live
    monkeypatch.setattr(grid, "exclusive_gpus", lambda: [])
    monkeypatch.setattr(grid, "_gpu_free_bytes", lambda: (calls.append("probe"), 126 * 2**30)[1])
    k, why = perf.runs_at_once_here(spec, torch.device("cuda", 0), compiled=False)
    assert calls == ["empty_cache", "probe"]
    assert why.endswith("on 128 GiB free")  # 126 + 0.5 + the 1 GiB context allowance, rounded
    assert k == grid.auto_runs_per_gpu(spec, spec.runs(), Path("/nonexistent"), memory_bytes=int(127.5 * 2**30))[0]


NVIDIA_SMI_MODES = """0, GPU-5d1c6a2e-3b0f-4e8e-9c57-0a1b2c3d4e5f, Default, NVIDIA A100-SXM4-80GB
1, GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff, Exclusive_Process, NVIDIA A100-SXM4-80GB
2, GPU-90bb1f2a-3d4e-4c6b-9f0a-bbccddeeff00, [N/A], NVIDIA A100-SXM4-80GB
"""


@pytest.mark.parametrize(("visible", "found"), [
    (None, ["1 (GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff, Exclusive_Process)"]),
    ("0", []), ("1", ["1 (GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff, Exclusive_Process)"]),
    ("GPU-77aa0e1f", ["1 (GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff, Exclusive_Process)"]),
    ("GPU-5d1c6a2e-3b0f-4e8e-9c57-0a1b2c3d4e5f", []),
    # CUDA shows the entries before the first invalid one (NVIDIA's CUDA Programming Guide, "0,2,-1,1"
    # shows 0 and 2): GPU 1 is hidden after a negative, empty, missing index or an unknown UUID
    ("0,2,-1,1", []), ("0,2,,1", []), ("0,2,7,1", []), ("0,3,1", []), ("0,GPU-ffff,1", []),  # 3 GPUs: 0-2
    ("2, 1", ["1 (GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff, Exclusive_Process)"]),
    ("1gpu", ["1 (GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff, Exclusive_Process)"])])  # read as strtoul reads it
def test_several_runs_per_gpu_are_not_chosen_where_a_gpu_takes_one_process(monkeypatch, tmp_path, visible, found):
    """Clusters often set GPUs to the Exclusive_Process compute mode, where a second process's CUDA
    fails to start: runs per GPU is then 1. What nvidia-smi lists, for the GPUs this process sees."""
    from bench.run import gpus, grid

    asked = []

    def nvidia_smi(argv, **kwargs):
        asked.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=NVIDIA_SMI_MODES, stderr="")

    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert gpus.exclusive_gpus(environ, nvidia_smi) == found
    assert asked[0][:2] == ["nvidia-smi", "--query-gpu=index,uuid,compute_mode,name"]
    assert gpus.exclusive_gpus(environ, lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("nvidia-smi"))) == []
    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "paper-mtat-vgg.toml")
    monkeypatch.setattr(grid, "exclusive_gpus", lambda: found)
    monkeypatch.setattr(grid, "_gpu_free_bytes", lambda: 140 * 2**30)
    small = [r for r in spec.runs() if (r.mel.sample_rate, r.mel.n_mels, r.mel.hop_multiplier) == (12000, 32, 1)]
    k, why = auto_runs_per_gpu(spec, small, tmp_path)
    assert k == (1 if found else 4), why  # 3.3 GiB estimated per run on 140 GiB free: the cap of 4


# a workstation of two models: nvidia-smi lists them in PCI bus order, the RTX 4090 first
NVIDIA_SMI_MIXED = """0, GPU-1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b, Exclusive_Process, NVIDIA GeForce RTX 4090
1, GPU-a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d, Default, NVIDIA H100 PCIe
"""


@pytest.mark.parametrize(("environ", "flagged"), [
    ({"CUDA_VISIBLE_DEVICES": "1"}, True),  # CUDA's device 1 may be the RTX 4090
    ({"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, False),  # it is the H100
    ({"CUDA_VISIBLE_DEVICES": "GPU-a9b8c7d6"}, False),  # a UUID names one GPU whatever the order
    ({"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, True)])
def test_an_index_is_matched_to_nvidia_smis_gpus_only_where_cuda_numbers_them_alike(environ, flagged):
    """CUDA numbers GPUs fastest first (the H100 here would be CUDA's device 0) unless CUDA_DEVICE_ORDER
    is PCI_BUS_ID, while nvidia-smi numbers them in PCI bus order: on a box of mixed models an index
    cannot be matched to nvidia-smi's, and the one-process GPU counts."""
    found = gpus.exclusive_gpus(environ, lambda argv, **kwargs: subprocess.CompletedProcess(argv, 0, NVIDIA_SMI_MIXED))
    assert bool(found) == flagged
    assert all(f.startswith("0 (GPU-1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b, Exclusive_Process") for f in found)
    assert ("CUDA_DEVICE_ORDER is not PCI_BUS_ID" in "".join(found)) == ("CUDA_DEVICE_ORDER" not in environ and flagged)


# ------------------------------------------------------------------------------------------------
# make gpu-check


H100 = "GPU-5c1f4a2e-8b1d-4f3e-9a7c-2d6e8f0a1b3c"
OTHER = "GPU-9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
# what nvidia-smi prints for the two queries (csv,noheader,nounits) on a node where another job trains
# on our GPU and a third process holds the other GPU; MIG mode reports no utilisation
GPU_LOAD = f"{H100}, 87, 20987\n{OTHER}, [N/A], 0\n"
GPU_APPS = f"31337, {H100}, 20460\n4242, {OTHER}, 512\n"


def answers(load: str, apps: str):
    def nvidia_smi(argv, run=None):
        return {"--query-gpu=uuid,utilization.gpu,memory.used": load,  # other queries: as if it failed
                "--query-compute-apps=pid,gpu_uuid,used_memory": apps}.get(argv[0])
    return nvidia_smi


def test_another_job_on_the_gpu_is_found_and_said_before_a_measurement(monkeypatch):
    monkeypatch.setattr(gpus, "nvidia_smi", answers(GPU_LOAD, GPU_APPS))
    found = gpus.others_on_gpu(H100)
    assert found == {"utilization_percent": 87, "memory_used_mib": 20987,
                     "processes": [{"pid": 31337, "used_mib": 20460}]}
    assert gpus.sharing_note(found) == ("1 other process(es) (pid 31337) use this GPU: 87 % busy, 20,987 MiB in use "
                                        "before the measurement; the timings include its load")
    assert gpus.others_on_gpu(H100, own_pids=frozenset({31337}))["processes"] == []
    assert gpus.others_on_gpu(OTHER)["utilization_percent"] is None
    assert gpus.others_on_gpu("GPU-absent") is None  # e.g. a MIG instance: nvidia-smi lists its parent
    # a container that cannot see the other job's process still sees its load
    monkeypatch.setattr(gpus, "nvidia_smi", answers(f"{H100}, 64, 9000\n", ""))
    assert gpus.sharing_note(gpus.others_on_gpu(H100)).startswith("another job uses this GPU: 64 % busy")
    monkeypatch.setattr(gpus, "nvidia_smi", answers(f"{H100}, 0, 0\n", ""))  # idle: nothing to say
    assert gpus.sharing_note(gpus.others_on_gpu(H100)) is None
    monkeypatch.setattr(gpus, "nvidia_smi", lambda argv, run=None: None)  # no nvidia-smi
    assert gpus.others_on_gpu(H100) is None and gpus.sharing_note(None) is None


def test_gpu_check_says_another_job_shares_its_gpu_and_records_it(monkeypatch, capsys, tmp_path):
    from bench.tools import gpucheck

    monkeypatch.setattr(gpus, "nvidia_smi", answers(GPU_LOAD, GPU_APPS))
    monkeypatch.setattr(gpus, "gpu_uuid", lambda index: H100)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "NVIDIA H100 80GB HBM3")
    out = tmp_path / "gpu-check.json"
    gpucheck.run_checks(out, 32, 3, only={"none"})
    assert "warning: 1 other process(es) (pid 31337) use this GPU: 87 % busy" in capsys.readouterr().out
    assert json.loads(out.read_text())["others_on_gpu"]["processes"] == [{"pid": 31337, "used_mib": 20460}]


def test_gpu_check_without_cuda_checks_nothing_and_says_so(monkeypatch, capsys, tmp_path):
    from bench.tools import gpucheck
    from bench.train import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "nvidia_gpus", lambda *args: 0)  # nor any NVIDIA GPU
    assert gpucheck.main(["--out", str(tmp_path / "gpu-check.json")]) == 0
    assert capsys.readouterr().out == "no CUDA device: nothing checked\n"
    assert not (tmp_path / "gpu-check.json").exists()


@pytest.mark.parametrize("args, error", [
    (["--only", "C7,p1"], "argument --only: unknown check id(s): C7 (the checks: C1, C2, C3, C4, C5, C6, P1, P2, P3, "
                          "P4)"),
    (["--only", " , "], "argument --only: names no check (the checks: C1, C2, C3, C4, C5, C6, P1, P2, P3, P4)"),
    (["--shared-runs", "0"], "argument --shared-runs: must be 1 or more, got 0"),
    (["--batch", "-4"], "argument --batch: must be 1 or more, got -4"),
    (["--bf16-peak-tflops", "-989"], "argument --bf16-peak-tflops: must be a positive number, got -989"),
    (["--bf16-peak-tflops", "0"], "argument --bf16-peak-tflops: must be a positive number, got 0"),
    (["--deadline", "-5"], "argument --deadline: must be 0 (no limit) or more seconds, got -5"),
])
def test_gpu_check_refuses_a_check_it_does_not_have_or_a_count_below_one(monkeypatch, capsys, args, error):
    """A mistyped `--only` would check nothing and exit 0 (as a pass would); a peak of -989 TFLOP/s would
    judge P1 at -13 % of it, one of 0 read the built-in table. None of it needs CUDA (this machine has
    none): the command line a GPU box would refuse is refused here too."""
    from bench.tools import gpucheck

    monkeypatch.setattr(gpucheck, "run_checks", lambda *a: pytest.fail("the checks ran"))
    with pytest.raises(SystemExit) as stopped:
        gpucheck.main(args)
    assert stopped.value.code == 2
    prog = "python -m bench.tools.gpucheck"
    assert capsys.readouterr().err == f"{prog}: error: {error} (see {prog} --help)\n"  # one line, no usage block


@pytest.mark.parametrize("cuda", [True, False])
@pytest.mark.parametrize("out, error", [
    ("notes.txt/gpu-check.json", "--out {tmp}/notes.txt/gpu-check.json: cannot be created: {tmp}/notes.txt is a file, "
                                 "not a folder"),
    (".", "--out {tmp}: is a folder, not a file"),
    ("", "--out: an empty path (an unset variable?); give a file name"),
])
def test_gpu_check_refuses_a_json_path_it_cannot_write_before_any_check(monkeypatch, capsys, tmp_path, cuda, out,
                                                                         error):
    """A file in the way, or a folder given for the JSON, had ended in a traceback on a GPU box, the
    folder only after C1 had run; without CUDA the same command line passed."""
    from bench.tools import gpucheck

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(gpucheck, "run_checks", lambda *a: pytest.fail("the checks ran"))
    with pytest.raises(SystemExit) as stopped:
        gpucheck.main(["--out", str(tmp_path / out) if out else ""])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"python -m bench.tools.gpucheck: error: {error.format(tmp=tmp_path)} (see python -m bench.tools.gpucheck "
        "--help)"]


def test_gpu_check_interrupted_or_given_a_negative_deadline_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    from bench.tools import gpucheck

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit) as stopped:
        gpucheck.main(["--deadline", "-5"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "argument --deadline: must be 0 (no limit) or more seconds, got -5 (see python -m bench.tools.gpucheck --help)")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(gpucheck, "run_checks", interrupted)
    out = tmp_path / "gpu-check.json"
    assert gpucheck.main(["--out", str(out)]) == 130
    assert capsys.readouterr().err == f"gpu-check: interrupted; what was measured is in {out}\n"


@pytest.mark.parametrize(("name", "tflops"), [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                              ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.0),
                                              ("NVIDIA L4", 121.0), ("NVIDIA H200", 989.0), ("Tesla V100", None),
                                              ("NVIDIA H200 NVL", 835.0), ("NVIDIA H100 NVL", 835.0),
                                              ("NVIDIA A10", 125.0), ("NVIDIA GH200 480GB", 989.0),
                                              ("NVIDIA RTX A4000", None)])
def test_bf16_dense_peaks_from_the_datasheets(name, tflops):
    from bench.tools.peaks import bf16_peak_tflops

    assert bf16_peak_tflops(name) == tflops


def test_gpu_check_tiny_specs_are_valid_specs(tmp_path):
    from bench.tools.gpucheck import Workspace

    ws = Workspace(tmp_path)
    spec = load_spec(ws.spec("c3", archs=("vgg",), mels=(32, 24, 16, 8), precision="fp16"))
    assert len(spec.runs()) == 4 and spec.protocol.precision == "fp16" and spec.dataset.clip_seconds == 3.0


def paper_vgg_runs_with_one_finished(tmp_path, shape: tuple, cost: dict):
    """The paper-mtat-vgg spec and its runs of `shape` (rate, mels, hop), the first of them finished
    with `cost` in its result.json."""
    from bench.run.runner import run_dir

    spec = load_spec(Path(__file__).resolve().parents[1] / "specs" / "paper-mtat-vgg.toml")
    runs = [r for r in spec.runs() if (r.mel.sample_rate, r.mel.n_mels, r.mel.hop_multiplier) == shape]
    folder = run_dir(tmp_path, spec, runs[0])
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({
        "run_id": runs[0].run_id, "status": "ok", "config": {}, "metrics": {"roc_auc": 0.9, "pr_auc": 0.4},
        "cost": cost}))
    return spec, runs


def test_runs_per_gpu_prefers_the_peak_a_finished_run_measured(tmp_path):
    """A finished run of the largest configuration measured 30 GB (more than the 14.9 GiB estimate):
    on an 80 GB GPU only one such run fits in half of it."""
    spec, runs = paper_vgg_runs_with_one_finished(tmp_path, (16000, 128, 1), {"peak_memory_bytes": 30 * 2**30})
    k, why = auto_runs_per_gpu(spec, runs[1:], tmp_path, memory_bytes=80 * 2**30)
    assert k == 1 and "30.0 GiB (measured)" in why


def test_runs_per_gpu_counts_what_a_finished_run_reserved(tmp_path):
    """A run takes from the GPU what its caching allocator reserves: its allocated peak (10 GiB) and
    the blocks cached but free beside it (11 GiB more here, from shapes that could not reuse each
    other's blocks). Half of an 80 GiB GPU holds one run of 21 GiB, not four of 10 GiB."""
    spec, runs = paper_vgg_runs_with_one_finished(
        tmp_path, (12000, 32, 1), {"peak_memory_bytes": 10 * 2**30, "peak_reserved_bytes": 21 * 2**30})
    k, why = auto_runs_per_gpu(spec, runs[1:], tmp_path, memory_bytes=80 * 2**30)
    assert k == 1 and "21.0 GiB (measured)" in why


def test_runs_per_gpu_takes_the_largest_peak_of_a_configurations_finished_seeds(tmp_path):
    """Two seeds of one configuration finished, one reserving 21 GiB and the other 5 GiB (seeds' shapes
    alike, their allocators' caches not): the largest counts, 1 run per 80 GiB GPU, not 4 of 5 GiB."""
    from bench.run.runner import run_dir

    spec, runs = paper_vgg_runs_with_one_finished(tmp_path, (12000, 32, 1), {"peak_reserved_bytes": 21 * 2**30})
    folder = run_dir(tmp_path, spec, runs[1])
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({
        "run_id": runs[1].run_id, "status": "ok", "config": {}, "metrics": {"roc_auc": 0.9, "pr_auc": 0.4},
        "cost": {"peak_reserved_bytes": 5 * 2**30}}))
    k, why = auto_runs_per_gpu(spec, runs[2:], tmp_path, memory_bytes=80 * 2**30)
    assert k == 1 and "21.0 GiB (measured)" in why


def test_runs_per_gpu_leaves_room_for_each_workers_cuda_context(tmp_path):
    """Every worker's CUDA context holds its own memory on the GPU (torch's, cuBLAS's and cuDNN's
    kernels: about 0.5-1 GiB), which no allocator statistic counts. A finished run reserved 19.5 GiB:
    half of an 80 GiB GPU holds two by the allocator's count (39 GiB), but not with two contexts."""
    spec, runs = paper_vgg_runs_with_one_finished(
        tmp_path, (12000, 32, 1), {"peak_memory_bytes": 15 * 2**30, "peak_reserved_bytes": int(19.5 * 2**30)})
    assert auto_runs_per_gpu(spec, runs[1:], tmp_path, memory_bytes=80 * 2**30)[0] == 1
    assert auto_runs_per_gpu(spec, runs[1:], tmp_path, memory_bytes=84 * 2**30)[0] == 2


@pytest.mark.parametrize(("options", "asked"), [
    ({"runs_per_gpu": 2}, "--runs-per-gpu 2: 2 processes per GPU"),
    ({"workers": 3}, r"--workers 3 on 1 GPU\(s\): 3 processes per GPU"),
    ({"workers": 2, "runs_per_gpu": 1, "launcher": "submitit-local"},
     "--workers 2 x --runs-per-gpu 1: 2 processes per GPU")])
def test_several_processes_per_exclusive_gpu_are_refused(monkeypatch, tmp_path, options, asked):
    """Several worker processes per GPU where nvidia-smi says the GPU takes one process at a time
    (Exclusive_Process): asked for with --runs-per-gpu K, with more --workers than GPUs, or with several
    submitit-local jobs (each runs its workers on every GPU). The second worker's CUDA would fail to
    start, so the grid stops with one line before it prepares data or starts a worker; one worker per
    GPU goes on."""
    from bench.run import grid, prepare

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(grid, "exclusive_gpus", lambda: ["0 (GPU-77aa0e1f, Exclusive_Process)"])
    prepared = []

    class Prepared(Exception):
        pass

    def prepare_spec(*args, **kwargs):
        prepared.append(args)
        raise Prepared  # as far as this test goes

    monkeypatch.setattr(prepare, "prepare_spec", prepare_spec)
    spec = Path(__file__).resolve().parents[1] / "tests" / "data" / "demo6.toml"
    with pytest.raises(UserError, match=rf"^{asked}, but GPU 0 \(GPU-77aa0e1f, Exclusive_Process\) lets one "
                                        r"process at a time use it.*at most one worker per GPU$"):
        run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda", **options))
    assert prepared == []
    with pytest.raises(Prepared):
        run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cuda", runs_per_gpu=1,
                                        workers=1, launcher=options.get("launcher", "local")))
    assert len(prepared) == 1


@pytest.mark.slow
def test_gpu_check_c3_runs_the_real_grid_and_judges_it(tmp_path, copy_tiny_synthetic):
    """The harness of C3 end to end, on the CPU: the real `bench grid --workers 2`, its results and
    executions read back. On the CPU the verdict is FAIL (no cuda:0, no GPU slots), with the evidence."""
    from bench.tools.gpucheck import Check, Workspace, check_two_workers_one_gpu

    ws = Workspace(tmp_path, device="cpu")
    copy_tiny_synthetic(ws.data)  # the dataset the harness generates: 48 clips of 3 s, seed 0
    check = Check("C3", "--workers 2 with CUDA_VISIBLE_DEVICES=0")
    check_two_workers_one_gpu(ws, check)
    assert check.ok is False
    assert "devices {'cpu'}" in check.detail and "executions per run [1, 1, 1, 1]" in check.detail
    assert check.line().startswith("FAIL C3 --workers 2 with CUDA_VISIBLE_DEVICES=0: devices")


def test_gpu_check_compiles_its_configurations_in_one_worker(monkeypatch, tmp_path):
    """C5 asks for 3+ configurations compiled in one process. On CUDA a grid starts several workers per
    GPU by default (`--runs-per-gpu`), each taking another configuration: C4/C5 must ask for one."""
    from bench.spec import load_spec
    from bench.tools import gpucheck

    asked = {}

    def grid(self, spec, *args, env=None, timeout=600):
        asked.update(spec=spec, args=args, env=env)
        return subprocess.CompletedProcess([], 1, "", "stub"), {}

    monkeypatch.setattr(gpucheck.Workspace, "grid", grid)
    c4, c5 = gpucheck.Check("C4", ""), gpucheck.Check("C5", "")
    gpucheck.check_compile(gpucheck.Workspace(tmp_path), c4, c5)
    assert asked["args"][asked["args"].index("--workers") + 1] == "1"
    # one run per GPU: the worker's CPU share (inductor's compile processes) is the machine's, not a
    # quarter of it (the default for these tiny networks is 4 runs per GPU)
    assert asked["args"][asked["args"].index("--runs-per-gpu") + 1] == "1"
    assert asked["env"]["BENCH_COMPILE"] == "1"
    assert asked["env"]["BENCH_COMPILE_BACKEND"] == "inductor"  # not the eager backend a caller may have set
    assert len(load_spec(asked["spec"]).configurations()) >= 3


def test_gpu_check_judges_the_default_path_whatever_the_shell_exported(monkeypatch):
    """An exported BENCH_RESIDENT=0 would fail C1 (its runs must be resident), BENCH_COMPILE=1 compile
    P1's eager steps and every tiny run: the checks clear them, and set one only where they check it."""
    from bench.tools import gpucheck

    environ = {"BENCH_RESIDENT": "0", "BENCH_COMPILE": "1", "PATH": "/usr/bin"}
    assert gpucheck.clear_switches(environ) == ["BENCH_RESIDENT=0", "BENCH_COMPILE=1"]
    assert environ == {"PATH": "/usr/bin"}


@pytest.mark.parametrize(("step_ms", "steps"), [(4.0, 400), (20.0, 100), (100.0, 20)])
def test_gpu_check_shared_runs_train_the_same_number_of_steps(monkeypatch, step_ms, steps):
    """The shared-GPU busy fraction: every process trains the same count, from one run's step time
    (6 s over 3 runs), bounded so that the profiler's events stay few enough to read back (a 4 ms step
    would give 500 steps of ~200 kernels each per process). Each process calibrating itself, while the
    others were still starting, gave counts that left one training alone at the end of the window."""
    from bench.tools import gpucheck, gpucheck_speed

    assert gpucheck_speed.shared_steps(step_ms / 1000, 3) == steps
    launched = []

    class Proc:
        def __init__(self, argv, **kwargs):
            launched.append(argv)
            self.returncode = 0

        def communicate(self, timeout=None):
            return json.dumps({"start": 0.0, "end": 1.0, "kernel": 0.5, "steps": 7}) + "\n", ""

    monkeypatch.setattr(gpucheck.subprocess, "Popen", Proc)
    gpucheck_speed.shared_busy(None, 32, 3, steps)
    assert [argv[4] for argv in launched] == [str(steps)] * 3


def test_gpu_check_shared_runs_do_not_stall_on_a_full_pipe(monkeypatch):
    """The shared-GPU processes wait for each other before training: where the second one writes more
    than a pipe holds (warnings) before it gets there, its output must be read while the first one is
    waited on, or both stall until the check's time is up."""
    from bench.tools import gpucheck, gpucheck_speed

    child = ("import json, sys; from pathlib import Path; from bench.tools.gpucheck_speed import barrier; "
             "sys.stderr.write('w' * 300_000 * int(sys.argv[5])); sys.stderr.flush(); "
             "barrier(Path(sys.argv[3]), int(sys.argv[4]), timeout=60); "
             "print(json.dumps({'start': 0.0, 'end': 1.0, 'kernel': 0.5, 'steps': 4}))")
    popen, started = subprocess.Popen, []

    def stand_in(argv, **kwargs):  # the real processes, with the stand-in's code, the second one noisy
        started.append(argv)
        return popen([argv[0], "-c", child, *argv[3:7], str(len(started) - 1)], **kwargs)

    monkeypatch.setattr(gpucheck.subprocess, "Popen", stand_in)
    result = gpucheck_speed.shared_busy(None, 8, 2, 4, timeout=20)
    assert result == {"runs": 2, "busy": 1.0, "kernel_time_over_window": 1.0, "clips_per_second": 64.0,
                      "window_seconds": 1.0, "steps": 8}
    # time-sliced, each process's recorded kernel spans stay open through the other's slices (0.5 s of
    # the 1 s window each, 1.0 summed); one run alone spent 0.05 s per step in kernels: 8 steps in the
    # window kept the GPU busy 40 % of it
    started.clear()
    assert gpucheck_speed.shared_busy(None, 8, 2, 4, timeout=20, kernel_per_step=0.05)["busy"] == pytest.approx(0.4)


def test_a_sigterm_while_the_shared_runs_train_kills_them_at_once(monkeypatch):
    """The SIGTERM (as SystemExit) left the wait for the shared-GPU processes, but the threads reading
    their pipes were joined first, each waiting up to its limit for its process to end by itself: the
    processes were killed, and the report written, only then (20 s for three `sleep 20`), past a Slurm
    job's grace. They are now killed before the threads are joined."""
    from bench.tools import process_groups

    procs = [process_groups.start_group(["sleep", "20"]) for _ in range(3)]

    def stopped(signum, frame):
        raise SystemExit(143)

    previous = signal.signal(signal.SIGALRM, stopped)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(SystemExit):
            process_groups.communicate_all(procs, timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        process_groups.kill_live_of(procs)
    assert time.monotonic() - start < 10
    assert all(proc.poll() == -signal.SIGKILL for proc in procs)


def test_shared_runs_stopped_by_the_deadline_are_not_a_failure_of_the_gpu(monkeypatch):
    """Given only the 2 s the deadline leaves, runs at once that have not finished are stopped and said
    to be cut short by it (DeadlineReached), not an error of theirs."""
    from bench.tools import gpucheck, gpucheck_speed

    popen = subprocess.Popen
    monkeypatch.setattr(gpucheck.subprocess, "Popen", lambda argv, **kwargs: popen(["sleep", "30"], **kwargs))
    start = time.monotonic()
    with pytest.raises(gpucheck.DeadlineReached, match="the deadline came 2 s into them"):
        gpucheck_speed.shared_busy(None, 8, 2, 4, timeout=300, deadline=gpucheck.Deadline(2.0))
    assert time.monotonic() - start < 10


def test_one_shared_run_that_fails_stops_the_others_at_once():
    """The shared-GPU processes wait for each other at a barrier (120 s): where one failed as it started
    (out of memory), the others waited out the barrier and then trained alone, two minutes of the
    deadline for a result already known."""
    from bench.tools import process_groups

    procs = [process_groups.start_group(["sh", "-c", "echo 'torch.OutOfMemoryError: stand-in' >&2; exit 1"]),
             *(process_groups.start_group(["sleep", "30"]) for _ in range(2))]
    start = time.monotonic()
    try:
        outs = process_groups.communicate_all(procs, timeout=60)
    finally:
        process_groups.kill_live_of(procs)
    assert time.monotonic() - start < 10
    assert [proc.returncode for proc in procs] == [1, -signal.SIGKILL, -signal.SIGKILL]
    assert outs[0][1].strip() == "torch.OutOfMemoryError: stand-in"


def test_shared_runs_killed_without_a_word_say_how_they_ended(monkeypatch):
    """Runs at once killed by the out-of-memory killer print nothing: P1's line read "not measured: "."""
    from bench.tools import gpucheck, gpucheck_speed

    popen = subprocess.Popen
    monkeypatch.setattr(gpucheck.subprocess, "Popen",
                        lambda argv, **kwargs: popen(["sh", "-c", "kill -9 $$"], **kwargs))
    assert gpucheck_speed.shared_busy(None, 8, 2, 4, timeout=20) == {
        "error": "killed by SIGKILL, no output | killed by SIGKILL, no output"}


def _p1_stubs(monkeypatch, shared):
    """P1 with its measurements stood in for: 480 TFLOP/s at the headline on an H100 (49 % of its bf16
    peak), busy 90 %, and `shared` as what the runs at once give."""
    from bench.tools import gpucheck, gpucheck_speed

    cases = {label: types.SimpleNamespace(label=label) for label in ("smallest", "headline", "largest", "reading")}
    model = types.SimpleNamespace(analytic_macs=lambda: 25e9)
    monkeypatch.setattr(gpucheck_speed, "_cases", lambda: cases)
    monkeypatch.setattr(gpucheck_speed, "training_step", lambda case, batch, as_runs=False: (
        None, model, types.SimpleNamespace(compile=True)))
    monkeypatch.setattr(gpucheck_speed, "busy_fraction", lambda step, n: (0.9, 0.01, (0.0, 1.0)))
    monkeypatch.setattr(gpucheck_speed, "step_seconds", lambda step, n: 0.01)
    monkeypatch.setattr(gpucheck_speed, "shared_busy", shared)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    return gpucheck.Check("P1", "training throughput and GPU busy")


@pytest.mark.parametrize(("headline_busy", "shared_busy", "passes"), [
    (0.90, 0.79, True), (0.80, 0.60, True), (0.75, 0.79, False), (0.90, 0.50, False)])
def test_p1_holds_the_busy_targets_80_percent_at_the_headline_and_60_with_runs_at_once(
        monkeypatch, headline_busy, shared_busy, passes):
    """docs/running.md's P1 targets: GPU busy >= 80 % at the headline and >= 60 % at the smallest with 3
    runs at once (the 480 TFLOP/s headline meets the 40 % of the bf16 peak either way)."""
    from bench.tools import gpucheck, gpucheck_speed

    check = _p1_stubs(monkeypatch, lambda *a, **k: {"runs": 3, "busy": shared_busy})
    monkeypatch.setattr(gpucheck_speed, "busy_fraction", lambda step, n: (headline_busy, 0.01, (0.0, 1.0)))
    gpucheck.check_throughput(check, 32, 3)
    assert check.ok is passes


def test_p1_says_the_runs_at_once_failed_rather_than_busy_0_percent(monkeypatch):
    """Where the three processes crashed or outlasted their limit, P1 read "3 runs at once busy 0 %", a
    measurement the GPU never gave; the error was only in the JSON."""
    from bench.tools import gpucheck

    check = _p1_stubs(monkeypatch, lambda *a, **k: {"error": "RuntimeError: CUDA error: out of memory"})
    gpucheck.check_throughput(check, 32, 3)
    assert check.ok is False and "busy 0 %" not in check.detail
    assert "3 runs at once not measured: RuntimeError: CUDA error: out of memory" in check.detail


def test_p1_whose_runs_at_once_the_deadline_cut_is_not_run_where_the_rest_passed(monkeypatch):
    """A deadline that stops the runs at once says nothing of the GPU, as for a grid it stops: P1 is not
    run (not failed) where what it measured passed, its numbers kept; it fails where they did not."""
    from bench.tools import gpucheck, gpucheck_speed

    def cut(*args, **kwargs):
        raise gpucheck.DeadlineReached("not finished: the deadline came 40 s into them, and they were stopped")

    check = _p1_stubs(monkeypatch, cut)
    with pytest.raises(gpucheck.DeadlineReached, match="busy 90 %.*3 runs at once not finished: the deadline"):
        gpucheck.check_throughput(check, 32, 3)
    assert check.numbers["headline"]["tflops"] == pytest.approx(480)
    check = _p1_stubs(monkeypatch, cut)
    monkeypatch.setattr(gpucheck_speed, "step_seconds", lambda step, n: 0.1)  # 48 TFLOP/s: 5 % of the peak
    gpucheck.check_throughput(check, 32, 3)
    assert check.ok is False


UUID = "GPU-8a1f5e2c-0d4b-4c1e-9f3a-1b2c3d4e5f60"


@pytest.mark.parametrize(("selection", "first"), [(None, "0"), ("", "0"), ("3", "3"), ("4,5", "4"),
                                                  (f"{UUID},GPU-1", UUID)])
def test_gpu_check_c3_stays_on_a_gpu_this_process_may_use(selection, first):
    from bench.tools.gpucheck import first_visible_gpu

    assert first_visible_gpu({} if selection is None else {"CUDA_VISIBLE_DEVICES": selection}) == first


def test_a_timed_out_check_kills_the_grid_and_its_workers(tmp_path):
    """A grid that outlasts its check's time is killed with its worker processes, which would
    otherwise go on using the GPU under the next checks."""
    from bench.tools.gpucheck import run_group

    pid_file = tmp_path / "child.pid"
    parent = ("import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    proc = run_group([sys.executable, "-c", parent], dict(os.environ), timeout=3)
    assert proc.returncode == -signal.SIGKILL and "timed out after 3 s" in proc.stderr
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while state(child) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)  # gone, or a zombie nobody has reaped yet: either way no longer running
    assert state(child) in (None, "Z"), f"worker {child} still running"


def test_a_stopped_check_kills_the_grids_it_started(tmp_path):
    """SIGTERM (a job's time limit, `timeout`) stops gpu-check with the status a shell gives it (143),
    and the grid it was running is killed with its worker processes: started in their own session,
    they would otherwise go on training on the GPU, in a scratch folder already removed."""
    pid_file = tmp_path / "worker.pid"
    worker = ("import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    check = ("import os, sys; from bench.tools import gpucheck\n"
             "with gpucheck.cleaned_up():\n"
             f"    gpucheck.run_group([sys.executable, '-c', {worker!r}], dict(os.environ), timeout=120)\n")
    proc = subprocess.Popen([sys.executable, "-c", check], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 5
    while state(worker_pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state(worker_pid) in (None, "Z"), f"worker {worker_pid} still running"


def test_gpu_check_keeps_to_its_deadline(monkeypatch, tmp_path, capsys):
    """`--deadline`: a check that would start with less time left than it needs is not run, said so on
    its line, in the JSON and in the exit status (not run is not passed), and a grid gets at most the
    time left."""
    from bench.tools import gpucheck

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(gpucheck.Workspace, "grid", lambda *a, **k: pytest.fail("a grid started"))

    def p3(check):
        check.ok, check.detail = True, "measured"

    monkeypatch.setattr(gpucheck, "check_free_memory_rule", p3)
    for name in fastpath.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "gpu-check.json"
    assert gpucheck.run_checks(out, batch=32, shared_runs=3, deadline=10) == 1  # P3 needs 5 s, the rest more
    report = json.loads(out.read_text())
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["P3"]["ok"] is True and report["not_run"] == ["C1", "C2", "C3", "C6", "P1", "P2", "P4", "C4", "C5"]
    assert all(checks[key]["ok"] is None and checks[key]["detail"].startswith("not run: ")
               for key in report["not_run"])
    printed = capsys.readouterr().out
    assert "SKIP C4 torch.compile on: not run: " in printed
    assert "of the 10 s deadline left, it needs about 120 s" in printed
    assert "1/1 checks passed" in printed and "not run for the deadline: C1, C2, C3, C6, P1, P2, P4, C4, C5" in printed


def test_a_grid_gets_at_most_the_time_left(monkeypatch, tmp_path):
    from bench.tools import gpucheck

    timeouts = []
    monkeypatch.setattr(gpucheck, "run_group", lambda command, env, timeout: (
        timeouts.append(timeout), subprocess.CompletedProcess(command, 0, "", ""))[1])
    gpucheck.Workspace(tmp_path).grid(tmp_path / "c4.toml", timeout=900)
    gpucheck.Workspace(tmp_path, deadline=gpucheck.Deadline(100)).grid(tmp_path / "c4.toml", timeout=900)
    assert timeouts[0] == 900 and 99 <= timeouts[1] <= 100


def test_a_grid_stopped_by_the_deadline_is_not_run_not_failed(monkeypatch, tmp_path, capsys):
    """A cold compile on a new box can take minutes: C4's grid killed because `--deadline` came says
    nothing of torch.compile, so C4 and C5 are SKIP and listed as not run (the exit status is 1 all the
    same), not FAIL "exit -9, 0/3 results". A grid killed at its own limit, the deadline still far,
    is a failure as before."""
    from bench.tools import gpucheck

    def killed(command, env, timeout):
        time.sleep(min(timeout, 0.3))
        return subprocess.CompletedProcess(command, -9, "", f"timed out after {timeout:.0f} s")

    monkeypatch.setattr(gpucheck, "run_group", killed)
    with pytest.raises(gpucheck.DeadlineReached, match="^not finished: the deadline came 1 s into it"):
        gpucheck.Workspace(tmp_path, deadline=gpucheck.Deadline(0.2)).grid(tmp_path / "c4.toml", timeout=900)
    proc, results = gpucheck.Workspace(tmp_path, deadline=gpucheck.Deadline(600)).grid(tmp_path / "c4.toml",
                                                                                       timeout=0.3)
    assert proc.returncode == -9 and results == {}

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(gpucheck, "check_compile", lambda ws, c4, c5: (_ for _ in ()).throw(
        gpucheck.DeadlineReached("not finished: the deadline came 212 s into it, and it was stopped")))
    from bench.data import synthetic

    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: None)
    for name in fastpath.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "gpu-check.json"
    assert gpucheck.run_checks(out, batch=32, shared_runs=3, only={"C4", "C5"}, deadline=300) == 1
    report = json.loads(out.read_text())
    checks = {c["id"]: c for c in report["checks"]}
    assert report["not_run"] == ["C4", "C5"] and checks["C4"]["ok"] is None and checks["C5"]["ok"] is None
    assert "SKIP C4 torch.compile on: not finished: the deadline came 212 s into it" in capsys.readouterr().out


def test_gpu_check_on_a_gpu_that_takes_one_process_runs_the_grids_first_and_skips_what_cannot_apply(
        monkeypatch, tmp_path, capsys):
    """On a GPU in the Exclusive_Process compute mode (common on clusters) a second process cannot start
    CUDA: C3's two workers are refused by the grid itself, P1's runs at once cannot start, and once this
    process has measured on the GPU (P1-P4) no grid's worker can use it. So C3 and P1's runs at once
    do not apply (not failures), and the grids (C4/C5) run before the in-process checks."""
    from bench.data import synthetic
    from bench.tools import gpucheck

    order = []

    def passed(key):
        def check(*args, **kwargs):
            order.append(key)
            checks = [a for a in args if isinstance(a, gpucheck.Check)]
            for c in checks:
                c.ok, c.detail = True, "stub"
            return {} if key == "P1" else None
        return check

    exclusive = "0 (GPU-77aa0e1f-2c3d-4b5a-8e9f-aabbccddeeff, Exclusive_Process)"
    monkeypatch.setattr(gpucheck, "exclusive_gpus", lambda: [exclusive])
    for name, key in [("check_resident_bf16", "C1"), ("check_read_fp16", "C2"), ("check_compile", "C4"),
                      ("check_folds", "C6"), ("check_memory", "P2"), ("check_free_memory_rule", "P3"),
                      ("check_reading", "P4")]:
        monkeypatch.setattr(gpucheck, name, passed(key))
    monkeypatch.setattr(gpucheck, "check_two_workers_one_gpu", lambda *a: pytest.fail("C3 ran"))
    alone = []
    monkeypatch.setattr(gpucheck, "check_throughput", lambda check, *args: (
        alone.append(args[-1]), passed("P1")(check))[1])
    monkeypatch.setattr(gpucheck, "smallest_consumption", lambda rows, batch: None)
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    for name in fastpath.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "gpu-check.json"
    assert gpucheck.run_checks(out, batch=32, shared_runs=3, deadline=None) == 0  # nothing failed or was cut
    assert order == ["C1", "C2", "C4", "C6", "P1", "P2", "P3", "P4"]
    assert alone == [f"GPU {exclusive} lets one process at a time use it"]
    report = json.loads(out.read_text())
    assert report["not_applicable"] == ["C3"] and report["not_run"] == []
    c3 = next(c for c in report["checks"] if c["id"] == "C3")
    assert c3["ok"] is None and c3["detail"].startswith("not applicable: GPU 0 (GPU-77aa0e1f")
    printed = capsys.readouterr().out
    assert "SKIP C3 " in printed and "9/9 checks passed" in printed and "not applicable: C3" in printed


def test_gpu_check_says_how_long_each_check_took(monkeypatch, tmp_path, capsys):
    """Each check's line ends with its wall time and the JSON keeps it (`seconds`), so a box that cannot
    fit every check in the deadline shows which took the time: C4 and C5, one grid, share theirs; the
    functional checks' dataset, generated inside the first of them, is in its time and said apart
    (`data_seconds`); a check that crashes is timed too, and a check not run has no time. A clock that
    each stub moves on by a known number of seconds stands in for the wall clock."""
    from bench.data import synthetic
    from bench.tools import gpucheck

    clock = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    took = {"C1": 41.0, "C2": 38.0, "C3": 52.0, "C4": 131.0, "C6": 70.0, "P2": 12.0, "P3": 3.0, "P4": 24.0}

    def stub(key):
        def check(*args, **kwargs):
            clock[0] += took[key]
            for c in (a for a in args if isinstance(a, gpucheck.Check)):
                c.ok, c.detail = True, "stub"
            if key == "P4":
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return check

    for name, key in [("check_resident_bf16", "C1"), ("check_read_fp16", "C2"), ("check_two_workers_one_gpu", "C3"),
                      ("check_compile", "C4"), ("check_folds", "C6"), ("check_memory", "P2"),
                      ("check_free_memory_rule", "P3"), ("check_reading", "P4")]:
        monkeypatch.setattr(gpucheck, name, stub(key))
    monkeypatch.setattr(gpucheck, "exclusive_gpus", lambda: [])
    monkeypatch.setattr(gpucheck, "check_throughput", lambda *a: pytest.fail("P1 ran"))
    monkeypatch.setattr(gpucheck, "smallest_consumption", lambda rows, batch: None)
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: clock.__setitem__(0, clock[0] + 7.0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    for name in fastpath.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "gpu-check.json"
    only = {"C1", "C2", "C3", "C4", "C5", "C6", "P2", "P3", "P4"}
    assert gpucheck.run_checks(out, batch=32, shared_runs=3, only=only, deadline=None) == 1  # P4 crashed
    report = json.loads(out.read_text())
    seconds = {c["id"]: c["seconds"] for c in report["checks"]}
    assert seconds == {"C1": 7.0 + 41.0, "C2": 38.0, "C3": 52.0, "C4": 131.0, "C5": 131.0, "C6": 70.0, "P1": None,
                       "P2": 12.0, "P3": 3.0, "P4": 24.0}
    assert report["data_seconds"] == 7.0
    assert report["seconds"] == 7.0 + sum(took.values())
    printed = capsys.readouterr().out.splitlines()
    assert "PASS C1 tiny grid on CUDA, resident data, bf16: stub [48 s]" in printed
    assert "PASS C5 3+ configurations compiled in one process: stub [131 s]" in printed
    assert ("FAIL P4 reading per batch at 16 kHz vs consumption: RuntimeError: CUDA error: an illegal memory "
            "access was encountered [24 s]") in printed
    assert not any(line.startswith("SKIP P1") for line in printed)  # not asked for: no line


def test_gpu_check_generates_its_dataset_once_and_times_a_generation_that_failed(monkeypatch, tmp_path, capsys):
    """A generation that fails (a full disk after 200 s, say) fails every functional check with its
    reason, is not tried again for each of them, and its time is in the first one's and in
    `data_seconds`: it had been in no check's, the JSON's total 400 s larger than its parts."""
    from bench.data import synthetic
    from bench.tools import gpucheck

    clock, tries = [1000.0], []

    def full_disk(*args, **kwargs):
        tries.append(1)
        clock[0] += 200.0
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(synthetic, "generate", full_disk)
    for name in ("check_resident_bf16", "check_read_fp16", "check_two_workers_one_gpu", "check_compile"):
        monkeypatch.setattr(gpucheck, name, lambda *a: pytest.fail("a functional check ran without its data"))
    monkeypatch.setattr(gpucheck, "exclusive_gpus", lambda: [])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    for name in fastpath.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "gpu-check.json"
    assert gpucheck.run_checks(out, batch=32, shared_runs=3, only={"C1", "C2", "C3", "C4", "C5"}, deadline=None) == 1
    report = json.loads(out.read_text())
    assert len(tries) == 1 and report["data_seconds"] == 200.0 and report["seconds"] == 200.0
    checks = {c["id"]: c for c in report["checks"] if c["ok"] is not None}
    assert {key: (c["ok"], c["seconds"]) for key, c in checks.items()} == {
        "C1": (False, 200.0), "C2": (False, 0.0), "C3": (False, 0.0), "C4": (False, 0.0), "C5": (False, 0.0)}
    assert all(c["detail"] == "synthetic data not generated: OSError: [Errno 28] No space left on device"
               for c in checks.values())


def test_p1_on_a_gpu_that_takes_one_process_judges_without_runs_at_once(monkeypatch):
    from bench.tools import gpucheck, gpucheck_speed

    cases = {label: types.SimpleNamespace(label=label) for label in ("smallest", "headline", "largest", "reading")}
    model = types.SimpleNamespace(analytic_macs=lambda: 25e9)
    monkeypatch.setattr(gpucheck_speed, "_cases", lambda: cases)
    compiled = types.SimpleNamespace(compile=True)
    asked = []
    monkeypatch.setattr(gpucheck_speed, "training_step",
                        lambda case, batch, as_runs=False: (asked.append(as_runs), (None, model, compiled))[1])
    monkeypatch.setattr(gpucheck_speed, "busy_fraction", lambda step, n: (0.9, 0.01, (0.0, 1.0)))
    monkeypatch.setattr(gpucheck_speed, "step_seconds", lambda step, n: 0.01)  # 6 x 25 GMAC x 32 / 10 ms: 480 TFLOP/s
    monkeypatch.setattr(gpucheck_speed, "shared_busy", lambda *a, **k: pytest.fail("runs at once started"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    check = gpucheck.Check("P1", "training throughput and GPU busy")
    rows = gpucheck.check_throughput(check, 32, 3, shared_alone="GPU 0 lets one process at a time use it")
    assert check.ok is True  # 480 of an H100's 989 TFLOP/s: 49 %, busy 90 %
    assert rows["headline"]["tflops"] == pytest.approx(480)
    # timed as the paper's runs train: compiled where the grid compiles them
    assert asked == [True, True, True] and rows["headline"]["compiled"] is True
    assert check.detail.startswith("compiled: headline 480 TFLOP/s (49 % of bf16 peak), busy 90 %")
    assert rows["smallest_shared"] == {"not_applicable": "GPU 0 lets one process at a time use it"}
    assert "3 runs at once not applicable (GPU 0 lets one process at a time use it)" in check.detail


def stub_grid(monkeypatch, root: Path, name: str, runs: list[dict], stdout: str = "") -> None:
    """gpu-check's grid of spec `name` answered with finished runs: each a result.json's fields plus
    `pid`, the process that trained it (its executions.jsonl)."""
    from bench.tools import gpucheck

    results = {}
    for k, run in enumerate(runs):
        folder = root / "results" / name / "runs" / f"run{k}"
        folder.mkdir(parents=True)
        (folder / "executions.jsonl").write_text(json.dumps({"pid": run["pid"]}) + "\n")
        results[folder.name] = {"run_id": folder.name, "status": "ok", "cost": {"train_seconds": 1.0},
                                **{key: value for key, value in run.items() if key != "pid"}}
    monkeypatch.setattr(gpucheck.Workspace, "grid", lambda self, spec, *args, env=None, timeout=600: (
        subprocess.CompletedProcess([], 0, stdout, ""), results))


@pytest.mark.parametrize("compiled", [True, False])
def test_gpu_check_c5_passes_only_configurations_that_compiled(monkeypatch, tmp_path, compiled):
    """Without a C compiler (Triton needs one) the runs train uncompiled and record why: C4 fails
    saying so, and C5 fails too, since no recompile-limit hit proves nothing of uncompiled runs."""
    from bench.tools import gpucheck

    note = "torch.compile turned off: no C compiler (cc, gcc or clang) for Triton"
    fast_path = {"compile": compiled, "compiled": compiled, "recompile_limit_hits": 0, "compile_backend": "inductor",
                 "compile_note": None if compiled else note}
    stub_grid(monkeypatch, tmp_path, "c4", [{"pid": 4242, "training": {"fast_path": fast_path}}] * 3)
    c4, c5 = gpucheck.Check("C4", ""), gpucheck.Check("C5", "")
    gpucheck.check_compile(gpucheck.Workspace(tmp_path), c4, c5)
    assert (c4.ok, c5.ok) == (compiled, compiled)
    assert c5.detail.startswith(f"3 configurations in 1 process(es), {3 if compiled else 0} compiled")
    assert (note in c4.detail) is not compiled


def test_gpu_check_c5_fails_where_a_configuration_hit_the_recompile_limit(monkeypatch, tmp_path):
    """C5's point: three configurations compiled in one process with no recompile-limit hit (past it,
    dynamo trains the rest uncompiled). Compiled runs with 2 hits in one of them fail it."""
    from bench.tools import gpucheck

    runs = [{"pid": 4242, "training": {"fast_path": {"compile": True, "compiled": True, "recompile_limit_hits": hits,
                                                     "compile_backend": "inductor", "compile_note": None}}}
            for hits in (0, 0, 2)]
    stub_grid(monkeypatch, tmp_path, "c4", runs)
    c4, c5 = gpucheck.Check("C4", ""), gpucheck.Check("C5", "")
    gpucheck.check_compile(gpucheck.Workspace(tmp_path), c4, c5)
    assert c5.ok is False


@pytest.mark.parametrize(("pids", "ok"), [((11, 12, 11, 12), True), ((11, 11, 11, 11), False)])
def test_gpu_check_c3_needs_both_workers_to_train(monkeypatch, tmp_path, pids, ok):
    """Two workers that announce themselves are not two workers that trained: one may crash at once
    and leave the other all four runs, which the grid still reports as a success."""
    from bench.tools import gpucheck

    stdout = "worker 0 (pid 11) on cuda:0 (GPU-x), slot 0/2\nworker 1 (pid 12) on cuda:0 (GPU-x), slot 1/2\n"
    stub_grid(monkeypatch, tmp_path, "c3", [{"pid": pid, "provenance": {"device": "cuda:0"}} for pid in pids], stdout)
    check = gpucheck.Check("C3", "")
    gpucheck.check_two_workers_one_gpu(gpucheck.Workspace(tmp_path), check)
    assert check.ok is ok and f"{len(set(pids))} worker processes trained" in check.detail


@pytest.mark.parametrize(("native_bf16", "amp_dtype", "resident", "device", "ok"), [
    (True, "bfloat16", True, "cuda", True),
    (False, "float16", True, "cuda", True),  # a V100: bf16 only emulated, so fp16 is the path
    (True, "float16", True, "cuda", False),
    (True, "bfloat16", False, "cuda", False),  # the waveforms did not stay on the GPU
    (True, "bfloat16", True, "cpu", False),  # a worker that fell back to the CPU
])
def test_gpu_check_c1_needs_resident_data_in_the_gpus_half_precision(monkeypatch, tmp_path, native_bf16, amp_dtype,
                                                                      resident, device, ok):
    from bench.tools import gpucheck

    monkeypatch.setattr(fastpath, "native_bf16", lambda device: native_bf16)
    runs = [{"pid": 1, "config": {"arch": arch}, "metrics": {"roc_auc": 0.5}, "provenance": {"device": device},
             "training": {"amp_dtype": amp_dtype, "fast_path": {"resident_data": resident}}}
            for arch in ("vgg", "musicnn")]
    stub_grid(monkeypatch, tmp_path, "c1", runs)
    check = gpucheck.Check("C1", "")
    gpucheck.check_resident_bf16(gpucheck.Workspace(tmp_path), check)
    assert check.ok is ok
    assert check.detail == f"vgg {amp_dtype} resident={resident} on {device}, musicnn {amp_dtype} " \
                           f"resident={resident} on {device}"


@pytest.mark.parametrize(("scaled", "pinned"), [(True, True), (False, True), (True, False)])
def test_gpu_check_c2_needs_the_loss_scaled(monkeypatch, tmp_path, scaled, pinned):
    """C2: read per batch, fp16 with loss scaling, into pinned host buffers: each one of them needed."""
    from bench.tools import gpucheck

    fast_path = {"resident_data": False, "pin_memory": pinned, "loss_scaling": scaled}
    history = [{"skipped_steps": 2}, {"skipped_steps": 0}, {"skipped_steps": 1}, {"skipped_steps": 0}]
    run = {"pid": 1, "training": {"amp_dtype": "float16", "fast_path": fast_path, "history": history}}
    stub_grid(monkeypatch, tmp_path, "c2", [run, run])
    check = gpucheck.Check("C2", "")
    gpucheck.check_read_fp16(gpucheck.Workspace(tmp_path), check)
    assert check.ok is (scaled and pinned) and f"loss scaling [{scaled}, {scaled}]" in check.detail
    assert check.detail.endswith("steps skipped by the scaler [3, 3]")


def test_gpu_check_c2_gives_the_scaler_room_to_calibrate(monkeypatch, tmp_path):
    """GradScaler starts at a scale of 2^16 and skips the steps that overflow there, and a run that took
    no step fails. C2's grid trains 36 of its 48 clips (folders 0-b of 0-f) in batches of 16 with the last
    partial batch dropped: 2 steps an epoch, so its 2 default epochs would leave the scaler only 4."""
    from bench.tools import gpucheck

    asked = []
    monkeypatch.setattr(gpucheck.Workspace, "grid", lambda self, spec, *args, env=None, timeout=600: (
        asked.append((load_spec(spec), env)) or (subprocess.CompletedProcess([], 0, "", ""), {})))
    gpucheck.check_read_fp16(gpucheck.Workspace(tmp_path), gpucheck.Check("C2", ""))
    ((spec, env),) = asked
    assert env == {"BENCH_RESIDENT": "0"}  # the loader path, forced: resident waveforms would not test it
    assert spec.protocol.precision == "fp16" and spec.dataset.clips == 48
    steps_per_epoch = (48 * 12 // 16) // spec.protocol.batch_size
    assert steps_per_epoch == 2 and steps_per_epoch * spec.protocol.max_epochs >= 8
    assert spec.protocol.patience >= spec.protocol.max_epochs  # early stopping cannot cut it short


def test_gpu_check_p4_judges_the_loader_against_a_measured_rate(monkeypatch):
    """P4 compares the loader with what the smallest configuration consumes, as `bench perf` counts it: a
    training step (P1's, or one measured for P4 where P1 did not run (`--only P4`) or failed, never a
    stand-in of 1 clip/s) and the mel of its clips. At batch 32, a 30 ms step and 0.5 ms of mel per clip:
    32 clips in 30 + 16 ms, 695.7 clips/s, not the network's 1,066.7. The mel is what a training step
    computes (for MusiCNN one 3 s segment of each clip, not its whole 29.1 s)."""
    from bench.tools import gpucheck, gpucheck_speed, input_path

    frontends = []
    monkeypatch.setattr(input_path, "measure_frontend", lambda case, device, settings, step: (
        frontends.append((case, settings.batch, step)), {"ms_per_clip": 4.5, "training_ms_per_clip": 0.5})[1])
    monkeypatch.setattr(gpucheck_speed, "_cases", lambda: {"smallest": "case"})
    assert gpucheck.smallest_consumption({"smallest": {"step_seconds": 0.03}}, 32) == pytest.approx(32 / 0.046)
    monkeypatch.setattr(gpucheck_speed, "training_step", lambda case, batch, as_runs=False: (lambda: None, None, None))
    monkeypatch.setattr(gpucheck_speed, "step_seconds", lambda step, steps: 0.04)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    assert gpucheck.smallest_consumption({}, 32) == pytest.approx(32 / 0.056)
    assert frontends == [("case", 32, 0.03), ("case", 32, 0.04)]


def test_gpu_check_p4_times_the_reads_over_sixteen_batches(monkeypatch):
    """A pass of 4 batches times mostly the reader's pipeline filling (2 batches read ahead): P4 passes
    16 batches."""
    from bench.tools import gpucheck, gpucheck_speed, input_path

    seen = []

    def measured(case, device, settings, consumption):
        seen.append((settings.batch, settings.data_clips))
        return {"clips_per_second_page_cache": 900.0, "clips_per_second_resident": 5000.0,
                "clips_per_second_evicted": 700.0, "loader_over_consumption": 700.0 / consumption, "threads": 16}

    monkeypatch.setattr(input_path, "measure_data_path", measured)
    monkeypatch.setattr(input_path, "describe_cold_read", lambda result: "evicted 700")
    monkeypatch.setattr(gpucheck_speed, "_cases", lambda: {"reading": types.SimpleNamespace(label="vgg 16k")})
    check = gpucheck.Check("P4", "")
    gpucheck.check_reading(check, 32, consumption=350.0)
    assert seen == [(32, 16 * 32)] and check.ok and "(2.6x from the page cache)" in check.detail
    assert "read per batch 900 clips/s (page cache, 16 threads)" in check.detail


@pytest.mark.parametrize(("page_cache", "ok"), [(15_427.0, True), (7_973.0, True), (6_378.0, False), (1_915.0, False)])
def test_gpu_check_p4_judges_the_reader_not_the_disk(monkeypatch, page_cache, ok):
    """As measured on an H200 box at 16 kHz: the reader gave 15,427 clips/s from the page cache and
    1,229 from its disk (which reads 2.0 GB/s, 2,200 such clips/s), against the 7,973 clips/s the
    smallest configuration trains on. The disk bounds any reader: P4 passes on the page cache's rate
    and says the disk's; a reader below what training consumes starves it: 0.8x (6,378 clips/s) fails,
    as do 1,915 clips/s from the page cache (a DataLoader with 4 workers there)."""
    from bench.tools import gpucheck, gpucheck_speed, input_path

    monkeypatch.setattr(input_path, "measure_data_path", lambda *a: {
        "clips_per_second_page_cache": page_cache, "clips_per_second_resident": 689_954.0,
        "clips_per_second_evicted": 1_229.0, "page_cache_fraction_after_evicting": 0.0, "threads": 16})
    reading = types.SimpleNamespace(label="vgg 16k 48x182 x10")
    monkeypatch.setattr(gpucheck_speed, "_cases", lambda: {"reading": reading})
    check = gpucheck.Check("P4", "")
    gpucheck.check_reading(check, 32, consumption=7_973.0)
    assert check.ok is ok and check.numbers["storage_bound"] is True
    assert check.detail.endswith(f"({page_cache / 7_973:.1f}x from the page cache; 0.2x from this box's storage, "
                                 "whose pace a dataset larger than its RAM trains at)")


def test_gpu_busy_is_the_time_some_kernel_ran():
    """Busy time from the profiler's device events (microseconds): kernels overlapping on two streams
    count once, memory copies and sets are not kernels, host events are not device time."""
    from types import SimpleNamespace

    from bench.tools.busy import kernel_seconds

    def event(name, start, end, device="CUDA", annotation=False):
        return SimpleNamespace(name=name, device_type=SimpleNamespace(name=device), is_user_annotation=annotation,
                               time_range=SimpleNamespace(start=start, end=end))

    events = [event("sm90_xmma_fprop", 0, 10), event("elementwise_kernel", 5, 15),  # union: 0-15
              event("Memcpy HtoD (Pinned -> Device)", 20, 30), event("Memset (Device)", 30, 31),
              event("aten::conv2d", 0, 100, device="CPU"), event("bn_fw_tr_1C11_kernel", 40, 44),
              # a record_function range's device span: from its first kernel to its last, the gap between
              event("Optimizer.step#Adam.step", 0, 44, annotation=True)]
    assert kernel_seconds(events) == pytest.approx((15 + 4) / 1e6)
    with pytest.raises(RuntimeError, match="recorded no CUDA kernel"):  # not "0 % busy"
        kernel_seconds([event("aten::conv2d", 0, 100, device="CPU"), event("Memcpy HtoD", 0, 5)])


@pytest.mark.parametrize(("train_gib", "eval_gib", "reserved_gib", "ok"),
                         [(9, 3, 9, True), (9, 11, 11, False), (11, 3, 11, False), (9, 3, 10.5, False)])
def test_gpu_check_p2_needs_the_estimate_to_cover_training_and_evaluation(monkeypatch, train_gib, eval_gib,
                                                                          reserved_gib, ok):
    """A run's recorded peak spans training and evaluation, and `--runs-per-gpu` auto plans with the
    estimate: P2 passes where the estimate (at the batch measured) covers the larger of the two peaks,
    and what the caching allocator reserved from the GPU for them (cached blocks that are free count)."""
    from types import SimpleNamespace

    from bench.cost import gmac
    from bench.tools import gpucheck, gpucheck_speed, perf

    peaks = iter([train_gib * 2**30, 8 * 2**30, eval_gib * 2**30])  # training, then its warm steps alone
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    events = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: (events.append("peak read"), next(peaks))[1])
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: events.append("cache released"))
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a: int(reserved_gib * 2**30))
    path = SimpleNamespace(eval_batch_factor=2, autocast=contextlib.nullcontext, prepare_input=lambda x: x,
                           begin_step=lambda: None)
    monkeypatch.setattr(gpucheck_speed, "training_step",
                        lambda case, batch, as_runs=False: (lambda: None, nn.Identity(), path))
    monkeypatch.setattr(perf, "_batch", lambda case, batch, device: (torch.zeros(batch, 2), None))
    batches = []
    monkeypatch.setattr(gmac, "training_footprint_bytes",
                        lambda run, passes: batches.append(run.protocol.batch_size) or 10 * 2**30)
    check = gpucheck.Check("P2", "")
    gpucheck.check_memory(check, batch=16)
    assert check.ok is ok and batches == [16]  # the estimate at the check's batch, not the spec's 32
    # as a run does: the training's cached blocks go back to the GPU before the evaluation
    assert events == ["peak read", "peak read", "cache released", "peak read"]
    # the cold peak judges (a run's includes cuDNN's autotuning too); the warm one is there to say why
    assert check.numbers["warm_train_peak_bytes"] == 8 * 2**30 and "8.0 GiB after the first steps" in check.detail


def _p3_gpu(monkeypatch, reserved_gb: int) -> None:
    """An 80 GiB GPU with 2 GiB free, 4 GiB allocated by tensors and `reserved_gb` by PyTorch's allocator,
    where P3's own block leaves nothing behind."""
    from bench.tools import gpucheck_speed

    monkeypatch.setattr(gpucheck_speed, "leave_allocator_cache", lambda device: None)
    gpu_memory(monkeypatch, 2, 80, reserved_gb=reserved_gb, allocated_gb=4)


def test_gpu_check_p3_probes_both_sides_of_the_free_memory_rule(monkeypatch):
    """2 GiB free and 1 GiB cached by the allocator: just under 1.5 GiB of waveforms fit, just over is
    refused. A rule that counted free memory only fails the first probe, one that let anything through
    the second."""
    from bench.tools import gpucheck
    from bench.train import fastpath

    _p3_gpu(monkeypatch, reserved_gb=5)
    check = gpucheck.Check("P3", "")
    gpucheck.check_free_memory_rule(check)
    assert check.ok, check.detail
    # what the GPU holds beside the allocator's 5 GiB (80 - 2 free - 5): the context, reported beside its allowance
    assert check.numbers["outside_allocator_bytes"] == 73 * 2**30
    assert "held outside the allocator (the CUDA context) 73.00 GiB, allowed 1.0 GiB per run" in check.detail
    for rule in (lambda n, device, reusable=0: True,  # anything fits
                 lambda n, device, reusable=0: n <= 0.5 * 2 * 2**30):  # the old rule: free memory only
        monkeypatch.setattr(fastpath, "resident_fits", rule)
        gpucheck.check_free_memory_rule(check)
        assert check.ok is False, check.detail


@pytest.mark.parametrize("setting, why", [("1", "PYTORCH_NO_CUDA_MEMORY_CACHING=1 turns its caching off"),
                                          (None, "its caching is off")])
def test_gpu_check_p3_fails_saying_why_where_the_allocator_caches_nothing(monkeypatch, setting, why):
    """With nothing cached (PyTorch's caching allocator off) the free-memory rule and a rule that counts
    free memory alone admit the same waveforms: P3 cannot prove the rule, and its line says so, not
    the line of a check that probed both sides."""
    from bench.tools import gpucheck

    if setting is None:
        monkeypatch.delenv("PYTORCH_NO_CUDA_MEMORY_CACHING", raising=False)
    else:
        monkeypatch.setenv("PYTORCH_NO_CUDA_MEMORY_CACHING", setting)
    _p3_gpu(monkeypatch, reserved_gb=4)
    check = gpucheck.Check("P3", "the free-memory rule")
    gpucheck.check_free_memory_rule(check)
    assert check.ok is False
    assert check.line() == (f"FAIL P3 the free-memory rule: PyTorch's allocator kept nothing of a block allocated "
                            f"and freed ({why}): the rule that counts its cache as free memory could not be checked")


def run_failing_on_cuda_3(monkeypatch, one_run, error) -> str:
    """The DeviceFailure line of a claimed run whose training raises `error` on cuda:3; the run must be
    left unrecorded, to resume."""
    from bench.core.errors import DeviceFailure
    from bench.run import runner

    spec, run, folder = one_run

    def train_run(*args, **kwargs):
        raise error

    monkeypatch.setattr(train, "train_run", train_run)
    with pytest.raises(DeviceFailure) as failure:
        runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cuda", 3), None,
                                  lambda *_: None)
    assert not (folder / runner.RESULT).exists()
    return str(failure.value)


@pytest.mark.parametrize("error", [
    torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
    RuntimeError("CUDA error: unspecified launch failure"),  # as releases before AcceleratorError raise it
])
def test_a_gpu_that_fails_under_a_run_stops_the_worker_and_leaves_the_run_to_resume(monkeypatch, one_run, error):
    """After an illegal memory access the process's CUDA context is unusable: recording the run as
    failed and going on would fail every later run of this worker in seconds, and mark them failed."""
    from bench.run import runner

    _, run, folder = one_run
    failure = run_failing_on_cuda_3(monkeypatch, one_run, error)
    assert re.search(rf"cuda:3 failed during {run.run_id} .*resumes in the next grid", failure)
    lock = runner.RunLock(folder)  # released: the next grid (or another worker) takes the run over
    assert lock.acquire()
    lock.release()


def test_a_fault_first_met_outside_torch_is_a_device_failure_when_the_gpu_no_longer_answers(monkeypatch, one_run):
    """Triton words a sticky fault its own way; the device's next synchronisation tells."""
    from bench.run import runner

    triton = RuntimeError("Triton Error [CUDA]: an illegal memory access was encountered")

    def sticky(device=None):
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    assert not runner.is_device_failure(triton, torch.device("cuda", 3))  # the GPU answers: the run's own error
    assert not runner.is_device_failure(ValueError("a bad spec value"), torch.device("cuda", 3))
    monkeypatch.setattr(torch.cuda, "synchronize", sticky)
    assert not runner.is_device_failure(triton, CPU)
    assert not runner.is_device_failure(torch.OutOfMemoryError("CUDA out of memory"), torch.device("cuda", 3))
    failure = run_failing_on_cuda_3(monkeypatch, one_run, triton)
    assert re.search(r"cuda:3 failed during .*Triton Error \[CUDA\]", failure)


def test_running_out_of_gpu_memory_is_the_runs_failure_with_a_hint(monkeypatch, one_run):
    from bench.run import runner

    spec, run, folder = one_run

    def train_run(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")

    monkeypatch.setattr(train, "train_run", train_run)
    outcome = runner._claim_and_execute(spec, folder, run, lambda rate: None, CPU, None, lambda *_: None)
    result = json.loads((folder / runner.RESULT).read_text())
    assert outcome == "executed" and result["status"] == "failed"
    assert result["error"].startswith("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. (other runs")
    assert "--retry-failed" in result["error"] and "--runs-per-gpu 1" in result["error"]


@pytest.mark.parametrize("error", [
    torch.AcceleratorError("CUDA error: out of memory"),  # cudaErrorMemoryAllocation, outside the caching allocator
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
])
def test_memory_running_out_outside_the_allocator_is_the_runs_failure_too(monkeypatch, one_run, error):
    """cudaErrorMemoryAllocation is raised as AcceleratorError "CUDA error: out of memory", and cuBLAS's
    handle or cuDNN's workspace failing to allocate as "... ALLOC_FAILED": none leaves the GPU unusable.
    They stopped the worker as a failed GPU (and a one-worker grid with "cuda:0 failed") where running
    out of memory through the caching allocator is recorded as the run's failure, with the hint."""
    from bench.run import runner

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)  # the GPU answers
    assert not runner.is_device_failure(error, torch.device("cuda", 3))
    spec, run, folder = one_run

    def train_run(*args, **kwargs):
        raise error

    monkeypatch.setattr(train, "train_run", train_run)
    outcome = runner._claim_and_execute(spec, folder, run, lambda rate: None, CPU, None, lambda *_: None)
    result = json.loads((folder / runner.RESULT).read_text())
    assert outcome == "executed" and result["status"] == "failed"
    assert "--retry-failed" in result["error"] and "--runs-per-gpu 1" in result["error"]


def test_a_failed_runs_error_is_one_line_and_its_error_file_has_all_of_it(monkeypatch, one_run):
    """CUDA's errors run to three lines (the error, where to look it up, a note on device-side
    assertions): the log's FAILED line, the grid's summary and the report print result.json's
    `error`, one line each; error.txt keeps the message as raised, with its traceback."""
    from bench.run import runner

    spec, run, folder = one_run
    message = ("CUDA error: misaligned address\nSearch for `cudaErrorMisalignedAddress' in https://docs.nvidia.com/"
               "cuda/cuda-runtime-api/group__CUDART__TYPES.html for more information.\nCompile with "
               "`TORCH_USE_CUDA_DSA` to enable device-side assertions.")

    def train_run(*args, **kwargs):
        raise ValueError(message)  # not a device failure: the run's own, recorded

    monkeypatch.setattr(train, "train_run", train_run)
    logged = []
    runner._claim_and_execute(spec, folder, run, lambda rate: None, CPU, None, logged.append)
    error = json.loads((folder / runner.RESULT).read_text())["error"]
    assert error == ("ValueError: CUDA error: misaligned address Search for `cudaErrorMisalignedAddress' in "
                     "https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html for more information. "
                     "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.")
    assert f"  FAILED {run.run_id}: {error} (traceback: {folder / runner.ERROR})" in logged
    assert message in (folder / runner.ERROR).read_text()


def test_the_served_latency_pass_halves_its_batch_rather_than_fail_a_trained_run(monkeypatch):
    """The fp32 throughput batch of 64 can need more memory than training did, while the trainer is
    still resident: hours of training must not be recorded as failed for it."""
    import architectures
    from bench.train import latency
    from bench.train.frontend import MelFrontend

    (run,) = tiny_runs()
    tried = []
    real = latency.measure_inference

    def measure(model, frontend, samples, device, batch=latency.THROUGHPUT_BATCH, **kwargs):
        tried.append(batch)
        if batch > 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB.")
        return real(model, frontend, samples, device, batch=batch, repeats=1, warmup=0)

    monkeypatch.setattr(latency, "measure_inference", measure)
    model = architectures.build(run.arch, run.mel.input_config(run.dataset.clip_seconds), 3, width=0.0625)
    served = train.served_inference(run, model.state_dict(), 3, MelFrontend.from_config(run.mel), CPU)
    assert tried == [64, 32, 16] and served["batch"] == 16 and served["throughput_clips_per_second"] > 0


def test_a_spawned_worker_whose_gpu_failed_ends_with_one_line(monkeypatch, capsys):
    from bench.core.errors import DeviceFailure
    from bench.run import grid

    def worker_entry(job):
        raise DeviceFailure("cuda:3 failed during vgg-x (AcceleratorError: CUDA error: ...); the run resumes")

    monkeypatch.setattr(grid, "worker_entry", worker_entry)
    with pytest.raises(SystemExit) as stopped:
        grid.pool_worker_entry(grid.WorkerJob("spec.toml", "results", "cache", "cuda", worker=5))
    assert stopped.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("bench grid: worker 5: cuda:3 failed during vgg-x")


def test_a_spawned_workers_report_is_small_however_many_runs_it_trained(monkeypatch):
    """The parent drains the workers' queue after joining them: a report over the pipe's 64 KiB
    buffer (the ids of ~1,500 runs) would leave the worker blocked in `put` and the grid hanging."""
    import pickle

    from bench.core.errors import Interrupted
    from bench.run import grid

    class Queue(list):
        put = list.append

    ids = [f"vgg-16k-96mel-x1-log-s{k}-0123456789" for k in range(5000)]
    for outcome, expected in ((ids, 5000), (Interrupted("rerun to resume vgg-x from epoch 4"), None)):
        monkeypatch.setattr(grid, "pool_worker_entry", lambda job, outcome=outcome: outcome)
        queue = Queue()
        grid._worker_process(grid.WorkerJob("spec.toml", "results", "cache", "cpu"), queue)
        (report,) = queue
        assert len(pickle.dumps(report)) < 1024
        assert report == expected if expected is not None else str(report) == "rerun to resume vgg-x from epoch 4"


def test_the_readers_end_once_the_test_split_is_read(monkeypatch, tmp_path):
    """Reading per batch (its thread, and on CUDA its pinned buffers): every split's reader is closed
    after the test pass, before the inference latency is measured, not when the trainer is collected."""
    closed, open_at_inference = [], []
    real_close = views.ReadBatches.close
    monkeypatch.setattr(views.ReadBatches, "close", lambda self: closed.append(self) or real_close(self))
    real_inference = train.served_inference

    def inference(*args, **kwargs):
        open_at_inference.append(len(closed))
        return real_inference(*args, **kwargs)

    monkeypatch.setattr(train, "served_inference", inference)
    (run,) = tiny_runs(epochs=1)
    trained = train.train_run(run, ToyCache(), tmp_path, CPU, log=lambda *_: None)
    assert trained["fast_path"]["resident_data"] is False
    assert open_at_inference == [3]  # train, valid and test: each closed before the latency pass


def test_gpu_check_without_soundfile_still_measures_and_keeps_each_result(monkeypatch, tmp_path):
    """A GPU box whose Python lacks the audio packages: the functional checks fail with the reason and
    P1-P4 still run. The JSON is rewritten after every check, so a check run killed part-way (a job's time
    limit) keeps what was measured, and says which check it stopped in."""
    import sys

    from bench.tools import gpucheck

    monkeypatch.setitem(sys.modules, "bench.data.synthetic", None)  # `import` raises ModuleNotFoundError
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")

    def passes(name):
        def check(*args):
            check_arg = next(a for a in args if isinstance(a, gpucheck.Check))
            check_arg.ok, check_arg.detail = True, f"{name} measured"
            return {}
        return check

    monkeypatch.setattr(gpucheck, "check_throughput", lambda check, *a: passes("P1")(check))
    monkeypatch.setattr(gpucheck, "check_memory", lambda check, batch: passes("P2")(check))

    def stopped(check):
        raise KeyboardInterrupt  # the job's time runs out during P3

    monkeypatch.setattr(gpucheck, "check_free_memory_rule", stopped)
    out = tmp_path / "results" / "gpu-check.json"
    for name in fastpath.ENVIRONMENT:  # run_checks clears them from the environment: restored afterwards
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(KeyboardInterrupt):
        gpucheck.run_checks(out, batch=32, shared_runs=3)
    checks = {c["id"]: c for c in json.loads(out.read_text())["checks"]}
    for key in ("C1", "C2", "C3"):
        assert checks[key]["ok"] is False
        assert checks[key]["detail"].startswith("synthetic data not generated: ModuleNotFoundError"), checks[key]
    assert checks["P1"]["ok"] is True and checks["P2"]["detail"] == "P2 measured"
    assert checks["P3"]["ok"] is False and checks["P3"]["detail"] == "stopped during this check (KeyboardInterrupt)"
    assert all(checks[key]["ok"] is None for key in ("P4", "C4", "C5"))  # never reached


def test_gpu_check_finds_the_paper_spec_of_a_clone_when_installed_elsewhere(monkeypatch, tmp_path, capsys):
    # An installed copy (site-packages) has no specs/ beside it: the clone it is run from has.
    from bench.cli import main
    from bench.core import paths
    from bench.tools import gpucheck_common

    from .conftest import ROOT

    monkeypatch.setattr(paths, "CODE_ROOT", tmp_path / "site-packages")
    monkeypatch.chdir(ROOT)
    assert load_spec(gpucheck_common.paper_spec_path()).name == "paper-mtat-vgg"
    # elsewhere, bench perf's default spec is nowhere: one line saying what to do, before anything is timed
    monkeypatch.chdir(tmp_path)
    assert main(["perf", "--device", "cpu", "--budget", "0.1"]) == 2
    assert capsys.readouterr().err == ("bench perf: error: specs/paper-mtat-vgg.toml: spec file not found (the specs "
                                       "are a clone's files: run from a clone of the suite, or name a spec file)\n")




def test_with_cuda_graphs_each_model_call_is_a_step_and_its_logits_are_used_before_the_next():
    """Inductor's CUDA graphs (modes reduce-overhead and max-autotune) keep a model's outputs in memory
    that the next replay overwrites, and are told where a step begins (`cudagraph_mark_step_begin`).
    Stood in for on the CPU: each mark fills the outputs of the calls before it with NaN, as a replay
    would. Training and evaluation give what they give without CUDA graphs, and every call is marked."""
    (run,) = tiny_runs(epochs=1)

    def trained(graphs: bool):
        train.seed_everything(0)
        trainer = train.Trainer(run, ToyCache(), CPU, log=lambda *_: None)
        outputs, marks, calls = [], [], []
        with pytest.MonkeyPatch.context() as patch:
            if graphs:
                def overwrite():
                    marks.append(len(calls))
                    with torch.no_grad():
                        for out in outputs:
                            out.fill_(float("nan"))
                    outputs.clear()

                patch.setattr(torch.compiler, "cudagraph_mark_step_begin", overwrite)
                patch.setattr(fastpath.FastPath, "cuda_graphs", property(lambda self: True))
                trainer.model.register_forward_hook(lambda module, args, out: (calls.append(1), outputs.append(out))[0])
            loss = trainer.train_epoch(0)[0]
            _, scores = trainer.predict("valid")
        return loss, scores, marks

    loss, scores, marks = trained(graphs=True)
    plain_loss, plain_scores, _ = trained(graphs=False)
    assert marks == [0, 1, 2]  # before each of 2 training steps (20 clips, batch 8) and 1 evaluation batch
    assert np.isfinite(loss) and loss == pytest.approx(plain_loss)
    np.testing.assert_allclose(scores, plain_scores, rtol=1e-5)


def test_c6_holds_the_folds_to_the_modules_gradients_and_fails_a_wrong_fold(monkeypatch):
    """C6's comparison, run on the CPU (on a GPU the same code runs there): the folded networks' float32
    gradients are the modules' to rounding; a fold whose batch statistics pass no gradient (their
    dependence on the weights left out, the outputs unchanged) fails it."""
    import architectures.layers
    from bench.tools import gpucheck, gpucheck_folds

    monkeypatch.setattr(fastpath, "compile_blocker", lambda device: None)
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "aot_eager")  # the fused step as traced, without inductor's C++
    check = gpucheck.Check("C6", "")
    gpucheck.check_folds(check, torch.device("cpu"))
    assert check.ok is True, check.detail
    assert set(check.numbers["relative_errors"]) == {"vgg", "musicnn", "vgg-605k", "vgg, compiled",
                                                     "musicnn, compiled", gpucheck_folds.FUSED_CASE}
    # in float32 the differences are rounding, whose size depends on the CPU's kernels (at most 8e-5 with
    # AVX512, 1.5e-4 with AVX2 only); in float64 the same comparison leaves nothing but float64's rounding
    torch.set_default_dtype(torch.float64)
    try:
        exact = gpucheck_folds.fold_gradient_errors(torch.device("cpu"), "aot_eager")
    finally:
        torch.set_default_dtype(torch.float32)
    assert set(exact) == set(check.numbers["relative_errors"])
    assert all(error < 1e-10 for per in exact.values() for error in per.values()), exact
    real = architectures.layers._conv_input_moments

    def detached(*args):
        mean, cov, n = real(*args)
        return mean.detach(), cov.detach(), n

    monkeypatch.setattr(architectures.layers, "_conv_input_moments", detached)
    # VGG's rows, the networks with block 1's BatchNorm in their convolution
    monkeypatch.setattr(gpucheck_folds, "FOLD_CASES", tuple(c for c in gpucheck_folds.FOLD_CASES if c[0] == "vgg"))
    wrong = gpucheck.Check("C6", "")
    gpucheck.check_folds(wrong, torch.device("cpu"))
    assert wrong.ok is False and wrong.numbers["relative_errors"]["vgg"]["error"] > gpucheck_folds.FOLD_TOLERANCE
    for row in ("vgg, compiled", gpucheck_folds.FUSED_CASE):
        assert wrong.numbers["relative_errors"][row]["error"] > gpucheck_folds.FOLD_TOLERANCE, row


def test_c6_names_every_gradient_a_zeroing_compiler_left_wrong(monkeypatch):
    """What torch 2.11's dynamo did to the fused block 1 (a gradient of zeros for every input of its
    Function): C6 fails and names each parameter before the fused pool whose gradient is not ~0, not
    only the one that sorts last among equal errors (the input BatchNorm's bias)."""
    import architectures.layers
    from bench.tools import gpucheck, gpucheck_folds

    real = architectures.layers._ConvPool.backward

    def zeros(ctx, grad):
        return tuple(None if g is None else torch.zeros_like(g) for g in real(ctx, grad))

    monkeypatch.setattr(architectures.layers._ConvPool, "backward", staticmethod(zeros))
    # VGG alone, eager and fused: the rows the fused pool's gradients are in and one they are not
    monkeypatch.setattr(gpucheck_folds, "FOLD_CASES", tuple(c for c in gpucheck_folds.FOLD_CASES if c[0] == "vgg"))
    monkeypatch.setattr(gpucheck_folds, "COMPILED_CASES", ())
    monkeypatch.setattr(fastpath, "compile_blocker", lambda device: None)
    monkeypatch.setenv("BENCH_COMPILE_BACKEND", "aot_eager")
    check = gpucheck.Check("C6", "")
    gpucheck.check_folds(check, torch.device("cpu"))
    rows = check.numbers["relative_errors"]
    assert set(rows) == {"vgg", gpucheck_folds.FUSED_CASE}
    assert check.ok is False and not rows["vgg"]["over_tolerance"]
    over = rows[gpucheck_folds.FUSED_CASE]["over_tolerance"]
    # the first convolution's weight, block 1's BatchNorm, the input BatchNorm's bias: all wrong by 1.0
    assert {"blocks.0.weight", "blocks.1.weight", "blocks.1.bias", "input_bn.bias"} <= set(over), over
    assert all(name.startswith(("input_bn.", "blocks.0.", "blocks.1.")) for name in over), over
    assert f"{gpucheck_folds.FUSED_CASE}: {len(over)} parameters past it ({', '.join(over)})" in check.detail


def test_c6_without_a_compiler_checks_the_eager_folds_and_says_so(monkeypatch):
    from bench.tools import gpucheck

    monkeypatch.setattr(fastpath, "compile_blocker", lambda device: "no C compiler (gcc, clang) on PATH")
    check = gpucheck.Check("C6", "")
    gpucheck.check_folds(check, torch.device("cpu"))
    assert check.ok is True and set(check.numbers["relative_errors"]) == {"vgg", "musicnn", "vgg-605k"}
    assert "block 1 fused not compiled: no C compiler (gcc, clang) on PATH" in check.detail
