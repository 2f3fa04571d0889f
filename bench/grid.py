"""`bench grid`: expand a spec, prepare its data, run what is not done, summarise what is.

Launchers:
- `local`: N worker processes on this machine. With CUDA, `runs_per_gpu` workers per visible GPU
  (each claims a GPU slot, `bench.gpus`); on the CPU the cores are shared between them.
- `slurm`: N Slurm jobs through submitit (partition, time, GPUs and CPUs per job), all working on the
  same results folder (it must be on a shared file system); each job runs `runs_per_gpu` workers per
  GPU as Slurm tasks. `submitit-local` runs the very same path with submitit's local executor,
  without a cluster. The device is resolved by each worker where it runs, never on the login node.
Every launcher runs `worker_entry` with a frozen `WorkerJob`, and runs are claimed with locks
(`bench.runner`), so workers, launchers and `--shard i/n` can be mixed freely on one results folder.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.runner import log_to_stdout, read_result, run_dir, run_states, shard, worker_loop
from bench.spec import Spec, load_spec
from bench.store import check_writable

MAX_RUNS_PER_GPU = 4
"""Upper bound of the automatic runs-per-GPU choice (more runs mostly add contention)."""


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_minutes: int = 24 * 60
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int | None = None


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs, in one picklable value (spawned processes and Slurm jobs)."""

    spec_path: str
    results: str
    cache_dir: str
    device: str
    """"auto", "cpu" or "cuda": resolved by the worker on the machine it runs on."""
    retry_failed: bool = False
    shard_index: int = 0
    shard_count: int = 1
    runs_per_gpu: int = 1
    worker: int = 0
    threads: int | None = None


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text}: need 0 <= i < n")
    return index, count


def worker_device(name: str, worker: int, runs_per_gpu: int, log=print):
    """(torch device, GpuClaim or None) for a worker on this machine: a GPU slot where CUDA is
    visible and wanted, else the CPU; `--device cuda` without CUDA here is a user error."""
    import torch

    from bench.gpus import claim_gpu, describe, visible_identities
    from bench.train import resolve_device

    device = resolve_device(name)
    if device.type != "cuda":
        return device, None
    claim = claim_gpu(visible_identities(), runs_per_gpu, worker)
    torch.cuda.set_device(claim.index)
    log(f"worker {worker} (pid {os.getpid()}) on {describe(claim, runs_per_gpu)}")
    return torch.device("cuda", claim.index), claim


def worker_entry(job: WorkerJob) -> list[str]:
    """What every worker runs (in-process, spawned, or as a Slurm job): claim and run runs until none is left."""
    import torch

    from bench.data.cache import WaveformCache

    if job.threads:
        torch.set_num_threads(job.threads)
    # a Slurm / submitit task's rank within its job, so its tasks start their GPU search apart
    worker = job.worker + int(os.environ.get("SLURM_LOCALID", os.environ.get("SUBMITIT_LOCAL_LOCALID", "0")))
    spec = load_spec(job.spec_path)
    runs = shard(spec.runs(), job.shard_index, job.shard_count)
    if worker and runs:  # start at different runs to keep workers apart
        offset = worker % len(runs)
        runs = runs[offset:] + runs[:offset]
    cache = WaveformCache.from_dir(job.cache_dir)
    opened = {}

    def cache_for(rate: int):
        if rate not in opened:
            opened[rate] = cache.open(rate)
        return opened[rate]

    device, claim = worker_device(job.device, worker, job.runs_per_gpu, log_to_stdout)
    try:
        return worker_loop(spec, Path(job.results), runs, cache_for, device, job.retry_failed, log_to_stdout)
    finally:
        if claim is not None:
            claim.release()


