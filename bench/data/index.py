"""The one index every dataset reader produces."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.core.errors import UserError
from bench.core.paths import nameable
from bench.core.store import is_passing_fault
from bench.core.text import read_text

SPLITS = ("train", "valid", "test")


def read_tag_list(path: Path) -> tuple[str, ...]:
    """The tag names of a tag list file (a manifest's `.tags.txt`, MSD's `50tagList.txt`), one per line
    (blank lines skipped, an editor's byte-order mark too), each once: one output per tag, a second of
    the same name would never be trained and one of their per-tag scores lost."""
    lines: dict[str, int] = {}
    for line_no, line in enumerate(read_text(path, "utf-8-sig").splitlines(), start=1):
        tag = line.strip()
        if tag in lines:
            raise UserError(f"{path}: line {line_no}: tag {tag!r} again (line {lines[tag]}); each tag once")
        if tag:
            lines[tag] = line_no
    return tuple(lines)


def has_roc_auc(positives, clips):
    """Whether a tag with `positives` of a split's `clips` has an ROC-AUC there: some clips with it and some
    without (elementwise for numpy arrays). Scoring leaves the others out; a split without any cannot be scored."""
    return (positives > 0) & (positives < clips)


def no_roc_auc(split: str, clips: str) -> str:
    """Why `split` (of `clips`, e.g. "4 decodable clips") cannot be scored: `has_roc_auc` holds for none
    of its tags (`bench dataset` judges it from the files found, a run from the clips decoded)."""
    return (f"no tag of the {split} split ({clips}) has both clips with it and clips without it, so no ROC-AUC "
            "can be computed there")


def top_tags(matrix: np.ndarray, n: int) -> list[int]:
    """Column indices of the `n` most frequent tags of `matrix` (a row per clip, a column per tag): those on
    the most rows, descending; ties keep column order (a stable sort)."""
    return [int(c) for c in np.argsort(-matrix.sum(axis=0), kind="stable")[:n]]


AUDIO_MISSING = "audio file missing"
AUDIO_EMPTY = "audio file empty"


def audio_file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be a clip's audio, seen without decoding it (missing or not a regular file,
    or empty), or None. Readers exclude such clips; `bench dataset` counts them."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if is_passing_fault(exc):  # counted missing, the clip would leave the dataset for good
            raise
        return AUDIO_MISSING
    except UnicodeEncodeError:  # not missing: no file can be looked at in this locale (`nameable`)
        nameable(path, "audio file")
        raise
    except ValueError:  # a NUL character (a manifest can hold one): no file has that name
        return AUDIO_MISSING
    if not stat.S_ISREG(info.st_mode):
        return AUDIO_MISSING
    return AUDIO_EMPTY if info.st_size == 0 else None


def first_audio_file(root: str | Path, candidates: list[str]) -> tuple[str | None, str]:
    """The path of the first usable file among `root/candidate`, or None and why (empty if one was empty).
    Plain strings, not Paths: MSD's readers check 240,000 tracks this way, and pathlib's joins were most
    of the time it took."""
    problems = []
    for relative in candidates:
        path = os.path.join(root, relative)
        problem = audio_file_problem(path)
        if problem is None:
            return path, ""
        problems.append(problem)
    return None, AUDIO_EMPTY if AUDIO_EMPTY in problems else AUDIO_MISSING


def splits_without_audio(index: DatasetIndex) -> list[str]:
    """The splits not one of whose clips has a usable audio file (the metadata without its audio, or the
    audio in another folder): each split's files checked until one is found, a few checks in all where
    the audio is there."""
    found: set[str] = set()
    for clip in index.clips:
        if clip.split not in found and audio_file_problem(clip.path) is None:
            found.add(clip.split)
            if len(found) == len(SPLITS):
                break
    return [split for split in SPLITS if split not in found]


def audio_file_shown(root: str | Path, candidates: list[str]) -> str:
    """The path of a clip kept whatever its audio (a reader's `check_audio` False, for `bench dataset`):
    the file `first_audio_file` reads, else the candidate its reason is about (the first empty one, else
    the first), so that `bench dataset` judges the file the grid would read."""
    path, why = first_audio_file(root, candidates)
    if path is not None:
        return path
    paths = [os.path.join(root, relative) for relative in candidates]
    return next((p for p in paths if why == AUDIO_EMPTY and audio_file_problem(p) == AUDIO_EMPTY), paths[0])


@dataclass(frozen=True)
class Clip:
    clip_id: str
    path: str
    """Absolute path of the audio file."""
    split: str
    """One of SPLITS."""
    labels: tuple[int, ...]
    """Indices into the index's `tag_names` of the tags this clip carries."""


@dataclass(frozen=True)
class DatasetIndex:
    """Clips with their split and tags, and the tag vocabulary in a fixed order."""

    name: str
    root: str
    tag_names: tuple[str, ...]
    clips: tuple[Clip, ...]
    excluded: tuple[tuple[str, str], ...] = field(default=())
    """(clip id, reason) of clips the reader left out on purpose (known broken, untagged, ...)."""
    notes: tuple[str, ...] = field(default=(), compare=False, metadata={"stored": False})
    """What the reader noticed that is no error (`bench dataset` warns of it): not part of the labelling,
    so not in the cache's index file."""

    def split(self, split: str) -> list[Clip]:
        return [c for c in self.clips if c.split == split]

    def counts(self) -> dict[str, int]:
        return {s: sum(c.split == s for c in self.clips) for s in SPLITS}

    def excluded_summary(self) -> str:
        """The exclusions in one line, counted by reason: "excluded: 14 audio file missing, 3 known broken MP3"."""
        if not self.excluded:
            return "none excluded"
        reasons: dict[str, int] = {}
        for _clip, reason in self.excluded:
            reasons[reason] = reasons.get(reason, 0) + 1
        return "excluded: " + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda r: -r[1]))

    def targets(self, clips: list[Clip] | None = None) -> np.ndarray:
        """Multi-hot matrix (len(clips), n_tags) as float32."""
        clips = list(self.clips) if clips is None else clips
        y = np.zeros((len(clips), len(self.tag_names)), dtype=np.float32)
        for i, clip in enumerate(clips):
            y[i, list(clip.labels)] = 1.0
        return y
