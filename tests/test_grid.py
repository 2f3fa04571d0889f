"""The grid end to end on a small synthetic dataset: CLI, resume after SIGKILL, concurrent workers,
a NaN loss, submitit's local executor."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.core.store import lock_held
from bench.run.grid import GridOptions, run_grid
from bench.run.runner import EXECUTIONS, RESULT
from bench.tools.gpucheck import TINY_SPEC
from bench.train.model_file import load_model

from .conftest import group_ends

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One synthetic dataset and one cache shared by the tests of this module. The dataset is not there
    at first: the first grid generates it, as `make grid` does on a fresh clone."""
    root = tmp_path_factory.mktemp("grid")
    return root


def write_spec(workspace: Path, name: str, archs=("vgg", "musicnn"), epochs=2, extra="", patience=3) -> Path:
    path = workspace / f"{name}.toml"
    path.write_text(TINY_SPEC.format(name=name, seeds="[0]", data=workspace / "synth", epochs=epochs, extra=extra,
                                     patience=patience, archs=json.dumps(list(archs))))
    return path


def bench(workspace: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          cwd=workspace, **kwargs)


def results_of(workspace: Path, name: str) -> dict:
    runs = workspace / "results" / name / "runs"
    return {p.name: json.loads((p / RESULT).read_text()) for p in sorted(runs.iterdir()) if (p / RESULT).exists()}


def executions(workspace: Path, name: str) -> dict:
    runs = workspace / "results" / name / "runs"
    return {p.name: len((p / EXECUTIONS).read_text().splitlines()) for p in sorted(runs.iterdir())}


NAMED_BY_DATA = ("per_tag", "clips", "versions", "canonical", "fvcore_unsupported")
"""result.json's maps whose keys are data (tag names, splits, packages, operators), not fields."""


