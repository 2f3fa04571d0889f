"""`make gpu-check`: the GPU acceptance of the suite, in at most a few minutes on one GPU.

One PASS/FAIL line per check, ending with the seconds it took, and a JSON file with every number.
Functional checks run the real `bench grid` command on a tiny synthetic dataset (48 clips of 3 s, width
1/16 networks, batch 16); performance checks time the paper's networks on random batches at the
shipped specs' batch size (32).

  C1  a tiny grid (VGG and MusiCNN, 2 epochs) on CUDA with device-resident waveforms in bf16
  C2  the same grid for 4 epochs reading per batch from the cache (forced), fp16 with loss scaling, pinned
      memory
  C3  `--workers 2` with CUDA_VISIBLE_DEVICES set to one GPU: both workers on it, each run executed once
  C4  torch.compile on: every run compiled and trained
  C5  three or more configurations compiled in one process with no recompile-limit hit
  C6  the folds (the first convolutions without their input gradient, VGG's block-1 BatchNorm in its
      convolution's weights), eager and compiled, and compiled VGG's block-1 convolution and max-pool
      as one, give the gradients of the modules as written on this GPU (float32, TF32 off, at most 1e-3
      apart), and a fast-path step with them (autocast, channels_last) is finite
  P1  training throughput at the smallest, the headline (96x1366) and the largest (128x1820)
      configuration: effective TFLOP/s (6 x MACs per clip x clips/s) against the GPU's bf16 dense
      peak, and GPU-busy fraction (profiler kernel time over wall time); the smallest also with
      several runs on the GPU at once
  P2  peak memory of training and evaluation at the largest, against the footprint estimate that
      chooses how many runs share a GPU
  P3  the free-memory rule after a run: memory cached by PyTorch's allocator counts as available
  P4  reading per batch at 16 kHz from the page cache against what the smallest configuration consumes
      (a step and its mel); the rate from the disk (page cache evicted) is reported beside it

C4 and C5 run last (compilation is the slowest part). P1 times the step as the paper's runs train:
compiled, as the grid compiles runs of 5,000 steps or more (eager where compilation is off, e.g. no C
compiler). P2 measures eager steps. The
checks judge the default execution path: BENCH_RESIDENT, BENCH_COMPILE and BENCH_COMPILE_BACKEND
are cleared, and set only where a check checks them.

On a GPU that lets one process at a time use it (nvidia-smi's Exclusive_Process compute mode), C3 and
P1's runs at once do not apply (SKIP, `not_applicable` in the JSON, not a failure), and C4-C5 run
right after C2: once this process has measured on the GPU, no grid's worker could start CUDA there.

All of it keeps to `--deadline` (600 s by default): a check that would start with less time left than
it needs is not run (SKIP, and exit status 1), and each grid gets at most the time left. Stopped by
SIGTERM or Ctrl-C, it kills the grids it started (their own process groups) and leaves the JSON with
what was measured and the check it stopped in.

Without CUDA it prints "no CUDA device: nothing checked" and exits 0: that is not a pass. A machine
with NVIDIA GPUs that this process cannot use (a driver older than torch's CUDA, a CPU-only torch,
`CUDA_VISIBLE_DEVICES` hiding them) is not a machine without CUDA: one FAIL line says why, exit 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.core.arguments import Parser
from bench.run.gpus import exclusive_gpus, others_on_cuda_device, sharing_note, visible_selection
from bench.tools.gpucheck_common import TARGETS, Check, Deadline, DeadlineReached, NoData
from bench.tools.gpucheck_folds import check_folds
from bench.tools.gpucheck_speed import (
    check_free_memory_rule,
    check_memory,
    check_reading,
    check_throughput,
    smallest_consumption,
)
from bench.tools.process_groups import cleaned_up, run_group

TINY_SPEC = """
name = "{name}"
seeds = {seeds}
[dataset]
name = "synthetic"
path = "{data}"
clips = 48
clip_seconds = 3.0
[arch.vgg]
width = 0.0625
[arch.musicnn]
width = 0.0625
segment_seconds = 1.0
[protocol]
batch_size = 16
max_epochs = {epochs}
patience = {patience}
[[grid]]
arch = {archs}
sample_rate = [16000]
n_mels = [32]
hop_multiplier = [2]
log = ["log"]
{extra}
"""
"""A grid small enough for a test: 48 synthetic clips of 3 s, VGG and MusiCNN at 1/16 width."""


# ------------------------------------------------------------------------------------------------
# functional checks: the real command on a tiny grid


def clear_switches(environ) -> list[str]:
    """Remove the execution path's environment switches (`bench.train.fastpath.ENVIRONMENT`) from
    `environ` (this process's, inherited by the grids and the shared-GPU processes); returns what was
    set, as NAME=value. The checks judge the default path and set a switch only where they check it
    (an exported `BENCH_RESIDENT=0` would fail C1, `BENCH_COMPILE=1` compile every tiny run and P1's
    steps)."""
    from bench.train.fastpath import ENVIRONMENT

    return [f"{name}={environ.pop(name)}" for name in ENVIRONMENT if name in environ]



class Workspace:
    def __init__(self, root: Path, device: str = "cuda", deadline: Deadline | None = None):
        self.root = root
        self.data = root / "synth"
        self.device = device
        """What the grids are run with; only the harness's own tests use another."""
        self.deadline = deadline or Deadline(None)

    def spec(self, name: str, archs=("vgg", "musicnn"), mels=(32,), precision: str = "auto",
             extra_archs: tuple[str, ...] | None = None, epochs: int = 2) -> Path:
        """The stress harness's tiny grid (48 clips of 3 s, width 1/16, batch 16) of `archs` at 32 mels,
        with each other mel count of `mels` as an extra grid block of `extra_archs` (default `archs`),
        at `precision`, for `epochs` epochs (2 by default; as many of patience)."""
        more = json.dumps(list(extra_archs or archs))
        extra = "".join(f'[[grid]]\narch = {more}\nsample_rate = [16000]\nn_mels = [{m}]\n'
                        f'hop_multiplier = [2]\nlog = ["log"]\n' for m in mels if m != 32)
        text = TINY_SPEC.format(name=name, seeds="[0]", data=self.data, epochs=epochs, patience=epochs,
                                archs=json.dumps(list(archs)), extra=extra)
        path = self.root / f"{name}.toml"
        path.write_text(text.replace("[protocol]\n", f'[protocol]\nprecision = "{precision}"\n'))
        return path

    def grid(self, spec: Path, *args: str, env: dict | None = None, timeout: float = 600
             ) -> tuple[subprocess.CompletedProcess, dict]:
        environment = {**os.environ, "BENCH_CACHE": str(self.root / "cache"),
                       "BENCH_GPU_LOCKS": str(self.root / "gpu-locks"), **(env or {})}
        command = [sys.executable, "-m", "bench", "grid", str(spec), "--device", self.device, "--no-report",
                   "--results", str(self.root / "results"), *args]
        bounded = self.deadline.bound(timeout)
        proc = run_group(command, environment, bounded)
        if proc.returncode is not None and proc.returncode < 0 and bounded < timeout and self.deadline.left() <= 1:
            # killed because the check's deadline came, not because it outlasted its own limit
            raise DeadlineReached(f"not finished: the deadline came {bounded:.0f} s into it, and it was stopped")
        runs = self.root / "results" / spec.stem / "runs"
        results = {p.name: json.loads((p / "result.json").read_text())
                   for p in sorted(runs.glob("*")) if (p / "result.json").exists()}
        return proc, results


def _grid_failure(proc: subprocess.CompletedProcess, results: dict, expected: int) -> str | None:
    bad = [r["run_id"] + ": " + str(r.get("error")) for r in results.values() if r["status"] != "ok"]
    if proc.returncode != 0 or len(results) != expected or bad:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return (f"exit {proc.returncode}, {len(results)}/{expected} results, failed: {bad or 'none'}; "
                + " | ".join(tail))
    return None



def check_resident_bf16(ws: Workspace, check: Check) -> None:
    import torch

    from bench.train.fastpath import native_bf16

    proc, results = ws.grid(ws.spec("c1"))
    problem = _grid_failure(proc, results, 2)
    if problem:
        check.ok, check.detail = False, problem
        return
    wanted = "bfloat16" if native_bf16(torch.device("cuda")) else "float16"
    rows = [(r["config"]["arch"], r["training"]["amp_dtype"], r["training"]["fast_path"]["resident_data"],
             r["provenance"]["device"]) for r in results.values()]
    check.numbers = {"runs": rows, "roc_auc": [r["metrics"]["roc_auc"] for r in results.values()]}
    check.ok = all(dtype == wanted and resident and device.startswith("cuda") for _, dtype, resident, device in rows)
    check.detail = ", ".join(f"{a} {d} resident={r} on {dev}" for a, d, r, dev in rows)


def check_read_fp16(ws: Workspace, check: Check) -> None:
    # 4 epochs of 2 steps: GradScaler's calibration may skip the first steps (an overflow at its
    # initial scale), and a run that took no step at all fails
    proc, results = ws.grid(ws.spec("c2", precision="fp16", epochs=4), env={"BENCH_RESIDENT": "0"})
    problem = _grid_failure(proc, results, 2)
    if problem:
        check.ok, check.detail = False, problem
        return
    paths = [r["training"]["fast_path"] for r in results.values()]
    dtypes = [r["training"]["amp_dtype"] for r in results.values()]
    check.ok = all(d == "float16" for d in dtypes) and all(
        not p["resident_data"] and p["pin_memory"] and p.get("loss_scaling") for p in paths)
    check.detail = f"amp {set(dtypes)}, loss scaling {[p.get('loss_scaling') for p in paths]}, resident " \
                   f"{[p['resident_data'] for p in paths]}, pinned {[p['pin_memory'] for p in paths]}, " \
                   f"steps skipped by the scaler " \
                   f"{[sum(e.get('skipped_steps', 0) for e in r['training']['history']) for r in results.values()]}"


def first_visible_gpu(environ: dict) -> str:
    """The GPU that `CUDA_VISIBLE_DEVICES=<it>` selects among those this process may use: the first of
    an existing selection (an index or a UUID; a scheduler may have handed out GPU 3 alone), else 0."""
    selection = visible_selection(environ)
    return selection[0] if selection else "0"


def check_two_workers_one_gpu(ws: Workspace, check: Check) -> None:
    spec = ws.spec("c3", archs=("vgg",), mels=(32, 24, 16, 8))
    proc, results = ws.grid(spec, "--workers", "2", env={"CUDA_VISIBLE_DEVICES": first_visible_gpu(os.environ)})
    problem = _grid_failure(proc, results, 4)
    if problem:
        check.ok, check.detail = False, problem
        return
    runs = ws.root / "results" / "c3" / "runs"
    executions = {p.name: (p / "executions.jsonl").read_text().splitlines() for p in runs.iterdir()}
    # the processes that trained: a worker that announced itself and then crashed trained nothing
    pids = {json.loads(line)["pid"] for lines in executions.values() for line in lines}
    crashed = "stopped with an error" in proc.stdout + proc.stderr
    devices = {r["provenance"]["device"] for r in results.values()}
    # each of several local workers' lines starts with its "[wN] "
    workers = sorted({line for line in proc.stdout.splitlines() if re.match(r"(\[w\d+\] )?worker ", line)})
    counts = sorted(len(lines) for lines in executions.values())
    check.ok = devices == {"cuda:0"} and set(counts) == {1} and len(pids) == 2 and not crashed
    check.detail = (f"devices {devices}, executions per run {counts}, {len(pids)} worker processes trained"
                    f"{', a worker crashed' if crashed else ''}; {'; '.join(workers)}")


def check_compile(ws: Workspace, c4: Check, c5: Check) -> None:
    # three configurations (VGG and MusiCNN at 32 mels, VGG at 24) in one worker, one after another:
    # by default a GPU would get several workers, each compiling one configuration. Each compiles
    # its own graphs, which is most of this check's time: one run per GPU gives the worker the
    # machine's CPUs for inductor's compile processes (the default, 4 per GPU, a quarter of them).
    spec = ws.spec("c4", archs=("vgg", "musicnn"), mels=(32, 24), extra_archs=("vgg",))
    proc, results = ws.grid(spec, "--workers", "1", "--runs-per-gpu", "1",
                            env={"BENCH_COMPILE": "1", "BENCH_COMPILE_BACKEND": "inductor"}, timeout=900)
    problem = _grid_failure(proc, results, 3)
    if problem:
        c4.ok, c4.detail = False, problem
        c5.ok, c5.detail = False, "see C4"
        return
    paths = {r["run_id"]: r["training"]["fast_path"] for r in results.values()}
    compiled = sum(bool(p["compile"] and p["compiled"] and p["compile_backend"] == "inductor") for p in paths.values())
    # why compilation was turned off (e.g. no C compiler for Triton), as the runs recorded it
    notes = sorted({p["compile_note"] for p in paths.values() if p.get("compile_note")})
    c4.ok = compiled == len(paths)
    c4.detail = f"{compiled}/{len(paths)} runs compiled by inductor{' (' + '; '.join(notes) + ')' if notes else ''}; " \
                f"training times {[round(r['cost']['train_seconds'], 1) for r in results.values()]} s"
    pids = {json.loads(line)["pid"] for p in (ws.root / "results" / "c4" / "runs").iterdir()
            for line in (p / "executions.jsonl").read_text().splitlines()}
    hits = sum(p["recompile_limit_hits"] for p in paths.values())
    # no recompile-limit hit proves nothing of configurations that were not compiled
    c5.ok = len(pids) == 1 and hits == 0 and len(paths) >= 3 and compiled == len(paths)
    c5.detail = f"{len(paths)} configurations in {len(pids)} process(es), {compiled} compiled, " \
                f"{hits} recompile-limit hits"
    c5.numbers = {"recompile_limit_hits": hits}



CHECKS = {
    "C1": "tiny grid on CUDA, resident data, bf16", "C2": "read per batch, fp16 + loss scaling, pinned",
    "C3": "--workers 2 with CUDA_VISIBLE_DEVICES=<one GPU>", "C4": "torch.compile on",
    "C5": "3+ configurations compiled in one process",
    "C6": "folds: the gradients of the modules as written", "P1": "training throughput and GPU busy",
    "P2": "peak memory at the largest configuration", "P3": "free-memory rule after a run",
    "P4": "reading per batch at 16 kHz vs consumption"}
"""The checks, by id (`--only` names them), in the order the report lists them."""

NEEDS_SECONDS = {"C1": 45, "C2": 45, "C3": 60, "C6": 90, "P1": 120, "P2": 20, "P3": 5, "P4": 30, "C4": 120}
"""Seconds a check needs at least, roughly (C4 with C5: three compilations): one that would start with
less of the deadline left is not run, rather than cut short by it."""

DEFAULT_DEADLINE = 600
"""Seconds the whole check may take by default: the checks are sized for about five minutes on one GPU,
and a first compilation on a new box (C4) can take several."""


def run_checks(out: Path, batch: int, shared_runs: int, keep: bool = False, only: set[str] | None = None,
               peak: float | None = None, deadline: float | None = DEFAULT_DEADLINE) -> int:
    """Run the checks (`only` some of them), writing `out` after each; returns the exit status: 1 where a
    check failed or was not run for the deadline (`deadline` seconds for all, None for no limit)."""
    import torch

    from bench.core.store import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    cleared = clear_switches(os.environ)
    if cleared:
        print(f"not used by the checks: {', '.join(cleared)} (they judge the default execution path)")
    one_process = exclusive_gpus()
    alone = (f"GPU {', '.join(one_process)} lets one process at a time use it" if one_process else None)
    if alone:
        print(f"note: {alone}: C3 and P1's runs at once do not apply (a grid gives such a GPU one worker), and "
              "C4/C5 run before the checks that measure in this process", flush=True)
    others = others_on_cuda_device(0)  # before any check: a job sharing the GPU is in every figure
    note = sharing_note(others)
    if note:
        print(f"warning: {note}", flush=True)
    limit = Deadline(deadline)
    root = Path(tempfile.mkdtemp(prefix="bench-gpu-check-"))
    ws = Workspace(root, deadline=limit)
    checks = {k: Check(k, t) for k, t in CHECKS.items()}
    started = time.perf_counter()
    rows: dict = {}
    generated: dict = {}  # the functional checks' dataset: "done" or the "error" it ended in, and its "seconds"
    not_run: list[str] = []
    not_applicable: list[str] = []

    def report() -> dict:  # numbers may hold numpy or torch values: as text where JSON has no type for them
        checks_run = [c.as_dict() for c in checks.values()]
        return json.loads(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                      "targets": TARGETS, "deadline_seconds": deadline,
                                      "seconds": time.perf_counter() - started,
                                      "data_seconds": generated.get("seconds"), "not_run": not_run,
                                      "not_applicable": not_applicable,
                                      "others_on_gpu": others,
                                      "checks": checks_run}, default=str))

    def data() -> None:
        """The synthetic dataset of C1-C4, generated once, by the first of them to run, its time counted
        in that check's and in `data_seconds`. An error here (a box without soundfile, a full disk) fails
        the functional checks, without generating again for each; the performance checks still run."""
        from bench.data.synthetic import generate

        if "error" in generated:
            raise generated["error"]
        if generated.get("done"):
            return
        began = time.perf_counter()
        try:
            generate(ws.data, clips=48, seed=0, clip_seconds=3.0, progress=False)
            generated["done"] = True
        except Exception as exc:
            generated["error"] = exc
            raise
        finally:
            generated["seconds"] = time.perf_counter() - began

    def timed(ids: tuple[str, ...], fn: Callable[[], object]) -> None:
        """`fn`, its wall time kept on its checks' records however it ends (a deadline, a crash, Ctrl-C)."""
        began = time.perf_counter()
        try:
            fn()
        finally:
            for key in ids:
                checks[key].seconds = time.perf_counter() - began

    def attempt(ids: tuple[str, ...], fn: Callable[[], object], functional: bool = False) -> None:
        if only and not set(ids) & only:
            return
        left = limit.left()
        if left < NEEDS_SECONDS[ids[0]]:
            for key in ids:
                checks[key].detail = (f"not run: {max(0.0, left):.0f} s of the {deadline:.0f} s deadline left, "
                                      f"it needs about {NEEDS_SECONDS[ids[0]]} s")
                not_run.append(key)
        else:
            def check() -> None:
                if functional:
                    try:
                        data()
                    except Exception as exc:
                        raise NoData(f"synthetic data not generated: {type(exc).__name__}: {exc}") from exc
                fn()

            try:
                timed(ids, check)
            except DeadlineReached as exc:
                for key in ids:
                    checks[key].ok, checks[key].detail = None, str(exc)
                    not_run.append(key)
            except Exception as exc:  # a check that crashes is a failed check, and the next one still runs
                text = str(exc) if isinstance(exc, NoData) else f"{type(exc).__name__}: {exc}"
                for key in ids:
                    checks[key].ok = False
                    checks[key].detail = " ".join(text.split())[:300]
            except BaseException as exc:  # stopped (SIGTERM, Ctrl-C): the report says where, then it stops
                why = f"exit status {exc.code}" if isinstance(exc, SystemExit) else type(exc).__name__
                for key in ids:
                    checks[key].ok = False
                    checks[key].detail = f"stopped during this check ({why})"
                    print(checks[key].line(), flush=True)
                atomic_write_json(out, report())
                raise
        for key in ids:
            print(checks[key].line(), flush=True)
        # after every check: a check run killed part-way (a job's time limit) keeps what was measured
        atomic_write_json(out, report())

    def compile_checks() -> None:
        attempt(("C4", "C5"), lambda: check_compile(ws, checks["C4"], checks["C5"]), functional=True)

    try:
        with cleaned_up():
            attempt(("C1",), lambda: check_resident_bf16(ws, checks["C1"]), functional=True)
            attempt(("C2",), lambda: check_read_fp16(ws, checks["C2"]), functional=True)
            if alone:
                if not only or "C3" in only:
                    checks["C3"].detail = f"not applicable: {alone}; a second worker on it could not start CUDA"
                    not_applicable.append("C3")
                    print(checks["C3"].line(), flush=True)
                compile_checks()  # the grids' processes first: once this process measures on the GPU it holds it
            else:
                attempt(("C3",), lambda: check_two_workers_one_gpu(ws, checks["C3"]), functional=True)
            attempt(("C6",), lambda: check_folds(checks["C6"]))
            attempt(("P1",), lambda: rows.update(check_throughput(checks["P1"], batch, shared_runs, peak, limit,
                                                                  alone)))
            attempt(("P2",), lambda: check_memory(checks["P2"], batch))
            attempt(("P3",), lambda: check_free_memory_rule(checks["P3"]))
            attempt(("P4",), lambda: check_reading(checks["P4"], batch, smallest_consumption(rows, batch)))
            if not alone:
                # compilation last: the slowest and least predictable, a time limit reached there keeps
                # P1-P4; its grid gets back the memory P1-P3 left in this process's allocator cache
                torch.cuda.empty_cache()
                compile_checks()
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    final = report()
    atomic_write_json(out, final)
    ran = [c for c in checks.values() if c.ok is not None]
    failed = [c.id for c in ran if not c.ok]
    print(f"{len(ran) - len(failed)}/{len(ran)} checks passed in {final['seconds']:.0f} s on {final['device']}"
          f"{'; failed: ' + ', '.join(failed) if failed else ''}"
          f"{'; not run for the deadline: ' + ', '.join(not_run) if not_run else ''}"
          f"{'; not applicable: ' + ', '.join(not_applicable) if not_applicable else ''}; {out}")
    if keep:
        print(f"scratch folder kept: {root} (data, specs, run folders)")
    return 1 if failed or not_run else 0


