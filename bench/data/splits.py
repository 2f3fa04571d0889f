"""Published split files: which clip goes to train, valid and test, as a peer published it.

`split_file` in a spec names a folder holding one file per split, recognised by name and read by
suffix:

| split | file names starting with | e.g. |
|---|---|---|
| train | `train` | `train.npy`, `train_gt_mtt.tsv`, `train_list_pub.cP`, `train.txt` |
| valid | `valid`, `val` | `valid.npy`, `val_gt_mtt.tsv`, `valid_list_pub.cP` |
| test | `test` | `test.npy`, `test_gt_mtt.tsv`, `test_list_pub.cP` |

- `.npy` (sota-music-tagging-models, `split/mtat/*.npy`): an array of strings `"<row>\\t<mp3_path>"`,
  read with `allow_pickle=False`; the first field is the clip's 0-based row in `annotations_final.csv`
  (its loader indexes the label matrix with it), not a clip id, so the clip is found by its path;
- `.cP` / `.pkl` (Lee et al.'s `MTAT_split/*_list_pub.cP`, Python 2 pickles): a list of clip ids or
  paths, read by the restricted unpickler (`bench.data.safe_pickle`), never by `pickle.load`; Lee et
  al.'s paths name their feature files, `<folder>/<name>.npy` for `<folder>/<name>.mp3`;
- anything else (`.tsv`, `.txt`, `.csv`; musicnn-training's `*_gt_mtt.tsv` is `<clip_id>\\t[labels]`):
  one clip per line, its first tab-separated field a clip id or an mp3 path; blank lines and lines
  starting with `#` are skipped; CRLF line ends are accepted.

A folder that holds more than one split in different formats (sota-music-tagging-models'
`split/mtat/` keeps its own `.npy` lists beside Lee et al.'s `.cP` ones, which differ by three
training clips) is chosen from by suffix: `split/mtat/*.npy`.

An entry names a clip by id (`"2"`) or by its path relative to the dataset root, with `.mp3` or any
other suffix. An entry the dataset lacks, or a clip listed in two splits, is an error naming the file
and the line.
"""

from __future__ import annotations

import errno
import posixpath
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.text import text_file

PREFIXES = {"train": ("train",), "valid": ("valid", "val"), "test": ("test",)}
SUFFIXES = (".npy", ".cP", ".cp", ".pkl", ".tsv", ".txt", ".csv")


def split_of_name(name: str) -> str | None:
    lower = name.lower()
    return next((split for split, prefixes in PREFIXES.items() if lower.startswith(prefixes)), None)


def split_files(folder: str | Path) -> dict[str, Path]:
    """The one file per split in `folder`, or in `DIR/*.SUFFIX` the one of that suffix (see the
    module docstring)."""
    folder = Path(folder).expanduser()
    suffixes = SUFFIXES
    if folder.name.startswith("*."):  # one format of a folder that holds several
        folder, suffixes = folder.parent, (folder.name[1:],)
    try:
        is_folder = folder.is_dir()
    except OSError as exc:  # a path longer than the file system takes: the spec's field, not an option, is at fault
        if exc.errno != errno.ENAMETOOLONG:
            raise
        raise UserError(f"split_file {folder}: {exc.strerror}") from None
    if not is_folder:
        raise UserError(f"split_file {folder}: not a folder (expected one holding train, valid and test lists)")
    candidates = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in suffixes]
    found: dict[str, Path] = {}
    for split in PREFIXES:
        matches = [p for p in candidates if split_of_name(p.name) == split]
        if len(matches) != 1:
            listed = ", ".join(p.name for p in matches) or "none"
            formats = sorted({p.suffix for p in matches})
            choose = (f"; the folder holds more than one split, choose one by its files' suffix: "
                      f"{' or '.join(f'{folder}/*{suffix}' for suffix in formats)}" if len(formats) > 1 else "")
            raise UserError(f"split_file {folder}: expected exactly one {split} list (a file named "
                            f"{PREFIXES[split][0]}* ending in {', '.join(suffixes[:5])}), found {listed}{choose}")
        found[split] = matches[0]
    return found


def _text(item: str | bytes) -> str:
    """An entry as text: bytes (a Python 2 era file's) decoded as UTF-8, an undecodable byte replaced, so
    that such an entry is reported as matching no clip instead of stopping the reader."""
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else item


def entries(path: Path) -> list[tuple[int, str]]:
    """(line or position, first field) of every entry of one split file."""
    if path.suffix == ".npy":
        # numpy itself would try a file without the magic as a pickle (numpy 1) or fail at its end (numpy 2)
        with open(path, "rb") as handle:
            magic = handle.read(len(np.lib.format.MAGIC_PREFIX))
        if magic != np.lib.format.MAGIC_PREFIX:
            raise UserError(f"{path}: not an array of strings ({'an empty file' if not magic else 'not a .npy file'})")
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # EOFError: a file cut short; a corrupt header fails in its parser's words
            # (tokenize.TokenError, SyntaxError, ValueError)
            why = ("it holds Python objects, which are not unpickled" if "allow_pickle" in str(exc)
                   else " ".join(str(exc).split()) or type(exc).__name__)
            raise UserError(f"{path}: not an array of strings ({why})") from None
        if array.dtype.kind not in "US":
            raise UserError(f"{path}: expected an array of strings, found dtype {array.dtype}")
        return [(i + 1, _text(item).split("\t")[-1].strip()) for i, item in enumerate(array.reshape(-1).tolist())]
    if path.suffix in (".cP", ".cp", ".pkl"):
        from bench.data.safe_pickle import safe_load

        items = safe_load(path)
        if isinstance(items, np.ndarray):
            items = items.tolist()
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, (str, bytes)) for x in items):
            raise UserError(f"{path}: expected a list of clip ids or paths, found {type(items).__name__}")
        return [(i + 1, _text(x).strip()) for i, x in enumerate(items)]
    rows = []
    with text_file(path, "utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip() or text.startswith("#"):
                continue
            rows.append((line_no, text.split("\t", 1)[0].strip()))
    return rows


def read_split_files(folder: str | Path, ids: list[str], paths: list[str]) -> dict[str, str]:
    """clip id -> "train" | "valid" | "test" for every clip the split files list."""
    by_path = {p: i for i, p in zip(ids, paths, strict=True)}
    by_stem = {posixpath.splitext(p)[0]: i for i, p in zip(ids, paths, strict=True)}
    known = set(ids)
    split_of: dict[str, str] = {}
    where: dict[str, str] = {}
    for split, path in split_files(folder).items():
        for line, entry in entries(path):
            clip = entry if entry in known else by_path.get(entry) or by_path.get(entry.lstrip("./"))
            if clip is None and "/" in entry:  # a feature file named after the clip: <folder>/<name>.npy
                clip = by_stem.get(posixpath.splitext(entry.lstrip("./"))[0])
            if clip is None:
                raise UserError(f"{path}: line {line}: {entry!r} is neither a clip id nor an mp3_path of the dataset")
            if clip in split_of and split_of[clip] != split:
                raise UserError(f"{path}: line {line}: clip {clip} is also in the {split_of[clip]} list "
                                f"({where[clip]})")
            split_of[clip] = split
            where[clip] = f"{path.name}:{line}"
    return split_of
