"""The results contract: where a grid's files are, what they are called, and what makes a result valid.

    <results>/<spec name>/
        runs/<run_id>/
            config.json       the run's canonical config (frozen when the run first starts)
            lock              held (flock) by the worker running it
            checkpoint.pt     last checkpointed epoch; best.pt the best-validation weights
            history.jsonl     one JSON line per finished epoch, appended while the run trains
            executions.jsonl  one line per start of the run (host, pid, time)
            error.txt         traceback of a failed run
            model.json        what `bench tag` needs to load best.pt (written with the result)
            result.json       written atomically at the end: the run's "done" marker
            *.rejected        files found invalid, set aside
        report/               `bench report`'s tables and figures

Writers (the runner, the training loop) and readers (the report, `bench tag`) take every name from
here. `result.json` carries `schema_version`; results written before it existed read as version 0
and are valid when they pass `result_problem`.

run_id: `<arch>-<rate>k-<n_mels>mel-x<hop>-<log>-s<seed>-<10 hex digits>`, e.g.
`vgg-16k-96mel-x1-log-s0-f89d7cb291` (the hex digits: sha256 of the run's canonical content).
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

from bench.core.store import NOT_REGULAR_FILE, read_regular_file

RUNS = "runs"
AUC_ROUNDING = 1e-9
"""How far above 1 an AUC read from a result may lie and still be 1: scikit-learn's average precision sums
recall steps times precisions in floating point, and a perfectly ranked tag can come to 1 + 2**-52
(`bench.train.metrics` clips what it writes; results written before it did hold such values)."""
REPORT = "report"
CONFIG = "config.json"
RESULT = "result.json"
LOCK = "lock"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
HISTORY = "history.jsonl"
EXECUTIONS = "executions.jsonl"
ERROR = "error.txt"
MODEL_JSON = "model.json"
RUN_FILES = (CONFIG, LOCK, CHECKPOINT, BEST, HISTORY, EXECUTIONS, ERROR, MODEL_JSON, RESULT)
"""The files of a run folder that the suite writes and reads back: no command's output may replace one."""

SCHEMA_VERSION = 1
"""Version of result.json's layout: 1 adds `schema_version` itself (older results are version 0)."""

SYNTHETIC_DEFAULT_CLIPS = 600
"""The synthetic dataset's clips where a spec sets none: a canonical dataset config records `clips` only
where the spec does (so a run's id stays that of the default), and reading it takes this."""

RUN_ID = re.compile(r"^(?P<arch>.+)-(?P<rate>\d+k?)-(?P<n_mels>\d+)mel-x(?P<hop_multiplier>\d+)-(?P<log>[^-]+)"
                    r"-s(?P<seed>\d+)-(?P<digest>[0-9a-f]{10})$")


def format_run_id(arch: str, sample_rate: int, n_mels: int, hop_multiplier: int, log: str, seed: int,
                  digest: str) -> str:
    """The readable run_id; `digest` is the hex sha256 of the run's canonical content (10 digits kept)."""
    rate = f"{sample_rate // 1000}k" if sample_rate % 1000 == 0 else str(sample_rate)
    return f"{arch}-{rate}-{n_mels}mel-x{hop_multiplier}-{log}-s{seed}-{digest[:10]}"


def parse_run_id(run_id: str) -> dict | None:
    """The configuration a run_id names (arch, sample_rate, n_mels, hop_multiplier, log, seed), or None."""
    match = RUN_ID.match(run_id)
    if not match:
        return None
    rate = match["rate"]
    return {"arch": match["arch"], "sample_rate": int(rate[:-1]) * 1000 if rate.endswith("k") else int(rate),
            "n_mels": int(match["n_mels"]), "hop_multiplier": int(match["hop_multiplier"]), "log": match["log"],
            "seed": int(match["seed"])}


def is_run_folder(path: Path) -> bool:
    """Whether a folder in runs/ is a run's: named by a run_id, or holding a run's config.json or
    result.json (not a stray folder such as notes/ or .ipynb_checkpoints/)."""
    return path.is_dir() and (RUN_ID.match(path.name) is not None or (path / CONFIG).exists()
                              or (path / RESULT).exists())


def spec_dir(results: str | Path, spec_name: str) -> Path:
    return Path(results) / spec_name


def spec_folder_problem(results: str | Path, spec_name: str) -> str | None:
    """Why `results` cannot hold the spec's folder, in words after "--results <results>: ", or None: a
    file stands where the folder (or its runs/) belongs, or `results` is a spec's folder itself (it
    holds runs/), given for the folder above it."""
    results = Path(results)
    folder = spec_dir(results, spec_name)
    for where in (folder, folder / RUNS):
        if where.exists() and not where.is_dir():
            return f"{where} is a file, not a folder (where the spec's runs go); move it aside, then rerun"
    if not folder.is_dir() and (results / RUNS).is_dir():
        return (f"holds runs itself; --results is the folder above it (did you mean --results "
                f"{results.parent}?)")
    return None


def run_dir(results: str | Path, spec_name: str, run_id: str) -> Path:
    return Path(results) / spec_name / RUNS / run_id


def result_problem(result: object, run_id: str) -> str | None:
    """Why a parsed result.json cannot be this run's done-marker, or None if it can."""
    if not isinstance(result, dict):
        return "not a JSON object"
    if result.get("run_id") != run_id:
        return f"run_id {result.get('run_id')!r} is not the folder's {run_id!r}"
    version = result.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= SCHEMA_VERSION:
        return f"schema_version {version!r} is not one this version reads (0-{SCHEMA_VERSION})"
    status = result.get("status")
    if status == "failed":
        return None if isinstance(result.get("error"), str) else "failed without an error"
    if status != "ok":
        return f"status {status!r}"
    metrics, cost = result.get("metrics"), result.get("cost")
    if not isinstance(metrics, dict) or not isinstance(cost, dict) or not isinstance(result.get("config"), dict):
        return "status ok without metrics, cost and config"
    for key in ("roc_auc", "pr_auc"):
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1 + AUC_ROUNDING:
            return f"metrics.{key} is {value!r}"
    return None


def load_result(folder: str | Path, run_id: str | None = None) -> tuple[dict | None, str | None]:
    """(result, None) for a valid result.json; (None, None) if there is none; (None, why) if it is invalid.
    `run_id`: the run the result must belong to (default: the folder's name, as in a results folder)."""
    folder = Path(folder)
    try:
        text = read_regular_file(folder / RESULT)
    except (FileNotFoundError, NotADirectoryError):  # a file where a folder on the way should be: no result
        return None, None
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return None, NOT_REGULAR_FILE
    try:
        result = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"not valid JSON ({type(exc).__name__}: {exc})"
    problem = result_problem(result, folder.name if run_id is None else run_id)
    return (None, problem) if problem else (result, None)


def read_result(folder: str | Path) -> dict | None:
    """The run's valid result, or None (no result, or one that is not valid: never a done-marker)."""
    return load_result(folder)[0]
