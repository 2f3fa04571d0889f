"""Preparing the waveform cache: every clip of a dataset decoded and resampled once per sample rate.

One cache per sample rate serves every (n_mels, hop, log) configuration: the mel is computed on the
training device, per batch (docs/architecture.md). Layout::

    <cache root>/<dataset>-<key>/
        index-<digest>.json            a DatasetIndex: clips (row order), splits, labels, tag names
        sr16000/waveforms.f16          float16 memmap, shape (n_clips, clip_samples); failed rows are zero
        sr16000/progress.npy           per-row status while preparing (resume point)
        sr16000/failures.json          reasons of failed rows so far
        sr16000/failed_stats.json      what each failed row's file was when it was read (size, times)
        sr16000/source_rates.npy       per-row sample rate of the file (the manifest counts the upsampled)
        sr16000/manifest.json          written last, atomically: the cache is complete iff it exists

float16 rather than int16: `benchmarks/cache_dtype.py` shows float16's log-mel error does not depend
on the recording level (dB: ~0.2 dB at the 99.9th percentile whatever the peak), while int16's grows
as the level drops (4.3 dB at a -40 dBFS peak); both take 2 bytes per sample.

Preparing is resumable and safe to kill: the decoding processes write rows into the waveform file,
the file is synced, and only then is their status saved (atomically); the manifest that marks the
cache complete comes last. A failed row whose file was replaced since it was read is decoded again by
the next preparer.
Preparers of one cache take turns (an exclusive `flock` on `prepare.lock`, which dies with its
holder), so concurrent workers never fill the same cache twice. A manifest that does not parse or
does not match its waveform file marks nothing complete: the next preparer sets it aside
(`manifest.json.rejected`) and completes the cache again; unreadable progress files restart the rate.
The waveform file is allocated in full before any row is written, so a full disk is an error at once,
not a crash halfway through a memory-mapped write.

The key covers the clips and how they are cut, not their labels: specs that tag the same clips
differently (50 or 20 MTAT tags, another MSD tag list) share the waveforms, and each labelling has
its own index file, named by its content, which the spec's workers read (`WorkerJob.cache_index`).

Reading a complete cache (its format, `manifest_problem`, `CachedWaveforms`) is `bench.data.cached_waveforms`,
which the training side imports without this module.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import glob
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core import framing
from bench.core.errors import UserError
from bench.core.interrupts import (
    end_pool,
    interrupts_deferred,
    pool_process_init,
    semaphores_named,
    wait_on_pool,
)
from bench.core.machine import usable_cpus
from bench.core.store import (
    atomic_write_bytes,
    atomic_write_json,
    exclusive_lock,
    fsync_path,
    lock_held,
    reject,
    remove_temp_files,
)
from bench.data.audio import (
    MIN_SECONDS,
    MISSING_FILE,
    UNREADABLE,
    BadAudio,
    check_file,
    decode_clip,
    decoder_messages_discarded,
)
from bench.data.cached_waveforms import (
    CACHE_VERSION,
    DTYPE,
    FAILED,
    MANIFEST,
    OK,
    PADDED,
    TODO,
    WAVEFORMS,
    CachedWaveforms,
    manifest_problem,
)
from bench.data.index import Clip, DatasetIndex
from bench.data.synthetic.files import META as SYNTHETIC_META

SAVE_EVERY_SECONDS = 10.0


def cache_key(index: DatasetIndex, clip_seconds: float, min_seconds: float = MIN_SECONDS) -> str:
    """Key of a dataset's cache: the same clips (ids and resolved paths), cut the same way, share one
    cache. The files' contents are not read: a file replaced under the same path keeps the waveforms of
    the one it replaced (docs/datasets.md: delete the cache folder after changing a dataset's audio).

    A generated dataset's parameters (its synthetic.json: seed, generator version, ...) are part of
    it: a spec with another seed regenerates every MP3 under the same names in the same folder, and
    those must not be read from the waveforms of the earlier ones."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, index.name, clip_seconds, min_seconds]).encode())
    for clip, resolved in zip(index.clips, resolved_paths(clip.path for clip in index.clips), strict=True):
        h.update(f"\n{clip.clip_id}\t{resolved}".encode("utf-8", "surrogateescape"))  # a name's bytes as they are
    if (generated := generated_parameters(index)) is not None:
        h.update(b"\n" + generated)
    return f"{index.name}-{h.hexdigest()[:12]}"


def generated_parameters(index: DatasetIndex) -> bytes | None:
    """A generated dataset's synthetic.json as it is now (its seed, clips, generator version), or None."""
    try:
        return (Path(index.root) / SYNTHETIC_META).read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def resolved_paths(paths: Iterable[str]) -> Iterator[str]:
    """`os.path.realpath` of each path, each folder resolved once: MSD's 240,000 files lie in a few
    thousand folders, and resolving every path's every component took seconds at each grid start."""
    folders: dict[str, str] = {}
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        joined = os.path.join(folders[folder], name)
        yield os.path.realpath(path) if name in ("", ".", "..") or os.path.islink(joined) else joined


def index_to_json(index: DatasetIndex) -> dict:
    """`dataclasses.asdict(index)`, as JSON writes it, without its deep copy of every value: 4x faster,
    seconds at each grid start for MSD's 240,000 clips."""
    clip_fields = [f.name for f in dataclasses.fields(Clip)]
    return {f.name: [{name: getattr(clip, name) for name in clip_fields} for clip in index.clips]
            if f.name == "clips" else getattr(index, f.name) for f in dataclasses.fields(index)
            if f.metadata.get("stored", True)}


def index_file_name(index: DatasetIndex) -> str:
    """The index's file in its cache folder, named by its content (labels and splits included)."""
    digest = hashlib.sha256(json.dumps(index_to_json(index), sort_keys=True).encode()).hexdigest()[:12]
    return f"index-{digest}.json"


def index_from_json(data: dict) -> DatasetIndex:
    clips = tuple(Clip(c["clip_id"], c["path"], c["split"], tuple(c["labels"])) for c in data["clips"])
    return DatasetIndex(name=data["name"], root=data["root"], tag_names=tuple(data["tag_names"]), clips=clips,
                        excluded=tuple(tuple(e) for e in data["excluded"]))


@dataclass(frozen=True)
class PrepareReport:
    sample_rate: int
    path: Path
    n_clips: int
    ok: int
    padded: int
    failed: list[tuple[str, str, str]]
    """(clip id, path, reason) of every clip that could not be decoded."""
    seconds: float
    already_done: bool
    retried: int = 0
    """Rows that had failed and were decoded again because their file changed since (see `prepare`)."""
    upsampled: int | None = None
    """Clips whose file is recorded at a lower rate than the cache's, so resampled up: their mel bands
    above half their own rate hold no audio. None for a cache prepared before it was counted."""
    lowest_source_rate: int | None = None
    """The lowest rate a clip's file is recorded at (None: not recorded)."""


def _decode_row(args: tuple[int, str, tuple[int, ...], float, dict[int, tuple[str, int]]]):
    """Worker: (row, path, rates, clip_seconds, {rate: (waveform file, samples per row)}) -> (row, status,
    reason, {"source_rate": the file's own rate}; {} where it failed).

    The decoded clips are written into the waveform files here, so that what goes back through the pool's
    pipe is a few hundred bytes, which one write puts there whole: a result of megabytes, cut by a process
    killed in the middle of sending it, had left the pool's reader waiting for the rest, the preparation
    hung for good."""
    row, path, rates, clip_seconds, targets = args
    try:
        with decoder_messages_discarded():  # a decoding process of its own: nothing else writes there
            decoded = decode_clip(path, rates, clip_seconds)
    except BadAudio as exc:
        return row, FAILED, str(exc)[:1000], {}
    for rate, clip in decoded.clips.items():
        _write_row(*targets[rate], row, clip.astype(DTYPE))
    return row, PADDED if decoded.padded else OK, "", {"source_rate": decoded.source_rate}


def _write_row(path: str, samples: int, row: int, clip: np.ndarray) -> None:
    """Row `row` of the waveform file `path` (rows of `samples` float16 samples), written with pwrite."""
    if clip.shape != (samples,):
        raise ValueError(f"a decoded clip of {clip.shape} samples for rows of {samples}")
    data = memoryview(np.ascontiguousarray(clip)).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        offset, done = row * samples * np.dtype(DTYPE).itemsize, 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], offset + done)
    finally:
        os.close(fd)


