"""The dataset on disk: MP3 encoding, atomic writes, the completeness check and the process pool."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import re
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

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
from bench.core.progress import progress_bar
from bench.core.store import atomic_write_bytes, exclusive_lock
from bench.data.synthetic.clip import synthesize
from bench.data.synthetic.plan import FOLDERS, SPLIT_OF_FOLDER, TAG_NAMES, TASKS, ClipPlan, plan_clips

GENERATOR_VERSION = 1
"""Bump when the audio or the tag plan changes, so existing datasets are regenerated."""

ANNOTATIONS = "annotations_final.csv"
META = "synthetic.json"
"""Parameters of a complete dataset; written just before the annotations file."""

MP3_BITRATE_MODE = "VARIABLE"
MP3_COMPRESSION_LEVEL = 0.4
"""LAME VBR at about 46 kbit/s for this material (30-82; MTAT's files are 32 kbit/s). It keeps content up
to ~7.3 kHz, above the `air` band, and the decoded length equals the written one; constant 32 kbit/s
adds 1536 samples at decode, and coarser settings low-pass at 6 kHz."""

MP3_RATES = (16000, 22050, 24000, 32000, 44100, 48000)
"""MP3 sample rates at which the `air` band (up to 7.2 kHz) exists."""

@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    annotations: Path
    meta: Path
    mp3_paths: tuple[Path, ...]
    clips: int
    seed: int
    clip_seconds: float
    sample_rate: int
    tag_counts: dict[str, int]
    """Positive clips per tag, in TAGS order."""
    folder_counts: dict[str, int]
    """Clips per folder `0`-`f`."""
    split_tag_counts: dict[str, dict[str, int]]
    """Positive clips per tag in each split (train `0`-`b`, valid `c`, test `d`-`f`)."""
    reused: bool
    """True when a complete dataset with the same parameters was already there (nothing written)."""
    synth_seconds: float
    """Sum over clips of synthesis time (0 when reused)."""
    encode_seconds: float
    """Sum over clips of MP3 encoding + writing time (0 when reused)."""
    wall_seconds: float


def encode_mp3(audio: np.ndarray, sample_rate: int) -> bytes:
    """MP3 bytes of a mono float waveform (LAME through libsndfile; deterministic, no ID3 tag)."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="MP3", bitrate_mode=MP3_BITRATE_MODE,
             compression_level=MP3_COMPRESSION_LEVEL)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# Files: atomic writes, the completeness check, the process pool.
# ----------------------------------------------------------------------------------------------

_OUR_MP3 = re.compile(r"^synthetic-artist_\d+-track_\d+-\d+-\d+\.mp3$")
_OUR_TMP = re.compile(r"^\.(synthetic-artist_.*\.mp3|annotations_final\.csv|synthetic\.json)\..*\.tmp$")
"""Temp files of bench.core.store.atomic_write_bytes for our files (`.<name>.<random>.tmp`)."""
LOCK = ".synthetic.lock"


def _render_clip(job: tuple[ClipPlan, int, float, int, str]) -> tuple[int, float, float]:
    """Worker: synthesise, encode and write one clip; returns (index, synth s, encode+write s)."""
    plan, seed, clip_seconds, sample_rate, out_dir = job
    t0 = time.perf_counter()
    audio = synthesize(plan, seed, clip_seconds, sample_rate)
    t1 = time.perf_counter()
    atomic_write_bytes(Path(out_dir) / plan.mp3_path, encode_mp3(audio, sample_rate))
    return plan.index, t1 - t0, time.perf_counter() - t1


def _params(clips: int, seed: int, clip_seconds: float, sample_rate: int) -> dict:
    return {"generator": "bench.data.synthetic", "version": GENERATOR_VERSION, "clips": clips, "seed": seed,
            "clip_seconds": clip_seconds, "sample_rate": sample_rate, "tags": list(TAG_NAMES)}