def run_grid(spec_path: str, data: str | None = None, results: str = "results", cache: str | None = None,
             device: str = "auto", workers: int | None = None, launcher: str = "local",
             shard_text: str | None = None, dry_run: bool = False, retry_failed: bool = False,
             slurm: SlurmOptions = SlurmOptions(), make_report: bool = True,
             runs_per_gpu: int | None = None) -> int:
    """Returns the exit status: 0 when every run of the (shard of the) grid is done and ok, 1 otherwise.

    `runs_per_gpu` None chooses from the GPUs' memory and the grid's footprint (`auto_runs_per_gpu`)."""
    from bench.prepare import prepare_spec
    from bench.train import resolve_device

    if launcher not in ("local", "slurm", "submitit-local"):
        raise UserError(f"--launcher must be local, slurm or submitit-local, not {launcher!r}")
    if runs_per_gpu is not None and runs_per_gpu < 1:
        raise UserError(f"--runs-per-gpu must be >= 1, got {runs_per_gpu}")
    spec = load_spec(spec_path)
    shard_index, shard_count = parse_shard(shard_text)
    runs = shard(spec.runs(), shard_index, shard_count)
    results_root = Path(results)
    states = run_states(spec, results_root, runs, retry_failed)
    counts = Counter(s.action for s in states)
    print(f"{spec.name}: {len(runs)} runs" + (f" (shard {shard_index}/{shard_count})" if shard_count > 1 else "")
          + f" -> {results_root / spec.name}: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))
    if dry_run:
        for s in states:
            verb = {"run": "would run", "resume": "would resume"}.get(s.action, "skip")
            print(f"  {verb:12s} {s.run.run_id}  ({s.reason})")
        return 0
    todo = [s for s in states if s.action in ("run", "resume")]
    if todo:
        # Local workers run here, so the device is checked here; Slurm jobs check it on their node.
        cuda_here = resolve_device(device).type == "cuda" if launcher != "slurm" else None
        check_writable(results_root / spec.name / "runs")  # before preparing data for nothing
        _, waveforms, _ = prepare_spec(spec, data, cache, None)
        # absolute paths: Slurm jobs and spawned workers may start elsewhere
        job = WorkerJob(spec_path=str(Path(spec_path).resolve()), results=str(results_root.resolve()),
                        cache_dir=str(waveforms.dir.resolve()), device=device, retry_failed=retry_failed,
                        shard_index=shard_index, shard_count=shard_count)
        wants_gpu = cuda_here if launcher != "slurm" else device != "cpu"
        if wants_gpu and runs_per_gpu is None:
            runs_per_gpu, why = auto_runs_per_gpu(spec, [s.run for s in todo], results_root)
            print(f"runs per GPU: {runs_per_gpu} ({why}; --runs-per-gpu K sets it)")
        job = dataclasses.replace(job, runs_per_gpu=runs_per_gpu or 1)
        if launcher == "local":
            n_workers = workers or ((_gpu_count() * job.runs_per_gpu) if cuda_here else 1)
            _launch_local(job, n_workers, cuda_here)
        else:
            _launch_submitit(job, workers or 1, launcher, slurm, results_root / spec.name / "slurm", wants_gpu)
    status = summarise(spec, results_root, runs)
    if make_report and any(read_result(run_dir(results_root, spec, r)) for r in spec.runs()):
        from bench.report import cli_main

        cli_main(results_root / spec.name)
    return status


def _gpu_count() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def auto_runs_per_gpu(spec: Spec, runs, results_root: Path, total_bytes: int | None = None) -> tuple[int, str]:
    """How many runs share one GPU: half of its memory is for the runs' weights, optimiser state and
    activations (the other half for waveform copies), divided by the largest footprint of the runs
    to do: the peak measured by a finished run of the same configuration where there is one, else
    the estimate of `bench.cost.training_footprint_bytes`; at most MAX_RUNS_PER_GPU."""
    from bench.cost import training_footprint_bytes

    if total_bytes is None:
        total_bytes = _gpu_memory_bytes()
    measured = _measured_peaks(spec, results_root)
    footprints: dict = {}  # one per input shape: seeds and log compression share it
    sources = set()
    for run in runs:
        key = _shape_key(run)
        if key in footprints:
            continue
        sources.add("measured" if key in measured else "estimated")
        footprints[key] = measured[key] if key in measured else training_footprint_bytes(run)
    largest = max(footprints.values())
    k = int(max(1, min(MAX_RUNS_PER_GPU, (0.5 * total_bytes) // largest)))
    return k, (f"largest footprint {largest / 2**30:.1f} GiB ({' and '.join(sorted(sources))}) "
               f"on {total_bytes / 2**30:.0f} GiB")


def _measured_peaks(spec: Spec, results_root: Path) -> dict:
    peaks: dict = {}
    for run in spec.runs():
        result = read_result(run_dir(results_root, spec, run))
        peak = ((result or {}).get("cost") or {}).get("peak_memory_bytes")
        if isinstance(peak, int) and peak > 0:
            key = _shape_key(run)
            peaks[key] = max(peaks.get(key, 0), peak)
    return peaks


def _shape_key(run) -> tuple:
    """What a run's memory footprint depends on (seeds and log compression do not change it)."""
    return run.arch, run.mel.sample_rate, run.mel.n_mels, run.mel.hop_multiplier


def _gpu_memory_bytes() -> int:
    """The smallest visible GPU's total memory, from the device properties (nothing is allocated here;
    the workers are spawned, so initialising CUDA in this process does not reach them)."""
    import torch

    try:
        return min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    except (RuntimeError, ValueError):
        return 0


def _launch_local(job: WorkerJob, n_workers: int, cuda: bool) -> None:
    if n_workers == 1:
        worker_entry(job)
        return
    cores = os.cpu_count() or 1
    threads = None if cuda else max(1, cores // n_workers)
    jobs = [dataclasses.replace(job, worker=k, threads=threads) for k in range(n_workers)]
    # one fresh process per worker (never a reused pool process): each claims its own GPU slot
    context = multiprocessing.get_context("spawn")
    with context.Pool(n_workers, maxtasksperchild=1) as pool:
        pool.map(worker_entry, jobs, chunksize=1)


def submitit_parameters(job: WorkerJob, launcher: str, slurm: SlurmOptions, wants_gpu: bool,
                        visible_gpus: int = 1, preset_visible: str | None = None) -> dict:
    """The executor parameters of one job. GPUs are requested whenever the workers may use them,
    for the local executor too (it exports CUDA_VISIBLE_DEVICES="" to a job that asked for none);
    each job runs `runs_per_gpu` workers per GPU as tasks, which claim GPU slots among themselves."""
    gpus = (slurm.gpus_per_job if launcher == "slurm" else visible_gpus) if wants_gpu else 0
    tasks = max(1, gpus * job.runs_per_gpu)
    params = {"timeout_min": slurm.time_minutes, "cpus_per_task": max(1, slurm.cpus_per_job // tasks),
              "tasks_per_node": tasks, "nodes": 1, "gpus_per_node": gpus}
    if launcher == "slurm":
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        if slurm.mem_gb:
            params["mem_gb"] = slurm.mem_gb
    elif gpus and preset_visible:
        # the local executor numbers GPUs 0..n-1 itself; keep the user's selection (indices or UUIDs)
        params["local_setup"] = [f"export CUDA_VISIBLE_DEVICES={preset_visible}"]
    return params


def _launch_submitit(job: WorkerJob, n_jobs: int, launcher: str, slurm: SlurmOptions, folder: Path,
                     wants_gpu: bool) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="local" if launcher == "submitit-local" else "slurm")
    visible = _gpu_count() if launcher == "submitit-local" and wants_gpu else 1
    executor.update_parameters(**submitit_parameters(job, launcher, slurm, wants_gpu, visible,
                                                     os.environ.get("CUDA_VISIBLE_DEVICES")))
    jobs = executor.map_array(worker_entry, [dataclasses.replace(job, worker=k) for k in range(n_jobs)])
    print(f"submitted {len(jobs)} job(s) via submitit ({launcher}); logs in {folder}")
    for submitted in jobs:
        submitted.result()  # waits; raises if a job crashed outside the runs' own error handling


def summarise(spec: Spec, results_root: Path, runs) -> int:
    import pandas as pd

    rows, failed, missing = [], [], []
    for run in runs:
        result = read_result(run_dir(results_root, spec, run))
        if result is None:
            missing.append(run.run_id)
        elif result["status"] != "ok":
            failed.append((run.run_id, result.get("error")))
        else:
            c, m, cost = result["config"], result["metrics"], result["cost"]
            rows.append({"arch": c["arch"], "sample_rate": c["sample_rate"], "n_mels": c["n_mels"],
                         "hop": c["hop_multiplier"], "log": c["log"], "seed": c["seed"],
                         "roc_auc": round(m["roc_auc"], 4), "pr_auc": round(m["pr_auc"], 4),
                         "gmac": round(cost["gmac"], 4), "epochs": cost["epochs"],
                         "train_s": round(cost["train_seconds"], 1)})
    if rows:
        print(pd.DataFrame(rows).to_string(index=False))
    print(f"{len(rows)} ok, {len(failed)} failed, {len(missing)} not run")
    for run_id, error in failed:
        print(f"  failed {run_id}: {error}")
    return 0 if not failed and not missing else 1
