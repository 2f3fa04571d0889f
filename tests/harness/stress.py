"""`python -m tests.harness.stress` (`make stress`): the grid under crashes, concurrent workers and hostile input.

Everything happens on a small synthetic dataset in a temporary folder, through the real `bench grid`
command in subprocesses:

1. kills: an uninterrupted reference grid; then rounds of `bench grid` processes killed with SIGKILL
   after a random delay and restarted until the round completes. After every kill each file the code
   reads (result.json, checkpoint.pt, best.pt, cache manifests) is checked twice, by an independent
   reader here and by the code's own, and every few kills one of them is truncated on purpose: the
   code must never accept a file the independent reader finds invalid. At the end of a round every
   run must be done, executed once (plus one restart per execution a kill interrupted, and one redo
   per result.json truncated on purpose), with metrics equal to the reference run's.
2. workers: K `bench grid` processes start together on one results folder and one empty cache; some
   are killed; a last one takes over. Every run must be executed exactly once (plus restarts of
   killed executions), and the runs whose lock a killed worker left behind must be completed.
3. hostile input: the bad-audio corpus (`tests.harness.hostile`), decoded file by file and prepared as a
   cache; a malicious checkpoint and a malicious pickle; random spec files (hypothesis) through
   `bench plan`, which must print a plan or one line and exit 2, never a traceback.

Prints the figures; the exit status is 1 if a must-be-zero figure is not zero or an input was not
handled as docs/reliability.md says.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.tools.gpucheck import TINY_SPEC

from ..processes import group_members


def write_stress_spec(workspace: Path, seeds=(0,), epochs: int = 4, name: str = "stress.toml",
                      runs_per_seed: int = 3) -> Path:
    """The stress grid: VGG and MusiCNN at 32 mels (and VGG at 16 with 3 runs per seed), never stopping early."""
    path = workspace / name
    extra = '[[grid]]\narch = ["vgg"]\nsample_rate = [16000]\nn_mels = [16]\nhop_multiplier = [2]\nlog = ["log"]' \
        if runs_per_seed == 3 else ""
    path.write_text(TINY_SPEC.format(name="stress", seeds=json.dumps(list(seeds)), data=workspace / "synth",
                                     epochs=epochs, patience=epochs, archs='["vgg", "musicnn"]', extra=extra))
    return path


# --------------------------------------------------------------------------------------------
# processes


def grid_process(spec: Path, results: Path, cache: Path, log: Path, threads: int | None = None) -> subprocess.Popen:
    """`bench grid` in its own session (so it and its workers can be killed together)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log, "a") as handle:
        return subprocess.Popen([sys.executable, "-m", "bench", "grid", str(spec), "--device", "cpu", "--no-report",
                                 "--results", str(results), "--cache", str(cache)],
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def kill_group(proc: subprocess.Popen) -> set[int]:
    """SIGKILL `proc` and every process it started; returns their pids, or an empty set if it had ended.

    The group is stopped first, so no process can be started between counting and killing.
    """
    try:
        os.killpg(proc.pid, signal.SIGSTOP)
    except ProcessLookupError:
        proc.wait()
        return set()
    pids = group_members(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return pids if proc.returncode == -signal.SIGKILL else set()


# --------------------------------------------------------------------------------------------
# what the folders hold, read independently of the code under test


def run_folders(results: Path) -> list[Path]:
    runs = results / "stress" / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def execution_pids(folder: Path) -> list[int | None]:
    """One entry per start of the run (its pid, or None for a line a kill tore)."""
    from bench.run.runner import EXECUTIONS

    try:
        lines = (folder / EXECUTIONS).read_text().splitlines()
    except FileNotFoundError:
        return []
    pids = []
    for line in lines:
        try:
            pids.append(int(json.loads(line)["pid"]))
        except (ValueError, KeyError, TypeError):
            pids.append(None)
    return pids


def valid_result(path: Path, run_id: str) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(doc, dict) and doc.get("run_id") == run_id and doc.get("status") == "ok"
            and isinstance(doc.get("metrics", {}).get("roc_auc"), float))


def valid_torch(path: Path, keys: tuple[str, ...]) -> bool:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(state, dict) and all(k in state for k in keys) and isinstance(state["epoch"], int) and all(
        torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def valid_cache(rate_dir: Path) -> bool:
    try:
        manifest = json.loads((rate_dir / "manifest.json").read_text())
        size = (rate_dir / "waveforms.f16").stat().st_size
        return size == manifest["n_clips"] * manifest["clip_samples"] * 2 and len(manifest["status"]) == \
            manifest["n_clips"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


@dataclass
class Audit:
    checked: int = 0
    invalid: int = 0
    """Checks in which the independent reader found the file invalid (truncated on purpose, or torn)."""
    accepted_invalid: int = 0
    """Of those, files the code's own reader accepted: corrupt files read. Must be 0."""

    def add(self, independent_ok: bool, code_accepts: bool) -> None:
        self.checked += 1
        if not independent_ok:
            self.invalid += 1
            self.accepted_invalid += code_accepts


def audit(results: Path, cache: Path, total: Audit | None = None) -> Audit:
    """Check every result, checkpoint, best.pt and cache manifest with both readers."""
    from bench.data.cached_waveforms import manifest_problem
    from bench.run.runner import RESULT, load_result
    from bench.train.loop import BEST, CHECKPOINT, InvalidCheckpoint, read_best, read_checkpoint

    found = total or Audit()
    for folder in run_folders(results):
        run_id = folder.name
        if (folder / RESULT).exists():
            found.add(valid_result(folder / RESULT, run_id), load_result(folder)[0] is not None)
        best_epoch = None
        if (folder / CHECKPOINT).exists():
            try:
                best_epoch = read_checkpoint(folder / CHECKPOINT, run_id)["best"]["epoch"]
            except InvalidCheckpoint:
                pass
            found.add(valid_torch(folder / CHECKPOINT, ("epoch", "model", "optimizer", "best")), best_epoch is not None)
        if (folder / BEST).exists():
            try:
                accepted = best_epoch is not None and read_best(folder / BEST, best_epoch) is not None
            except InvalidCheckpoint:
                accepted = False
            found.add(valid_torch(folder / BEST, ("epoch", "model")), accepted)
    for rate_dir in sorted(cache.glob("*/sr*")):
        if (rate_dir / "manifest.json").exists():
            found.add(valid_cache(rate_dir), manifest_problem(rate_dir) is None)
    return found


def plant_corruption(results: Path, cache: Path, rng: random.Random) -> Path | None:
    """Truncate one random file the code reads to half its size (a torn write by a careless tool, a
    disk fault); returns it."""
    from bench.run.runner import RESULT
    from bench.train.loop import BEST, CHECKPOINT

    candidates = [f / name for f in run_folders(results) for name in (RESULT, CHECKPOINT, BEST)
                  if (f / name).exists()]
    candidates += [p for p in sorted(cache.glob("*/sr*/*")) if p.name in ("manifest.json", "waveforms.f16")]
    if not candidates:
        return None
    target = rng.choice(candidates)
    os.truncate(target, target.stat().st_size // 2)
    return target


def final_results(results: Path) -> dict[str, dict | None]:
    from bench.run.runner import load_result

    return {folder.name: load_result(folder)[0] for folder in run_folders(results)}


def differences(result: dict, reference: dict) -> list[str]:
    """What differs between two results of one run, among what must not (metrics, path of training)."""
    out = [key for key in ("roc_auc", "pr_auc", "per_tag") if result["metrics"][key] != reference["metrics"][key]]
    out += [key for key in ("epochs", "best_epoch") if result["cost"][key] != reference["cost"][key]]
    history = [(h["loss"], h["valid_roc_auc"]) for h in result["training"]["history"]]
    if history != [(h["loss"], h["valid_roc_auc"]) for h in reference["training"]["history"]]:
        out.append("history")
    return out


# --------------------------------------------------------------------------------------------
# 1. kills


@dataclass
class RunFigures:
    runs: int = 0
    lost: int = 0
    """Runs not done (or failed) when everything has finished. Must be 0."""
    twice: int = 0
    """Runs started more often than once plus one restart per interrupted execution. Must be 0."""
    problems: list[str] = field(default_factory=list)


@dataclass
class KillFigures(RunFigures):
    trials: int = 0
    kills: int = 0
    rounds: int = 0
    differing: int = 0
    planted: int = 0
    """Files truncated on purpose that the audit checks (all but the waveforms of a cache still being prepared)."""
    audit: Audit = field(default_factory=Audit)
    reference_seconds: float = 0.0


def kill_trials(workspace: Path, kills: int, rng: random.Random, plant_every: int = 4, epochs: int = 4,
                runs_per_seed: int = 3, log=print) -> KillFigures:
    """Reference grid, then rounds of randomly killed and restarted grids until `kills` kills."""
    figures = KillFigures()
    spec = write_stress_spec(workspace, epochs=epochs, runs_per_seed=runs_per_seed)
    logfile = workspace / "kills.log"
    _generate_data(spec)  # once, outside the timed reference: the kill delays are drawn from its duration
    started = time.monotonic()
    reference_proc = grid_process(spec, workspace / "reference", workspace / "cache-reference", logfile)
    if reference_proc.wait() != 0:
        raise RuntimeError(f"the reference grid failed: see {logfile}")
    figures.reference_seconds = time.monotonic() - started
    reference = final_results(workspace / "reference")
    log(f"reference grid: {len(reference)} runs in {figures.reference_seconds:.0f} s")
    while figures.kills < kills:
        figures.rounds += 1
        _kill_round(workspace, spec, figures.rounds, kills, reference, figures, rng, plant_every, logfile, log)
    return figures


def _generate_data(spec: Path) -> None:
    from bench.data.datasets import ensure_synthetic
    from bench.spec import load_spec

    dataset = load_spec(spec).dataset
    ensure_synthetic(Path(dataset.path), dataset, progress=False)


def _kill_round(workspace, spec, number, kills, reference, figures, rng, plant_every, logfile, log) -> None:
    results, cache = workspace / f"round{number}", workspace / f"cache{number}"
    killed: set[int] = set()
    done_at: dict[str, int] = {}
    """Executions of each run when it was last seen done: they must not grow (until it is corrupted)."""
    redo = Counter()
    twice: set[str] = set()
    patience = max(600.0, 20 * figures.reference_seconds)
    while True:
        proc = grid_process(spec, results, cache, logfile)
        figures.trials += 1
        if figures.kills < kills:
            try:
                proc.wait(timeout=rng.uniform(0.0, figures.reference_seconds))
            except subprocess.TimeoutExpired:
                pids = kill_group(proc)
                if pids:
                    figures.kills += 1
                    killed |= pids
        proc.wait(timeout=patience)
        if proc.returncode == 0:
            break
        if proc.returncode != -signal.SIGKILL:
            figures.problems.append(f"round {number}: bench grid exited {proc.returncode} (see {logfile})")
            break
        audit(results, cache, figures.audit)
        _check_done(results, done_at, twice, figures.problems)
        if plant_every and figures.kills % plant_every == 0:
            target = plant_corruption(results, cache, rng)
            if target is not None:
                # the audit checks a cache's waveforms against its manifest; one still being prepared has
                # none (its preparer redoes what its progress file does not vouch for), so it is not counted
                figures.planted += target.name != "waveforms.f16" or (target.parent / "manifest.json").exists()
                log(f"  planted: truncated {target.relative_to(workspace)}")
                audit(results, cache, figures.audit)
                if target.name == "result.json" and target.parent.name in done_at:  # a done run to redo
                    redo[target.parent.name] += 1
                    del done_at[target.parent.name]
    _check_done(results, done_at, twice, figures.problems)
    audit(results, cache, figures.audit)
    final, lost, started_again = verify(results, set(reference), killed, redo, f"round {number}", figures.problems)
    figures.runs += len(reference)
    figures.lost += lost
    twice |= started_again
    for run_id, result in final.items():
        diff = differences(result, reference[run_id])
        if diff:
            figures.differing += 1
            figures.problems.append(f"round {number}: {run_id} differs from the reference in {', '.join(diff)}")
    figures.twice += len(twice)
    log(f"round {number}: {figures.trials} trials and {figures.kills} kills so far; "
        f"{figures.lost} lost, {figures.twice} executed twice, {figures.audit.accepted_invalid} corrupt files read, "
        f"{figures.differing} differing")


def verify(results: Path, expected: set[str], killed: set[int], redo: Counter, label: str,
           problems: list[str]) -> tuple[dict[str, dict], int, set[str]]:
    """(ok results, runs lost, runs started more often than once plus one restart per execution a kill
    interrupted and one redo per result.json truncated on purpose)."""
    found = final_results(results)
    ok, lost, twice = {}, 0, set()
    for run_id in sorted(expected):
        result = found.get(run_id)
        if result is None or result.get("status") != "ok":
            lost += 1
            problems.append(f"{label}: {run_id} is not done")
            continue
        ok[run_id] = result
        pids = execution_pids(results / "stress" / "runs" / run_id)
        if len(pids) > 1 + sum(pid in killed for pid in pids) + redo[run_id]:
            twice.add(run_id)
            problems.append(f"{label}: {run_id} started {len(pids)} times")
    return ok, lost, twice


def _check_done(results: Path, done_at: dict[str, int], twice: set[str], problems: list[str]) -> None:
    for folder in run_folders(results):
        count = len(execution_pids(folder))
        if folder.name in done_at and count > done_at[folder.name]:
            twice.add(folder.name)
            problems.append(f"{folder.name} was started again after it was done")
        if valid_result(folder / "result.json", folder.name):
            done_at[folder.name] = count


# --------------------------------------------------------------------------------------------
# 2. concurrent workers


@dataclass
class WorkerFigures(RunFigures):
    workers: int = 0
    killed: int = 0
    stale_locks: int = 0
    reclaimed: int = 0


def concurrent_workers(workspace: Path, workers: int, worker_kills: int, rng: random.Random, window: float,
                       epochs: int = 2, log=print) -> WorkerFigures:
    """`workers` grids on one results folder and one empty cache; `worker_kills` of them are killed at a
    random moment within `window` seconds of starting a run; then one more grid takes over what they left."""
    from bench.run.runner import LOCK
    from bench.spec import load_spec

    figures = WorkerFigures(workers=workers)
    spec = write_stress_spec(workspace, seeds=(0, 1), epochs=epochs, name="workers.toml")
    _generate_data(spec)
    results, cache, logfile = workspace / "workers", workspace / "cache-workers", workspace / "workers.log"
    procs = [grid_process(spec, results, cache, logfile, threads=1) for _ in range(workers)]
    killed: set[int] = set()
    stale: set[str] = set()
    for victim in rng.sample(range(workers), worker_kills):
        _wait_for_a_run(results, procs[victim])
        time.sleep(rng.uniform(0.0, window))
        pids = kill_group(procs[victim])
        if pids:
            figures.killed += 1
            killed |= pids
            for folder in run_folders(results):  # claims the dead worker left behind
                try:
                    holder = json.loads((folder / LOCK).read_text())["pid"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if holder in pids and not valid_result(folder / "result.json", folder.name):
                    stale.add(folder.name)
    for proc in procs:
        proc.wait()
        if proc.returncode not in (0, 1, -signal.SIGKILL):  # 1: runs were left to other workers
            figures.problems.append(f"a worker exited {proc.returncode} (see {logfile})")
    last = grid_process(spec, results, cache, logfile)
    if last.wait() != 0:
        figures.problems.append(f"the last grid exited {last.returncode} (see {logfile})")
    expected = {r.run_id for r in load_spec(spec).runs()}
    _, figures.lost, twice = verify(results, expected, killed, Counter(), "workers", figures.problems)
    figures.runs, figures.twice = len(expected), len(twice)
    figures.stale_locks = len(stale)
    figures.reclaimed = sum(valid_result(results / "stress" / "runs" / r / "result.json", r) for r in stale)
    log(f"workers: {workers} ({figures.killed} killed), {figures.runs} runs, {figures.lost} lost, "
        f"{figures.twice} executed twice, stale locks reclaimed {figures.reclaimed}/{figures.stale_locks}")
    return figures


def _wait_for_a_run(results: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Until `proc` has started a run (or has ended)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if any(proc.pid in execution_pids(folder) for folder in run_folders(results)):
            return
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# 3. hostile input


@dataclass
class Handled:
    tried: int = 0
    handled: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, what: str, problem: str | None) -> None:
        self.tried += 1
        if problem:
            self.problems.append(f"{what}: {problem}")
        else:
            self.handled += 1


def bad_audio(workspace: Path) -> Handled:
    """Each corpus file decoded on its own and, all together, prepared as a cache."""
    from bench.data.cache import WaveformCache
    from bench.data.index import Clip, DatasetIndex
    from tests.harness.hostile import DECODES, audio_outcome, bad_audio_corpus

    figures = Handled()
    corpus = bad_audio_corpus(workspace / "audio")
    clips = tuple(Clip(str(i), str(c.path), "train", (0,)) for i, c in enumerate(corpus))
    cache = WaveformCache(workspace / "cache-audio", DatasetIndex("corpus", str(workspace), ("tag",), clips), 2.0)
    try:
        failed = {clip_id: reason for clip_id, _, reason in cache.prepare([16000], workers=1)[0].failed}
    except Exception as exc:
        failed, cache_problem = None, f"preparing the corpus raised {type(exc).__name__}: {exc}"
    for i, case in enumerate(corpus):
        problem = audio_outcome(case)
        if problem is None and failed is None:
            problem = cache_problem
        elif problem is None and (str(i) in failed) != (case.expect != DECODES):
            problem = f"cache: {'skipped' if str(i) in failed else 'kept'}"
        figures.add(case.kind, problem)
    return figures


def hostile_files(workspace: Path) -> Handled:
    """A checkpoint and an MSD pickle that run a command when unpickled: refused, the command never runs."""
    from bench.data.safe_pickle import UnsafePickleError, safe_load
    from bench.train.loop import CHECKPOINT, resume_state
    from tests.harness.hostile import malicious_checkpoint, malicious_pickle

    figures = Handled()
    folder = workspace / "hostile"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "code-was-run"
    malicious_checkpoint(folder / CHECKPOINT, marker)
    messages = []
    state = resume_state(folder, "any-run", messages.append)
    refused = state is None and (folder / f"{CHECKPOINT}.rejected").exists() and not marker.exists()
    figures.add("malicious checkpoint", None if refused else f"not refused ({messages})")
    try:
        safe_load(malicious_pickle(folder / "msd_id_to_tag_vector.cP", marker))
        problem = "loaded"
    except UnsafePickleError:
        problem = None
    figures.add("malicious pickle", problem or ("the command ran" if marker.exists() else None))
    return figures


def random_specs(workspace: Path, examples: int, seed: int) -> Handled:
    """`examples` random spec files (hypothesis) through `bench plan`: a plan, or one line and exit 2."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    from tests.harness.hostile import spec_documents, spec_outcome

    figures = Handled()
    path = workspace / "random-spec.toml"

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec_documents())
    def check(document: bytes) -> None:
        path.write_bytes(document)
        problem = spec_outcome(path)
        figures.add(f"spec {document[:120]!r}", problem)

    check()
    return figures


# --------------------------------------------------------------------------------------------
# the command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.stress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of a running grid (default 20)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent grids on one results folder (default 4)")
    parser.add_argument("--worker-kills", type=int, default=2, help="how many of them are killed (default 2)")
    parser.add_argument("--specs", type=int, default=300, help="random spec files (default 300)")
    parser.add_argument("--plant-every", type=int, default=4, help="truncate a file after every Nth kill (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        return _stress(Path(args.keep), args)
    with tempfile.TemporaryDirectory(prefix="bench-stress-") as tmp:
        return _stress(Path(tmp), args)


def _stress(workspace: Path, args) -> int:
    rng = random.Random(args.seed)
    started = time.monotonic()
    kills = kill_trials(workspace, args.kills, rng, args.plant_every)
    workers = concurrent_workers(workspace, args.workers, min(args.worker_kills, args.workers), rng,
                                 window=kills.reference_seconds / 6, epochs=4)
    audio = bad_audio(workspace)
    files = hostile_files(workspace)
    specs = random_specs(workspace, args.specs, args.seed)
    minutes = (time.monotonic() - started) / 60
    rows = [
        ("trials (bench grid started)", kills.trials, ""),
        ("kills (SIGKILL at a random moment)", kills.kills,
         f"{kills.rounds} rounds of {kills.runs // max(1, kills.rounds)} runs"),
        ("runs lost", kills.lost + workers.lost, "must be 0"),
        ("runs executed twice", kills.twice + workers.twice, "must be 0"),
        ("corrupt files read", kills.audit.accepted_invalid,
         f"must be 0 ({kills.audit.checked} file checks after kills; {kills.planted} files truncated on purpose)"),
        ("metrics differing from reference", kills.differing, "must be 0"),
        ("concurrent workers", workers.workers, f"{workers.killed} killed, {workers.runs} runs"),
        ("stale locks reclaimed", f"{workers.reclaimed}/{workers.stale_locks}", ""),
        ("bad audio handled", f"{audio.handled}/{audio.tried}", ""),
        ("malicious files refused", f"{files.handled}/{files.tried}", ""),
        ("random specs handled", f"{specs.handled}/{specs.tried}", "exit 0 with a plan, or exit 2 with one line"),
    ]
    print(f"\nreliability stress (seed {args.seed}): {minutes:.1f} min")
    for name, value, note in rows:
        print(f"  {name:36s} {value!s:>9}  {note}")
    problems = kills.problems + workers.problems + audio.problems + files.problems + specs.problems
    for problem in problems[:20]:
        print(f"  ! {problem}")
    bad = (kills.lost + workers.lost + kills.twice + workers.twice + kills.audit.accepted_invalid + kills.differing
           + (workers.reclaimed != workers.stale_locks) + len(problems))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
