"""`bench status SPEC`: a grid in progress, read without touching it, for the days a paper grid runs.

Per run: done, failed, running (its lock is held by a live worker), interrupted (a checkpoint and no
live worker: the next grid resumes it), invalid (a result.json that is no done-marker: corrupt, another
run's; the next grid sets it aside and redoes the run) or not started. For a running or interrupted run: the epoch
it reached and its best validation ROC-AUC so far, from `history.jsonl` (append-only, one line per
finished epoch; a half-written last line is ignored). Elapsed time runs from the grid's first start
(`executions.jsonl`) to now, or to its last result once every run is settled. The ETA comes from
measured epoch times: each run left is expected to take the mean number of epochs of the finished
runs (max_epochs when none has finished; at least the epoch it is in) at the mean epoch time of its
configuration's input shape; a shape not measured yet at its GMAC per clip times the seconds per GMAC
of the measured shapes of its architecture (of every architecture when none of its own is measured),
spread over the runs being trained at once. Nothing is written and no
lock is taken for longer than a non-blocking look.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import layout
from bench.core.store import is_finite_number, lock_held
from bench.core.text import first_of
from bench.spec import Configuration, RunSpec, Spec

STATES = ("done", "running", "interrupted", "invalid", "failed", "not started")


@dataclass
class RunStatus:
    run_id: str
    state: str
    """One of STATES."""
    epoch: int = 0
    """Epochs finished (history.jsonl)."""
    best_valid_roc_auc: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    epochs_when_done: int | None = None
    first_start: float | None = None
    finished: float | None = None
    worker: str | None = None
    """host:pid of the worker holding the run's lock (running runs)."""
    recorded_by: str | None = None
    """The `--retry-failed` grid whose worker recorded its result (`provenance.grid`), if any."""


def read_history(path: Path) -> list[dict]:
    """The whole lines of a history.jsonl that a worker may be appending to."""
    try:
        text = path.read_text(errors="replace")  # a damaged line is not JSON: the records end there
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # a folder of that name: the grid says so
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # the line being written (or nested too deep: none of ours)
            break
        if isinstance(record, dict):
            records.append(record)
    return records


def _first_start(folder: Path) -> float | None:
    times = [r.get("time") for r in read_history(folder / layout.EXECUTIONS)]
    times = [float(t) for t in times if is_finite_number(t)]  # float: arithmetic past its range is inf
    return min(times) if times else None


def _worker(folder: Path) -> str | None:
    try:
        note = json.loads((folder / layout.LOCK).read_text() or "{}")
        return f"{note['host']}:{note['pid']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_status(folder: Path, run: RunSpec) -> RunStatus:
    result, problem = layout.load_result(folder)
    running = result is None and lock_held(folder / layout.LOCK)
    if result is None and not running:  # it may have finished between the two looks (its result.json is
        result, problem = layout.load_result(folder)  # written before its lock is released)
    history = read_history(folder / layout.HISTORY)
    status = RunStatus(run.run_id, "not started", first_start=_first_start(folder))
    if result is not None:
        status.state = "done" if result.get("status") == "ok" else "failed"

        def part(name: str) -> dict:  # a hand-edited or foreign result.json may hold anything here
            value = result.get(name)
            return value if isinstance(value, dict) else {}

        epochs = part("cost").get("epochs")
        status.epochs_when_done = epochs if isinstance(epochs, int) and is_finite_number(epochs) else None
        finished = part("provenance").get("finished")
        status.finished = float(finished) if is_finite_number(finished) else None
        status.recorded_by = part("provenance").get("grid")
        recorded = part("training").get("history")
        history = recorded if isinstance(recorded, list) and all(isinstance(h, dict) for h in recorded) else history
    elif running:
        status.state, status.worker = "running", _worker(folder)
    else:
        resumable = (folder / layout.CHECKPOINT).exists()
        if problem is not None:
            status.state = "invalid"
        elif resumable:
            status.state = "interrupted"
        if not resumable:  # epochs of an attempt the next grid does not resume: it trains the run from scratch
            history = []
    status.epoch = len(history)
    scores = [h.get("valid_roc_auc") for h in history if is_finite_number(h.get("valid_roc_auc"))]
    status.best_valid_roc_auc = max(scores) if scores else None
    # a hand-edited or foreign history may hold anything: an epoch's time is what is finite in it
    status.epoch_seconds = [sum(float(v) for v in (h.get("train_seconds"), h.get("eval_seconds"))
                                if is_finite_number(v)) for h in history]
    status.epoch_seconds = [v for v in status.epoch_seconds if math.isfinite(v)]
    return status


