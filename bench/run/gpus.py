"""Which GPU a worker trains on: slots claimed with locks, so workers spread over the visible GPUs.

A worker never rewrites `CUDA_VISIBLE_DEVICES`: it picks an index among the devices its process can
see (`cuda:0` .. `cuda:N-1`, whatever the variable holds: indices like `4,5`, GPU UUIDs, or what
Slurm set), so a preset selection is respected and nothing depends on when CUDA initialises. The
exception is a variable naming several MIG instances, of which a CUDA process sees only the first:
there each worker claims an instance and narrows the variable to it before CUDA starts in its process.

Each GPU has `runs_per_gpu` slots. A slot is an exclusive `flock` on a file named after the GPU's
UUID in a folder shared by every process of the machine (`BENCH_GPU_LOCKS`, default
`/tmp/bench-gpu-slots-<uid>`), so two `bench grid` processes on one box, or two Slurm jobs on one
node, see each other's claims; the kernel releases a dead worker's slot. Workers take the first
free slot, filling slot 0 of every GPU before slot 1: load spreads evenly. When every slot is taken
the worker shares the least loaded GPU it can find and says so (it never waits and never falls back
to the CPU), holding a lock file beyond the slots there so that the next worker to share counts it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench.core.machine import nvidia_smi
from bench.core.store import lock_held, release_lock, try_lock


@dataclass(frozen=True)
class GpuClaim:
    index: int
    """Device index within this process's visible devices (`torch.device("cuda", index)`)."""
    identity: str
    slot: int | None
    """The claimed slot, or None when every slot was taken and the GPU is shared beyond its slots."""
    fd: int | None = None
    sharing: int = 1
    """Runs training on this GPU with this one, this one included: its slots' holders and itself where
    it is shared beyond its slots; 1 where this worker holds a slot (the slots count the others)."""

    def release(self) -> None:
        if self.fd is not None:
            release_lock(self.fd)


MACHINE_TMP = "/tmp"
"""Where the slots live by default: the machine's own /tmp, not `$TMPDIR`, which Slurm sites often set
per job (two jobs on one node would then not see each other's slots)."""


def lock_dir() -> Path:
    folder = os.environ.get("BENCH_GPU_LOCKS") or os.path.join(MACHINE_TMP, f"bench-gpu-slots-{os.getuid()}")
    return Path(folder)


def cuda_device_count() -> int:
    """How many devices CUDA shows this process, asked as `torch.cuda.is_available` asks it (no context
    is made). Not `torch.cuda.device_count()`: until torch's CUDA state is initialised that counts through
    NVML, which on a MIG box with `CUDA_VISIBLE_DEVICES` unset counts the physical GPUs where CUDA
    shows one instance, and device 1 then fails."""
    import torch

    return torch._C._cuda_getDeviceCount() if torch.cuda.is_available() else 0


def visible_identities() -> list[str]:
    """A stable name per visible GPU (its UUID), the same in every process whatever its
    `CUDA_VISIBLE_DEVICES` says; the index where the UUID is not available."""
    return [gpu_uuid(index) or f"index-{index}" for index in range(cuda_device_count())]