DIED = ("its decoding process died (a crash in the decoder on this file, or the system killed the "
        "process, e.g. out of memory)")
"""The failure reason of a file whose process died twice with it alone in the process."""


def decode_in_processes(fn: Callable, jobs: list[tuple], workers: int,
                        handing_out: Callable[[tuple], None] | None = None) -> Iterator:
    """`fn(job)` for every job (a tuple whose first item is its row), in `workers` spawned processes, in
    the order they finish. `handing_out(job)` is called as a job is given to the pool, before any process
    can read its file (a few jobs ahead of the processes). A process that dies (a decoder crash on a
    broken file, the out-of-memory killer) breaks the pool: the jobs it had in flight are retried one by
    one, each alone in a fresh process, and a job whose process dies twice alone yields (row, FAILED,
    DIED, {}). Twice: the pool does not say which job killed it, and a job still queued when it broke
    may meet its first death alone (the out-of-memory killer's, say). The other jobs go on in a fresh
    pool, so one bad file among a dataset's thousands neither hangs nor stops the preparation."""
    pending, suspects = deque(jobs), deque()
    context = multiprocessing.get_context("spawn")  # the parent may hold torch's thread pools: no fork
    while pending or suspects:
        if suspects:
            job, deaths = suspects.popleft()
            with semaphores_named():
                alone = ProcessPoolExecutor(1, mp_context=context, initializer=pool_process_init)
            with alone:
                try:
                    with interrupts_deferred():
                        submitted = alone.submit(fn, job)
                    result = wait_on_pool(alone, [submitted]).pop().result()
                except BrokenProcessPool:
                    result = (job[0], FAILED, DIED, {}) if deaths else None
            if result is None:
                suspects.appendleft((job, 1))
                continue
            yield result
            continue
        with semaphores_named():
            executor = ProcessPoolExecutor(workers, mp_context=context, initializer=pool_process_init)
        in_flight: dict = {}
        broken = False
        try:
            while pending or in_flight:
                while not broken and pending and len(in_flight) < 4 * workers:  # bounded: results are megabytes
                    job = pending.popleft()
                    if handing_out is not None:
                        handing_out(job)
                    try:
                        with interrupts_deferred():
                            in_flight[executor.submit(fn, job)] = job
                    except BrokenProcessPool:  # it broke since the last wait: this job never reached it
                        pending.appendleft(job)
                        broken = True
                if not in_flight:  # broken with nothing in it (a process killed while idle): a fresh pool
                    break
                done = wait_on_pool(executor, in_flight)
                finished = [(f, in_flight.pop(f)) for f in done if not isinstance(f.exception(), BrokenProcessPool)]
                if len(finished) < len(done):  # the pool broke: what it still held is retried alone
                    suspects.extend((job, 0) for job in in_flight.values())
                    in_flight.clear()
                for future, _ in finished:
                    yield future.result()
                if suspects:
                    break
        finally:  # stopped early (Ctrl-C, an error while writing) with work in flight: its processes end now
            end_pool(executor, early=bool(in_flight))


