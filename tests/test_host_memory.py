"""The CPU fast path keeps freed host memory for reuse (`bench.core.machine.reuse_freed_memory`)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.core import machine
from bench.tools.perf import levers
from bench.train.fastpath import baseline, fast_path

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# glibc's malloc.h: M_TRIM_THRESHOLD -1, M_MMAP_THRESHOLD -3, M_MMAP_MAX -4; mallopt(3)'s defaults:
# M_MMAP_MAX 65536, M_TRIM_THRESHOLD and M_MMAP_THRESHOLD 128 KiB
REUSE_CALLS = [("mallopt", -4, 0), ("mallopt", -1, 2**31 - 1)]
DEFAULT_CALLS = [("mallopt", -4, 65536), ("mallopt", -1, 128 * 1024), ("mallopt", -3, 128 * 1024),
                 ("malloc_trim", 0)]


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def libc(monkeypatch):
    monkeypatch.setattr(machine, "_reusing", False)
    for name in (*machine._USER_MALLOC_SETTINGS, "GLIBC_TUNABLES", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    return FakeLibc()


def test_reuse_sets_glibcs_parameters_once_and_undoing_sets_its_defaults(libc):
    assert machine.reuse_freed_memory(True, libc) is True
    assert machine.reuse_freed_memory(True, libc) is True
    assert libc.calls == REUSE_CALLS
    assert machine.reuse_freed_memory(False, libc) is False
    assert libc.calls == REUSE_CALLS + DEFAULT_CALLS
    assert machine.reuse_freed_memory(False, libc) is False and len(libc.calls) == 6


@pytest.mark.parametrize("name, value", [("MALLOC_MMAP_MAX_", "0"), ("MALLOC_TRIM_THRESHOLD_", "1000000"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0"),
                                         ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
                                         ("LD_PRELOAD", "libtcmalloc_minimal.so.4")])
def test_an_allocator_the_user_configured_is_left_alone(libc, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert machine.reuse_freed_memory(True, libc) is False and libc.calls == []


def test_without_glibc_nothing_is_changed(libc, monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda *args, **kwargs: ("", ""))
    assert machine._libc() is None
    assert machine.reuse_freed_memory(True) is False


def test_the_cpu_fast_path_reuses_host_memory_and_other_paths_leave_the_allocator(libc, monkeypatch):
    """The setting is applied where the others are, per run (`prepare_model`), both ways."""
    calls = []
    monkeypatch.setattr("bench.train.fastpath.reuse_freed_memory", calls.append)
    monkeypatch.setattr(machine, "_libc", lambda: libc)
    cpu = torch.device("cpu")
    assert fast_path(cpu, arch="vgg").reuse_host_memory is True
    assert baseline(cpu).reuse_host_memory is False
    fast_path(cpu, arch="vgg").prepare_model(torch.nn.Linear(2, 2))
    baseline(cpu).prepare_model(torch.nn.Linear(2, 2))
    assert calls == [True, False]


def test_a_run_records_host_memory_reuse_only_where_it_takes_effect(libc, monkeypatch):
    """result.json's `reuse_host_memory` says what the run had: not where the user set the allocator
    (glibc's variables) or the libc is not glibc, where `reuse_freed_memory` leaves it as it is."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(machine, "_libc", lambda: libc)
    assert fast_path(cpu, arch="vgg").reuse_host_memory is True
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert fast_path(cpu, arch="vgg").reuse_host_memory is False
    assert not any(settings.reuse_host_memory for _, settings, _ in levers(cpu, False, "vgg"))
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setattr(machine, "_libc", lambda: None)
    assert fast_path(cpu, arch="vgg").reuse_host_memory is False


def test_the_cuda_fast_path_leaves_the_allocator(monkeypatch):
    """On CUDA the maps of a step are in GPU memory (PyTorch's caching allocator reuses it already)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert fast_path(torch.device("cuda"), arch="vgg").reuse_host_memory is False


PAGE_FAULTS = """
import ctypes, resource
from bench.core.machine import reuse_freed_memory

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB): its own mapping by default


def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):  # as a training step allocates, fills and frees its maps, step after step
        block = libc.malloc(SIZE)
        ctypes.memset(block, 1, SIZE)
        libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


