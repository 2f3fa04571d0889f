"""Reliability: SIGKILLs at random moments, corrupt and planted files, concurrent workers, stale locks,
hostile audio and specs, malicious checkpoints, read-only folders and full disks.

The longer version of the kill and worker checks is `make stress` (tests/harness/stress.py).
"""

import errno
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from joblib.externals.loky.backend.context import _cpu_count_cgroup as REAL_CGROUP_COUNT

from bench.cli import main
from bench.data import cache as cache_module
from bench.data.audio import decode_clip
from bench.data.cache import WaveformCache
from bench.report.report import read_runs
from bench.run.grid import GridOptions, run_grid
from bench.run.runner import EXECUTIONS, LOCK, RESULT, RunLock, run_states
from bench.spec import load_spec
from bench.train.loop import BEST, CHECKPOINT, InvalidCheckpoint, read_checkpoint, resume_state, save_torch
from tests.harness import stress
from tests.harness.hostile import (
    DECODES,
    audio_outcome,
    bad_audio_corpus,
    hours_long_wav,
    malicious_checkpoint,
    spec_documents,
    spec_outcome,
)

from .conftest import MINIMAL_SPEC
from .data_fixtures import tone, write_mp3
from .test_cache import corpus_index
from .test_grid import executions, results_of, write_spec

# ------------------------------------------------------------------------------------------------
# a finished one-run grid, copied for each test that damages it


@pytest.fixture(scope="module")
def finished(tmp_path_factory, copy_tiny_synthetic):
    """A workspace with the synthetic data, its cache and one finished 3-epoch VGG run that kept its
    last checkpoint (a finished run's is removed once its result is written; the tests that damage a
    copy start from a run killed after its last checkpoint, whose result.json they write or damage)."""
    from bench.run import runner

    workspace = tmp_path_factory.mktemp("reliability")
    copy_tiny_synthetic(workspace / "synth")
    spec = write_spec(workspace, "one", archs=("vgg",), epochs=3, patience=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "remove_finished_checkpoint", lambda folder: None)
        assert grid(workspace, spec) == 0
    (result,) = results_of(workspace, "one").values()
    return workspace, spec, result


def grid(workspace, spec, results=None, **kwargs) -> int:
    """The grid in this process (one worker), on the workspace's cache."""
    return run_grid(str(spec), GridOptions(results=str(results or workspace / "results"),
                                           cache=str(workspace / "cache"), device="cpu", **kwargs))


@pytest.fixture
def damaged(finished, tmp_path):
    """A copy of the finished grid's results in tmp_path: (workspace, spec, run folder, reference result)."""
    workspace, spec, reference = finished
    shutil.copytree(workspace / "results" / "one", tmp_path / "results" / "one")
    return workspace, spec, tmp_path / "results" / "one" / "runs" / reference["run_id"], reference


def rerun(damaged, capsys) -> tuple[dict, str]:
    """Rerun the damaged grid; returns its (valid) result and what it printed."""
    workspace, spec, folder, _ = damaged
    capsys.readouterr()
    assert grid(workspace, spec, results=folder.parents[2]) == 0
    out = capsys.readouterr().out
    return json.loads((folder / RESULT).read_text()), out


def same_training(result: dict, reference: dict) -> bool:
    return (result["metrics"]["roc_auc"] == reference["metrics"]["roc_auc"]
            and result["metrics"]["per_tag"] == reference["metrics"]["per_tag"]
            and [h["loss"] for h in result["training"]["history"]]
            == [h["loss"] for h in reference["training"]["history"]])


# ------------------------------------------------------------------------------------------------
# crash safety


@pytest.mark.slow
def test_random_kills_lose_nothing_and_reproduce_the_reference(finished):
    workspace, _, _ = finished  # its synthetic data (the same 48 clips) is reused
    figures = stress.kill_trials(workspace, kills=2, rng=random.Random(3), plant_every=2, epochs=2, runs_per_seed=2,
                                 log=print)
    assert figures.kills == 2 and figures.trials >= 3
    assert figures.problems == []
    assert (figures.lost, figures.twice, figures.differing) == (0, 0, 0)
    assert figures.audit.accepted_invalid == 0  # no corrupt file read as valid
    assert figures.audit.invalid >= figures.planted  # a truncated file is seen as invalid, and refused


