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
executor end with the grid that submitted them (`when_process_ends`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

CAN_BLOCK = hasattr(signal, "pthread_sigmask")
_terminated = threading.Event()
_holding = threading.Event()


@contextlib.contextmanager
def interrupts_held() -> Iterator[Callable[[], bool]]:
    """Hold Ctrl-C back while child processes start: they inherit SIGINT blocked and take it once they
    can (`accept_interrupts`); this process only notes it. Yields a function saying whether a Ctrl-C
    came meanwhile: the caller then passes it on to the children (one started after it never got it)
    and stops. The block holds the signal from this thread only, and a process-wide signal may go to
    another thread (numpy's, say): the handler notes it wherever it lands."""
    came = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield came.is_set
        return
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: came.set())
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if CAN_BLOCK else None
    _holding.set()  # a SIGTERM is noted too (`terminate_as_interrupt`), not raised in the middle of a start
    try:
        yield lambda: came.is_set() or _terminated.is_set()
    finally:
        _holding.clear()
        if CAN_BLOCK:  # one pending for this thread is delivered here, to the handler that notes it
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        signal.signal(signal.SIGINT, previous_handler)


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
def terminate_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises KeyboardInterrupt, so that a command stops as on Ctrl-C (`terminated` then
    says so: only this process got it, and its workers must be told). Outside the main thread nothing
    changes."""
    _terminated.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        _terminated.set()
        if not _holding.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def terminated() -> bool:
    """Whether a SIGTERM stopped this process (`terminate_as_interrupt`)."""
    return _terminated.is_set()


def when_process_ends(pid: int, action: Callable[[], object], every: float = 0.5) -> None:
    """Call `action` (in a thread of its own) once process `pid`, which need not be this one's parent,
    has ended: a submitit-local task watches the grid that submitted it."""
    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # alive, another user's
                pass
            time.sleep(every)
        action()

    threading.Thread(target=watch, name="grid-watch", daemon=True).start()


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


def pool_process_init() -> None:
    """Initializer of pool processes (decoding, rendering) whose parent handles Ctrl-C and stops the
    pool: Ctrl-C is ignored (else every pool process prints its own KeyboardInterrupt traceback), and
    the process ends when its parent dies (a pool process holds both ends of the pool's queue, so it
    would wait for work forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    when_parent_dies(lambda: os._exit(1))