def undocumented_fields(result: dict) -> list[str]:
    """The fields of a result.json, nested ones and the history's included, that docs/results.md does
    not name: a script reading result.json finds each one described there."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    section = text[text.index("## `result.json`"):text.index("## `model.json`")]
    named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", section))

    def fields(record: dict, where: str):
        for key, value in record.items():
            yield f"{where}{key}", key
            if isinstance(value, dict) and key not in NAMED_BY_DATA:
                yield from fields(value, f"{where}{key}.")
            elif key == "history":
                for epoch in value:
                    yield from fields(epoch, f"{where}history[].")

    return sorted({path for path, key in fields(result, "") if key not in named})


def test_tiny_grid_end_to_end_through_the_cli(workspace):
    spec = write_spec(workspace, "e2e")
    proc = bench(workspace, "grid", str(spec), "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = results_of(workspace, "e2e")
    assert len(results) == 2
    for run_id, result in results.items():
        assert result["status"] == "ok" and result["run_id"] == run_id
        assert set(result["config"]) >= {"arch", "width", "sample_rate", "n_mels", "hop_multiplier", "log", "seed",
                                         "dataset"}
        m, c = result["metrics"], result["cost"]
        assert 0.0 <= m["roc_auc"] <= 1.0 and 0.0 <= m["pr_auc"] <= 1.0
        assert m["per_tag"] and all(0 <= t["roc_auc"] <= 1 for t in m["per_tag"].values())
        # the macro averages are the per-tag figures' means, over the tags that could be scored
        assert m["roc_auc"] == pytest.approx(np.mean([t["roc_auc"] for t in m["per_tag"].values()]))
        assert m["pr_auc"] == pytest.approx(np.mean([t["pr_auc"] for t in m["per_tag"].values()]))
        assert c["epochs"] == 2 and c["best_epoch"] in (1, 2)  # max_epochs 2; patience 3 cannot stop it earlier
        assert c["gmac"] > 0 and c["train_seconds"] > 0 and c["clips_per_second"] > 0
        # inference measured after training: ms per clip at batch 1 (front end + network >= network alone)
        assert c["latency_ms"] > 0 and c["network_latency_ms"] > 0 and c["throughput_clips_per_second"] > 0
        assert c["throughput_batch"] == 64
        # 3 s at 16 kHz = 48000 samples, padded to 48128; hop 512 -> 1 + 94 = 95 frames; 32 x 95 float32
        assert c["storage_bytes"] == 32 * 95 * 4 and c["storage_bytes_f16"] == 32 * 95 * 2
        assert result["provenance"]["versions"]["torch"]
        assert result["provenance"]["device"] == "cpu"
        # a run never stopped: one execution, from epoch 1, with the commit and versions of the whole run
        (execution,) = result["provenance"]["executions"]
        assert execution["from_epoch"] == 1 and execution["started"] == result["provenance"]["started"]
        assert execution["versions"]["torch"] == result["provenance"]["versions"]["torch"]
        # the code that ran, as sha256sum says of the checkout's Python files (docs/results.md)
        listed = subprocess.run("find bench architectures -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum "
                                "| sha256sum", shell=True, cwd=Path(__file__).resolve().parents[1],
                                capture_output=True, text=True, check=True)
        assert result["provenance"]["code_sha256"] == execution["code_sha256"] == listed.stdout.split()[0]
        assert result["provenance"]["torch_threads"] == result["training"]["history"][-1]["torch_threads"]
        assert (workspace / "results" / "e2e" / "runs" / run_id / "best.pt").exists()
        # a finished run's checkpoint is removed: nothing resumes from it (208 MB at VGG's width 1)
        assert not (workspace / "results" / "e2e" / "runs" / run_id / "checkpoint.pt").exists()
        assert result["schema_version"] == 1
        assert not undocumented_fields(result), f"docs/results.md names none of {undocumented_fields(result)}"
        loaded = load_model(workspace / "results" / "e2e" / "runs" / run_id)  # what `bench tag RUN_DIR` uses
        assert loaded.name == run_id and loaded.tags == result["tag_names"]
        # the recorded parameters are the trained network's, counted by torch (the front end has none)
        assert c["params"] == sum(p.numel() for p in loaded.model.parameters())
        if result["config"]["arch"] == "vgg":  # by hand: the paper's 128/384/768/2048 channels at width 1/16
            # input BatchNorm 2; 3x3 convs with bias and BatchNorm: 9x1x8+8+16, 9x8x24+24+48, 9x24x48+48+96,
            # 9x48x128+128+256; the synthetic dataset's 17 tags: 128x17+17
            assert c["params"] == 2 + 96 + 1_800 + 10_512 + 55_680 + 2_193 == 70_283
        assert loaded.frontend.config.n_mels == result["config"]["n_mels"] == 32
    assert "2 ok, 0 failed, 0 not run" in proc.stdout
    # the report runs at the end of the grid
    report = workspace / "results" / "e2e" / "report"
    assert (report / "summary.csv").exists() and (report / "tradeoff_gmac.png").exists()
    # A second invocation finds everything done and runs nothing.
    again = bench(workspace, "grid", str(spec), "--device", "cpu", "--dry-run")
    assert again.returncode == 0
    assert again.stdout.count("(done)") == 2 and "would run" not in again.stdout
    assert executions(workspace, "e2e") == {run_id: 1 for run_id in results}


def test_killed_run_resumes_and_matches_an_uninterrupted_run(workspace):
    # 10 epochs without early stopping: the kill lands well before the end on any machine
    clean = write_spec(workspace, "clean", archs=("vgg",), epochs=10, patience=10)
    quiet = bench(workspace, "grid", str(clean), "--device", "cpu", "--no-report", "--quiet")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "  epoch " not in quiet.stdout and "\r" not in quiet.stdout + quiet.stderr  # no line per epoch
    assert "clean: 1 run in results/clean: " in quiet.stdout and "1 ok, 0 failed, 0 not run" in quiet.stdout
    killed = write_spec(workspace, "killed", archs=("vgg",), epochs=10, patience=10)
    proc = subprocess.Popen([sys.executable, "-m", "bench", "grid", str(killed), "--device", "cpu", "--no-report"],
                            cwd=workspace,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = workspace / "results" / "killed" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs.glob("*/checkpoint.pt")):
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.4))  # somewhere in the next epoch or two
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(runs.glob(f"*/{RESULT}")), "the run finished before the kill; make it longer"
    dry = bench(workspace, "grid", str(killed), "--device", "cpu", "--dry-run")
    assert "would resume" in dry.stdout
    rerun = bench(workspace, "grid", str(killed), "--device", "cpu", "--no-report")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    (resumed,) = results_of(workspace, "killed").values()
    # it resumed from the checkpoint, not from scratch (which, deterministic, would give the same figures)
    assert re.search(rf"resuming {resumed['run_id']} after epoch [1-9]", rerun.stdout), rerun.stdout
    assert executions(workspace, "killed") == {resumed["run_id"]: 2}
    (reference,) = results_of(workspace, "clean").values()
    assert resumed["status"] == "ok"
    assert resumed["run_id"] == reference["run_id"]  # same content, same id (different spec names)
    # Deterministic on the CPU: the resumed run took the very same path.
    assert resumed["metrics"]["roc_auc"] == reference["metrics"]["roc_auc"]
    assert [h["loss"] for h in resumed["training"]["history"]] == [h["loss"] for h in reference["training"]["history"]]


def test_two_concurrent_workers_run_each_run_exactly_once(workspace):
    spec = write_spec(workspace, "pair", extra="""
