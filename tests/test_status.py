"""`bench status`: a grid in progress read from its files, with a run killed mid-epoch."""

import json
import socket
import time

import pytest

from bench.cli import main
from bench.core import layout
from bench.run.runner import RunLock
from bench.run.status import grid_status, progress_line
from bench.spec import load_spec

from .conftest import ROOT

SPEC = ROOT / "tests" / "data" / "demo6.toml"  # 6 runs, max_epochs 12
EPOCH = {"train_seconds": 10.0, "eval_seconds": 2.0}  # every epoch measured: 12 s


def epoch_line(epoch: int, score: float) -> str:
    return json.dumps({"epoch": epoch, "loss": 0.5, "valid_roc_auc": score, **EPOCH}) + "\n"


def started(folder, at: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / layout.EXECUTIONS).write_text(json.dumps({"host": "h", "pid": 1, "time": at}) + "\n")


def grid_in_progress(root):
    """Run 0 done (4 epochs), run 1 killed in its third epoch (a half-written history line, a
    checkpoint, no live worker), run 2 running in its second epoch, runs 3-5 not started."""
    spec = load_spec(SPEC)
    runs = spec.runs()
    folders = [layout.run_dir(root, spec.name, r.run_id) for r in runs]
    now = time.time()
    started(folders[0], now - 600)
    history = [{"epoch": e, "valid_roc_auc": 0.8, **EPOCH} for e in range(1, 5)]
    (folders[0] / layout.RESULT).write_text(json.dumps({
        "run_id": runs[0].run_id, "status": "ok", "config": {}, "metrics": {"roc_auc": 0.9, "pr_auc": 0.8},
        "cost": {"epochs": 4}, "training": {"history": history}, "provenance": {"finished": now - 400}}))
    started(folders[1], now - 300)
    (folders[1] / layout.CHECKPOINT).write_bytes(b"checkpoint of epoch 2")
    (folders[1] / layout.HISTORY).write_text(epoch_line(1, 0.70) + epoch_line(2, 0.75) + '{"epoch": 3, "lo')
    started(folders[2], now - 100)
    (folders[2] / layout.CHECKPOINT).write_bytes(b"checkpoint of epoch 1")  # always written after the first
    (folders[2] / layout.HISTORY).write_text(epoch_line(1, 0.66))
    return spec, folders


def test_status_of_a_grid_with_a_run_killed_mid_epoch(tmp_path, capsys):
    spec, folders = grid_in_progress(tmp_path)
    lock = RunLock(folders[2])
    assert lock.acquire()  # a live worker trains run 2
    try:
        status = grid_status(spec, tmp_path, gmac_of=lambda config: 1.0)  # every shape alike: 12 s per epoch
        assert status.counts == {"done": 1, "running": 1, "interrupted": 1, "invalid": 0, "failed": 0,
                                 "not started": 3}
        done, killed, running = status.runs[:3]
        assert (killed.state, killed.epoch, killed.best_valid_roc_auc) == ("interrupted", 2, 0.75)
        assert (running.state, running.epoch, running.best_valid_roc_auc) == ("running", 1, 0.66)
        assert running.worker.startswith(socket.gethostname() + ":")
        # 4 epochs expected per run (the finished run's), 12 s each, one run at a time:
        # killed 2 left, running 3 left, 3 not started x 4 = 17 epochs = 204 s
        assert status.eta_seconds == 204
        assert 590 < status.elapsed_seconds < 700  # since run 0 first started, 600 s ago
        assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == f"demo: 6 runs in {tmp_path / 'demo'}: 1 done, 1 running, 1 interrupted, 3 not started"
        assert any(line.split()[:4] == [spec.runs()[1].run_id, "interrupted", "2/12", "0.7500"] for line in out)
        # the 12 kHz VGG and the MusiCNN shapes are not measured: scaled by their GMAC
        assert out[-1].startswith("elapsed 10 min; ETA ")
        assert out[-1].endswith("(4.0 epochs per run (mean of the finished runs), measured epoch times; 2 run(s) "
                                "of shapes not measured yet scaled by GMAC (1 of an architecture none of whose "
                                "shapes is measured yet, from the others'), 1 run(s) at a time)")
    finally:
        lock.release()
    assert sorted(p.name for p in folders[1].iterdir()) == sorted(
        [layout.EXECUTIONS, layout.CHECKPOINT, layout.HISTORY])  # read, never written


