"""How a grid's processes stop together: Ctrl-C, a SIGTERM to the grid (`kill`, `docker stop`), or the
grid's process dying (the out-of-memory killer, `kill -9`).

A terminal's Ctrl-C reaches every process of the grid, and each worker stops its run and says where
it resumes. The other ways reach the grid's own process only: a SIGTERM is taken as a Ctrl-C there
(`terminate_as_interrupt`) and passed on to the workers as one; a worker whose parent is gone stops
as if interrupted (`interrupt_when_parent_dies`) instead of training on with nobody to report to.
A worker imports torch and the training code before it takes Ctrl-C (`accept_interrupts`): an
interrupt in the middle of an import leaves a half-imported module that fails with a traceback, not
with the one line a stopped worker gives. Pool processes (decoding audio, rendering synthetic clips)
leave Ctrl-C to their parent and end with it (`pool_process_init`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

CAN_BLOCK = hasattr(signal, "pthread_sigmask")


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT back while child processes start: they inherit the blocked signal and take it once
    they can (`accept_interrupts`); a Ctrl-C meanwhile reaches this process when the block ends."""
    if not CAN_BLOCK:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
    """Within: SIGTERM raises KeyboardInterrupt, so that the grid stops as on Ctrl-C. Yields a function
    saying whether a SIGTERM came (only this process got it: its workers must be told). Outside the
    main thread nothing changes."""
    came = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield came.is_set
        return

    def terminated(signum, frame):
        came.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield came.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


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
