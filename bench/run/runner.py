"""The grid runner: which runs are left, who runs them, and where their results land.

The run folder and result.json's validity are defined in `bench.core.layout` (the results contract).

Nothing invalid is ever read as valid: a result.json that does not parse or does not describe this
run is not a done-marker, and the worker that claims the run sets it aside and redoes the run (from
its checkpoint, which `bench.train.loop` validates the same way). Temp files of killed writers are
removed by the worker that claims the folder.

Several workers (processes, GPUs, Slurm jobs on a shared file system) may work on one results folder:
each run is claimed with an exclusive, non-blocking `flock` on its lock file before it starts and
checked again for a result after the claim, so each run is executed exactly once. A worker killed
with SIGKILL holds no lock any more (the kernel drops it with the process), so its run is reclaimed
by the next worker that looks, and resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from architectures.options import width_of
from bench.core import layout
from bench.core.errors import (
    RERUN_TO_CONTINUE,
    DeviceFailure,
    Interrupted,
    UserError,
    is_job_stop,
    is_out_of_memory,
    one_line,
    resume_hint,
)
from bench.core.interrupts import stop_if_interrupt_lost
from bench.core.layout import (  # noqa: F401 - RESULT, EXECUTIONS, result_problem: re-exported for callers
    BEST,
    CHECKPOINT,
    CONFIG,
    ERROR,
    EXECUTIONS,
    LOCK,
    RESULT,
    load_result,
    read_result,
    result_problem,
)
from bench.core.paths import CODE_ROOT
from bench.core.store import (
    append_line,
    atomic_write_json,
    atomic_write_text,
    fsync_folder,
    is_misplaced,
    is_resource_error,
    lock_held,
    read_regular_file,
    reject,
    release_lock,
    remove_temp_files,
    resource_cause,
    rewrite_lock_note,
    try_lock,
)
from bench.spec import RunSpec, Spec


def run_dir(results: Path, spec: Spec, run: RunSpec) -> Path:
    return layout.run_dir(results, spec.name, run.run_id)


RESULT_VISIBLE_SECONDS = 120.0
"""How long a result.json another host wrote may stay unseen here: an NFS client trusts its cached
"no such file" until the folder's cached attributes expire (acdirmax, 60 s by default); taking the
lock refreshes the lock file only. Past this a missing result is taken as missing (removed to redo it).
Counted on the file system's clock (the lock file's modification times), not between two hosts' clocks,
which need not agree: a writer 3 minutes behind made its result look older than this at once."""


class RunLock:
    """An exclusive, non-blocking claim on one run folder (released on close or when the process dies)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fd: int | None = None
        self.previous = b""
        """The last holder's note, as the lock file held it when this claim was taken."""
        self.claimed_on_disk: float | None = None
        """The lock file's modification time once this claim wrote its note: the time of the claim on the
        file system's clock (the file server's, on a network file system), as other hosts' notes have it."""

    LOOK_RETRIES = 3
    """A look at the lock (`held_by_other`, from `bench status` or another grid's header) holds a
    shared lock for microseconds; a claim that meets one tries again instead of skipping the run."""

    def acquire(self) -> bool:
        missing, folder = [], self.folder
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        self.folder.mkdir(parents=True, exist_ok=True)
        for made in reversed(missing):  # a new run (and runs/): named in its parent before anything goes in it
            fsync_folder(made.parent)
        note = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
        for attempt in range(self.LOOK_RETRIES):
            if attempt:
                time.sleep(0.02)
            previous: list[bytes] = []
            self.fd = try_lock(self.folder / LOCK, note, previous)
            if self.fd is not None:
                self.previous = previous[0]
                self.claimed_on_disk = self._modified()
                return True
        return False

    def _modified(self) -> float | None:
        """The lock file's modification time (after a write: now, on the file system's clock)."""
        try:
            return os.fstat(self.fd).st_mtime
        except OSError:
            return None

    def mark_written(self) -> None:
        """Note in the lock, before it is released, that this holder wrote the run's result.json: when, by
        this host's clock and by the file system's (the note's own modification time, then written in)."""
        note = {"host": socket.gethostname(), "pid": os.getpid(), "result_written": time.time()}
        with contextlib.suppress(OSError):  # a courtesy to the next holder; the result is written
            rewrite_lock_note(self.fd, json.dumps(note).encode())
            on_disk = self._modified()
            if on_disk is not None:
                rewrite_lock_note(self.fd, json.dumps({**note, "result_written_on_disk": on_disk}).encode())

    def unseen_result(self) -> dict | None:
        """The last holder's note, with `seconds_ago`, where it wrote the run's result on another host
        less than RESULT_VISIBLE_SECONDS ago: a result this process does not see then is hidden by a network file
        system's cache, not absent. (On one host the kernel sees its own writes and removals: a
        result.json removed there to redo the run is taken as gone.)"""
        return unseen_result(self.previous, self.claimed_on_disk)

    def unseen_result_at_a_look(self) -> dict | None:
        """`unseen_result` of the note the lock holds now, for a look that claims nothing (`run_states`: a
        dry run, the grid's first line); by this host's clock against the writer's, as it has no time of
        its own on the file system's."""
        try:
            return unseen_result(read_regular_file(self.folder / LOCK), None)
        except OSError:  # none, or not a file (a link to a FIFO, whose read would wait for good)
            return None

    def keep_previous(self) -> None:
        """Put the last holder's note back, for the next claim to read."""
        with contextlib.suppress(OSError):
            rewrite_lock_note(self.fd, self.previous)

    def release(self) -> None:
        if self.fd is not None:
            release_lock(self.fd)
            self.fd = None

    def held_by_other(self) -> bool:
        """True if another live process holds the lock right now (a look that writes nothing)."""
        return lock_held(self.folder / LOCK)


