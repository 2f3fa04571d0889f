"""How training and evaluation steps are executed on each device: the suite's fast path.

Nothing here changes what a network computes; it changes how: autocast dtype, memory layout,
cuDNN autotuning, `torch.compile`, evaluation batch size, where the waveforms live and how they reach
the device. Each choice is measured by `bench perf` (README, "Performance"):

- CPU with native bf16 (AVX512-BF16 or AMX, as oneDNN reports it): bf16 autocast and channels_last,
  eager. On an AMD EPYC with AVX512-BF16 this made the full VGG step at 96 x 1366 about 3x faster than
  fp32 and every demo model 1.2-3x faster; `torch.compile` on top of it made the step slower.
- CPU without native bf16 (AVX2 only, e.g. AMD EPYC Zen 3): fp32, NCHW. bf16 autocast makes the
  convolutions about 10x slower there (oneDNN emulates bf16), and channels_last about 2.5x slower
  at 128->384 channels on 48 x 341. `torch.compile` fuses BatchNorm/ELU/pooling; it pays back its
  compile time (~1 min for VGG) only in runs of thousands of steps, so "auto" compiles runs that
  long and leaves demo-sized runs eager.
- CUDA: bf16 autocast (fp16 with loss scaling where bf16 is missing), channels_last, cuDNN
  benchmark (input shapes are fixed within a run), `torch.compile` for long runs, the waveforms
  resident on the GPU when they fit, otherwise pinned memory, non-blocking copies and loader workers.

`BENCH_COMPILE` = auto | 1 | 0 overrides the compile choice (e.g. 0 where no C++ compiler exists).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass

import torch

COMPILE_MIN_STEPS = 5_000
"""Runs with at least this many planned training steps are compiled ("auto"): at ~60 s of compile
time, a 10 % faster step pays back once a step costs more than 60 s / (0.1 x 5000) = 0.12 s."""

RESIDENT_FRACTION = 0.5
"""Waveforms go to the GPU when they take at most this fraction of its free memory."""


@dataclass(frozen=True)
class FastPath:
    """Execution settings of one run on one device (none of them changes the network's function)."""

    device: str
    amp_dtype: str | None
    """Autocast dtype name ("bfloat16", "float16") or None for plain fp32."""
    channels_last: bool
    cudnn_benchmark: bool
    compile: bool
    eval_batch_factor: int
    """Evaluation batches are this many training batches (no autograd: memory allows it)."""
    pin_memory: bool
    loader_workers: int

    @property
    def torch_amp_dtype(self) -> torch.dtype | None:
        return getattr(torch, self.amp_dtype) if self.amp_dtype else None

    def as_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------------------------------
    # applying the settings

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Layout and compilation, in place (parameter names and state_dict keys are unchanged)."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # fixed input shapes within a run: autotuning pays off
        if self.compile:
            model.compile()
        return model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) mel -> (B, 1, F, T) in the model's memory layout."""
        x = x.unsqueeze(1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def autocast(self):
        dtype = self.torch_amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=dtype)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: CUDA (Ampere and later), or a CPU whose oneDNN
    reports bf16 support (AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check and check())


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None = plain fp32).

    "auto" is bf16 where the device computes it natively, fp16 on CUDA devices without bf16, and
    fp32 on CPUs without bf16 instructions, where bf16 autocast made training steps 2-4x slower for
    reduced-width VGG and MusiCNN and ~10x for the convolutions of the full VGG (oneDNN emulates
    it). "bf16" forces bf16, "fp32" turns autocast off.
    """
    if precision == "fp32" or (precision == "auto" and device.type == "cpu" and not native_bf16(device)):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def compiler_available(device: torch.device) -> bool:
    """Inductor needs a C++ compiler on the CPU (Triton on CUDA ships with torch)."""
    return device.type == "cuda" or any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


def should_compile(device: torch.device, planned_steps: int | None, eager_faster: bool = False) -> bool:
    """`BENCH_COMPILE` = 1 / 0 forces it; "auto" compiles long runs where a compiler exists, unless
    the eager path was measured faster (`eager_faster`: bf16 + channels_last on the CPU)."""
    choice = os.environ.get("BENCH_COMPILE", "auto").strip().lower()
    if choice in ("1", "true", "yes", "on"):
        return True
    if choice in ("0", "false", "no", "off"):
        return False
    return (not eager_faster and planned_steps is not None and planned_steps >= COMPILE_MIN_STEPS
            and compiler_available(device))


def fast_path(device: torch.device, precision: str = "auto", planned_steps: int | None = None) -> FastPath:
    """The suite's settings for `device` (see the module docstring for the measurements)."""
    dtype = autocast_dtype(device, precision)
    cuda = device.type == "cuda"
    cpu_bf16 = device.type == "cpu" and dtype == torch.bfloat16 and native_bf16(device)
    return FastPath(
        device=device.type,
        amp_dtype=str(dtype).replace("torch.", "") if dtype else None,
        channels_last=cuda or cpu_bf16,
        cudnn_benchmark=cuda,
        compile=should_compile(device, planned_steps, eager_faster=cpu_bf16),
        eval_batch_factor=4 if cuda else 2,
        pin_memory=cuda,
        loader_workers=min(4, os.cpu_count() or 1) if cuda else 0,
    )


def baseline(device: torch.device) -> FastPath:
    """Plain fp32 eager execution: what `bench perf` compares the fast path with."""
    return FastPath(device=device.type, amp_dtype=None, channels_last=False, cudnn_benchmark=False,
                    compile=False, eval_batch_factor=1, pin_memory=False, loader_workers=0)


def resident_fits(n_bytes: int, device: torch.device) -> bool:
    """Whether `n_bytes` of waveforms may live on `device` (CUDA only: on the CPU they already do)."""
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return n_bytes <= RESIDENT_FRACTION * free
