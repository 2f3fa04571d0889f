"""Reading a results folder: run folders -> result.json documents -> tidy tables (summary, per tag)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.core import layout
from bench.core.errors import UserError
from bench.core.layout import (
    AUC_ROUNDING,
    CHECKPOINT,
    RESULT,
    RUNS,
    SYNTHETIC_DEFAULT_CLIPS,
    parse_run_id,
    result_problem,
)
from bench.core.store import beyond_64_bits, is_finite_number, is_passing_fault, read_regular_file
from bench.report.columns import (
    ARCH_OPTIONS,
    CONFIG,
    COST_FIELDS,
    KEY,
    METRICS,
    NOT_OK_COLUMNS,
    PER_TAG_COLUMNS,
    SUMMARY_COLUMNS,
    paper_order,
)


def run_folders(results_dir: str | Path) -> list[Path]:
    """The run folders under RESULTS_DIR/runs/, or a UserError saying why there are none."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: no such results folder (expected results/<spec name>)")
    runs = results_dir / RUNS
    folders = sorted(p for p in runs.iterdir() if layout.is_run_folder(p)) if runs.is_dir() else []
    if not folders:
        nested = sorted(str(p.parent) for p in results_dir.glob("*/runs") if p.is_dir())
        hint = f"; did you mean {' or '.join(nested)}?" if nested else ""
        raise UserError(f"{results_dir}: holds no runs (expected {runs}/<run_id>/{RESULT}){hint}")
    return folders


def _config(result: dict, names: Iterable[str]) -> dict:
    """`names` of a result.json's config. A run whose config records no width takes it from its canonical
    options; a run with none there either (an architecture without a width option) has width 1, its own size."""
    config = result["config"]
    fields = {name: config.get(name) for name in names}
    if "width" in fields and fields["width"] is None:
        canonical = result.get("canonical")
        options = canonical.get("options") if isinstance(canonical, dict) else None
        fields["width"] = options.get("width", 1.0) if isinstance(options, dict) else 1.0
    return fields


def _config_fields(doc: dict) -> dict:
    """Config fields from a result.json ("config") or a config.json (the canonical config), each a plain
    value: the rows of runs that are not ok come from files that may hold anything (a dataset written
    as its config table, a list), and the report groups and sorts them."""
    if isinstance(doc.get("config"), dict):
        fields = _config(doc, (*CONFIG, "seed", "dataset"))
    else:
        fields = {name: doc.get(name) for name in (*CONFIG, "seed", "dataset")}
        options = doc.get("options")
        fields["width"] = options.get("width", 1.0) if isinstance(options, dict) else 1.0
    if isinstance(fields["dataset"], dict):
        fields["dataset"] = fields["dataset"].get("name")
    return _plain(fields)


def _plain(fields: dict) -> dict:
    """Each value as a table holds it: an integer beyond 64 bits, which no column holds, is left empty."""
    return {name: None if isinstance(value, int) and beyond_64_bits(value) is not None
            else value if value is None or isinstance(value, (str, int, float)) else str(value)
            for name, value in fields.items()}


def _folder_fields(folder: Path, doc: dict | None) -> dict:
    """The config fields of a run folder: from its result.json or config.json `doc`, else its name (whose
    seed may be any number of digits)."""
    return _config_fields(doc) if doc else _plain(parse_run_id(folder.name) or {})


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(read_regular_file(path))  # a link to a FIFO or /dev/zero: no config read
    except (OSError, ValueError, RecursionError):  # RecursionError: arrays nested past what json reads
        return None
    return doc if isinstance(doc, dict) else None


