"""The tasks of one Slurm job end together.

A job of `--launcher slurm` runs `gpus x runs_per_gpu` workers as its tasks. Only task 0 answers the
signal Slurm sends before the time limit (submitit checkpoints and requeues the job from task 0 alone:
`checkpoint_and_try_requeue` returns at once in the others), and on clusters with `WaitTime` set srun
kills the remaining tasks that many seconds after the first one ends. A task that finds nothing left to
claim while its siblings still train would therefore leave them unrequeued at the limit, or get them
killed. So every task, once its own work is done, waits until its siblings' work is done too.

Each task holds an exclusive `flock` on `task-<rank>.lock` while it works, in a folder of the job's
submitit folder named after the job and its requeue count (on the shared file system whose `flock`
the run locks already rely on). The kernel drops the lock when the task ends or dies, so a crashed
sibling is never waited for; a sibling whose file does not appear (it failed before starting) is
waited for `start_grace` seconds. A file older than this task's start by more than `START_SKEW_SECONDS`
is an earlier attempt's (submitit's local executor restarts a job's tasks under the same job id) and
counts as not started. Both times are the files' modification times, set by the file system's clock (the
file server's, on a network file system): a node's own clock may be off the server's by minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.core.errors import first_line
from bench.core.store import LocksUnsupported, lock_held, release_lock, try_lock

T = TypeVar("T")

START_GRACE_SECONDS = 600.0
"""How long a task waits for a sibling that has not started working (its lock file is missing)."""

START_SKEW_SECONDS = 120.0
"""How much earlier than this task a sibling of the same attempt may have started."""

POLL_SECONDS = 10.0


def task_folder(submitit_folder: str | Path, job_id: str) -> Path:
    """Where the tasks of one attempt of one job keep their lock files (a requeued job starts afresh)."""
    attempt = os.environ.get("SLURM_RESTART_COUNT", "0")
    return Path(submitit_folder) / "tasks" / f"{job_id}-{attempt}"


def run_as_task(work: Callable[[], T], folder: Path, rank: int, n_tasks: int, log: Callable[[str], None] = print,
                poll_seconds: float = POLL_SECONDS, start_grace: float = START_GRACE_SECONDS) -> T:
    """`work()` as task `rank` of `n_tasks`, returning when it and every sibling's work are done. An
    exception from `work` (a requeue's exit, an error) ends the task at once."""
    if n_tasks <= 1:
        return work()
    final = folder / f"task-{rank}.lock"
    staged = folder / f".task-{rank}.{os.getpid()}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = try_lock(staged, note=str(os.getpid()))
        if fd is not None:
            started = os.fstat(fd).st_mtime  # this task's start on the clock its siblings' files have
            os.replace(staged, final)  # locked before it is visible: never seen unlocked too early
    except (OSError, LocksUnsupported) as exc:
        log(f"task {rank}: cannot keep a lock file in {folder} ({first_line(exc)}); "
            f"this task will not wait for its siblings")
        return work()
    if fd is None:  # another live process of this name: not a task of this attempt
        return work()
    try:
        result = work()
    finally:
        release_lock(fd)  # unlocked, not only closed: processes forked meanwhile share the descriptor
    _wait_for_siblings(folder, rank, n_tasks, started, log, poll_seconds, start_grace)
    return result


def _this_attempts(path: Path, started: float) -> bool:
    try:
        return path.stat().st_mtime >= started - START_SKEW_SECONDS
    except FileNotFoundError:
        return False


def _wait_for_siblings(folder: Path, rank: int, n_tasks: int, started: float, log: Callable[[str], None],
                       poll_seconds: float, start_grace: float) -> None:
    pending = set(range(n_tasks)) - {rank}
    give_up_on_missing = time.monotonic() + start_grace
    announced = False
    while True:
        for k in sorted(pending):
            path = folder / f"task-{k}.lock"
            if _this_attempts(path, started):
                if not lock_held(path):
                    pending.discard(k)
            elif time.monotonic() > give_up_on_missing:
                log(f"task {rank}: task {k} of this job never started; not waiting for it")
                pending.discard(k)
        if not pending:
            return
        if not announced:
            log(f"task {rank}: nothing left to claim; waiting for task(s) {', '.join(map(str, sorted(pending)))} "
                f"of this job to finish (a job is requeued at its time limit from task 0 only)")
            announced = True
        time.sleep(poll_seconds)