def _file_stamp(stat: os.stat_result) -> list[int]:
    """What a file is, as far as seeing it replaced goes: size, mtime and ctime (ns)."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _file_stamp_of(path: str) -> list[int] | None:
    try:
        return _file_stamp(os.stat(path))
    except (OSError, ValueError):
        return None


def reachable(path: str) -> bool:
    """Whether `path` can be opened as a file now (`bench.data.audio.check_file`)."""
    try:
        check_file(path)
    except BadAudio:
        return False
    return True


class _PartialRate:
    """Preparation state of one sample rate: its waveform file (which the decoding processes write) and
    the per-row status."""

    def __init__(self, folder: Path, n_clips: int, n_samples: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        data = folder / WAVEFORMS
        size = n_clips * n_samples * np.dtype(DTYPE).itemsize
        if not data.exists() or data.stat().st_size != size:
            _allocate(data, size)
            for stale in RESUME_FILES:
                (folder / stale).unlink(missing_ok=True)
        self.target = (str(data), n_samples)
        self.status, self.failures = _read_progress(folder, n_clips)
        self.failed_stats = _read_failed_stats(folder)
        self.source_rates = _read_source_rates(folder, n_clips)

    def save(self):
        """Sync the rows, then the failures' reasons and stamps and the files' rates, then record the rows as
        done: a kill between any two only costs redoing rows (what a row still to do has is replaced when it
        is redone)."""
        fsync_path(self.folder / WAVEFORMS)
        atomic_write_json(self.folder / "failures.json", self.failures)
        atomic_write_json(self.folder / FAILED_STATS, self.failed_stats)
        atomic_write_bytes(self.folder / SOURCE_RATES, _npy_bytes(self.source_rates))
        atomic_write_bytes(self.folder / "progress.npy", _npy_bytes(self.status))

    def upsampled(self, rate: int) -> tuple[int | None, int | None]:
        """(decoded clips whose file's rate is below `rate`, the lowest rate of a decoded clip's file); both
        None where some decoded row's rate is not known (decoded by a version that did not record it)."""
        decoded = self.source_rates[(self.status == OK) | (self.status == PADDED)]
        if not decoded.size or (decoded == 0).any():
            return None, None
        return int(np.sum(decoded < rate)), int(decoded.min())


