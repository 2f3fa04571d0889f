"""The suite's CUDA paths with every device tensor on a CUDA device, on a machine without one:
torch's FakeTensor carries a device, a shape, a dtype and strides but no data, and refuses, as CUDA
does, an operation that mixes a CUDA tensor with a CPU tensor ("Expected all tensors to be on the
same device"). Trainers, `bench grid`, `bench perf` and gpu-check's P1-P4 are built and run for
`torch.device("cuda")` as on a GPU box; what a fake cannot do is stood in for, and nothing else:

- the backward pass (torch's autograd engine needs a real device context): every weight the loss
  depends on gets a zero gradient on the device, and fused Adam steps on them;
- reading a value on the host (`.item()`, `bool()`, `.numpy()`): a placeholder, as the values are
  not there; host data and arithmetic (the data order, a split's targets, the mel filterbank, the
  CPU generator, files read back, fvcore's count) are computed for real, and a file written holds
  zeros of the saved shapes;
- CUDA's runtime (device count and name, memory, generator state, synchronisation), answered as one
  H100 with 60 of its 80 GiB free; pinning host memory (not implemented for fakes);
- autocast: with no CUDA driver its casts cannot run, so the fast path's autocast only says it is on
  (`torch.is_autocast_enabled("cuda")`), code that asks which dtype it casts to is told float32 (the
  dtype every op then runs in), and the calls that turn it off are recorded (the bf16 and fp16
  arithmetic shares this code and runs on the CPU elsewhere in the suite);
- the loader's worker processes: none, the reads stay in the process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.utils._pytree import tree_map

import architectures
from bench.core.errors import Interrupted
from bench.cost import gmac
from bench.data import views
from bench.run import gpus
from bench.spec import load_spec
from bench.tools import input_path, perf
from bench.train import checkpoint, fastpath, latency
from bench.train import loop as train
from bench.train.frontend import MelFrontend

from .device_fakes import ToyCache, tiny_runs

CUDA = torch.device("cuda")

pytestmark = [
    pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor"),  # a placeholder's .numpy()
    pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true but no accelerator"),
    # torch.autocast("cuda", enabled=False), as the front end opens it, where torch finds no CUDA
    pytest.mark.filterwarnings("ignore:CUDA is not available or torch_xla is imported"),
]


def _is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


class FakeCuda:
    """The fake CUDA device: `tensor(t, device)` is `t` on `device`, `module(m, ...)` converts m's
    weights as `nn.Module.to` would."""

    def __init__(self):
        self.mode = FakeTensorMode(allow_non_fake_inputs=True)  # host tensors take part, as on a GPU

    def tensor(self, t: torch.Tensor, device: torch.device | None = CUDA) -> torch.Tensor:
        """`t` as a fake on `device` (None: where it is); "meta" gives a plain meta tensor."""
        device = t.device if device is None else torch.device(device)
        if isinstance(t, FakeTensor) and t.device.type == device.type:
            return t
        with unset_fake_temporarily():  # a tensor with t's shape, strides and dtype and no data
            meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
        return meta if device.type == "meta" else FakeTensor(self.mode, meta, device)

    def module(self, module: nn.Module, dtype: torch.dtype | None = None,
               memory_format: torch.memory_format | None = None, device: torch.device | None = CUDA) -> nn.Module:
        def moved(t: torch.Tensor) -> torch.Tensor:
            t = self.tensor(t, device)
            with self.mode:
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                if memory_format is not None and t.dim() == 4:
                    t = t.contiguous(memory_format=memory_format)
            return t

        for part in module.modules():
            for name, p in part._parameters.items():
                if p is not None:
                    part._parameters[name] = nn.Parameter(moved(p), requires_grad=p.requires_grad)
            for name, b in part._buffers.items():
                if b is not None:
                    part._buffers[name] = moved(b)
        return module


class InlineReader(views.InlineReads):
    """`ReadBatches`' reading thread, run in the calling thread outside the fake mode (whose state is
    not for two threads at once): host work on host tensors, as in a real run."""

    def __init__(self, *args, **kwargs):
        pass

    def submit(self, fn, *args):
        with unset_fake_temporarily():
            return super().submit(fn, *args)


class FakeEvent:
    """A CUDA event on the fake device, where every copy is done when it is queued."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


def _one_value(placeholder):
    """A value read on the host: legal for a one-element tensor on any device (a sync on a GPU)."""
    def read(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return placeholder

    return read


def _host_array(self, *args, **kwargs):
    """`.numpy()`: zeros of the tensor's shape for a host tensor; refused for a device tensor, as torch does."""
    if self.device.type != "cpu":
        raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy the "
                        "tensor to host memory first.")
    return np.zeros(tuple(self.shape), dtype=np.float32)


def _on_the_host(function):
    def real(*args, **kwargs):
        with unset_fake_temporarily():
            return function(*args, **kwargs)

    return real


def _host_copy(state):
    """What a state of device tensors saved with torch.save gives back loaded to the host: host tensors
    of the same shapes and dtypes (here zeros: a fake holds no values)."""
    def copy(x):
        if isinstance(x, FakeTensor):
            with unset_fake_temporarily():
                return torch.zeros(x.shape, dtype=x.dtype)
        return x

    return tree_map(copy, state)


