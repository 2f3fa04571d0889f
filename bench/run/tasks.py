"""The tasks of one Slurm job end together.

A job of `--launcher slurm` runs `gpus x runs_per_gpu` workers as its tasks. Only task 0 answers the
signal Slurm sends before the time limit (submitit checkpoints and requeues the job from task 0 alone:
`checkpoint_and_try_requeue` returns at once in the others), and on clusters with `WaitTime` set srun
kills the remaining tasks that many seconds after the first one ends. A task that finds nothing left to
claim while its siblings still train would therefore leave them unrequeued at the limit, or get them
killed. So every task, once its own work is done, waits until its siblings' work is done too.

Each task holds an exclusive `flock` on `task-<rank>.lock` while it works, in a folder of the machine's
temporary directory named after the job and its requeue count (the tasks of a job share one node). The
kernel drops the lock when the task ends or dies, so a crashed sibling is never waited for; a sibling
whose file never appears (it failed before starting) is waited for `start_grace` seconds.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.core.store import lock_held, try_lock

T = TypeVar("T")

START_GRACE_SECONDS = 600.0
"""How long a task waits for a sibling that has not started working (its lock file is missing)."""

POLL_SECONDS = 10.0


def task_folder(job_id: str) -> Path:
    """Where the tasks of one attempt of one job keep their lock files (a requeued job starts afresh)."""
    attempt = os.environ.get("SLURM_RESTART_COUNT", "0")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"bench-job-{uid}-{job_id}-{attempt}"


def run_as_task(work: Callable[[], T], folder: Path, rank: int, n_tasks: int, log: Callable[[str], None] = print,
                poll_seconds: float = POLL_SECONDS, start_grace: float = START_GRACE_SECONDS) -> T:
    """`work()` as task `rank` of `n_tasks`, returning when it and every sibling's work are done. An
    exception from `work` (a requeue's exit, an error) ends the task at once."""
    if n_tasks <= 1:
        return work()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"task-{rank}.lock"
    staged = folder / f".task-{rank}.{os.getpid()}.lock"
    fd = try_lock(staged, note=str(os.getpid()))
    if fd is None:  # another process of this name: not a task of this attempt
        return work()
    os.replace(staged, final)  # locked before it is visible: a sibling never sees it unlocked too early
    try:
        result = work()
    finally:
        os.close(fd)
    _wait_for_siblings(folder, rank, n_tasks, log, poll_seconds, start_grace)
    return result


def _wait_for_siblings(folder: Path, rank: int, n_tasks: int, log: Callable[[str], None], poll_seconds: float,
                       start_grace: float) -> None:
    pending = set(range(n_tasks)) - {rank}
    give_up_on_missing = time.monotonic() + start_grace
    announced = False
    while True:
        for k in sorted(pending):
            path = folder / f"task-{k}.lock"
            if path.exists() and not lock_held(path):
                pending.discard(k)
            elif not path.exists() and time.monotonic() > give_up_on_missing:
                log(f"task {rank}: task {k} of this job never started; not waiting for it")
                pending.discard(k)
        if not pending:
            return
        if not announced:
            log(f"task {rank}: nothing left to claim; waiting for task(s) {', '.join(map(str, sorted(pending)))} "
                f"of this job to finish (a job is requeued at its time limit from task 0 only)")
            announced = True
        time.sleep(poll_seconds)
