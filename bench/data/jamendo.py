"""MTG-Jamendo (Bogdanov et al. 2019) from its official split files and its audio folders.

The root holds the audio as distributed (folders `00`-`99`, `NN/ID.mp3`, or the low-quality
`NN/ID.low.mp3`) and the split folder of the dataset's metadata repository, by default at
`splits/split-0` (`dataset.split_file` names another, e.g. `splits/split-3`, or an absolute path).
`dataset.subset` chooses the task: `top50tags` (default), `genre`, `instrument`, `moodtheme`, or
`all` (`autotagging-*.tsv`). Files: `autotagging_<subset>-{train,validation,test}.tsv`,
tab-separated, CRLF line ends as published, header `TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS`,
where TAGS is every remaining field (`genre---rock`, `mood/theme---calm`, ...).

Tag order: for `top50tags` the published list (`data/tags/top50.txt`, `JAMENDO_TOP50`); for the
other subsets the tags of the split files sorted as the published tag lists are. A subset's task is
all of its tags (50, 87, 40, 56, 183), what a spec gets without `n_tags`; a smaller `n_tags` keeps
the tags on the most tracks, descending, ties in that order. Every track's audio
file is checked (existence and size): missing or empty files are excluded with their reason.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from pathlib import Path

from bench.core.errors import UserError
from bench.core.text import text_file
from bench.data.index import Clip, DatasetIndex, audio_file_shown, first_audio_file

SUBSETS = {"top50tags": "autotagging_top50tags", "genre": "autotagging_genre", "instrument": "autotagging_instrument",
           "moodtheme": "autotagging_moodtheme", "all": "autotagging"}
SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}
HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
DEFAULT_SPLIT = "splits/split-0"

JAMENDO_TOP50 = (
    "genre---alternative", "genre---ambient", "genre---atmospheric", "genre---chillout", "genre---classical",
    "genre---dance", "genre---downtempo", "genre---easylistening", "genre---electronic", "genre---experimental",
    "genre---folk", "genre---funk", "genre---hiphop", "genre---house", "genre---indie", "genre---instrumentalpop",
    "genre---jazz", "genre---lounge", "genre---metal", "genre---newage", "genre---orchestral", "genre---pop",
    "genre---popfolk", "genre---poprock", "genre---reggae", "genre---rock", "genre---soundtrack", "genre---techno",
    "genre---trance", "genre---triphop", "genre---world", "instrument---acousticguitar", "instrument---bass",
    "instrument---computer", "instrument---drummachine", "instrument---drums", "instrument---electricguitar",
    "instrument---electricpiano", "instrument---guitar", "instrument---keyboard", "instrument---piano",
    "instrument---strings", "instrument---synthesizer", "instrument---violin", "instrument---voice",
    "mood/theme---emotional", "mood/theme---energetic", "mood/theme---film", "mood/theme---happy",
    "mood/theme---relaxing",
)
"""MTG-Jamendo's top 50 tags in the published order (`data/tags/top50.txt`)."""


def read_split_tsv(path: Path) -> list[tuple[int, str, str, tuple[str, ...]]]:
    """(line, track id, relative audio path, tags) of one official split file."""
    if not path.is_file():
        raise UserError(f"MTG-Jamendo split file not found: {path}")
    rows = []
    with text_file(path, "utf-8-sig") as handle:  # a spreadsheet's byte-order mark skipped
        lines = [line.rstrip("\r\n") for line in handle]
    if not lines or tuple(lines[0].split("\t")[:6]) != HEADER:
        raise UserError(f"{path}: line 1: expected the header {' '.join(HEADER)}")
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 6 or not fields[0].startswith("track_") or not fields[3]:
            raise UserError(f"{path}: line {line_no}: expected TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION and "
                            f"at least one tag, tab-separated")
        rows.append((line_no, fields[0].strip(), fields[3].strip(),
                     tuple(t.strip() for t in fields[5:] if t.strip())))
    return rows


def most_frequent(published: tuple[str, ...], rows: dict, n: int) -> tuple[str, ...]:
    """The `n` tags of `published` on the most tracks of all splits, descending, ties in published order
    (as MTAT's top-N): never the first `n` of a list sorted by name."""
    counts = Counter(tag for split_rows in rows.values() for *_, tags in split_rows for tag in set(tags))
    return tuple(sorted(published, key=lambda tag: -counts[tag])[:n])


def read_jamendo(root: str | Path, n_tags: int | None = None, drop_untagged: bool = False, subset: str = "top50tags",
                 split_folder: str | Path | None = None, check_audio: bool = True) -> DatasetIndex:
    """The index of an MTG-Jamendo root (see the module docstring). Without `check_audio` every track
    the split files define is kept, at the path the grid would read (`bench dataset` checks the files itself)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"MTG-Jamendo root not found: expected the audio folders 00-99 and {DEFAULT_SPLIT}/ at {root} "
                        "(`bench download jamendo --to DIR` fetches it; give DIR as --data or dataset.path)")
    if subset not in SUBSETS:
        raise UserError(f"dataset.subset = {subset!r}: expected one of {', '.join(SUBSETS)}")
    # a spec's relative split_file is the root's (`datasets.split_folder` joined it): not joined again
    folder = Path(split_folder).expanduser() if split_folder else root / DEFAULT_SPLIT
    files = {split: folder / f"{SUBSETS[subset]}-{name}.tsv" for split, name in SPLIT_NAMES.items()}
    rows = {split: read_split_tsv(path) for split, path in files.items()}
    if subset == "top50tags":
        for split, split_rows in rows.items():  # the first row with another tag, named by file and line
            for line_no, track, _, tags in split_rows:
                unknown = [t for t in tags if t not in JAMENDO_TOP50]
                if unknown:
                    raise UserError(f"{files[split]}: line {line_no}: {track} has tags outside MTG-Jamendo's "
                                    f"published top 50: {', '.join(unknown[:5])}")
        published = JAMENDO_TOP50
    else:
        published = tuple(sorted({tag for split_rows in rows.values() for *_, tags in split_rows for tag in tags}))
    names = published if n_tags is None or n_tags >= len(published) else most_frequent(published, rows, n_tags)
    position = {tag: i for i, tag in enumerate(names)}
    clips, excluded, seen, listed_at = [], [], {}, {}
    for split, split_rows in rows.items():
        for line_no, track, relative, tags in split_rows:
            if track in seen:
                raise UserError(f"{files[split]}: line {line_no}: {track} is also in the {seen[track]} split")
            seen[track] = split
            audio = posixpath.normpath(relative)  # one recording under two ids: perhaps in two splits
            if audio in listed_at:
                raise UserError(f"{files[split]}: line {line_no}: {track}'s PATH {relative} is listed already "
                                f"({listed_at[audio]}); each recording once")
            listed_at[audio] = f"{files[split].name}, line {line_no}"
            # the track's NN/ID.mp3, else the low-quality NN/ID.low.mp3
            candidates = [relative, relative.removesuffix(".mp3") + ".low.mp3"]
            path, why = first_audio_file(root, candidates) if check_audio else (audio_file_shown(root, candidates), "")
            if path is None:
                excluded.append((track, why))
                continue
            labels = tuple(sorted(position[t] for t in tags if t in position))
            if drop_untagged and not labels:
                excluded.append((track, f"none of the top {len(names)} tags"))
                continue
            clips.append(Clip(clip_id=track, path=str(path), split=split, labels=labels))
    return DatasetIndex(name="jamendo", root=str(root), tag_names=tuple(names), clips=tuple(clips),
                        excluded=tuple(excluded))
