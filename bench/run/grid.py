"""`bench grid`: expand a spec, prepare its data, run what is not done, summarise what is.

Launchers:
- `local`: N worker processes on this machine. With CUDA, `runs_per_gpu` workers per visible GPU
  (each claims a GPU slot, `bench.run.gpus`); on the CPU the cores are shared between them.
- `slurm`: N Slurm jobs through submitit (partition, time, GPUs and CPUs per job), all working on the
  same results folder (it must be on a shared file system); each job runs `runs_per_gpu` workers per
  GPU as Slurm tasks. `submitit-local` runs the very same path with submitit's local executor,
  without a cluster. The device is resolved by each worker where it runs, never on the login node.
Every launcher runs `worker_entry` with a frozen `WorkerJob`, and runs are claimed with locks
(`bench.run.runner`), so workers, launchers and `--shard i/n` can be mixed freely on one results folder.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import (
    RERUN_TO_CONTINUE,
    DeviceFailure,
    Interrupted,
    UserError,
    exit_description,
    first_line,
    one_line,
)
from bench.core.interrupts import (
    accept_interrupts,
    interrupt_when_parent_dies,
    interrupts_deferred,
    interrupts_held,
    interrupts_noted,
    noting_job_signals,
    semaphores_named,
    terminated,
    when_process_ends,
)
from bench.core.layout import ERROR, RUNS, spec_dir, spec_folder_problem
from bench.core.machine import usable_cpus
from bench.core.output import discard_if_closed, set_up_standard_output
from bench.core.paths import folder_path, writable_folder
from bench.core.store import CompileCacheError, LocksUnsupported, is_misplaced, is_resource_error
from bench.run.gpus import exclusive_gpus, listed_mig_instances, mig_instances
from bench.run.runner import (
    RunLock,
    log_to_stdout,
    read_result,
    remove_finished_checkpoint,
    run_dir,
    run_states,
    shard,
    worker_loop,
)
from bench.run.status import progress_line
from bench.spec import Spec, load_spec, spec_warnings

MAX_RUNS_PER_GPU = 4
"""Upper bound of the automatic runs-per-GPU choice (more runs mostly add contention)."""

CUDA_CONTEXT_BYTES = 2**30
"""What each worker's CUDA context holds on its GPU beside its allocator's blocks (the kernels of torch,
cuBLAS and cuDNN as they are loaded): about 0.5-1 GiB with lazy module loading; no allocator statistic
counts it, so the automatic choice allows this much per run. `make gpu-check`'s P3 reports the measured one."""

ACTION_WORDS = {"run": "to run", "resume": "to resume", "skip": "done", "skip-failed": "failed (skipped)",
                "skip-running": "running in another worker",
                "skip-unseen": "done on another host (not visible here yet)"}
"""How the grid's header names what it will do with runs (`bench.run.runner.RunState.action`)."""

INTERRUPT_GRACE_SECONDS = 10.0
"""After Ctrl-C, how long local workers get to stop their runs and say where they will resume."""


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_minutes: int = 24 * 60
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int | None = None
    gpu_mem_gb: float | None = None
    """Memory of one GPU of the compute nodes, which the submitting machine cannot see: what chooses
    `--runs-per-gpu` for Slurm jobs when it is not given."""
    extra: tuple[tuple[str, str | bool], ...] = ()
    """Further sbatch options (`--slurm-arg NAME=VALUE`: an account, a QOS, a constraint, GPUs as a
    generic resource), as (long option name, value; True for a flag)."""


SET_BY_THE_GRID = {
    "array": None, "ntasks-per-node": "--gpus x --runs-per-gpu", "ntasks": "--gpus x --runs-per-gpu",
    "ntasks-per-gpu": "--runs-per-gpu", "cpus-per-task": "--cpus", "cpus-per-gpu": "--cpus", "nodes": None,
    "time": "--time", "partition": "--partition", "mem": "--mem-gb", "mem-per-cpu": "--mem-gb",
    "mem-per-gpu": "--mem-gb", "gpus-per-node": "--gpus", "gpus": "--gpus", "gpus-per-task": "--gpus",
    "tres-per-task": "--gpus and --cpus", "requeue": None, "signal": None, "output": None, "error": None,
    "job-name": None, "open-mode": None, "parsable": None,
}
"""sbatch options the grid's jobs are submitted with (submitit's and its own), or that contradict them
(memory per CPU beside `--mem`, CPUs per GPU beside `--cpus-per-task`, tasks or GPUs counted otherwise;
`--parsable` changes the answer submitit reads the job id from): `--slurm-arg` cannot give them, and
says which option of `bench grid` sets each."""

ON_THE_CPU = {"ntasks-per-node": None, "ntasks": None, "ntasks-per-gpu": None, "gpus-per-node": None, "gpus": None,
              "gpus-per-task": None, "tres-per-task": "--cpus"}
"""What sets each of SET_BY_THE_GRID's options of tasks and GPUs where the grid runs on the CPU, whose jobs
run one task and ask for no GPU: no option of `bench grid` (None), or `--cpus`."""

GPU_GRES = re.compile(r"^gpu(?::([^:,]+))?(?::(\d+))?$")
"""A generic resource request of GPUs: `gpu`, `gpu:N`, `gpu:TYPE` or `gpu:TYPE:N` (no count is one)."""


def gres_gpus(gres: str) -> int | None:
    """The GPUs a `--gres` value asks for per node, None where it asks for none."""
    counts = []
    for part in gres.split(","):
        match = GPU_GRES.match(part.strip())
        if match:
            kind, count = match.groups()
            counts.append(int(count) if count else int(kind) if kind and kind.isdigit() else 1)
    return sum(counts) if counts else None


def in_job_script(text: str, option: str) -> str:
    """`text` (an option's value, given as `option`), where the locale's encoding can write it into a Slurm
    job script, which submitit writes in that encoding: under LC_ALL=C without Python's UTF-8 mode a
    non-ASCII `--slurm-arg comment=café` or `--partition`, and in any locale a byte of the command line
    that is not UTF-8, ended the submission in a UnicodeEncodeError."""
    import locale

    encoding = locale.getpreferredencoding(False)
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        raise UserError(f"{option} {text}: not text this locale's encoding ({encoding}) can write into the "
                        "Slurm job script; give it in UTF-8 under a UTF-8 locale (e.g. LC_ALL=C.UTF-8)") from None
    return text


