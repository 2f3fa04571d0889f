"""How busy a CUDA device is: the share of wall time in which at least one kernel ran, from
torch's profiler (`make gpu-check`'s P1, `bench perf`'s scaling rows on CUDA)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


def busy_fraction(step: Callable[[], object], steps: int, ready: Callable[[], None] = lambda: None
                  ) -> tuple[float, float, tuple[float, float]]:
    """(GPU-busy fraction, seconds per step, (start, end) wall-clock time) of `steps` steps: the time
    in which a CUDA kernel ran (`kernel_seconds`) divided by the wall time of those steps alone. The
    warm-up step, the profiler's start and stop and the reading of its events lie outside the
    window; `ready` is called just before the window opens."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        ready()
        start, clock = time.time(), time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - clock
        end = time.time()
    return kernel_seconds(prof.events()) / wall, wall / steps, (start, end)


def kernel_seconds(events) -> float:
    """Seconds in which at least one CUDA kernel ran: the union of the kernels' time ranges (in
    microseconds), so kernels overlapping on two streams count once. Memory copies and sets, which
    the CUDA activity records as device events too, are not kernels; nor are the device-side spans of
    `record_function` ranges (the optimiser's step, compiled graphs' calls), which run from a range's
    first kernel to its last, gaps included (torch's own device totals leave them out the same way).
    No kernel at all is an error of the measurement, not an idle GPU."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events
                   if e.device_type.name == "CUDA" and not getattr(e, "is_user_annotation", False)
                   and not e.name.startswith(("Memcpy", "Memset")))
    if not spans:
        raise RuntimeError("the profiler recorded no CUDA kernel in the timed steps: GPU busy not measured")
    total, covered = 0.0, -math.inf
    for start, end in spans:
        if end > covered:
            total += end - max(start, covered)
            covered = end
    return total / 1e6
