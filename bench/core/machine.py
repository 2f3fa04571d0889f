"""What this process may use of the machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (taskset, a container's
    cpuset, a Slurm allocation's cgroup), not every core of the machine that `os.cpu_count()` counts.
    Threads and processes sized to the machine on a 4-of-64-core allocation would oversubscribe it 16x."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return os.cpu_count() or 1


def nvidia_smi(argv: list[str], run=None) -> str | None:
    """What `nvidia-smi` prints for `argv`, or None where it is missing or fails."""
    try:
        return (run or subprocess.run)(["nvidia-smi", *argv], capture_output=True, text=True, timeout=30,
                                       check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")
"""One folder per NVIDIA GPU the kernel driver has (Linux), where nvidia-smi is not installed."""


def nvidia_gpus(run=None, driver_gpus: Path | None = None) -> int:
    """NVIDIA GPUs this machine has, whatever CUDA can make of them: `nvidia-smi -L`'s `GPU n:` lines,
    else the kernel driver's list; 0 where neither knows of one."""
    listed = nvidia_smi(["-L"], run)
    if listed is not None:
        return sum(line.startswith("GPU ") for line in listed.splitlines())
    try:
        return sum(1 for _ in (driver_gpus or DRIVER_GPUS).iterdir())
    except OSError:
        return 0