FAILED_STATS = "failed_stats.json"
"""Per failed row of a rate being prepared: its file's `_file_stamp` before it was read (null: unreachable,
or not known)."""


def _read_failed_stats(folder: Path) -> dict:
    """The stamps saved so far; none where absent or unreadable (progress saved before stamps were: the
    manifest then records those rows' stamps as not known, and the next preparer looks at them again)."""
    try:
        stats = json.loads((folder / FAILED_STATS).read_text())
        return stats if isinstance(stats, dict) else {}
    except (OSError, ValueError):
        return {}


SOURCE_RATES = "source_rates.npy"
"""Per row of a rate being prepared: the sample rate its file is recorded at (0: not known)."""


RESUME_FILES = ("progress.npy", "failures.json", SOURCE_RATES, FAILED_STATS)
"""What a preparation resumes from, beside the waveforms: without them every row is decoded again."""


def _read_source_rates(folder: Path, n_clips: int) -> np.ndarray:
    try:
        rates = np.load(folder / SOURCE_RATES, allow_pickle=False)
        if rates.shape == (n_clips,) and rates.dtype == np.int32:
            return rates.copy()
    except (OSError, ValueError, EOFError):  # absent, torn or foreign: the rates of the rows done are not known
        pass
    return np.zeros(n_clips, dtype=np.int32)


