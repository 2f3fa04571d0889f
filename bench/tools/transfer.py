"""`bench transfer`: how good a feature extractor is each model of a grid, on a downstream task?

For every model (the finished runs of a spec, run folders, or imported models) and every file of the
task (`bench.data.task`), the file's embedding (`bench.tools.embed`: the mean over its patches of the
model's default layer, or `--layer`) goes to a scikit-learn classifier: standardised, then logistic
regression (and, with `--mlp`, a one-hidden-layer MLP), scored by cross-validation: the manifest's
folds, or stratified k-fold (k = 5, shuffled with a fixed seed, the same folds for every model).
Per fold: balanced accuracy and ROC-AUC (binary; macro one-vs-rest for more classes). Each model's
result is the mean and the standard deviation (ddof 1) over folds.

Results, `results/<spec>/transfer/<task>/`: `<model>.json` per model (written atomically: the
done-marker; a rerun with the same task, layer, classifiers and folds reuses it), `transfer.csv`
(one row per model and classifier, with the upstream model's GMAC and tagging ROC-AUC beside the
downstream scores; every model scored in the folder with the same task and settings, earlier
invocations' included), `transfer.md`, and `transfer.png`/`.pdf`: downstream score against GMAC and
against tagging ROC-AUC. Embeddings are cached by model and audio under `results/<spec>/embeddings/`
(with `--out DIR`, under `DIR/embeddings/`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.layout import RESULT, RUNS, load_result, run_dir, spec_dir, spec_folder_problem
from bench.core.paths import folder_path
from bench.core.store import (
    STALE_TEMP_SECONDS,
    atomic_write_json,
    atomic_write_text,
    beyond_64_bits,
    exclusive_lock,
    remove_temp_files,
)
from bench.data.task import FOLD_COLUMN, LABEL_COLUMN, Task, read_task
from bench.report.columns import SETUP
from bench.tools.embed import DECODE_VERSION, Embedder, embed_files, load_embedder, untrained

CLASSIFIERS = ("logreg", "mlp")
FOLDS = 5
SEED = 0
DECODED_BUDGET_BYTES = 2 << 30
"""Decoded waveforms kept in memory across models of one sample rate (beyond it, files are decoded again)."""


@dataclass(frozen=True)
class TransferSettings:
    layer: str | None = None
    """The embedding layer; None: each model's default (its first `embedding_names`)."""
    classifiers: tuple[str, ...] = ("logreg",)
    folds: int | None = None
    """Stratified folds when the manifest has no `fold` column (None: FOLDS); refused when it has one."""
    seed: int = SEED
    untrained: bool = False
    """Also score each configuration's network with initial weights (one per configuration and run seed,
    initialised under that seed), as a control."""

    def __post_init__(self) -> None:
        unknown = [c for c in self.classifiers if c not in CLASSIFIERS]
        if unknown or not self.classifiers:
            raise UserError(f"classifiers must be among {', '.join(CLASSIFIERS)}, got {', '.join(unknown) or 'none'}")
        if self.folds is not None and self.folds < 2:
            raise UserError(f"--folds must be >= 2, got {self.folds}")

    @property
    def n_folds(self) -> int:
        return FOLDS if self.folds is None else self.folds


CLASSIFIER_VERSION = 3
"""Part of a stored result's reuse key: raised when the classifiers or what their results hold change."""


def make_classifier(name: str, seed: int = SEED):
    """Standardisation (fitted on the training folds only) and the classifier, as one pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    if name == "mlp":
        # trained until its training loss stops falling (or 500 epochs), regularised by its L2 penalty: early
        # stopping on a tenth of a training fold (scikit-learn's, by accuracy, patience 10 epochs, of about
        # one step each at a few hundred files) stopped it after 16-22 epochs, near its initial weights
        # (ROC-AUC 0.64 where logistic regression had 0.92 on one embedding, and below chance for others)
        return make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=500,
                                                             random_state=seed))
    raise ValueError(f"unknown classifier {name!r}")


def sklearn_version() -> tuple[int, int]:
    """scikit-learn's (major, minor), whatever follows them ("1.8.0", "1.9.dev0", "1.8rc1")."""
    import re

    import sklearn

    major, minor = re.match(r"(\d+)\.(\d+)", sklearn.__version__).groups()
    return int(major), int(minor)


