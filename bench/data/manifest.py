"""A generic dataset: a CSV manifest `path,split,tags` (tags `;`-separated), optional `clip_id`.

Paths are relative to the manifest's folder (or absolute). The tag order comes from a sibling file
`<manifest stem>.tags.txt` (one tag per line) when present; otherwise tags are ordered by the clips
that have them, descending, ties by first appearance. The first `n_tags` are kept.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from bench.core.errors import UserError
from bench.core.paths import nameable
from bench.core.store import atomic_file, atomic_write_text
from bench.core.text import csv_rows, listed, visible
from bench.data.index import SPLITS, Clip, DatasetIndex, read_tag_list

REQUIRED_COLUMNS = ("path", "split", "tags")
SHOWN_TAGS = 5
"""Tags named in a note before the rest are counted."""
TAG_SEPARATOR = ";"


def tags_file(manifest: Path) -> Path:
    return manifest.with_name(manifest.stem + ".tags.txt")


def read_manifest(manifest: str | Path, n_tags: int = 50, drop_untagged: bool = False) -> DatasetIndex:
    manifest = Path(manifest).expanduser()
    nameable(manifest, "manifest")
    if manifest.is_dir():
        csvs = sorted(path.name for path in manifest.glob("*.csv"))
        hint = f" (it holds {', '.join(csvs[:3])}{', ...' if len(csvs) > 3 else ''})" if csvs else ""
        raise UserError(f"manifest: {manifest} is a folder; the dataset path names the CSV file itself{hint}")
    if not manifest.is_file():
        raise UserError(f"manifest not found: expected a CSV file with columns path,split,tags at {manifest}")
    header, rows = csv_rows(manifest, (*REQUIRED_COLUMNS, "clip_id"))
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{manifest}: missing column(s) {', '.join(missing)}; expected path,split,tags")
    entries, ids_seen, paths_seen = [], {}, {}
    for line_no, row in rows:
        short = [c for c in REQUIRED_COLUMNS if row.get(c) is None and c != "tags"]
        if short:
            raise UserError(f"{manifest}: line {line_no}: no {', '.join(short)} (the row has fewer fields than "
                            "the header)")
        if None in row:  # fields past the header's: a tag after a comma would be lost
            raise UserError(f"{manifest}: line {line_no}: {len(header) + len(row[None])} fields where the header "
                            f"has {len(header)}; tags are separated by '{TAG_SEPARATOR}', and a field holding a "
                            "comma is quoted")
        if "\0" in row["path"]:
            raise UserError(f"{manifest}: line {line_no}: path {row['path']!r} holds a NUL character, which no file "
                            "name can")
        split = row["split"].strip()
        if split not in SPLITS:
            raise UserError(f"{manifest}: line {line_no}: split {split!r} must be one of {', '.join(SPLITS)}")
        # each tag once per clip, as it is counted: `pop;pop` (merged tag columns) is one clip with pop
        tags = list(dict.fromkeys(t.strip() for t in (row["tags"] or "").split(TAG_SEPARATOR) if t.strip()))
        clip_id = row.get("clip_id") or row["path"]
        audio = os.path.abspath(manifest.parent / row["path"])  # ./a.mp3, a.mp3 and its full path: one file
        checks = (("path", row["path"], audio, paths_seen), ("clip_id", clip_id, clip_id, ids_seen))
        for what, value, key, seen in checks:
            if key in seen:  # a clip in two splits, or twice in one: scored on what it trained on, or counted twice
                first_line, first_split = seen[key]
                raise UserError(f"{manifest}: line {line_no}: {what} {value!r} again (line {first_line}, "
                                f"{first_split}); each clip once")
            seen[key] = (line_no, split)
        entries.append((clip_id, row["path"], split, tags))

    counts = Counter(t for *_, tags in entries for t in tags)
    order_file, notes = tags_file(manifest), []
    if order_file.is_file():
        order = list(read_tag_list(order_file))
        if unlisted := [t for t in counts if t not in set(order)]:  # the file sets which tags, not only their order
            more = len(unlisted) - SHOWN_TAGS
            notes.append(f"{len(unlisted)} tag(s) of the manifest not in {order_file.name}, not trained on: "
                         f"{listed(map(visible, unlisted[:SHOWN_TAGS]))}" + (f" and {more:,} more" if more > 0 else ""))
    else:
        first_seen = list(dict.fromkeys(t for *_, tags in entries for t in tags))
        order = sorted(first_seen, key=lambda t: -counts[t])  # sorted() is stable: ties keep first appearance
    names = tuple(order[:n_tags])
    position = {t: i for i, t in enumerate(names)}

    clips, excluded = [], []
    for clip_id, path, split, tags in entries:
        labels = tuple(sorted({position[t] for t in tags if t in position}))
        if drop_untagged and not labels:
            excluded.append((clip_id, f"none of the top {n_tags} tags"))
            continue
        audio = Path(path) if Path(path).is_absolute() else manifest.parent / path
        clips.append(Clip(clip_id=clip_id, path=str(audio), split=split, labels=labels))
    return DatasetIndex(name="manifest", root=str(manifest.parent), tag_names=names, clips=tuple(clips),
                        excluded=tuple(excluded), notes=tuple(notes))


def write_manifest(index: DatasetIndex, out: str | Path) -> Path:
    """Write `index` as a manifest (paths relative to its folder where the audio lies below it, else
    absolute) plus its tag order; each file atomically, the tag order first."""
    out = Path(out)
    folder = os.path.abspath(out.parent)
    atomic_write_text(tags_file(out), "\n".join(index.tag_names) + "\n")
    with atomic_file(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip_id", *REQUIRED_COLUMNS])
        for clip in index.clips:
            # a reader's paths may be relative to the working directory (a root given as `data/msd`),
            # the manifest's are relative to its own folder
            audio = os.path.abspath(clip.path)
            below = os.path.commonpath([folder, audio]) == folder
            writer.writerow([clip.clip_id, os.path.relpath(audio, folder) if below else audio, clip.split,
                             TAG_SEPARATOR.join(index.tag_names[i] for i in clip.labels)])
    return out