def test_truncated_result_is_set_aside_and_the_run_redone(damaged, capsys):
    workspace, spec, folder, reference = damaged
    text = (folder / RESULT).read_text()
    (folder / RESULT).write_text(text[: len(text) // 2])
    assert main(["grid", str(spec), "--results", str(folder.parents[2]), "--dry-run"]) == 0
    assert "would resume" in capsys.readouterr().out and not (folder / f"{RESULT}.rejected").exists()
    result, out = rerun(damaged, capsys)
    assert (folder / f"{RESULT}.rejected").read_text() == text[: len(text) // 2]
    assert "invalid (not valid JSON" in out
    assert same_training(result, reference)
    assert len((folder / EXECUTIONS).read_text().splitlines()) == 2


def test_a_damaged_result_of_a_finished_run_is_redone_from_scratch_and_leftover_checkpoints_go(damaged, capsys):
    # A finished run has no checkpoint (removed once its result is written): a damaged result.json means
    # training again, to the same result. A checkpoint left beside an ok result (its worker stopped before
    # removing it, or an earlier release) is removed by the next grid.
    workspace, spec, folder, reference = damaged
    assert (folder / CHECKPOINT).exists()  # the fixture's run kept it
    assert grid(workspace, spec, results=folder.parents[2]) == 0
    assert not (folder / CHECKPOINT).exists() and (folder / BEST).exists()
    text = (folder / RESULT).read_text()
    (folder / RESULT).write_text(text[: len(text) // 2])
    assert main(["grid", str(spec), "--results", str(folder.parents[2]), "--dry-run"]) == 0
    assert "would run" in capsys.readouterr().out
    result, out = rerun(damaged, capsys)
    assert "invalid (not valid JSON" in out and same_training(result, reference)
    assert not (folder / CHECKPOINT).exists()


def test_a_worker_that_meets_a_done_run_with_a_checkpoint_removes_it(damaged):
    # the run finished by another worker of the same grid, whose removal was cut short
    from bench.run import runner

    _, spec_path, folder, reference = damaged
    spec = load_spec(spec_path)
    (run,) = [r for r in spec.runs() if r.run_id == reference["run_id"]]
    assert (folder / CHECKPOINT).exists()
    assert runner._claim_and_execute(spec, folder, run, None, None, None, print) == "settled"
    assert not (folder / CHECKPOINT).exists() and (folder / RESULT).exists() and (folder / BEST).exists()


def test_an_all_done_grid_whose_run_folder_cannot_be_written_still_summarises(damaged, monkeypatch, capsys):
    # removing a done run's leftover checkpoint is tidying: a run folder that refuses it keeps it
    workspace, spec, folder, _ = damaged
    from pathlib import Path

    real_unlink = Path.unlink

    def read_only(self, missing_ok=False):
        if self.name == CHECKPOINT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    assert main(["grid", str(spec), "--results", str(folder.parents[2]), "--no-report"]) == 0
    assert "1 ok, 0 failed" in capsys.readouterr().out and (folder / CHECKPOINT).exists()


@pytest.mark.parametrize("edit", [
    lambda r: {**r, "run_id": "vgg-16k-32mel-x2-log-s0-0000000000"},  # another run's result
    lambda r: {k: v for k, v in r.items() if k != "metrics"},  # ok without metrics
    lambda r: {**r, "metrics": {**r["metrics"], "roc_auc": float("nan")}},  # not a probability
    lambda r: [r],  # not an object
])
def test_a_result_that_does_not_describe_the_run_is_not_a_done_marker(damaged, capsys, edit):
    _, _, folder, reference = damaged
    (folder / RESULT).write_text(json.dumps(edit(reference)))
    ok, not_ok = read_runs([folder])  # the report does not take it either
    assert ok == [] and len(not_ok) == 1
    result, _ = rerun(damaged, capsys)
    assert (folder / f"{RESULT}.rejected").exists()
    assert same_training(result, reference)


def test_corrupt_checkpoint_is_set_aside_and_the_run_restarts(damaged, capsys):
    _, _, folder, reference = damaged
    (folder / RESULT).unlink()
    data = (folder / CHECKPOINT).read_bytes()
    (folder / CHECKPOINT).write_bytes(data[: len(data) // 2])
    result, out = rerun(damaged, capsys)
    assert (folder / f"{CHECKPOINT}.rejected").exists() and "starts from scratch" in out
    assert same_training(result, reference)  # from scratch, deterministic on the CPU


def test_a_checkpoint_of_other_weights_is_set_aside_and_the_trainer_that_read_it_released(damaged, capsys,
                                                                                           monkeypatch):
    """A readable checkpoint whose weights do not fit the network (another shape) restarts the run, and the
    trainer that tried to load it is gone before the next is built: on a GPU its weights and optimiser state
    would otherwise sit beside the new ones."""
    import weakref

    from bench.train import loop

    _, _, folder, reference = damaged
    (folder / RESULT).unlink()
    state = read_checkpoint(folder / CHECKPOINT, reference["run_id"])
    name = next(k for k, v in state["model"].items() if v.ndim == 4)  # a convolution's weights
    state["model"][name] = torch.zeros(*state["model"][name].shape[:-1], 5)  # 3 x 3 filters -> 3 x 5
    save_torch(folder / CHECKPOINT, state)
    built, alive = [], []
    real_init = loop.Trainer.__init__

    def init(self, *args, **kwargs):
        alive.append([ref() is not None for ref in built])
        built.append(weakref.ref(self))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(loop.Trainer, "__init__", init)
    result, out = rerun(damaged, capsys)
    assert "does not fit this run" in out and (folder / f"{CHECKPOINT}.rejected").exists()
    assert alive == [[], [False]]
    assert same_training(result, reference)


def test_temp_files_of_a_killed_writer_are_removed_and_never_read(damaged, capsys):
    _, _, folder, reference = damaged
    (folder / RESULT).unlink()
    (folder / f".{RESULT}.k1ll3d.tmp").write_text('{"status": "ok", "run_id": "')
    (folder / f".{CHECKPOINT}.k1ll3d.tmp").write_bytes(b"PK\x03\x04 torn")
    result, _ = rerun(damaged, capsys)
    assert not list(folder.glob(".*.tmp"))
    assert same_training(result, reference)


def test_malicious_checkpoint_is_refused_and_the_run_restarts(damaged, capsys, tmp_path):
    _, _, folder, reference = damaged
    (folder / RESULT).unlink()
    marker = tmp_path / "code-was-run"
    malicious_checkpoint(folder / CHECKPOINT, marker)
    with pytest.raises(InvalidCheckpoint, match="unreadable"):
        read_checkpoint(folder / CHECKPOINT, reference["run_id"])
    result, out = rerun(damaged, capsys)
    assert not marker.exists()  # weights_only=True: the payload never ran
    assert f"{folder / CHECKPOINT}: unreadable" in out and (folder / f"{CHECKPOINT}.rejected").exists()
    assert same_training(result, reference)


def fake_checkpoint(folder, epoch: int, best_epoch: int) -> dict:
    model = {"w": torch.full((2,), float(epoch))}
    state = {"epoch": epoch, "model": model, "optimizer": {}, "scheduler": {}, "scaler": {},
             "best": {"roc_auc": 0.5, "epoch": best_epoch}, "history": [{}] * epoch, "torch_rng": torch.get_rng_state(),
             "run_id": "r"}
    save_torch(folder / CHECKPOINT, state)
    return state


def test_kill_between_checkpoint_and_best_pt_is_repaired_from_the_checkpoint(tmp_path):
    # epoch 3 was the best; the checkpoint was written, the kill came before best.pt (still epoch 2's)
    fake_checkpoint(tmp_path, epoch=3, best_epoch=3)
    save_torch(tmp_path / BEST, {"epoch": 2, "model": {"w": torch.zeros(2)}})
    assert resume_state(tmp_path, "r", print)["epoch"] == 3
    best = torch.load(tmp_path / BEST, weights_only=True)
    assert best["epoch"] == 3 and best["model"]["w"].tolist() == [3.0, 3.0]


def test_lost_best_weights_restart_the_run(tmp_path):
    # the best epoch (2) is older than the checkpoint (3) and best.pt does not hold it: nothing to resume
    fake_checkpoint(tmp_path, epoch=3, best_epoch=2)
    (tmp_path / BEST).write_bytes(b"not a zip")
    assert resume_state(tmp_path, "r", print) is None
    assert (tmp_path / f"{CHECKPOINT}.rejected").exists() and (tmp_path / f"{BEST}.rejected").exists()
    assert not (tmp_path / CHECKPOINT).exists()


def test_a_checkpoint_whose_bytes_the_disk_changed_is_set_aside(tmp_path):
    """torch's zip reader does not check the archive's CRC-32s: a checkpoint with one weight's bytes
    changed (its size and structure intact, as a flipped bit on a disk leaves it) loaded, and the run
    resumed from weights it never saved and ended "ok" with other results."""
    state = fake_checkpoint(tmp_path, epoch=1, best_epoch=0)
    state["model"]["w"] = torch.full((1000,), 1.0)
    save_torch(tmp_path / CHECKPOINT, state)
    data = bytearray((tmp_path / CHECKPOINT).read_bytes())
    at = data.index(bytes(np.full(1000, 1.0, dtype="<f4").tobytes())) + 2001
    data[at] ^= 0x01  # one bit of the 501st weight's mantissa
    (tmp_path / CHECKPOINT).write_bytes(bytes(data))
    messages = []
    assert resume_state(tmp_path, "r", messages.append) is None
    assert "does not match its CRC-32" in messages[0] and "the run starts from scratch" in messages[0]
    assert (tmp_path / f"{CHECKPOINT}.rejected").exists()


def test_a_checkpoint_saved_without_crcs_loads(tmp_path):
    """torch writes a CRC of 0 in every entry where its `compute_crc32` setting is off, and loads such
    files: they are not damaged, and a run resumes from one."""
    from torch.utils.serialization import config

    config.save.compute_crc32 = False
    try:
        fake_checkpoint(tmp_path, epoch=1, best_epoch=0)
    finally:
        config.save.compute_crc32 = True
    assert resume_state(tmp_path, "r", print)["epoch"] == 1


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    fake_checkpoint(tmp_path, epoch=1, best_epoch=0)
    messages = []
    assert resume_state(tmp_path, "another", messages.append) is None
    assert "belongs to run 'r'" in messages[0]


def small_cache(tmp_path, n=6):
    audio = tmp_path / "audio"
    for i in range(n):
        write_mp3(audio / f"{i:02d}.mp3", tone(2.0, freq=200 + 30 * i, seed=i))
    return WaveformCache(tmp_path / "cache", corpus_index(audio), clip_seconds=2.0)


@pytest.mark.parametrize("damage", ["manifest", "waveforms", "progress", "index"])
def test_a_damaged_cache_is_never_opened_and_is_rebuilt(tmp_path, damage):
    cache = small_cache(tmp_path)
    cache.prepare([16000], workers=1)
    good = np.array(cache.open(16000).waveforms)
    folder = cache.rate_dir(16000)
    if damage == "manifest":
        os.truncate(folder / "manifest.json", 40)
    elif damage == "waveforms":
        os.truncate(folder / "waveforms.f16", 1000)
    elif damage == "progress":  # a torn progress file of an unfinished cache
        (folder / "manifest.json").unlink()
        (folder / "progress.npy").write_bytes(b"\x93NUMPY torn")
    else:  # the index that workers reopen the cache from
        os.truncate(cache.index_path, 50)
        cache.prepare([16000], workers=1)
        assert WaveformCache.from_index(cache.index_path).index == cache.index
        return
    assert not cache.is_complete(16000)
    with pytest.raises(FileNotFoundError, match="not prepared"):
        cache.open(16000)
    report = cache.prepare([16000], workers=1)[0]
    assert report.ok == 6 and not report.already_done
    assert (folder / "manifest.json.rejected").exists() == (damage != "progress")
    np.testing.assert_array_equal(cache.open(16000).waveforms, good)


COUNT_DECODES = """
import os
if os.environ.get("COUNT_DECODES"):  # in every process, the decoding ones the cache starts too
    import bench.data.cache as cache
    real = cache.decode_clip
    def counted(path, *a, **k):
        with open(os.environ["COUNT_DECODES"], "a") as log:
            log.write(str(path) + "\\n")
        return real(path, *a, **k)
    cache.decode_clip = counted
"""
"""A sitecustomize module that logs every file decoded, by whichever process decodes it."""

PREPARE = """
import sys
import bench.data.cache as cache
from tests.test_cache import corpus_index
cache.WaveformCache(sys.argv[2], corpus_index(sys.argv[1]), clip_seconds=2.0).prepare([16000], workers=1)
"""


def test_concurrent_preparers_decode_each_file_once(tmp_path):
    cache = small_cache(tmp_path)
    log = tmp_path / "decoded.txt"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(COUNT_DECODES)
    args = [sys.executable, "-c", PREPARE, str(tmp_path / "audio"), str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{os.getcwd()}", "COUNT_DECODES": str(log)}
    procs = [subprocess.Popen(args, cwd=os.getcwd(), env=env) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    decoded = log.read_text().splitlines()
    assert sorted(decoded) == sorted(c.path for c in cache.index.clips)  # each file once, by one of them
    assert cache.is_complete(16000)


# ------------------------------------------------------------------------------------------------
# concurrency


@pytest.mark.slow
def test_concurrent_workers_some_killed_run_each_run_once(finished):
    workspace, _, _ = finished
    figures = stress.concurrent_workers(workspace, workers=3, worker_kills=1, rng=random.Random(0), window=1.0,
                                        epochs=2, log=print)
    assert figures.problems == []
    assert (figures.killed, figures.runs, figures.lost, figures.twice) == (1, 6, 0, 0)
    assert figures.reclaimed == figures.stale_locks


HOLD_LOCK = """
import sys, time
from pathlib import Path
from bench.run.runner import RunLock
assert RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_the_lock_of_a_killed_worker_is_reclaimed(finished, tmp_path):
    workspace, spec_path, reference = finished
    spec = load_spec(spec_path)
    folder = tmp_path / "results" / "one" / "runs" / reference["run_id"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert RunLock(folder).held_by_other()
    assert [s.action for s in run_states(spec, tmp_path / "results", spec.runs())] == ["skip-running"]
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((folder / LOCK).read_text())["pid"] == holder.pid  # the dead worker's claim is still there
    assert not RunLock(folder).held_by_other()
    assert [s.action for s in run_states(spec, tmp_path / "results", spec.runs())] == ["run"]
    lock = RunLock(folder)
    assert lock.acquire()
    lock.release()


def test_a_failed_run_retried_is_said_and_made_to_start_from_scratch(monkeypatch, one_run):
    """`--retry-failed` deletes a failed run's checkpoint (a NaN at epoch 5 would come back from it):
    the header and --dry-run must say so, not "resumes from its checkpoint"."""
    from bench.run import runner
    from bench.train import loop

    spec, run, folder = one_run
    seen = []

    def train_run(run, cache, run_dir, *args, **kwargs):
        seen.append((run_dir / CHECKPOINT).exists())
        (run_dir / CHECKPOINT).write_bytes(b"the state of epoch 5")
        raise FloatingPointError("training loss became nan at epoch 5")

    monkeypatch.setattr(loop, "train_run", train_run)
    runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), None, lambda *_: None)
    assert json.loads((folder / RESULT).read_text())["status"] == "failed" and (folder / CHECKPOINT).exists()
    (state,) = run_states(spec, folder.parents[2], [run], retry_failed=True)
    assert (state.action, state.reason) == ("run", "retry of a failed run, from scratch")
    runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), "a1b2",
                              lambda *_: None)
    assert seen == [False, False]  # the retry did start from scratch


def test_dry_run_writes_nothing(finished, tmp_path):
    _, spec, _ = finished
    results = tmp_path / "results"
    assert main(["grid", str(spec), "--results", str(results), "--dry-run"]) == 0
    assert not results.exists()


# ------------------------------------------------------------------------------------------------
# hostile input


def test_bad_audio_is_skipped_with_a_reason_and_odd_audio_decodes(tmp_path):
    corpus = bad_audio_corpus(tmp_path / "audio")
    assert len(corpus) >= 15
    problems = {case.kind: audio_outcome(case) for case in corpus}
    assert {kind: p for kind, p in problems.items() if p} == {}
    # and together, as a dataset: the cache lists every skipped file with its reason
    figures = stress.bad_audio(tmp_path)
    assert figures.problems == [] and figures.handled == figures.tried == len(corpus)
    skipped = sum(case.expect != DECODES for case in corpus)
    assert skipped >= 9


def test_odd_formats_decode_to_the_expected_signal(tmp_path):
    corpus = {case.kind: case.path for case in bad_audio_corpus(tmp_path)}
    t = np.arange(3 * 16000) / 16000
    stereo = decode_clip(str(corpus["stereo WAV"]), (16000,), 2.0).clips[16000]
    # centre 2 s of 3 s, both channels averaged: 0.15 sin(300 Hz) + 0.15 sin(500 Hz) + noise
    expected = 0.15 * np.sin(2 * np.pi * 300 * t) + 0.15 * np.sin(2 * np.pi * 500 * t)
    assert np.abs(stereo - expected[8000:40000]).max() < 0.1
    u8 = decode_clip(str(corpus["8-bit WAV"]), (16000,), 2.0).clips[16000]
    assert np.abs(u8 - 0.3 * np.sin(2 * np.pi * 440 * t[8000:40000])).max() < 0.15  # 8-bit steps + noise
    loud = decode_clip(str(corpus["float WAV"]), (16000,), 2.0).clips[16000]
    assert loud.max() > 1.4  # float samples beyond full scale are kept, not clipped


def test_an_hours_long_file_costs_one_clip(tmp_path):
    tone_at_centre = hours_long_wav(tmp_path / "long.wav", hours=3.0, sr=44100)
    assert (tmp_path / "long.wav").stat().st_size > 3 * 3600 * 44100 * 4  # 3 h of 16-bit stereo, on paper
    tracemalloc.start()
    clip = decode_clip(str(tmp_path / "long.wav"), (44100,), 4.0).clips[44100]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6  # 3 h of float32 stereo would be 3.8 GB
    centre = tone_at_centre[tone_at_centre.size // 2 - 88200: tone_at_centre.size // 2 + 88200]
    assert np.abs(clip - centre).max() < 1e-3  # 16-bit quantisation


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=spec_documents())
def test_random_specs_give_a_plan_or_one_line_and_exit_2(tmp_path, document):
    path = tmp_path / "random.toml"
    path.write_bytes(document)
    assert spec_outcome(path) is None


@pytest.mark.parametrize("edit,field", [
    (lambda s: s.replace("sample_rate = [12000]", "sample_rate = [1000000000]"), "grid[0].sample_rate[0]"),
    (lambda s: s.replace("hop_multiplier = [1]", "hop_multiplier = [1000000]"), "grid[0].hop_multiplier[0]"),
    (lambda s: s.replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = inf'), "dataset.clip_seconds"),
    (lambda s: s.replace('name = "synthetic"', 'name = "synthetic"\nclip_seconds = 0.01'), "dataset.clip_seconds"),
    (lambda s: s.replace("seeds = [0]", "seeds = [-1]"), "seeds[0]"),
    (lambda s: s.replace("seeds = [0]", "seeds = [18446744073709551615]"), "seeds[0]"),
    (lambda s: s + "\n[protocol]\nmax_epochs = 9223372036854775807\n", "protocol.max_epochs"),
    (lambda s: s + "\n[protocol]\nlr = nan\n", "protocol.lr"),
    (lambda s: s + "\n[arch.vgg]\nwidth = 1e6\n", "arch.vgg.width"),
])
def test_out_of_range_numbers_exit_2_naming_the_field(capsys, write_spec, edit, field):
    path = write_spec(edit(MINIMAL_SPEC))
    assert main(["plan", str(path), "--no-fvcore"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert f"{path}: {field}: " in err


# ------------------------------------------------------------------------------------------------
# resource faults


def no_partial_files(root) -> list:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_results_folder_exits_2(finished, tmp_path, capsys):
    workspace, spec, _ = finished
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        status = main(["grid", str(spec), "--results", str(results), "--cache", str(workspace / "cache"),
                       "--device", "cpu", "--no-report"])
    finally:
        results.chmod(0o755)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "cannot write" in err and "Permission denied" in err and "Traceback" not in err
    assert list(results.iterdir()) == []


def test_read_only_file_system_exits_2(finished, tmp_path, capsys, monkeypatch):
    workspace, spec, _ = finished
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    status = main(["grid", str(spec), "--results", str(tmp_path / "results"), "--cache", str(workspace / "cache"),
                   "--device", "cpu", "--no-report"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"--results {tmp_path / 'results'}: cannot create files in {tmp_path} (Read-only file system)" in err
    assert not (tmp_path / "results").exists()  # refused before anything was created


def test_a_whole_synthetic_dataset_that_cannot_be_written_is_read(finished, tmp_path, capsys, monkeypatch):
    """A read-only copy of the generated data, or another user's: bench grid and bench prepare had refused it
    ("cannot create files in ..."), and a dry run said the grid would stop, though nothing is generated where
    the dataset is whole (and bench dataset said the grid could run)."""
    import tempfile

    workspace, spec, _ = finished
    data, real = (workspace / "synth").resolve(), tempfile.mkstemp

    def read_only_data(*args, dir=None, **kwargs):
        if dir is not None and (os.path.realpath(dir) + os.sep).startswith(f"{data}{os.sep}"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_data)
    cache = ["--cache", str(workspace / "cache")]
    shutil.copytree(workspace / "results", tmp_path / "done")  # the grid removes the shared run's checkpoint
    assert main(["grid", str(spec), "--results", str(tmp_path / "done"), *cache, "--device", "cpu",
                 "--no-report"]) == 0
    assert main(["prepare", str(spec), *cache]) == 0
    assert main(["grid", str(spec), "--results", str(tmp_path / "fresh"), *cache, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would run" in out and "would stop" not in out, out
    (data / "synthetic.json").rename(data / "synthetic.json.aside")  # not whole: generated there, so refused
    try:
        assert main(["grid", str(spec), "--results", str(tmp_path / "fresh"), *cache, "--device", "cpu"]) == 2
    finally:
        (data / "synthetic.json.aside").rename(data / "synthetic.json")
    assert f"cannot create files in {data} (Read-only file system)" in capsys.readouterr().err


def test_a_whole_waveform_cache_that_cannot_be_written_trains_grids(finished, tmp_path, capsys, monkeypatch):
    """A cache prepared once and shared on read-only storage (a lab's, another user's): bench grid and bench
    prepare had refused it ("cannot create files in ..."), though a complete cache is only read."""
    import tempfile

    workspace, spec, _ = finished
    cache, empty, real = (workspace / "cache").resolve(), (tmp_path / "empty").resolve(), tempfile.mkstemp
    empty.mkdir()

    def read_only_caches(*args, dir=None, **kwargs):
        if dir is not None and any((os.path.realpath(dir) + os.sep).startswith(f"{root}{os.sep}")
                                   for root in (cache, empty)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_caches)
    assert main(["prepare", str(spec), "--cache", str(cache)]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert main(["grid", str(spec), "--results", str(tmp_path / "fresh"), "--cache", str(cache), "--device", "cpu",
                 "--no-report"]) == 0
    (result,) = (tmp_path / "fresh" / "one" / "runs").glob(f"*/{RESULT}")
    assert json.loads(result.read_text())["status"] == "ok"
    for command in (["prepare", str(spec)], ["grid", str(spec), "--results", str(tmp_path / "r"), "--device", "cpu"]):
        assert main([*command, "--cache", str(empty)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert err.strip().endswith(f"cannot create files in {empty} (Read-only file system); the spec's waveform "
                                    "cache there is not complete and cannot be prepared (give another --cache)"), err
    assert list(empty.iterdir()) == [] and not (tmp_path / "r" / "one" / "runs").exists()


def grid_meeting_a_fault(damaged, capsys, monkeypatch, code: int) -> tuple[int, str]:
    """(exit status, stderr) of the damaged grid, its run retrained from scratch, whose writes fail with
    errno `code` once config.json, history.jsonl and the first epoch's files are written."""
    workspace, spec, folder, _ = damaged
    for name in (RESULT, CHECKPOINT, BEST):
        (folder / name).unlink()
    real_fsync, calls = os.fsync, []

    def fails(fd):
        calls.append(fd)
        if len(calls) > 6:
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fails)
    status = main(["grid", str(spec), "--results", str(folder.parents[2]), "--cache", str(workspace / "cache"),
                   "--device", "cpu", "--no-report"])
    monkeypatch.setattr(os, "fsync", real_fsync)
    return status, capsys.readouterr().err


def test_full_disk_mid_run_exits_2_leaves_nothing_half_written_and_resumes(damaged, capsys, monkeypatch):
    workspace, spec, folder, reference = damaged
    status, err = grid_meeting_a_fault(damaged, capsys, monkeypatch, errno.ENOSPC)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and str(folder) in err and "free some space" in err
    assert not (folder / RESULT).exists() and no_partial_files(folder) == []
    assert read_checkpoint(folder / CHECKPOINT, reference["run_id"])["epoch"] == 1  # the last complete write
    result, _ = rerun(damaged, capsys)  # space is back: it resumes
    assert same_training(result, reference)
    assert executions(workspace, "one") == {reference["run_id"]: 1}  # the original grid was not touched


@pytest.mark.parametrize("name", ["history.jsonl", "best.pt"])
def test_a_folder_where_a_runs_file_belongs_stops_the_grid_and_is_not_the_runs_failure(damaged, capsys, name):
    """A folder named like a file the run writes while it trains: the grid stops with the CLI's one line
    ("move it aside, then rerun"), and the run, not recorded failed, trains when rerun as told (it was
    recorded failed, and the rerun skipped it)."""
    workspace, spec, folder, reference = damaged
    for stale in (RESULT, CHECKPOINT, BEST, "history.jsonl"):
        (folder / stale).unlink(missing_ok=True)
    (folder / name).mkdir()
    status = main(["grid", str(spec), "--results", str(folder.parents[2]), "--cache", str(workspace / "cache"),
                   "--device", "cpu", "--no-report"])
    err = capsys.readouterr().err
    assert status == 2 and err.strip().endswith(f"{folder / name}: a folder where a file belongs; move it aside, "
                                                 "then rerun"), err
    assert not (folder / RESULT).exists()
    (folder / name).rmdir()
    result, _ = rerun(damaged, capsys)
    assert result["status"] == "ok" and same_training(result, reference)


def allocation_refused(cache, monkeypatch, code: int) -> OSError:
    """The error preparing `cache` raises when reserving its waveform file fails with errno `code`."""
    def refuse(fd, size):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(cache_module, "reserve_blocks", refuse)
    with pytest.raises(OSError) as info:
        cache.prepare([16000], workers=1)
    return info.value


def test_full_disk_while_preparing_the_cache_names_the_file_and_leaves_no_partial_cache(tmp_path, monkeypatch):
    """What the CLI turns into its one line (`resource_message`, exit 2): the error, with the file."""
    from bench.cli import resource_message

    cache = small_cache(tmp_path)
    error = allocation_refused(cache, monkeypatch, errno.ENOSPC)
    assert error.errno == errno.ENOSPC and "waveforms.f16" in error.filename
    message = resource_message(error)
    assert message.startswith("cannot write ") and "waveforms.f16: No space left on device" in message
    assert "\n" not in message
    assert not (cache.rate_dir(16000) / "waveforms.f16").exists()
    assert not cache.is_complete(16000)


def test_a_file_system_out_of_inodes_names_the_file_to_be_written_not_its_temp_file(tmp_path, monkeypatch):
    """No inode left (a tmpfs's nr_inodes, a small-file-laden scratch disk): the temp file beside a result
    cannot be made, and mkstemp's error names the random temp name it tried, which never existed
    (`.checkpoint.pt.uem5al2_.tmp`). The file it was to become is named."""
    from bench.cli import resource_message
    from bench.core.store import TEMP_SUFFIX, atomic_write_bytes

    opened = os.open

    def no_inode(path, flags, *args, **kwargs):
        if os.fsdecode(path).endswith(TEMP_SUFFIX):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return opened(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_inode)
    target = tmp_path / "runs" / "vgg" / CHECKPOINT
    with pytest.raises(OSError) as raised:
        atomic_write_bytes(target, b"weights")
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    assert resource_message(raised.value).startswith(f"cannot write {target}: No space left on device")
    assert list(target.parent.iterdir()) == []


def test_a_lock_file_left_by_a_killed_process_does_not_block_preparing(tmp_path):
    cache = small_cache(tmp_path, n=2)
    cache.dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               "f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
                               "print('held', flush=True); time.sleep(600)", str(cache.dir / "prepare.lock")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    assert cache.prepare([16000], workers=1)[0].ok == 2
    assert time.monotonic() - started < 60


# --- faults of the machine, not of the run -------------------------------------------------------------


class InlineContext:
    """multiprocessing's spawn context, run in this process: `start()` runs the target at once; as in a
    real process, an exception it raises is printed and becomes exit code 1."""

    class Process:
        def __init__(self, target, args, name):
            self.target, self.args, self.name, self.exitcode = target, args, name, None

        def start(self):
            try:
                self.target(*self.args)
                self.exitcode = 0
            except Exception:  # noqa: BLE001 - what multiprocessing's bootstrap does
                import traceback

                traceback.print_exc()
                self.exitcode = 1

        def join(self, timeout=None):
            pass

        def is_alive(self):
            return False

    class SimpleQueue(list):
        put = list.append

        def get(self):
            return self.pop(0)

        def empty(self):
            return not self


def test_a_full_disk_under_several_workers_is_raised_once_as_the_clis_one_line(monkeypatch, tmp_path):
    """With one worker a full disk is the CLI's one line (exit 2); with several it was a traceback per
    spawned worker and exit 1. Each worker now hands the error back and the grid raises it once."""
    from bench.run import grid

    def full(job):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / f"w{job.worker}" / CHECKPOINT))

    monkeypatch.setattr(grid, "worker_entry", full)
    monkeypatch.setattr(grid.multiprocessing, "get_context", lambda method: InlineContext)
    job = grid.WorkerJob("spec.toml", str(tmp_path), "index.json", "cpu")
    with pytest.raises(OSError) as raised:
        grid._launch_local(job, 2, cuda=False)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename.endswith(f"w0/{CHECKPOINT}")
    from bench.cli import resource_message

    assert resource_message(raised.value).startswith(f"cannot write {tmp_path}/runs/w0/{CHECKPOINT}: No space left")


def test_a_misplaced_file_under_several_workers_is_raised_once_as_the_clis_one_line(monkeypatch, tmp_path):
    """A file where a run's folder belongs, met by each of 2 workers: a traceback per worker and exit 1,
    where one worker gave the CLI's one line."""
    from bench.cli import misplaced_message
    from bench.run import grid

    (tmp_path / "runs").write_text("a file")

    def misplaced(job):
        (tmp_path / "runs" / f"w{job.worker}").mkdir()  # the OS's own error for it

    monkeypatch.setattr(grid, "worker_entry", misplaced)
    monkeypatch.setattr(grid.multiprocessing, "get_context", lambda method: InlineContext)
    job = grid.WorkerJob("spec.toml", str(tmp_path), "index.json", "cpu")
    with pytest.raises(OSError) as raised:
        grid._launch_local(job, 2, cuda=False)
    assert misplaced_message(raised.value) == (f"{tmp_path}/runs/w0: a file stands where a folder belongs on this "
                                               "path; move it aside, then rerun")



def test_local_cpu_workers_share_the_cpus_this_process_may_use(monkeypatch, tmp_path):
    """Torch threads of local CPU workers: the CPUs in this process's affinity mask (a container's cpuset,
    taskset, a Slurm allocation) shared out, not every core of the machine: 2 workers on 4 of 64 cores
    get 2 threads each, not 32 (16 times more threads than cores, spinning against each other)."""
    from bench.run import grid

    threads = []
    monkeypatch.setattr(grid, "worker_entry", lambda job: threads.append(job.threads) or [])
    monkeypatch.setattr(grid.multiprocessing, "get_context", lambda method: InlineContext)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {8, 9, 10, 11}, raising=False)  # not on macOS
    grid._launch_local(grid.WorkerJob("spec.toml", str(tmp_path), "index.json", "cpu"), 2, cuda=False)
    assert threads == [2, 2]

def test_a_containers_cpu_quota_bounds_the_cpus_as_its_affinity_does(monkeypatch, tmp_path):
    """`docker run --cpus 8` (or a Kubernetes CPU limit) on a 64-core machine: the affinity mask still
    lists all 64 CPUs; the limit is the container's cgroup v2 `cpu.max`, "800000 100000" (8 CPUs'
    worth of every 100 ms period, as the kernel's cgroup-v2 documentation writes $MAX $PERIOD). Two
    local workers get 4 threads each, not 32; a GPU run with 2 runs per GPU on one GPU, 4 threads
    and 4 compile processes, not 32."""
    import builtins
    import io

    from joblib.externals.loky.backend import context

    from bench.core.machine import usable_cpus

    monkeypatch.setattr(context, "_cpu_count_cgroup", REAL_CGROUP_COUNT)  # the one conftest sets aside
    from bench.run import grid
    from bench.train import fastpath

    real_open, real_exists = builtins.open, os.path.exists
    cpu_max = "/sys/fs/cgroup/cpu.max"
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO("800000 100000\n") if path == cpu_max
                        else real_open(path, *a, **k))
    monkeypatch.setattr(os.path, "exists", lambda path: path == cpu_max or real_exists(path))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)  # not on macOS
    assert usable_cpus() == 8
    threads = []
    monkeypatch.setattr(grid, "worker_entry", lambda job: threads.append(job.threads) or [])
    monkeypatch.setattr(grid.multiprocessing, "get_context", lambda method: InlineContext)
    grid._launch_local(grid.WorkerJob("spec.toml", str(tmp_path), "index.json", "cpu"), 2, cuda=False)
    assert threads == [4, 4]
    # one worker, in the grid's process (the default): it had torch's default, every core of the machine
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    grid._launch_local(grid.WorkerJob("spec.toml", str(tmp_path), "index.json", "cpu"), 1, cuda=False)
    assert threads == [4, 4, 8]
    monkeypatch.setattr(fastpath, "_gpus_here", 1)
    monkeypatch.setattr(fastpath, "_runs_per_gpu", 2)
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "")  # recorded, so that what it sets is undone
    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS")
    monkeypatch.setattr(fastpath.torch, "set_num_threads", lambda n: threads.append(n))
    import torch._inductor.config as inductor_config

    # restored after the test, as the variable is, by the config's own patch: monkeypatch's undo deletes
    # the setting, and every later compile in the process then fails on reading it
    with inductor_config.patch(compile_threads=inductor_config.compile_threads):
        assert fastpath.limit_worker_threads() == 4 and threads[-1] == 4
        assert inductor_config.compile_threads == 4
    assert os.environ["TORCHINDUCTOR_COMPILE_THREADS"] == "4"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO, errno.ESTALE, errno.EMFILE, errno.ENOMEM, "allocator"])
