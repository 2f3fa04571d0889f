"""The look-then-lock race of the runner, made deterministic.

A worker looks for a run's result, finds none, and takes the run's lock. Another worker may have
finished the run between that look and that claim (it wrote result.json and released the lock). The
first worker must then see the result after its claim and leave the run alone: executed once, its
result kept as written. Here the other worker's finish is injected into `RunLock.acquire`, just before
the real flock is taken.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch

from bench.core.layout import HISTORY
from bench.core.store import atomic_write_json
from bench.run import runner
from bench.run.runner import EXECUTIONS, RESULT, RunLock


def finished_by_other_worker(run_id: str, status: str, finished: float = 0.0, grid: str | None = None) -> dict:
    """What another worker's execute_run leaves: a complete ok result, or a failed one with its error,
    the time it was recorded and the token of the `--retry-failed` grid that recorded it, if any."""
    if status == "failed":
        return {"run_id": run_id, "status": "failed", "error": "RuntimeError: boom",
                "provenance": {"finished": finished, **({"grid": grid} if grid else {})}}
    return {"run_id": run_id, "status": "ok", "config": {"arch": "vgg"},
            "metrics": {"roc_auc": 0.875, "pr_auc": 0.375}, "cost": {"epochs": 3}}


def race(monkeypatch, folder, result):
    """The other worker writes its execution line and `result` between our look and our lock."""
    real_acquire = RunLock.acquire
    looks = []

    def acquire(self):
        looks.append(runner.read_result(folder))  # what our first look saw: nothing yet
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / EXECUTIONS, "a") as handle:
            handle.write(json.dumps({"host": "other", "pid": 1, "time": 0.0}) + "\n")
        atomic_write_json(folder / RESULT, result)
        return real_acquire(self)

    monkeypatch.setattr(RunLock, "acquire", acquire)
    return looks


def record_executions(monkeypatch):
    calls = []

    def execute_run(spec, run, folder, *args, **kwargs):  # cache_for, device, log, ...
        calls.append(run.run_id)
        with open(folder / EXECUTIONS, "a") as handle:  # as the real one does, first thing
            handle.write(json.dumps({"host": "this", "pid": 2, "time": 1.0}) + "\n")
        result = {**finished_by_other_worker(run.run_id, "ok"), "cost": {"epochs": 3, "train_seconds": 1.0}}
        atomic_write_json(folder / RESULT, result)
        return result

    monkeypatch.setattr(runner, "execute_run", execute_run)
    return calls


def no_cache(sample_rate):
    raise AssertionError("a settled run must not need the cache")


@pytest.mark.parametrize("status,retry_grid", [("ok", None), ("ok", "a1b2"), ("failed", None)])
def test_a_run_finished_between_the_look_and_the_lock_is_not_executed_again(
        monkeypatch, one_run, status, retry_grid):
    spec, run, folder = one_run
    other = finished_by_other_worker(run.run_id, status)
    looks = race(monkeypatch, folder, other)
    calls = record_executions(monkeypatch)
    lines = []
    outcome = runner._claim_and_execute(spec, folder, run, no_cache, "cpu", retry_grid, lines.append)
    assert looks == [None]  # the race happened: nothing was there at the first look
    assert outcome == "settled"
    assert calls == []
    assert json.loads((folder / RESULT).read_text()) == other  # kept as the other worker wrote it
    assert len((folder / EXECUTIONS).read_text().splitlines()) == 1  # the other worker's start only
    assert not list(folder.glob("*.rejected"))
    assert not RunLock(folder).held_by_other()
    lock = RunLock(folder)  # and the claim was given back
    assert lock.acquire()
    lock.release()


def test_the_worker_loop_executes_nothing_after_losing_the_race(monkeypatch, one_run):
    spec, run, folder = one_run
    race(monkeypatch, folder, finished_by_other_worker(run.run_id, "ok"))
    calls = record_executions(monkeypatch)
    executed = runner.worker_loop(spec, folder.parents[2], [run], no_cache, "cpu", None, log=lambda *_: None)
    assert executed == [] and calls == []
    assert len((folder / EXECUTIONS).read_text().splitlines()) == 1


@pytest.mark.parametrize("recorded", ["before the grid began", "by a worker of this grid",
                                      "by an earlier grid on a host whose clock runs ahead"])
def test_a_failed_run_is_retried_only_for_a_failure_from_before_the_grid(monkeypatch, one_run, recorded):
    """With --retry-failed a failure recorded before the grid began is not settled: the claim goes on
    and the run is executed (once), from scratch. One recorded meanwhile by another worker of this grid
    is settled, or every worker would retry a run that fails again. Which grid recorded it is its
    token, not its time: a failure recorded yesterday on a node whose clock ran 10 minutes ahead was
    taken for this grid's and skipped (and the other way round, retried by every worker)."""
    spec, run, folder = one_run
    now = time.time()
    failure = {"before the grid began": (now - 3600, "e5f6"), "by a worker of this grid": (now + 1, "a1b2"),
               "by an earlier grid on a host whose clock runs ahead": (now + 600, None)}[recorded]
    race(monkeypatch, folder, finished_by_other_worker(run.run_id, "failed", *failure))
    folder.mkdir(parents=True)
    (folder / HISTORY).write_text('{"epoch": 1, "valid_roc_auc": 0.5}\n')  # the failed attempt's epochs
    calls = record_executions(monkeypatch)
    outcome = runner._claim_and_execute(spec, folder, run, no_cache, "cpu", "a1b2", lambda *_: None)
    if recorded != "by a worker of this grid":
        assert outcome == "executed" and calls == [run.run_id]
        assert not (folder / HISTORY).exists()  # `bench status` counts none of them as the retry's
        assert json.loads((folder / RESULT).read_text())["status"] == "ok"
        assert len((folder / EXECUTIONS).read_text().splitlines()) == 2  # the failed start and the retry
    else:
        assert outcome == "settled" and calls == []