GMAC = {("vgg", 16000, 96, 1): 1.0, ("vgg", 16000, 8, 1): 0.5, ("vgg", 16000, 96, 10): 0.1,
        ("vgg", 12000, 96, 1): 0.75, ("musicnn", 16000, 96, 1): 4.0}  # made up, per clip


def test_the_eta_of_a_shape_not_measured_yet_scales_the_measured_ones_by_gmac(tmp_path):
    """The demo's last runs are MusiCNN's, several times the GMAC of the VGG shapes measured before
    them: their epochs must not be expected to take the VGG mean."""
    spec, folders = grid_in_progress(tmp_path)
    status = grid_status(spec, tmp_path, gmac_of=lambda c: GMAC[c.arch, c.mel.sample_rate, c.mel.n_mels,
                                                                   c.mel.hop_multiplier])
    # measured, 12 s per epoch each: VGG 96x1 (1.0 GMAC), 8x1 (0.5), 96 x10 (0.1): 36 s / 1.6 GMAC = 22.5 s/GMAC
    # left: interrupted 2 x 12 + running 3 x 12 + 12 kHz 4 x 0.75 x 22.5 + dB (the 96x1 shape) 4 x 12
    #       + MusiCNN (none measured: every architecture's rate) 4 x 4.0 x 22.5
    assert status.eta_seconds == pytest.approx(24 + 36 + 67.5 + 48 + 360)
    # the MusiCNN run's estimate leans on VGG's epochs, which the basis says
    assert ("2 run(s) of shapes not measured yet scaled by GMAC (1 of an architecture none of whose shapes is "
            "measured yet, from the others')") in status.eta_basis
    # an architecture that cannot count its GMAC: the measured shapes' mean
    assert grid_status(spec, tmp_path, gmac_of=lambda c: None).eta_seconds == 17 * 12
    # MusiCNN measured too (one epoch of 30 s, 3 left): the 12 kHz VGG is scaled from the VGG shapes alone
    started(folders[5], time.time() - 50)
    (folders[5] / layout.CHECKPOINT).write_bytes(b"checkpoint of epoch 1")
    (folders[5] / layout.HISTORY).write_text(json.dumps({"epoch": 1, "valid_roc_auc": 0.6, "train_seconds": 30.0,
                                                         "eval_seconds": 0.0}) + "\n")
    status = grid_status(spec, tmp_path, gmac_of=lambda c: GMAC[c.arch, c.mel.sample_rate, c.mel.n_mels,
                                                                   c.mel.hop_multiplier])
    assert status.eta_seconds == pytest.approx(24 + 36 + 67.5 + 48 + 3 * 30)
    assert status.eta_basis.endswith("; 1 run(s) of shapes not measured yet scaled by GMAC, 1 run(s) at a time")


def test_a_run_past_the_expected_epochs_still_has_one_to_go(tmp_path):
    spec, folders = grid_in_progress(tmp_path)
    history = "".join(epoch_line(e, 0.7) for e in range(1, 7))  # 6 epochs; finished runs took 4
    (folders[2] / layout.HISTORY).write_text(history)
    status = grid_status(spec, tmp_path, gmac_of=lambda config: 1.0)
    assert status.eta_seconds == (2 + 1 + 3 * 4) * 12  # the interrupted run 2 left, run 2 one, 3 not started


def test_epochs_of_an_attempt_without_a_checkpoint_are_not_progress(tmp_path):
    """A finished run keeps its history.jsonl but not its checkpoint: with its result.json removed to
    redo it (or a first attempt killed before its first checkpoint), the next grid trains it from
    scratch, so it is not started, with every epoch still to go, not interrupted at 12/12."""
    spec, folders = grid_in_progress(tmp_path)
    started(folders[3], time.time() - 1000)
    (folders[3] / layout.HISTORY).write_text("".join(epoch_line(e, 0.9) for e in range(1, 13)))
    status = grid_status(spec, tmp_path, gmac_of=lambda config: 1.0)
    redo = status.runs[3]
    assert (redo.state, redo.epoch, redo.best_valid_roc_auc) == ("not started", 0, None)
    assert status.counts["interrupted"] == 2 and status.counts["not started"] == 3  # runs 1 and 2 have checkpoints
    assert status.eta_seconds == 204  # as before: 2 + 3 + 3 x 4 epochs of 12 s