def _drawn_fold_hint(task: Task) -> str:
    if task.groups is not None and sklearn_version() < (1, 8):
        # before 1.8 its shuffle could not balance groups of one label each (10 groups, 5 per label,
        # 5 folds: folds of one label); 1.8 needs Python >= 3.11
        return (" (scikit-learn before 1.8, this one's StratifiedGroupKFold, can leave a label out of a fold "
                "when each group holds one label: scikit-learn >= 1.8, fewer --folds, or a fold column)")
    return " (too few groups of that label for the folds: fewer --folds, or a fold column)"


def fold_splits(task: Task, settings: TransferSettings) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per fold: the manifest's folds, else stratified k-fold (with the manifest's
    groups, stratified group k-fold: a group's files are all in one fold). Every fold must train and
    test on every label: a test fold without one would score balanced accuracy over fewer classes (with
    another chance level) and have no ROC-AUC, so its scores would not average with the others'."""
    labels = np.array(task.labels)
    if task.folds is not None and settings.folds is not None:
        raise UserError(f"--folds {settings.folds}: {task.manifest} has a {FOLD_COLUMN} column, which sets the folds")
    if task.folds is not None:
        folds = np.array(task.folds)
        names = sorted(set(task.folds))
        splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in names]
    else:
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

        counts = {label: int((labels == label).sum()) for label in task.classes}
        rare = {label: n for label, n in counts.items() if n < settings.n_folds}
        if rare:
            few = ", ".join(f"{k} ({v})" for k, v in sorted(rare.items()))
            raise UserError(f"{task.manifest}: {settings.n_folds}-fold cross-validation needs at least "
                            f"{settings.n_folds} files per label; too few: {few}")
        if task.groups is None:
            splitter = StratifiedKFold(n_splits=settings.n_folds, shuffle=True, random_state=settings.seed)
            splits = list(splitter.split(np.zeros(len(labels)), labels))
        else:
            if len(set(task.groups)) < settings.n_folds:
                raise UserError(f"{task.manifest}: {settings.n_folds}-fold cross-validation by group needs at least "
                                f"{settings.n_folds} groups, found {len(set(task.groups))}")
            splitter = StratifiedGroupKFold(n_splits=settings.n_folds, shuffle=True, random_state=settings.seed)
            splits = list(splitter.split(np.zeros(len(labels)), labels, groups=np.array(task.groups)))
        names = list(range(len(splits)))
    for fold, (train, test) in zip(names, splits, strict=True):
        for part, rows in (("training", train), ("test", test)):
            missing = sorted(set(task.classes) - set(labels[rows]))
            if missing:
                how = "holding out fold" if task.folds is not None else "drawn fold"
                raise UserError(f"{task.manifest}: {how} {fold} leaves no {part} file for label(s) "
                                f"{', '.join(missing)}" + ("" if task.folds is not None else _drawn_fold_hint(task)))
    return splits


SCORES = ("balanced_accuracy", "roc_auc")
"""The scores of a fold; with `_mean` and `_std`, those of a cross-validation."""


