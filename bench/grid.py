"""`bench grid`: expand a spec, prepare its data, run what is not done, summarise what is.

Launchers:
- `local`: N worker processes on this machine (one per visible GPU with --device cuda; on the CPU the
  cores are shared between them).
- `slurm`: N Slurm jobs through submitit (partition, time, GPUs and CPUs per job), all working on the
  same results folder (it must be on a shared file system); `submitit-local` runs the very same path
  with submitit's local executor, without a cluster.
Every launcher runs `worker_entry`, and runs are claimed with locks (`bench.runner`), so workers,
launchers and `--shard i/n` can be mixed freely on one results folder.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.runner import log_to_stdout, read_result, run_dir, run_states, shard, worker_loop
from bench.spec import Spec, load_spec
from bench.store import check_writable


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_minutes: int = 24 * 60
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int | None = None


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


def worker_entry(spec_path: str, results: str, cache_dir: str, device_name: str, retry_failed: bool,
                 shard_index: int, shard_count: int, worker: int, threads: int | None) -> list[str]:
    """What every worker runs (in-process, spawned, or as a Slurm job): claim and run runs until none is left."""
    import torch

    from bench.data.cache import WaveformCache
    from bench.train import resolve_device

    if threads:
        torch.set_num_threads(threads)
    spec = load_spec(spec_path)
    runs = shard(spec.runs(), shard_index, shard_count)
    if worker and runs:  # start at different runs to keep workers apart
        offset = worker % len(runs)
        runs = runs[offset:] + runs[:offset]
    cache = WaveformCache.from_dir(cache_dir)
    opened = {}

    def cache_for(rate: int):
        if rate not in opened:
            opened[rate] = cache.open(rate)
        return opened[rate]

    device = resolve_device(device_name)
    return worker_loop(spec, Path(results), runs, cache_for, device, retry_failed, log_to_stdout)


def _spawned_worker(args: tuple) -> list[str]:
    *entry_args, visible_gpu = args
    if visible_gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(visible_gpu)
    return worker_entry(*entry_args)


def run_grid(spec_path: str, data: str | None = None, results: str = "results", cache: str | None = None,
             device: str = "auto", workers: int | None = None, launcher: str = "local",
             shard_text: str | None = None, dry_run: bool = False, retry_failed: bool = False,
             slurm: SlurmOptions = SlurmOptions(), make_report: bool = True) -> int:
    """Returns the exit status: 0 when every run of the (shard of the) grid is done and ok, 1 otherwise."""
    from bench.prepare import prepare_spec
    from bench.train import resolve_device

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
        torch_device = resolve_device(device)
        check_writable(results_root / spec.name / "runs")  # before preparing data for nothing
        _, waveforms, _ = prepare_spec(spec, data, cache, None)
        n_workers = workers or (_gpu_count() if torch_device.type == "cuda" else 1)
        # absolute paths: Slurm jobs and spawned workers may start elsewhere
        entry = (str(Path(spec_path).resolve()), str(results_root.resolve()), str(waveforms.dir.resolve()), device,
                 retry_failed, shard_index, shard_count)
        if launcher == "local":
            _launch_local(entry, n_workers, torch_device.type == "cuda")
        elif launcher in ("slurm", "submitit-local"):
            _launch_submitit(entry, n_workers, launcher, slurm, results_root / spec.name / "slurm")
        else:
            raise UserError(f"--launcher must be local or slurm, not {launcher!r}")
    status = summarise(spec, results_root, runs)
    if make_report and any(read_result(run_dir(results_root, spec, r)) for r in spec.runs()):
        from bench.report import cli_main

        cli_main(results_root / spec.name)
    return status


def _gpu_count() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def _launch_local(entry: tuple, n_workers: int, cuda: bool) -> None:
    cores = os.cpu_count() or 1
    if n_workers == 1:
        worker_entry(*entry, 0, None)
        return
    threads = None if cuda else max(1, cores // n_workers)
    jobs = [(*entry, k, threads, (k if cuda else None)) for k in range(n_workers)]
    with multiprocessing.get_context("spawn").Pool(n_workers) as pool:
        pool.map(_spawned_worker, jobs)


def _launch_submitit(entry: tuple, n_jobs: int, launcher: str, slurm: SlurmOptions, folder: Path) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="local" if launcher == "submitit-local" else "slurm")
    params = {"timeout_min": slurm.time_minutes, "cpus_per_task": slurm.cpus_per_job, "tasks_per_node": 1,
              "nodes": 1}
    if launcher == "slurm":
        params.update(gpus_per_node=slurm.gpus_per_job)
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        if slurm.mem_gb:
            params["mem_gb"] = slurm.mem_gb
    executor.update_parameters(**params)
    jobs = executor.map_array(worker_entry, *zip(*[(*entry, k, None) for k in range(n_jobs)], strict=True))
    print(f"submitted {len(jobs)} job(s) via submitit ({launcher}); logs in {folder}")
    for job in jobs:
        job.result()  # waits; raises if a job crashed outside the runs' own error handling


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