def test_the_progress_line_counts_failed_runs_apart_from_done_ones(tmp_path):
    spec, folders = grid_in_progress(tmp_path)
    (folders[1] / layout.RESULT).write_text(json.dumps({
        "run_id": spec.runs()[1].run_id, "status": "failed", "error": "NonFiniteLoss: training loss became nan",
        "config": {}, "provenance": {"finished": time.time()}}))
    line = progress_line(spec, tmp_path, time.time() - 90)
    assert line.startswith("progress: 1/6 runs done, 1 failed, elapsed 2 min, ETA ")


def test_status_json_and_progress_line(tmp_path, capsys):
    spec, _ = grid_in_progress(tmp_path)
    # two runs of an earlier version of the spec (other seeds): counted apart, not as runs of this grid
    for seed in (7, 8):
        (tmp_path / spec.name / layout.RUNS / spec.runs()[0].run_id.replace("-s0-", f"-s{seed}-")).mkdir()
    assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
    assert "also 2 run folder(s) the spec does not name (an earlier version of it, or another spec of the same " \
           "name)" in capsys.readouterr().out
    assert main(["status", str(SPEC), "--results", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["not_in_spec"] == 2 and sum(doc["counts"].values()) == 6
    assert doc["counts"]["interrupted"] == 2 and doc["counts"]["running"] == 0  # no live worker holds run 2
    assert [r["state"] for r in doc["runs"]][:3] == ["done", "interrupted", "interrupted"]
    line = progress_line(spec, tmp_path, time.time() - 90)
    assert line.startswith("progress: 1/6 runs done, elapsed 2 min, ETA ")


def test_numbers_too_large_or_not_finite_in_a_runs_files_leave_the_status_readable(tmp_path, capsys):
    """A hand-edited or foreign history whose epoch times add up past a float (1e308 each), a NaN score,
    an infinite start time, a NaN finish, integers no float holds: `bench status` prints (it ended in an
    OverflowError), its ETA unknown, and `--json` stays JSON (no NaN or Infinity, which strict parsers
    refuse)."""
    spec, folders = grid_in_progress(tmp_path)
    with open(folders[2] / layout.HISTORY, "a") as history:
        history.write('{"epoch": 2, "valid_roc_auc": NaN, "train_seconds": 1e308, "eval_seconds": 1e308}\n')
        history.write('{"epoch": 3, "valid_roc_auc": 0.7, "train_seconds": 1e308, "eval_seconds": 1}\n')
    with open(folders[1] / layout.EXECUTIONS, "a") as executions:
        executions.write('{"host": "h", "pid": 2, "time": -Infinity}\n')
    done = json.loads((folders[0] / layout.RESULT).read_text())
    done["provenance"]["finished"] = float("nan")  # Python's json writes and reads NaN
    (folders[0] / layout.RESULT).write_text(json.dumps(done))
    assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
    capsys.readouterr()
    # integers past a float's range (JSON's have no bound): a start, a finish, a finished run's epochs
    with open(folders[2] / layout.EXECUTIONS, "a") as executions:
        executions.write(json.dumps({"host": "h", "pid": 3, "time": 10**400}) + "\n")
    with open(folders[2] / layout.HISTORY, "a") as history:  # each a float's, their sum not
        history.write(json.dumps({"epoch": 4, "train_seconds": 10**308, "eval_seconds": 10**308}) + "\n")
    done.update(provenance={"finished": 10**400}, cost={"epochs": 10**400})
    (folders[0] / layout.RESULT).write_text(json.dumps(done))
    assert progress_line(spec, tmp_path, time.time() - 90).startswith("progress: 1/6 runs done")
    done.update(cost={"epochs": 10**308})  # a float's, but the mean of two such overflows on the way
    (folders[0] / layout.RESULT).write_text(json.dumps(done))
    (folders[1] / layout.RESULT).write_text(json.dumps({**done, "run_id": spec.runs()[1].run_id}))
    assert progress_line(spec, tmp_path, time.time() - 90).startswith("progress: 2/6 runs done")
    (folders[1] / layout.RESULT).unlink()
    assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("elapsed 10 min; ETA unknown")
    assert any(line.split()[:4] == [spec.runs()[2].run_id, "interrupted", "4/12", "0.7000"] for line in out)
    assert main(["status", str(SPEC), "--results", str(tmp_path), "--json"]) == 0

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    doc = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert doc["eta_seconds"] is None and doc["runs"][2]["best_valid_roc_auc"] == 0.7
    assert doc["runs"][0]["finished"] is None


def test_status_of_a_missing_results_folder_is_every_run_not_started_and_says_so(tmp_path, capsys):
    """A grid not started yet, asked from a folder where no grid has written (`results/` absent): its runs
    are not started, as where an empty `results/` exists, and a line names the folder (a mistyped one)."""
    assert main(["status", str(SPEC), "--results", str(tmp_path / "nowhere"), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"bench status: --results {tmp_path / 'nowhere'}: no such folder yet: no run "
                                    "of it has started there")
    doc = json.loads(captured.out)
    assert {r["state"] for r in doc["runs"]} == {"not started"} and len(doc["runs"]) == len(load_spec(SPEC).runs())
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    assert main(["status", str(SPEC), "--results", str(tmp_path / "empty"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == doc["counts"]


def test_status_of_the_specs_own_folder_points_one_level_up(tmp_path, capsys):
    """`--results results/<spec>` (as `bench report` takes it) said every run was "not started"."""
    spec = load_spec(SPEC)
    (tmp_path / spec.name / "runs").mkdir(parents=True)
    assert main(["status", str(SPEC), "--results", str(tmp_path / spec.name)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"(did you mean --results {tmp_path}?)")
    assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0


def test_a_claim_that_meets_a_look_at_the_lock_tries_again(tmp_path, monkeypatch):
    """`bench status` looks at a run's lock with a shared flock for microseconds; a worker claiming the
    run at that instant must not skip it as held by another worker."""
    from bench.run import runner

    real, calls = runner.try_lock, []

    def busy_once(path, note="", previous=None):
        calls.append(path)
        return None if len(calls) == 1 else real(path, note, previous)

    monkeypatch.setattr(runner, "try_lock", busy_once)
    lock = RunLock(tmp_path / "run")
    assert lock.acquire() and len(calls) == 2
    lock.release()


def test_a_result_with_fields_of_the_wrong_type_does_not_stop_the_status(tmp_path, capsys):
    """A hand-edited result.json that the grid accepts as a done-marker (ok, AUCs in range) but whose
    other parts are not objects; and a history line that is JSON but not an object."""
    spec, folders = grid_in_progress(tmp_path)
    done = json.loads((folders[0] / layout.RESULT).read_text())
    for name, value in (("provenance", 5), ("training", "x"), ("training", {"history": [1, 2]})):
        (folders[0] / layout.RESULT).write_text(json.dumps({**done, name: value}))
        assert grid_status(spec, tmp_path).counts["done"] == 1
    (folders[2] / layout.HISTORY).write_text("7\n" + epoch_line(1, 0.66))
    assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
    assert "1 done" in capsys.readouterr().out.splitlines()[0]


def test_a_corrupt_result_is_invalid_as_the_grid_sees_it_not_interrupted(tmp_path, capsys):
    """`bench grid --dry-run` says such a run is set aside and redone; status says the same."""
    spec, folders = grid_in_progress(tmp_path)
    (folders[0] / layout.HISTORY).write_text("".join(epoch_line(e, 0.8) for e in range(1, 5)))  # its 4 epochs
    (folders[0] / layout.RESULT).write_text('{"run_id": "cut sh')
    status = grid_status(spec, tmp_path)
    assert status.runs[0].state == "invalid" and status.counts["invalid"] == 1
    assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"invalid result.json: {spec.runs()[0].run_id} (the next bench grid sets it aside" in out
    # its epochs are not work done: a finished run has no checkpoint, so the grid trains it from scratch
    # (they counted: the ETA of a 40-epoch run read 0 s, its deleted result.json's 3 s)
    assert not (folders[0] / layout.CHECKPOINT).exists()
    assert status.runs[0].epoch == 0 and status.runs[0].epoch_seconds == []


def test_a_run_that_finishes_between_status_reading_its_result_and_its_lock_is_done(tmp_path, monkeypatch):
    # The worker writes result.json and then releases its lock: status, which looked for the result first,
    # found the lock free and (with a checkpoint there) called the finished run interrupted.
    from bench.run import status as status_module

    spec, folders = grid_in_progress(tmp_path)
    finished = json.loads((folders[0] / layout.RESULT).read_text())
    (folders[2] / layout.CHECKPOINT).write_bytes(b"checkpoint of epoch 1")
    real_lock_held = status_module.lock_held

    def finishes_meanwhile(path):
        if path.parent == folders[2] and not (path.parent / layout.RESULT).exists():
            (path.parent / layout.RESULT).write_text(json.dumps({**finished, "run_id": folders[2].name}))
            return False
        return real_lock_held(path)

    monkeypatch.setattr(status_module, "lock_held", finishes_meanwhile)
    assert grid_status(spec, tmp_path).runs[2].state == "done"


def test_stray_folders_in_runs_are_not_counted_as_runs_of_an_earlier_spec(tmp_path):
    spec, folders = grid_in_progress(tmp_path)
    for stray in ("notes", ".ipynb_checkpoints"):
        (folders[0].parent / stray).mkdir()
    (folders[0].parent / "vgg-16k-96mel-x1-log-s9-0123456789").mkdir()  # a run the spec no longer names
    assert grid_status(spec, tmp_path).not_in_spec == 1


def test_a_workers_progress_line_counts_the_worker_asking_among_the_runs_at_a_time(tmp_path, monkeypatch):
    """A worker prints its progress line after releasing its run, holding none: with two workers the
    other's run was the only one running, and the ETA was twice what `bench status` gives while both
    train. Run 2 held by the other worker; 204 s of epochs left (as above), over 2 runs at a time."""
    spec, folders = grid_in_progress(tmp_path)
    lock = RunLock(folders[2])
    assert lock.acquire()
    try:
        assert grid_status(spec, tmp_path, gmac_of=lambda config: 1.0, asking=1).eta_seconds == 204 / 2
        assert grid_status(spec, tmp_path, gmac_of=lambda config: 1.0).eta_seconds == 204  # bench status
        from bench.run import status

        monkeypatch.setattr(status, "analytic_gmac", lambda spec: lambda config: 1.0)
        assert progress_line(spec, tmp_path, time.time() - 90).endswith(", ETA 2 min")  # 102 s, not 3 min
    finally:
        lock.release()


def test_a_run_the_edited_spec_no_longer_names_is_said_running_while_a_worker_trains_it(tmp_path, capsys):
    """The spec edited while its grid runs (a configuration removed): the grid trains the spec it started
    with, and status counted the run a live worker trains only as a folder the spec no longer names,
    with no run running and the elapsed time unknown."""
    spec, _ = grid_in_progress(tmp_path)
    removed = tmp_path / spec.name / layout.RUNS / spec.runs()[0].run_id.replace("-s0-", "-s7-")
    started(removed, time.time() - 120)
    lock = RunLock(removed)
    assert lock.acquire()
    try:
        assert main(["status", str(SPEC), "--results", str(tmp_path), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["not_in_spec"] == 1 and doc["not_in_spec_running"] == [removed.name]
        assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
        assert f"  of those, running now: {removed.name} (a grid of that other version trains its own runs)" in (
            capsys.readouterr().out)
    finally:
        lock.release()
    assert grid_status(spec, tmp_path).not_in_spec_running == []  # its worker gone


def test_a_retry_grids_progress_line_counts_the_failures_it_will_still_retry(tmp_path):
    """A `--retry-failed` grid's workers said "nothing left" while a failure they were to retry waited:
    the progress line counted every failed run as settled. Five runs done, the sixth failed."""
    spec = load_spec(SPEC)
    runs = spec.runs()
    history = [{"epoch": e, "valid_roc_auc": 0.8, **EPOCH} for e in range(1, 5)]
    for run in runs[:5]:
        folder = layout.run_dir(tmp_path, spec.name, run.run_id)
        started(folder, time.time() - 600)
        (folder / layout.RESULT).write_text(json.dumps({
            "run_id": run.run_id, "status": "ok", "config": {}, "metrics": {"roc_auc": 0.9, "pr_auc": 0.8},
            "cost": {"epochs": 4}, "training": {"history": history}, "provenance": {"finished": time.time()}}))
    failed = layout.run_dir(tmp_path, spec.name, runs[5].run_id)
    started(failed, time.time() - 300)

    def failure(grid: str | None) -> None:
        (failed / layout.RESULT).write_text(json.dumps({
            "run_id": runs[5].run_id, "status": "failed", "error": "NonFiniteLoss: training loss became nan",
            "config": {}, "provenance": {"finished": time.time(), **({"grid": grid} if grid else {})}}))

    failure(None)  # recorded by an earlier grid
    assert progress_line(spec, tmp_path, time.time() - 90).endswith("1 failed, elapsed 2 min, nothing left")
    retrying = progress_line(spec, tmp_path, time.time() - 90, retrying="a1b2")
    assert retrying.startswith("progress: 5/6 runs done, 1 failed (1 to retry), elapsed 2 min, ETA ")
    assert grid_status(spec, tmp_path, gmac_of=lambda config: 1.0, retrying="a1b2").eta_seconds == 4 * 12
    failure("a1b2")  # this grid's own failure: not retried again
    assert progress_line(spec, tmp_path, time.time() - 90, retrying="a1b2").endswith("nothing left")


def test_failed_and_invalid_runs_are_named_a_few_at_a_time():
    """The paper grid's 264 runs, all failed, made one line of 9,516 characters: the first few are named,
    the rest counted, and --json lists every run."""
    from bench.run.status import GridStatus, RunStatus, format_status

    runs = [RunStatus(f"vgg-16k-96mel-x1-log-s{k}", "failed") for k in range(264)]
    runs += [RunStatus("musicnn-16k-96mel-x1-log-s0", "invalid")]
    text = format_status(GridStatus("paper", "results/paper", runs, {"failed": 264, "invalid": 1}, None, None, ""), 30)
    assert ("  failed: vgg-16k-96mel-x1-log-s0, vgg-16k-96mel-x1-log-s1, vgg-16k-96mel-x1-log-s2, "
            "vgg-16k-96mel-x1-log-s3, vgg-16k-96mel-x1-log-s4 and 259 more (bench grid --retry-failed reruns them) "
            "(--json lists every run)") in text.splitlines()
    assert ("  invalid result.json: musicnn-16k-96mel-x1-log-s0 (the next bench grid sets it aside and redoes the "
            "run)") in text.splitlines()
    assert max(map(len, text.splitlines())) < 250


def _finished(folder, run, epochs: int) -> None:
    started(folder, time.time() - 500)
    (folder / layout.CHECKPOINT).unlink(missing_ok=True)
    history = [{"epoch": e, "valid_roc_auc": 0.8, **EPOCH} for e in range(1, epochs + 1)]
    (folder / layout.RESULT).write_text(json.dumps({
        "run_id": run.run_id, "status": "ok", "config": {}, "metrics": {"roc_auc": 0.9, "pr_auc": 0.8},
        "cost": {"epochs": epochs}, "training": {"history": history}, "provenance": {"finished": time.time() - 10}}))


def test_the_estimate_takes_the_mean_epochs_of_the_finished_runs(tmp_path):
    """Finished runs of 4 and 8 epochs: each other run is expected to take 6 in all, 12 s each. Runs 1
    and 2 (interrupted at epochs 2 and 1) have 4 and 5 left, runs 4 and 5 six each: 21 epochs = 252 s."""
    spec, folders = grid_in_progress(tmp_path)
    _finished(folders[3], spec.runs()[3], 8)
    assert grid_status(spec, tmp_path, gmac_of=lambda config: 1.0).eta_seconds == 21 * 12


def test_a_worker_asking_when_no_run_waits_adds_no_run_at_a_time(tmp_path):
    """Every run done but run 2, which another worker trains (epoch 1 of the 4 expected): the worker that
    asks for the estimate has nothing to take, so the 3 epochs left run one at a time: 36 s, not 18."""
    spec, folders = grid_in_progress(tmp_path)
    for i in (1, 3, 4, 5):
        _finished(folders[i], spec.runs()[i], 4)
    lock = RunLock(folders[2])
    assert lock.acquire()
    try:
        assert grid_status(spec, tmp_path, gmac_of=lambda config: 1.0, asking=1).eta_seconds == 3 * 12
    finally:
        lock.release()


def test_a_grid_started_by_a_host_whose_clock_is_ahead_has_not_run_for_a_negative_time(tmp_path, capsys):
    """A cluster's node an hour ahead of the one asking: `elapsed -3595 s` while its first run trained."""
    spec = load_spec(SPEC)
    started(layout.run_dir(tmp_path, spec.name, spec.runs()[0].run_id), time.time() + 3600)
    assert grid_status(spec, tmp_path, gmac_of=lambda config: 1.0).elapsed_seconds == 0
    assert main(["status", str(SPEC), "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("elapsed 0 s; ETA ")
