"""Ctrl-C while a worker starts: held until the worker has imported what it runs (an interrupted
import leaves a half-imported module whose next import fails with a traceback)."""

import signal
import threading

import pytest

from bench.core.interrupts import accept_interrupts, interrupts_held


def ctrl_c() -> None:
    """SIGINT to this thread (the main one): a process-wide signal may go to any thread that does not
    block it, e.g. a test runner's."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@pytest.fixture(autouse=True)
def default_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_during_the_imports_is_held_until_they_are_done():
    done = []

    def imports():
        ctrl_c()  # delivered at once, to the holding handler
        done.append(sum(range(10_000)))  # the import goes on to its end

    assert accept_interrupts(imports) is True
    assert done == [49_995_000]
    with pytest.raises(KeyboardInterrupt):  # afterwards, Ctrl-C is KeyboardInterrupt again
        ctrl_c()


def test_a_ctrl_c_that_came_while_the_process_started_is_not_lost():
    # a child inherits the signal blocked (interrupts_held in its parent); one that came meanwhile is pending
    with interrupts_held():
        ctrl_c()
        assert accept_interrupts() is True
    assert accept_interrupts() is False