def read_runs(folders: Iterable[Path]) -> tuple[list[dict], pd.DataFrame]:
    """(ok results, one row per run that is not: failed, unreadable or incomplete, with the reason)."""
    ok, not_ok = [], []
    for folder in folders:
        path = folder / RESULT
        if not path.exists():
            started = "interrupted or still running" if (folder / CHECKPOINT).exists() else "not finished"
            fields = _folder_fields(folder, _read_json(folder / layout.CONFIG))
            not_ok.append({"run_id": folder.name, "status": "incomplete", "reason": f"no {RESULT} ({started})",
                           **fields})
            continue
        try:
            result = json.loads(read_regular_file(path))
            if not isinstance(result, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested past what json reads
            # the file system's fault or a permission (another user's run), not the result's: a report
            if is_passing_fault(exc) or isinstance(exc, PermissionError):  # without the run (and its figures
                raise  # replaced) would be wrong; the command says it in one line, as bench status does
            not_ok.append({"run_id": folder.name, "status": "unreadable", "reason": f"{path}: {exc}",
                           **_folder_fields(folder, _read_json(folder / layout.CONFIG))})
            continue
        status = result.get("status")
        problem = result_problem(result, folder.name)  # the grid's own test of a done-marker
        if problem is not None:  # not this folder's done-marker (another run's, a future schema): the grid
            not_ok.append({"run_id": folder.name, "status": "invalid", "reason": problem,  # redoes the run
                           **_folder_fields(folder, _read_json(folder / layout.CONFIG))})
            continue
        if status == "ok":
            problem = report_problem(result)
        if status == "ok" and problem is None:
            ok.append(_aucs_at_most_one(result))
        else:
            reason = result.get("error") or problem or f"status {status!r}"
            shown = "invalid" if status == "ok" else (status or "unknown")  # claims ok, fails the check
            not_ok.append({"run_id": folder.name, "status": shown, "reason": reason, **_config_fields(result)})
    return ok, pd.DataFrame(not_ok, columns=NOT_OK_COLUMNS)


NOT_IN_SPEC = "not in spec"
"""runs_not_ok.csv status of a run folder that the spec, as it now stands, does not name."""


def _aucs_at_most_one(result: dict) -> dict:
    """`result` (valid: `report_problem`) with its AUCs above 1 by rounding (`AUC_ROUNDING`) read as 1."""
    metrics = result["metrics"]
    for values in (metrics, *(metrics.get("per_tag") or {}).values()):
        for name in ("roc_auc", "pr_auc"):
            if values.get(name) is not None and values[name] > 1:
                values[name] = 1.0
    return result


def _is_int(value) -> bool:
    """An integer a table's integer column holds (int64): JSON's integers have no bound, and a column
    with a larger one becomes a column of Python objects, which the statistics and figures cannot read."""
    return isinstance(value, int) and not isinstance(value, bool) and beyond_64_bits(value) is None


ON_LOG_AXES = ("gmac", "storage_bytes", "latency_ms")
"""Cost fields a figure draws on a log axis (the trade-off figures'), where 0 or less has no place."""


def report_problem(result: dict) -> str | None:
    """Why an ok result (one that `result_problem` accepts: the grid's done-marker) cannot be read into the
    report's tables (a field of the wrong type, e.g. a hand-edited or foreign file), or None."""
    for part in ("config", "metrics", "cost", "canonical"):
        if found := beyond_64_bits(result.get(part), part):
            return f"{found} is an integer beyond 64 bits"
    config = result["config"]
    for name in ("sample_rate", "n_mels", "hop_multiplier"):
        if not _is_int(config.get(name)) or config[name] <= 0:
            return f"config.{name} is {config.get(name)!r}, expected a positive integer below 2**63"
    if not _is_int(config.get("seed")):
        return f"config.seed is {config.get('seed')!r}, expected an integer of 64 bits"
    for name in ("arch", "log", "dataset"):  # the dataset keys every comparison: a run without one compares with none
        if not isinstance(config.get(name), str) or not config[name]:
            return f"config.{name} is {config.get(name)!r}, expected a name"
    gmac = result["cost"].get("gmac")
    if not is_finite_number(gmac) or not gmac > 0:  # Fig. 1's log axis, the front
        return f"cost.gmac is {gmac!r}, expected a positive number"
    for name in COST_FIELDS:  # each one a column averaged over seeds; the log axes' (ON_LOG_AXES) above 0
        value = result["cost"].get(name)
        if value is not None and not (is_finite_number(value)
                                      and (value > 0 if name in ON_LOG_AXES else value >= 0)):
            return (f"cost.{name} is {value!r}, expected a "
                    f"{'positive' if name in ON_LOG_AXES else 'finite, non-negative'} number")
    width = _config(result, ("width",))["width"]  # the width the tables take: config's, else the options'
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        return f"width is {width!r}, expected a positive number"
    per_tag = result["metrics"].get("per_tag")
    if per_tag is not None and not (isinstance(per_tag, dict) and all(isinstance(v, dict) for v in per_tag.values())):
        return "metrics.per_tag is not an object of per-tag objects"
    for tag, values in (per_tag or {}).items():
        for name in ("roc_auc", "pr_auc"):
            if not (is_finite_number(values.get(name)) and 0 <= values[name] <= 1 + AUC_ROUNDING):
                return f"metrics.per_tag[{tag!r}].{name} is {values.get(name)!r}, expected a number in [0, 1]"
        if values.get("positives") is not None and not (_is_int(values["positives"]) and values["positives"] >= 0):
            return f"metrics.per_tag[{tag!r}].positives is {values['positives']!r}, expected a count"
    if not isinstance(result["metrics"].get("excluded_tags") or [], list):
        return "metrics.excluded_tags is not a list"
    canonical = result.get("canonical")
    if canonical is not None and not (isinstance(canonical, dict) and all(
            isinstance(canonical.get(k) or {}, dict) for k in ("dataset", "options"))):
        return "canonical is not an object with dataset and options objects"
    return None


def not_in_spec(folders: Iterable[Path], spec: str) -> pd.DataFrame:
    """runs_not_ok.csv rows for run folders that `spec` (a path, for the reason) no longer names: runs of an
    earlier version of it (another configuration, seed, dataset or protocol), finished or not."""
    rows = []
    for folder in folders:
        fields = _folder_fields(folder, _read_json(folder / RESULT) or _read_json(folder / layout.CONFIG))
        rows.append({"run_id": folder.name, "status": NOT_IN_SPEC,
                     "reason": f"not a run of {spec} as it now stands (an earlier configuration, seed, dataset "
                               "or protocol, or a network this version builds otherwise)", **fields})
    return pd.DataFrame(rows, columns=NOT_OK_COLUMNS)


NOT_STARTED = "no run folder (not started)"
"""runs_not_ok.csv reason of a run the spec names that no grid has started."""


def not_started(configs: dict[str, dict]) -> pd.DataFrame:
    """runs_not_ok.csv rows for runs the spec names that have no folder yet (run_id -> its config fields, as
    the spec plans them: a run id leaves out its width and dataset): incomplete, not started."""
    rows = [{"run_id": run_id, "status": "incomplete", "reason": NOT_STARTED, **config}
            for run_id, config in configs.items()]
    return pd.DataFrame(rows, columns=NOT_OK_COLUMNS)


def tidy_table(results: list[dict]) -> pd.DataFrame:
    """summary.csv: one row per ok run (SUMMARY_COLUMNS); accuracies as fractions, cost per clip."""
    rows = []
    for result in results:
        config, metrics, cost = result["config"], result["metrics"], result["cost"]
        rows.append({"run_id": result["run_id"], **_config(result, (*CONFIG, "seed")),
                     **{name: metrics.get(name) for name in METRICS}, **{name: cost.get(name) for name in COST_FIELDS},
                     "dataset": config.get("dataset"), **run_setup(result), ARCH_OPTIONS: arch_options(result),
                     "tags_scored": metrics.get("n_tags"), "tags_excluded": len(metrics.get("excluded_tags") or [])})
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    numeric = [c for c in SUMMARY_COLUMNS
               if c not in ("run_id", "arch", "log", "dataset", "split", "data", ARCH_OPTIONS)]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return paper_order(frame, ("seed",))


def arch_options(result: dict) -> str | None:
    """The `arch_options` column of a result: its canonical options but the width, "name=value" joined by
    ", " in name order ("segment_seconds=3"); "" where there are none, None where none are recorded."""
    options = (result.get("canonical") or {}).get("options")
    if not isinstance(options, dict):
        return None
    return ", ".join(f"{name}={value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool)
                     else f"{name}={value}" for name, value in sorted(options.items()) if name != "width")


def run_setup(result: dict) -> dict:
    """The SETUP columns of a result: clip_seconds, n_tags, split and data, from its canonical dataset config."""
    dataset = (result.get("canonical") or {}).get("dataset") or {}
    return {"clip_seconds": dataset.get("clip_seconds"), "n_tags": dataset.get("n_tags"),
            "split": _split_label(dataset), "data": _data_label(dataset)}


def _data_label(dataset: dict) -> str | None:
    """The `data` column (see SETUP) of a canonical dataset config; None when the run records none.
    MTG-Jamendo's config leaves out `subset` for its default (top50tags); a synthetic dataset is its
    number of clips and the seed it was generated with."""
    if not dataset:
        return None
    parts = []
    if dataset.get("name") == "jamendo" or dataset.get("subset"):
        parts.append(f"subset {dataset.get('subset') or 'top50tags'}")
    if dataset.get("tags"):  # fewer tags than the subset has: the most frequent (`DatasetSpec.identity`)
        parts.append(f"{dataset['tags']} tags")
    if dataset.get("name") == "synthetic":
        parts.append(f"{dataset.get('clips') or SYNTHETIC_DEFAULT_CLIPS} clips, seed {dataset.get('seed', 0)}")
    return ", ".join(parts) or "default"


def _split_label(dataset: dict) -> str | None:
    """The `split` column (see SETUP) of a canonical dataset config; None when the run records none.
    The canonical config leaves out `split` and `split_file` when they are not set (`DatasetSpec.identity`)."""
    if not dataset:
        return None
    label = dataset.get("split_file") or ("default" if dataset.get("split", "folders") == "folders"
                                          else str(dataset["split"]))
    return label + (", untagged clips dropped" if dataset.get("drop_untagged") else "")


def per_tag_table(results: list[dict]) -> pd.DataFrame:
    """per_tag.csv: one row per (ok run, tag) with the tag's test ROC-AUC and PR-AUC (fractions)."""
    rows = []
    for result in results:
        ident = {"run_id": result["run_id"], **_config(result, (*KEY, "seed"))}
        setup = run_setup(result)
        for tag, values in (result["metrics"].get("per_tag") or {}).items():
            rows.append({**ident, "tag": tag, **{k: values.get(k) for k in ("roc_auc", "pr_auc", "positives")},
                         **setup})
    return paper_order(pd.DataFrame(rows, columns=PER_TAG_COLUMNS), ("seed", "tag"))


def duplicate_seeds(summary: pd.DataFrame) -> pd.DataFrame:
    """Ok runs that share configuration and seed (e.g. a changed protocol): they would count twice."""
    return summary[summary.duplicated([*KEY, "seed"], keep=False)]