def unseen_result(note_bytes: bytes, claimed_on_disk: float | None) -> dict | None:
    """A lock note (`RunLock.mark_written`) of a result written on another host less than
    RESULT_VISIBLE_SECONDS ago, with `seconds_ago`: by the file system's clock where the claim that read it
    has its time there (`claimed_on_disk`), else by this host's against the writer's."""
    try:
        note = json.loads(note_bytes or b"{}")
        if "result_written_on_disk" in note and claimed_on_disk is not None:
            ago = claimed_on_disk - float(note["result_written_on_disk"])
        else:  # a look, or a note of an earlier version's: this host's clock against the writer's
            ago = time.time() - float(note["result_written"])
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):  # not a note this suite wrote
        return None
    if note.get("host") == socket.gethostname():
        return None
    # a time in the future or at infinity is none this suite wrote (the fallback's two clocks may
    # differ by a little either way): left to it, the run would never be trained
    return {**note, "seconds_ago": ago} if abs(ago) < RESULT_VISIBLE_SECONDS else None


def unseen_result_line(folder: Path, unseen: dict) -> str:
    """What the grid says of a run left to a result another host wrote that this one does not see yet."""
    return (f"{folder / RESULT}: written by {unseen.get('host')} (pid {unseen.get('pid')}) "
            f"{unseen['seconds_ago']:.0f} s ago, not visible here yet (a network file system's cache); the run is "
            "left to that result")


@dataclass(frozen=True)
class RunState:
    run: RunSpec
    folder: Path
    action: str
    """"run", "resume", "skip" (done), "skip-failed", "skip-running", "skip-unseen" (done on another host,
    its result not visible here yet)."""
    reason: str


def run_states(spec: Spec, results: Path, runs: list[RunSpec], retry_failed: bool = False) -> list[RunState]:
    """What the grid would do with each run, and why."""
    states = []
    for run in runs:
        folder = run_dir(results, spec, run)
        if folder.is_symlink():  # a copy from elsewhere: the run's files would be written into its target
            raise UserError(f"{folder}: a link (to {os.readlink(folder)}) where a run's folder belongs; move it "
                            "aside (or put the folder itself there), then rerun")
        result, problem = load_result(folder)
        if result is not None and result.get("status") == "ok":
            states.append(RunState(run, folder, "skip", "done"))
        elif result is not None and not retry_failed:
            states.append(RunState(run, folder, "skip-failed", f"failed: {result.get('error', '?')}; "
                                                               "--retry-failed reruns it"))
        elif RunLock(folder).held_by_other():
            states.append(RunState(run, folder, "skip-running", "claimed by another live worker"))
        elif result is None and not problem and (unseen := RunLock(folder).unseen_result_at_a_look()):
            states.append(RunState(run, folder, "skip-unseen", f"done by {unseen.get('host')} "
                                   f"{unseen['seconds_ago']:.0f} s ago, its {RESULT} not visible here yet (a "
                                   "network file system's cache)"))
        elif problem:
            states.append(RunState(run, folder, "resume" if (folder / CHECKPOINT).exists() else "run",
                                   f"{RESULT} is invalid ({problem}): set aside and redone"))
        elif result is not None:  # its checkpoint, if any, is deleted: a retry starts from scratch
            states.append(RunState(run, folder, "run", "retry of a failed run, from scratch"))
        elif (folder / CHECKPOINT).exists():
            states.append(RunState(run, folder, "resume", "interrupted: resumes from its checkpoint"))
        else:
            states.append(RunState(run, folder, "run", "not run yet"))
    return states