@pytest.fixture
def fake_cuda(monkeypatch):
    """A GPU worker's process, as far as the trainer can tell, with every device tensor a fake."""
    cuda = FakeCuda()
    real_to = nn.Module.to

    def module_to(self, *args, **kwargs):
        device, dtype, _blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
        fake = any(isinstance(t, FakeTensor) for t in itertools.chain(self.parameters(), self.buffers()))
        if _is_cuda(device) or fake:  # without a device, each tensor stays where it is, as in torch
            return cuda.module(self, dtype, memory_format, device)
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", module_to)
    for cls in (views.ResidentWaveforms, views.ResidentClips):  # their uploads allocate on the device
        real_init = cls.__init__

        def init(self, *args, _real=real_init, **kwargs):
            with cuda.mode:
                _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)
    real_getitem = torch.Tensor.__getitem__

    def getitem(self, index):  # what CUDA refuses and a fake allows: a host tensor indexed by a device one
        parts = index if isinstance(index, tuple) else (index,)
        if self.device.type == "cpu" and any(isinstance(i, torch.Tensor) and i.device.type == "cuda" for i in parts):
            raise RuntimeError("indices should be either on cpu or on the same device as the indexed tensor (cpu)")
        return real_getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)
    real_autocast = torch.autocast
    cuda.autocasts = []  # (device_type, enabled) of each torch.autocast the code opens

    def autocast(device_type, *args, **kwargs):
        cuda.autocasts.append((device_type, kwargs.get("enabled", True)))
        return real_autocast(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", autocast)
    real_enabled = torch.is_autocast_enabled  # as the fast path's autocast says, where it opens (a no-op here)
    monkeypatch.setattr(torch, "is_autocast_enabled",
                        lambda *args: (args[:1] == ("cuda",) and cuda.autocasting) or real_enabled(*args))
    cuda.autocasting = False
    real_dtype = torch.get_autocast_dtype
    monkeypatch.setattr(torch, "get_autocast_dtype",
                        lambda device_type: torch.float32 if device_type == "cuda" else real_dtype(device_type))

    @contextlib.contextmanager
    def fast_path_autocast(path):
        cuda.autocasting = path.torch_amp_dtype is not None
        try:
            yield
        finally:
            cuda.autocasting = False

    cuda.pinned = []  # (shape, dtype) of each host tensor pinned for a non-blocking copy
    monkeypatch.setattr(torch.Tensor, "pin_memory",
                        lambda self, *a, **k: (cuda.pinned.append((tuple(self.shape), self.dtype)), self)[1])
    monkeypatch.setattr(fastpath.FastPath, "autocast", fast_path_autocast)  # its casts need a driver
    monkeypatch.setattr(FakeTensor, "item", _one_value(1.0), raising=False)
    monkeypatch.setattr(FakeTensor, "__bool__", _one_value(True), raising=False)
    real_numpy = torch.Tensor.numpy

    def numpy(self, *args, **kwargs):  # a real host tensor's values stay real (the mode would fake them)
        if isinstance(self, FakeTensor):
            return _host_array(self)
        with unset_fake_temporarily():
            return real_numpy(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "numpy", numpy)
    # CUDA's runtime, as one H100 with 60 of its 80 GiB free answers (1 GiB the peak of anything)
    gib = 2**30
    for name, value in [("is_bf16_supported", True), ("device_count", 1), ("set_device", None), ("current_device", 0),
                        ("get_device_name", "NVIDIA H100 80GB HBM3"),
                        ("get_device_properties", SimpleNamespace(uuid="f-0")), ("mem_get_info", (60 * gib, 80 * gib)),
                        ("memory_allocated", gib), ("memory_reserved", 2 * gib), ("reset_peak_memory_stats", None),
                        ("max_memory_allocated", gib), ("max_memory_reserved", 2 * gib), ("synchronize", None),
                        ("empty_cache", None),
                        ("get_rng_state", torch.zeros(16, dtype=torch.uint8))]:
        monkeypatch.setattr(torch.cuda, name, lambda *a, value=value, **k: value)
    monkeypatch.setattr(gpus, "cuda_device_count", lambda: 1)
    cuda.generator_states = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: cuda.generator_states.append(state))
    monkeypatch.setattr(train, "resolve_device", lambda name: CUDA if name in ("cuda", "auto") else torch.device(name))
    # what a file holds once written: host tensors of the saved shapes (zeros: a fake has no values)
    real_save = train.save_torch
    monkeypatch.setattr(train, "save_torch", lambda path, state: real_save(path, _host_copy(state)))
    monkeypatch.setattr(gmac, "model_cost", _on_the_host(gmac.model_cost))  # fvcore's count, on a host model
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # restored after
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", torch.backends.cudnn.allow_tf32)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)  # a batch's copy to the device, done at once
    monkeypatch.setattr(views, "ThreadPoolExecutor", InlineReader)
    for name in ("epoch_order", "full_batches"):  # the host's data order: real values, which the loader reads
        monkeypatch.setattr(train, name, _on_the_host(getattr(train, name)))
    # host data and arithmetic, real where the process builds a trainer inside the mode: a split's
    # targets, the mel filterbank (computed when the front end is built, then moved with it), the
    # CPU generator's state
    for cls in (views.ClipDataset, MelFrontend):
        monkeypatch.setattr(cls, "__init__", _on_the_host(cls.__init__))
    for name in ("get_rng_state", "set_rng_state"):  # the CPU generator's state, in a checkpoint
        monkeypatch.setattr(torch, name, _on_the_host(getattr(torch, name)))
    monkeypatch.setattr(checkpoint, "load_torch", _on_the_host(checkpoint.load_torch))  # a file's tensors, on the host
    monkeypatch.setenv("BENCH_COMPILE", "0")
    real_backward = torch.Tensor.backward
    backward_passes = []

    def backward(self, *args, **kwargs):  # what a fake device cannot run: each leaf gets a zero gradient
        if not isinstance(self, FakeTensor):
            return real_backward(self, *args, **kwargs)
        assert self.device.type == "cuda"
        backward_passes.append(self)
        nodes, seen = [self.grad_fn], set()
        while nodes:
            node = nodes.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            leaf = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf's gradient
            if leaf is not None:
                with cuda.mode:
                    leaf.grad = torch.zeros_like(leaf)
            nodes.extend(next_node for next_node, _ in node.next_functions)

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    cuda.backward_passes = backward_passes
    views.release_resident()
    yield cuda
    views.release_resident()


