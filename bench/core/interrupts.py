"""How a grid's processes stop together: Ctrl-C, a SIGTERM to the grid (`kill`, `docker stop`), or the
grid's process dying (the out-of-memory killer, `kill -9`).

A terminal's Ctrl-C reaches every process of the grid, and each worker stops its run and says where
it resumes. The other ways reach the grid's own process only: a SIGTERM is taken as a Ctrl-C there
(`terminate_as_interrupt`) and passed on to the workers as one; a worker whose parent is gone stops
as if interrupted (`interrupt_when_parent_dies`) instead of training on with nobody to report to.
A worker imports torch and the training code before it takes Ctrl-C (`accept_interrupts`): an
interrupt in the middle of an import leaves a half-imported module that fails with a traceback, not
with the one line a stopped worker gives. Pool processes (decoding audio, rendering synthetic clips)
leave Ctrl-C to their parent and end with it (`pool_process_init`). The tasks of submitit's local
executor end with the grid that submitted them (`when_process_ends`). In a Slurm job, whatever fails
once the scheduler has signalled the job's end is the job's end, not the run's failure
(`noting_job_signals`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait

CAN_BLOCK = hasattr(signal, "pthread_sigmask")
_holding = threading.Event()
_terminations: list[threading.Event] = []
"""One per `terminate_as_interrupt` in effect (the innermost last): set when a SIGTERM stopped it."""
_lost: list[threading.Event] = []
"""One per `interrupts_noted` in effect (the innermost last): set when an interrupt was lost in a callback,
until `stop_if_interrupt_lost` raises it."""


@contextlib.contextmanager
def interrupts_held() -> Iterator[Callable[[], bool]]:
    """Hold Ctrl-C back while child processes start: they inherit SIGINT blocked and take it once they
    can (`accept_interrupts`); this process only notes it. Yields a function saying whether a Ctrl-C
    (or a SIGTERM, `terminate_as_interrupt`) came meanwhile: the caller then passes it on to the
    children (one started after it never got it) and stops. The block holds the signal from this
    thread only, and a process-wide signal may go to another thread (numpy's, say): the handler notes
    it wherever it lands."""
    came = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield came.is_set
        return
    previous_handler = previous_mask = None
    _holding.set()  # first: a SIGTERM from here on is noted, never raised between two of the steps
    try:
        previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: came.set())
        if CAN_BLOCK:
            previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        yield lambda: came.is_set() or terminated()
    finally:
        if previous_mask is not None:  # one pending for this thread is delivered here, to the noting handler
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        _holding.clear()  # last; a SIGTERM after it raises where the caller looks at `came` next


def accept_interrupts(prepare: Callable[[], object] = lambda: None) -> bool:
    """In a child started under `interrupts_held` (or with SIGINT ignored): run `prepare` (the imports),
    then take Ctrl-C as KeyboardInterrupt again. True if a Ctrl-C came before that: the caller stops."""
    came = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: came.set())
    if CAN_BLOCK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    prepare()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return came.is_set()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[Callable[[], bool]]:
    """Within: SIGTERM raises KeyboardInterrupt, so that a command stops as on Ctrl-C. Yields a function
    saying whether a SIGTERM did (also once the block is left: the exit status says so); `terminated`
    says it to the code inside (only this process got it: its workers must be told). Outside the main
    thread nothing changes."""
    came = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield came.is_set
        return

    def stop(signum, frame):
        came.set()
        if not _holding.is_set():
            raise KeyboardInterrupt

    _terminations.append(came)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield came.is_set
    finally:
        try:
            signal.signal(signal.SIGTERM, previous)
        finally:  # also when a SIGTERM lands just before the line above
            _terminations.remove(came)


@contextlib.contextmanager
def interrupts_noted() -> Iterator[Callable[[], bool]]:
    """Within: Ctrl-C raises KeyboardInterrupt as Python's own handler does, and is noted. Yields whether
    one came (or a SIGTERM's, `terminate_as_interrupt`) that was then lost: raised while Python runs a
    callback of its own (a weakref's or a finaliser, as matplotlib's drawing sets off), it is printed
    as "Exception ignored" and the command goes on, to exit 0 as if never stopped. Such a one is noted
    without the print: the work stops at its next `stop_if_interrupt_lost` (a grid's worker before each
    run, a training or evaluation batch), and the caller stops as for any Ctrl-C. Where Ctrl-C is ignored (started in
    the background) it stays so, and a SIGTERM's lost interrupt is still noted. Outside the main thread
    nothing changes."""
    came = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield came.is_set
        return
    lost = threading.Event()

    def note(signum, frame):
        came.set()
        raise KeyboardInterrupt

    def noted_lost() -> None:
        came.set()
        lost.set()

    previous_hook = sys.unraisablehook
    sys.unraisablehook = interrupts_dropped(previous_hook, noted_lost)
    _lost.append(lost)
    previous = None
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous = signal.signal(signal.SIGINT, note)
        yield came.is_set
    finally:
        try:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        finally:
            sys.unraisablehook = previous_hook
            _lost.remove(lost)


def stop_if_interrupt_lost() -> None:
    """KeyboardInterrupt, once, where a Ctrl-C or SIGTERM was lost in a callback under `interrupts_noted`:
    called where work goes on piece by piece, so that it stops there, as the signal would have stopped
    it. A grid with one worker runs in the command's process, and one that landed in the garbage
    collection after a compiled run (`release_run_memory`) was raised only once every remaining run
    had trained."""
    if _lost and _lost[-1].is_set():
        _lost[-1].clear()
        raise KeyboardInterrupt


def interrupts_dropped(hook: Callable, noted: Callable[[], object] = lambda: None) -> Callable:
    """`hook` (a `sys.unraisablehook`), but a KeyboardInterrupt Python could only print is dropped, and
    `noted()`; every other exception is passed on."""
    def unraisable(lost) -> None:
        if isinstance(lost.exc_value, KeyboardInterrupt):
            noted()
        else:
            hook(lost)

    return unraisable


_job_ending = threading.Event()


@contextlib.contextmanager
def noting_job_signals() -> Iterator[None]:
    """Within, in a task of a submitit job: note the signals the scheduler sends when the job is to end,
    and answer them as before (submitit's handlers: SIGUSR2 before the time limit or at a preemption,
    on which task 0 requeues the job and the others train on until they are killed; SIGTERM at a
    requeue, `scancel`, the time limit or a preemption, which submitit lets by). Slurm signals every
    process of the job step, children included: one that dies of it (torch.compile's compile workers)
    makes the run's next step fail with an error of its own, which `bench.core.errors.is_job_stop`
    must not take for the run's failure (`job_ending`). Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for name in ("SIGUSR2", "SIGTERM"):
        if not hasattr(signal, name):
            continue
        number = getattr(signal, name)
        previous[number] = signal.getsignal(number)

        def note(signum, frame, answer=previous[number]) -> None:
            _job_ending.set()
            if callable(answer):
                answer(signum, frame)
            elif answer == signal.SIG_DFL:  # what it would have done: end the process
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(number, note)
    try:
        yield
    finally:
        for number, answer in previous.items():
            signal.signal(number, answer if answer is not None else signal.SIG_DFL)
        _job_ending.clear()


def job_ending() -> bool:
    """Whether the scheduler has told this job's task that the job is to end (`noting_job_signals`)."""
    return _job_ending.is_set()


def terminated() -> bool:
    """Whether a SIGTERM stopped the command running in this process (`terminate_as_interrupt`)."""
    return bool(_terminations) and _terminations[-1].is_set()


def when_process_ends(pid: int, action: Callable[[], object]) -> None:
    """Call `action` (in a thread of its own) once process `pid`, which need not be this one's parent,
    has ended, reaped or not: a submitit-local task watches the grid that submitted it."""
    def watch() -> None:
        try:
            _wait_for_end(pid)
        except ProcessLookupError:  # already gone
            pass
        action()

    threading.Thread(target=watch, name="grid-watch", daemon=True).start()


def _wait_for_end(pid: int, every: float = 0.5) -> None:
    if hasattr(os, "pidfd_open") and hasattr(select, "poll"):  # Linux: readable once the process has ended,
        try:                                                      # whoever reaps it; no pid reuse
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise
        except OSError:  # kernels before 5.3
            fd = None
        if fd is not None:
            try:
                poller = select.poll()  # not select(): a descriptor above 1023 is refused there
                poller.register(fd, select.POLLIN)
                poller.poll()
            finally:
                os.close(fd)
            return
    while True:  # elsewhere: alive while it answers and is no zombie
        try:
            os.kill(pid, 0)
        except PermissionError:  # alive, another user's
            pass
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except (OSError, IndexError):
            pass
        time.sleep(every)


def when_parent_dies(action: Callable[[], object]) -> None:
    """In a spawned process: call `action` (in a thread of its own) when the process that started it
    ends without stopping it (a SIGKILL, the out-of-memory killer)."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        action()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def interrupt_when_parent_dies() -> None:
    """In a spawned worker: when its parent is gone, raise KeyboardInterrupt in the main thread, as a
    Ctrl-C would, so that it stops its run and releases it."""
    import _thread

    when_parent_dies(_thread.interrupt_main)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """`interrupts_held`, and a Ctrl-C (or SIGTERM) that came meanwhile raised as KeyboardInterrupt once
    the block is done: for steps that must not be cut in two (a checkpoint and the record of the epoch
    it holds; a submission), and for starting pool processes (a pool's `submit` spawns them), which are
    then born with SIGINT blocked. A Ctrl-C from the terminal reaches every process of its group: it met
    some pool processes while Python started in them, before `pool_process_init` could ignore it, and
    each printed a traceback; and one that stopped this process between starting a process and handing
    it its work made that process print an EOFError."""
    with interrupts_held() as came:
        yield
    if came():
        raise KeyboardInterrupt


def pool_process_init() -> None:
    """Initializer of pool processes (decoding, rendering) whose parent handles Ctrl-C and stops the
    pool: Ctrl-C is ignored (else every pool process prints its own KeyboardInterrupt traceback), and
    the process ends when its parent dies (a pool process holds both ends of the pool's queue, so it
    would wait for work forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    when_parent_dies(lambda: os._exit(1))


POOL_CHECK_SECONDS = 5.0
"""How often a wait on a process pool looks whether the pool can still finish its work."""


def wait_on_pool(executor, futures, return_when: str = FIRST_COMPLETED) -> set:
    """`concurrent.futures.wait(futures, return_when=...)`'s done set, for futures of `executor` (a
    ProcessPoolExecutor), or OSError EAGAIN where the pool's management thread died: under a limit on
    processes or threads (a container's pids limit) it cannot start the thread that feeds its processes,
    and its futures would never complete, the wait never end."""
    while True:
        done, _ = wait(futures, timeout=POOL_CHECK_SECONDS, return_when=return_when)
        if done:
            return done
        manager = getattr(executor, "_executor_manager_thread", None)  # CPython's, 3.9 to 3.14
        if manager is not None and not manager.is_alive():
            raise OSError(errno.EAGAIN, "a process pool could not start a thread")


@contextlib.contextmanager
def semaphores_named() -> Iterator[None]:
    """Around making a process pool or queue: its semaphores are files of /dev/shm on Linux, and where one
    cannot be made there (a container's full or read-only /dev/shm) multiprocessing's OSError names no
    file, so the line said "cannot write No space left on device" and advised the disk. It names
    /dev/shm."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and sys.platform.startswith("linux"):
            raise OSError(exc.errno, exc.strerror, "/dev/shm") from exc
        raise


def end_pool(executor, early: bool) -> None:
    """Shut a process pool down; `early` (Ctrl-C, an error, a reader that stopped reading): its processes
    are terminated first, so that neither the work in flight nor a pool stopped while its processes
    start up (whose stop signals may never reach them: the exit then waits for them forever) is waited for."""
    if not early:
        executor.shutdown(wait=True, cancel_futures=True)
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()
    # the pool now breaks, and its futures fail with BrokenProcessPool: cancelling them as well made
    # Python 3.11's pool thread print an InvalidStateError traceback (it sets the exception regardless)
    executor.shutdown(wait=False)