def shard(runs: list[RunSpec], index: int, count: int) -> list[RunSpec]:
    """Runs whose position in the grid is `index` modulo `count` (0-based), for any scheduler."""
    return [r for k, r in enumerate(runs) if k % count == index]


def git_commit(root: Path = CODE_ROOT) -> str | None:
    """The commit of the checkout this code runs from (`-dirty` with uncommitted changes), or None.

    Only a checkout whose top level is this package's parent counts: an installed copy in a venv
    inside some other git repository is not that repository's code."""
    root = Path(root).resolve()
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        if Path(top).resolve() != root:
            return None
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def running_commit() -> str | None:
    """`git_commit()` as this process first read it, as `code_sha256` is: a checkout updated while a
    grid runs does not change the code its workers imported, and a later run must not name the new
    commit beside the old code's digest."""
    return git_commit()


CODE_PACKAGES = ("bench", "architectures")
"""The packages whose source is the suite's code (`code_sha256`)."""


@functools.cache
def code_sha256(root: Path = CODE_ROOT) -> str | None:
    """The suite's code, identified without git: the SHA-256 of what `sha256sum` prints for its Python
    files (`CODE_PACKAGES`) in byte order of their paths, which in a checkout or site-packages is
    `find bench architectures -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum | sha256sum`. An
    installed copy has no git commit, and its version stays the release's through every change; a
    checkout's `-dirty` commit does not say which changes. None where the files cannot be read. Read
    once per process: the code that runs is what it imported."""
    import hashlib

    root = Path(root)
    try:
        files = sorted((path.relative_to(root).as_posix().encode(), path) for package in CODE_PACKAGES
                       for path in (root / package).rglob("*.py") if path.is_file())
        listing = b"".join(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"  " + name + b"\n"
                           for name, path in files)
    except OSError:
        return None
    return hashlib.sha256(listing).hexdigest() if files else None


def device_name(device, threads: int | None = None) -> str:
    """The GPU's name, or the CPU's with the torch threads a run trained on (`threads`, else this
    process's)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({threads or torch.get_num_threads()} threads)"


def library_versions() -> dict:
    """The versions of Python, this suite and the libraries a run's numbers depend on (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    packages = {"bench": "mel-resolution-bench",  # this suite, under its distribution name
                **{name: name for name in ("torch", "torchaudio", "numpy", "scikit-learn", "soundfile", "soxr",
                                           "fvcore")}}
    for key, package in packages.items():
        try:
            versions[key] = version(package)
        except PackageNotFoundError:
            versions[key] = None
    return versions


def provenance(device, commit: str | None, versions: dict, threads: int | None = None) -> dict:
    """Where and with what a run ran: its code's `commit` and library `versions` (read once, as the run
    starts: `git_commit` runs git three times), the device, host and platform."""
    return {"git_commit": commit, "code_sha256": code_sha256(), "versions": versions, "device": str(device),
            "device_name": device_name(device, threads), "host": socket.gethostname(), "platform": platform.platform()}


