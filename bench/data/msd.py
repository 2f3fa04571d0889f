"""Million Song Dataset with the Lee et al. split used by the paper (50 Last.fm tags).

The split and the tags come from one of two sources in the MSD root:

1. Lee et al.'s files as distributed (Python 2 pickles, read by the restricted unpickler
   `bench.data.safe_pickle`)::

    filtered_list_train.cP   list of MSD ids: the first 201,680 train, the remaining 11,774 valid
    filtered_list_test.cP    list of 28,435 MSD ids: test
    msd_id_to_tag_vector.cP  dict MSD id -> 50 binary tag values
    MSD_id_to_7D_id.pkl      dict MSD id -> 7digital id (optional: only for the 7digital layout)
    7D_id_to_path.pkl        dict 7digital id -> relative audio path, e.g. "8/9/8947470.clip.mp3"
    50tagList.txt            the tag names in vector order (optional: the published list is built in)

2. musicnn-training's tab-separated files: `train_gt_msd.tsv`, `val_gt_msd.tsv`, `test_gt_msd.tsv`
   (`<MSD id>\t[50 binary values]`) and optionally `index_msd.tsv` (`<MSD id>\t<relative audio path>`);
   any case of the names (its scripts write `train_gt_MSD.tsv`, `index_MSD.tsv`).

Audio lives under `audio/` (or directly in the root) in either layout, found per track:
- 7digital ids: the path `7D_id_to_path.pkl` gives (or `index_msd.tsv`);
- track-id folders, as the paper's code and musicnn-training keep MSD audio: the 3rd, 4th and 5th
  characters of the id, `A/B/C/TRABC....mp3` (also `.clip.mp3`).
The tags are the list's 50 in its order; fewer (`n_tags`) are those on the most tracks of the splits,
most frequent first (`bench.data.index.top_tags`), as MTAT's and MTG-Jamendo's top N.
Every track's file is checked when the index is built (existence and size, nothing decoded): a
missing or empty file excludes the track with its reason, and the reasons are counted in one
summary line (`DatasetIndex.excluded_summary`); common copies lack audio for a few ids (the paper's
code skipped 14). `bench convert-msd` turns either source into a plain manifest once.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.text import text_file
from bench.data.index import Clip, DatasetIndex, audio_file_shown, first_audio_file, read_tag_list, top_tags
from bench.data.safe_pickle import safe_load

N_TRAIN = 201_680
SPLIT_FILES = ("filtered_list_train.cP", "filtered_list_test.cP", "msd_id_to_tag_vector.cP")
SEVEN_DIGITAL = ("MSD_id_to_7D_id.pkl", "7D_id_to_path.pkl")
MUSICNN_TRAINING = {"train": "train_gt_msd.tsv", "valid": "val_gt_msd.tsv", "test": "test_gt_msd.tsv"}
MUSICNN_INDEX = "index_msd.tsv"
TAG_LIST = "50tagList.txt"
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
)
"""The 50 tags in vector order, as published with the split (50tagList.txt)."""


def _as_str(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


TRACK_ID = re.compile(r"TR[0-9A-Z]{16}")
"""An MSD track id: TR and 16 capital letters or digits (TRAAAAV128F421A322). Its 3rd-5th characters
name its audio's folders (`track_id_path`)."""


def _track_id(value, where: str) -> str:
    """`value` as an MSD track id (text); UserError naming `where` (the file, and the line or item) if not one."""
    text = _as_str(value)
    if not TRACK_ID.fullmatch(text):
        raise UserError(f"{where}: {text!r} is not an MSD track id (TR and 16 capital letters or digits, as in "
                        "TRAAAAV128F421A322)")
    return text


def _load_as(path: Path, kind: type):
    """A split pickle of Lee et al. that must hold a `kind` (list of ids, or dict by id); UserError if not."""
    value = safe_load(path)
    if isinstance(value, (list, tuple, np.ndarray)) and kind is list or isinstance(value, kind):
        return value
    raise UserError(f"{path}: holds a {type(value).__name__}, not the {kind.__name__} of Lee et al.'s split files")