PRESET_FAMILY = {"vgg-605k": "vgg", "musicnn-787k": "musicnn"}
"""The fixed-size presets and the architecture each is a size of."""


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "read"])
@pytest.mark.parametrize("arch", architectures.names())
def test_training_and_evaluation_keep_every_tensor_on_the_gpu(fake_cuda, monkeypatch, arch, resident):
    monkeypatch.setattr(train, "resident_fits", lambda n_bytes, device, reusable=0: resident)
    # a fixed-size preset as its family's tiny run; any other architecture (a name of a user's with a
    # hyphen included) as itself
    (run,) = tiny_runs(archs=(PRESET_FAMILY.get(arch, arch),), epochs=1, precision="auto")
    if arch != run.arch:  # the fixed-size variants take no width
        run = _as_arch(run, arch)
    trainer = train.Trainer(run, ToyCache(clips=(21, 9, 9)), CUDA, log=lambda *_: None)
    assert trainer.path.device == "cuda" and trainer.path.fused_adam and trainer.path.channels_last
    assert trainer.path.amp_dtype == "bfloat16" and trainer.path.pin_memory and trainer.path.cudnn_benchmark
    assert (trainer.resident is not None) == resident
    weights = list(trainer.model.parameters()) + list(trainer.frontend.buffers())
    assert weights and all(w.device.type == "cuda" for w in weights)
    assert all(group["fused"] for group in trainer.optimizer.param_groups)
    if resident:
        clips = trainer.resident["train"]
        assert {clips.waves.device.type, clips.rows.device.type, clips.targets.device.type} == {"cuda"}
    from architectures import musicnn

    arranged = []  # MusiCNN's timbral convolutions rearranged as 1-D ones: measured faster on CPUs only
    real_arrangement = musicnn._timbral_conv_as_conv1d
    monkeypatch.setattr(musicnn, "_timbral_conv_as_conv1d", lambda *a: (arranged.append(1), real_arrangement(*a))[1])
    with fake_cuda.mode:
        loss, seen, skipped = trainer.train_epoch(1)
        assert (seen, skipped) == (16, 0)  # 21 clips: two full batches of 8; no loss scaling in bf16
        assert len(fake_cuda.backward_passes) == 2
        states = trainer.optimizer.state.values()  # every weight stepped, its moments on the device
        assert len(states) == len(list(trainer.model.parameters()))
        assert all(state["exp_avg"].device.type == "cuda" for state in states)
        y_true, y_score = trainer.predict("valid")
    assert y_true.shape == y_score.shape == (9, 3)
    assert not arranged
    if arch == "musicnn":  # its segments' starts, drawn on the host, copied without a host sync (the tiny
        assert ((8,), torch.int64) in fake_cuda.pinned  # clips are shorter than musicnn-787k's segment)
    # the front end (and MusiCNN's output layer) in float32 whatever autocast says: turned off for the GPU
    assert fake_cuda.autocasts and set(fake_cuda.autocasts) == {("cuda", False)}
    if not resident:
        assert [reader.pinned for reader in trainer.readers.values()] == [True, True]