def test_a_checkpoint_in_a_forbidden_folder_or_on_a_failing_file_system_is_not_set_aside(monkeypatch, tmp_path,
                                                                                           code):
    """Permission denied, a failing disk or network file system, too many open files or too little memory
    say nothing about the file: resuming raises the error (the grid stops, exit 2) and the checkpoint
    stays. Any other read error (torch reports a truncated archive as OSError EINVAL) sets the file
    aside, kept and numbered, as before."""
    from bench.train import checkpoint

    (tmp_path / CHECKPOINT).write_bytes(b"forty epochs of work")

    def refused(path):
        if code == "allocator":  # what torch's CPU allocator raises when memory runs out
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 208000000 bytes. Error code 12 (Cannot allocate memory)")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoint, "load_torch", refused)
    with pytest.raises(OSError) as raised:
        resume_state(tmp_path, "run", log=lambda *_: None)
    assert raised.value.errno == (errno.ENOMEM if code == "allocator" else code)
    assert (tmp_path / CHECKPOINT).exists() and not list(tmp_path.glob("*.rejected*"))
    monkeypatch.undo()
    save_torch(tmp_path / CHECKPOINT, {"epoch": 1, "model": {"w": torch.zeros(20_000)}})  # 80 kB, as the demo's
    (tmp_path / CHECKPOINT).write_bytes((tmp_path / CHECKPOINT).read_bytes()[:40_000])  # torch: OSError EINVAL
    assert resume_state(tmp_path, "run", log=lambda *_: None) is None
    assert (tmp_path / f"{CHECKPOINT}.rejected").exists()


