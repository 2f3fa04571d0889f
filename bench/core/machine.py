"""What this process may use of the machine."""

from __future__ import annotations

import os
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


# glibc's mallopt(3) parameters and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_MALLOPT_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_THRESHOLD: 128 * 1024}
_MALLOPT_REUSE = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1}
"""No block from its own mmap (every block from the heap, whose freed memory the next allocation
reuses), and up to 2 GiB of free memory at the heap's top kept rather than returned to the kernel."""

_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_reusing = False


def available_host_bytes(proc: Path = Path("/proc"), cgroups: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The host memory this process can still take: Linux's MemAvailable, or less where a cgroup it is in
    (a container's, a Slurm job's or a systemd unit's limit) allows less; None where neither can be read."""
    found = []
    try:
        with open(proc / "meminfo") as meminfo:
            found += [int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    found += _cgroup_memory_left(proc, cgroups)
    return max(0, min(found)) if found else None


_CGROUP_MEMORY = {  # version: (its memory controller's folder, limit, usage, reclaimable page cache in memory.stat)
    2: ("", "memory.max", "memory.current", "inactive_file"),
    1: ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
}


def _cgroup_memory_left(proc: Path, cgroups: Path) -> list[int]:
    """What the memory limit of this process's cgroup, and of each cgroup above it, leaves beyond their
    use now, less the page cache they could reclaim (as MemAvailable counts it): version 2 (one
    hierarchy, "0::PATH" in /proc/self/cgroup) or version 1 (the memory controller's own). A path not
    under the mount (a container that mounts only its own cgroup) is read from the mount's top."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except (OSError, ValueError):  # a cgroup's name may be any bytes
        return []
    left = []
    for line in lines:
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        version = 2 if number == "0" and not controllers else 1 if "memory" in controllers.split(",") else None
        if version is None:
            continue
        folder, limit_file, usage_file, cache_key = _CGROUP_MEMORY[version]
        top = cgroups / folder
        here = top / path.strip("/")
        while here != top and not here.is_dir():
            here = here.parent
        while True:
            try:
                limit = (here / limit_file).read_text().strip()
                if limit != "max" and int(limit) < 2**60:  # version 1 writes "no limit" as about 2^63
                    stat = dict(line.split() for line in (here / "memory.stat").read_text().splitlines()
                                if len(line.split()) == 2)
                    used = int((here / usage_file).read_text()) - int(stat.get(cache_key, 0))
                    left.append(int(limit) - used)
            except (OSError, ValueError):
                pass
            if here == top:
                break
            here = here.parent
    return left


def _libc():
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _user_chose_allocator() -> bool:
    """Whether this process's allocator was configured by whoever started it: glibc's variables or
    tunables, or another malloc preloaded (jemalloc, tcmalloc)."""
    env = os.environ
    return (any(name in env for name in _USER_MALLOC_SETTINGS) or "glibc.malloc" in env.get("GLIBC_TUNABLES", "")
            or any(name in env.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")))


def can_reuse_freed_memory() -> bool:
    """Whether `reuse_freed_memory(True)` takes effect in this process: Linux with glibc, whose
    allocator the user has not configured."""
    return _libc() is not None and not _user_chose_allocator()


def reuse_freed_memory(on: bool, libc=None) -> bool:
    """Make glibc's malloc keep the memory a process frees for its next allocations (`on`), or undo that;
    returns whether it is kept now.

    glibc gives every block above its mmap threshold (128 KiB, rising to at most 32 MiB) a mapping of
    its own and unmaps it when freed. A CPU training step allocates and frees maps of hundreds of MB
    (a VGG's first block at 96 x 1366, batch 16: 0.54 GB each in bf16), so each step the kernel faulted
    in and zeroed them again, page by page: 5.2 million page faults to build the network and take 4
    steps (1.1-1.3 million with the memory kept), and fills of zeros that took longer than the forward
    convolutions (docs/performance.md#measurements-behind-the-codes-choices).
    Served from the heap instead, the pages stay mapped from one step to the next. The price: the heap
    cannot return memory below its top, so the process's peak resident memory rises (1.3-1.8x measured).

    Linux with glibc only, and only where the user has not configured the allocator (`MALLOC_*_`
    variables, `GLIBC_TUNABLES`, a preloaded jemalloc or tcmalloc). Undoing sets glibc's defaults
    again (its mmap threshold stays at 128 KiB: it no longer rises) and returns free memory to the
    kernel (`malloc_trim`)."""
    global _reusing
    if on == _reusing:
        return _reusing
    libc = libc or _libc()
    if libc is None or (on and _user_chose_allocator()):
        return _reusing
    for param, value in (_MALLOPT_REUSE if on else _MALLOPT_DEFAULTS).items():
        libc.mallopt(param, value)
    if not on:
        libc.malloc_trim(0)
    _reusing = on
    return _reusing


def release_free_memory(libc=None) -> None:
    """Give the kernel back what glibc's heap holds free (`malloc_trim`), e.g. before a peak of resident
    memory is counted: memory kept for reuse (`reuse_freed_memory`) after earlier work would count in it."""
    libc = libc or _libc()
    if libc is not None:
        libc.malloc_trim(0)
