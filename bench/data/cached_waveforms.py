"""Reading a prepared waveform cache: the format of one complete sample rate and its read-only reader.

A sample rate's folder (`bench.data.cache` prepares it) is complete iff its `manifest.json` is valid
(`manifest_problem`): then `waveforms.f16` holds one float16 row of `clip_samples` per clip of the
dataset, in the index's order, and the manifest's `status` says which rows decoded (`OK`, `PADDED`)
and which are zero (`FAILED`). The training side needs only this module; the preparer writes what
it reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.data.index import DatasetIndex

CACHE_VERSION = 3
"""Part of a cache's folder name: a change to what a clip holds makes a new cache. Raise it with every
change to which files give a clip and what it holds (bench/data/audio.py's decoding and checks; a test
holds that file's digest for this version). 2: MP3 clips read without the decoder restarts after seeks
that put a click (up to 0.6) in the first ~0.1 s of a clip. 3: files cut short skipped, not padded
with silence; float files peaking over 16 refused; a WAV whose header overstates it by 10 ms or less,
and an MP3 followed by junk, decoded (they had been skipped)."""
DTYPE = np.float16
TODO, OK, PADDED, FAILED = 0, 1, 2, 3
"""A row's status, in the manifest and in the preparer's progress file."""
WAVEFORMS = "waveforms.f16"
MANIFEST = "manifest.json"
"""Written last, atomically: the sample rate's cache is complete iff it exists and is valid."""


def manifest_problem(folder: Path) -> str | None:
    """Why `folder/manifest.json` does not mark a complete cache, or None if it does."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
        n, samples = manifest["n_clips"], manifest["clip_samples"]
        if manifest["version"] != CACHE_VERSION or manifest["dtype"] != np.dtype(DTYPE).name:
            return f"version {manifest['version']!r} / dtype {manifest['dtype']!r}"
        if len(manifest["status"]) != n or not isinstance(manifest["failed"], list):
            return "status does not list every clip"
        size = (folder / WAVEFORMS).stat().st_size
    except FileNotFoundError as exc:
        return f"{Path(exc.filename).name} missing" if exc.filename else "missing"
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if size != n * samples * np.dtype(DTYPE).itemsize:
        return f"{WAVEFORMS} has {size} bytes, not {n} x {samples} x {np.dtype(DTYPE).itemsize}"
    return None


class CachedWaveforms:
    """A complete cache of one sample rate, opened read-only (memory-mapped)."""

    def __init__(self, folder: Path, index: DatasetIndex):
        self.folder = Path(folder)
        self.index = index
        self.manifest = json.loads((self.folder / MANIFEST).read_text())
        self.sample_rate = self.manifest["sample_rate"]
        self.status = np.asarray(self.manifest["status"], dtype=np.int8)
        self.waveforms = self._open()

    def _open(self) -> np.memmap:
        return np.memmap(self.folder / WAVEFORMS, dtype=DTYPE, mode="r",
                         shape=(self.manifest["n_clips"], self.manifest["clip_samples"]))

    def rows(self, split: str) -> np.ndarray:
        """Rows of `split` whose audio decoded (failed clips are skipped)."""
        good = (self.status == OK) | (self.status == PADDED)
        in_split = np.array([c.split == split for c in self.index.clips], dtype=bool)
        return np.flatnonzero(good & in_split)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        return self.index.targets([self.index.clips[int(i)] for i in rows])
