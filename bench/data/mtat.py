"""MagnaTagATune from its root folder: `annotations_final.csv` and the mp3 folders `0`-`9`, `a`-`f`.

`annotations_final.csv` is tab-separated with every field in double quotes: `clip_id`, 188 binary tag
columns, `mp3_path` (e.g. `f/american_bach_soloists-...-30-59.mp3`).

Tags. The top 50 are the published list `MTAT_TOP50`, in its order (the paper's code, musicnn's
`MTT_LABELS`, musicnn-training and sota-music-tagging-models all use it), so label matrices and
per-tag tables line up with theirs by position; a file whose 50 most frequent tags are another set
is an error naming the difference. Column sums rank the same tags except that `metal` and
`female voice` tie at 505 clips, and column order would put `female voice` first. Any other number
N of tags: the N largest column sums over all rows, descending, ties in column order.

Splits (`split`):
- "folders" (default): by folder, `0`-`b` train, `c` valid, `d`-`f` test, as the paper's code and
  musicnn's; with the three known broken clips removed, 18,706 / 1,825 / 5,329 clips, including the
  clips that carry none of the top 50 tags.
- "won": the same folders without clips carrying none of the top-N tags, the split of
  sota-music-tagging-models (Won et al. 2020): 15,247 / 1,529 / 4,332. (`drop_untagged = true` is
  the older spelling.) Lee et al.'s split differs from it: its train list lacks clips 29, 11268 and
  11269 (15,244 train); use their published lists through `split_file` for it.
- `split_file`: any published split (`bench.data.splits`), which keeps the tag columns above.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.text import csv_lines
from bench.data.index import Clip, DatasetIndex, top_tags

ANNOTATIONS = "annotations_final.csv"
FOLDERS = tuple("0123456789abcdef")
SPLIT_OF_FOLDER = {f: "train" for f in "0123456789ab"} | {"c": "valid"} | {f: "test" for f in "def"}
BROKEN_CLIP_IDS = frozenset({"35644", "55753", "57881"})
"""Clips whose MP3 files are empty or undecodable in the distributed dataset."""

MTAT_TOP50 = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)
"""MTAT's top 50 tags in the published order (the model outputs of every peer that trains on it)."""

SPLITS = ("folders", "won")


