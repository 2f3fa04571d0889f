"""MagnaTagATune from its root folder: `annotations_final.csv` and the mp3 folders `0`-`9`, `a`-`f`.

`annotations_final.csv` is tab-separated with every field in double quotes: `clip_id`, 188 binary tag
columns, `mp3_path` (e.g. `f/american_bach_soloists-...-30-59.mp3`). The top-N tags are the column
sums over all rows of the file, descending, ties in column order (guitar, classical, slow, techno,
...). The split is by folder: `0`-`b` train, `c` valid, `d`-`f` test. Three clips are known to be
broken and are excluded: with them removed the split is 18,706 / 1,825 / 5,329. Clips carrying none
of the top-N tags are kept (the paper's code) unless `drop_untagged` (Lee et al.: 15,244 / 1,529 /
4,332).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bench.data.index import Clip, DatasetIndex
from bench.errors import UserError

ANNOTATIONS = "annotations_final.csv"
FOLDERS = tuple("0123456789abcdef")
SPLIT_OF_FOLDER = {f: "train" for f in "0123456789ab"} | {"c": "valid"} | {f: "test" for f in "def"}
BROKEN_CLIP_IDS = frozenset({"35644", "55753", "57881"})
"""Clips whose MP3 files are empty or undecodable in the distributed dataset."""


def read_annotations(path: Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(clip ids, tag names in column order, binary matrix, mp3 paths) from annotations_final.csv."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quotechar='"'))
    if not rows:
        raise UserError(f"{path}: empty annotations file")
    header = rows[0]
    if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
        raise UserError(f"{path}: expected a tab-separated header 'clip_id <tags...> mp3_path', got {header[:3]}...")
    tag_names = header[1:-1]
    ids, paths, values = [], [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(f"{path}: line {line_no}: {len(row)} fields, expected {len(header)}")
        try:
            values.append([int(v) for v in row[1:-1]])
        except ValueError:
            raise UserError(f"{path}: line {line_no}: tag values must be 0 or 1") from None
        ids.append(row[0])
        paths.append(row[-1])
    matrix = np.asarray(values, dtype=np.int64).reshape(len(ids), len(tag_names))
    return ids, tag_names, matrix, paths


def top_tags(matrix: np.ndarray, n: int) -> list[int]:
    """Column indices of the n most frequent tags; ties keep column order (a stable sort)."""
    counts = matrix.sum(axis=0)
    return list(np.argsort(-counts, kind="stable")[:n])


def read_mtat(root: str | Path, n_tags: int = 50, drop_untagged: bool = False,
              broken_ids: frozenset[str] = BROKEN_CLIP_IDS) -> DatasetIndex:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"MTAT root not found: expected a folder holding {ANNOTATIONS} and mp3 folders 0-f at {root}")
    annotations = root / ANNOTATIONS
    if not annotations.is_file():
        raise UserError(f"MTAT annotations not found: expected {annotations}")
    ids, tag_names, matrix, paths = read_annotations(annotations)
    keep = top_tags(matrix, n_tags)
    names = tuple(tag_names[i] for i in keep)
    clips, excluded = [], []
    for clip_id, row, mp3 in zip(ids, matrix[:, keep], paths, strict=True):
        folder = mp3.split("/", 1)[0]
        if clip_id in broken_ids:
            excluded.append((clip_id, "known broken MP3"))
            continue
        if folder not in SPLIT_OF_FOLDER:
            excluded.append((clip_id, f"mp3_path {mp3!r} is not in a folder 0-f"))
            continue
        labels = tuple(int(i) for i in np.flatnonzero(row))
        if drop_untagged and not labels:
            excluded.append((clip_id, f"none of the top {n_tags} tags"))
            continue
        clips.append(Clip(clip_id=clip_id, path=str(root / mp3), split=SPLIT_OF_FOLDER[folder], labels=labels))
    return DatasetIndex(name="mtat", root=str(root), tag_names=names, clips=tuple(clips), excluded=tuple(excluded))