def _tag_matrix(tag_vectors: dict, tag_list: tuple[str, ...], named: str,
                source: Path) -> tuple[list[str], np.ndarray]:
    """(ids, boolean matrix: a row per id of `tag_vectors`, a column per tag of `tag_list`), each vector (read
    from `source`) holding one value 0 or 1 per tag of `tag_list` (`named`: where that list comes from). One
    matrix for all tracks: a numpy call per track took seconds at MSD's 240,000."""
    ids = list(tag_vectors)
    if not ids:
        return [], np.zeros((0, len(tag_list)), dtype=bool)
    rows = [np.asarray(tag_vectors[i]).reshape(-1) for i in ids]
    wrong = next((i for i, row in zip(ids, rows, strict=True) if row.shape[0] != len(tag_list)), None)
    if wrong is not None:  # a list one tag short would name every later column by its neighbour's tag
        raise UserError(f"{source}: the tag vector of {wrong} has {np.asarray(tag_vectors[wrong]).size} values, but "
                        f"{named} names {len(tag_list)} tags: one value per tag, in its order")
    matrix = np.stack(rows)
    binary = (matrix == 0) | (matrix == 1)
    if not binary.all():  # 2 or 0.5 had been read as a positive, -1 as a negative
        row, column = (int(k) for k in np.argwhere(~binary)[0])
        raise UserError(f"{source}: the tag vector of {ids[row]} holds {matrix[row, column].item()!r} for "
                        f"{tag_list[column]!r}; expected values 0 or 1")
    return ids, matrix == 1


def _labels(ids: list[str], matrix: np.ndarray, columns: list[int]) -> dict[str, tuple[int, ...]]:
    """id -> output positions (indices into `columns`) of the tags the track has."""
    rows, positions = np.nonzero(matrix[:, columns])
    labels: list[list[int]] = [[] for _ in ids]
    for row, position in zip(rows.tolist(), positions.tolist(), strict=True):
        labels[row].append(position)
    return {i: tuple(found) for i, found in zip(ids, labels, strict=True)}


def track_id_path(msd_id: str) -> str:
    """The track-id folder layout: TRABC... -> A/B/C/TRABC..."""
    return f"{msd_id[2]}/{msd_id[3]}/{msd_id[4]}/{msd_id}"


def _tsv_rows(path: Path) -> list[tuple[int, list[str]]]:
    rows = []
    with text_file(path, "utf-8-sig") as handle:  # a spreadsheet's byte-order mark skipped
        for line_no, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                rows.append((line_no, text.split("\t")))
    return rows


def _named(root: Path, name: str) -> Path:
    """`root / name`, or the file of `root` whose name is `name` in another case (musicnn-training's
    scripts write `train_gt_MSD.tsv`, its data folder holds `train_gt_msd.tsv`)."""
    exact = root / name
    if exact.is_file():
        return exact
    return next((p for p in sorted(root.iterdir()) if p.name.lower() == name.lower() and p.is_file()), exact)


def _read_musicnn_training(root: Path, n_values: int) -> tuple[list[tuple[str, str, str]], dict, dict, Path]:
    """(id, split, where it is listed) triples, id -> tag vector, id -> audio path from musicnn-training's tsv
    files, and the first of them (where the vectors are read)."""
    splits, vectors = [], {}
    for split, name in MUSICNN_TRAINING.items():
        path = _named(root, name)
        for line_no, fields in _tsv_rows(path):
            try:
                values = [int(v) for v in fields[1].strip().strip("[]").split(",")]
                if not set(values) <= {0, 1}:
                    raise ValueError
            except (IndexError, ValueError):
                raise UserError(f"{path}: line {line_no}: expected '<MSD id><TAB>[{n_values} values 0 or 1]'") from None
            if len(values) != n_values:
                raise UserError(f"{path}: line {line_no}: {len(values)} tag values, expected {n_values}")
            track = _track_id(fields[0].strip(), f"{path}: line {line_no}")
            splits.append((track, split, f"{path}: line {line_no}"))
            vectors[track] = values
    paths = {}
    index = _named(root, MUSICNN_INDEX)
    if index.is_file():
        for line_no, fields in _tsv_rows(index):
            if len(fields) < 2:
                raise UserError(f"{index}: line {line_no}: expected '<MSD id><TAB><audio path>'")
            paths[fields[0].strip()] = fields[1].strip()
    return splits, vectors, paths, _named(root, MUSICNN_TRAINING["train"])