def read_annotations(path: Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(clip ids, tag names in column order, binary matrix, mp3 paths) from annotations_final.csv."""
    # a spreadsheet's byte-order mark skipped
    header, rows = csv_lines(path, "tab-separated text", delimiter="\t", quotechar='"')
    if not header and not rows:
        raise UserError(f"{path}: empty annotations file")
    if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
        raise UserError(f"{path}: expected a tab-separated header 'clip_id <tags...> mp3_path', got {header[:3]}...")
    tag_names = header[1:-1]
    ids, paths, values, line_of, path_line = [], [], [], {}, {}
    for line_no, row in rows:
        if len(row) != len(header):
            raise UserError(f"{path}: line {line_no}: {len(row)} fields, expected {len(header)}")
        if row[1:-1] and not set(row[1:-1]) <= {"0", "1"}:
            raise UserError(f"{path}: line {line_no}: tag values must be 0 or 1")
        if row[0] in line_of:  # one clip's tags twice would count it twice, and put it in two places
            raise UserError(f"{path}: line {line_no}: clip_id {row[0]} again (first on line {line_of[row[0]]})")
        audio = posixpath.normpath(row[-1])  # `d/../0/x.mp3` is 0/x.mp3
        if audio in path_line:  # one recording under two ids: counted twice, perhaps in two splits
            raise UserError(f"{path}: line {line_no}: mp3_path {row[-1]} again (first on line {path_line[audio]})")
        line_of[row[0]] = path_line[audio] = line_no
        values.append([int(v) for v in row[1:-1]])
        ids.append(row[0])
        paths.append(row[-1])
    matrix = np.asarray(values, dtype=np.int64).reshape(len(ids), len(tag_names))
    return ids, tag_names, matrix, paths


def chosen_tags(path: Path, tag_names: list[str], matrix: np.ndarray, n: int, published_order: bool) -> list[int]:
    """Column indices of the model's tags, in output order (see the module docstring)."""
    keep = top_tags(matrix, n)
    if not published_order or n != len(MTAT_TOP50):
        return keep
    if len(tag_names) < len(MTAT_TOP50):  # not MTAT's 188 tags; trained on as MTAT's top 50, its runs would be
        # set beside the paper's numbers for the top 50
        raise UserError(f"{path}: {len(tag_names)} tag columns, not MTAT's 188, so not its top 50 (the default "
                        f"n_tags): set dataset.n_tags to at most {len(tag_names)} to train on them")
    found = {tag_names[i] for i in keep}
    if found != set(MTAT_TOP50):
        extra = sorted(found - set(MTAT_TOP50))
        missing = [t for t in MTAT_TOP50 if t not in found]
        raise UserError(f"{path}: its 50 most frequent tags are not MTAT's published top 50: "
                        f"{', '.join(extra) or 'none'} in the file's top 50 only; "
                        f"{', '.join(missing) or 'none'} in the published list only")
    column = {name: i for i, name in enumerate(tag_names)}
    return [column[name] for name in MTAT_TOP50]


def read_mtat(root: str | Path, n_tags: int = 50, drop_untagged: bool = False,
              broken_ids: frozenset[str] = BROKEN_CLIP_IDS, split: str = "folders", split_file: str | None = None,
              published_order: bool = True) -> DatasetIndex:
    """The index of an MTAT-format tree. `published_order` (real MTAT) puts 50 tags in MTAT_TOP50's
    order; the synthetic dataset, whose tags are its own, ranks them by frequency."""
    if split not in SPLITS:
        raise UserError(f"dataset.split = {split!r}: expected one of {', '.join(SPLITS)} (or a split_file)")
    drop_untagged = drop_untagged or split == "won"
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"MTAT root not found: expected a folder holding {ANNOTATIONS} and mp3 folders 0-f at {root} "
                        "(`bench download mtat --to DIR` fetches it; give DIR as --data or dataset.path)")
    annotations = root / ANNOTATIONS
    if not annotations.is_file():
        raise UserError(f"MTAT annotations not found: expected {annotations}")
    ids, tag_names, matrix, paths = read_annotations(annotations)
    keep = chosen_tags(annotations, tag_names, matrix, n_tags, published_order)
    names = tuple(tag_names[i] for i in keep)
    twice = sorted({name for name in tag_names if name in names and tag_names.count(name) > 1})
    if twice:  # two outputs, or a column read in place of another, under one name: one tag's scores lost
        raise UserError(f"{annotations}: tag column(s) {', '.join(map(repr, twice))} twice in the header, among the "
                        f"{len(names)} tags trained on; each tag once (merge or rename the columns)")
    listed = None
    if split_file:
        from bench.data.splits import read_split_files

        listed = read_split_files(split_file, ids, paths)
    clips, excluded = [], []
    for clip_id, row, mp3 in zip(ids, matrix[:, keep], paths, strict=True):
        folder = posixpath.normpath(mp3).split("/", 1)[0]  # the folder the file is in (its split)
        if clip_id in broken_ids:
            excluded.append((clip_id, "known broken MP3"))
            continue
        if "\0" in mp3:  # the OS refuses it in a path (ValueError: embedded null byte)
            excluded.append((clip_id, f"mp3_path {mp3!r} holds a NUL character, which no file name can"))
            continue
        if listed is not None:
            if clip_id not in listed:
                excluded.append((clip_id, f"not in the split files of {split_file}"))
                continue
            clip_split = listed[clip_id]
        elif folder not in SPLIT_OF_FOLDER:
            excluded.append((clip_id, f"mp3_path {mp3!r} is not in a folder 0-f"))
            continue
        else:
            clip_split = SPLIT_OF_FOLDER[folder]
        labels = tuple(int(i) for i in np.flatnonzero(row))
        if drop_untagged and not labels:
            excluded.append((clip_id, f"none of the top {n_tags} tags"))
            continue
        clips.append(Clip(clip_id=clip_id, path=str(root / mp3), split=clip_split, labels=labels))
    return DatasetIndex(name="mtat", root=str(root), tag_names=names, clips=tuple(clips), excluded=tuple(excluded))