def test_a_second_rejected_file_does_not_replace_the_first(tmp_path):
    from bench.core.store import reject

    for text in ("40 epochs", "1 epoch", "2 epochs"):
        (tmp_path / CHECKPOINT).write_text(text)
        reject(tmp_path / CHECKPOINT)
    assert (tmp_path / f"{CHECKPOINT}.rejected").read_text() == "40 epochs"
    assert (tmp_path / f"{CHECKPOINT}.rejected.2").read_text() == "1 epoch"
    assert (tmp_path / f"{CHECKPOINT}.rejected.3").read_text() == "2 epochs"  # the second is not replaced either


def test_a_failed_append_names_its_file():
    """A write() error carries no file name: "cannot write No space left on device" named nothing."""
    from bench.core.store import append_line

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OSError) as raised:
        append_line("/dev/full", "x" * 100_000 + "\n")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == "/dev/full"


def test_json_outputs_hold_no_nan(tmp_path):
    """Python writes NaN into JSON by default; JavaScript's JSON.parse and most strict readers refuse the
    file. A missing number is null."""
    from bench.core.store import atomic_write_json

    atomic_write_json(tmp_path / "x.json", {"roc_auc_mean": float("nan"), "folds": [{"roc_auc": float("inf")}],
                                            "n": 3})

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=refuse) == {
        "roc_auc_mean": None, "folds": [{"roc_auc": None}], "n": 3}