def read_msd(root: str | Path, n_tags: int = 50, drop_untagged: bool = False, check_audio: bool = True) -> DatasetIndex:
    """The index of an MSD root (see the module docstring). Without `check_audio` every track the
    metadata defines is kept, at the path the grid would read (`bench dataset` checks the files itself)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"MSD root not found: expected a folder holding {', '.join(SPLIT_FILES)} "
                        f"(or musicnn-training's {', '.join(MUSICNN_TRAINING.values())}) at {root}")
    tag_list = root / TAG_LIST
    all_tags = read_tag_list(tag_list) if tag_list.is_file() else MSD_TAGS
    audio_root = root / "audio" if (root / "audio").is_dir() else root
    lee = [name for name in SPLIT_FILES if (root / name).is_file()]
    if len(lee) == len(SPLIT_FILES):
        train_valid, test = ([_track_id(value, f"{root / name}: item {k}") for k, value in
                              enumerate(_load_as(root / name, list))]
                             for name in ("filtered_list_train.cP", "filtered_list_test.cP"))
        vectors_file = root / "msd_id_to_tag_vector.cP"
        tag_vectors = {_as_str(k): v for k, v in _load_as(vectors_file, dict).items()}
        splits = [(i, "train" if k < N_TRAIN else "valid", f"{root / 'filtered_list_train.cP'}: item {k}")
                  for k, i in enumerate(train_valid)]
        splits += [(i, "test", f"{root / 'filtered_list_test.cP'}: item {k}") for k, i in enumerate(test)]
        seven_paths = {}
        if all((root / name).is_file() for name in SEVEN_DIGITAL):
            msd_to_7d = {_as_str(k): _as_str(v) for k, v in _load_as(root / SEVEN_DIGITAL[0], dict).items()}
            path_of_7d = {_as_str(k): _as_str(v) for k, v in _load_as(root / SEVEN_DIGITAL[1], dict).items()}
            seven_paths = {m: path_of_7d[d] for m, d in msd_to_7d.items() if d in path_of_7d}
    elif all(_named(root, name).is_file() for name in MUSICNN_TRAINING.values()):
        splits, tag_vectors, seven_paths, vectors_file = _read_musicnn_training(root, len(all_tags))
    else:
        missing = [name for name in SPLIT_FILES if name not in lee]
        raise UserError(f"MSD split file(s) not found in {root}: {', '.join(missing)} (or musicnn-training's "
                        f"{', '.join(MUSICNN_TRAINING.values())})")

    listed = {msd_id for msd_id, _, _ in splits}  # the tracks of the splits decide which tags are most frequent
    ids, matrix = _tag_matrix({i: v for i, v in tag_vectors.items() if i in listed}, all_tags,
                              str(tag_list) if tag_list.is_file() else "the published list of 50 Last.fm tags",
                              vectors_file)
    # all of them in the published list's order; fewer: the most frequent
    columns = list(range(len(all_tags))) if n_tags >= len(all_tags) else top_tags(matrix, n_tags)
    names = tuple(all_tags[c] for c in columns)
    labels_of = _labels(ids, matrix, columns)
    root_text = str(audio_root)
    clips, excluded, seen = [], [], {}
    for msd_id, split, where in splits:
        if msd_id in seen:  # scored on what it trained on, or counted twice (and its tags overwritten)
            raise UserError(f"{where}: track {msd_id} ({split}) is listed already, at {seen[msd_id][1]} "
                            f"({seen[msd_id][0]}); each track once")
        seen[msd_id] = split, where
        labels = labels_of.get(msd_id)
        if labels is None:
            excluded.append((msd_id, "no tag vector in the split files"))
            continue
        folders = track_id_path(msd_id)
        candidates = [seven_paths[msd_id]] if msd_id in seven_paths else []
        candidates += [folders + ".mp3", folders + ".clip.mp3"]
        path, why = (first_audio_file(root_text, candidates) if check_audio
                     else (audio_file_shown(root_text, candidates), ""))
        if path is None:
            excluded.append((msd_id, why))
            continue
        if drop_untagged and not labels:
            excluded.append((msd_id, f"none of the top {n_tags} tags"))
            continue
        clips.append(Clip(clip_id=msd_id, path=path, split=split, labels=labels))
    return DatasetIndex(name="msd", root=str(root), tag_names=names, clips=tuple(clips), excluded=tuple(excluded))