def slurm_arguments(texts: list[str], on_the_cpu: bool = False) -> tuple[tuple[str, str | bool], ...]:
    """`--slurm-arg` values (NAME=VALUE, or NAME for a flag; NAME as sbatch spells its long option,
    leading dashes and underscores forgiven), in order; one-line errors for what cannot be one (naming the
    option of `bench grid` that sets it, none for a job's tasks and GPUs `on_the_cpu`)."""
    parsed: dict[str, str | bool] = {}
    for text in texts:
        name, sep, value = in_job_script(text, "--slurm-arg").partition("=")
        name = name.strip().lstrip("-").replace("_", "-").lower()
        if not re.fullmatch(r"[a-z][a-z0-9-]*", name) or (sep and not value.strip()):
            raise UserError(f"--slurm-arg {text!r}: expected NAME=VALUE (an sbatch long option, e.g. account=proj1, "
                            "qos=normal, constraint=a100, gres=gpu:a100:1) or NAME alone for a flag")
        if name in SET_BY_THE_GRID:
            if on_the_cpu and name in ON_THE_CPU:
                instead = ON_THE_CPU[name]
                raise UserError(f"--slurm-arg {text}: the grid sets --{name} itself, and on the CPU (--device cpu) "
                                "a job runs one task and asks for no GPU" + (f" (give {instead})" if instead else ""))
            instead = SET_BY_THE_GRID[name]
            raise UserError(f"--slurm-arg {text}: the grid sets --{name} itself"
                            + (f" (give {instead})" if instead else ""))
        if name == "gres" and not sep:
            raise UserError(f"--slurm-arg {text}: give the generic resources, e.g. gres=gpu:1 or gres=gpu:a100:2")
        parsed[name] = value.strip() if sep else True
    return tuple(parsed.items())


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs, in one picklable value (spawned processes and Slurm jobs)."""

    spec_path: str
    results: str
    cache_index: str
    """The waveform cache's index file of this spec's labelling (`WaveformCache.from_index`)."""
    device: str
    """"auto", "cpu" or "cuda": resolved by the worker on the machine it runs on."""
    retry_grid: str | None = None
    """`--retry-failed`: this grid's token (`provenance.grid` of the failures its workers record): retry
    the runs whose failure another grid recorded, not those that fail again meanwhile, whatever the
    hosts' clocks say."""
    shard_index: int = 0
    shard_count: int = 1
    runs_per_gpu: int = 1
    worker: int = 0
    threads: int | None = None
    quiet: bool = False
    """No line per epoch (runs, results and problems are still printed)."""
    visible_devices: str | None = None
    """The `CUDA_VISIBLE_DEVICES` the worker sets before it touches CUDA: a submitit-local job's, whose
    executor numbers the GPUs 0..n-1 itself, gets the grid's own selection back (indices or UUIDs)."""
    prefix: str = ""
    """Put before each line the worker prints: "[w1] " when several local workers share one terminal,
    so that an epoch line says whose it is."""
    workers_here: int | None = None
    """The grid's worker processes on this machine, which share its CPUs (local workers, every task of
    every submitit-local job); None for Slurm tasks, which have their own."""
    grid_pid: int | None = None
    """The process of the grid that submitted a submitit-local job: its tasks stop when it is gone (they
    are this machine's processes, which a Ctrl-C before they had started would miss)."""
    spec: Spec | None = None
    """The spec as the grid planned it: a worker trains its runs, not what the file says when the worker
    starts (a Slurm job may start hours later, or be requeued days later, after an edit); None reads
    `spec_path`."""


def parse_shard(text: str | None) -> tuple[int, int]:
    """(i, n) of `--shard i/n`; (0, 1) where it is not given. An empty one is refused: each task of a job
    array whose $SLURM_ARRAY_TASK_ID was unset would have run the whole grid."""
    if text is None:
        return 0, 1
    if not text.strip():
        raise UserError(f"--shard {text!r}: empty (an unset variable, such as $SLURM_ARRAY_TASK_ID?); give i/n, "
                        "e.g. 0/4")
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < n")
    return index, count


def worker_device(name: str, worker: int, runs_per_gpu: int, log=print, workers_here: int | None = None):
    """(torch device, GpuClaim or None) for a worker on this machine: a GPU slot where CUDA is
    visible and wanted, else the CPU; `--device cuda` without CUDA here is a user error. `workers_here`:
    the grid's worker processes on this machine, where known (they share its CPUs)."""
    import torch

    from bench.run.gpus import claim_gpu, describe, mig_instances, visible_identities
    from bench.train.loop import resolve_device

    instances = mig_instances() if name != "cpu" else []
    claim = None
    if instances:  # CUDA would show this process the first alone: it is told of the one it claims before it starts
        claim = dataclasses.replace(claim_gpu(instances, runs_per_gpu, worker), index=0)
        os.environ["CUDA_VISIBLE_DEVICES"] = claim.identity
    try:
        device = resolve_device(name)
    except BaseException as exc:
        if claim is not None:
            claim.release()
            if isinstance(exc, UserError):  # one line, as for a GPU that refuses its worker
                raise DeviceFailure(f"MIG instance {claim.identity}: {one_line(exc)}") from None
        raise
    if device.type != "cuda":
        if claim is not None:
            claim.release()
            # the instance was named, and CUDA shows no device with it (a typo, an instance destroyed since):
            # its worker would train at CPU speed among the GPU runs
            from bench.train.devices import why_no_cuda

            raise DeviceFailure(f"MIG instance {claim.identity}: CUDA shows no device on it "
                                f"({why_no_cuda() or 'torch sees no CUDA device'}); `nvidia-smi -L` lists the "
                                "instances there are")
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and name == "auto":
            # the job asked Slurm for GPUs (`--device auto` does, unlike `--device cpu`): a node whose CUDA is
            # unusable would train every run it claims at CPU speed, recorded as if nothing were wrong
            from bench.train.devices import why_no_cuda

            raise DeviceFailure(f"worker {worker} on {socket.gethostname()}: the job asked Slurm for GPUs, but CUDA "
                                f"is not usable here ({why_no_cuda() or 'torch sees no CUDA device'}); its runs are "
                                "left to the next grid (--device cpu trains on CPUs)")
        return device, None
    from bench.train.fastpath import limit_worker_threads, set_runs_per_gpu

    try:
        claim = claim or claim_gpu(visible_identities(), runs_per_gpu, worker)
        torch.cuda.set_device(claim.index)  # makes the CUDA context: a busy or exclusive GPU refuses it here
    except RuntimeError as exc:  # CUDA's errors (AcceleratorError among them): one line, not a traceback per worker
        where = f"cuda:{claim.index} ({claim.identity})" if claim is not None else "this machine's GPUs"
        if claim is not None:
            claim.release()
        raise DeviceFailure(f"CUDA could not start on {where}: {first_line(exc)}") from None
    # beyond its slots, its waveform copy's share of the GPU is counted among everyone on it
    set_runs_per_gpu(max(runs_per_gpu, claim.sharing), len(instances) or None, workers_here)
    limit_worker_threads()
    log(f"worker {worker} (pid {os.getpid()}) on {describe(claim, runs_per_gpu)}")
    return torch.device("cuda", claim.index), claim


def worker_number(index: int, environ: Mapping[str, str]) -> int:
    """A worker's number in its grid, which sets the run it starts at and where its GPU search begins:
    `index` (a local worker's, or a submitit job's array index) alone, or for a task of a submitit job
    (Slurm's or the local executor's, as SUBMITIT_EXECUTOR says), the job's index times its tasks plus
    the task's rank in the job, so that no two tasks of a grid share a number (index + rank gave job 1's
    first task and job 0's second the same). A grid started inside some other Slurm allocation is not
    such a task: its SLURM_* variables are the allocation's."""
    ranks = {"slurm": ("SLURM_PROCID", "SLURM_NTASKS"),
             "local": ("SUBMITIT_LOCAL_GLOBALID", "SUBMITIT_LOCAL_NTASKS")}.get(environ.get("SUBMITIT_EXECUTOR", ""))
    if ranks is None or ranks[0] not in environ:
        return index
    return index * int(environ.get(ranks[1], "1")) + int(environ[ranks[0]])


def worker_entry(job: WorkerJob) -> list[str]:
    """What every worker runs (in-process, spawned, or as a Slurm job): claim and run runs until none is left."""
    import torch

    from bench.data.cache import WaveformCache

    if job.visible_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = job.visible_devices
    if job.threads:
        torch.set_num_threads(job.threads)
    worker = worker_number(job.worker, os.environ)
    spec = job.spec if job.spec is not None else load_spec(job.spec_path)
    runs = shard(spec.runs(), job.shard_index, job.shard_count)
    if worker and runs:  # start at different runs to keep workers apart
        offset = worker % len(runs)
        runs = runs[offset:] + runs[:offset]
    cache = WaveformCache.from_index(job.cache_index)
    opened = {}

    def cache_for(rate: int):
        if rate not in opened:
            opened[rate] = cache.open(rate)
        return opened[rate]

    say = (lambda message: log_to_stdout(job.prefix + message)) if job.prefix else log_to_stdout
    device, claim = worker_device(job.device, worker, job.runs_per_gpu, say, job.workers_here)
    epoch_log = (lambda message: None) if job.quiet else say
    started = time.time()

    def progress() -> None:
        say(progress_line(spec, job.results, started, job.retry_grid))

    try:
        return worker_loop(spec, Path(job.results), runs, cache_for, device, job.retry_grid, say,
                           epoch_log, progress)
    finally:
        if claim is not None:
            claim.release()