def test_a_folder_that_cannot_be_fsynced_does_not_stop_a_write(monkeypatch, tmp_path):
    """Some file systems refuse fsync on a directory (EINVAL); the file itself was written and renamed."""
    from bench.core import store

    def refuse(path):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(store, "fsync_path", refuse)
    store.atomic_write_text(tmp_path / "a.txt", "kept")
    assert (tmp_path / "a.txt").read_text() == "kept"


def test_a_new_run_folder_is_made_durable_in_its_parent(monkeypatch, tmp_path):
    """After a crash of the machine, a run folder whose name was never synced to disk can vanish with
    everything written in it: the folder that names it (runs/) is fsynced when the run is first claimed."""
    from bench.core import store
    from bench.run.runner import RunLock

    synced = []
    monkeypatch.setattr(store, "fsync_path", lambda path: synced.append(str(path)))
    lock = RunLock(tmp_path / "runs" / "vgg-16k-96mel-x1-log-s0-0123456789")
    assert lock.acquire()
    lock.release()
    assert synced == [str(tmp_path), str(tmp_path / "runs")]  # runs/ was new too
    synced.clear()
    lock = RunLock(tmp_path / "runs" / "vgg-16k-96mel-x1-log-s1-0123456789")
    assert lock.acquire()
    lock.release()
    assert synced == [str(tmp_path / "runs")]