@pytest.mark.parametrize("arch", ["vgg", "musicnn"])
def test_fp16_training_with_loss_scaling_keeps_every_tensor_on_the_gpu(fake_cuda, monkeypatch, arch):
    """`make gpu-check`'s C2 path, on a GPU without native bf16: fp16 with GradScaler's loss scaling
    through the loader, the scale and its bookkeeping on the device. GradScaler turns itself off where
    torch finds no CUDA, so it is built believing there is one (autocast is not: its casts need a driver)."""
    monkeypatch.setattr(train, "resident_fits", lambda n_bytes, device, reusable=0: False)
    _loss_scaling_on_the_fake_device(monkeypatch)
    (run,) = tiny_runs(archs=(arch,), epochs=1, precision="fp16")
    trainer = train.Trainer(run, ToyCache(clips=(21, 9, 9)), CUDA, log=lambda *_: None)
    assert trainer.path.amp_dtype == "float16" and trainer.scaler.is_enabled()
    with fake_cuda.mode:
        loss, seen, skipped = trainer.train_epoch(1)
        trainer.check_trained()
        y_true, y_score = trainer.predict("valid")
    assert seen == 16 and len(fake_cuda.backward_passes) == 2
    assert y_score.shape == (9, 3)
    # the loss scale and its growth count stay on the device (fused Adam reads them there), as do Adam's moments
    assert trainer.scaler._scale.device.type == "cuda" and trainer.scaler._growth_tracker.device.type == "cuda"
    assert {s["exp_avg"].device.type for s in trainer.optimizer.state.values()} == {"cuda"}
    assert [reader.pinned for reader in trainer.readers.values()] == [True, True]


def _loss_scaling_on_the_fake_device(monkeypatch) -> None:
    """GradScaler turns itself off where torch finds no CUDA: it is built believing there is one."""
    monkeypatch.setattr(FakeTensor, "__int__", _one_value(1), raising=False)  # a step count read on the host
    real_init = torch.amp.GradScaler.__init__

    def init(self, *args, **kwargs):
        available = torch.cuda.is_available
        torch.cuda.is_available = lambda: True
        try:
            real_init(self, *args, **kwargs)
        finally:
            torch.cuda.is_available = available

    monkeypatch.setattr(torch.amp.GradScaler, "__init__", init)


@pytest.mark.parametrize("arch, precision", [("musicnn", "fp32"), ("vgg", "fp16")])
def test_a_run_trains_checkpoints_and_resumes_on_the_gpu(fake_cuda, monkeypatch, tmp_path, arch, precision):
    """`train_run` whole on the fake device, stopped after its first epoch's checkpoint (with CUDA's
    generator state) as by Ctrl-C, then run again: it resumes (weights, fused Adam's state and fp16's
    loss scale back on the device), trains the second epoch, keeps the best weights, evaluates the
    test split and measures served latency."""
    monkeypatch.setattr(train, "resident_fits", lambda n_bytes, device, reusable=0: True)
    _loss_scaling_on_the_fake_device(monkeypatch)
    (run,) = tiny_runs(archs=(arch,), epochs=2, precision=precision)

    def ctrl_c(line):
        raise KeyboardInterrupt

    logged = []
    restored = []  # where the resumed optimiser's state lives once loaded
    real_load = train.load_optimizer_state

    def load_optimizer_state(optimizer, state, path):
        real_load(optimizer, state, path)
        restored.append({t.device.type for s in optimizer.state.values() for t in s.values()
                         if isinstance(t, torch.Tensor)})
    monkeypatch.setattr(train, "load_optimizer_state", load_optimizer_state)
    with fake_cuda.mode:
        with pytest.raises(Interrupted, match="resume .* from epoch 2"):
            train.train_run(run, ToyCache(clips=(21, 9, 9)), tmp_path, CUDA, log=logged.append, epoch_log=ctrl_c)
        result = train.train_run(run, ToyCache(clips=(21, 9, 9)), tmp_path, CUDA, log=logged.append)
    assert f"resuming {run.run_id} after epoch 1" in logged and result["epochs"] == 2
    assert restored == [{"cuda"}]  # fused Adam's moments and step counts back on the device
    assert (tmp_path / train.BEST).exists()
    assert result["fast_path"]["device"] == "cuda" and result["fast_path"]["loss_scaling"] == (precision == "fp16")
    # the fake answers 1 GiB allocated at the peak and 2 GiB reserved; the run's own peak leaves out its
    # worker's resident waveforms: 39 clips of 1 s at 16 kHz in float16
    assert result["inference"]["device"] == "cuda"
    assert result["peak_memory_bytes"] == 2**30 - 39 * 16000 * 2
    assert result["peak_reserved_bytes"] == 2 * 2**30 - 39 * 16000 * 2
    states = fake_cuda.generator_states
    assert len(states) == 1 and states[0].device.type == "cpu"  # as CUDA's generator takes it
    assert set(result["test"]) >= {"roc_auc", "pr_auc", "per_tag"}


