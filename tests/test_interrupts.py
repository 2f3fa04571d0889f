"""Ctrl-C while a worker starts: held until the worker has imported what it runs (an interrupted
import leaves a half-imported module whose next import fails with a traceback)."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bench.core.interrupts import accept_interrupts, interrupts_held, terminate_as_interrupt, terminated


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


def test_a_ctrl_c_to_the_process_while_children_start_is_noted_not_raised():
    # The block holds SIGINT from the main thread only; a process-wide signal goes to any thread that
    # does not block it (numpy's, a test runner's): it must still be noted, not raised mid-start.
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        with interrupts_held() as came:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10  # a start in progress, until the handler has run
            while not came() and time.monotonic() < deadline:
                time.sleep(0.01)
        assert came()
    finally:
        stop.set()
    with interrupts_held() as came:
        pass
    assert not came()


def _sigint_blocked() -> bool:
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_pool_processes_start_deaf_to_ctrl_c_and_a_ctrl_c_meanwhile_is_raised_after():
    """A terminal's Ctrl-C reaches a pool's processes too: one that came while Python started in them
    printed a traceback each (before `pool_process_init` ignores it), and one that stopped the parent
    between starting a process and handing it its work made that process print an EOFError. Processes
    started inside are born with SIGINT blocked; the parent raises the Ctrl-C once they have started."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bench.core.interrupts import interrupts_deferred

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        with interrupts_deferred():
            born = pool.submit(_sigint_blocked)
        assert born.result(timeout=60) is True
    started = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # not raised here, mid-start
        started.append(True)
    assert started == [True]
    with interrupts_deferred():
        pass  # none came: nothing raised


def test_a_sigterm_while_children_start_is_noted_and_said_afterwards():
    with terminate_as_interrupt():
        with interrupts_held() as came:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
            time.sleep(0.05)
        assert came() and terminated()
        with pytest.raises(KeyboardInterrupt):  # outside the starts, a SIGTERM stops the command
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    with terminate_as_interrupt():
        assert not terminated()  # a new command starts afresh


def test_a_sigterm_while_holding_is_noted_and_ctrl_c_is_given_back_as_it_was():
    # noted, not raised: a KeyboardInterrupt in the middle would leave Ctrl-C blocked and its noting
    # handler installed
    with terminate_as_interrupt() as was_terminated:
        with interrupts_held() as came:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        assert came() and was_terminated()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_a_process_that_ended_before_the_watch_began_counts_as_ended():
    # a submitit-local task that starts after its grid is gone must stop at once, not train for nobody
    import subprocess

    from bench.core.interrupts import when_process_ends

    child = subprocess.Popen(["true"])
    child.wait()
    ended = threading.Event()
    when_process_ends(child.pid, ended.set)
    assert ended.wait(10), "a process already ended and reaped was watched forever"


def test_a_watched_process_that_ended_unreaped_counts_as_ended():
    # a zombie (its parent has not reaped it yet, or never will under a container's bare init) answers
    # kill(pid, 0): the submitit-local tasks watching their grid must see it as gone
    import subprocess

    from bench.core.interrupts import when_process_ends

    child = subprocess.Popen(["sleep", "0.2"])
    ended = threading.Event()
    when_process_ends(child.pid, ended.set)
    try:
        assert ended.wait(10), "a process that ended but was not reaped still counted as running"
    finally:
        child.wait()


def _lost_in_a_callback(number: int):
    """A command whose signal lands while Python runs a weakref's callback (as matplotlib's drawing sets
    them off): the KeyboardInterrupt raised there is printed as "Exception ignored", and the command
    went on to its end, exit 0."""
    import weakref

    def command(args) -> int:
        class Drawn:
            pass

        drawn = Drawn()

        def callback(ref):
            signal.pthread_kill(threading.main_thread().ident, number)
            sum(range(1000))  # the handler runs here, inside the callback

        ref = weakref.ref(drawn, callback)
        del drawn  # the callback runs now
        assert ref() is None
        return 0

    return command


