"""What a grid trains and what it says at its end: a shard trains its own runs and counts only those;
the closing table holds each run's own metrics; each failed run is named with its error; workers that
end with an error are named. Training is stood in for (a result written by hand), so the numbers the
table must show are known."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from bench.run import grid, prepare, runner
from bench.run.grid import GridOptions, run_grid
from bench.run.runner import run_dir
from bench.spec import load_spec

DEMO6 = Path(__file__).resolve().parent / "data" / "demo6.toml"


def ok_result(run, roc_auc=0.9, pr_auc=0.5, epochs=1) -> dict:
    return {"schema_version": 1, "run_id": run.run_id, "status": "ok",
            "config": {"arch": run.arch, "width": 0.0625, "sample_rate": 16000, "n_mels": 96, "hop_multiplier": 1,
                       "log": "log", "seed": run.seed},
            "metrics": {"roc_auc": roc_auc, "pr_auc": pr_auc},
            "cost": {"gmac": 0.001, "epochs": epochs, "best_epoch": 1, "train_seconds": 1.0}}


@pytest.mark.parametrize("index", [0, 1])
def test_a_shard_trains_the_runs_k_mod_n_and_counts_only_those(monkeypatch, tmp_path, index):
    """docs/running.md: `--shard i/n` keeps runs k with k mod n = i. Of demo6's 6 runs, shard i/2 trains
    3, ends "3 ok, 0 failed, 0 not run" (the other shard's runs are not its own) and exits 0."""
    from bench.data.cache import WaveformCache

    spec_file = tmp_path / "demo6.toml"
    shutil.copy(DEMO6, spec_file)
    cache = type("Cache", (), {"index_path": tmp_path / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, cache, None))
    monkeypatch.setattr(WaveformCache, "from_index", staticmethod(lambda path: None))
    trained = []

    def execute_run(spec, run, folder, *args, **kwargs):
        trained.append(run.run_id)
        (folder / "result.json").write_text(json.dumps(ok_result(run)))
        return ok_result(run)

    monkeypatch.setattr(runner, "execute_run", execute_run)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = run_grid(str(spec_file), GridOptions(results=str(tmp_path / "results"), cache=str(tmp_path / "c"),
                                                      device="cpu", workers=1, shard_text=f"{index}/2", quiet=True))
    runs = load_spec(spec_file).runs()
    assert len(runs) == 6 and sorted(trained) == sorted(r.run_id for k, r in enumerate(runs) if k % 2 == index)
    assert [line for line in out.getvalue().splitlines() if " ok, " in line] == ["3 ok, 0 failed, 0 not run"]
    assert status == 0


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_shard_past_the_last_run_says_it_has_nothing_to_do(tmp_path, capsys, dry_run):
    """A job array of more tasks than runs (`--shard 9/10` of 6): its first line ended in a colon."""
    status = run_grid(str(DEMO6), GridOptions(results=str(tmp_path / "results"), cache=str(tmp_path / "c"),
                                              device="cpu", shard_text="9/10", dry_run=dry_run))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"demo: 0 runs (shard 9/10) in {tmp_path / 'results' / 'demo'}: nothing to do (the spec's "
                      "6 runs are in shards 0-5 of 10)")
    assert status == 0 and not (tmp_path / "c").exists()
    one = type("OneRunSpec", (), {"name": "one", "runs": lambda self: ["the run"]})()
    assert grid.header(one, [], tmp_path, [], 2, 3).endswith(": nothing to do (the spec's 1 run is in shard 0 of 3)")


def test_the_closing_table_holds_each_runs_own_metrics(tmp_path, capsys):
    spec = load_spec(DEMO6)
    run = spec.runs()[0]
    folder = run_dir(tmp_path, spec, run)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(ok_result(run, roc_auc=0.875, pr_auc=0.5, epochs=7)))
    assert grid.summarise(spec, tmp_path, [run]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    table = dict(zip(header.split(), row.split(), strict=True))
    assert (table["roc_auc"], table["pr_auc"], table["epochs"]) == ("0.875", "0.5", "7")


def test_each_failed_run_is_named_with_its_error(tmp_path, capsys):
    spec = load_spec(DEMO6)
    run = spec.runs()[0]
    folder = run_dir(tmp_path, spec, run)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"schema_version": 1, "run_id": run.run_id, "status": "failed",
                                                    "error": "NonFiniteLoss: training loss became nan at epoch 3"}))
    assert grid.summarise(spec, tmp_path, [run]) == 1
    assert f"  failed {run.run_id}: NonFiniteLoss: training loss became nan at epoch 3" in capsys.readouterr().out


def test_local_workers_that_end_with_an_error_are_named(tmp_path):
    """Two spawned workers whose waveform cache's index is missing: each ends with exit status 1, and
    the grid's summary is given both."""
    job = grid.WorkerJob(spec_path=str(DEMO6), results=str(tmp_path / "results"),
                         cache_index=str(tmp_path / "missing" / "index-0.json"), device="cpu", workers_here=2)
    assert grid._launch_local(job, 2, cuda=False) == [
        f"bench-worker-{k} stopped with exit status 1 (its error is above)" for k in (0, 1)]


def test_workers_stopped_alike_are_said_once_in_the_grids_stop_line():
    """`bench grid --workers 2 | head -5`: each worker met the closed pipe and said so, and the grid's line
    said it twice (N workers, N times)."""
    from bench.core.errors import RERUN_TO_CONTINUE

    closed = f"its output was closed (the reader of its pipe ended); {RERUN_TO_CONTINUE}"
    assert grid.stop_line([closed, closed]) == closed
    assert grid.stop_line([RERUN_TO_CONTINUE, RERUN_TO_CONTINUE]) == RERUN_TO_CONTINUE
    runs = ["rerun to resume vgg-a from epoch 3", "rerun to start vgg-b again (it had not finished an epoch)"]
    assert grid.stop_line([runs[0], RERUN_TO_CONTINUE, runs[1]]) == "; ".join(runs)  # a worker between runs