def test_a_compiled_runs_last_evaluation_batch_is_padded_on_the_gpu(fake_cuda, monkeypatch):
    """A compiled model gets its last, partial evaluation batch padded to the full batch (one graph):
    the padding is made where the batch is (9 clips, padded to 32)."""
    monkeypatch.setattr(train, "resident_fits", lambda n_bytes, device, reusable=0: True)
    (run,) = tiny_runs(epochs=1)
    trainer = train.Trainer(run, ToyCache(clips=(21, 9, 9)), CUDA, log=lambda *_: None)
    trainer.path = dataclasses.replace(trainer.path, compile=True)  # the padding, not the compilation
    shapes = []
    real_forward = train.forward
    monkeypatch.setattr(train, "forward", lambda model, path, mel: (shapes.append(tuple(mel.shape)),
                                                                    real_forward(model, path, mel))[1])
    with fake_cuda.mode:
        _, y_score = trainer.predict("valid")
    assert [s[0] for s in shapes] == [32] and y_score.shape == (9, 3)


def test_a_checkpoint_written_on_the_cpu_resumes_with_fused_adams_state_on_the_gpu(fake_cuda):
    """Fused Adam keeps its step counts on the device; a checkpoint written on the CPU holds them on
    the host, and torch's own loading leaves them there (the saved groups were not fused)."""
    (run,) = tiny_runs(epochs=1)
    written = train.Trainer(run, ToyCache(), torch.device("cpu"), log=lambda *_: None)
    written.train_epoch(1)  # a real step on the CPU: Adam's state as a CPU run's checkpoint holds it
    state = written.optimizer.state_dict()
    trainer = train.Trainer(run, ToyCache(), CUDA, log=lambda *_: None)
    with fake_cuda.mode:
        train.load_optimizer_state(trainer.optimizer, state, trainer.path)
    tensors = [(key, value) for per_param in trainer.optimizer.state.values() for key, value in per_param.items()]
    assert {key for key, _ in tensors} == {"step", "exp_avg", "exp_avg_sq"}
    assert all(value.device.type == "cuda" for _, value in tensors), [(k, v.device) for k, v in tensors]
    assert all(group["fused"] for group in trainer.optimizer.param_groups)


def _as_arch(run, arch: str):
    options = architectures.make_options(arch)
    configuration = dataclasses.replace(run.configuration, arch=arch, options=options)
    return dataclasses.replace(run, configuration=configuration)


def test_a_cpu_tensor_in_a_gpu_step_fails_here_as_on_a_gpu(fake_cuda, monkeypatch):
    """The stand-in is strict: targets left in host memory beside the device's logits fail the loss
    here the way they fail on a GPU."""
    monkeypatch.setattr(train, "resident_fits", lambda n_bytes, device, reusable=0: True)
    (run,) = tiny_runs(epochs=1, precision="fp32")
    trainer = train.Trainer(run, ToyCache(), CUDA, log=lambda *_: None)
    trainer.resident["train"].targets = trainer.data["train"].targets  # not copied to the device
    with fake_cuda.mode, pytest.raises(RuntimeError, match="same device|two different devices"):  # torch 2.14, 2.10
        trainer.train_epoch(1)


@pytest.mark.parametrize("arch", ["vgg", "musicnn"])
def test_inference_latency_is_measured_on_the_gpu(fake_cuda, monkeypatch, arch):
    """`bench plan --latency --device cuda` and each finished run's served-inference pass: clips drawn
    on the host, copied to the device, tagged there segment by segment."""
    real_measure = latency.measure_inference
    seen = []

    def measure(model, frontend, *args, **kwargs):
        seen.extend(p.device.type for p in model.parameters())
        with fake_cuda.mode:
            return real_measure(model, frontend, *args, **kwargs)

    monkeypatch.setattr(latency, "measure_inference", measure)
    (run,) = tiny_runs(archs=(arch,))
    measured = latency.untrained_latency(run.configuration, run.dataset.clip_seconds, 3, CUDA)
    assert seen and set(seen) == {"cuda"}
    assert measured["batch"] == 64 and measured["latency_ms"] >= 0