def test_a_file_written_by_name_gets_its_final_permissions_after_the_writing(tmp_path):
    """`atomic_file` hands out a temp file that its writer opens by name: it must stay writable (0600)
    until the writing is done, and only then take the umask's mode (a umask of 0222 gives 0444, which
    a second open for writing would be refused)."""
    from bench.core.store import atomic_file

    old = os.umask(0o222)
    try:
        with atomic_file(tmp_path / "out.npy") as tmp:
            during = tmp.stat().st_mode & 0o777
            tmp.write_bytes(b"written by name")
    finally:
        os.umask(old)
    assert during == 0o600
    assert (tmp_path / "out.npy").stat().st_mode & 0o777 == 0o444
    assert (tmp_path / "out.npy").read_bytes() == b"written by name"


def test_lock_files_take_the_umasks_mode_like_the_results_they_guard(tmp_path):
    """A results folder shared by a group (umask 002): a colleague resuming a killed grid opens the run's
    lock for writing, so it must be 0664 like the checkpoint beside it, not 0644."""
    from bench.core.store import exclusive_lock, release_lock, try_lock

    old = os.umask(0o002)
    try:
        fd = try_lock(tmp_path / "lock", "worker")
        run_lock = (tmp_path / "lock").stat().st_mode & 0o777
        release_lock(fd)
        with exclusive_lock(tmp_path / "prepare.lock"):
            prepare_lock = (tmp_path / "prepare.lock").stat().st_mode & 0o777
    finally:
        os.umask(old)
    assert run_lock == prepare_lock == 0o664


def test_a_retry_killed_while_clearing_the_failure_is_still_a_failed_run(monkeypatch, one_run):
    """`--retry-failed` removes a failed run's files; a kill between two of those deletions must leave
    either the failure's record or no checkpoint, never a checkpoint without its failure (which the next
    grid would resume: the failed attempt coming back)."""
    import pathlib

    from bench.run import runner
    from bench.train import loop

    spec, run, folder = one_run

    def train_run(run, cache, run_dir, *args, **kwargs):
        (run_dir / CHECKPOINT).write_bytes(b"the state of epoch 5")
        raise FloatingPointError("training loss became nan at epoch 5")

    monkeypatch.setattr(loop, "train_run", train_run)
    runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), None, lambda *_: None)
    original = pathlib.Path.unlink

    def killed_after_the_first(self, missing_ok=False):
        original(self, missing_ok=missing_ok)
        if self.parent == folder and self.name in (RESULT, CHECKPOINT):
            raise KeyboardInterrupt  # SIGKILL, as far as the folder is concerned

    monkeypatch.setattr(pathlib.Path, "unlink", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), "a1b2",
                                  lambda *_: None)
    monkeypatch.setattr(pathlib.Path, "unlink", original)
    assert not (folder / CHECKPOINT).exists()
    (state,) = run_states(spec, folder.parents[2], [run], retry_failed=False)
    assert state.action == "skip-failed"


def test_provenance_names_no_commit_of_a_repository_that_merely_contains_the_code(tmp_path):
    # A wheel installed into proj/.venv/lib/.../site-packages: `git -C` there finds proj's repository,
    # whose commit says nothing about the code that ran.
    from bench.run.runner import git_commit

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "README").write_text("a project that installed the suite\n")
    git("add", "README")
    git("commit", "-q", "-m", "init")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    site = tmp_path / ".venv" / "lib" / "python3" / "site-packages"
    site.mkdir(parents=True)
    assert git_commit(site) is None
    assert git_commit(tmp_path) == head  # a checkout of the suite itself: its commit
    (tmp_path / "README").write_text("changed\n")
    assert git_commit(tmp_path) == head + "-dirty"


def test_a_file_too_large_for_the_file_system_or_ulimit_stops_with_one_line_not_a_traceback(tmp_path, monkeypatch):
    # EFBIG: `ulimit -f` (Slurm passes the submitting shell's on to its jobs) or a FAT32/exFAT disk. Like a
    # full disk it is the machine's state: the grid stops, no run is recorded as failed.
    from bench.cli import resource_message
    from bench.core.store import is_resource_error

    error = allocation_refused(small_cache(tmp_path), monkeypatch, errno.EFBIG)
    assert is_resource_error(error)
    message = resource_message(error)
    assert "waveforms.f16: File too large; larger than this file system" in message and "ulimit -f" in message
    assert "\n" not in message


def refuse_flock(monkeypatch, code: int) -> None:
    """A file system that keeps no flock locks: NFSv3 without a running lock manager (lockd) answers
    ENOLCK, Lustre mounted without `-o flock` ENOSYS."""
    import fcntl

    def refused(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", refused)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))  # Linux, macOS


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS])
def test_each_lock_on_a_file_system_without_flock_says_so_naming_the_file(tmp_path, monkeypatch, code):
    from bench.core.errors import UserError
    from bench.core.store import exclusive_lock, lock_held, try_lock

    (tmp_path / "held").touch()
    refuse_flock(monkeypatch, code)
    before = open_descriptors()
    for attempt in (lambda: try_lock(tmp_path / "lock"), lambda: lock_held(tmp_path / "held"),
                    lambda: exclusive_lock(tmp_path / "prepare.lock").__enter__()):
        with pytest.raises(UserError) as raised:
            attempt()
        message = str(raised.value)
        assert message.startswith(str(tmp_path)) and "does not support flock locks" in message
        assert os.strerror(code) in message and "-o flock" in message
    assert open_descriptors() == before  # no descriptor left open by a refused lock