def execute_run(spec: Spec, run: RunSpec, folder: Path, cache_for: Callable, device, log: Callable = print,
                epoch_log: Callable | None = None, grid: str | None = None) -> dict:
    """Train one claimed run and write its result.json (status ok or failed); returns the result. `grid`:
    the token of the grid that trains it (`--retry-failed`'s), kept as `provenance.grid`."""
    import torch

    from bench.core import framing
    from bench.cost.gmac import model_cost
    from bench.train.fastpath import compile_cache_folder
    from bench.train.loop import train_run
    from bench.train.model_file import frontend_settings, model_description, write_model_json

    atomic_write_json(folder / CONFIG, {"run_id": run.run_id, "spec": spec.name, **run.canonical()})
    # one line per start: how often a run was (re)started
    append_line(folder / EXECUTIONS, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
                + "\n")
    mel = run.mel
    n_frames = mel.n_frames(run.dataset.clip_seconds)
    result = {
        "schema_version": layout.SCHEMA_VERSION,
        "run_id": run.run_id,
        "spec": spec.name,
        "config": {"arch": run.arch, "width": width_of(run.configuration.options), "sample_rate": mel.sample_rate,
                   "n_mels": mel.n_mels, "hop_multiplier": mel.hop_multiplier, "log": mel.log, "seed": run.seed,
                   "dataset": run.dataset.name, "n_frames": n_frames},
        "canonical": run.canonical(),
    }
    started = time.time()
    # what the checkpoint keeps of this execution, beside the epoch it starts at: a resumed run's result
    # names every execution that trained it, and a resume under other code says so (the device is not
    # asked here: a GPU that failed under the worker's last run is met by the run, as a device failure)
    commit, versions = running_commit(), library_versions()
    execution = {"started": started, "host": socket.gethostname(), "git_commit": commit, "code_sha256": code_sha256(),
                 "versions": {name: versions[name] for name in ("bench", "torch")}}
    executions = None
    try:
        cache = cache_for(mel.sample_rate)
        trained = train_run(run, cache, folder, device, log, epoch_log, execution=execution)
        executions, threads = trained["executions"], trained["torch_threads"]
        input_config = mel.input_config(run.dataset.clip_seconds)
        cost = model_cost(run.arch, input_config, trained["n_tags"], run.configuration.options)
        test = trained["test"]
        result.update(
            status="ok",
            metrics={"roc_auc": test["roc_auc"], "pr_auc": test["pr_auc"], "n_tags": test["n_tags"],
                     "excluded_tags": test["excluded_tags"], "per_tag": test["per_tag"]},
            valid={"roc_auc": trained["best_valid"]["roc_auc"]},
            tag_names=trained["tag_names"],  # the network's output order (`bench tag RUN_DIR`)
            cost={"gmac": cost.gmac, "gmac_analytic": cost.gmac_analytic, "params": cost.params,
                  "fvcore_unsupported": cost.fvcore_unsupported, "segments": cost.segments,
                  "storage_bytes": framing.storage_bytes(mel.n_mels, n_frames, 4),
                  "storage_bytes_f16": framing.storage_bytes(mel.n_mels, n_frames, 2),
                  "train_seconds": trained["train_seconds"], "eval_seconds": trained["eval_seconds"],
                  "epochs": trained["epochs"], "best_epoch": trained["best_valid"]["epoch"],
                  "clips_per_second": trained["clips_per_second"],
                  "peak_memory_bytes": trained["peak_memory_bytes"],
                  "peak_reserved_bytes": trained["peak_reserved_bytes"],
                  # measured after training, on the run's device (bench.train.latency)
                  "latency_ms": trained["inference"]["latency_ms"],
                  "network_latency_ms": trained["inference"]["network_latency_ms"],
                  "throughput_clips_per_second": trained["inference"]["throughput_clips_per_second"],
                  "throughput_batch": trained["inference"]["batch"]},
            training={"amp_dtype": trained["amp_dtype"], "fast_path": trained["fast_path"], "clips": trained["clips"],
                      "history": trained["history"]},
            data={"cache_failed": len(cache.manifest["failed"]), "cache_padded": cache.manifest["padded"]},
        )
        # what `bench tag RUN_DIR` loads, written before result.json (the done-marker)
        write_model_json(folder, model_description(
            run.run_id, run.arch, dataclasses.asdict(run.configuration.options),
            input_config, trained["input_frames"],
            frontend_settings(mel.sample_rate, mel.n_mels, mel.hop_multiplier, mel.log), trained["tag_names"],
            weights=BEST, weights_key="model", dataset=run.dataset.name))
    except KeyboardInterrupt as exc:
        if executions is not None:  # trained: stopped in its cost or model.json
            raise stopped_after_training(run.run_id, exc) from None
        raise
    except Exception as exc:  # recorded, and the grid goes on
        if is_job_stop(exc):  # the job's time is up: the run resumes from its checkpoint in a later job
            raise
        if is_resource_error(exc) or is_misplaced(exc):  # a full disk, a read-only folder, a folder where a
            raise  # file belongs: not the run's fault; the grid stops, resumable
        machine = resource_cause(exc, compile_cache_folder())
        if machine is not None:  # the same met by torch.compile, under its cache folder
            raise machine from exc
        if is_device_failure(exc, device):  # not the run's failure: this worker's GPU is unusable from now on
            raise DeviceFailure(f"{device} failed during {run.run_id} ({type(exc).__name__}: {one_line(exc)}); "
                                "the run was not recorded as failed and resumes in the next grid") from exc
        _record_failure(folder, result, exc, log)
    try:
        threads = threads if executions else torch.get_num_threads()  # a resumed run's can be its earlier ones'
        result["provenance"] = provenance(device, commit, versions, threads)
        result["provenance"].update(started=started, finished=time.time(), torch_threads=threads)
        if grid is not None:
            result["provenance"]["grid"] = grid
        if executions:
            result["provenance"]["executions"] = executions
        atomic_write_json(folder / RESULT, result)
    except KeyboardInterrupt as exc:
        if result.get("status") == "ok":
            raise stopped_after_training(run.run_id, exc) from None
        raise
    if result.get("status") == "ok":
        remove_finished_checkpoint(folder)
    return result