def test_bench_perf_on_a_gpu_measures_its_levers_and_judges_the_gpu_targets(fake_cuda, monkeypatch):
    """`bench perf --device cuda` end to end on specs/paper-mtat-vgg.toml: every lever, the conv peak,
    the front end, both data paths and the projection run with their tensors on the device; the
    targets are the GPU's (shares of its bf16 dense peak), not the CPU's. The fake's timings are
    meaningless; the work and the floor are not: 3,778 PFLOP, 1.06 hours at an H100's 989 TFLOP/s."""
    monkeypatch.setattr(input_path, "epoch_order", _on_the_host(input_path.epoch_order))
    settings = perf.PerfSettings(batch=None, budget_seconds=0.01, max_steps=1, scaling_cases=2, data_clips=8,
                                 compile=False, librosa=False)
    uploads = []  # shapes copied from the host to the device
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        moved = real_to(self, *args, **kwargs)
        if self.device.type == "cpu" and moved.device.type == "cuda":
            uploads.append(tuple(self.shape))
        return moved

    monkeypatch.setattr(torch.Tensor, "to", to)
    uuid = "GPU-5c1f4a2e-8b1d-4f3e-9a7c-2d6e8f0a1b3c"  # another job trains on it (nvidia-smi's csv answers)
    monkeypatch.setattr(gpus, "gpu_uuid", lambda index: uuid)
    monkeypatch.setattr(gpus, "nvidia_smi", lambda argv, run=None: f"{uuid}, 91, 30000\n" if "utilization.gpu" in
                        argv[0] else f"777, {uuid}, 29400\n")
    said = []
    threads = torch.get_num_threads()
    # a run's share of the box's CPUs, not this process's
    monkeypatch.setattr(input_path, "cpu_share", lambda: threads + 1)
    profiled = []  # torch's profiler sees no kernels of the fake: the GPU busy half of each scaling row's steps

    def busy_fraction(step, steps):
        profiled.append(steps)
        step()
        return 0.5, 0.01, (0.0, 1.0)

    monkeypatch.setattr(perf, "busy_fraction", busy_fraction)
    placed = []
    monkeypatch.setattr(perf, "auto_runs_per_gpu", lambda spec, runs, root, **held: (
        placed.append(len(runs)) or 3, "largest footprint 14.9 GiB (estimated)"))
    fresh = []  # the fake does not reach a spawned process: the lever timed in one is timed here

    def measure_training_fresh(*args, **kwargs):
        fresh.append(args[1].cudnn_benchmark)
        return {**perf.measure_training(*args, **kwargs), "fresh_process": True}

    monkeypatch.setattr(perf, "measure_training_fresh", measure_training_fresh)
    with fake_cuda.mode:
        report = perf.run_perf(load_spec("specs/paper-mtat-vgg.toml"), CUDA, settings, log=said.append)
    assert report["data_path"]["threads"] == threads + 1 and torch.get_num_threads() == threads  # as a run reads
    assert said[0] == ("warning: 1 other process(es) (pid 777) use this GPU: 91 % busy, 30,000 MiB in use before "
                       "the measurement; the timings include its load")
    assert report["others_on_gpu"]["processes"] == [{"pid": 777, "used_mib": 29400}]
    # the reader's passes over 8 clips of the smallest configuration (12 kHz, 29.1 s) reach the device
    assert uploads.count((8, 349200)) >= 2
    assert report["device"] == "cuda" and report["settings"]["batch"] == 32  # the spec's batch on CUDA
    assert [row["lever"] for row in report["levers"]][:8] == [
        "fp32 eager (baseline)", "pool before ELU", "conv 1: no input gradient", "block 1: BatchNorm in conv 1",
        "+ channels_last", "+ bfloat16 autocast", "+ cudnn.benchmark", "fast path"]
    assert report["data_path"]["clips_per_second_resident"] > 0  # on CUDA both data paths are measured
    # the projection's rows time a step after the first, which on a GPU autotunes cuDNN at the new shape
    # (here it is slower than the 0.01 s budget: it would have been the measurement)
    assert all(row["steps_timed"] >= 1 for row in report["scaling"]["rows"])
    assert report["bf16_peak_tflops"] == 989.0
    assert round(report["projection"]["pflop"]) == 3778
    targets = {t["target"]: t for t in report["targets"]}
    assert list(targets) == ["headline step, share of bf16 peak", "projected grid, share of bf16 peak",
                             "front end share of a step", "data path / consumption (smallest)"]
    head = targets["headline step, share of bf16 peak"]
    # the paper's VGG at 96 x 1366: 10.01 GMAC a clip, 6 flops per MAC trained, 32 clips a step
    flops = 6 * 10.01e9 * 32 / report["fast"]["step_seconds"]
    assert head["goal"] == 0.40 and head["value"] == pytest.approx(flops / 989e12, rel=1e-3)
    hours = report["projection"]["device_hours"]
    assert targets["projected grid, share of bf16 peak"]["value"] == pytest.approx(1.061 / hours, rel=1e-3)
    # 3 runs at a time (the grid's choice for the spec's 264 runs), each busy half its time alone: each
    # takes max(0.5, 1/3) of its time alone, half the hours
    shared = report["projection_shared"]
    assert placed == [264] and len(profiled) == len(report["scaling"]["rows"]) == 2
    assert fresh == [True]  # the cudnn.benchmark lever, alone in its process
    assert [row["busy_fraction"] for row in report["scaling"]["rows"]] == [0.5, 0.5]
    assert shared["runs_at_once"] == 3 and shared["device_hours"] == pytest.approx(hours / 2)
    assert "  3 runs at a time, as the grid places them here (largest footprint 14.9 GiB" in perf.format_report(report)
    documented = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    fields = [*report, *report["data_path"], *report["projection"], *report["targets"][0], *shared,
              *report["scaling"]["rows"][0]]
    assert [f for f in fields if f"`{f}`" not in documented] == []  # a GPU report's fields, each named in the docs
    text = perf.format_report(report)
    assert " GPU-hours " in text and "; 1.06 at the bf16 dense peak (989 TFLOP/s)" in text
    # what the hours hold and leave out: eager here (BENCH_COMPILE=0); compiled, each run's compilation
    assert "measured eager training steps" in text and "; without compilation, the latency measurement" in text
    pr = report["projection"]
    compiled = {**report, "projection": {**pr, "assumptions": {**pr["assumptions"], "once_per_run": "measured"}}}
    text = perf.format_report(compiled)
    assert "measured compiled training steps" in text
    assert "; with each run's compilation; without the latency measurement, checkpoints" in text

    floor = 3778e15 / 989e12 / 3600  # hours at the peak: 1.06
    for hours, met in [(3.2, False), (2.9, True)]:  # the goal: 3 H100-hours
        at = {**report, "projection": {**report["projection"], "device_hours": hours}}
        projected = perf._targets(at)[1]
        assert projected["value"] == pytest.approx(floor / hours, rel=1e-3) and projected["met"] is met

    unknown = {**report, "bf16_peak_tflops": None, "device_name": "NVIDIA Mystery GPU"}
    unknown["targets"] = perf._targets(unknown)
    assert [t["met"] for t in unknown["targets"]][:2] == [None, None]
    assert "unknown: the bf16 peak of 'NVIDIA Mystery GPU' is not in the table; give it with --bf16-peak-tflops" \
        in perf.format_report(unknown)