def test_a_grid_on_a_file_system_without_flock_stops_with_one_line_and_records_no_failure(finished, tmp_path,
                                                                                           capsys, monkeypatch):
    # a traceback before: without the run lock, two workers could run one run, so nothing may start
    workspace, spec, _ = finished
    refuse_flock(monkeypatch, errno.ENOLCK)
    status = main(["grid", str(spec), "--results", str(tmp_path / "results"), "--cache", str(workspace / "cache"),
                   "--device", "cpu", "--no-report"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "/lock: this file system does not support flock locks (No locks available)" in err
    assert not list((tmp_path / "results").rglob(RESULT)) and not list((tmp_path / "results").rglob(EXECUTIONS))


def test_a_file_system_without_flock_under_several_workers_is_raised_once(monkeypatch, tmp_path):
    from bench.core.store import LocksUnsupported
    from bench.run import grid

    def lockless(job):
        raise LocksUnsupported(f"{tmp_path}/w{job.worker}/lock: this file system does not support flock locks")

    monkeypatch.setattr(grid, "worker_entry", lockless)
    monkeypatch.setattr(grid.multiprocessing, "get_context", lambda method: InlineContext)
    job = grid.WorkerJob("spec.toml", str(tmp_path), "index.json", "cpu")
    with pytest.raises(LocksUnsupported, match="w0/lock: this file system"):
        grid._launch_local(job, 2, cuda=False)



def test_a_machine_fault_mid_run_stops_the_grid_with_one_line_and_is_not_a_failed_run(damaged, capsys, monkeypatch):
    # recorded as a failed run before, which the next grid skipped: on an NFS hiccup, every run of a grid
    _, _, folder, reference = damaged
    status, err = grid_meeting_a_fault(damaged, capsys, monkeypatch, errno.ESTALE)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    advice = f"{os.strerror(errno.ESTALE)}: the disk or network file system failed; check it (remount a stale NFS"
    assert f"{folder}/" in err and advice in err and ".tmp" not in err  # the file, not its temp file
    assert not (folder / RESULT).exists() and no_partial_files(folder) == []
    result, _ = rerun(damaged, capsys)  # the file system is back: the run resumes
    assert same_training(result, reference)


@pytest.mark.parametrize("code", [errno.ETIMEDOUT, errno.EIO, errno.EMFILE])
def test_an_audio_file_the_file_system_fails_to_read_stops_preparing_instead_of_being_skipped(tmp_path, monkeypatch,
                                                                                             code):
    # skipped as "cannot read (Connection timed out)" before, and never decoded again: an NFS timeout
    # over a dataset made every clip a failed one in a cache marked complete
    from bench.data import audio
    from bench.data.audio import BadAudio

    path = tmp_path / "a.mp3"
    write_mp3(path, tone(2.0))
    real_stat = os.stat

    def failing(name, *args, **kwargs):
        if os.fspath(name) == str(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_stat(name, *args, **kwargs)

    monkeypatch.setattr(audio.os, "stat", failing)
    with pytest.raises(OSError) as raised:
        decode_clip(str(path), (16000,), 2.0)
    assert raised.value.errno == code and not isinstance(raised.value, BadAudio)
    long_name = str(tmp_path / ("x" * 300 + ".mp3"))  # the file's own fault: skipped with its reason
    with pytest.raises(BadAudio, match="cannot read \\(File name too long\\)"):
        decode_clip(long_name, (16000,), 2.0)
    # MSD's and MTG-Jamendo's readers look at every file first: counted missing, a clip left the dataset
    from bench.data.index import AUDIO_MISSING, audio_file_problem

    with pytest.raises(OSError) as raised:
        audio_file_problem(path)
    assert raised.value.errno == code
    assert audio_file_problem(tmp_path / "absent.mp3") == AUDIO_MISSING


def test_a_synthetic_dataset_whose_description_cannot_be_read_is_not_regenerated(tmp_path, monkeypatch):
    # two failed reads of synthetic.json (a stale NFS handle) regenerated every MP3 in place and removed
    # the task files made from them
    import pathlib

    from bench.data.synthetic import files

    real_read_text = pathlib.Path.read_text
    (tmp_path / files.META).write_text("{}")

    def stale(self, *args, **kwargs):
        if self.name == files.META:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE), str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", stale)
    with pytest.raises(OSError, match=re.escape(os.strerror(errno.ESTALE))):
        files.is_complete(tmp_path, clips=40, seed=0, clip_seconds=4.0, sample_rate=16000)
    monkeypatch.undo()
    assert files.is_complete(tmp_path / "absent", clips=40, seed=0, clip_seconds=4.0, sample_rate=16000) is False


def test_a_report_stops_on_a_result_the_file_system_fails_to_read(finished, monkeypatch):
    # listed as "unreadable" before: the report was rewritten without the run, its figures removed, exit 0
    workspace, _, reference = finished
    from bench.report import reading

    folder = workspace / "results" / "one" / "runs" / reference["run_id"]
    real_read = reading.read_regular_file

    def failing(path):
        if path.name == RESULT:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
        return real_read(path)

    monkeypatch.setattr(reading, "read_regular_file", failing)
    with pytest.raises(OSError, match="Input/output error"):
        read_runs([folder])
    monkeypatch.undo()
    (folder.parent / "torn").mkdir(exist_ok=True)
    (folder.parent / "torn" / RESULT).write_text("{")  # a result that is itself broken is still listed
    try:
        ok, not_ok = read_runs([folder, folder.parent / "torn"])
    finally:
        shutil.rmtree(folder.parent / "torn")
    assert len(ok) == 1 and list(not_ok["status"]) == ["unreadable"]


@pytest.mark.parametrize("option", ["--results", "--cache", "--data"])
def test_a_path_too_long_for_the_file_system_is_one_line(finished, tmp_path, capsys, option):
    workspace, spec, _ = finished
    paths = {"--results": str(tmp_path / "results"), "--cache": str(workspace / "cache"),
             "--data": str(workspace / "synth")}
    paths[option] = str(tmp_path / ("x" * 300))  # one name longer than the 255 bytes a file system takes
    status = main(["grid", str(spec), "--device", "cpu", "--no-report",
                   *(item for pair in paths.items() for item in pair)])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "File name too long" in err and "shorter" in err


@pytest.mark.parametrize("code, advice", [  # after the system's own words (macOS words some otherwise)
    (errno.EIO, ": the disk or network file system failed; check it"),
    (errno.ETIMEDOUT, ": the disk or network file system failed"),
    (errno.EMFILE, "; raise the open-file limit (e.g. `ulimit -n 4096`)"),
    (errno.ENOMEM, ": too little memory or too many processes; run fewer"),
    (errno.ENAMETOOLONG, "; choose a shorter --results / --cache / --data path"),
])
def test_each_machine_fault_is_said_as_what_to_do_about_it(code, advice):
    from bench.cli import resource_message
    from bench.core.store import is_resource_error

    # a rename's error names the temp file and its target: the target is named
    error = OSError(code, os.strerror(code), "x/.result.json.abc.tmp", None, "x/result.json")
    assert is_resource_error(error)
    message = resource_message(error)
    assert message.startswith(f"x/result.json: {os.strerror(code)}{advice}")
    assert message.endswith("then rerun (finished runs are kept, interrupted ones resume)")


def test_the_stress_harness_sees_a_run_done_twice_lost_or_started_again(tmp_path):
    """`make stress` and the kill tests above pass only if the harness can see what they look for:
    folders planted by hand with a run started by two processes neither of which was killed, a run
    whose result is a failure, and a done run started again."""
    from collections import Counter

    runs = tmp_path / "stress" / "runs"

    def plant(run_id, pids, status="ok"):
        folder = runs / run_id
        folder.mkdir(parents=True)
        (folder / "executions.jsonl").write_text("".join(json.dumps({"host": "h", "pid": pid, "time": 0}) + "\n"
                                                         for pid in pids))
        result = ({"schema_version": 1, "run_id": run_id, "status": "ok", "config": {}, "cost": {},
                   "metrics": {"roc_auc": 0.75, "pr_auc": 0.5}} if status == "ok" else
                  {"schema_version": 1, "run_id": run_id, "status": "failed", "error": "X: y"})
        (folder / "result.json").write_text(json.dumps(result))

    twice_run, lost_run, once_run = (f"vgg-16k-32mel-x1-log-s0-{c * 10}" for c in "abc")
    plant(twice_run, [101, 102])
    plant(lost_run, [103], "failed")
    plant(once_run, [104])
    problems = []
    ok, lost, twice = stress.verify(tmp_path, {twice_run, lost_run, once_run}, killed=set(), redo=Counter(),
                                    label="t", problems=problems)
    assert lost == 1 and twice == {twice_run} and set(ok) == {twice_run, once_run}
    done_at, again = {}, set()
    stress._check_done(tmp_path, done_at, again, [])
    with open(runs / once_run / "executions.jsonl", "a") as log:
        log.write(json.dumps({"host": "h", "pid": 105, "time": 1}) + "\n")
    stress._check_done(tmp_path, done_at, again, problems)
    assert once_run in again and f"{once_run} was started again after it was done" in problems


def test_the_process_table_reads_the_same_from_proc_and_from_ps(monkeypatch):
    """The harness counts the processes it kills from Linux's /proc, else (macOS) from `ps`, where it
    counted none and reported every resumed run as executed twice: both readings agree."""
    from tests import processes

    if not os.path.isdir("/proc") or shutil.which("ps") is None:
        pytest.skip("needs both /proc and ps")
    sleeper = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
    group = subprocess.Popen([sys.executable, "-c", sleeper + "time.sleep(30)"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        def asleep() -> set[int]:  # both started and sleeping: states that hold while they are read
            members = processes.group_members(group.pid)
            return members if len(members) == 2 and {processes.state(pid) for pid in members} == {"S"} else set()

        while not asleep() and time.monotonic() < deadline:
            time.sleep(0.05)
        from_proc = asleep()
        monkeypatch.setattr(processes.os.path, "isdir", lambda path: path != "/proc")
        assert len(from_proc) == 2 and processes.group_members(group.pid) == from_proc
        assert {processes.state(pid) for pid in from_proc} == {"S"}
        monkeypatch.undo()
    finally:
        os.killpg(group.pid, signal.SIGKILL)
        group.wait()
    assert processes.state(group.pid) is None


def efbig_in_a_child(tmp_path, call: str) -> tuple[int, str | None]:
    """(errno, filename) of the OSError that `call` (Python, given `folder`) raises in a child process
    whose file-size limit is 4 KiB, as `ulimit -f` sets it (Slurm passes it on to its jobs): Python ignores
    SIGXFSZ, so each write past the limit fails with EFBIG."""
    code = ("import json, resource, sys; from pathlib import Path; import numpy as np\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            f"folder = Path({str(tmp_path)!r})\n"
            "try:\n"
            f"    {call}\n"
            "except OSError as exc:\n"
            "    print(json.dumps([exc.errno, exc.filename]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    code, filename = json.loads(proc.stdout.strip().splitlines()[-1])
    return code, filename


def test_bench_perfs_scratch_cache_and_a_taggram_png_past_the_file_size_limit_name_their_file(tmp_path):
    """Both wrote through a library that names no file (numpy's memmap, which on a full tmpfs then met a
    SIGBUS instead; matplotlib's savefig): "cannot write File too large". Each now names its file, and
    the taggram leaves no partial PNG."""
    scratch = "from bench.tools.input_path import ScratchCache; ScratchCache(folder, 8, 16000, 4)"
    assert efbig_in_a_child(tmp_path, scratch) == (errno.EFBIG, str(tmp_path / "waveforms.f16"))
    taggram = ("from bench.tools.tag import save_taggram_png; save_taggram_png(folder / 'song.png', "
               "np.full((40, 20), 0.5), [f'tag{i}' for i in range(20)], 3.0, 'song.mp3')")
    assert efbig_in_a_child(tmp_path, taggram) == (errno.EFBIG, str(tmp_path / "song.png"))
    assert not list(tmp_path.glob("*song*"))


def test_a_full_disk_or_file_size_limit_met_by_torch_compile_stops_the_grid_and_keeps_the_run(
        monkeypatch, one_run, tmp_path, capsys):
    """torch.compile writes its generated code under its cache folder (/tmp/torchinductor_<user> by
    default) and wraps what it meets there: a full disk arrives as InductorError(OSError ENOSPC) naming no
    file, a C++ compiler killed by `ulimit -f` as InductorError(CppCompileError). Both were recorded as
    the run's failure (and `--retry-failed` then deleted its checkpoint); like any full disk they now stop
    the grid with one line naming the folder, and the run resumes later."""
    from torch._inductor.compile_worker.subproc_pool import SubprocException
    from torch._inductor.exc import CppCompileError, InductorError

    from bench.core.store import resource_cause
    from bench.run import runner
    from bench.train import loop

    compile_cache = tmp_path / "inductor-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(compile_cache))
    spec, run, folder = one_run
    full = InductorError(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), None)
    killed = InductorError(CppCompileError(["g++", "-c", "kernel.cpp"], "g++: internal compiler error: File size "
                                           "limit exceeded signal terminated program cc1plus"), None)
    # the linker writing the kernel's .so, and a compile worker process (Triton's kernels on a GPU), quote
    # what they met in words only
    linked = InductorError(CppCompileError(["g++", "kernel.cpp", "-o", "kernel.so"], "/usr/bin/ld: final link "
                                           "failed: No space left on device\ncollect2: error: ld returned 1"), None)
    worker = InductorError(SubprocException("Traceback (most recent call last):\n  ...\nOSError: [Errno 122] "
                                            "Disk quota exceeded"), None)
    for wrapped, code in ((full, errno.ENOSPC), (killed, errno.EFBIG), (linked, errno.ENOSPC),
                          (worker, errno.EDQUOT)):
        def train_run(run, cache, run_dir, *args, wrapped=wrapped, **kwargs):
            (run_dir / CHECKPOINT).write_bytes(b"the state of epoch 3")
            raise wrapped

        monkeypatch.setattr(loop, "train_run", train_run)
        with pytest.raises(OSError) as raised:
            runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), None,
                                      lambda *_: None)
        assert (raised.value.errno, raised.value.filename) == (code, str(compile_cache))
        assert not (folder / RESULT).exists() and (folder / CHECKPOINT).exists()  # not failed: it resumes
    # bench perf's compile lever meets the same: one line, not a traceback
    from bench.tools import perf

    monkeypatch.setattr(perf, "run_perf", lambda *a, **k: (_ for _ in ()).throw(full))
    assert main(["perf", "specs/demo.toml", "--device", "cpu", "--out", str(tmp_path / "perf.json")]) == 2
    err = capsys.readouterr().err
    # the folder to free or move is torch.compile's: --results and --cache do not move it
    assert err == (f"bench perf: error: torch.compile could not write {compile_cache}: No space left on device; "
                   "free some space there, or set TORCHINDUCTOR_CACHE_DIR to another folder (BENCH_COMPILE=0 trains "
                   "without compiling), then rerun\n")
    # an ordinary failure of a compilation is the run's, recorded as such
    assert resource_cause(InductorError(CppCompileError(["g++"], "kernel.cpp:3: error: 'x' was not declared"),
                                        None), str(compile_cache)) is None
    # each refusal its own remedy; a failing disk or a process limit the advice it gets anywhere
    from bench.cli import resource_message

    said = {code: resource_message(resource_cause(InductorError(OSError(code, os.strerror(code)), None),
                                                  str(compile_cache)), "grid")
            for code in (errno.EROFS, errno.EACCES, errno.EFBIG, errno.EIO, errno.EMFILE)}
    assert "Read-only file system; make it writable, or set TORCHINDUCTOR_CACHE_DIR" in said[errno.EROFS]
    assert "Permission denied; change its permissions, or set TORCHINDUCTOR_CACHE_DIR" in said[errno.EACCES]
    assert "File too large; raise the file-size limit (`ulimit -f`), or set" in said[errno.EFBIG]
    assert said[errno.EIO].startswith(f"{compile_cache}: Input/output error: the disk or network file system failed")
    assert said[errno.EMFILE].startswith(f"{compile_cache}: Too many open files; raise the open-file limit")
    # and as a worker process hands it to the grid: still torch.compile's folder, not --results / --cache
    from bench.run import grid

    monkeypatch.setattr(grid, "worker_entry", lambda job: (_ for _ in ()).throw(
        resource_cause(full, str(compile_cache))))
    handed = pickle.loads(pickle.dumps(grid.pool_worker_entry(None)))
    assert resource_message(handed, "grid").startswith(f"torch.compile could not write {compile_cache}: No space")


@pytest.mark.parametrize("clock_ahead", [0.0, 3700.0], ids=["same clock", "this host 62 min ahead"])
def test_a_live_writers_temp_file_is_not_taken_for_a_dead_ones_on_a_host_whose_clock_is_ahead(
        tmp_path, monkeypatch, clock_ahead):
    """A shared folder (an embedding cache two embeds write, a report's) is cleared of temp files untouched
    for an hour, a dead writer's. Their age was this host's clock against the file system's: a host an
    hour ahead of the file server removed a live writer's temp file on another host, whose rename then
    failed. The age is now read on the file system's clock alone; a file an hour and more old still goes."""
    import os
    import time

    from bench.core import store

    with store.atomic_file(tmp_path / "live.npz") as live:
        live.write_bytes(b"being written")
        with store.atomic_file(tmp_path / "dead.npz") as dead:
            dead.write_bytes(b"left by a writer that was killed")
            os.utime(dead, (time.time() - 2 * store.STALE_TEMP_SECONDS,) * 2)
            real_time = time.time
            monkeypatch.setattr(store.time, "time", lambda: real_time() + clock_ahead)
            assert store.remove_temp_files(tmp_path, store.STALE_TEMP_SECONDS) == [dead]
            monkeypatch.setattr(store.time, "time", real_time)
            assert live.exists() and not dead.exists()
            dead.write_bytes(b"")  # for atomic_file's rename on leaving
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.npz", "live.npz"]  # no probe file left behind