def stopped_after_training(run_id: str, exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """Ctrl-C once a run's training returned (its cost measured, model.json or result.json being written):
    a rerun finishes it, as one stopped in its test does, and the grid's last line says so."""
    return exc if isinstance(exc, Interrupted) else Interrupted(resume_hint(run_id, None, trained=True))


def remove_finished_checkpoint(folder: Path) -> None:
    """A done run's checkpoint.pt: nothing resumes from it, and it is large (208 MB for VGG at width 1,
    55 GB for `paper-mtat-vgg`'s 264 runs); best.pt holds the weights the tools load. Tidying only: a
    folder that cannot be written (a read-only share of finished results) keeps it."""
    try:
        (folder / CHECKPOINT).unlink(missing_ok=True)
    except OSError:
        pass


OUT_OF_MEMORY_HINT = ("other runs on the same GPU share its memory: rerun with --retry-failed, with "
                      "--runs-per-gpu 1 if it fails again")

def is_device_failure(exc: BaseException, device=None) -> bool:
    """A CUDA error after which the process cannot go on using its GPU: torch's AcceleratorError, a
    RuntimeError "CUDA error: ..." in releases that raise that, or any error after which the device
    no longer synchronises (a fault first met in a Triton kernel says "Triton Error [CUDA]: ...", in
    cuDNN "cuDNN error: ..."). Running out of memory is not one: the GPU works on, and the run is
    recorded as failed, however it is worded (`bench.core.errors.ALLOCATION_FAILURES`)."""
    import torch

    if is_out_of_memory(exc):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if (accelerator_error is not None and isinstance(exc, accelerator_error)) or (
            isinstance(exc, RuntimeError) and str(exc).startswith("CUDA error")):
        return True
    if getattr(device, "type", None) != "cuda":
        return False
    try:  # a sticky error fails every later call into the device
        torch.cuda.synchronize(device)
    except Exception:
        return True
    return False


def _record_failure(folder: Path, result: dict, exc: Exception, log: Callable) -> None:
    atomic_write_text(folder / ERROR, traceback.format_exc())
    hint = f" ({OUT_OF_MEMORY_HINT})" if is_out_of_memory(exc) else ""
    # one line, as the log, the grid's summary and the report print it (CUDA's errors run to three);
    # the traceback and the whole message are in the run's error file
    result.update(status="failed", error=one_line(f"{type(exc).__name__}: {exc}{hint}"))
    log(f"  FAILED {result['run_id']}: {result['error']} (traceback: {folder / ERROR})")


def _settled(result: dict | None, retry_grid: str | None) -> bool:
    """A run needs no work: it is done, or it failed and is not to be retried. `--retry-failed` retries
    the failures other grids recorded (`retry_grid`, this grid's token); one recorded by a worker of
    this grid (its `provenance.grid`) is settled: otherwise every worker would retry a run that fails
    again. A token, not the time the grid began: the hosts of a cluster need not agree on the time."""
    if result is None:
        return False
    if result.get("status") == "ok" or retry_grid is None:
        return True
    provenance = result.get("provenance")  # a hand-edited file's may be anything
    return isinstance(provenance, dict) and provenance.get("grid") == retry_grid


def worker_loop(spec: Spec, results: Path, runs: list[RunSpec], cache_for: Callable, device,
                retry_grid: str | None, log: Callable = print, epoch_log: Callable | None = None,
                after_run: Callable[[], None] | None = None) -> list[str]:
    """Claim and execute every run of `runs` that is not done; returns the run ids this worker executed.
    Failed runs are retried where `retry_grid` is this grid's token (`_settled`).
    `after_run` is called after each run this worker executed (the grid prints its progress there).

    Runs claimed by another worker are looked at again after each pass, so the run of a worker that
    died meanwhile (its lock went with it) is taken over; a pass that finds nothing to do ends it.
    """
    executed: list[str] = []
    pending = list(runs)
    while pending:
        claimed_elsewhere = []
        for run in pending:
            stop_if_interrupt_lost()  # one the garbage collection after the last run could only print
            outcome = _claim_and_execute(spec, run_dir(results, spec, run), run, cache_for, device, retry_grid,
                                         log, epoch_log)
            if outcome == "held":
                claimed_elsewhere.append(run)
            elif outcome == "executed":
                executed.append(run.run_id)
                if after_run is not None:
                    after_run()
        if len(claimed_elsewhere) == len(pending):
            break
        pending = claimed_elsewhere
    return executed


def _claim_and_execute(spec: Spec, folder: Path, run: RunSpec, cache_for: Callable, device, retry_grid: str | None,
                       log: Callable, epoch_log: Callable | None = None) -> str:
    """"settled", "held" (another worker has it) or "executed"."""
    result = read_result(folder)
    if _settled(result, retry_grid):
        if result.get("status") == "ok":  # one its worker was stopped before removing, or an earlier release's
            remove_finished_checkpoint(folder)
        return "settled"
    lock = RunLock(folder)
    if not lock.acquire():
        return "held"
    try:
        remove_temp_files(folder)  # left by a writer that was killed; the folder is ours now
        existing, problem = load_result(folder)  # it may have finished between our look and our claim
        if _settled(existing, retry_grid):
            lock.keep_previous()  # a writer's note, for a host whose file system does not show the result yet
            return "settled"
        unseen = lock.unseen_result() if existing is None and not problem else None
        if unseen is not None:  # finished meanwhile on another host, as its note in the lock says
            log(unseen_result_line(folder, unseen))
            lock.keep_previous()
            return "settled"
        if problem:
            log(f"{folder / RESULT}: invalid ({problem}); set aside as {reject(folder / RESULT).name}, "
                "the run is redone")
        if existing is not None:  # a failed run being retried starts from scratch
            # the failure's record last, once its checkpoint is gone for good: a retry killed in between
            # is still a failed run, never a resume from the failed attempt's checkpoint
            for stale in (CHECKPOINT, BEST, ERROR, layout.MODEL_JSON, layout.HISTORY):
                (folder / stale).unlink(missing_ok=True)
            fsync_folder(folder)
            (folder / RESULT).unlink(missing_ok=True)
        log(f"run {run.run_id} (pid {os.getpid()})")
        result = execute_run(spec, run, folder, cache_for, device, log, epoch_log, grid=retry_grid)
        lock.mark_written()
        if result["status"] == "ok":
            m, c = result["metrics"], result["cost"]
            seconds = c["train_seconds"]
            took = f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
            log(f"  done {run.run_id}: test roc_auc {m['roc_auc']:.4f} pr_auc {m['pr_auc']:.4f}, "
                f"{c['epochs']} epoch{'' if c['epochs'] == 1 else 's'}, {took}")
        return "executed"
    finally:
        lock.release()


def log_to_stdout(message: str) -> None:
    """One line, in one write: print() writes the newline apart where stdout is unbuffered
    (PYTHONUNBUFFERED=1, `python -u`), and another worker's line would land between the two. With stdout
    closed (`>&-`: /dev/null from `bench.cli.main`'s start) or dropped (None) the line goes nowhere; where
    its reader has gone (`bench grid | head`) the grid stops as Ctrl-C stops it, its runs resumable."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stdout = None  # nothing more to write there (not even at exit)
        raise Interrupted(f"its output was closed (the reader of its pipe ended); {RERUN_TO_CONTINUE}") from None