class _OneKernel:
    """torch.profiler.profile as CUDA profiling answers without a driver here: one kernel of 1 ms (with
    none recorded, the busy fraction is an error of the measurement)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def events(self):
        return [SimpleNamespace(name="fake_kernel", device_type=SimpleNamespace(name="CUDA"), is_user_annotation=False,
                                time_range=SimpleNamespace(start=0, end=1000))]


def test_gpu_check_performance_checks_run_their_cuda_code(fake_cuda, monkeypatch, tmp_path):
    """`make gpu-check`'s P1-P4 in this process on the paper's networks at batch 32, on the fake device:
    each reaches a verdict rather than a crash (a check that raises is failed with the error as its
    line). The fake's timings and the memory figures stood in for here make the verdicts meaningless."""
    from bench.tools import gpucheck, gpucheck_speed

    monkeypatch.setattr(input_path, "epoch_order", _on_the_host(input_path.epoch_order))
    monkeypatch.setattr(torch.profiler, "profile", _OneKernel)
    monkeypatch.setattr(gpucheck_speed, "shared_busy", lambda *a, **k: {"runs": 3, "busy": 0.0})  # other processes
    batches = []
    real_batch = perf._batch
    monkeypatch.setattr(perf, "_batch", lambda case, batch, *a, **k: (batches.append((case.label, batch)),
                                                                       real_batch(case, batch, *a, **k))[1])
    monkeypatch.setattr(gpucheck, "clear_switches", lambda environ: [])  # BENCH_COMPILE=0: inductor needs a GPU
    out = tmp_path / "gpu-check.json"
    with fake_cuda.mode:
        gpucheck.run_checks(out, 32, 3, only={"P1", "P2", "P3", "P4"})
    # P2 measures evaluation as a run on a GPU evaluates: 4 training batches, but at this input 72 clips,
    # whose first block's output (128 x 128 x 1820 elements each) stays within 32-bit indexing
    assert ("vgg 16k 128x1820 x1", 32) in batches and ("vgg 16k 128x1820 x1", 72) in batches
    checks = {c["id"]: c for c in json.loads(out.read_text())["checks"]}
    # each line is the check's own verdict, which a crash (failed as "<its class>: <message>") cannot give
    assert checks["P1"]["detail"].startswith("eager: headline ") and checks["P1"]["ok"] is not None
    assert checks["P4"]["detail"].startswith("vgg 16k 48x182 x10: read per batch ") and checks["P4"]["ok"] is not None
    # P2 and P3 follow from the fake's memory answers: 1 GiB allocated at any peak, 2 GiB reserved, 60 GiB
    # free; the estimate of the largest run (hand-derived in test_cost) covers what was measured
    assert checks["P2"]["ok"] is True and checks["P2"]["detail"].startswith(
        "vgg 16k 128x1820 x1: training 1.0 GiB (batch 32; 1.0 GiB after the first steps), evaluation 1.0 GiB "
        "(batch 72), reserved 2.0 GiB; estimate 14.9 GiB")
    # waveforms may take half of free + cached: (60 + 1) / 2 = 30.5 GiB, where free alone allowed 30
    assert checks["P3"]["ok"] is True and checks["P3"]["detail"].startswith(
        "driver free 60.0 GiB + allocator cache 1.0 GiB: 30.50 GiB of waveforms fit")
    assert "(counting free memory only allowed 30.00 GiB)" in checks["P3"]["detail"]
    assert checks["P1"]["numbers"]["headline"]["case"] == "vgg 12k 96x1366 x1"  # the paper's 96 x 1366
    assert checks["P2"]["numbers"]["case"] == "vgg 16k 128x1820 x1"  # the largest input of Table II
    assert checks["P4"]["numbers"]["clips_per_second_resident"] > 0