STOPS_THE_GRID = (OSError, LocksUnsupported)
"""What a local worker hands back instead of raising (a full disk, a file system without locks): every
worker that met it stopped, and the grid raises it once, as the CLI's one line."""


def pool_worker_entry(job: WorkerJob) -> list[str] | Interrupted | OSError | LocksUnsupported:
    """`worker_entry` in a local worker process: Ctrl-C (which the terminal sends to every process of
    the grid) comes back as a value saying where the run resumes, not as a traceback per process; so
    does a full disk or a forbidden folder (`is_resource_error`), a folder where a file belongs or the
    reverse (`is_misplaced`), or a file system without locks, which the parent reports in one line."""
    try:
        return worker_entry(job)
    except Interrupted as exc:
        return exc
    except KeyboardInterrupt:
        return Interrupted(RERUN_TO_CONTINUE)
    except LocksUnsupported as exc:
        return exc
    except OSError as exc:
        if is_resource_error(exc) or is_misplaced(exc):
            # the plain error, which pickles (torch.compile's folder kept as such)
            kind = CompileCacheError if isinstance(exc, CompileCacheError) else OSError
            return kind(exc.errno, exc.strerror, exc.filename, None, exc.filename2)
        raise
    except DeviceFailure as exc:  # one line, and the worker ends (the parent reports it as stopped)
        print(f"bench grid: worker {job.worker}: {one_line(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def header(spec: Spec, runs: list, results_root: Path, states, shard_index: int = 0, shard_count: int = 1) -> str:
    """The grid's first line, e.g. "demo: 6 runs in results/demo: 5 to run, 1 running in another worker"."""
    counts = Counter(s.action for s in states)
    what = ", ".join(f"{counts[a]} {ACTION_WORDS[a]}" for a in ACTION_WORDS if counts[a])
    if not runs:  # a job array of more tasks than runs: run k is shard k mod n's
        total = len(spec.runs())
        what = ("nothing to do (the spec's " + (f"{total} runs are in shards 0-{total - 1}" if total > 1 else
                                                "1 run is in shard 0") + f" of {shard_count})")
    where = f" (shard {shard_index}/{shard_count})" if shard_count > 1 else ""
    return f"{spec.name}: {len(runs)} run{'s' if len(runs) != 1 else ''}{where} in {results_root / spec.name}: {what}"


def check_inputs(spec: Spec, data: str | None, results: str | Path | None, cache: str | None,
                 dry_run: bool) -> Path | None:
    """The paths the grid will write, checked before anything is created or prepared: the results
    root, the cache root (an existing one that cannot be written: once its dataset is read, where the cache
    is not whole) and where the synthetic dataset is generated; a real dataset is checked by its reader,
    before any folder is made. A dry run writes nothing, so it may look at a read-only results
    folder (an archive): only a file in the way is an error. Returns the results root (if given)."""
    from bench.data.datasets import cache_option, cache_root, dataset_option, dataset_root, synthetic_is_current

    if results is not None and (problem := spec_folder_problem(results, spec.name)):
        raise UserError(f"--results {results}: {problem}")
    if dry_run:  # only what is in the way
        folder_path(cache_root(cache), cache_option(cache))
        return folder_path(results, "--results")[0] if results is not None else None
    results_root = writable_folder(results, "--results") if results is not None else None
    try:
        writable_folder(cache_root(cache), cache_option(cache))
    except UserError:  # one prepared there may be whole (a lab's on read-only storage): `prepare_spec` checks
        if not cache_root(cache).is_dir():  # once it has read the dataset
            raise
    root = dataset_root(spec.dataset, data, spec.path)
    # generated there when absent (read only where it is whole: a read-only copy, another user's); other
    if spec.dataset.name == "synthetic" and not synthetic_is_current(root, spec.dataset):  # readers name
        writable_folder(root, dataset_option(data, spec.path))  # what they miss
    return results_root


@dataclass(frozen=True)
class GridOptions:
    """How `run_grid` runs a spec (`bench grid`'s options); checked when made."""

    data: str | None = None
    results: str = "results"
    cache: str | None = None
    device: str = "auto"
    workers: int | None = None
    launcher: str = "local"
    shard_text: str | None = None
    """"i/n" (`--shard`): this worker's share of the runs; None for all of them."""
    dry_run: bool = False
    retry_failed: bool = False
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    runs_per_gpu: int | None = None
    """None chooses from the GPUs' memory and the grid's footprint (`auto_runs_per_gpu`)."""
    quiet: bool = False
    """No progress bars and no line per epoch."""

    def __post_init__(self) -> None:
        if self.launcher not in ("local", "slurm", "submitit-local"):
            raise UserError(f"--launcher must be local, slurm or submitit-local, not {self.launcher!r}")
        if self.runs_per_gpu is not None and self.runs_per_gpu < 1:
            raise UserError(f"--runs-per-gpu must be >= 1, got {self.runs_per_gpu}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")


def launcher_problem(launcher: str) -> str | None:
    """Why the grid cannot submit its jobs from this machine, or None."""
    if launcher == "slurm" and shutil.which("sbatch") is None:
        return ("--launcher slurm: no `sbatch` on this machine; submit from a Slurm login node "
                "(or use --launcher local / submitit-local)")
    return None


RUN_SETTINGS = ("BENCH_COMPILE", "BENCH_RESIDENT")
"""The prefixes of the BENCH_* settings a grid's runs read (`check_environment`), not paths such as
BENCH_CACHE."""


def dry_run_says(spec: Spec, o: GridOptions, todo: list, results_root: Path) -> None:
    """What a dry run says after its runs (`todo`, those it would run or resume): the one-line error that
    would stop the grid before training, the first the grid meets, in its order (the dataset's location; a
    run's BENCH_* settings, the launcher, `--device cuda` or `--runs-per-gpu` on this machine, the Slurm
    jobs' shape and batches CUDA cannot index; a folder the synthetic dataset cannot be generated into), or
    the synthetic dataset it would generate first. Planning needs no data: a paper spec on a laptop is said,
    not refused. torch is imported only where a check asks for it (a plain dry run needs none; a Slurm one
    on GPUs checks the batches CUDA can index)."""
    from bench.data.datasets import check_root, dataset_option, dataset_root, synthetic_is_current
    from bench.data.synthetic import generation_problem

    synthetic = spec.dataset.name == "synthetic"
    option = dataset_option(o.data, spec.path)
    try:
        root = dataset_root(spec.dataset, o.data, spec.path)
        generated = synthetic and not synthetic_is_current(root, spec.dataset)
        if generated:  # generated where it is absent: the grid checks the folder can be written first
            writable_folder(root, option)
        elif not synthetic:
            check_root(spec.dataset, root)
        if any(name.startswith(RUN_SETTINGS) for name in os.environ):
            from bench.train.fastpath import check_environment

            check_environment()
        if problem := launcher_problem(o.launcher):
            raise UserError(problem)
        if o.launcher != "slurm" and (o.device == "cuda" or o.runs_per_gpu is not None):  # Slurm jobs check it
            device_here(o)  # on their node
        if o.launcher == "slurm":
            wants_gpu = o.device != "cpu"
            runs_per_gpu = o.runs_per_gpu or 1
            if wants_gpu:
                if o.runs_per_gpu is None:
                    runs_per_gpu, _ = chosen_runs_per_gpu(spec, o, todo, results_root)
                refuse_oversized_cuda_batches(todo)
            submitit_parameters(WorkerJob("", "", "", o.device, runs_per_gpu=runs_per_gpu), o.launcher, o.slurm,
                                wants_gpu)
        if generated and (problem := generation_problem(root)):
            raise UserError(problem)
    except UserError as exc:
        print(f"  would stop before training: {one_line(exc)}")
        return
    if generated:
        what = "replacing what is there (other clips, seed or clip length, an older generator, or files " \
               "missing)" if root.exists() and any(root.iterdir()) else "where there is none yet"
        print(f"  would first generate the synthetic dataset in {root}, {what}")


def run_grid(spec: Spec | str, options: GridOptions = GridOptions()) -> int:
    """Train the runs of `spec` (a loaded spec, or its file) not done yet. Returns the exit status: 0 when
    every run of the (shard of the) grid is done and ok, or is being trained by another live worker; 1
    when a run failed or was not run."""
    o = options
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    shard_index, shard_count = parse_shard(o.shard_text)
    runs = shard(spec.runs(), shard_index, shard_count)
    results_root = check_inputs(spec, o.data, o.results, o.cache, o.dry_run)
    for warning in spec_warnings(spec):
        print(f"bench grid: warning: {warning}", file=sys.stderr)
    states = run_states(spec, results_root, runs, o.retry_failed)
    if not o.dry_run and any(s.action in ("run", "resume") for s in states):
        from bench.data.datasets import check_root, dataset_root

        check_root(spec.dataset, dataset_root(spec.dataset, o.data, spec.path))  # before the grid says it starts
    # flushed: piped into a reader that has gone (`| head`), the grid stops here, before any work
    print(header(spec, runs, results_root, states, shard_index, shard_count), flush=True)
    if o.dry_run:
        for s in states:
            verb = {"run": "would run", "resume": "would resume"}.get(s.action, "skip")
            print(f"  {verb:12s} {s.run.run_id}  ({s.reason})")
        if runs_left := [s.run for s in states if s.action in ("run", "resume")]:
            dry_run_says(spec, o, runs_left, results_root)
        return 0
    for s in states:  # "skip" is an ok result: a checkpoint beside it (its worker was stopped before removing
        if s.action == "skip":  # it, or an earlier release kept them) is of no more use
            remove_finished_checkpoint(s.folder)
    todo = [s for s in states if s.action in ("run", "resume")]
    if todo and o.workers and o.workers > len(todo):  # no more workers or jobs than runs to run or resume:
        o = dataclasses.replace(o, workers=len(todo))  # each imports torch; their GPU and CPU shares follow
    if todo:
        # imported here, not above: a dry run (and a grid with nothing to do) needs neither torch nor sklearn
        from bench.run.prepare import prepare_spec
        from bench.train.devices import warn_of_cpu_fallback
        from bench.train.fastpath import check_environment

        check_environment()
        if problem := launcher_problem(o.launcher):  # before any data is prepared
            raise UserError(problem)
        # Local workers run here, so the device is checked here; Slurm jobs check it on their node.
        cuda_here = None
        if o.launcher != "slurm":
            device = device_here(o)
            cuda_here = device.type == "cuda"
            warn_of_cpu_fallback(o.device, device, "bench grid")  # before the data, which take a while
        if cuda_here:
            warn_of_unnamed_mig_instances()
        wants_gpu = cuda_here if o.launcher != "slurm" else o.device != "cpu"
        runs_per_gpu = o.runs_per_gpu
        if wants_gpu and runs_per_gpu is None:
            runs_per_gpu, why = chosen_runs_per_gpu(spec, o, [s.run for s in todo], results_root)
            print(f"runs per GPU: {runs_per_gpu} ({why}; --runs-per-gpu K sets it)")
        elif wants_gpu and o.launcher == "local" and o.workers:
            runs_per_gpu, _ = runs_the_workers_make(o, runs_per_gpu, "")
        if wants_gpu:
            refuse_oversized_cuda_batches([s.run for s in todo])
        if cuda_here:
            refuse_shared_exclusive_gpus(processes_per_gpu(o, runs_per_gpu or 1))
        if o.launcher == "slurm":  # the jobs' shape is checked before any data is prepared
            submitit_parameters(WorkerJob("", "", "", o.device, runs_per_gpu=runs_per_gpu or 1), o.launcher,
                                o.slurm, wants_gpu)
        _, waveforms, _ = prepare_spec(spec, o.data, o.cache, None, progress=not o.quiet)
        # absolute paths: Slurm jobs and spawned workers may start elsewhere. This machine's workers train on the
        # device the grid resolved (`auto`: CUDA where the grid saw it, else the CPU, as it said), Slurm's on what
        # their node has
        job = WorkerJob(spec_path=str(Path(spec.path).resolve()), results=str(results_root.resolve()),
                        cache_index=str(waveforms.index_path.resolve()),
                        device=o.device if o.launcher == "slurm" else device.type,
                        retry_grid=uuid.uuid4().hex if o.retry_failed else None,
                        shard_index=shard_index, shard_count=shard_count, quiet=o.quiet,
                        runs_per_gpu=runs_per_gpu or 1, spec=spec)
        crashed: list[str] = []
        if o.launcher == "local":
            n_workers = min(o.workers or ((_gpu_count() * job.runs_per_gpu) if cuda_here else 1), len(todo))
            crashed = _launch_local(dataclasses.replace(job, workers_here=n_workers), n_workers, cuda_here)
        else:
            if o.launcher == "submitit-local" and wants_gpu:  # each job runs K workers on every GPU here
                job = dataclasses.replace(job, workers_here=processes_per_gpu(o, job.runs_per_gpu)[0] * _gpu_count())
            n_jobs = o.workers or 1
            if o.launcher == "submitit-local" and not wants_gpu:  # its jobs share this machine's CPUs, as workers do
                job = dataclasses.replace(job, threads=max(1, usable_cpus() // n_jobs))
            _launch_submitit(job, n_jobs, o.launcher, o.slurm, results_root / spec.name / "slurm", wants_gpu)
        return summarise(spec, results_root, runs, crashed)
    return summarise(spec, results_root, runs)


def _gpu_count() -> int:
    """The GPUs the grid's workers spread over: the MIG instances `CUDA_VISIBLE_DEVICES` names (a
    process sees one of them), else those CUDA shows."""
    from bench.run import gpus

    return len(mig_instances()) or max(1, gpus.cuda_device_count())


def warn_of_unnamed_mig_instances(run=None) -> None:
    """With `CUDA_VISIBLE_DEVICES` unset, CUDA shows a process one MIG instance of a partitioned GPU,
    so the whole grid would train on the first: the line says what to set to use them all."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return
    listed = listed_mig_instances(run)
    if len(listed) > 1:
        print(f"bench grid: warning: nvidia-smi lists {len(listed)} MIG instances and CUDA shows a process "
              f"only the first; to train on each, set CUDA_VISIBLE_DEVICES={','.join(listed)}", file=sys.stderr)


def device_here(o: GridOptions):
    """The device this machine's workers train on (`--device auto`: CUDA where there is one, else the
    CPU); `--runs-per-gpu` where it is the CPU is refused, not ignored."""
    from bench.train.loop import resolve_device

    device = resolve_device(o.device)
    if o.runs_per_gpu is not None and device.type != "cuda":
        raise UserError(f"--runs-per-gpu: only for GPUs (this grid runs on the CPU: --device {o.device} finds no "
                        "CUDA device on this machine)")
    return device


def chosen_runs_per_gpu(spec: Spec, o: GridOptions, runs, results_root: Path) -> tuple[int, str]:
    """The runs per GPU (and why) where `--runs-per-gpu` is not given: what a GPU's memory allows
    (`auto_runs_per_gpu`: this machine's GPUs, or `--gpu-mem-gb` for Slurm's nodes), as the workers make
    it; 1 for Slurm jobs without `--gpu-mem-gb`."""
    if o.launcher == "slurm" and not o.slurm.gpu_mem_gb:  # this machine's GPUs are not the nodes'
        return 1, "the compute nodes' GPU memory is not known here; --gpu-mem-gb GB gives it"
    total = int(o.slurm.gpu_mem_gb * 2**30) if o.launcher == "slurm" else None
    runs_per_gpu, why = auto_runs_per_gpu(spec, runs, results_root, total)
    return runs_the_workers_make(o, runs_per_gpu, why)


def runs_the_workers_make(o: GridOptions, runs_per_gpu: int, why: str) -> tuple[int, str]:
    """The runs per GPU (and why) that the grid's workers on this machine make of the K the GPUs' memory
    allows: local `--workers N` on G GPUs put ceil(N / G) on a GPU where that is fewer (a worker's share
    of its GPU and of the CPUs is then larger); N submitit-local jobs each run K per GPU, so each gets
    K / N (at least 1) to keep within the memory."""
    if o.launcher == "local" and o.workers:
        spread, asked = processes_per_gpu(o, runs_per_gpu)  # ceil(N / G)
        if spread < runs_per_gpu:
            return spread, f"{asked}; the memory allows {runs_per_gpu}" + (f": {why}" if why else "")
    if o.launcher == "submitit-local" and (o.workers or 1) > 1:
        per_job = max(1, runs_per_gpu // o.workers)
        return per_job, f"{why}, shared by --workers {o.workers} submitit-local jobs: {per_job} each"
    return runs_per_gpu, why


def processes_per_gpu(o: GridOptions, runs_per_gpu: int) -> tuple[int, str]:
    """How many of this grid's worker processes one GPU of this machine gets at most, and the options
    that ask for them: `--runs-per-gpu K`, or more `--workers` than GPUs (local workers spread over
    them), or several submitit-local jobs (each runs K workers on every GPU)."""
    if o.launcher == "submitit-local":
        jobs = o.workers or 1
        return jobs * runs_per_gpu, f"--workers {jobs} x --runs-per-gpu {runs_per_gpu}"
    if o.workers:
        gpus = _gpu_count()
        return -(-o.workers // gpus), f"--workers {o.workers} on {gpus} GPU(s)"
    return runs_per_gpu, f"--runs-per-gpu {runs_per_gpu}"


def refuse_shared_exclusive_gpus(per_gpu: tuple[int, str]) -> None:
    """Several worker processes per GPU where a visible GPU takes one process at a time: every worker
    after the first on it would fail to start CUDA, so the grid stops before it starts them."""
    count, asked = per_gpu
    exclusive = exclusive_gpus() if count > 1 else []
    if exclusive:
        raise UserError(f"{asked}: {count} processes per GPU, but GPU {', '.join(exclusive)} lets one process at "
                        "a time use it, so a second worker on it could not start CUDA; use --runs-per-gpu 1 and "
                        "at most one worker per GPU")


def refuse_oversized_cuda_batches(runs) -> None:
    """A training batch with a tensor CUDA's kernels cannot index fails its run with an illegal memory
    access, after which the worker's GPU is unusable: the grid stops before it starts, naming the
    first such configuration and the largest batch_size that fits."""
    from bench.train.fastpath import cuda_batch_problem

    shapes: dict = {}  # one run per input shape: seeds and log compression share it
    for run in runs:
        shapes.setdefault(run.configuration.cost_key, run)
    found = [problem for problem in map(cuda_batch_problem, shapes.values()) if problem]
    if found:
        more = f" (and {len(found) - 1} more configuration(s) of the grid)" if len(found) > 1 else ""
        raise UserError(f"{found[0]}{more}")


def auto_runs_per_gpu(spec: Spec, runs, results_root: Path, memory_bytes: int | None = None,
                      held_here: int = 0) -> tuple[int, str]:
    """How many runs share one GPU: half of the memory the grid has on it is for the runs' weights,
    optimiser state and activations (the other half for waveform copies), divided by the largest
    footprint of the runs to do (the peak measured by a finished run of the same configuration where
    there is one, else the estimate of `bench.cost.gmac.training_footprint_bytes`: training, evaluation
    and the served throughput, whichever holds most) plus a CUDA context (CUDA_CONTEXT_BYTES); at most
    MAX_RUNS_PER_GPU. `memory_bytes` is one
    GPU's memory where it is given (`--gpu-mem-gb`); None measures the least free memory among the
    visible GPUs now, so that what other processes hold is not counted as the grid's; `held_here` is
    what the calling process holds on the GPU itself (none in a grid), counted free as a grid would find it."""
    from bench.cost.gmac import training_footprint_bytes
    from bench.train.latency import cuda_passes_without_grad

    given = memory_bytes is not None
    if memory_bytes is None:
        exclusive = exclusive_gpus()
        if exclusive:  # a second process on such a GPU fails to start CUDA
            return 1, f"GPU {', '.join(exclusive)} lets one process at a time use it"
        free = _gpu_free_bytes()
        memory_bytes = free + held_here if free else 0
    measured = _measured_peaks(spec, results_root)
    footprints: dict = {}  # one per input shape: seeds and log compression share it
    sources = set()
    for run in runs:
        key = run.configuration.cost_key
        if key in footprints:
            continue
        sources.add("measured" if key in measured else "estimated")
        footprints[key] = measured[key] if key in measured else training_footprint_bytes(
            run, cuda_passes_without_grad(run.protocol.batch_size, run.protocol.precision))
    largest = max(footprints.values())
    k = int(max(1, min(MAX_RUNS_PER_GPU, (0.5 * memory_bytes) // (largest + CUDA_CONTEXT_BYTES))))
    return k, (f"largest footprint {largest / 2**30:.1f} GiB ({' and '.join(sorted(sources))}) "
               f"on {memory_bytes / 2**30:.0f} GiB{'' if given else ' free'}")


def _measured_peaks(spec: Spec, results_root: Path) -> dict:
    peaks: dict = {}
    for run in spec.runs():
        result = read_result(run_dir(results_root, spec, run))
        cost = (result or {}).get("cost") or {}
        # what the run held from the GPU: its allocator's reserved peak (results before it: the allocated one)
        peak = max((v for v in (cost.get("peak_reserved_bytes"), cost.get("peak_memory_bytes")) if isinstance(v, int)),
                   default=None)
        if peak is not None and peak > 0:
            key = run.configuration.cost_key
            peaks[key] = max(peaks.get(key, 0), peak)
    return peaks


# torch's CUDA state initialised first: device_count() then counts what CUDA shows (`gpus.cuda_device_count`)
FREE_MEMORY_PROBE = ("import torch; torch.cuda.init(); "
                     "print(min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())))")


def _gpu_free_bytes() -> int:
    """The least free memory among the visible GPUs, in bytes, measured by a short child process: a CUDA
    context in this one would hold memory on every GPU for the grid's whole life. One child per MIG
    instance where `CUDA_VISIBLE_DEVICES` names several (a process sees one). 0 (one run per GPU)
    where it cannot be measured."""
    views = [{**os.environ, "CUDA_VISIBLE_DEVICES": instance} for instance in mig_instances()] or [None]
    try:
        return min(max(0, int(subprocess.run([sys.executable, "-c", FREE_MEMORY_PROBE], capture_output=True,
                                             text=True, timeout=300, check=True, env=env).stdout.split()[-1]))
                   for env in views)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0


def _launch_local(job: WorkerJob, n_workers: int, cuda: bool) -> list[str]:
    """Run the workers here, one fresh spawned process each (each claims its own GPU slot). Ctrl-C,
    which the terminal sends to every process, raises one `Interrupted` saying where each run resumes;
    so does a SIGTERM to this process (`bench.core.interrupts`), which it passes on to the workers."""
    if n_workers == 1 and not mig_instances():  # on MIG a worker names its instance before CUDA starts: not here
        if not cuda:  # torch's default is every core: a CPU quota (a container's --cpus) bounds it, as below
            import torch

            job = dataclasses.replace(job, threads=min(torch.get_num_threads(), usable_cpus()))
        worker_entry(job)
        return []
    threads = None if cuda else max(1, usable_cpus() // n_workers)
    context = multiprocessing.get_context("spawn")
    with semaphores_named():
        outcomes = context.SimpleQueue()
    processes = [context.Process(target=_worker_process, args=(dataclasses.replace(job, worker=k, threads=threads,
                                                                                    prefix=f"[w{k}] "),
                                                                outcomes), name=f"bench-worker-{k}")
                 for k in range(n_workers)]
    interrupted, told = False, []

    def tell_workers() -> None:  # as Ctrl-C, once: each stops its run and says where it resumes
        if told:
            return
        with interrupts_held():  # a second signal meanwhile is noted, not raised halfway through the workers
            for process in processes:
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
        told.append(True)

    try:
        with interrupts_held() as came:  # a worker takes Ctrl-C once it has imported what it runs
            for process in processes:
                process.start()
        if came():  # during the starts: a worker started after it never got it
            tell_workers()
            raise KeyboardInterrupt
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        interrupted = True
        if terminated():  # the SIGTERM came to this process alone
            tell_workers()
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        for process in processes:  # they got the same Ctrl-C and are stopping their runs
            if process.pid is not None:
                process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()  # its run lock goes with it; the run resumes from its checkpoint
            process.join()
    returned = []
    while not outcomes.empty():
        returned.append(outcomes.get())
    hints = [str(r) for r in returned if isinstance(r, Interrupted)]
    if interrupted or hints:
        raise Interrupted(stop_line(hints))
    stopped = [r for r in returned if isinstance(r, STOPS_THE_GRID)]
    if stopped:  # every worker that met it stopped; the CLI says what to do, in one line
        raise stopped[0]
    return [_ended(p.name, p.exitcode) for p in processes if p.exitcode not in (0, None)]


def stop_line(hints: list[str]) -> str:
    """What the grid says its workers' runs need, from what each stopped worker said: each run's own hint
    once, and what is the same for every worker (its output closed, nothing to name) said once."""
    specific = [h for h in dict.fromkeys(hints) if h != RERUN_TO_CONTINUE]
    return "; ".join(specific) or RERUN_TO_CONTINUE


def _ended(name: str, exitcode: int) -> str:
    """How a worker process that did not end well ended: killed by a signal (which prints nothing: the
    out-of-memory killer's SIGKILL, say), or with an error it printed."""
    if exitcode < 0:
        return f"{name} was {exit_description(exitcode)}"
    return f"{name} stopped with {exit_description(exitcode)} (its error is above)"


def _import_worker_code() -> None:
    """What a worker imports before its first run (torch with it), at once rather than lazily."""
    import bench.data.cache  # noqa: F401
    import bench.train.loop  # noqa: F401


def _worker_process(job: WorkerJob, outcomes) -> None:
    """A spawned worker: reports how it ended, in a few bytes. The parent reads the queue only after
    joining the workers, and a put larger than the pipe's buffer (64 KiB: the ids of ~1,500 runs)
    would block the worker forever. Its stdout is the grid's: a file on a full disk is named in the error
    the grid says, and what could not be written is dropped, not met again at the worker's exit."""
    set_up_standard_output()
    if accept_interrupts(_import_worker_code):
        outcome = Interrupted(RERUN_TO_CONTINUE)
    else:
        interrupt_when_parent_dies()
        with interrupts_noted():  # a Ctrl-C Python could only print stops it at its next step or run
            outcome = pool_worker_entry(job)
    discard_if_closed(sys.stdout)
    with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
        outcomes.put(outcome if isinstance(outcome, (Interrupted, *STOPS_THE_GRID)) else len(outcome))


def submitit_parameters(job: WorkerJob, launcher: str, slurm: SlurmOptions, wants_gpu: bool,
                        visible_gpus: int = 1) -> dict:
    """The executor parameters of one job. GPUs are requested whenever the workers may use them,
    for the local executor too (it exports CUDA_VISIBLE_DEVICES="" to a job that asked for none);
    each job runs `runs_per_gpu` workers per GPU as tasks, which claim GPU slots among themselves."""
    gpus = (slurm.gpus_per_job if launcher == "slurm" else visible_gpus) if wants_gpu else 0
    tasks = max(1, gpus * job.runs_per_gpu)
    if launcher == "slurm" and slurm.cpus_per_job < tasks:  # the local executor: --cpus is not the user's
        raise UserError(f"--cpus {slurm.cpus_per_job} is fewer than the {tasks} tasks of a job ({gpus} GPU(s) x "
                        f"{job.runs_per_gpu} runs per GPU): each task needs at least one CPU")
    params = {"timeout_min": slurm.time_minutes, "cpus_per_task": max(1, slurm.cpus_per_job // tasks),
              "tasks_per_node": tasks, "nodes": 1, "gpus_per_node": gpus}
    if launcher == "slurm":
        # srun does not take the job's --cpus-per-task from sbatch in Slurm 22.05-23.02: each task would be
        # bound to one CPU (its torch threads and compile processes with it)
        params["slurm_srun_args"] = ["--cpus-per-task", str(params["cpus_per_task"])]
        extra = dict(slurm.extra)
        as_gres = gres_gpus(str(extra.get("gres", "")))
        if as_gres is not None and wants_gpu and as_gres != gpus:
            raise UserError(f"--slurm-arg gres={extra['gres']} asks for {as_gres} GPU(s) a job, --gpus for "
                            f"{gpus}: give the same number (--gpus decides how many tasks a job runs)")
        if not gpus or as_gres is not None:  # `--gpus-per-node=0` is refused by clusters without GPU resources,
            del params["gpus_per_node"]  # and the option by those whose select plugin takes GPUs only as a gres
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        if slurm.mem_gb:
            params["mem_gb"] = slurm.mem_gb
        # requeueable whatever the cluster's JobRequeue default: submitit's `scontrol requeue` at the time
        # limit is refused for a job that is not (and Slurm itself then requeues it after a node failure)
        params["slurm_additional_parameters"] = {**extra, "requeue": True}
    return params


ALLOCATION_REQUEST = ("SLURM_MEM_PER_CPU", "SLURM_MEM_PER_GPU", "SLURM_MEM_PER_NODE", "SLURM_TRES_PER_TASK",
                      "SLURM_NTASKS_PER_GPU", "SLURM_GPUS_PER_TASK", "SLURM_CPUS_PER_GPU", "SLURM_GPUS",
                      "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_SOCKET", "SLURM_NTASKS_PER_TRES", "SLURM_TRES_BIND")
"""What the Slurm allocation a process runs in asked for, where srun reads it back as its own options.
sbatch exports the submitting process's environment to the job, and Slurm sets in the job only the
variables of what the job itself asks; a grid submitted from inside an allocation (a driver job running
`bench grid --launcher slurm`, an interactive `srun` shell) would pass the rest of its allocation's
request on, and the job's srun would stop at once: "SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and
SLURM_MEM_PER_NODE are mutually exclusive" beside the job's `--mem`; "SLURM_TRES_PER_TASK is mutually
exclusive with --ntasks-per-gpu and SLURM_NTASKS_PER_GPU" beside the job's `--cpus-per-task` (Slurm
23.11 and later set SLURM_TRES_PER_TASK=cpu:N from it); "--cpus-per-task, --tres-per-task=cpu:#, and
--cpus-per-gpu are mutually exclusive" (SLURM_CPUS_PER_GPU beside the job's SLURM_CPUS_PER_TASK);
"--gpus-per-node and --gres=gpu are mutually exclusive" (a job asking a gres). Or the job's tasks would
get the driver's memory, tasks or GPUs: its GPU count (SLURM_GPUS, SLURM_GPUS_PER_NODE and _PER_SOCKET,
asked again by the step of a job with other GPUs or none), its tasks per GPU, its GPU binding."""


@contextlib.contextmanager
def environment_without(names) -> Iterator[None]:
    """This process's environment without `names` within (what it starts meanwhile inherits it)."""
    removed = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(removed)


def _launch_submitit(job: WorkerJob, n_jobs: int, launcher: str, slurm: SlurmOptions, folder: Path,
                     wants_gpu: bool) -> None:
    visible = _gpu_count() if launcher == "submitit-local" and wants_gpu else 1
    parameters = submitit_parameters(job, launcher, slurm, wants_gpu, visible)
    if launcher == "submitit-local" and wants_gpu:
        # the local executor exports CUDA_VISIBLE_DEVICES=0..n-1 to its jobs; the workers restore the grid's
        # selection (a setup line exporting it instead makes the executor's job id the grid's pid where
        # /bin/sh is bash, and every job then waits for a file that never comes)
        job = dataclasses.replace(job, visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    jobs: list = []
    stopped: list[OSError] = []
    try:  # a Ctrl-C from the submission on, once there are jobs (one held back during it comes at its end)
        _submit(folder, parameters, job, n_jobs, launcher, slurm, wants_gpu, jobs)
        print(f"submitted {len(jobs)} job(s) via submitit ({launcher}); logs in {folder}")
        if launcher == "slurm" and jobs and not_accounted(str(jobs[0].job_id)):
            print("sacct: Slurm accounting storage is disabled on this cluster: the jobs are followed by their "
                  "result files and squeue")
        follow_jobs(jobs, launcher, folder, stopped)
    except KeyboardInterrupt as exc:  # the submitting process's: Slurm's jobs do not get it
        if launcher != "slurm" or isinstance(exc, Interrupted) or not jobs:
            raise
        arrays = " ".join(sorted({str(submitted.job_id).split("_")[0] for submitted in jobs}))
        raise Interrupted(f"the Slurm jobs go on (`scancel {arrays}` stops them; their runs then resume from "
                          f"their checkpoints); {RERUN_TO_CONTINUE}") from exc
    if stopped:  # as a local worker's: the CLI says what to do about it, in one line
        raise stopped[0]


def _submit(folder: Path, parameters: dict, job: WorkerJob, n_jobs: int, launcher: str, slurm: SlurmOptions,
            wants_gpu: bool, jobs: list) -> None:
    """Submit the grid's `n_jobs` jobs with submitit's executor (`parameters`), added to `jobs` as soon as
    they exist; sbatch missing or refusing them is a UserError."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="local" if launcher == "submitit-local" else "slurm")
        executor.update_parameters(**parameters)
        # the local executor's controller processes inherit Ctrl-C held back, and keep it so (each printed
        # a traceback, then killed its tasks a second later); their tasks, which the terminal's Ctrl-C
        # reaches too, take it once started (`RequeuedWorker`) and stop their runs, and stop as well once
        # this grid is gone (a task that started after the Ctrl-C never got it)
        grid_pid = os.getpid() if launcher == "submitit-local" else None
        # during the submission: a local job's tasks stop once this grid has ended
        with interrupts_deferred(), environment_without(ALLOCATION_REQUEST if launcher == "slurm" else ()):
            jobs.extend(executor.map_array(RequeuedWorker(), [dataclasses.replace(job, worker=k, grid_pid=grid_pid)
                                                              for k in range(n_jobs)]))
    except (OSError, RuntimeError) as exc:  # sbatch missing, or refusing (a partition, a limit): submitit's errors
        hint = ""
        if launcher == "slurm" and "GRES option unsupported" in str(exc) and "gres" not in dict(slurm.extra):
            hint = "; this cluster takes GPUs as a generic resource: add --slurm-arg gres=gpu:N"
        elif launcher == "slurm" and wants_gpu and "invalid generic resource" in str(exc).lower():
            # what sbatch says where the cluster has no GPUs configured (no `GresTypes=gpu`), e.g. a CPU cluster
            hint = ("; the GPUs the jobs ask for are not a resource of this cluster (`sinfo -o '%P %G'` lists each "
                    "partition's): name a partition that has them, or --device cpu to train on the nodes' CPUs")
        raise UserError(f"{launcher}: the jobs could not be submitted ({type(exc).__name__}: "
                        f"{first_line(exc)}){hint}") from None


def follow_jobs(jobs: list, launcher: str, folder: Path, stopped: list[OSError]) -> None:
    """Wait for each submitted job, naming those that ended without finishing; the machine states their
    errors name are added to `stopped`."""
    for submitted in jobs:
        lost = wait_for_job(submitted) if launcher == "slurm" else None
        if lost:
            print(f"job {submitted.job_id} ended without finishing ({lost}); its log: {folder}")
            continue
        try:
            submitted.results()  # every task's (`result()` refuses a job of several tasks)
        except Exception as exc:  # noqa: BLE001 - submitit's UncompletedJobError, FailedJobError, ...
            # a job that ran out of time, or whose worker crashed outside the runs' own error handling:
            # its runs were not recorded as failed and resume in the next grid; `summarise` counts them
            failure = job_failure(exc)
            print(f"job {submitted.job_id} ended without finishing ({failure}); its log: {folder}")
            stopped.extend(filter(None, [machine_state_in(failure)]))


OS_ERROR_LINE = re.compile(r"(?P<kind>\w+): \[Errno (?P<errno>\d+)\] (?P<strerror>.+?)"
                           r"(?:: (?P<filename>b?'.*?'|b?\".*?\")(?: -> (?P<filename2>b?'.*?'|b?\".*?\"))?)?")


def machine_state_in(failure: str) -> OSError | None:
    """The full disk, forbidden folder or file where a folder belongs (`is_resource_error`,
    `is_misplaced`) that a job's error line (`job_failure`) names, as the error it was in the job: a
    job's error reaches the submitter as its traceback's text. A local worker hands such an error to
    the grid, which stops with advice instead of only naming the job; a job's does the same. None for
    any other error."""
    matched = OS_ERROR_LINE.fullmatch(failure)
    if matched is None:
        return None

    def name(quoted: str | None) -> str | bytes | None:
        try:
            return ast.literal_eval(quoted) if quoted else None
        except (ValueError, SyntaxError):  # a name with both quotes in it, cut short above: the error says enough
            return None

    kind = CompileCacheError if matched["kind"] == CompileCacheError.__name__ else OSError
    error = kind(int(matched["errno"]), matched["strerror"], name(matched["filename"]), None,
                 name(matched["filename2"]))
    return error if is_resource_error(error) or is_misplaced(error) else None


SQUEUE_EVERY = 60.0
"""Seconds between two questions to squeue about a job whose state sacct does not give."""

GONE_SECONDS = 180.0
"""How long squeue must have stopped listing a job, its result files still missing, before the job is
taken as ended without them: longer than a shared file system takes to show files written on a node."""


def wait_for_job(job, clock=time.monotonic, sleep=time.sleep, listed=None) -> str | None:
    """Wait until a Slurm job is done as submitit sees it: its tasks' result files, or an ended state
    from `sacct`. Where sacct gives no state (a cluster without job accounting: "Slurm accounting
    storage is disabled"), submitit waits forever for a job killed before it wrote them (the out-of-
    memory killer, a node failure, scancel); there, a job that squeue has not listed for GONE_SECONDS
    is taken as ended. Returns why the job was given up on that way, or None once submitit saw it end.
    A squeue that cannot answer gives nothing up."""
    listed = listed or squeue_lists
    gone_since = None
    next_question = clock() + SQUEUE_EVERY
    while not job.done():
        now = clock()
        if now >= next_question:
            next_question = now + SQUEUE_EVERY
            if str(job.state).upper() == "UNKNOWN" and listed(str(job.job_id)) is False:
                gone_since = now if gone_since is None else gone_since
                if now - gone_since >= GONE_SECONDS:
                    return "no result, and squeue no longer lists it; sacct gave no state"
            else:
                gone_since = None
        sleep(1.0)
    return None


NO_ACCOUNTING = "accounting storage is disabled"
"""What sacct says on a cluster without job accounting (`AccountingStorageType=accounting_storage/none`)."""


def not_accounted(job_id: str) -> bool:
    """Whether this cluster keeps no job accounting, asked of sacct once; if so, submitit's own questions
    to sacct are turned off in this process. Each of them failed there, and each failure printed sacct's
    line and submitit's warning twice (to stdout and stderr), every 2 s at first and then every few
    minutes for as long as the grid waits: days of log lines saying nothing. The jobs' states stay
    unknown to submitit, which then waits for their result files, and `wait_for_job` asks squeue.
    A sacct that fails otherwise (its database not answering) is left to submitit."""
    try:
        asked = subprocess.run(["sacct", "--noheader", "--parsable2", "--format", "State", "--jobs", job_id],
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if asked.returncode == 0 or NO_ACCOUNTING not in asked.stderr.lower():
        return False
    from submitit.slurm.slurm import SlurmJob

    watcher = getattr(SlurmJob, "watcher", None)
    if watcher is not None and hasattr(watcher, "_make_command"):
        watcher._make_command = lambda: None  # submitit's `update` asks nothing then
    return True


def squeue_lists(job_id: str) -> bool | None:
    """Whether squeue lists the job (its default states: pending, running, completing; a requeued job is
    pending again); None where squeue cannot say (missing, timed out, the controller not answering)."""
    try:
        done = subprocess.run(["squeue", "--noheader", "--jobs", job_id, "--format", "%T"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:  # an id the controller has forgotten (MinJobAge after it ended) is no error of squeue's
        return False if "invalid job id" in done.stderr.lower() else None
    return bool(done.stdout.strip())


def job_failure(exc: BaseException) -> str:
    """What ended a submitit job, in a line: the error its task raised. Submitit hands the job's error to
    the submitting process as a FailedJobError whose text holds the task's traceback between two rules
    of dashes (a job that timed out too often: `...UncompletedJobError: Job not requeued because:
    timed-out too many times.`); its first line only says that the job failed. The error is the line
    after the traceback's last frame that is not indented: lines after it continue its message (torch
    ends its errors with advice) or are notes. A job that left no result (killed by the out-of-memory
    killer, a node failure) is named with the state Slurm gives it."""
    lines = str(exc).splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip() and set(line.strip()) == {"-"}]
    trace = lines[rules[0] + 1:rules[1]] if len(rules) >= 2 else []
    frames = [i for i, line in enumerate(trace) if line.startswith("  File ")]
    raised = next((line for line in trace[frames[-1] + 1:] if line.strip() and not line[0].isspace()), None) \
        if frames else None
    if raised is None:  # a job that left no result (killed, a node failure): submitit says its state below
        state = re.search(r"has not produced any output \(state: [^)]*\)", str(exc))
        return f"{type(exc).__name__}: {first_line(exc)}{' ' + state.group(0) if state else ''}"
    name, sep, message = raised.partition(": ")
    if name.replace(".", "").replace("_", "").isalnum():  # a qualified class name: its last part
        return f"{name.rsplit('.', 1)[-1]}{sep}{message}"
    return raised


class RequeuedWorker:
    """`worker_entry` as a submitit job that Slurm requeues when it reaches its time limit or is preempted
    (submitit calls `checkpoint` on the signal sent before the limit and resubmits what it returns): the
    requeued job claims the runs again, and the interrupted one resumes from its epoch checkpoint. The
    tasks of one job end together (`bench.run.tasks`): Slurm's signal is answered by task 0 alone."""

    def __call__(self, job: WorkerJob) -> list[str]:
        import submitit

        from bench.run.tasks import run_as_task, task_folder

        if accept_interrupts(_import_worker_code):  # a task of the local executor: Ctrl-C while it started
            raise Interrupted(RERUN_TO_CONTINUE)
        if job.grid_pid is not None:
            import _thread

            when_process_ends(job.grid_pid, _thread.interrupt_main)

        try:
            env = submitit.JobEnvironment()
            rank, n_tasks, folder = env.global_rank, env.num_tasks, task_folder(env.paths.folder, env.job_id)
        except (RuntimeError, KeyError, ValueError):  # not inside a submitit job
            rank = None
        with interrupts_noted():  # a Ctrl-C Python could only print stops it at its next step or run
            if rank is None:
                return worker_entry(job)
            with noting_job_signals():  # over submitit's handlers, which it installed before calling this
                return run_as_task(lambda: worker_entry(job), folder, rank, n_tasks, log_to_stdout)

    def checkpoint(self, job: WorkerJob):
        import submitit

        return submitit.helpers.DelayedSubmission(self, job)


def _rounded(value, digits: int):
    return round(value, digits) if isinstance(value, (int, float)) else value


def _figures(value, digits: int):
    """`value` to `digits` significant figures, trailing zeros kept: a demo network's 0.0001680 GMAC and
    the paper's 10.01 alike (`significant`)."""
    from bench.cost.plan import significant

    return significant(value, digits) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def summarise(spec: Spec, results_root: Path, runs, crashed: list[str] = ()) -> int:
    """Print the grid's results; 0 when every run is ok, held by another live worker or done on another
    host whose result this one does not see yet, else 1.
    `crashed`: how the workers that did not end well ended (`_ended`)."""
    import pandas as pd

    rows, failed, missing, elsewhere, unseen = [], [], [], [], []
    for run in runs:
        folder = run_dir(results_root, spec, run)
        result = read_result(folder)
        if result is None and RunLock(folder).held_by_other():
            elsewhere.append(run.run_id)
        elif result is None:  # done on another host, as its note says, where this one does not see it yet
            (unseen if RunLock(folder).unseen_result_at_a_look() else missing).append(run.run_id)
        elif result["status"] != "ok":
            failed.append((run.run_id, result.get("error")))
        else:
            c, m, cost = result["config"], result["metrics"], result["cost"]  # a valid result has all three
            rows.append({"arch": c.get("arch"), "width": c.get("width"), "sample_rate": c.get("sample_rate"),
                         "n_mels": c.get("n_mels"),
                         "hop": c.get("hop_multiplier"), "log": c.get("log"), "seed": c.get("seed"),
                         "roc_auc": round(m["roc_auc"], 4), "pr_auc": round(m["pr_auc"], 4),
                         "gmac": _figures(cost.get("gmac"), 4), "epochs": cost.get("epochs"),
                         "train_s": _rounded(cost.get("train_seconds"), 1)})
    if rows:
        table = pd.DataFrame(rows)
        if table["width"].nunique(dropna=False) == 1:  # one width (the paper's grids): the column says nothing
            table = table.drop(columns="width")
        print(table.to_string(index=False))
    print(f"{len(rows)} ok, {len(failed)} failed, {len(missing)} not run"
          + (f", {len(elsewhere)} still training in other workers" if elsewhere else "")
          + (f", {len(unseen)} {ACTION_WORDS['skip-unseen']}" if unseen else ""))
    if crashed:  # a run it held may have been finished by another worker since
        print(f"{'; '.join(crashed)}: " + ("the runs not run are left for the next grid, which resumes them" if missing
                                          else "the other workers finished its runs"))
    for run_id, error in failed:
        print(f"  failed {run_id}: {error}")
    if failed:
        print(f"  each failed run's traceback: {spec_dir(results_root, spec.name) / RUNS}/<run_id>/{ERROR}; "
              "bench grid --retry-failed reruns them")
    if elsewhere and not failed and not missing:
        print(f"nothing left for this worker: {len(elsewhere)} run(s) are being trained by other live workers, "
              "which write their own results")
    return 0 if not failed and not missing else 1