@pytest.mark.parametrize("provenance", ["host x", ["a1b2"], None, 7])
def test_a_failure_whose_provenance_is_not_an_object_is_retried(monkeypatch, one_run, provenance):
    """A failed result.json edited by hand (or written by another tool) whose provenance is not an object
    is still a failure from before this grid: `--retry-failed` executes it, where reading its grid token
    ended the grid in an AttributeError."""
    spec, run, folder = one_run
    folder.mkdir(parents=True)
    atomic_write_json(folder / RESULT, {**finished_by_other_worker(run.run_id, "failed"), "provenance": provenance})
    calls = record_executions(monkeypatch)
    outcome = runner._claim_and_execute(spec, folder, run, no_cache, "cpu", "a1b2", lambda *_: None)
    assert outcome == "executed" and calls == [run.run_id]


def test_a_run_that_fails_again_is_retried_once_however_many_workers(monkeypatch, one_run):
    """Four workers of one `--retry-failed` grid meet a run that failed yesterday and fails again: it is
    executed once, by the first; the others find the failure their grid recorded (the real execute_run
    records the grid's token in provenance.grid, docs/results.md; only the training fails)."""
    from bench.train import loop

    spec, run, folder = one_run
    folder.mkdir(parents=True)
    atomic_write_json(folder / RESULT, finished_by_other_worker(run.run_id, "failed", time.time() - 86_400))
    calls = []

    def train_run(*args, **kwargs):
        calls.append(run.run_id)
        raise FloatingPointError("training loss became nan at epoch 1")

    monkeypatch.setattr(loop, "train_run", train_run)
    executed = [runner.worker_loop(spec, folder.parents[2], [run], lambda rate: None, torch.device("cpu"), "a1b2",
                                   log=lambda *_: None) for _ in range(4)]
    assert calls == [run.run_id] and executed == [[run.run_id], [], [], []]
    result = json.loads((folder / RESULT).read_text())
    assert result["status"] == "failed" and result["provenance"]["grid"] == "a1b2"