[[grid]]
arch = ["vgg"]
sample_rate = [16000]
n_mels = [16, 8]
hop_multiplier = [4]
log = ["dB"]
""")
    # two independent grid processes on one results folder, plus two local workers inside one of them
    a = subprocess.Popen([sys.executable, "-m", "bench", "grid", str(spec), "--device", "cpu", "--workers", "2",
                          "--no-report"], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    b = subprocess.Popen([sys.executable, "-m", "bench", "grid", str(spec), "--device", "cpu", "--no-report"],
                         cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    results = results_of(workspace, "pair")
    assert len(results) == 4 and all(r["status"] == "ok" for r in results.values()), out_a + out_b
    assert executions(workspace, "pair") == {run_id: 1 for run_id in results}
    # the workers share one pipe: a "run <id> (pid N)" line may follow another process's partial line
    started = re.findall(r"\brun (\S+) \(pid \d+\)", out_a + out_b)
    assert sorted(started) == sorted(results)
    # grid a's two workers share its terminal: each of their epoch lines says whose it is
    epochs_a = [line for line in out_a.splitlines() if re.search(r"\bepoch +\d+/", line)]
    assert epochs_a and all(re.match(r"\[w[01]\]   epoch", line) for line in epochs_a), out_a
    assert not re.search(r"\[w\d\]", out_b)  # a grid of one worker: lines as before
    # a worker that finds its peers still training the last runs has nothing left to do: that is success
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b


def start_training_grid(workspace: Path, name: str, workers: int, epochs: int = 40, options: tuple = ()):
    """`bench grid` of `workers` VGG runs (and `options`) in its own process group, returned once every
    run has checkpointed an epoch, with the runs' folder."""
    # enough epochs that the runs are still training when the signal comes (an epoch here takes ~50 ms),
    # and few enough steps that the fast path does not compile (COMPILE_MIN_STEPS)
    spec = write_spec(workspace, name, archs=("vgg",), epochs=epochs, patience=epochs,
                      extra="" if workers == 1 else """
[[grid]]
arch = ["vgg"]
sample_rate = [16000]
n_mels = [16]
hop_multiplier = [2]
log = ["log"]
""")
    # SIGINT as a terminal leaves it, whatever this process inherited (an ignored SIGINT is inherited)
    proc = subprocess.Popen([sys.executable, "-m", "bench", "grid", str(spec), "--device", "cpu", "--no-report",
                             "--workers", str(workers), *options], cwd=workspace, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = workspace / "results" / name / "runs"
    started = time.monotonic()
    while time.monotonic() < started + 120 and len(list(runs.glob("*/checkpoint.pt"))) < workers:
        time.sleep(0.05)  # every worker's run has checkpointed an epoch
    if proc.poll() is not None:
        out, err = proc.communicate()
        raise AssertionError(f"the grid ended (exit {proc.returncode}) before the signal, after "
                             f"{time.monotonic() - started:.1f} s:\n{out}\n{err}")
    return spec, proc, runs


@pytest.mark.parametrize("workers,how", [(1, "ctrl-c"), (2, "ctrl-c"), (2, "sigterm")])
def test_ctrl_c_is_one_line_saying_where_the_run_resumes(workspace, workers, how):
    # Ctrl-C in a terminal signals the whole process group; `kill`, `docker stop` the grid's process alone,
    # which passes it on to its workers
    spec, proc, runs = start_training_grid(workspace, f"{how}-{workers}", workers)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert group_ends(proc.pid), "a worker kept running after the grid stopped"
    assert proc.returncode == (130 if how == "ctrl-c" else 143), out + err  # 128 + SIGINT / SIGTERM
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    (line,) = err.strip().splitlines()
    assert line.startswith("bench grid: interrupted; rerun to resume "), line
    for folder in runs.iterdir():
        if not (folder / RESULT).exists():
            assert re.search(rf"{folder.name} from epoch \d+", line), line
        assert not lock_held(folder / "lock")  # released: the next grid takes the runs over at once
        epochs = [json.loads(h)["epoch"] for h in (folder / "history.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, len(epochs) + 1)) and epochs
    assert not list((workspace / "synth").glob(".*.lock"))
    # the next grid takes up every interrupted run where its checkpoint left it (resuming itself is
    # tested in test_user_errors and by the SIGKILL test above; training 40 epochs again here would not add to it)
    dry = bench(workspace, "grid", str(spec), "--device", "cpu", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"{how}-{workers}: {workers} run{'s' if workers > 1 else ''} in results/{how}-{workers}: " in dry.stdout
    for folder in runs.iterdir():
        if not (folder / RESULT).exists():
            assert re.search(rf"would resume +{folder.name}  \(interrupted: resumes from its checkpoint\)",
                             dry.stdout), dry.stdout
    # a dry run needs neither torch nor scikit-learn: it answers in a fraction of a training process's start
    code = ("import sys; from bench.cli import main; status = main(sys.argv[1:]); "
            "sys.exit(status or 'torch' in sys.modules or 'sklearn' in sys.modules)")
    light = subprocess.run([sys.executable, "-c", code, "grid", str(spec), "--dry-run"], cwd=workspace,
                           capture_output=True, text=True)
    assert light.returncode == 0, light.stdout + light.stderr


def test_workers_whose_grid_was_killed_stop_their_runs_and_release_them(workspace):
    # SIGKILL (the out-of-memory killer, kill -9) leaves the grid's process no time to stop its workers:
    # they notice that it is gone and stop as on Ctrl-C, instead of training on with nobody to report to
    _, proc, runs = start_training_grid(workspace, "orphans", 2, epochs=400)
    os.kill(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=60)  # the workers hold its output pipes: they have ended too
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the workers went on training after their grid was killed")
    assert group_ends(proc.pid), "the workers went on training after their grid was killed"
    for folder in runs.iterdir():
        assert not (folder / RESULT).exists() and not lock_held(folder / "lock")
        assert (folder / "checkpoint.pt").exists()  # the next grid resumes it


def test_nan_loss_is_recorded_as_failed_and_the_grid_goes_on(workspace, monkeypatch, capsys):
    import torch

    from bench.train import loop as train

    real_forward = train.Trainer._forward

    def poisoned(self, mel):
        logits = real_forward(self, mel)
        return logits * float("nan") if self.run.arch == "vgg" else logits

    monkeypatch.setattr(train.Trainer, "_forward", poisoned)
    monkeypatch.chdir(workspace)
    spec = write_spec(workspace, "nan", epochs=1)
    status = run_grid(str(spec), GridOptions(results=str(workspace / "results"), device="cpu"))
    assert status == 1  # not everything is ok
    results = {r["config"]["arch"]: r for r in results_of(workspace, "nan").values()}
    assert results["vgg"]["status"] == "failed"
    assert results["vgg"]["error"].startswith("NonFiniteLoss: training loss became nan at epoch 1")
    assert results["musicnn"]["status"] == "ok"
    out = capsys.readouterr().out
    assert "1 ok, 1 failed, 0 not run" in out
    runs = workspace / "results" / "nan" / "runs"
    failed = results["vgg"]["run_id"]
    # what a person reading the log needs: where the traceback is, the failure not counted as done, how to rerun it
    assert f"  FAILED {failed}: NonFiniteLoss: training loss became nan at epoch 1" in out
    assert f"(traceback: {runs / failed / 'error.txt'})" in out
    assert "progress: 1/2 runs done, 1 failed, elapsed " in out
    assert f"  each failed run's traceback: {runs}/<run_id>/error.txt; bench grid --retry-failed reruns them" in out
    assert f"  done {results['musicnn']['run_id']}: " in out and ", 1 epoch, " in out
    # without --retry-failed the failed run is left as it is; with it, it is run again (now with finite losses)
    monkeypatch.setattr(train.Trainer, "_forward", real_forward)
    assert main(["grid", str(spec), "--results", str(workspace / "results"), "--device", "cpu", "--dry-run"]) == 0
    assert "failed: NonFiniteLoss" in capsys.readouterr().out
    assert run_grid(str(spec), GridOptions(results=str(workspace / "results"), device="cpu")) == 1
    assert executions(workspace, "nan")[failed] == 1 and results_of(workspace, "nan")[failed]["status"] == "failed"
    assert run_grid(str(spec), GridOptions(results=str(workspace / "results"), device="cpu", retry_failed=True)) == 0
    retried = results_of(workspace, "nan")[failed]
    assert retried["status"] == "ok" and "error" not in retried and executions(workspace, "nan")[failed] == 2
    assert torch.isfinite(torch.tensor(retried["metrics"]["roc_auc"]))


def test_submitit_local_executor_runs_a_two_run_grid(workspace):
    spec = write_spec(workspace, "submitit", archs=("vgg",), epochs=1, extra="""
[[grid]]
arch = ["vgg"]
sample_rate = [16000]
n_mels = [16]
hop_multiplier = [2]
log = ["dB"]
""")
    proc = bench(workspace, "grid", str(spec), "--device", "cpu", "--launcher", "submitit-local", "--workers", "2",
                 "--time", "10", "--no-report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "via submitit (submitit-local)" in proc.stdout
    results = results_of(workspace, "submitit")
    assert len(results) == 2 and all(r["status"] == "ok" for r in results.values())
    assert executions(workspace, "submitit") == {run_id: 1 for run_id in results}
    assert list((workspace / "results" / "submitit" / "slurm").glob("*_log.out"))


def test_ctrl_c_under_the_submitit_local_executor_prints_no_traceback(workspace):
    # its controller processes printed a KeyboardInterrupt traceback each and killed their tasks a second
    # later; the tasks themselves get the terminal's Ctrl-C and stop their runs
    _, proc, runs = start_training_grid(workspace, "submitit-ctrl-c", 2,
                                        options=("--launcher", "submitit-local", "--time", "10"))
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert group_ends(proc.pid), "a job kept running after Ctrl-C"
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines() == ["bench grid: interrupted; rerun to continue (finished work is kept)"], err
    for folder in runs.iterdir():
        assert not lock_held(folder / "lock") and (folder / "checkpoint.pt").exists()


def test_submitit_local_jobs_stop_when_their_grid_is_killed(workspace):
    # The local executor's jobs are this machine's processes, started by the grid: a grid killed outright
    # (or one whose Ctrl-C came before a task had started) must not leave them training unreported
    _, proc, runs = start_training_grid(workspace, "submitit-orphans", 2, epochs=400,
                                        options=("--launcher", "submitit-local", "--time", "10"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not group_ends(proc.pid, seconds=60):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the jobs went on training after their grid was killed")
    for folder in runs.iterdir():
        assert not (folder / RESULT).exists() and not lock_held(folder / "lock")


def test_the_grids_summary_tells_apart_configurations_that_differ_only_in_width(tmp_path, capsys):
    """The demo trains VGG at 96x1 at its width (1/16) and at half of it: the two rows of its summary
    would read as the same configuration twice without a width column."""
    from bench.core import layout
    from bench.core.store import atomic_write_json
    from bench.run.grid import summarise
    from bench.spec import load_spec

    spec = load_spec("specs/demo.toml")
    reference = [r for r in spec.runs() if r.arch == "vgg" and r.seed == 0 and r.configuration.mel.n_mels == 96
                 and r.configuration.mel.hop_multiplier == 1 and r.configuration.mel.sample_rate == 16000
                 and r.configuration.mel.log == "log"]
    assert len(reference) == 2  # the spec's two widths
    for run, roc in zip(reference, (0.875, 0.75), strict=True):
        atomic_write_json(layout.run_dir(tmp_path, spec.name, run.run_id) / RESULT, {
            "run_id": run.run_id, "status": "ok", "config": {"arch": "vgg", "width": run.configuration.options.width,
                                                             "sample_rate": 16000, "n_mels": 96, "hop_multiplier": 1,
                                                             "log": "log", "seed": 0},
            "metrics": {"roc_auc": roc, "pr_auc": 0.5},
            "cost": {"gmac": 0.000168304 * 8 * roc, "epochs": 8, "train_seconds": 5.0}})
    assert summarise(spec, tmp_path, reference) == 0
    header, *rows = capsys.readouterr().out.splitlines()[:3]
    assert header.split()[:3] == ["arch", "width", "sample_rate"]
    assert sorted(float(row.split()[1]) for row in rows) == [1 / 32, 1 / 16]
    # GMAC to 4 significant figures: 0.001178128 and 0.001009824 (4 decimals made them 0.0012 and 0.0010)
    gmac = header.split().index("gmac")
    assert sorted(row.split()[gmac] for row in rows) == ["0.001010", "0.001178"]
    assert summarise(spec, tmp_path, reference[:1]) == 0  # one width: no column for it
    assert "width" not in capsys.readouterr().out.splitlines()[0]


def test_a_workers_log_line_is_one_write_so_that_workers_lines_do_not_interleave(monkeypatch):
    """Where stdout is unbuffered (PYTHONUNBUFFERED=1, `python -u`, common in containers and job scripts),
    print() wrote a line and its newline apart, and another worker's line landed between them."""
    from bench.run.runner import log_to_stdout

    writes = []
    monkeypatch.setattr(sys, "stdout", type("Unbuffered", (), {"write": writes.append, "flush": lambda self: None})())
    log_to_stdout("[w0] run vgg-16k-96mel-x1-log-s0-83f364e640 (pid 1535)")
    assert writes == ["[w0] run vgg-16k-96mel-x1-log-s0-83f364e640 (pid 1535)\n"]


def test_a_grid_whose_output_is_closed_trains_on_and_one_whose_reader_ended_stops_resumable(monkeypatch):
    """`bench grid >&-` (no stdout) ended in an AttributeError; `bench grid | head` recorded the run it was
    training as failed with a BrokenPipeError, and exited 0 with runs untrained."""
    from bench.core.errors import Interrupted
    from bench.run.runner import log_to_stdout

    monkeypatch.setattr(sys, "stdout", None)
    log_to_stdout("[w0] run vgg-16k-96mel-x1-log-s0-83f364e640 (pid 1535)")  # nowhere to go, and no error

    def gone(text):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", type("Piped", (), {"write": staticmethod(gone), "flush": lambda self: None})())
    with pytest.raises(Interrupted, match="its output was closed .*; rerun to continue"):
        log_to_stdout("  epoch 2")  # Ctrl-C's way out: the run keeps its checkpoint, not a failure
    assert sys.stdout is None


def test_a_worker_killed_by_sigbus_is_said_to_have_met_a_mapped_file_it_could_not_read(tmp_path):
    """Workers read the waveform cache through a memory map: an I/O error of its disk, or a file cut short,
    arrives as SIGBUS, not an error the worker could print. Here, a file truncated under its mapping."""
    from bench.run import grid

    code = ("import os, sys; import numpy as np; path = sys.argv[1]; np.zeros(1 << 20, np.uint8).tofile(path); "
            "mapped = np.memmap(path, mode='r'); os.truncate(path, 0); print(int(mapped[-1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "waveforms.f16")], capture_output=True)
    assert proc.returncode == -signal.SIGBUS
    assert grid._ended("bench-worker-0", proc.returncode) == (
        "bench-worker-0 was killed by SIGBUS: a memory-mapped file could not be read (its disk failed or is full, "
        "or the file was cut short); check the disk (`dmesg`)")


def test_a_killed_worker_is_named_with_its_signal_and_its_runs_said_left_only_when_they_are(tmp_path, capsys):
    """A local worker killed by SIGKILL (the out-of-memory killer's) prints nothing: the grid said it
    "stopped with an error (see above); their runs are left for the next grid" even where another
    worker had taken its run over and finished it."""
    from bench.run import grid
    from bench.spec import load_spec

    assert grid._ended("bench-worker-0", -signal.SIGKILL) == "bench-worker-0 was killed by SIGKILL"
    assert grid._ended("bench-worker-1", 1) == "bench-worker-1 stopped with exit status 1 (its error is above)"
    spec = load_spec(Path(__file__).parent / "data" / "demo6.toml")
    crashed = ["bench-worker-0 was killed by SIGKILL"]
    assert grid.summarise(spec, tmp_path, spec.runs()[:1], crashed) == 1  # its run has no result: not run
    assert ("bench-worker-0 was killed by SIGKILL: the runs not run are left for the next grid, which resumes them"
            in capsys.readouterr().out)
    assert grid.summarise(spec, tmp_path, [], crashed) == 0
    assert "bench-worker-0 was killed by SIGKILL: the other workers finished its runs" in capsys.readouterr().out


def test_no_more_local_workers_start_than_runs_are_left(tmp_path, monkeypatch):
    """`--workers 6` for the one run left started 6 processes, each importing torch; a typo's extra
    zeros (`--workers 99999999999999999999`) ended in a MemoryError building their list."""
    from bench.run import grid, prepare

    fake_cache = type("Cache", (), {"index_path": tmp_path / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, fake_cache, None))
    launched = []
    monkeypatch.setattr(grid, "_launch_local", lambda job, n, cuda: launched.append((n, job.workers_here)) or [])
    spec = Path(__file__).parent / "data" / "demo6.toml"
    for workers in (2, 6, 99999999999999999999):
        run_grid(str(spec), GridOptions(results=str(tmp_path / "results"), device="cpu", workers=workers))
    assert launched == [(2, 2), (6, 6), (6, 6)]  # demo6 has 6 runs