print(faults(), reuse_freed_memory(True), faults(), reuse_freed_memory(False), faults())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator")
def test_reused_memory_is_not_faulted_in_again():
    """The kernel's count of page faults: a 64 MiB block allocated, written and freed 4 times faults in
    its 16,384 pages of 4 KiB each time by default; with freed memory reused, only the first time (the
    heap grows once); undone, each time again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES",
                                                                                             "LD_PRELOAD")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS], env=env, capture_output=True, text=True, check=True)
    default, on, reused, off, undone = out.stdout.split()
    default, reused, undone = int(default), int(reused), int(undone)
    assert (on, off) == ("True", "False")
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    thp_always = "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text() \
        if Path("/sys/kernel/mm/transparent_hugepage/enabled").exists() else False
    if not thp_always:  # huge pages would fault 2 MiB at a time
        assert default >= 4 * pages
    assert reused <= default / 3
    assert undone >= 0.9 * default


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("cgroup, files, left", [
    # version 2 in a container (its cgroup namespace: the process's cgroup is the mount's top)
    ("0::/\n", {"memory.max": "4294967296\n", "memory.current": "1073741824\n", "memory.stat": "inactive_file 0\n"},
     3 * 2**30),
    # version 2 on a host: a Slurm job's limit on its step's parent, read from the process's own cgroup up
    ("0::/system.slice/slurmstepd.scope/job_7/step_0\n",
     {"system.slice/slurmstepd.scope/job_7/memory.max": "2147483648\n",
      "system.slice/slurmstepd.scope/job_7/memory.current": "1610612736\n",
      "system.slice/slurmstepd.scope/job_7/memory.stat": "anon 1\ninactive_file 536870912\n",
      "system.slice/slurmstepd.scope/job_7/step_0/memory.max": "max\n"}, 2**30),
    # version 1 (docker run -m 4g): the memory controller's files, page cache it could reclaim not counted
    ("12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n",
     {"memory/docker/abc/memory.limit_in_bytes": "4294967296\n",
      "memory/docker/abc/memory.usage_in_bytes": "3221225472\n",
      "memory/docker/abc/memory.stat": "cache 2147483648\ntotal_inactive_file 2147483648\n"}, 3 * 2**30),
    # version 1 without a limit (written as about 2^63), and a path not under the mount: its top is read
    ("4:memory:/elsewhere\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n",
                               "memory/memory.usage_in_bytes": "1\n", "memory/memory.stat": ""}, None),
])
def test_a_cgroups_memory_limit_bounds_what_is_available(tmp_path, cgroup, files, left):
    """The CPU throughput pass takes half of what is available: in a container, a Slurm job or a systemd
    unit the limit is its cgroup's, which only the root's files of version 2 had been read for (a
    version 1 host's `docker run -m 4g` sized the pass by the whole host's memory)."""
    proc = _tree(tmp_path / "proc", {"meminfo": "MemTotal: 100000000 kB\nMemAvailable: 50000000 kB\n",
                                     "self/cgroup": cgroup})
    cgroups = _tree(tmp_path / "cgroup", files)
    assert machine.available_host_bytes(proc, cgroups) == (50000000 * 1024 if left is None else left)
    assert machine.available_host_bytes(tmp_path / "nowhere", cgroups) is None
    (proc / "meminfo").unlink()  # a limit read all the same
    assert machine.available_host_bytes(proc, cgroups) == left
    (proc / "self" / "cgroup").write_bytes(b"0::/caf\xe9\n")  # a cgroup's name may be any bytes
    assert machine.available_host_bytes(proc, cgroups) is None


def test_the_cpus_throughput_pass_runs_on_glibcs_own_allocator(monkeypatch):
    """A grid run's training keeps freed host memory (heap only, never returned): a throughput pass after
    it peaked at up to 1.33x the estimate its batch is sized by, where a pass with glibc's own allocator
    (a fresh process's, as `bench plan --latency` and a process serving have it) stays under it. The
    pass now sets glibc's own first; the next run's training sets reuse again."""
    from bench.train import latency

    calls = []
    monkeypatch.setattr(latency, "reuse_freed_memory", calls.append)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model.input_frames = 4
    latency.measure_inference(model, lambda waveforms: torch.zeros(len(waveforms), 3, 4), 1024,
                              torch.device("cpu"), repeats=1, warmup=0, batch=2)
    assert calls == [False]