def test_without_a_race_the_claimed_run_is_executed_once(monkeypatch, one_run):
    """The fake execute_run is the one the runner calls: with no result at either look it runs once."""
    spec, run, folder = one_run
    calls = record_executions(monkeypatch)
    outcome = runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lambda *_: None)
    assert outcome == "executed" and calls == [run.run_id]
    assert len((folder / EXECUTIONS).read_text().splitlines()) == 1


def test_a_run_already_settled_at_the_first_look_is_not_even_claimed(monkeypatch, one_run):
    spec, run, folder = one_run
    folder.mkdir(parents=True)
    atomic_write_json(folder / RESULT, finished_by_other_worker(run.run_id, "ok"))
    claims = []
    monkeypatch.setattr(RunLock, "acquire", lambda self: claims.append(self.folder) or True)
    calls = record_executions(monkeypatch)
    outcome = runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lambda *_: None)
    assert outcome == "settled" and claims == [] and calls == []


def lock_note(folder, **note) -> None:
    """What the last holder left in the run's lock file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / runner.LOCK).write_text(json.dumps(note))


@pytest.mark.parametrize(("host", "age", "executed"), [
    ("node-7", 5.0, False),     # another host wrote it 5 s ago: hidden by this host's NFS cache
    ("node-7", 300.0, True),    # 5 minutes ago: no cache keeps a missing file that long; it was removed
    (socket.gethostname(), 5.0, True),  # this host removed it to redo the run: its kernel sees that
])
def test_a_result_another_host_just_wrote_is_not_redone_where_this_one_cannot_see_it_yet(
        monkeypatch, one_run, host, age, executed):
    """On NFS, a host trusts its cached "no such file" for result.json up to a minute (the folder's
    attribute cache), and taking the run's lock refreshes only the lock file: a worker that claimed a
    run just after another node finished it trained it again and replaced its result. The finishing
    holder notes in the lock that it wrote the result; the next claim reads that note."""
    spec, run, folder = one_run
    lock_note(folder, host=host, pid=4321, result_written=time.time() - age)
    calls = record_executions(monkeypatch)
    lines = []
    outcome = runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lines.append)
    if executed:
        assert outcome == "executed" and calls == [run.run_id]
    else:
        assert outcome == "settled" and calls == []
        assert "written by node-7 (pid 4321) 5 s ago, not visible here yet" in lines[0]
        again = runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lines.append)
        assert again == "settled" and calls == []  # the note is kept for the next claim


def test_a_dry_run_and_the_grids_lines_say_a_run_done_on_another_host_is_left_to_it(one_run, capsys):
    """The dry run said "would run (not run yet)" and the grid's first line "1 to run" of a run that the
    grid then left to the result another host had just written, and its last line "1 not run" (exit 1)."""
    from bench.run import grid

    spec, run, folder = one_run
    root = folder.parents[2]
    lock_note(folder, host="node-7", pid=4321, result_written=time.time() - 5)
    (state,) = runner.run_states(spec, root, [run])
    assert state.action == "skip-unseen"
    assert state.reason == ("done by node-7 5 s ago, its result.json not visible here yet (a network file system's "
                            "cache)")
    assert grid.header(spec, [run], root, [state]).endswith(": 1 done on another host (not visible here yet)")
    assert grid.summarise(spec, root, [run]) == 0
    assert capsys.readouterr().out.strip() == "0 ok, 0 failed, 0 not run, 1 done on another host (not visible here yet)"
    lock_note(folder, host="node-7", pid=4321, result_written=time.time() - 300)  # past the window: removed
    assert runner.run_states(spec, root, [run])[0].action == "run"
    assert grid.summarise(spec, root, [run]) == 1


@pytest.mark.parametrize("writer_clock", [-180.0, 3600.0], ids=["3 min behind", "1 h ahead"])
def test_the_hidden_result_window_is_counted_on_the_file_systems_clock_not_the_writers(
        monkeypatch, one_run, writer_clock):
    """Two hosts' clocks need not agree. A writer 3 minutes behind made its result look 3 minutes old at
    once: a host that could not see it yet trained the run again and replaced its result. A writer an
    hour ahead kept a result removed to redo the run refused for an hour. Both ends of the window are
    the lock file's modification times, set by one clock (the file server's, on a network file system)."""
    spec, run, folder = one_run
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + writer_clock)  # the writer's host: node-7
    monkeypatch.setattr(runner.socket, "gethostname", lambda: "node-7")
    calls = record_executions(monkeypatch)
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lambda *_: None) == "executed"
    monkeypatch.setattr(time, "time", real_time)  # another host, whose clock is right
    monkeypatch.setattr(runner.socket, "gethostname", lambda: "node-2")
    monkeypatch.setattr(runner, "read_result", lambda folder: None)  # its cache hides result.json
    monkeypatch.setattr(runner, "load_result", lambda folder: (None, None))
    lines = []
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lines.append) == "settled"
    assert calls == [run.run_id] and "written by node-7" in lines[0] and " 0 s ago" in lines[0]
    # past the window the result is taken as removed (to redo the run), whatever the writer's clock said
    monkeypatch.setattr(runner, "RESULT_VISIBLE_SECONDS", 0.3)
    time.sleep(0.4)
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lines.append) == "executed"
    assert calls == [run.run_id, run.run_id]


def test_a_holder_that_wrote_the_result_says_so_in_the_lock(monkeypatch, one_run):
    spec, run, folder = one_run
    record_executions(monkeypatch)
    before = time.time()
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lambda *_: None) == "executed"
    note = json.loads((folder / runner.LOCK).read_text())
    assert note["host"] == socket.gethostname() and before <= note["result_written"] <= time.time()


@pytest.mark.parametrize("field", ["result_written", "result_written_on_disk"])
@pytest.mark.parametrize("value", [10**400, float("inf"), 1e300, 10**22, float("nan")])
def test_a_lock_note_with_a_time_no_float_holds_is_no_note(monkeypatch, one_run, field, value):
    """A note edited by hand with a time of 10**400 (JSON's integers have no bound): the run is claimed as
    if the note said nothing, where float() of it ended the grid in an OverflowError. So is one of a time
    at infinity or far in the future, which left the run to a result written "-inf s ago" in every grid."""
    spec, run, folder = one_run
    lock_note(folder, host="node-7", pid=4321, **{"result_written": time.time() - 5, field: value})
    calls = record_executions(monkeypatch)
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lambda *_: None) == "executed"
    assert calls == [run.run_id]


def test_a_lock_note_with_the_time_as_text_is_read_as_that_time(monkeypatch, one_run):
    """A note edited by hand, or by another tool, with the time as a string: one line, not a traceback."""
    spec, run, folder = one_run
    lock_note(folder, host="node-7", pid=4321, result_written=str(time.time() - 5))
    calls = record_executions(monkeypatch)
    lines = []
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lines.append) == "settled"
    assert calls == [] and "written by node-7 (pid 4321) 5 s ago" in lines[0]


def test_a_claim_that_finds_the_result_leaves_the_writers_note_for_hosts_that_cannot_see_it(monkeypatch, one_run):
    """A worker whose first look missed a result another host was writing takes the lock, sees the
    result and leaves the run alone. Its claim must not erase the writer's note: a third host whose
    network file system still hides result.json reads that note and leaves the run alone too, rather
    than train it again from scratch."""
    spec, run, folder = one_run
    lock_note(folder, host="node-7", pid=4321, result_written=time.time() - 5)
    note = (folder / runner.LOCK).read_text()
    real_acquire = RunLock.acquire
    race(monkeypatch, folder, finished_by_other_worker(run.run_id, "ok"))
    calls = record_executions(monkeypatch)
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lambda *_: None) == "settled"
    assert (folder / runner.LOCK).read_text() == note
    monkeypatch.setattr(RunLock, "acquire", real_acquire)  # the third host: no race, and its cache
    monkeypatch.setattr(runner, "load_result", lambda folder: (None, None))  # says result.json does not exist
    assert runner._claim_and_execute(spec, folder, run, no_cache, "cpu", None, lambda *_: None) == "settled"
    assert calls == []


def test_a_waiter_woken_on_a_removed_lock_file_locks_the_file_now_at_its_path(tmp_path, monkeypatch):
    """flock(2) locks an open file, not a path: `exclusive_lock` removes its file on release, so a waiter
    that opened the old file wakes holding a file no longer at the path, where a newcomer creates another
    and would lock that one too. The waiter must lock the file at the path: then no one else can."""
    import threading

    from bench.core import store

    path = tmp_path / "prepare.lock"
    waiting, inside, leave = threading.Event(), threading.Event(), threading.Event()
    flock = store._flock

    def flock_and_say(fd, operation, where):
        if threading.current_thread().name == "waiter":
            waiting.set()  # it has opened the file the first holder will remove
        flock(fd, operation, where)

    monkeypatch.setattr(store, "_flock", flock_and_say)

    def waiter():
        with store.exclusive_lock(path):
            inside.set()
            leave.wait(30)

    with store.exclusive_lock(path):
        thread = threading.Thread(target=waiter, name="waiter")
        thread.start()
        assert waiting.wait(30)
    try:
        assert inside.wait(30)
        newcomer = store.try_lock(path)
        if newcomer is not None:
            store.release_lock(newcomer)
        assert newcomer is None, "a newcomer took the lock its waiter holds"
    finally:
        leave.set()
        thread.join(30)


def test_a_claim_replaces_a_longer_note_of_the_last_holder_whole(tmp_path):
    """A run resumed by a worker on a host with a shorter name than the killed one's: the lock holds the
    new note alone (JSON `bench status` reads to name the worker), and the old one is handed back."""
    from bench.core.store import release_lock, try_lock

    old = json.dumps({"host": "gpu-node-with-a-long-name-17.cluster", "pid": 4242, "since": 1.0})
    release_lock(try_lock(tmp_path / "lock", old))
    new, previous = json.dumps({"host": "n1", "pid": 7, "since": 2.0}), []
    fd = try_lock(tmp_path / "lock", new, previous)
    try:
        assert (tmp_path / "lock").read_text() == new and previous == [old.encode()]
    finally:
        release_lock(fd)


def test_a_run_whose_holder_died_during_the_pass_is_taken_over_and_one_held_throughout_is_left(
        monkeypatch, write_spec, tmp_path):
    """Three runs: the first held by another worker at this worker's first look, its holder dying while
    this one trains the second; the third held throughout. The first is taken over after the pass, and
    the loop ends once a pass finds only runs held elsewhere, leaving the third to its worker."""
    from bench.spec import load_spec

    from .conftest import MINIMAL_SPEC

    spec = load_spec(write_spec(MINIMAL_SPEC.replace("seeds = [0]", "seeds = [0, 1, 2]")))
    first, second, third = spec.runs()
    refusals = {first.run_id: 1, third.run_id: 10**6}  # looks at which the other workers still hold them
    real_acquire = RunLock.acquire

    def acquire(self):
        if refusals.get(self.folder.name, 0) > 0:
            refusals[self.folder.name] -= 1
            return False
        return real_acquire(self)

    monkeypatch.setattr(RunLock, "acquire", acquire)
    calls = record_executions(monkeypatch)
    executed = runner.worker_loop(spec, tmp_path / "results", [first, second, third], no_cache, "cpu", None,
                                  log=lambda *_: None)
    assert executed == calls == [second.run_id, first.run_id]
    # the third looked at in each of the three passes: the last found it alone, and held
    assert refusals == {first.run_id: 0, third.run_id: 10**6 - 3}