@dataclass
class GridStatus:
    spec: str
    folder: str
    runs: list[RunStatus]
    counts: dict[str, int]
    elapsed_seconds: float | None
    eta_seconds: float | None
    eta_basis: str
    not_in_spec: int = 0
    """Run folders the spec, as it now stands, does not name (runs of an earlier version of it)."""
    not_in_spec_running: list[str] = field(default_factory=list)
    """Those of them a live worker holds: a grid started before the spec changed trains the spec it
    started with."""
    to_retry: int = 0
    """Failed runs a `--retry-failed` grid asking (`grid_status`'s `retrying`) has still to retry."""

    def as_json(self) -> dict:
        return {"spec": self.spec, "folder": self.folder, "counts": self.counts, "not_in_spec": self.not_in_spec,
                "not_in_spec_running": self.not_in_spec_running,
                "elapsed_seconds": self.elapsed_seconds, "eta_seconds": self.eta_seconds, "eta_basis": self.eta_basis,
                "runs": [{**{k: v for k, v in vars(r).items() if k not in ("epoch_seconds", "recorded_by")},
                          "epoch_seconds_mean": statistics.mean(r.epoch_seconds) if r.epoch_seconds else None}
                         for r in self.runs]}


def grid_status(spec: Spec, results: str | Path, now: float | None = None,
                gmac_of: Callable[[Configuration], float | None] | None = None, asking: int = 0,
                retrying: str | None = None) -> GridStatus:
    """`gmac_of`: a configuration's forward GMAC per clip, for the ETA of shapes not measured yet
    (default: counted from its layer shapes, `analytic_gmac`). `asking`: workers that hold no run as they
    ask but take one next (a worker between two runs), counted among the runs at a time where runs wait.
    `retrying`: the token of a `--retry-failed` grid asking, whose workers retry the failures another
    grid recorded (`provenance.grid`): those runs are still to train."""
    now = time.time() if now is None else now
    folder = layout.spec_dir(results, spec.name)
    runs = spec.runs()
    states = [run_status(layout.run_dir(results, spec.name, r.run_id), r) for r in runs]
    counts = {s: sum(1 for r in states if r.state == s) for s in STATES}
    named = {r.run_id for r in runs}
    others = [p for p in (folder / layout.RUNS).glob("*") if layout.is_run_folder(p) and p.name not in named]
    held = sorted(p for p in others if not (p / layout.RESULT).exists() and lock_held(p / layout.LOCK))
    starts = [r.first_start for r in states if r.first_start is not None]
    starts += [t for t in map(_first_start, held) if t is not None]
    finishes = [r.finished for r in states if r.finished is not None]
    settled = all(r.state in ("done", "failed") for r in states)
    end = max(finishes) if settled and finishes else now  # a finished grid: its own duration
    elapsed = end - min(starts) if starts else None
    # the starts are the hosts' clocks: one ahead of this host's (a cluster's node) is not a negative time
    elapsed = max(0.0, elapsed) if elapsed is not None and math.isfinite(elapsed) else None
    retry = {st.run_id for st in states if retrying and st.state == "failed" and st.recorded_by != retrying}
    eta, basis = _eta(spec, runs, states, gmac_of or analytic_gmac(spec), asking, retry)
    return GridStatus(spec.name, str(folder), states, counts, elapsed, eta, basis, len(others),
                      [p.name for p in held], len(retry))


def analytic_gmac(spec: Spec) -> Callable[[Configuration], float | None]:
    """A configuration's forward GMAC per clip counted from its layer shapes (nothing computed; the
    model built on the meta device), or None where its architecture cannot count them."""
    def gmac(config: Configuration) -> float | None:
        from bench.cost.plan import plan_row
        from bench.data.known import n_outputs

        try:
            return float(plan_row(config, spec.dataset.clip_seconds, n_outputs(spec.dataset), fvcore=False)
                         ["gmac_analytic"])
        except Exception:  # an estimate only: an architecture that cannot count its MACs gets the mean
            return None

    return gmac


