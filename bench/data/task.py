"""A downstream task: a CSV manifest of audio files and one label each, for `bench transfer`.

Columns: `path` (relative to the manifest's folder, or absolute), the label column (`label` unless
named otherwise), an optional `fold` (integers: cross-validation holds out one fold at a time;
without it, stratified folds are drawn) and an optional `group` (an artist, album or recording:
files of one group are never split between training and test, so a classifier cannot score by
recognising the artist). Other columns are ignored. Every problem is one line naming
the manifest, and the line where there is one; every file must exist and be audio of a second or
more by its header before any work starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import UserError
from bench.core.paths import nameable
from bench.core.text import csv_rows, visible
from bench.data.audio import BadAudio, probe

LABEL_COLUMN = "label"
FOLD_COLUMN = "fold"
GROUP_COLUMN = "group"


@dataclass(frozen=True)
class Task:
    name: str
    """The manifest's stem, and the label column where it is not `label` (`genres-mood`): results land
    under transfer/<name>/, the labels of another column under another folder."""
    manifest: Path
    paths: tuple[str, ...]
    """Absolute paths, in the manifest's order."""
    labels: tuple[str, ...]
    folds: tuple[int, ...] | None
    """The manifest's folds, or None (stratified folds are drawn)."""
    groups: tuple[str, ...] | None = None
    """The manifest's groups (kept whole in one fold), or None."""
    label_column: str = LABEL_COLUMN

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))


def read_rows(manifest: str | Path, required: tuple[str, ...],
              optional: tuple[str, ...] = ()) -> tuple[Path, list[str], list[tuple[int, dict]]]:
    """(manifest path, columns, [(line number, row)]) of a CSV manifest that has the `required` columns
    (and may have the `optional` ones; none of them twice)."""
    manifest = Path(manifest).expanduser()
    nameable(manifest, "manifest")
    if not manifest.is_file():
        raise UserError(f"manifest not found: expected a CSV file with columns {','.join(required)} at {manifest}")
    columns, rows = csv_rows(manifest, (*required, *optional))  # a spreadsheet's "CSV UTF-8" too
    for column in required:
        if column not in columns:
            spaced = [c for c in columns if c.strip() == column]  # "path, label": the space is part of the name
            hint = f"; {spaced[0]!r} has spaces around it" if spaced else ""
            raise UserError(f"{manifest}: no column {column!r} (columns: {', '.join(columns) or 'none'}){hint}; "
                            f"expected {','.join(required)}")
    return manifest, columns, rows


def audio_path(manifest: Path, line: int, entry: str) -> str:
    """A row's `path` (relative to the manifest's folder, or absolute), which must be a file."""
    if not entry:
        raise UserError(f"{manifest}: line {line}: empty path")
    full = Path(entry).expanduser()
    full = full if full.is_absolute() else manifest.parent / full
    if not full.is_file():
        raise UserError(f"{manifest}: line {line}: audio file not found: {full}")
    return str(full.resolve())


def read_task(manifest: str | Path, label_column: str = LABEL_COLUMN) -> Task:
    manifest, columns, rows = read_rows(manifest, ("path", label_column), (FOLD_COLUMN, GROUP_COLUMN))
    has_folds, has_groups = FOLD_COLUMN in columns, GROUP_COLUMN in columns
    paths, labels, folds, groups = [], [], [], []
    for line, row in rows:
        label = (row.get(label_column) or "").strip()
        if not label:
            raise UserError(f"{manifest}: line {line}: empty {label_column}")
        paths.append(audio_path(manifest, line, (row.get("path") or "").strip()))
        try:  # its header (a broken or too short file) before any model embeds the files above it
            probe(paths[-1])
        except BadAudio as exc:
            raise UserError(f"{manifest}: line {line}: {visible(paths[-1])}: {exc}") from None
        if has_folds:
            try:
                folds.append(int(row[FOLD_COLUMN]))
            except (TypeError, ValueError):
                raise UserError(f"{manifest}: line {line}: fold {row[FOLD_COLUMN]!r} is not an integer") from None
        if has_groups:
            group = (row.get(GROUP_COLUMN) or "").strip()
            if not group:
                raise UserError(f"{manifest}: line {line}: empty {GROUP_COLUMN}")
            groups.append(group)
        labels.append(label)
    if len(set(labels)) < 2:
        raise UserError(f"{manifest}: needs at least two labels in column {label_column!r}, "
                        f"found {len(set(labels))} in {len(rows)} row(s)")
    if has_folds and len(set(folds)) < 2:
        raise UserError(f"{manifest}: column {FOLD_COLUMN!r} needs at least two folds, found {sorted(set(folds))}")
    duplicates = len(paths) - len(set(paths))
    if duplicates:
        raise UserError(f"{manifest}: {duplicates} file(s) listed more than once")
    if has_folds and has_groups:  # a group across folds is tested on what trained on its other files
        fold_of: dict[str, int] = {}
        for (line, _), group, fold in zip(rows, groups, folds, strict=True):
            if fold_of.setdefault(group, fold) != fold:
                raise UserError(f"{manifest}: line {line}: {GROUP_COLUMN} {group!r} is in folds {fold_of[group]} "
                                f"and {fold}; each group in one fold")
    column = re.sub(r"[^\w.-]+", "_", label_column)  # a folder's name
    name = manifest.stem if label_column == LABEL_COLUMN else f"{manifest.stem}-{column}"
    return Task(name, manifest.resolve(), tuple(paths), tuple(labels), tuple(folds) if has_folds else None,
                tuple(groups) if has_groups else None, label_column)