def report_unusable_cuda(out: Path, reason: str) -> int:
    """A GPU box whose GPUs this process cannot use (an old driver, a CPU-only torch, a selection that
    hides them): one FAIL line and the JSON, exit status 1."""
    import torch

    from bench.core.store import atomic_write_json

    check = Check("CUDA", "CUDA usable on this machine's GPUs", False, reason)
    print(check.line())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"device": None, "torch": torch.__version__, "targets": TARGETS, "not_run": [],
                            "checks": [check.as_dict()]})
    print(f"0/1 checks passed; failed: CUDA; {out}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.tools.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/gpu-check.json", help="JSON report (default %(default)s)")
    parser.add_argument("--batch", type=int, default=32,
                        help="batch of the performance checks (the shipped specs': 32; the paper gives none)")
    parser.add_argument("--shared-runs", type=int, default=3, help="runs at once for the shared-GPU busy check")
    parser.add_argument("--only", help="comma-separated check ids, e.g. C1,P1")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (data and results; the grids' output is not saved)")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE,
                        help="seconds for all the checks (default %(default)s; 0 for no limit): a check "
                             "that would start with less left than it needs is not run, and the exit "
                             "status is 1")
    parser.add_argument("--bf16-peak-tflops", type=float,
                        help="the GPU's dense bf16 peak from its datasheet, for a GPU not in the built-in table")
    args = parser.parse_args(argv)
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()} if args.only is not None else None
    if only is not None and not (only and only <= CHECKS.keys()):  # a typo would check nothing and pass
        unknown = ", ".join(sorted(only - CHECKS.keys()))
        parser.error(f"argument --only: {f'unknown check id(s): {unknown}' if unknown else 'names no check'} "
                     f"(the checks: {', '.join(CHECKS)})")
    for name, value in (("--batch", args.batch), ("--shared-runs", args.shared_runs)):
        if value < 1:
            parser.error(f"argument {name}: must be 1 or more, got {value}")
    if not args.deadline >= 0:  # on a machine without CUDA too: the same command line fails on the GPU box
        parser.error(f"argument --deadline: must be 0 (no limit) or more seconds, got {args.deadline:g}")
    peak = args.bf16_peak_tflops
    if peak is not None and not 0 < peak < float("inf"):  # 0 would read the table, a negative give -13 %
        parser.error(f"argument --bf16-peak-tflops: must be a positive number, got {peak:g}")
    # before any check: on a machine without CUDA too, where the same command line fails on a GPU box
    out = parser.output_file(args.out, "--out", ".json")
    import torch

    if not torch.cuda.is_available():
        from bench.train.devices import why_no_cuda

        reason = why_no_cuda()
        if reason:  # a GPU box on which nothing could run on its GPUs: a failure, not a machine without CUDA
            return report_unusable_cuda(out, reason)
        print("no CUDA device: nothing checked")
        return 0
    try:
        return run_checks(out, args.batch, args.shared_runs, args.keep, only, args.bf16_peak_tflops,
                          args.deadline or None)
    except KeyboardInterrupt:  # the grids it started are killed; the JSON names the check it stopped in
        print(f"gpu-check: interrupted; what was measured is in {args.out}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
