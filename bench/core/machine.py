"""What this process may use of the machine."""

from __future__ import annotations

import subprocess
from pathlib import Path


def usable_cpus() -> int:
    """The CPUs this process may use, as joblib's loky counts them: its affinity mask (taskset, a
    container's cpuset, a Slurm allocation's cgroup) and a container's CPU quota (`docker run --cpus 8`,
    a Kubernetes CPU limit: cgroup's `cpu.max`, which no affinity mask shows), not every core of the
    machine that `os.cpu_count()` counts. Threads and processes sized to the machine in an 8-CPU pod on
    a 128-core node would oversubscribe it 16x (inductor's compile processes, each a Python with torch
    loaded, 128 of them)."""
    from joblib.externals.loky import cpu_count

    return max(1, cpu_count(only_physical_cores=False))


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
