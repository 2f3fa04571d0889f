"""Process groups that a checking tool starts (grids with their workers, timing processes) and must not
leave behind: each in its own group, remembered until it ends, and all of them killed when the tool stops,
however it stops short of SIGKILL. A grid's worker processes would otherwise go on training on the GPU
under the next checks, in a scratch folder already removed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

LIVE: set[subprocess.Popen] = set()
"""The process groups this process started and has not seen end (grids with their workers, the
shared-GPU processes): killed when it stops, however it stops short of SIGKILL."""


def start_group(command: list[str], **kwargs) -> subprocess.Popen:
    """`command` in its own process group (a grid's worker processes with it), remembered in LIVE."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    LIVE.add(proc)
    return proc


def run_group(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """`command` in its own process group, all of which is killed if it outlasts `timeout` seconds:
    a grid's worker processes would otherwise go on training on the GPU under the next checks."""
    proc = start_group(command, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        err += f"\ntimed out after {timeout:.0f} s (its process group was killed)"
    finally:
        if proc.returncode is not None:
            LIVE.discard(proc)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def communicate_all(procs: list[subprocess.Popen], timeout: float) -> list[tuple[str, str]]:
    """Each process's (stdout, stderr), their pipes read all at once, within one limit of `timeout`
    seconds for all; TimeoutExpired where one has not finished by then. Read one after another, a
    process that fills its pipe (64 KiB of warnings) stalls while the one before it is waited on, and
    the shared-GPU processes, which wait for each other, would stall with it. Where one ends with an
    error, the others are killed at once: they would wait for it at their barrier until its timeout.
    Where the wait ends early (a SIGTERM or Ctrl-C raised here, or one process's limit), the processes
    are killed before the reading threads are joined: those would otherwise wait for them to end by
    themselves."""
    end = time.monotonic() + timeout
    pool = ThreadPoolExecutor(max_workers=len(procs))
    try:
        reads = {pool.submit(proc.communicate, timeout=max(0.1, end - time.monotonic())): proc for proc in procs}
        waiting = set(reads)
        while waiting:
            done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for read in done:
                read.result()  # its TimeoutExpired, raised here
                if reads[read].returncode:
                    for proc in procs:
                        if proc.returncode is None:
                            kill_group(proc)
        return [read.result() for read in reads]
    except BaseException:
        for proc in procs:
            kill_group(proc)
        raise
    finally:
        pool.shutdown(wait=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_live() -> None:
    """Kill every process group in LIVE and reap its leader."""
    kill_live_of(list(LIVE))


def kill_live_of(procs) -> None:
    """Kill the process groups of `procs` that LIVE holds and reap their leaders."""
    for proc in procs:
        if proc not in LIVE:
            continue
        kill_group(proc)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        LIVE.discard(proc)


def _stop(signum, _frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def cleaned_up():
    """SIGTERM (a job's time limit, `timeout`) stops this process as an exception does, and on the way
    out, by whatever exception, the process groups it started are killed: a grid's workers would
    otherwise go on training on the GPU, in a scratch folder already removed."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if main_thread else None
    try:
        yield
    finally:
        kill_live()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
