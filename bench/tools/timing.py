"""What every `bench perf` measurement shares: its settings, its clock (`time_calls`: a warm-up, then
the median of calls synchronised with the device) and its peak-memory reading."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.core.machine import release_free_memory
from bench.train.fastpath import sync


@dataclass(frozen=True)
class PerfSettings:
    batch: int | None = 8
    """Clips per training step; None: the spec's batch on CUDA (32 in the shipped specs), 8 on the CPU."""
    budget_seconds: float = 30.0
    """Time one measurement may take after its warm-up step (at least one timed step is taken)."""
    max_steps: int = 5
    scaling_cases: int = 6
    data_clips: int = 96
    epochs: float | None = None
    """Epochs per run assumed by the projection; None: DEFAULT_EPOCHS, or the spec's max_epochs where
    that is fewer."""
    compile: bool = True
    """Measure the `torch.compile` lever (where a compiler exists)."""
    librosa: bool = True
    bf16_peak_tflops: float | None = None
    """The GPU's dense bf16 peak, TFLOP/s, for the GPU targets; None: the datasheet's, by the device's name."""
    compile_modes: tuple[str, ...] = ()
    """Inductor modes (beyond "default") whose compiled training steps are timed beside the default's at
    the headline and the smallest configuration (`--compile-modes`; none unless asked: each compiles
    both again, and max-autotune takes minutes)."""


def reset_peak_memory(device: torch.device) -> bool:
    """Count the peak from here; whether that was possible (on the CPU only Linux can: elsewhere the
    process's peak is that of everything measured before, and is not reported)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    release_free_memory()  # what the heap keeps free from the measurements before is not this one's
    try:  # Linux: "5" resets the process's peak resident set size
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by torch, or the process's peak resident set size (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    # getrusage(2): kilobytes on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def time_calls(fn: Callable[[], object], device: torch.device, budget: float, max_calls: int,
               warmup_may_count: bool = False, warmups: int = 1) -> dict:
    """Call `fn` once to warm up (`warmups` times: CUDA graphs record theirs on the second call), then
    until `max_calls` timed calls or `budget` seconds have passed.

    Returns the first call's time and the median of the timed calls (at least one). With
    `warmup_may_count`, a warm-up slower than the whole budget is the measurement (`calls` = 0): a
    lever that slow is rejected either way, and timing it again would only cost minutes."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - start
    if warmup_may_count and first > budget:
        return {"first_seconds": first, "seconds": first, "calls": 0}
    for _ in range(warmups - 1):
        fn()
    sync(device)  # the last warm-up's queued work is not the first timed call's
    times: list[float] = []
    while len(times) < max_calls and (not times or sum(times) + times[-1] <= budget):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"first_seconds": first, "seconds": statistics.median(times), "calls": len(times)}
