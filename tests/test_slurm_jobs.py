"""Slurm jobs as submitit runs them (submitit's own classes where they can run on a laptop): a job that
reaches its time limit is requeued and its run resumes, not recorded as failed; the submitter waits for
every task of every job; runs per GPU and CPUs per task are what the compute nodes can give."""

from __future__ import annotations

import pickle
import types
from pathlib import Path

import pytest
import submitit
import torch
from submitit.core.job_environment import _checkpoint
from submitit.core.utils import DelayedSubmission, UncompletedJobError

from bench.core.errors import UserError
from bench.run import grid, prepare
from bench.run.grid import (
    GridOptions,
    RequeuedWorker,
    SlurmOptions,
    WorkerJob,
    not_accounted,
    run_grid,
    submitit_parameters,
)
from bench.train import loop as train

from .test_cuda_paths import StubExecutor, StubJob

DEMO6 = Path(__file__).resolve().parents[1] / "tests" / "data" / "demo6.toml"
TIME_UP = UncompletedJobError("Job not requeued because: timed-out and not checkpointable.")
"""What submitit's signal handler raises, wherever the job's code is, at the signal before the time limit
when the job cannot be requeued (core/job_environment.py, `checkpoint_and_try_requeue`)."""


def test_the_grid_job_is_checkpointable_so_slurm_requeues_it(tmp_path):
    """submitit requeues a timed-out or preempted job only when its function has a `checkpoint` method
    that returns the submission to rerun; a plain function gets "timed-out and not checkpointable"."""
    job = WorkerJob("spec.toml", "results", "index.json", "cuda", worker=3)
    delayed = DelayedSubmission(RequeuedWorker(), job)
    delayed.set_timeout(60, 3)
    assert _checkpoint(delayed, tmp_path / "submitted.pkl", 2) == ""  # "": submitit requeues the job
    requeued = pickle.loads((tmp_path / "submitted.pkl").read_bytes())
    assert isinstance(requeued.function, RequeuedWorker) and requeued.args == (job,)


def test_a_job_whose_time_is_up_leaves_its_run_to_resume(monkeypatch, one_run):
    """Without a requeue (timed out too often), submitit raises UncompletedJobError in the middle of
    training: the run keeps its checkpoint and is not recorded as failed (a failed run is skipped by
    later grids and restarted from scratch by --retry-failed)."""
    from bench.run import runner

    spec, run, folder = one_run

    def train_run(*args, **kwargs):
        raise TIME_UP

    monkeypatch.setattr(train, "train_run", train_run)
    with pytest.raises(UncompletedJobError):
        runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), None, lambda *_: None)
    assert not (folder / runner.RESULT).exists()


@pytest.mark.parametrize("refusal", ["refused", "timed out", "no scontrol"])
def test_a_refused_requeue_leaves_the_run_to_resume(monkeypatch, one_run, tmp_path, refusal):
    """submitit's signal handler requeues the job with `scontrol requeue` (check_call, 60 s timeout) in the
    middle of training; a cluster that refuses requeues, or a slurmctld too busy to answer, makes that call
    raise there. The job is ending all the same: not the run's failure, which would be skipped by later
    grids and restarted from scratch by --retry-failed."""
    import signal
    import subprocess

    from submitit.core.job_environment import SignalHandler
    from submitit.slurm.slurm import SlurmJobEnvironment

    from bench.run import runner

    spec, run, folder = one_run

    def scontrol(command, timeout=None):
        if refusal == "refused":
            raise subprocess.CalledProcessError(1, command)
        if refusal == "timed out":
            raise subprocess.TimeoutExpired(command, timeout)
        raise FileNotFoundError(2, "No such file or directory", "scontrol")

    monkeypatch.setattr(subprocess, "check_call", scontrol)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_PROCID", "0")
    delayed = DelayedSubmission(RequeuedWorker(), WorkerJob("spec.toml", "results", "index.json", "cuda"))
    delayed.set_timeout(60, 3)
    paths = types.SimpleNamespace(submitted_pickle=tmp_path / "submitted.pkl")
    handler = SignalHandler(SlurmJobEnvironment(), paths, delayed)

    def train_run(*args, **kwargs):  # the signal arrives during training
        if refusal == "no scontrol":  # inside code that wraps what it catches (as torch.compile does)
            try:
                handler.checkpoint_and_try_requeue(signal.SIGUSR2)
            except OSError as exc:
                raise RuntimeError("compiling the model failed") from exc
        handler.checkpoint_and_try_requeue(signal.SIGUSR2)

    monkeypatch.setattr(train, "train_run", train_run)
    with pytest.raises((subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError)):
        runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), None, lambda *_: None)
    assert not (folder / runner.RESULT).exists()


@pytest.mark.parametrize(("signal_name", "rank"), [("SIGUSR2", "1"), ("SIGTERM", "0")])
def test_a_failure_after_the_job_was_told_to_end_leaves_the_run_to_resume(monkeypatch, one_run, tmp_path,
                                                                          signal_name, rank):
    """Slurm sends its signals to every process of the job step. A task other than task 0 trains on
    after SIGUSR2 (submitit's handler returns there: task 0 requeues the job), and every task after
    SIGTERM (submitit lets it by), until Slurm kills them; meanwhile torch.compile's compile workers,
    which Python's handlers do not protect, die of it, and the run's next compile raises "Attempting
    to use a closed pool". The job is ending: the run resumes in its next attempt, not recorded as
    failed. The same error without the signal is the run's own failure."""
    import os
    import signal

    from submitit.slurm.slurm import SlurmJobEnvironment

    from bench.core.interrupts import noting_job_signals
    from bench.run import runner

    spec, run, folder = one_run
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_PROCID", rank)
    delayed = DelayedSubmission(RequeuedWorker(), WorkerJob("spec.toml", "results", "index.json", "cuda"))
    delayed.set_timeout(60, 3)
    paths = types.SimpleNamespace(submitted_pickle=tmp_path / "submitted.pkl")
    signalled = [True]

    def train_run(*args, **kwargs):
        if signalled[0]:
            os.kill(os.getpid(), getattr(signal, signal_name))
        raise RuntimeError("Attempting to use a closed pool")

    monkeypatch.setattr(train, "train_run", train_run)
    numbers = (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)
    before = {number: signal.getsignal(number) for number in numbers}
    try:
        SlurmJobEnvironment()._handle_signals(paths, delayed)  # submitit's handlers, as its job runner sets them
        with noting_job_signals():  # as RequeuedWorker runs a task
            with pytest.raises(RuntimeError, match="closed pool"):
                runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), None,
                                          lambda *_: None)
            assert not (folder / runner.RESULT).exists()
            assert not (tmp_path / "submitted.pkl").exists()  # not requeued from this task
        signalled[0] = False  # a later task of this process, never signalled
        with noting_job_signals():
            assert runner._claim_and_execute(spec, folder, run, lambda rate: None, torch.device("cpu"), None,
                                             lambda *_: None) == "executed"
        result = runner.read_result(folder)
        assert result["status"] == "failed" and result["error"] == "RuntimeError: Attempting to use a closed pool"
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def test_a_checkpoint_read_when_the_time_is_up_is_not_set_aside(monkeypatch, tmp_path):
    from bench.train import checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"a checkpoint")

    def load_torch(path):
        raise TIME_UP

    monkeypatch.setattr(checkpoint, "load_torch", load_torch)
    with pytest.raises(UncompletedJobError):
        checkpoint.resume_state(tmp_path, "run", log=lambda *_: None)
    assert path.exists() and not list(tmp_path.glob("*.rejected"))