@pytest.mark.parametrize("number, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_python_could_only_print_still_stops_the_command_in_one_line(monkeypatch, capsys, number, status):
    from bench import cli

    monkeypatch.setattr(cli, "cmd_status", _lost_in_a_callback(number))
    assert cli.main(["status", "any.toml"]) == status
    assert capsys.readouterr().err == "bench status: interrupted\n"  # no "Exception ignored ... Traceback"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _five_runs_the_first_losing(number: int, monkeypatch) -> tuple[list[str], object]:
    """(the run ids executed, a worker's loop over five runs), the first of which ends with signal `number`
    landing in a callback (`_lost_in_a_callback`), as the garbage collection after a compiled run does."""
    from types import SimpleNamespace

    from bench.run import runner

    lost, executed = _lost_in_a_callback(number), []

    def execute(spec, folder, run, *rest):
        executed.append(run.run_id)
        if len(executed) == 1:
            lost(None)
        return "executed"

    def loop(*args):
        runs = [SimpleNamespace(run_id=f"run-{k}") for k in range(5)]
        return runner.worker_loop(SimpleNamespace(name="spec"), Path("results"), runs, None, "cpu", None)

    monkeypatch.setattr(runner, "_claim_and_execute", execute)
    return executed, loop


@pytest.mark.parametrize("number, status, ctrl_c_ignored", [
    (signal.SIGINT, 130, False), (signal.SIGTERM, 143, False), (signal.SIGTERM, 143, True)])
def test_a_signal_lost_in_a_callback_stops_a_grids_worker_before_its_next_run(monkeypatch, capsys, number, status,
                                                                               ctrl_c_ignored):
    """A grid with one worker runs in the command's process: a Ctrl-C landing in the garbage collection
    after a compiled run (`release_run_memory`) was noted, and looked at only once the command had ended,
    after every remaining run had trained."""
    from bench import cli

    executed, loop = _five_runs_the_first_losing(number, monkeypatch)
    monkeypatch.setattr(cli, "cmd_status", lambda args: len(loop()))
    if ctrl_c_ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert cli.main(["status", "any.toml"]) == status
    assert capsys.readouterr().err == "bench status: interrupted\n"
    assert executed == ["run-0"]


def test_a_ctrl_c_lost_in_a_callback_stops_a_local_worker_process_before_its_next_run(monkeypatch):
    """A grid's local worker process (`--workers 2`), or a task of submitit's local executor, trained on
    after a Ctrl-C it could only print, until its grid's grace period ended and it was terminated, its
    run's last epochs lost."""
    from types import SimpleNamespace

    from bench.core.errors import Interrupted
    from bench.run import grid

    executed, loop = _five_runs_the_first_losing(signal.SIGINT, monkeypatch)
    outcomes = []
    monkeypatch.setattr(grid, "worker_entry", loop)
    monkeypatch.setattr(grid, "set_up_standard_output", lambda: None)
    monkeypatch.setattr(grid, "interrupt_when_parent_dies", lambda: None)  # this test's parent is pytest's
    grid._worker_process(None, SimpleNamespace(put=outcomes.append))
    assert executed == ["run-0"] and len(outcomes) == 1 and isinstance(outcomes[0], Interrupted)
    executed.clear()  # a task of submitit's executors (`--launcher submitit-local`) too
    with pytest.raises(KeyboardInterrupt):
        grid.RequeuedWorker()(SimpleNamespace(grid_pid=None))
    assert executed == ["run-0"]


def test_a_sigterm_python_could_only_print_stops_a_command_started_with_ctrl_c_ignored(monkeypatch, capsys):
    """`bench report ... &` in a script starts with Ctrl-C ignored; a `kill` landing in a callback was lost
    there (the hook that notes it had been left out with the Ctrl-C handler), exit 0."""
    from bench import cli

    monkeypatch.setattr(cli, "cmd_status", _lost_in_a_callback(signal.SIGTERM))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert cli.main(["status", "any.toml"]) == 143
    assert capsys.readouterr().err == "bench status: interrupted\n"


def test_a_command_started_with_ctrl_c_ignored_keeps_it_ignored(monkeypatch):
    from bench import cli

    seen = []
    monkeypatch.setattr(cli, "cmd_status", lambda args: seen.append(signal.getsignal(signal.SIGINT)) or 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # `bench grid ... &` in a script: the shell ignores it for it
    assert cli.main(["status", "any.toml"]) == 0
    assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_ctrl_c_after_the_command_has_ended_prints_no_traceback(monkeypatch):
    """A second Ctrl-C landing while Python joins a process pool's threads at its exit was printed as
    "Exception ignored ... KeyboardInterrupt" with a traceback, after the command's one line. Once the
    command has ended, such a KeyboardInterrupt is dropped; any other error Python can only print is
    passed on as before."""
    import sys
    from types import SimpleNamespace

    from bench import cli

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda lost: seen.append(type(lost.exc_value)))
    monkeypatch.setattr(cli, "main", lambda argv: 130)
    monkeypatch.setattr(sys, "argv", ["bench", "synth", "--out", "x"])
    with pytest.raises(SystemExit) as ended:
        cli.console()
    assert ended.value.code == 130
    sys.unraisablehook(SimpleNamespace(exc_value=KeyboardInterrupt()))
    sys.unraisablehook(SimpleNamespace(exc_value=ValueError("in a __del__")))
    assert seen == [ValueError]