def gpu_uuid(index: int) -> str | None:
    """The UUID of this process's CUDA device `index` as nvidia-smi prints it (`GPU-...`); None where
    torch does not give it."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"GPU-{uuid}" if uuid else None


def visible_selection(environ=None) -> list[str] | None:
    """The entries of `CUDA_VISIBLE_DEVICES` (indices, `GPU-` or `MIG-` UUIDs), or None where it is unset."""
    environ = os.environ if environ is None else environ
    wanted = environ.get("CUDA_VISIBLE_DEVICES")
    return None if wanted is None else [w.strip() for w in wanted.split(",") if w.strip()]


def mig_instances(environ=None) -> list[str]:
    """The MIG instances `CUDA_VISIBLE_DEVICES` names (`MIG-<uuid>` as `nvidia-smi -L` prints them, or the
    older `MIG-GPU-<uuid>/<gi>/<ci>`) where it names more than one; else none. A CUDA process enumerates
    one MIG instance whatever the variable lists (the first), so each worker narrows the variable to
    the instance it claims before CUDA starts in its process (`bench.run.grid.worker_device`)."""
    instances = [n for n in visible_selection(environ) or [] if n.startswith("MIG-")]
    return instances if len(instances) > 1 else []


MIG_LISTING = re.compile(r"\(UUID: (MIG-[^)\s]+)\)")


def listed_mig_instances(run=None) -> list[str]:
    """The MIG instances `nvidia-smi -L` lists on this machine (lines such as
    `  MIG 3g.40gb  Device  0: (UUID: MIG-...)`); none where it is missing or fails."""
    return MIG_LISTING.findall(nvidia_smi(["-L"], run) or "")


def cuda_shown(wanted: str | None, uuids: list[str]) -> list[str] | None:
    """The entries of `CUDA_VISIBLE_DEVICES` (`wanted`; None where unset) that CUDA shows: those before the
    first invalid one (an index that is negative, empty or not below the GPU count, a `GPU-` UUID that
    names none of `uuids`), as CUDA reads it: "0,2,-1,1" shows 0 and 2 only. An index is read as strtoul
    reads it ("1gpu2" is 1)."""
    if wanted is None:
        return None
    shown = []
    for entry in (e.strip() for e in wanted.split(",")):
        if entry.startswith("GPU-"):
            if not any(uuid.startswith(entry) for uuid in uuids):
                break
        elif not entry.startswith("MIG-"):
            number = re.match(r"[+-]?\d+", entry)
            if number is None or not 0 <= int(number.group()) < len(uuids):
                break
            entry = str(int(number.group()))
        shown.append(entry)
    return shown


COMPUTE_MODE_QUERY = ["--query-gpu=index,uuid,compute_mode,name", "--format=csv,noheader"]
ONE_PROCESS_MODES = ("Exclusive_Process", "Exclusive_Thread", "Prohibited")
"""nvidia-smi's compute modes in which a second process cannot use the GPU (Prohibited: not even one)."""


def exclusive_gpus(environ=None, run=None) -> list[str]:
    """The visible GPUs that only one process at a time may use (nvidia-smi's compute mode
    Exclusive_Process, as clusters often set; Prohibited: none), as "index (UUID, mode)". Visible: those
    `CUDA_VISIBLE_DEVICES` names by index or UUID (prefix), all where it is unset. Empty where
    nvidia-smi is missing or fails: the default mode is the common one.

    nvidia-smi numbers the GPUs in PCI bus order, CUDA fastest first unless `CUDA_DEVICE_ORDER` is
    `PCI_BUS_ID`. The two agree where the GPUs are all one model; on a box of mixed models an index
    in `CUDA_VISIBLE_DEVICES` may be another GPU than nvidia-smi's, so every one-process GPU counts."""
    environ = os.environ if environ is None else environ
    listed = nvidia_smi(COMPUTE_MODE_QUERY, run)
    if listed is None:
        return []
    rows = [fields for line in listed.splitlines() if len(fields := [f.strip() for f in line.split(",", 3)]) == 4]
    names = cuda_shown(environ.get("CUDA_VISIBLE_DEVICES"), [row[1] for row in rows])
    by_index = names is not None and any(n.isdigit() for n in names)
    orders_differ = environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID" and len({row[3] for row in rows}) > 1
    found = []
    for index, uuid, mode, _model in rows:
        if mode not in ONE_PROCESS_MODES:  # Default, or [N/A] where not reported
            continue
        if names is None or any(n == index or (n.startswith("GPU-") and uuid.startswith(n)) for n in names):
            found.append(f"{index} ({uuid}, {mode})")
        elif by_index and orders_differ:
            found.append(f"{index} ({uuid}, {mode}; CUDA may number it otherwise: CUDA_DEVICE_ORDER is not "
                         "PCI_BUS_ID on a box of mixed GPU models)")
    return found


def _slot_prefix(identity: str) -> str:
    """The slot files' name of a GPU: its UUID without the `GPU-` or `MIG-` before it, since one MIG instance
    is `MIG-<uuid>` where `CUDA_VISIBLE_DEVICES` names it and `GPU-<uuid>` where CUDA gives its UUID
    (`gpu_uuid`, in a process that sees that instance alone): both claims must see each other's slots."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", re.sub(r"^(GPU|MIG)-", "", identity)) + ".slot"


def _slot_file(folder: Path, identity: str, slot: int) -> Path:
    return folder / f"{_slot_prefix(identity)}{slot}"


MAX_SHARERS = 256
"""Lock files tried beyond a GPU's slots (a worker that finds them all held shares without one)."""

SLOT_LOOKS = 3
"""Searches of the slots before a worker shares a GPU beyond them: another worker counting a GPU's
load (`lock_held`, a shared lock for microseconds) makes a free slot look taken for that moment."""