def submit(monkeypatch, tmp_path, jobs=None, **options) -> StubExecutor:
    """`bench grid --launcher slurm` from a login node without a GPU, submitting to StubExecutor."""
    monkeypatch.setattr(grid.shutil, "which", lambda name: f"/usr/bin/{name}")  # a Slurm login node
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(submitit, "AutoExecutor", StubExecutor)
    fake_cache = type("Cache", (), {"index_path": tmp_path / "cache" / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, fake_cache, None))
    if jobs is not None:
        monkeypatch.setattr(StubExecutor, "map_array", lambda self, fn, given: (setattr(self, "jobs", list(given)),
                                                                                jobs)[1])
    StubExecutor.made.clear()
    assert run_grid(str(DEMO6), GridOptions(results=str(tmp_path / "results"), device="cuda", launcher="slurm",
                                            **options)) == 1  # nothing ran (the stub)
    (executor,) = StubExecutor.made
    return executor


def test_a_job_trains_the_spec_as_submitted_not_as_edited_since(monkeypatch, tmp_path):
    """A Slurm job may start hours after `bench grid` planned it, and be requeued days later: an edit of
    the spec file meanwhile (a sample rate whose cache was never prepared, another n_tags) must not change
    what it trains, nor record a run of the old data under the new spec's identity."""
    from bench.data.cache import WaveformCache
    from bench.spec import load_spec

    spec_file = tmp_path / "demo6.toml"
    spec_file.write_text(DEMO6.read_text())
    planned = [run.run_id for run in load_spec(spec_file).runs()]
    monkeypatch.setattr(grid.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(submitit, "AutoExecutor", StubExecutor)
    fake_cache = type("Cache", (), {"index_path": tmp_path / "cache" / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, fake_cache, None))
    StubExecutor.made.clear()
    run_grid(str(spec_file), GridOptions(results=str(tmp_path / "results"), device="cpu", launcher="slurm"))
    (executor,) = StubExecutor.made
    job = pickle.loads(pickle.dumps(executor.jobs[0]))  # as submitit stores it for the job and its requeues
    spec_file.write_text(DEMO6.read_text().replace("n_tags = 50", "n_tags = 10").replace("seeds = [0]", "seeds = [7]"))
    assert not set(planned) & {run.run_id for run in load_spec(spec_file).runs()}
    trained = []
    monkeypatch.setattr(grid, "worker_loop", lambda spec, results, runs, *rest: trained.extend(r.run_id for r in runs))
    monkeypatch.setattr(WaveformCache, "from_index", staticmethod(lambda path: None))
    grid.worker_entry(job)
    assert sorted(trained) == sorted(planned)


def test_the_submitter_waits_for_every_job_and_names_those_that_did_not_finish(monkeypatch, tmp_path, capsys):
    jobs = [StubJob(0, 2, TIME_UP), StubJob(1, 2)]
    executor = submit(monkeypatch, tmp_path, jobs, workers=2, runs_per_gpu=2)
    assert isinstance(executor.parameters["tasks_per_node"], int) and len(executor.jobs) == 2
    out = capsys.readouterr().out
    assert "job 100_0 ended without finishing (UncompletedJobError: Job not requeued because: timed-out" in out
    assert "100_1" not in out.split("submitted", 1)[1].split("ok,")[0]  # finished: nothing said about it


FRAMES = ('Traceback (most recent call last):\n  File "submitit/core/submission.py", line 55, in process_job\n'
          "    result = delayed.result()\n")
CUDA_ERROR = ("RuntimeError: CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
              "asynchronously reported at some other API call, so the stacktrace below might be incorrect.\n"
              "For debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
              "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n")
"""torch's CUDA error as it prints: the error's line, then advice."""


@pytest.mark.parametrize(("trace", "named"), [
    (FRAMES + '  File "submitit/core/job_environment.py", line 227, in checkpoint_and_try_requeue\n'
     "    raise utils.UncompletedJobError(message)\n"
     "submitit.core.utils.UncompletedJobError: Job not requeued because: timed-out too many times.\n",
     "UncompletedJobError: Job not requeued because: timed-out too many times."),
    (FRAMES + CUDA_ERROR, "RuntimeError: CUDA error: an illegal memory access was encountered"),
    (FRAMES + "ValueError: a message: with a colon\nsome note added to it\n", "ValueError: a message: with a colon"),
    ("Traceback (most recent call last):\n  File \"a.py\", line 1, in f\n    g()\nKeyError: 'x'\n\nDuring handling "
     "of the above exception, another exception occurred:\n\n" + FRAMES + "bench.core.errors.DeviceFailure: cuda:0 "
     "failed\n", "DeviceFailure: cuda:0 failed"),
])
def test_a_job_that_failed_is_named_with_its_tasks_error(monkeypatch, tmp_path, capsys, trace, named):
    """The task's error reaches the submitter as submitit's FailedJobError, whose first line says only
    that the job failed: the task's error is the line after the traceback's last frame (torch's errors
    go on with advice, Python's notes come after it, and a chained error's last traceback is the one
    raised), from result pickles as submitit's job runner writes them, read back by submitit's own
    SlurmJob."""
    from submitit.core import utils
    from submitit.slurm.slurm import SlurmJob

    folder = tmp_path / "jobs"
    folder.mkdir()
    for task in (0, 1):
        utils.cloudpickle_dump(("error", trace), folder / f"4242_3_{task}_result.pkl")
    submit(monkeypatch, tmp_path, [SlurmJob(folder=folder, job_id="4242_3", tasks=[0, 1])], runs_per_gpu=2)
    assert f"job 4242_3 ended without finishing ({named}); its log: " in capsys.readouterr().out


@pytest.mark.parametrize(("raised", "advice"), [
    ("OSError: [Errno 28] No space left on device: '/r/demo6/runs/x/checkpoint.pt'",
     "cannot write /r/demo6/runs/x/checkpoint.pt: No space left on device; free some space and then rerun"),
    ("bench.core.store.CompileCacheError: [Errno 122] Disk quota exceeded: '/tmp/torchinductor_me'",
     "torch.compile could not write /tmp/torchinductor_me: Disk quota exceeded; free some space there, or set "
     "TORCHINDUCTOR_CACHE_DIR"),
    ("PermissionError: [Errno 13] Permission denied: \"/r/it's/runs\"", "cannot write /r/it's/runs: Permission denied"),
    # a job's memory is its own: fewer jobs (--workers) would not give it more
    ("OSError: [Errno 12] Cannot allocate memory", "Cannot allocate memory: too little memory or too many processes; "
     "give each job more memory (--mem-gb GB), then rerun"),
    ("OSError: [Errno 24] Too many open files", "Too many open files; raise the open-file limit on the compute nodes "
     "(e.g. `ulimit -n 4096` in the job's environment), then rerun"),
])
def test_a_job_stopped_by_the_machine_stops_the_grid_with_the_advice_a_local_worker_gets(
        monkeypatch, tmp_path, capsys, raised, advice):
    """A full disk or a forbidden folder in a Slurm job: the job is named, and then, as when a local
    worker meets it, the grid ends with one line saying what to do (a job's error reaches the submitter
    as its traceback's text only). Other jobs' errors are not turned into advice (the tests above)."""
    from submitit.core import utils
    from submitit.slurm.slurm import SlurmJob

    from bench.cli import main

    folder = tmp_path / "jobs"
    folder.mkdir()
    utils.cloudpickle_dump(("error", FRAMES + raised + "\n"), folder / "4242_3_0_result.pkl")
    monkeypatch.setattr(grid.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(submitit, "AutoExecutor", StubExecutor)
    fake_cache = type("Cache", (), {"index_path": tmp_path / "cache" / "index-0.json"})()
    monkeypatch.setattr(prepare, "prepare_spec", lambda *args, **kwargs: (None, fake_cache, None))
    monkeypatch.setattr(StubExecutor, "map_array", lambda self, fn, given: [SlurmJob(folder=folder, job_id="4242_3")])
    assert main(["grid", str(DEMO6), "--results", str(tmp_path / "results"), "--device", "cpu",
                 "--launcher", "slurm"]) == 2
    out, err = capsys.readouterr()
    assert "job 4242_3 ended without finishing (" in out
    assert err.startswith(f"bench grid: error: {advice}") and err.count("\n") == 1


def test_a_job_that_left_no_result_is_named_with_its_state():
    """A job killed without writing its result (a node failure, the out-of-memory killer): submitit's
    UncompletedJobError gives the state on its second line (core.py), which the line keeps."""
    from submitit.core.utils import UncompletedJobError

    error = UncompletedJobError("Job 4242_3 (task: 0) with path /r/4242_3_0_result.pkl\nhas not produced any output "
                                "(state: NODE_FAIL)\nError stream produced:\n" + "-" * 40 + "\nslurmstepd: error")
    assert grid.job_failure(error) == ("UncompletedJobError: Job 4242_3 (task: 0) with path /r/4242_3_0_result.pkl "
                                       "has not produced any output (state: NODE_FAIL)")


class Clock:
    """Seconds that pass only when the code sleeps."""

    def __init__(self, stop_after: float = 3600.0):
        self.now, self.stop_after = 0.0, stop_after

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.now > self.stop_after:
            raise TimeoutError("still waiting")


class UnfinishedJob:
    """A job with no result files, whose state sacct gives as `state` ("UNKNOWN": sacct has not answered)."""

    job_id = "4242_3"

    def __init__(self, state: str = "UNKNOWN"):
        self.state = state

    def done(self) -> bool:
        return False


class CtrlCWhileWaiting(UnfinishedJob):
    """A job of the array 4242 waited for when Ctrl-C reaches the submitting process."""

    def done(self) -> bool:
        raise KeyboardInterrupt


def test_ctrl_c_while_waiting_for_slurm_jobs_says_they_go_on_and_how_to_stop_them(monkeypatch, tmp_path):
    """Ctrl-C stops only the submitting process (Slurm's jobs are not its children): the line said only
    "rerun to continue", as if the runs had stopped, while the jobs trained on."""
    from bench.core.errors import Interrupted

    finished = StubJob(0, 1)
    finished.job_id = "4242_0"  # a task of the same array, done before the Ctrl-C
    with pytest.raises(Interrupted) as raised:
        submit(monkeypatch, tmp_path, [finished, CtrlCWhileWaiting()], workers=2, runs_per_gpu=1)
    assert str(raised.value) == ("the Slurm jobs go on (`scancel 4242` stops them; their runs then resume from "
                                 "their checkpoints); rerun to continue (finished work is kept)")


@pytest.mark.parametrize("when", ["submission", "sacct"])
def test_ctrl_c_once_the_jobs_are_submitted_says_they_go_on(monkeypatch, tmp_path, when):
    """A Ctrl-C during a slow sbatch is held back until the submission ends, the jobs then submitted; one
    while sacct is asked whether the cluster keeps accounting (up to a minute) comes after too. Both said
    only "rerun to continue" while the jobs trained on."""
    import os
    import signal

    from bench.core.errors import Interrupted

    real_map_array = StubExecutor.map_array

    def submitted_with_ctrl_c(self, fn, given):
        jobs = real_map_array(self, fn, given)
        if when == "submission":
            os.kill(os.getpid(), signal.SIGINT)
        return jobs

    def asked(job_id):
        raise KeyboardInterrupt

    monkeypatch.setattr(StubExecutor, "map_array", submitted_with_ctrl_c)
    if when == "sacct":
        monkeypatch.setattr(grid, "not_accounted", asked)
    with pytest.raises(Interrupted, match=r"the Slurm jobs go on \(`scancel 100` stops them"):
        submit(monkeypatch, tmp_path, workers=2, runs_per_gpu=1)


def test_without_sacct_a_job_squeue_stopped_listing_is_given_up_on():
    """Submitit knows a job ended from its result files or from sacct; where sacct gives no state (no job
    accounting), a job killed before writing them was waited for forever. squeue is asked once a minute;
    a job it has not listed for GONE_SECONDS is taken as ended."""
    clock, asked = Clock(), []

    def listed(job_id):
        asked.append((clock.now, job_id))
        return clock.now < 600  # pending, running, then ended at 10 minutes

    why = grid.wait_for_job(UnfinishedJob(), clock=clock, sleep=clock.sleep, listed=listed)
    assert why == "no result, and squeue no longer lists it; sacct gave no state"
    assert [t for t, _ in asked][:3] == [60, 120, 180] and {job for _, job in asked} == {"4242_3"}
    gone = [t for t, _ in asked if t >= 600]
    assert gone[0] == 600 and clock.now == 600 + grid.GONE_SECONDS  # given up 3 minutes after it left squeue


@pytest.mark.parametrize("state, squeue_says", [("UNKNOWN", None), ("RUNNING", False), ("PENDING", False)])
def test_a_job_is_waited_for_while_squeue_cannot_say_or_sacct_says_it_lives(state, squeue_says):
    """A squeue that does not answer gives nothing up; nor does a job whose state sacct gives (submitit
    ends the wait itself when that state is an end)."""
    clock, asked = Clock(stop_after=7200), []
    with pytest.raises(TimeoutError):
        grid.wait_for_job(UnfinishedJob(state), clock=clock, sleep=clock.sleep,
                          listed=lambda job_id: asked.append(job_id) or squeue_says)
    assert len(asked) == (120 if squeue_says is None else 0)  # once a minute for 2 hours


@pytest.mark.parametrize("answer, listed", [
    ((0, "RUNNING\n", ""), True), ((0, "PENDING\n", ""), True), ((0, "", ""), False),
    ((1, "", "slurm_load_jobs error: Invalid job id specified\n"), False),
    ((1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"), None),
    (FileNotFoundError(2, "No such file or directory: 'squeue'"), None),
])
def test_what_squeue_says_of_a_job(monkeypatch, answer, listed):
    """squeue's answers as it gives them: a state per line for a job it lists, nothing for one that has
    ended, and for an id the controller no longer holds "Invalid job id specified" (exit 1)."""
    argv = []

    def run(command, **kwargs):
        argv.append(command)
        if isinstance(answer, Exception):
            raise answer
        return types.SimpleNamespace(returncode=answer[0], stdout=answer[1], stderr=answer[2])

    monkeypatch.setattr(grid.subprocess, "run", run)
    assert grid.squeue_lists("4242_3") is listed
    assert argv == [["squeue", "--noheader", "--jobs", "4242_3", "--format", "%T"]]


def test_the_submitter_names_a_job_given_up_on(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(grid, "SQUEUE_EVERY", 0.0)
    monkeypatch.setattr(grid, "GONE_SECONDS", 0.0)
    monkeypatch.setattr(grid, "squeue_lists", lambda job_id: False)
    submit(monkeypatch, tmp_path, [UnfinishedJob(), StubJob(1, 2)], workers=2, runs_per_gpu=2)
    out = capsys.readouterr().out
    assert ("job 4242_3 ended without finishing (no result, and squeue no longer lists it; sacct gave no state); "
            "its log: ") in out


def test_a_grid_submitted_from_inside_an_allocation_does_not_pass_its_request_on(monkeypatch, tmp_path):
    """sbatch exports the submitting process's environment to the job, where Slurm sets only what the job
    itself asks for. From a driver job with `--mem-per-cpu` (SLURM_MEM_PER_CPU), a job asking `--mem`
    would hold both, and its srun stops: "SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and SLURM_MEM_PER_NODE
    are mutually exclusive". From one with `--ntasks-per-gpu`, a job asking `--cpus-per-task` stops at
    "SLURM_TRES_PER_TASK is mutually exclusive with --ntasks-per-gpu and SLURM_NTASKS_PER_GPU" (Slurm
    23.11 and later); from one with `--cpus-per-gpu`, at "--cpus-per-task, --tres-per-task=cpu:#, and
    --cpus-per-gpu are mutually exclusive". sbatch runs without them; the grid's own environment keeps them."""
    import os

    seen = []
    real_map_array = StubExecutor.map_array

    def map_array(self, fn, given):  # where submitit runs sbatch
        seen.append({k: v for k, v in os.environ.items() if k.startswith("SLURM_")})
        return real_map_array(self, fn, given)

    monkeypatch.setattr(StubExecutor, "map_array", map_array)
    for name in [name for name in os.environ if name.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    driver = {"SLURM_JOB_ID": "777", "SLURM_CPUS_PER_TASK": "2", "SLURM_MEM_PER_CPU": "4000",
              "SLURM_TRES_PER_TASK": "cpu:2,gres/gpu:1", "SLURM_NTASKS_PER_GPU": "1", "SLURM_GPUS_PER_TASK": "1",
              # an `salloc --gpus=4 --cpus-per-gpu=8 --gpus-per-node=4 --gpu-bind=closest` shell: srun reads each
              # back as its option (--cpus-per-gpu beside the job's SLURM_CPUS_PER_TASK stops it; the rest
              # asks the driver's GPUs of a job with one, or none)
              "SLURM_GPUS": "4", "SLURM_CPUS_PER_GPU": "8", "SLURM_GPUS_PER_NODE": "4", "SLURM_GPUS_PER_SOCKET": "2",
              "SLURM_NTASKS_PER_TRES": "1", "SLURM_TRES_BIND": "gres/gpu:closest"}
    for name, value in driver.items():
        monkeypatch.setenv(name, value)
    executor = submit(monkeypatch, tmp_path)
    assert executor.jobs and len(seen) == 1
    assert seen[0] == {"SLURM_JOB_ID": "777", "SLURM_CPUS_PER_TASK": "2"}  # the job's own replace these two
    assert {name: os.environ[name] for name in driver} == driver


def test_runs_per_gpu_on_slurm_come_from_the_nodes_gpu_memory(monkeypatch, tmp_path, capsys):
    """The login node has no GPU (or another one): K is 1 unless --gpu-mem-gb names the nodes' GPUs."""
    executor = submit(monkeypatch, tmp_path)
    assert executor.parameters["tasks_per_node"] == 1
    assert "runs per GPU: 1 (the compute nodes' GPU memory is not known here" in capsys.readouterr().out
    executor = submit(monkeypatch, tmp_path, slurm=SlurmOptions(gpu_mem_gb=80))
    assert executor.parameters["tasks_per_node"] == 4  # the demo's networks are tiny: the cap, 4
    assert "on 80 GiB" in capsys.readouterr().out


def test_cpus_are_per_job_and_each_task_gets_at_least_one():
    job = WorkerJob("s.toml", "r", "c", "cuda", runs_per_gpu=3)
    params = submitit_parameters(job, "slurm", SlurmOptions(gpus_per_job=1, cpus_per_job=8), wants_gpu=True)
    assert params["tasks_per_node"] * params["cpus_per_task"] <= 8 and params["cpus_per_task"] == 2
    with pytest.raises(UserError, match="--cpus 8 is fewer than the 12 tasks of a job"):
        submitit_parameters(job, "slurm", SlurmOptions(gpus_per_job=4, cpus_per_job=8), wants_gpu=True)
    # submitit-local on an 8-GPU box: --cpus is Slurm's option, not set by the user; one CPU per task
    local = submitit_parameters(job, "submitit-local", SlurmOptions(), wants_gpu=True, visible_gpus=8)
    assert (local["tasks_per_node"], local["cpus_per_task"]) == (24, 1)


@pytest.mark.parametrize("stderr, says", [
    ("sbatch: error: invalid partition specified: gpux\n"
     "sbatch: error: Batch job submission failed: Invalid partition name specified",
     "(FailedJobError: sbatch: error: invalid partition specified: gpux)"),
    # a cluster whose select plugin takes GPUs only as a generic resource, refusing --gpus-per-node
    ("sbatch: error: Batch job submission failed: Requested GRES option unsupported by configured SelectType plugin",
     "(FailedJobError: sbatch: error: Batch job submission failed: Requested GRES option unsupported by configured "
     "SelectType plugin); this cluster takes GPUs as a generic resource: add --slurm-arg gres=gpu:N"),
    # Slurm 22.05's sbatch, exactly, on a cluster that has no GPUs configured (no GresTypes=gpu)
    ("sbatch: error: Invalid generic resource (gres) specification\n",
     "(FailedJobError: sbatch: error: Invalid generic resource (gres) specification); the GPUs the jobs ask for "
     "are not a resource of this cluster (`sinfo -o '%P %G'` lists each partition's): name a partition that has "
     "them, or --device cpu to train on the nodes' CPUs"),
])
def test_a_refused_submission_is_one_line(monkeypatch, tmp_path, stderr, says):
    """sbatch refusing the jobs (submitit raises FailedJobError with sbatch's stderr) is the user's to fix."""
    from submitit.core.utils import FailedJobError

    def refuse(self, fn, given):
        raise FailedJobError(stderr)

    monkeypatch.setattr(StubExecutor, "map_array", refuse)
    with pytest.raises(UserError) as raised:
        submit(monkeypatch, tmp_path, runs_per_gpu=1)
    assert str(raised.value) == "slurm: the jobs could not be submitted " + says


def test_cpu_jobs_ask_slurm_for_no_gpu_resource():
    """`#SBATCH --gpus-per-node=0` is an error on clusters without GPU resources; a CPU job leaves it out."""
    job = WorkerJob("s.toml", "r", "c", "cpu")
    params = submitit_parameters(job, "slurm", SlurmOptions(cpus_per_job=4), wants_gpu=False)
    assert "gpus_per_node" not in params and params["cpus_per_task"] == 4


def test_slurm_without_sbatch_is_one_line_before_any_data_is_prepared(monkeypatch, tmp_path):
    monkeypatch.setattr(grid.shutil, "which", lambda name: None)

    def prepare_spec(*args, **kwargs):
        raise AssertionError("data prepared for jobs that cannot be submitted")

    monkeypatch.setattr(prepare, "prepare_spec", prepare_spec)
    with pytest.raises(UserError, match=r"--launcher slurm: no `sbatch` on this machine"):
        run_grid(str(DEMO6), GridOptions(results=str(tmp_path / "results"), device="cuda", launcher="slurm"))


@pytest.mark.parametrize("executor, rank, tasks", [("slurm", "SLURM_PROCID", "SLURM_NTASKS"),
                                                   ("local", "SUBMITIT_LOCAL_GLOBALID", "SUBMITIT_LOCAL_NTASKS")])
def test_every_task_of_every_job_has_its_own_worker_number(executor, rank, tasks):
    """3 array jobs of 4 tasks each (Slurm numbers a job's tasks 0-3 in SLURM_PROCID, SLURM_NTASKS = 4;
    submitit's local executor likewise): 12 workers, numbered 0-11, so each starts at its own run."""
    numbers = [grid.worker_number(job, {"SUBMITIT_EXECUTOR": executor, tasks: "4", rank: str(r)})
               for job in range(3) for r in range(4)]
    assert sorted(numbers) == list(range(12))


def test_local_workers_inside_a_slurm_allocation_keep_their_own_numbers():
    """`bench grid --workers 4` typed in an `salloc --ntasks 4` shell (or run by an sbatch script) sees the
    allocation's SLURM_* variables, but its workers are not Slurm tasks: they are numbered 0-3."""
    allocation = {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "4"}
    assert [grid.worker_number(k, allocation) for k in range(4)] == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------------
# the tasks of one job end together


def _task(folder, rank, n_tasks, seconds, ends, how="return", start_grace=10.0, clock_ahead=0.0):
    """Task `rank`: works `seconds`, then records when its work ended and when `run_as_task` returned.
    `clock_ahead`: seconds the node's clock is ahead of the file system's (which stamps the lock files)."""
    import os
    import time

    from bench.run.tasks import run_as_task

    if clock_ahead:
        real_time = time.time
        time.time = lambda: real_time() + clock_ahead  # this process alone: it was forked

    def work():
        time.sleep(seconds)
        if how == "die":
            os._exit(1)  # killed mid-run: the kernel drops its lock
        if how == "fork" and os.fork() == 0:  # a loader worker outliving the work: it shares the lock file
            time.sleep(5)
            os._exit(0)
        ends.put((rank, "work", time.monotonic()))
        return rank

    run_as_task(work, folder, rank, n_tasks, log=lambda line: ends.put((rank, line, time.monotonic())),
                poll_seconds=0.05, start_grace=start_grace)
    ends.put((rank, "returned", time.monotonic()))


def _tasks(tmp_path, plan, start_grace=10.0, clock_ahead=0.0) -> dict:
    """Runs the tasks of `plan` ((seconds, how) per rank) as processes; `start_grace`: how long a task
    waits for a sibling's lock file to appear (generous: a loaded machine may start one late)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    ends = context.Queue()
    processes = [context.Process(target=_task, args=(tmp_path / "job", rank, len(plan), seconds, ends, how,
                                                     start_grace, clock_ahead))
                 for rank, (seconds, how) in enumerate(plan) if how != "never"]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    seen: dict = {}
    while not ends.empty():
        rank, what, when = ends.get()
        seen.setdefault(rank, {})[what if what in ("work", "returned") else "log"] = (when, what)
    return seen


def test_a_task_with_nothing_left_stays_until_its_siblings_are_done(tmp_path):
    """Slurm's signal before the time limit is answered by task 0 alone (submitit requeues from there);
    were task 0 to end while task 1 still trains, nobody would requeue the job and task 1's run would be
    killed at the limit. Task 0 finds nothing to claim at once; it returns only after task 1's work."""
    seen = _tasks(tmp_path, [(0.0, "return"), (1.0, "return")])
    assert seen[0]["returned"][0] >= seen[1]["work"][0]
    assert "waiting for task(s) 1 of this job" in seen[0]["log"][1]
    assert seen[1]["returned"][0] - seen[1]["work"][0] < 2.0  # the last one does not wait
    # and the other way round: srun's WaitTime kills the tasks still working that long after the first ends
    seen = _tasks(tmp_path / "mirror", [(1.0, "return"), (0.0, "return")])
    assert seen[1]["returned"][0] >= seen[0]["work"][0]
    assert "waiting for task(s) 0 of this job" in seen[1]["log"][1]


def test_a_task_on_a_node_whose_clock_is_ahead_of_the_file_servers_still_waits_for_its_siblings(tmp_path):
    """Whether a sibling's lock file is this attempt's was judged against the node's own clock: on a node
    200 s ahead of the file server every sibling's file looked like an earlier attempt's, and the task
    left ("never started") after the grace while its sibling still trained."""
    seen = _tasks(tmp_path, [(0.0, "return"), (1.5, "return")], start_grace=0.5, clock_ahead=200.0)
    assert seen[0]["returned"][0] >= seen[1]["work"][0]
    assert "never started" not in seen[0]["log"][1]


def test_a_sibling_that_died_or_never_started_is_not_waited_for(tmp_path):
    seen = _tasks(tmp_path, [(0.0, "return"), (0.3, "die")])
    assert "returned" in seen[0] and "work" not in seen.get(1, {})
    seen = _tasks(tmp_path / "b", [(0.0, "return"), (0.0, "never")], start_grace=0.5)  # given up after 0.5 s
    assert "task 1 of this job never started" in seen[0]["log"][1] and "returned" in seen[0]


def test_a_process_forked_by_a_task_does_not_keep_it_working(tmp_path):
    """flock locks belong to the open file, which a forked child (a DataLoader reader) shares: the task
    unlocks it explicitly when its work is done, so a lingering child does not hold its siblings back."""
    seen = _tasks(tmp_path, [(0.0, "return"), (0.3, "fork")])
    assert seen[0]["returned"][0] - seen[1]["work"][0] < 2.0  # not the child's 5 s


def test_an_earlier_attempts_lock_file_is_not_a_finished_sibling(tmp_path):
    """submitit's local executor restarts a job's tasks under the same job id: the previous attempt's
    unlocked file of task 1 is not this attempt's task 1 having finished."""
    import os
    import time

    (tmp_path / "job").mkdir()
    stale = tmp_path / "job" / "task-1.lock"
    stale.write_text("4242")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    seen = _tasks(tmp_path, [(0.0, "return"), (0.0, "never")])
    assert "task 1 of this job never started" in seen[0]["log"][1]


def test_a_task_that_cannot_keep_a_lock_file_works_alone(tmp_path):
    from bench.run.tasks import run_as_task

    (tmp_path / "file").write_text("")
    said = []
    assert run_as_task(lambda: "done", tmp_path / "file" / "job", 0, 2, log=said.append) == "done"
    assert "cannot keep a lock file" in said[0] and "will not wait" in said[0]


def test_the_requeued_worker_runs_as_the_task_submitit_says_it_is(monkeypatch, tmp_path):
    from bench.run import tasks

    calls = []
    monkeypatch.setattr(grid, "worker_entry", lambda job: ["run-a"])
    monkeypatch.setattr(tasks, "run_as_task", lambda work, folder, rank, n, log: calls.append((folder, rank, n))
                        or work())
    for name, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4242",
                        "SLURM_ARRAY_TASK_ID": "3", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "1",
                        "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1", "SLURM_RESTART_COUNT": "2",
                        "SUBMITIT_FOLDER": str(tmp_path / "slurm")}.items():
        monkeypatch.setenv(name, value)
    assert RequeuedWorker()(WorkerJob("spec.toml", "results", "index.json", "cuda")) == ["run-a"]
    ((folder, rank, n),) = calls
    assert (rank, n) == (1, 2) and folder == tmp_path / "slurm" / "tasks" / "4242_3-2"  # job 4242_3, requeued twice
    for name in ("SUBMITIT_EXECUTOR", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name)
    assert RequeuedWorker()(WorkerJob("spec.toml", "results", "index.json", "cuda")) == ["run-a"]  # no job
    assert len(calls) == 1


@pytest.mark.parametrize("rank", ["0", "1"])
def test_the_signal_before_the_time_limit_requeues_the_job_from_task_0(monkeypatch, tmp_path, rank):
    """Slurm's SIGUSR2 before the time limit reaches every task of a job as RequeuedWorker runs it, over
    submitit's own handlers: task 0 checkpoints the job and asks `scontrol requeue` for it (submitit's
    `checkpoint_and_try_requeue`, then exits); the other tasks train on, knowing the job is ending, so
    that an error its signal causes is not taken for their run's failure."""
    import os
    import signal

    from submitit.slurm.slurm import SlurmJobEnvironment

    from bench.core.interrupts import job_ending
    from bench.run import tasks

    asked = tmp_path / "scontrol.args"
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {asked}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    for name, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4243", "SLURM_ARRAY_JOB_ID": "4242",
                        "SLURM_ARRAY_TASK_ID": "3", "SLURM_PROCID": rank, "SLURM_NTASKS": "2",
                        "SLURM_LOCALID": rank, "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1",
                        "SUBMITIT_FOLDER": str(tmp_path / "slurm")}.items():
        monkeypatch.setenv(name, value)
    seen = []

    def worker_entry(job):
        os.kill(os.getpid(), signal.SIGUSR2)
        seen.append(job_ending())
        return ["run-a"]

    monkeypatch.setattr(grid, "worker_entry", worker_entry)
    monkeypatch.setattr(tasks, "run_as_task", lambda work, folder, rank, n, log: work())
    job = WorkerJob("spec.toml", "results", "index.json", "cuda")
    delayed = DelayedSubmission(RequeuedWorker(), job)
    delayed.set_timeout(60, 3)
    numbers = (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)
    before = {number: signal.getsignal(number) for number in numbers}
    try:
        SlurmJobEnvironment()._handle_signals(types.SimpleNamespace(submitted_pickle=tmp_path / "s.pkl"), delayed)
        if rank == "0":
            with pytest.raises(SystemExit):
                RequeuedWorker()(job)
            assert asked.read_text().split() == ["requeue", "4242_3"]
            assert pickle.loads((tmp_path / "s.pkl").read_bytes()).args == (job,)
        else:
            assert RequeuedWorker()(job) == ["run-a"]
            assert seen == [True] and not asked.exists()
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def test_each_task_of_the_job_script_gets_its_cpus(monkeypatch, tmp_path):
    """Slurm 22.05 to 23.02: srun does not inherit --cpus-per-task from sbatch, so a task started by
    the job script's srun line is bound to one CPU unless that line asks. The script submitit writes
    from the grid's parameters (its own SlurmExecutor; a stand-in `srun` on PATH) asks on both."""
    import os

    fake = tmp_path / "bin" / "srun"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    job = WorkerJob("spec.toml", "results", "index.json", "cuda", runs_per_gpu=2)
    params = submitit_parameters(job, "slurm", SlurmOptions(gpus_per_job=2, cpus_per_job=16), wants_gpu=True)
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="slurm")
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit", "0")
    (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
    assert "#SBATCH --cpus-per-task=4" in script and "#SBATCH --ntasks-per-node=4" in script
    assert "--cpus-per-task 4" in srun
    assert "#SBATCH --requeue" in script  # submitit's `scontrol requeue` is refused for a job that is not


def _job_script(tmp_path, monkeypatch, slurm: SlurmOptions) -> str:
    """The job script submitit's own SlurmExecutor writes from the grid's parameters (a stand-in `srun`)."""
    import os

    fake = tmp_path / "bin" / "srun"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    job = WorkerJob("spec.toml", "results", "index.json", "cuda", runs_per_gpu=2)
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="slurm")
    executor.update_parameters(**submitit_parameters(job, "slurm", slurm, wants_gpu=True))
    return executor._executor._make_submission_file_text("python -m submitit.core._submit", "0")


def test_the_grids_slurm_options_reach_the_job_script(tmp_path, monkeypatch):
    """What `bench grid --launcher slurm` is given is what sbatch reads: the time limit in minutes, the
    partition, the memory in GB, the GPUs and the CPUs shared among a job's tasks."""
    from bench.cli import main

    given = []
    monkeypatch.setattr(grid, "run_grid", lambda spec, options: given.append(options) or 0)
    assert main(["grid", str(DEMO6), "--launcher", "slurm", "--time", "90", "--partition", "gpu", "--mem-gb", "64",
                 "--gpus", "2", "--cpus", "16", "--no-report"]) == 0
    lines = _job_script(tmp_path, monkeypatch, given[0].slurm).splitlines()
    for line in ("#SBATCH --time=90", "#SBATCH --partition=gpu", "#SBATCH --mem=64GB", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=4"):
        assert line in lines, line
    assert main(["grid", str(DEMO6), "--launcher", "slurm", "--no-report"]) == 0
    lines = _job_script(tmp_path, monkeypatch, given[1].slurm).splitlines()
    assert "#SBATCH --time=1440" in lines and "#SBATCH --gpus-per-node=1" in lines  # docs/running.md's defaults


def test_further_sbatch_options_reach_the_job_script(tmp_path, monkeypatch):
    """Clusters that want an account, a QOS or a constraint get them from --slurm-arg; one whose select
    plugin takes GPUs only as a generic resource (sbatch: "Requested GRES option unsupported by
    configured SelectType plugin" for --gpus-per-node) gets `--gres` instead of `--gpus-per-node`."""
    extra = grid.slurm_arguments(["account=proj1", "--qos=high", "constraint=a100", "exclusive"])
    script = _job_script(tmp_path, monkeypatch, SlurmOptions(gpus_per_job=2, cpus_per_job=16, extra=extra))
    for line in ("#SBATCH --account=proj1", "#SBATCH --qos=high", "#SBATCH --constraint=a100",
                 "#SBATCH --exclusive", "#SBATCH --gpus-per-node=2", "#SBATCH --requeue",
                 "#SBATCH --ntasks-per-node=4"):
        assert line in script.splitlines(), line
    gres = SlurmOptions(gpus_per_job=2, cpus_per_job=16, extra=grid.slurm_arguments(["gres=gpu:a100:2"]))
    script = _job_script(tmp_path, monkeypatch, gres)
    assert "#SBATCH --gres=gpu:a100:2" in script.splitlines() and "--gpus-per-node" not in script
    assert "#SBATCH --ntasks-per-node=4" in script.splitlines()  # 2 GPUs x 2 runs per GPU, as with --gpus


@pytest.mark.parametrize("given, says", [
    (["time=10"], "--slurm-arg time=10: the grid sets --time itself (give --time)"),
    (["gpus-per-node=4"], "--slurm-arg gpus-per-node=4: the grid sets --gpus-per-node itself (give --gpus)"),
    (["cpus_per_task=3"], "--slurm-arg cpus_per_task=3: the grid sets --cpus-per-task itself (give --cpus)"),
    (["array=0-3"], "--slurm-arg array=0-3: the grid sets --array itself"),
    (["mem-per-cpu=4G"], "--slurm-arg mem-per-cpu=4G: the grid sets --mem-per-cpu itself (give --mem-gb)"),
    (["cpus-per-gpu=8"], "--slurm-arg cpus-per-gpu=8: the grid sets --cpus-per-gpu itself (give --cpus)"),
    (["parsable"], "--slurm-arg parsable: the grid sets --parsable itself"),
    (["gres"], "--slurm-arg gres: give the generic resources, e.g. gres=gpu:1"),
    (["account="], "--slurm-arg 'account=': expected NAME=VALUE"),
    (["=x"], "--slurm-arg '=x': expected NAME=VALUE"),
])
def test_sbatch_options_the_grid_sets_or_that_are_no_option_are_refused(given, says):
    with pytest.raises(UserError) as raised:
        grid.slurm_arguments(given)
    assert str(raised.value).startswith(says)


@pytest.mark.parametrize("given, says", [
    ("gpus=2", "--slurm-arg gpus=2: the grid sets --gpus itself, and on the CPU (--device cpu) a job runs one task "
               "and asks for no GPU"),
    ("ntasks=4", "--slurm-arg ntasks=4: the grid sets --ntasks itself, and on the CPU (--device cpu) a job runs "
                 "one task and asks for no GPU"),
    ("tres-per-task=cpu:4", "--slurm-arg tres-per-task=cpu:4: the grid sets --tres-per-task itself, and on the CPU "
                            "(--device cpu) a job runs one task and asks for no GPU (give --cpus)"),
    ("time=10", "--slurm-arg time=10: the grid sets --time itself (give --time)"),
])
def test_on_the_cpu_an_sbatch_option_of_tasks_or_gpus_names_no_gpu_option(given, says):
    """--gpus and --runs-per-gpu are refused with --device cpu: the advice to give them instead would be
    followed by that refusal."""
    with pytest.raises(UserError) as raised:
        grid.slurm_arguments([given], on_the_cpu=True)
    assert str(raised.value) == says


@pytest.mark.parametrize("option, value", [("--slurm-arg", "comment=café"), ("--partition", "gpué")])
def test_a_slurm_option_the_locale_cannot_write_into_the_job_script_is_one_line(option, value, monkeypatch, capsys):
    """submitit writes the job script in the locale's encoding: under LC_ALL=C without Python's UTF-8 mode
    (ASCII) a non-ASCII value ended the submission in a UnicodeEncodeError, once the dataset was prepared;
    in any locale, so did a command-line byte that is not UTF-8 (Python's lone surrogate for it)."""
    import locale

    from bench.cli import main

    monkeypatch.setattr(grid, "run_grid", lambda spec, options: 0)
    assert main(["grid", str(DEMO6), "--launcher", "slurm", option, value, "--no-report"]) == 0  # UTF-8
    capsys.readouterr()
    undecodable = value.replace("é", "\udce9")
    with pytest.raises(UserError, match=f"^{option} .*: not text this locale's encoding .UTF-8. can write into the "):
        grid.in_job_script(undecodable, option)
    monkeypatch.setattr(locale, "getpreferredencoding", lambda do_setlocale=True: "ANSI_X3.4-1968")
    assert main(["grid", str(DEMO6), "--launcher", "slurm", option, value, "--no-report"]) == 2
    assert capsys.readouterr().err == (
        f"bench grid: error: {option} {value}: not text this locale's encoding (ANSI_X3.4-1968) can write into "
        "the Slurm job script; give it in UTF-8 under a UTF-8 locale (e.g. LC_ALL=C.UTF-8)\n")


def test_a_results_folder_the_locale_cannot_write_into_the_job_script_is_one_line(tmp_path, monkeypatch, capsys):
    """submitit names its folder, `<results>/<spec>/slurm`, in the job script's `#SBATCH --output` lines: a
    results folder the locale's encoding cannot write ended the submission in a UnicodeEncodeError, once
    the dataset was prepared."""
    import locale

    from bench.cli import main

    monkeypatch.setattr(grid, "run_grid", lambda spec, options: 0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locale, "getpreferredencoding", lambda do_setlocale=True: "ANSI_X3.4-1968")
    assert main(["grid", str(DEMO6), "--launcher", "slurm", "--results", "résults", "--no-report"]) == 2
    assert capsys.readouterr().err == (
        f"bench grid: error: --results {tmp_path / 'résults'}: not text this locale's encoding (ANSI_X3.4-1968) can "
        "write into the Slurm job script; give it in UTF-8 under a UTF-8 locale (e.g. LC_ALL=C.UTF-8)\n")
    assert main(["grid", str(DEMO6), "--launcher", "local", "--results", "résults", "--no-report"]) == 0  # no script


def test_gpus_as_a_generic_resource_must_be_as_many_as_gpus():
    job = WorkerJob("spec.toml", "results", "index.json", "cuda")
    with pytest.raises(UserError) as raised:
        submitit_parameters(job, "slurm", SlurmOptions(gpus_per_job=1, extra=grid.slurm_arguments(["gres=gpu:4"])),
                            wants_gpu=True)
    assert str(raised.value).startswith("--slurm-arg gres=gpu:4 asks for 4 GPU(s) a job, --gpus for 1")
    cpu = submitit_parameters(job, "slurm", SlurmOptions(extra=grid.slurm_arguments(["gres=tmpdisk:100"])),
                              wants_gpu=True)
    assert cpu["gpus_per_node"] == 1 and cpu["slurm_additional_parameters"]["gres"] == "tmpdisk:100"
    # sbatch's forms (no count is one GPU): gpu, gpu:N, gpu:TYPE, gpu:TYPE:N, beside other resources
    assert [grid.gres_gpus(g) for g in ("gpu", "gpu:2", "gpu:a100", "gpu:a100:4", "tmpdisk:100,gpu:2",
                                        "tmpdisk:100")] == [1, 2, 1, 4, 2, None]
    one = submitit_parameters(job, "slurm", SlurmOptions(extra=grid.slurm_arguments(["gres=gpu:a100"])),
                              wants_gpu=True)
    assert "gpus_per_node" not in one and one["tasks_per_node"] == 1


@pytest.mark.parametrize("answer, quieted", [
    # Slurm 22.05's sacct on a cluster with AccountingStorageType=accounting_storage/none, exactly
    ((1, "", "Slurm accounting storage is disabled\n"), True),
    ((0, "RUNNING\n", ""), False),
    ((1, "", "sacct: error: Problem talking to the database: Connection refused\n"), False),  # may answer later
    (FileNotFoundError(2, "No such file or directory: 'sacct'"), False),
])
def test_without_job_accounting_submitit_stops_asking_sacct(monkeypatch, answer, quieted):
    """On a cluster without job accounting every sacct call of submitit's watcher failed and printed
    sacct's line and submitit's warning for as long as the grid waited. Asked once, the answer turns
    the watcher's (submitit's own class) questions off; its jobs' states then stay unknown, which
    `wait_for_job` follows with squeue."""
    from submitit.slurm import slurm

    watcher = slurm.SlurmInfoWatcher(delay_s=600)
    monkeypatch.setattr(slurm.SlurmJob, "watcher", watcher)
    watcher.register_job("4242")

    def run(command, **kwargs):
        assert command[0] == "sacct" and command[-2:] == ["--jobs", "4242_0"]
        if isinstance(answer, Exception):
            raise answer
        return types.SimpleNamespace(returncode=answer[0], stdout=answer[1], stderr=answer[2])

    asked = []

    def check_output(command, **kwargs):
        asked.append(command)
        raise OSError("sacct failed")

    monkeypatch.setattr(grid.subprocess, "run", run)
    monkeypatch.setattr(slurm.subprocess, "check_output", check_output)  # what the watcher calls
    assert not_accounted("4242_0") is quieted  # the function itself: the suite stubs `grid.not_accounted`
    watcher.update()
    assert (asked == []) is quieted
    assert watcher.get_state("4242", mode="cache") == "UNKNOWN"


def test_the_submitter_says_once_how_it_follows_jobs_without_accounting(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(grid, "not_accounted", lambda job_id: True)
    submit(monkeypatch, tmp_path, [StubJob(1, 2)], workers=1, runs_per_gpu=2)
    out = capsys.readouterr().out
    assert out.count("sacct: Slurm accounting storage is disabled on this cluster: the jobs are followed by their "
                     "result files and squeue") == 1
