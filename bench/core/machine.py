"""What this process may use of the machine."""

from __future__ import annotations

import os


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