def claim_gpu(identities: list[str], runs_per_gpu: int, worker: int = 0, folder: Path | None = None) -> GpuClaim:
    """A slot on one of `identities` (see the module docstring); `worker` only rotates where the
    search starts, so a grid's workers land on different GPUs even before their locks are seen."""
    if not identities:
        raise ValueError("no visible GPU")
    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    n = len(identities)
    order = [(worker + k) % n for k in range(n)]
    for look in range(SLOT_LOOKS):
        if look:
            time.sleep(0.02)
        for slot in range(max(1, runs_per_gpu)):
            for index in order:
                fd = try_lock(_slot_file(folder, identities[index], slot), str(os.getpid()))
                if fd is not None:
                    return GpuClaim(index, identities[index], slot, fd)
    load = {i: sum(lock_held(p) for p in folder.glob(_slot_prefix(identities[i]) + "*")) for i in order}
    index = min(order, key=lambda i: load[i])
    # beyond its slots the worker still holds a lock file (slot K, K+1, ...), so the next worker to
    # share counts it and goes to the GPU with fewest
    for extra in range(max(1, runs_per_gpu), max(1, runs_per_gpu) + MAX_SHARERS):
        fd = try_lock(_slot_file(folder, identities[index], extra), str(os.getpid()))
        if fd is not None:
            return GpuClaim(index, identities[index], None, fd, sharing=load[index] + 1)
    return GpuClaim(index, identities[index], None, sharing=load[index] + 1)


def describe(claim: GpuClaim, runs_per_gpu: int) -> str:
    where = f"cuda:{claim.index} ({claim.identity})"
    if claim.slot is None:
        return f"{where}: all {runs_per_gpu} slot(s) of every visible GPU are taken; sharing it beyond its slots"
    return f"{where}, slot {claim.slot + 1}/{max(1, runs_per_gpu)}"


GPU_LOAD_QUERY = ["--query-gpu=uuid,utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
GPU_APPS_QUERY = ["--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"]


def _number(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None  # [N/A], [Not Supported]


def others_on_gpu(uuid: str, run=None, own_pids: frozenset = frozenset()) -> dict | None:
    """What else is using the GPU `uuid` (`GPU-...`) while nothing of ours runs on it, as nvidia-smi
    says: its utilisation (%, the share of the last sample period in which a kernel ran) and memory in
    use (MiB), and the other processes' pids and memory (MiB). A measurement on a GPU that another job
    shares times that job too. None where nvidia-smi is missing or does not list the GPU (a MIG
    instance: nvidia-smi reports its parent); a container may not show other containers' processes,
    but their utilisation and memory show."""
    load = nvidia_smi(GPU_LOAD_QUERY, run)
    row = next((f for line in (load or "").splitlines()
                if len(f := [x.strip() for x in line.split(",")]) == 3 and f[0] == uuid), None)
    if row is None:
        return None
    processes = []
    for line in (nvidia_smi(GPU_APPS_QUERY, run) or "").splitlines():
        fields = [x.strip() for x in line.split(",")]
        if len(fields) == 3 and fields[1] == uuid and _number(fields[0]) not in own_pids | {os.getpid()}:
            processes.append({"pid": _number(fields[0]), "used_mib": _number(fields[2])})
    return {"utilization_percent": _number(row[1]), "memory_used_mib": _number(row[2]), "processes": processes}


def others_on_cuda_device(index: int, run=None) -> dict | None:
    """`others_on_gpu` for this process's CUDA device `index`; None where CUDA cannot name it (the
    measurement that follows meets CUDA's own error)."""
    try:
        uuid = gpu_uuid(index)
    except (RuntimeError, AssertionError):  # torch's errors for a CUDA it cannot start
        return None
    return others_on_gpu(uuid, run) if uuid else None


BUSY_PERCENT = 5
"""Utilisation at or above which an idle-looking GPU is taken to be busy with someone else's work."""


def sharing_note(others: dict | None) -> str | None:
    """One line where `others_on_gpu` found another job on the GPU; None where it found none."""
    if not others:
        return None
    processes, busy = others["processes"], others["utilization_percent"] or 0
    if not processes and busy < BUSY_PERCENT:
        return None
    who = (f"{len(processes)} other process(es) (pid {', '.join(str(p['pid']) for p in processes)}) use this GPU"
           if processes else "another job uses this GPU")
    return (f"{who}: {busy} % busy, {others['memory_used_mib'] or 0:,} MiB in use before the measurement; "
            "the timings include its load")