def reserve_blocks(fd: int, size: int) -> None:
    """Reserve the blocks of the first `size` bytes of the open file `fd`, or raise OSError (EOPNOTSUPP
    where the file system cannot). On Linux fallocate(2) itself: glibc's posix_fallocate, where the file
    system cannot reserve blocks (NFS v3), writes a byte into every 4 KiB block instead, 96 million
    writes for MSD's 394 GB cache, hours over a network file system. On macOS, which has neither,
    zeros are written: once more the cache's size, against a full disk met as a SIGBUS mid-preparation."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = getattr(libc, "fallocate64", None) or libc.fallocate
        fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        while fallocate(fd, 0, 0, size) != 0:
            code = ctypes.get_errno()
            if code != errno.EINTR:
                raise OSError(code, os.strerror(code))
        return
    if not hasattr(os, "posix_fallocate"):  # macOS
        zeros, done = memoryview(bytes(min(size, 16 * 2**20))), 0
        while done < size:
            done += os.pwrite(fd, zeros[:size - done], done)
        return
    os.posix_fallocate(fd, 0, size)


def _allocate(path: Path, size: int) -> None:
    """A zero-filled file of `size` bytes whose blocks are reserved now (ENOSPC here, not a SIGBUS later)."""
    with open(path, "wb") as handle:
        try:
            reserve_blocks(handle.fileno(), size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # cannot reserve: a sparse file
                path.unlink(missing_ok=True)
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            handle.truncate(size)


def _read_progress(folder: Path, n_clips: int) -> tuple[np.ndarray, dict]:
    """(per-row status, failure reasons) saved so far; all rows to do when they are absent or unreadable."""
    status, failures = folder / "progress.npy", folder / "failures.json"
    try:
        rows = np.load(status, allow_pickle=False) if status.exists() else np.zeros(n_clips, dtype=np.int8)
        reasons = json.loads(failures.read_text()) if failures.exists() else {}
        if rows.shape == (n_clips,) and rows.dtype == np.int8 and isinstance(reasons, dict):
            rows = rows.copy()
            # a failure whose reason was not recorded (a kill between the two files, in older versions,
            # which wrote the rows first) is decoded again rather than skipped as "unknown" for good
            rows[(rows == FAILED) & ~np.isin(np.arange(n_clips), [int(k) for k in reasons if k.isdigit()])] = TODO
            return rows, reasons
    except (OSError, ValueError, EOFError):  # a torn or foreign progress file: redo the rate's rows
        pass
    return np.zeros(n_clips, dtype=np.int8), {}


def _npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


class WaveformCache:
    """Prepare and open the per-sample-rate caches of one dataset."""

    def __init__(self, root: str | Path, index: DatasetIndex, clip_seconds: float):
        self.index = index
        self.clip_seconds = clip_seconds
        self.generated = generated_parameters(index)  # what the key holds: a replaced dataset is noticed
        self.dir = Path(root).expanduser() / cache_key(index, clip_seconds)

    @property
    def index_path(self) -> Path:
        return self.dir / index_file_name(self.index)

    @classmethod
    def from_index(cls, path: str | Path) -> WaveformCache:
        """Reopen a cache by an index file `prepare` wrote (workers use this instead of re-reading the
        dataset): the waveforms of its folder, the labels of that file."""
        path = Path(path)
        index = index_from_json(json.loads(path.read_text()))
        cache = cls.__new__(cls)
        cache.index, cache.dir = index, path.parent
        cache.clip_seconds = cache.generated = None  # only needed to prepare
        return cache

    def _index_is_valid(self) -> bool:
        try:
            return index_to_json(index_from_json(json.loads(self.index_path.read_bytes()))) == \
                index_to_json(self.index)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def rate_dir(self, sample_rate: int) -> Path:
        return self.dir / f"sr{sample_rate}"

    def earlier_versions(self) -> list[tuple[Path, int]]:
        """This dataset's cache folders beside this one that an earlier CACHE_VERSION made (a rate's
        manifest says so), with their size in bytes: never used again, and as large as this one."""
        found = []
        for folder in sorted(self.dir.parent.glob(f"{glob.escape(self.index.name)}-*")):
            versions = []
            for manifest in folder.glob(f"sr*/{MANIFEST}"):
                try:
                    versions.append(json.loads(manifest.read_text())["version"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
            if folder != self.dir and versions and all(isinstance(v, int) and v < CACHE_VERSION for v in versions):
                size = sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())
                found.append((folder, size))
        return found

    def is_complete(self, sample_rate: int) -> bool:
        return manifest_problem(self.rate_dir(sample_rate)) is None

    def manifest(self, sample_rate: int) -> dict:
        return json.loads((self.rate_dir(sample_rate) / MANIFEST).read_text())

    def rate_bytes(self, sample_rate: int) -> int:
        """Bytes of the waveform file of one sample rate: every clip of the index, float16."""
        return len(self.index.clips) * framing.clip_samples(self.clip_seconds, sample_rate) * np.dtype(DTYPE).itemsize

    def _check_space(self, rates: list[int]) -> None:
        """Refuse, before any file is allocated, a preparation the disk cannot hold: the waveform files
        still to allocate (a file of the right size from an interrupted preparation is already held)."""
        missing = {}
        for rate in rates:
            data = self.rate_dir(rate) / WAVEFORMS
            try:
                stat = data.stat()
                held = stat.st_blocks * 512 if stat.st_size == self.rate_bytes(rate) else 0
            except (OSError, AttributeError):  # absent (or no st_blocks on this platform)
                held = 0
            missing[rate] = max(0, self.rate_bytes(rate) - held)
        free = shutil.disk_usage(self.dir).free
        if sum(missing.values()) > free:
            parts = ", ".join(f"{rate} Hz {size / 1e9:.3g} GB" for rate, size in missing.items() if size)
            older = self.earlier_versions()
            hint = (f" ({', '.join(str(p) for p, _ in older)}: this dataset's caches of an earlier version, "
                    f"{sum(s for _, s in older) / 1e9:.3g} GB, not used again)" if older else "")
            raise UserError(f"the waveform cache needs {sum(missing.values()) / 1e9:.3g} GB more in {self.dir} "
                            f"({parts}; float16, {len(self.index.clips):,} clips) and {free / 1e9:.3g} GB are free: "
                            f"free some space{hint}, or give the cache another disk (--cache DIR, or BENCH_CACHE)")

    def prepare(self, sample_rates: Iterable[int], workers: int | None = None,
                progress: Callable[[int, str], Iterable] | None = None,
                log: Callable[[str], None] = lambda line: None) -> list[PrepareReport]:
        """Fill every cache of `sample_rates` that is not complete; decode each file once for all of them.

        `progress(total, description)` may return a tqdm-like object with update(n) and close(); `log`
        gets a line when another process is preparing this cache and this one waits for it.
        """
        rates = sorted(set(sample_rates))
        if self.is_ready(rates):
            return [self._report(r, already_done=True) for r in rates]
        self.dir.mkdir(parents=True, exist_ok=True)
        if lock_held(self.dir / "prepare.lock"):
            log(f"waiting for another process preparing this waveform cache ({self.dir}); "
                f"its preparation serves this one")
        with exclusive_lock(self.dir / "prepare.lock"):  # another preparer may finish it while we wait
            return self._prepare_locked(rates, workers, progress)

    def is_ready(self, sample_rates: Iterable[int]) -> bool:
        """Whether `prepare` has nothing to write for `sample_rates`: each complete, no failed file changed
        since, the index of this labelling there. A ready cache is only read (it may be read-only)."""
        return all(self.is_complete(r) and not self._changed_failures(r) for r in sample_rates) and \
            self._index_is_valid()

    def _changed_failures(self, rate: int) -> list[int]:
        """Rows of a complete cache that failed, whose file was written or replaced since (its size, mtime
        or ctime is not what the manifest recorded: a copy that keeps the old mtime still changes the
        ctime), or could not be reached then and can be now (a folder moved back, a mount come up,
        permissions fixed: the file's times are old): a fixed file is decoded again, not skipped for good.
        Only failed rows are looked at: one stat per bad file. The file's times are compared with their
        own recorded values, never with the manifest's: the data and the cache may be on two file systems
        whose clocks differ. A manifest without them (written before they were recorded): times later
        than the manifest's."""
        manifest = self.rate_dir(rate) / MANIFEST
        try:
            prepared = manifest.stat().st_mtime_ns
            recorded = json.loads(manifest.read_text())
            rows = np.flatnonzero(np.asarray(recorded["status"]) == FAILED).tolist()
            reasons = {row: str(failure[-1]) for row, failure in zip(rows, recorded["failed"], strict=False)}
            stats = recorded.get("failed_stats")
            stats = stats if isinstance(stats, dict) else None
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return []
        changed = []
        for row in rows:
            try:
                path = self.index.clips[row].path
                stat = os.stat(path)
            except (OSError, IndexError):
                continue
            unreached = reasons.get(row, "") == MISSING_FILE or reasons.get(row, "").startswith(UNREADABLE)
            if stats is not None and str(row) in stats:
                written = stats[str(row)] != _file_stamp(stat)
            else:
                written = max(stat.st_mtime_ns, stat.st_ctime_ns) > prepared
            if written or (unreached and reachable(path)):
                changed.append(row)
        return changed

    def _reopen_rows(self, rate: int, rows: list[int]) -> None:
        """Mark `rows` of a complete cache to decode again: progress from the manifest with those rows
        to do. The manifest stays until the new one replaces it, so workers of a running grid keep
        reading a complete cache (the rows were failed: nobody reads them); a kill before the new
        manifest leaves the old one, and the next preparer finds the same changed files."""
        folder = self.rate_dir(rate)
        manifest = self.manifest(rate)
        status = np.asarray(manifest["status"], dtype=np.int8)
        again = set(rows)
        reasons = {str(int(i)): reason for i, (_, _, reason) in
                   zip(np.flatnonzero(status == FAILED), manifest["failed"], strict=True) if int(i) not in again}
        status[rows] = TODO
        stats = manifest.get("failed_stats")
        stats = {row: stamp for row, stamp in stats.items() if row in reasons} if isinstance(stats, dict) else {}
        atomic_write_json(folder / FAILED_STATS, stats)
        atomic_write_bytes(folder / "progress.npy", _npy_bytes(status))
        atomic_write_json(folder / "failures.json", reasons)

    def _prepare_locked(self, rates: list[int], workers, progress) -> list[PrepareReport]:
        retried = {}
        for rate in rates:
            if self.is_complete(rate) and (rows := self._changed_failures(rate)):
                self._reopen_rows(rate, rows)
                retried[rate] = len(rows)
        todo_rates = [r for r in rates if r in retried or not self.is_complete(r)]
        reports = {r: self._report(r, already_done=True) for r in rates if r not in todo_rates}
        remove_temp_files(self.dir)
        if not self._index_is_valid():  # workers read the index from here
            atomic_write_json(self.index_path, index_to_json(self.index))
        self._check_space(todo_rates)
        for rate in todo_rates:
            folder = self.rate_dir(rate)
            remove_temp_files(folder)
            if rate not in retried and (folder / MANIFEST).exists():
                reject(folder / MANIFEST)  # it did not mark a complete cache
        if todo_rates:
            started = time.monotonic()
            n = len(self.index.clips)
            partial = {r: _PartialRate(self.rate_dir(r), n, framing.clip_samples(self.clip_seconds, r))
                       for r in todo_rates}
            # A row is done only if it is done at every rate of this pass.
            done = np.logical_and.reduce([p.status != TODO for p in partial.values()])
            rows = [i for i in range(n) if not done[i]]
            self._decode_rows(rows, partial, workers, progress)
            self._refuse_a_replaced_dataset(partial)
            for rate, part in partial.items():
                part.save()
                fsync_path(part.folder / WAVEFORMS)
                statuses = part.status
                upsampled, lowest = part.upsampled(rate)
                manifest = {
                    "version": CACHE_VERSION,
                    "dataset": self.index.name,
                    "sample_rate": rate,
                    "clip_seconds": self.clip_seconds,
                    "clip_samples": framing.clip_samples(self.clip_seconds, rate),
                    "dtype": np.dtype(DTYPE).name,
                    "n_clips": n,
                    "ok": int(np.sum(statuses == OK) + np.sum(statuses == PADDED)),
                    "padded": int(np.sum(statuses == PADDED)),
                    "upsampled": upsampled,
                    "lowest_source_rate": lowest,
                    "failed": [[self.index.clips[int(i)].clip_id, self.index.clips[int(i)].path,
                                part.failures.get(str(int(i)), "unknown")]
                               for i in np.flatnonzero(statuses == FAILED)],
                    # what each failed file was before it was read (size and times; none where it could not
                    # be reached, or for a row read before stamps were kept: looked at again), for
                    # `_changed_failures` to see it replaced since
                    "failed_stats": {str(int(i)): part.failed_stats.get(str(int(i)))
                                     for i in np.flatnonzero(statuses == FAILED)},
                    "status": statuses.tolist(),
                    "seconds": round(time.monotonic() - started, 3),
                }
                atomic_write_json(part.folder / MANIFEST, manifest)
                reports[rate] = dataclasses.replace(self._report(rate, already_done=False),
                                                    retried=retried.get(rate, 0))
        return [reports[r] for r in rates]

    def _refuse_a_replaced_dataset(self, partial: dict) -> None:
        """A generated dataset replaced while its files were decoded (`bench synth`, or a grid of a spec of
        another seed generating into the same folder: the same file names, other audio and tags): the rows
        decoded since are the new dataset's, under the old one's key. None is kept (every row is decoded
        again by the next preparer of this key), and the preparation stops in one line."""
        if self.generated is None or generated_parameters(self.index) == self.generated:
            return
        for part in partial.values():
            for stale in RESUME_FILES:
                (part.folder / stale).unlink(missing_ok=True)
        raise UserError(f"the generated dataset at {self.index.root} was replaced while its waveform cache was "
                        "prepared (by `bench synth`, or a grid of a spec with another dataset.seed or clips); its "
                        "cache was not kept: rerun, and give such specs their own dataset.path")

    def _decode_rows(self, rows, partial, workers, progress):
        if not rows:
            return
        rates = tuple(partial)
        targets = {rate: part.target for rate, part in partial.items()}
        jobs = [(i, self.index.clips[i].path, rates, self.clip_seconds, targets) for i in rows]
        # what each file is before it is read, kept for those that fail, a process's death included: a file
        # fixed since differs from it. Taken as each file is handed out, while the processes decode the ones
        # before it: a stat of every file first would keep them waiting (minutes, for a dataset's hundreds
        # of thousands of files on a network disk)
        stamps: dict[int, list[int] | None] = {}

        def stamp(job: tuple) -> None:
            stamps.setdefault(job[0], _file_stamp_of(job[1]))

        bar = progress(len(jobs), f"decode+resample {self.index.name} -> {', '.join(map(str, rates))} Hz") \
            if progress else None
        workers = max(1, min(workers or usable_cpus(), len(jobs)))
        last_save = time.monotonic()
        # in processes even for one worker or one file: a file that crashes the decoder would otherwise
        # take the preparation (and the grid) down with it, again at every rerun
        results = decode_in_processes(_decode_row, jobs, workers, handing_out=stamp)
        try:
            for row, status, reason, info in results:  # the rows are in the waveform files already
                for part in partial.values():
                    if status == FAILED:
                        part.failures[str(row)] = reason
                        part.failed_stats[str(row)] = stamps.get(row)
                    part.source_rates[row] = info.get("source_rate", 0)
                    part.status[row] = status
                if bar is not None:
                    bar.update(1)
                if time.monotonic() - last_save > SAVE_EVERY_SECONDS:
                    for part in partial.values():
                        part.save()
                    last_save = time.monotonic()
        finally:
            results.close()  # its pool's processes are ended
            if bar is not None:
                bar.close()
        for part in partial.values():
            part.save()

    def _report(self, rate: int, already_done: bool) -> PrepareReport:
        m = self.manifest(rate)
        return PrepareReport(sample_rate=rate, path=self.rate_dir(rate), n_clips=m["n_clips"], ok=m["ok"],
                             padded=m["padded"], failed=[tuple(f) for f in m["failed"]], seconds=m["seconds"],
                             already_done=already_done, upsampled=m.get("upsampled"),
                             lowest_source_rate=m.get("lowest_source_rate"))

    def open(self, sample_rate: int) -> CachedWaveforms:
        problem = manifest_problem(self.rate_dir(sample_rate))
        if problem:
            raise FileNotFoundError(f"cache for {sample_rate} Hz is not prepared ({problem}): "
                                    f"{self.rate_dir(sample_rate)}")
        return CachedWaveforms(self.rate_dir(sample_rate), self.index)