def fold_scores(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Balanced accuracy and ROC-AUC (binary: of the second class's probability; else macro one-vs-rest)
    of one fold; ROC-AUC is NaN when the fold lacks a class."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    predicted = classes[np.argmax(proba, axis=1)]
    scores = {"balanced_accuracy": float(balanced_accuracy_score(y_true, predicted))}
    if len(set(y_true)) < len(classes):
        scores["roc_auc"] = float("nan")
    elif len(classes) == 2:
        scores["roc_auc"] = float(roc_auc_score(y_true == classes[1], proba[:, 1]))
    else:
        scores["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))
    return scores


def cross_validate(features: np.ndarray, labels: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
                   classifier: str, seed: int = SEED) -> dict:
    """Per-fold scores, and their mean and standard deviation (ddof 1) over folds; `not_converged`: the
    folds whose fit stopped at its iteration limit (scikit-learn's ConvergenceWarning, kept out of the
    console and counted here)."""
    from sklearn.exceptions import ConvergenceWarning

    per_fold, not_converged = [], 0
    for train, test in splits:
        model = make_classifier(classifier, seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(features[train], labels[train])
        not_converged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:  # any other warning is shown as it would have been
            if not issubclass(w.category, ConvergenceWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        per_fold.append(fold_scores(labels[test], model.predict_proba(features[test]), model.classes_))
    out: dict = {"folds": per_fold, "not_converged": not_converged}
    for metric in SCORES:
        values = np.array([f[metric] for f in per_fold], dtype=float)
        values = values[np.isfinite(values)]
        out[f"{metric}_mean"] = float(values.mean()) if len(values) else float("nan")
        out[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return out


@dataclass(frozen=True)
class Target:
    """One upstream model: what `load_embedder` takes, and where its results and embeddings go."""

    model: str
    spec_name: str | None
    results_root: Path | None
    """The results folder holding the spec's folder, for runs of a grid."""


def resolve_targets(targets: list[str], results: str, models: str | None = None) -> tuple[list[Target], list[str]]:
    """Models named by SPEC files (their finished runs), run folders and imported models (in `models`);
    and notes on runs of a spec that are not finished (skipped), or on a model named twice."""
    from bench.core.layout import CONFIG
    from bench.tools.tag import resolve_model, run_id_of

    out, notes, unfinished = [], [], 0
    for target in targets:
        path = Path(target)
        if path.suffix == ".toml":
            from bench.spec import load_spec

            spec = load_spec(path)
            root, _ = folder_path(results, "--results")  # a file in the way: one line, as bench status says it
            if not root.is_dir():
                raise UserError(f"--results {root}: no such folder; `bench grid {target} --results {results}` trains "
                                "its runs there")
            if problem := spec_folder_problem(root, spec.name):
                raise UserError(f"--results {root}: {problem}")
            for run in spec.runs():
                folder = run_dir(root, spec.name, run.run_id)
                result, _ = load_result(folder)
                if result is None or result.get("status") != "ok":
                    notes.append(f"{run.run_id}: not finished, skipped")
                    unfinished += 1
                    continue
                if field := beyond_64_bits(result):  # no table column holds it (hand-edited?); as bench report
                    notes.append(f"{run.run_id}: {RESULT}'s {field} is an integer beyond 64 bits, skipped")
                    continue
                out.append(Target(str(folder), spec.name, root))
        elif path.is_dir() and (path / CONFIG).is_file() and path.resolve().parent.name == RUNS:
            # a run folder in its results folder, results/<spec>/runs/<run_id>: outputs go beside its runs
            spec_folder = path.resolve().parent.parent
            out.append(Target(str(path), spec_folder.name, spec_folder.parent))
        else:
            out.append(Target(target, None, None))
    if not out:
        why = [f"{unfinished} run(s) not finished: run the grid first"] if unfinished else []
        why += [note for note in notes if not note.endswith("not finished, skipped")][:3]  # another reason each
        raise UserError("no finished model to evaluate" + (f" ({'; '.join(why)})" if why else ""))
    unique, named = [], {}
    for target in out:  # a run named twice (its folder and its spec) is scored once, not as two seeds
        # a misspelt model, an unfinished run: said before any model is scored, not after those before it
        where = resolve_model(target.model, models, "MODEL")[1].resolve()  # an imported model by name or folder
        run_result(where)
        name = run_id_of(where) or where.name  # what its result file is named after: a renamed copy is its run
        if str(where) in named.values():
            notes.append(f"{target.model}: named more than once, scored once")
            continue
        if name in named:  # its result file would be the other's
            raise UserError(f"{named[name]} and {where} are both named {name}: their results would be "
                            "one file; evaluate them in separate runs of bench transfer (--out)")
        named[name] = str(where)
        unique.append(target)
    return unique, notes


UPSTREAM_VERSION = 4
"""What a stored result's `upstream` holds: 2 adds the dataset and its setup, 3 leaves them out of an
untrained control's, 4 adds the setup's `data` (`bench.report.columns.SETUP`). Part of the key, so that
results stored otherwise are scored anew instead of grouped apart from those that have them (beside
`bench.tools.embed.DECODE_VERSION`: scores of embeddings of files decoded otherwise are scored anew too)."""


def run_result(folder: Path) -> dict | None:
    """The result.json of the run in `folder` (None for an imported model), refused where it holds an
    integer beyond 64 bits, which no table column holds (hand-edited?)."""
    from bench.tools.tag import run_id_of

    result, _ = load_result(folder, run_id_of(folder))
    if result is not None and (field := beyond_64_bits(result)):
        raise UserError(f"{folder / RESULT}: {field} is an integer beyond 64 bits")
    return result


def upstream(embedder: Embedder) -> dict:
    """The upstream model's configuration, the data it was trained on (dataset and SETUP: runs of one
    configuration on other data are not seeds of one another), cost and tagging scores: a run's
    result.json; an imported model's model.json (GMAC measured, its published ROC-AUC)."""
    from bench.report.reading import run_setup

    result = run_result(Path(embedder.folder))
    if result is not None:
        config, cost, metrics = result.get("config", {}), result.get("cost", {}), result.get("metrics", {})
        return {"run_id": result.get("run_id"), "arch": config.get("arch"), "width": config.get("width"),
                "sample_rate": config.get("sample_rate"), "n_mels": config.get("n_mels"),
                "hop_multiplier": config.get("hop_multiplier"), "log": config.get("log"), "seed": config.get("seed"),
                "dataset": config.get("dataset"), **run_setup(result),
                "gmac": cost.get("gmac"), "params": cost.get("params"),
                "tagging_roc_auc": metrics.get("roc_auc"), "tagging_pr_auc": metrics.get("pr_auc")}
    import architectures
    from architectures import InputConfig
    from bench.cost.gmac import model_cost
    from bench.train.model_file import read_json

    meta = read_json(embedder.folder / "model.json")
    options = architectures.make_options(meta["arch"], **meta.get("options", {}))
    cost = model_cost(meta["arch"], InputConfig(**meta["input"]), len(meta["tags"]), options)
    published = meta.get("published") or {}
    return {"run_id": None, "arch": meta["arch"], "width": meta.get("options", {}).get("width"),
            "sample_rate": meta["input"]["sample_rate"], "n_mels": meta["input"]["n_mels"],
            "hop_multiplier": meta["input"]["hop_multiplier"], "log": meta["frontend"]["log"], "seed": None,
            "dataset": meta.get("dataset"), **dict.fromkeys(SETUP), "gmac": cost.gmac, "params": cost.params,
            "tagging_roc_auc": published.get("roc_auc"),
            "tagging_pr_auc": published.get("pr_auc")}


class Decoded:
    """Decoded waveforms by (path, sample rate), kept while they fit a byte budget: the runs of a grid
    share a few sample rates, so a task's files are decoded once per rate."""

    def __init__(self, budget_bytes: int = DECODED_BUDGET_BYTES):
        self.budget = budget_bytes
        self.kept: dict[tuple[str, int], np.ndarray] = {}
        self.bytes = 0

    def __call__(self, path: str, sample_rate: int) -> np.ndarray:
        from bench.tools.embed import decode

        key = (path, sample_rate)
        if key in self.kept:
            return self.kept[key]
        waveform = decode(path, sample_rate)
        if self.bytes + waveform.nbytes <= self.budget:
            self.kept[key] = waveform
            self.bytes += waveform.nbytes
        return waveform


def task_identity(task: Task) -> str:
    parts = [task.paths, task.labels, task.folds] + ([task.groups] if task.groups is not None else [])
    digest = hashlib.sha256(json.dumps(parts).encode("utf-8"))
    return digest.hexdigest()[:16]


def same_audio(task: Task) -> None:
    """Refuse a task that holds one recording under two names (by the files' bytes, the embeddings' key):
    copies in training and test folds would score the classifier on files it trained on."""
    from bench.tools.embed import file_identity

    by_size: dict[int, list[str]] = {}
    for path in task.paths:  # equal bytes have equal sizes: only files of a shared size are read
        try:
            by_size.setdefault(os.path.getsize(path), []).append(path)
        except OSError:
            continue  # read again, and said, when embedded
    for paths in (p for p in by_size.values() if len(p) > 1):
        first: dict[str, str] = {}
        for path in paths:
            try:
                identity = file_identity(path)
            except OSError:
                continue
            if identity in first:
                raise UserError(f"{task.manifest}: {path} and {first[identity]} are the same file's bytes; "
                                "list each recording once")
            first[identity] = path


def audio_fingerprint(task: Task) -> str:
    """The task's audio as it is now (size and modification time of every file, one stat each): a file
    edited or replaced in place is a new task for the scores, whose reuse would otherwise serve the old
    ones (the embeddings themselves are keyed by the files' bytes)."""
    h = hashlib.sha256()
    for path in task.paths:
        try:
            stat = Path(path).stat()
            h.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{path}\tmissing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


TASK_MARKER = "task.manifest.json"


SETTINGS_KEYS = ("layer", "classifiers", "folds", "seed")
"""What a user chooses of a stored result's key (the rest follows the task, the audio and the versions)."""


def task_owner(folder: Path) -> tuple[str, str | None] | None:
    """(manifest, label column) of the task whose transfer `folder` holds (its task.manifest.json), or
    None. The column is None in a marker written before markers named it (`holds` tells it)."""
    try:
        marker = json.loads((folder / TASK_MARKER).read_text())
        column = marker.get("label_column")
        return str(marker["manifest"]), None if column is None else str(column)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def owner_of(task: Task) -> tuple[str, str]:
    """(manifest, label column): the labels of another column of one manifest are another task."""
    return str(Path(task.manifest).resolve()), task.label_column


def holds(folder: Path, task: Task) -> bool | None:
    """Whether `folder` holds the transfer of `task`; None where it holds none yet. A marker that names no
    label column (written before markers did) is of the task its stored results were scored on: `task`
    where every one of them was (or there is none), so that results of another column kept there are
    neither read as this task's nor replaced by them."""
    owner = task_owner(folder)
    if owner is None:
        return None
    if owner[0] != owner_of(task)[0]:
        return False
    if owner[1] is not None:
        return owner[1] == task.label_column
    identity = task_identity(task)
    return all(isinstance(stored.get("key"), dict) and stored["key"].get("task") == identity
               for stored in map(_load, sorted(folder.glob("*.json"))) if stored is not None and "key" in stored)


def task_text(owner: tuple[str, str | None]) -> str:
    if owner[1] is None:  # a marker from before markers named the column: its results are of other labels
        return f"{owner[0]} with other labels (another --label-column, or the manifest edited since)"
    return owner[0] + ("" if owner[1] == LABEL_COLUMN else f" (labels of column {owner[1]!r})")


def task_folder(parent: Path, task: Task) -> Path:
    """`parent/<task name>`, unless that folder holds the results of another task of the same name
    (two tasks' `task.csv`): then `<task name>-<digest of the manifest's path and label column>`. The
    folder's task.manifest.json says whose it is."""
    owner = owner_of(task)
    folder = parent / task.name
    if holds(folder, task) is False:
        named = owner[0] if owner[1] == LABEL_COLUMN else "\n".join(owner)  # `label`'s: the name it always had
        folder = parent / f"{task.name}-{hashlib.sha256(named.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
    return folder


def evaluate_model(embedder: Embedder, task: Task, settings: TransferSettings, splits, cache_root: Path,
                   decoder: Callable[[str, int], np.ndarray], progress=None, trained: bool = True) -> dict:
    layer = settings.layer or embedder.layers[0]
    if layer not in embedder.layers:
        raise UserError(f"--layer {layer}: {embedder.tagger.name} has {', '.join(embedder.layers)}")
    files, failed = embed_files(embedder, list(task.paths), cache_root, decoder, progress)
    if failed:
        first = next(iter(failed.items()))
        raise UserError(f"{len(failed)} file(s) of {task.manifest} cannot be decoded, e.g. {first[0]}: {first[1]} "
                        "(remove them from the task)")
    features = np.stack([files[p].means[layer] for p in task.paths]).astype(np.float64)
    labels = np.array(task.labels)
    described = upstream(embedder)
    if trained is False:  # a control: the architecture of the run, none of its training (nor its data)
        described.update(tagging_roc_auc=None, tagging_pr_auc=None, seed=None, dataset=None,
                         **dict.fromkeys(SETUP))
    return {
        "model": embedder.tagger.name, "model_id": embedder.identity, "layer": layer, "dims": int(features.shape[1]),
        "default_layer": embedder.layers[0], "trained": trained, "upstream": described,
        "scores": {name: cross_validate(features, labels, splits, name, settings.seed)
                   for name in settings.classifiers},
    }


def architecture_key(embedder: Embedder) -> str:
    """What a control stands for: the network's shapes and front end, not its weights or seed."""
    model, frontend = embedder.tagger.model, embedder.tagger.frontend
    shapes = [(name, tuple(p.shape)) for name, p in model.state_dict().items()]
    # the whole front end: a released model's (reflect padding, float16 mel) differs from a run's of the
    # same rate, mels, hop and log
    framing = [frontend.mel.spectrogram.pad_mode, frontend.pad_to_hop, frontend.float16_mel, frontend.float16_waveform]
    return json.dumps([type(model).__name__, shapes, str(frontend.config), framing, embedder.tagger.patch_frames])


def rows_of(results: list[dict]) -> list[dict]:
    """The tidy table: one row per model and classifier; an untrained control's `init_seed` is the seed
    it was initialised under (its `seed`, of a trained run, is empty)."""
    rows = []
    for r in results:
        for classifier, scores in r["scores"].items():
            rows.append({"model": r["model"], **r["upstream"], "trained": r.get("trained", True),
                         "init_seed": r.get("init_seed"), "layer": r["layer"], "dims": r["dims"],
                         "classifier": classifier, "folds": len(scores["folds"]),
                         **{k: v for k, v in scores.items() if k != "folds"}})
    return rows


INTEGER_COLUMNS = ("sample_rate", "n_mels", "hop_multiplier", "seed", "init_seed", "n_tags", "params", "dims",
                   "folds", "not_converged")
"""transfer.csv's columns of whole numbers, written as such where a row leaves one empty (a control has no
seed or dataset, an imported model no seed): pandas would make the column float (0.0, 50.0)."""


def tidy_frame(results: list[dict]):
    """`rows_of` as a DataFrame, its columns of whole numbers as nullable integers."""
    import pandas as pd

    frame = pd.DataFrame(rows_of(results))
    for column in INTEGER_COLUMNS:
        values = frame[column].dropna() if column in frame else ()
        if len(values) and all(isinstance(v, (int, float)) and float(v).is_integer() for v in values):
            frame[column] = frame[column].astype("Int64")
    return frame


def run_transfer(targets: list[str], task_path: str, settings: TransferSettings, results: str = "results",
                 out: str | None = None, models: str | None = None, label_column: str = "label",
                 quiet: bool = False) -> int:
    from bench.core.paths import writable_folder
    from bench.core.progress import progress_bar
    from bench.report.transfer import transfer_figure, transfer_markdown

    task = read_task(task_path, label_column)
    splits = fold_splits(task, settings)
    same_audio(task)
    refs, notes = resolve_targets(targets, results, models)
    first = refs[0]
    base = (spec_dir(first.results_root, first.spec_name) if first.spec_name else Path(results)) if not out else None
    out_dir = Path(out) if out else task_folder(base / "transfer", task)
    cache_root = (base or out_dir) / "embeddings"
    writable_folder(out_dir, "--out")
    mine = owner_of(task)
    def refuse_another_tasks_out() -> None:
        if out and holds(out_dir, task) is False:  # its results would be replaced by another task's
            raise UserError(f"--out {out}: holds the transfer of {task_text(task_owner(out_dir))}; give each task "
                            "its own --out")

    refuse_another_tasks_out()
    for note in notes:
        print(f"bench transfer: {note}", file=sys.stderr)
    key = {"task": task_identity(task), "audio": audio_fingerprint(task), "layer": settings.layer,
           "classifiers": list(settings.classifiers),
           "folds": "manifest" if task.folds is not None else settings.n_folds, "seed": settings.seed,
           "upstream": UPSTREAM_VERSION, "decode": DECODE_VERSION, "classifier": CLASSIFIER_VERSION,
           # its folds and classifiers: drawn folds differ between scikit-learn 1.7 and 1.8
           "scikit-learn": ".".join(map(str, sklearn_version()))}
    def claim_out_dir() -> None:
        """The task's folder, made when the first result is written: a model that cannot be loaded, or a
        layer it does not have, leaves nothing behind. Its name is chosen again under a lock of the
        folder holding it: another transfer of a manifest of the same name may have taken it since."""
        nonlocal out_dir
        if task_owner(out_dir) == mine:
            return
        home = out_dir if out else out_dir.parent  # --out is the user's: nothing is written beside it
        home.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(home / ".transfer-claim.lock"):
            refuse_another_tasks_out()  # another transfer into the same --out may have claimed it since
            chosen = out_dir if out else task_folder(out_dir.parent, task)
            if holds(chosen, task) is not False:  # this task's from now (a marker without the column: named)
                chosen.mkdir(parents=True, exist_ok=True)
                atomic_write_json(chosen / TASK_MARKER, {"manifest": mine[0], "name": task.name,
                                                         "label_column": task.label_column})
        if chosen != out_dir:
            print(f"  -> {chosen} ({out_dir} was taken meanwhile by another manifest named {task.name})")
            out_dir = chosen

    decoder = Decoded()
    collected = []
    print(f"{task.name}: {len(task.paths)} files, labels {', '.join(task.classes)}; "
          f"{len(splits)} folds; {len(refs)} model(s) -> {out_dir}")
    controls: set[tuple[str, int]] = set()

    def score(embedder: Embedder, trained: bool, init_seed: int | None = None) -> dict:
        """The model's stored or new result (appended to `collected`)."""
        previous = _load(out_dir / f"{embedder.tagger.name}.json")
        layer = settings.layer or embedder.layers[0]
        if previous is not None and same_settings(previous, key, layer) \
                and previous.get("model_id") == embedder.identity:
            if previous.get("default_layer") != embedder.layers[0]:  # stored before results named it: named now,
                previous["default_layer"] = embedder.layers[0]  # so that a table without --layer finds it
                atomic_write_json(out_dir / f"{embedder.tagger.name}.json", previous)
            collected.append(previous)
            bar.update(len(task.paths))
            return previous
        result = {"key": key, **evaluate_model(embedder, task, settings, splits, cache_root, decoder, bar.update,
                                               trained)}
        if init_seed is not None:  # a control: which initialisation it is (its upstream names no seed)
            result["init_seed"] = init_seed
        for name, scores in result["scores"].items():
            if scores["not_converged"]:
                print(f"bench transfer: {embedder.tagger.name}: {name} reached its iteration limit in "
                      f"{scores['not_converged']} of {len(splits)} folds (scores kept, as `not_converged` in its "
                      "JSON)", file=sys.stderr)
        claim_out_dir()
        done = out_dir / f"{embedder.tagger.name}.json"
        stored = _load(done)
        changed: list[str] = []
        if stored is not None and isinstance(stored.get("key"), dict) and stored.get("model_id") == embedder.identity:
            was = {**{name: stored["key"].get(name) for name in SETTINGS_KEYS}, "layer": stored.get("layer")}
            now = {**{name: key[name] for name in SETTINGS_KEYS}, "layer": layer}  # the layers used
            changed = [name for name in SETTINGS_KEYS if was[name] != now[name]]
        if changed:
            before = ", ".join(f"{name} {was[name]} (now {now[name]})" for name in changed)
            print(f"bench transfer: {embedder.tagger.name}: its result in {out_dir}, scored with {before}, is "
                  "replaced (a separate --out keeps both)", file=sys.stderr)
        atomic_write_json(done, result)
        collected.append(result)
        return result

    with progress_bar(len(refs) * len(task.paths) * (2 if settings.untrained else 1), "embedding",
                      enabled=not quiet) as bar:
        for ref in refs:
            embedder = load_embedder(ref.model, models)
            scored = score(embedder, True)
            if not settings.untrained:
                continue
            # one control per configuration and seed: its runs' spread over seeds, and the controls' over
            # initialisations, are then the same kind of spread
            seed = (scored.get("upstream") or {}).get("seed")  # the run's, as scored (imported models: none)
            control = (architecture_key(embedder), seed if isinstance(seed, int) else settings.seed)
            if control not in controls:
                controls.add(control)
                score(untrained(embedder, control[1]), False, init_seed=control[1])
            else:
                bar.update(len(task.paths))
    claim_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    # two transfers may share the folder: one writes the table and figure at a time, each from the models
    # scored by then, so that transfer.csv, .md and .png are always of one reading
    with exclusive_lock(out_dir / ".transfer.lock"):
        earlier = scored_earlier(out_dir, key, collected, controls=settings.untrained)
        if earlier:
            print(f"  with {len(earlier)} model(s) scored here before with the same task and settings: "
                  + ", ".join(r["model"] for r in earlier))
        frame = tidy_frame(collected + earlier)
        remove_temp_files(out_dir, STALE_TEMP_SECONDS)  # of killed writers
        atomic_write_text(out_dir / "transfer.csv", frame.to_csv(index=False))
        atomic_write_text(out_dir / "transfer.md", transfer_markdown(frame, task.name))
        transfer_figure(frame, task.name, out_dir / "transfer", n_classes=len(task.classes),
                        n_files=len(task.paths))
    for row in frame.itertuples():
        print(f"  {row.model:44s} {row.classifier:6s} balanced accuracy {row.balanced_accuracy_mean:.3f}"
              f" +- {row.balanced_accuracy_std:.3f}   ROC-AUC {row.roc_auc_mean:.3f} +- {row.roc_auc_std:.3f}")
    print(f"wrote {out_dir / 'transfer.csv'}, transfer.md, transfer.png, transfer.pdf")
    return 0


def scored_earlier(out_dir: Path, key: dict, collected: list[dict], controls: bool = True) -> list[dict]:
    """The stored results in `out_dir` of other models than `collected`'s, scored with the same `key`
    (task, audio, layer, classifiers, folds, seed) by an earlier `bench transfer`, in the order of their
    names: the folder's table holds every model scored there, not only the latest invocation's. Untrained
    controls only with `controls` (an `--untrained` call), and once per configuration and initialisation
    seed: controls named after two runs of one configuration and seed are the same network."""
    def configuration(result: dict) -> tuple:  # a control's upstream names the run it was made from
        upstream = result.get("upstream")
        described = {k: v for k, v in (upstream if isinstance(upstream, dict) else {}).items() if k != "run_id"}
        return described, result.get("init_seed", key["seed"])  # stored before init_seed: initialised under it

    models = {r["model"] for r in collected}
    seen = [configuration(r) for r in collected if r.get("trained") is False]
    found = []
    for path in sorted(out_dir.glob("*.json")):
        if path.name == TASK_MARKER:
            continue
        result = _load(path)
        if not isinstance(result, dict) or result.get("model") in models \
                or not same_settings(result, key, key["layer"] or default_layer(result)):
            continue
        if result.get("trained") is False:
            if not controls or configuration(result) in seen:
                continue
            seen.append(configuration(result))
        found.append(result)
    return found


def same_settings(result: dict, key: dict, layer: str | None) -> bool:
    """Whether a stored `result` was scored with `key`'s task and settings, on `layer`: the layer it
    used, whether named (`--layer pool4`) or its model's default (no `--layer`: pool4 for a VGG)."""
    stored = result.get("key")
    return (isinstance(stored, dict) and layer is not None and result.get("layer") == layer
            and {k: v for k, v in stored.items() if k != "layer"} == {k: v for k, v in key.items() if k != "layer"})


def default_layer(result: dict) -> str | None:
    """The layer a stored result's model is scored on without `--layer`, or None where that is unknown
    (a result scored on a named layer before results recorded their model's default)."""
    if isinstance(result.get("default_layer"), str):
        return result["default_layer"]
    stored = result.get("key")
    return result.get("layer") if isinstance(stored, dict) and stored.get("layer") is None else None


def _load(path: Path) -> dict | None:
    """A stored result; its scores written as null (JSON has no NaN: a fold without a class) read as NaN.
    None where there is none, or what is there is not a JSON object (damaged, or not this command's): the
    model is scored anew and the file replaced."""
    def scores(obj: dict) -> dict:
        return {key: math.nan if value is None and key.startswith(SCORES) else value for key, value in obj.items()}

    try:
        result = json.loads(path.read_text(), object_hook=scores)
    except (OSError, ValueError, RecursionError):
        return None
    # an integer no float or table column holds (hand-edited): no result of this command's
    return result if isinstance(result, dict) and not beyond_64_bits(result) else None