def _eta(spec: Spec, runs: list[RunSpec], states: list[RunStatus],
         gmac_of: Callable[[Configuration], float | None], asking: int = 0,
         retry: frozenset[str] | set[str] = frozenset()) -> tuple[float | None, str]:
    by_shape: dict[tuple, list[float]] = {}
    configs: dict[tuple, Configuration] = {}
    for run, state in zip(runs, states, strict=True):
        configs.setdefault(run.configuration.cost_key, run.configuration)
        by_shape.setdefault(run.configuration.cost_key, []).extend(s for s in state.epoch_seconds if s > 0)
    measured = {key: statistics.mean(seconds) for key, seconds in by_shape.items() if seconds}
    if not measured:
        return None, "no epoch measured yet"
    finished = [r.epochs_when_done for r in states if r.state == "done" and r.epochs_when_done]
    # a float sum: inf past the range (statistics.fmean's fsum raises OverflowError there)
    expected = sum(map(float, finished)) / len(finished) if finished else spec.protocol.max_epochs
    gmacs: dict[tuple, float | None] = {}

    def gmac(key: tuple) -> float | None:
        if key not in gmacs:
            gmacs[key] = gmac_of(configs[key])
        return gmacs[key]

    measured_archs = {k[0] for k in measured}

    def borrowed(key: tuple) -> bool:
        """Whether no shape of its architecture is measured: its epochs are scaled from another's."""
        return key[0] not in measured_archs

    def epoch_seconds(key: tuple) -> float:
        """Measured, else scaled by GMAC from the measured shapes of its architecture (else of all)."""
        if key in measured:
            return measured[key]
        pool = list(measured) if borrowed(key) else [k for k in measured if k[0] == key[0]]
        known = [k for k in pool if gmac(k)]
        if gmac(key) and known:
            return gmac(key) * sum(measured[k] for k in known) / sum(gmac(k) for k in known)
        return statistics.mean(measured[k] for k in pool)

    left, scaled, other = 0.0, 0, 0
    for run, state in zip(runs, states, strict=True):
        retried = run.run_id in retry  # from scratch
        if state.state == "done" or (state.state == "failed" and not retried):
            continue
        key = run.configuration.cost_key
        scaled += key not in measured
        other += borrowed(key)
        # a run at or past the expected count still has its epoch in progress (or its test) ahead
        left += max(1.0, expected - (0 if retried else state.epoch)) * epoch_seconds(key)
    waiting = sum(1 for r in states if r.state not in ("done", "failed", "running")) + len(retry)
    at_once = max(1, sum(1 for r in states if r.state == "running") + min(asking, waiting))
    # an architecture's epoch per GMAC can be several times another's: the estimate says where it leans on one
    borrowing = f" ({other} of an architecture none of whose shapes is measured yet, from the others')" if other else ""
    estimated = f"; {scaled} run(s) of shapes not measured yet scaled by GMAC{borrowing}" if scaled else ""
    basis = (f"{expected:.1f} epochs per run ({'mean of the finished runs' if finished else 'max_epochs'}), "
             f"measured epoch times{estimated}, {at_once} run(s) at a time")
    eta = left / at_once
    return (eta, basis) if math.isfinite(eta) else (None, "epoch times too large to add up (hand-edited?)")


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min" if seconds >= 60 else f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours / 24:.1f} days"


SHOWN_RUNS = 5
"""Failed or invalid runs named in `bench status`'s text, the rest counted: a paper grid has 264."""


def format_status(status: GridStatus, max_epochs: int) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in status.counts.items() if n)
    lines = [f"{status.spec}: {len(status.runs)} runs in {status.folder}: {counts}"]
    active = [r for r in status.runs if r.state in ("running", "interrupted")]
    if active:
        lines.append(f"  {'run':44s} {'state':11s} {'epoch':>9s} {'best valid':>10s} {'s/epoch':>8s}  worker")
        for r in active:
            best = f"{r.best_valid_roc_auc:.4f}" if r.best_valid_roc_auc is not None else "-"
            per_epoch = f"{statistics.mean(r.epoch_seconds):.1f}" if r.epoch_seconds else "-"
            lines.append(f"  {r.run_id:44s} {r.state:11s} {f'{r.epoch}/{max_epochs}':>9s} {best:>10s} "
                         f"{per_epoch:>8s}  {r.worker or '-'}")
    failed = [r.run_id for r in status.runs if r.state == "failed"]
    every = " (--json lists every run)"
    if failed:
        lines.append(f"  failed: {first_of(failed, SHOWN_RUNS)} (bench grid --retry-failed reruns them)"
                     f"{every if len(failed) > SHOWN_RUNS else ''}")
    invalid = [r.run_id for r in status.runs if r.state == "invalid"]
    if invalid:
        lines.append(f"  invalid result.json: {first_of(invalid, SHOWN_RUNS)} (the next bench grid sets it aside "
                     f"and redoes the run){every if len(invalid) > SHOWN_RUNS else ''}")
    if status.not_in_spec:
        lines.append(f"  also {status.not_in_spec} run folder(s) the spec does not name (an earlier version of "
                     "it, or another spec of the same name): kept, and left out of its report")
    if status.not_in_spec_running:
        lines.append(f"  of those, running now: {', '.join(status.not_in_spec_running)} (a grid of that other "
                     "version trains its own runs)")
    left = sum(n for s, n in status.counts.items() if s not in ("done", "failed"))
    eta = "nothing left" if not left else f"ETA {duration(status.eta_seconds)} ({status.eta_basis})"
    lines.append(f"elapsed {duration(status.elapsed_seconds)}; {eta}")
    return "\n".join(lines)


def progress_line(spec: Spec, results: str | Path, started: float, retrying: str | None = None) -> str:
    """One line for a worker's log after each run: runs done / total, elapsed, ETA (from this grid's pace).
    The worker asking holds no run as it asks, and takes the next: it counts among the runs at a time.
    `retrying`: the token of the `--retry-failed` grid asking (`grid_status`)."""
    status = grid_status(spec, results, asking=1, retrying=retrying)
    done, failed = status.counts["done"], status.counts["failed"]
    left = len(status.runs) - done - failed + status.to_retry
    eta = "nothing left" if not left else f"ETA {duration(status.eta_seconds)}"
    retry = f" ({status.to_retry} to retry)" if status.to_retry else ""
    return (f"progress: {done}/{len(status.runs)} runs done{f', {failed} failed{retry}' if failed else ''}, "
            f"elapsed {duration(time.time() - started)}, {eta}")