def is_complete(out_dir: str | Path, clips: int, seed: int, clip_seconds: float, sample_rate: int) -> bool:
    """True when out_dir holds a finished dataset made with these parameters (meta, annotations, files)."""
    out = Path(out_dir)
    try:
        meta = json.loads((out / META).read_text())
        with open(out / ANNOTATIONS, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t", quotechar='"'))
    except (FileNotFoundError, NotADirectoryError, ValueError):  # absent or half-written: generate it
        return False  # (any other error reading it, a stale NFS handle say, is raised: regenerating would
        # replace the files of a finished dataset, and remove task files made from them)
    if meta != _params(clips, seed, clip_seconds, sample_rate) or len(rows) != clips + 1:
        return False
    return all((out / row[-1]).is_file() for row in rows[1:])


def annotations_text(plans: list[ClipPlan]) -> str:
    """MTAT's annotations_final.csv: tab-separated, every field double-quoted, one row per clip."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", quotechar='"', quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["clip_id", *TAG_NAMES, "mp3_path"])
    for p in plans:
        writer.writerow([p.clip_id, *("1" if t in p.tags else "0" for t in TAG_NAMES), p.mp3_path])
    return buffer.getvalue()


def _summary(out: Path, plans: list[ClipPlan], seed: int, clip_seconds: float, sample_rate: int, reused: bool,
             synth_s: float, encode_s: float, wall_s: float) -> SynthSummary:
    splits = ("train", "valid", "test")
    return SynthSummary(
        out_dir=out, annotations=out / ANNOTATIONS, meta=out / META,
        mp3_paths=tuple(out / p.mp3_path for p in plans), clips=len(plans), seed=seed,
        clip_seconds=clip_seconds, sample_rate=sample_rate,
        tag_counts={t: sum(t in p.tags for p in plans) for t in TAG_NAMES},
        folder_counts={f: sum(p.folder == f for p in plans) for f in FOLDERS},
        split_tag_counts={s: {t: sum(t in p.tags for p in plans if SPLIT_OF_FOLDER[p.folder] == s)
                              for t in TAG_NAMES} for s in splits},
        reused=reused, synth_seconds=synth_s, encode_seconds=encode_s, wall_seconds=wall_s)


def _clean_stale(out: Path, wanted: set[str]) -> None:
    """Remove our temp files and our MP3s that the new plan does not name (never other files)."""
    for folder in FOLDERS:
        d = out / folder
        if not d.is_dir():
            continue
        for path in d.iterdir():
            if _OUR_TMP.match(path.name) or (_OUR_MP3.match(path.name) and f"{folder}/{path.name}" not in wanted):
                path.unlink(missing_ok=True)
    for path in out.iterdir():
        if _OUR_TMP.match(path.name):
            path.unlink(missing_ok=True)


def generation_problem(out: Path) -> str | None:
    """Why the synthetic dataset cannot be generated into `out` (a folder holding files it did not
    write), or None. Reads only."""
    foreign = _foreign_files(out)
    if foreign:
        return (f"{out}: holds files `bench synth` did not write ({', '.join(foreign)}); the synthetic dataset is "
                "generated only into an empty folder or one it made, never over a real dataset")
    return None


def _foreign_files(out: Path, shown: int = 3) -> list[str]:
    """Up to `shown` files in `out` that generating there would replace or mix with, but that no earlier
    generation wrote: an annotations_final.csv without synthetic.json (a real MTAT folder), anything in
    the folders 0-f but our MP3s, other folders. Task CSVs (`bench synth --task`) and hidden files may be
    there."""
    if not out.is_dir():
        return []
    found = []
    if (out / ANNOTATIONS).exists() and not (out / META).exists():
        found.append(ANNOTATIONS)
    for path in sorted(out.iterdir()):
        if path.name in FOLDERS and path.is_dir():  # hidden files (.DS_Store) are any folder's
            found += [f"{path.name}/{name}" for name in sorted(p.name for p in path.iterdir())
                      if not (_OUR_MP3.match(name) or name.startswith("."))][:shown]
        elif path.is_dir() and not path.name.startswith("."):
            found.append(f"{path.name}/")
        if len(found) >= shown:
            break
    return found[:shown]


def _run(jobs: list, workers: int) -> Iterator[tuple[int, float, float]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_render_clip, jobs)
        return
    # spawn: the caller may hold torch/OpenMP threads, which fork would copy in a broken state
    with semaphores_named():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=pool_process_init)
    pending, in_flight = deque(jobs), deque()
    try:
        while pending or in_flight:
            while pending and len(in_flight) < 4 * workers:  # bounded, in order (`Executor.map` cancels
                with interrupts_deferred():  # what it has not yielded)
                    in_flight.append(pool.submit(_render_clip, pending.popleft()))
            wait_on_pool(pool, [in_flight[0]])
            yield in_flight.popleft().result()
    finally:  # on Ctrl-C too: clips being rendered are not waited for, the processes end now
        end_pool(pool, early=bool(in_flight))


def generate(out_dir: str | Path, clips: int = 600, seed: int = 0, clip_seconds: float = framing.PAPER_CLIP_SECONDS,
             sample_rate: int = 16000, workers: int | None = None, progress: bool = True) -> SynthSummary:
    """Write the synthetic dataset to out_dir (MP3 folders 0-f, synthetic.json, annotations_final.csv).

    Returns at once, touching nothing, when out_dir already holds a complete dataset with the same
    (clips, seed, clip_seconds, sample_rate). Otherwise, under an exclusive lock on out_dir, the old
    done-markers go first, every MP3 is written atomically, then synthetic.json and last
    annotations_final.csv, so an interrupted run never looks complete and the next call redoes it.

    `workers` (default: the usable CPUs) processes render clips; the output does not depend on it.
    They are spawned, not forked (the caller may hold torch threads), so a script calling this with
    workers > 1 needs the usual `if __name__ == "__main__":` guard.
    """
    t_start = time.perf_counter()
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if sample_rate not in MP3_RATES:
        raise ValueError(f"sample_rate must be one of {MP3_RATES} (MP3 rates that keep the 6.3-7.2 kHz air band), "
                         f"got {sample_rate}")
    if framing.clip_samples(clip_seconds, sample_rate) < sample_rate:
        raise ValueError(f"clip_seconds must be >= 1, got {clip_seconds}")
    out = Path(out_dir).expanduser()
    plans = plan_clips(clips, seed)
    if is_complete(out, clips, seed, clip_seconds, sample_rate):
        return _summary(out, plans, seed, clip_seconds, sample_rate, True, 0.0, 0.0, time.perf_counter() - t_start)
    if problem := generation_problem(out):
        raise UserError(problem)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / LOCK):
        if is_complete(out, clips, seed, clip_seconds, sample_rate):  # another process just finished it
            return _summary(out, plans, seed, clip_seconds, sample_rate, True, 0.0, 0.0,
                            time.perf_counter() - t_start)
        synth_s, encode_s = _write_all(out, plans, seed, clip_seconds, sample_rate, workers, progress)
    return _summary(out, plans, seed, clip_seconds, sample_rate, False, synth_s, encode_s,
                    time.perf_counter() - t_start)


def _write_all(out: Path, plans: list[ClipPlan], seed: int, clip_seconds: float, sample_rate: int,
               workers: int | None, progress: bool) -> tuple[float, float]:
    """Done-markers out first, then every MP3, then synthetic.json, and annotations_final.csv last."""
    (out / ANNOTATIONS).unlink(missing_ok=True)
    (out / META).unlink(missing_ok=True)
    for task in TASKS:  # they label the clips of the dataset being replaced
        (out / f"{task}.csv").unlink(missing_ok=True)
    for folder in FOLDERS:
        (out / folder).mkdir(exist_ok=True)
    _clean_stale(out, {p.mp3_path for p in plans})

    clips = len(plans)
    workers = max(1, min(workers or usable_cpus(), clips))
    jobs = [(p, seed, clip_seconds, sample_rate, str(out)) for p in plans]
    synth_s = encode_s = 0.0
    with progress_bar(clips, "synthetic clips", enabled=progress) as bar:
        for _, s, e in _run(jobs, workers):
            synth_s += s
            encode_s += e
            bar.update(1)

    meta = json.dumps(_params(clips, seed, clip_seconds, sample_rate), indent=1) + "\n"
    atomic_write_bytes(out / META, meta.encode("utf-8"))
    atomic_write_bytes(out / ANNOTATIONS, annotations_text(plans).encode("utf-8"))
    return synth_s, encode_s