def test_bench_grid_on_a_gpu_trains_every_run_there(fake_cuda, monkeypatch, tmp_path, copy_tiny_synthetic, capsys):
    """`bench grid SPEC --device cuda --workers 1` in this process (one local worker runs in it): the
    cache prepared, a GPU slot claimed, VGG and MusiCNN trained on device-resident waveforms in the
    GPU's default path (bf16, channels_last, fused Adam), result.json written for each. The fake
    GPU is one H100 with 60 of 80 GiB free; fvcore's cost count runs on the host, as it does."""
    from bench.cli import main
    from bench.tools.gpucheck import TINY_SPEC

    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path / "gpu-locks"))  # not the machine's slots
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.format(name="tiny", seeds="[0]", data=copy_tiny_synthetic(tmp_path / "data"), epochs=2,
                                     patience=3, archs='["vgg", "musicnn"]', extra=""))
    monkeypatch.chdir(tmp_path)
    with fake_cuda.mode:
        status = main(["grid", str(spec), "--device", "cuda", "--workers", "1", "--runs-per-gpu", "1", "--no-report"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "worker 0 (pid " in printed and " on cuda:0 (GPU-f-0), slot 1/1" in printed
    runs = tmp_path / "results" / "tiny" / "runs"
    results = [json.loads(p.read_text()) for p in sorted(runs.glob("*/result.json"))]
    assert [r["config"]["arch"] for r in results] == ["musicnn", "vgg"] and all(r["status"] == "ok" for r in results)
    for result in results:
        path = result["training"]["fast_path"]
        assert result["provenance"]["device"] == "cuda:0"
        assert result["provenance"]["device_name"] == "NVIDIA H100 80GB HBM3"
        assert path["resident_data"] and path["fused_adam"] and path["channels_last"]
        assert path["amp_dtype"] == result["training"]["amp_dtype"] == "bfloat16"
        # the fake's 1 GiB peak less the worker's resident waveforms: 48 clips of 3 s at 16 kHz in float16
        assert result["cost"]["epochs"] == 2 and result["cost"]["peak_memory_bytes"] == 2**30 - 48 * 48000 * 2


def _tiny_grid(tmp_path, copy_tiny_synthetic):
    from bench.tools.gpucheck import TINY_SPEC

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.format(name="tiny", seeds="[0]", data=copy_tiny_synthetic(tmp_path / "data"), epochs=2,
                                     patience=3, archs='["vgg", "musicnn"]', extra=""))
    return spec


# The tiny grid's batch of 16 clips, where CUDA's kernels could index 15 of VGG's: its first block's
# output is 8 channels (width 1/16 of 128) x 32 mels x 95 frames (3 s at hop 512) per clip. MusiCNN's
# largest tensor is far smaller.
FIFTEEN_VGG_CLIPS = 15 * 8 * 32 * 95


def test_a_training_batch_cuda_cannot_index_stops_the_grid_before_it_starts(fake_cuda, monkeypatch, tmp_path,
                                                                            copy_tiny_synthetic, capsys):
    """Such a batch fails its run with an illegal memory access, after which the worker's GPU is
    unusable (the run is not recorded and would fail again in every later grid): `bench grid` stops
    with one line naming the spec field and the largest batch that fits, before any data is prepared."""
    from bench.cli import main

    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path / "gpu-locks"))
    monkeypatch.setattr(fastpath, "INDEXED_ELEMENTS", FIFTEEN_VGG_CLIPS)
    spec = _tiny_grid(tmp_path, copy_tiny_synthetic)
    monkeypatch.chdir(tmp_path)
    with fake_cuda.mode:
        status = main(["grid", str(spec), "--device", "cuda", "--workers", "1", "--runs-per-gpu", "1", "--no-report"])
    out, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith("bench grid: error: protocol.batch_size = 16: vgg at 16000 Hz, 32 mels, hop x2 makes a "
                          "tensor of 24,320 elements per clip, 389,120 per batch") and "at most 15" in err
    assert "worker" not in out and not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("*.f16"))


def test_a_run_whose_training_batch_cuda_cannot_index_is_recorded_failed_with_why(fake_cuda, monkeypatch, tmp_path,
                                                                                  copy_tiny_synthetic, capsys):
    """Where a worker meets such a run all the same (the grid's check bypassed here), the run fails
    before anything is on the GPU, with the reason in its result.json, and the worker trains the next."""
    from bench.cli import main
    from bench.run import grid

    monkeypatch.setenv("BENCH_GPU_LOCKS", str(tmp_path / "gpu-locks"))
    monkeypatch.setattr(fastpath, "INDEXED_ELEMENTS", FIFTEEN_VGG_CLIPS)
    monkeypatch.setattr(grid, "refuse_oversized_cuda_batches", lambda runs: None)
    spec = _tiny_grid(tmp_path, copy_tiny_synthetic)
    monkeypatch.chdir(tmp_path)
    with fake_cuda.mode:
        status = main(["grid", str(spec), "--device", "cuda", "--workers", "1", "--runs-per-gpu", "1", "--no-report"])
    assert status == 1, capsys.readouterr()
    results = {r["config"]["arch"]: r for r in (json.loads(p.read_text())
                                               for p in (tmp_path / "results").rglob("result.json"))}
    assert results["musicnn"]["status"] == "ok"
    assert results["vgg"]["status"] == "failed"
    assert results["vgg"]["error"].startswith("UserError: protocol.batch_size = 16: vgg at 16000 Hz")
    assert "at most 15" in results["vgg"]["error"]
