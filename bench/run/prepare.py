"""Read a spec's dataset (generating the synthetic one if absent) and fill its waveform caches."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from bench.core.errors import UserError, one_line
from bench.core.paths import writable_folder
from bench.core.progress import progress_bar
from bench.core.text import first_of, visible
from bench.data.cached_waveforms import MANIFEST
from bench.data.index import SPLITS, splits_without_audio


def prepare_spec(spec, data: str | None, cache: str | None, workers: int | None = None, progress: bool = True):
    """Read the spec's dataset (generating the synthetic one if absent) and fill its caches.
    `progress`: bars on a terminal (never in a log)."""
    from bench.data.cache import WaveformCache
    from bench.data.datasets import cache_option, cache_root, dataset_root, load_index

    root = dataset_root(spec.dataset, data, spec.path)
    index = load_index(spec.dataset, root, progress=progress, log=print)
    counts = index.counts()
    print(f"{spec.dataset.name} at {root}: {len(index.clips)} clips (train {counts['train']}, "
          f"valid {counts['valid']}, test {counts['test']}), {len(index.tag_names)} tags; "
          f"{index.excluded_summary()}")

    def cannot_run(why: str) -> UserError:
        return UserError(f"{spec.path}: the grid cannot run on {root}: {why}; bench dataset "
                         f"{spec.path}{f' --data {data}' if data else ''} shows what it holds")

    empty = [split for split in SPLITS if not counts[split]]
    if empty:  # every run would fail; a reader that drops clips without audio (MSD's) leaves none at all
        raise cannot_run(f"no clips in the {', '.join(empty)} split(s) ({index.excluded_summary()})")
    waveforms = WaveformCache(cache_root(cache), index, spec.dataset.clip_seconds)
    rates = sorted({c.mel.sample_rate for c in spec.configurations()})
    if not waveforms.is_ready(rates):  # a whole cache is only read: a lab's on read-only storage, another user's
        try:
            writable_folder(waveforms.dir, cache_option(cache))
        except UserError as exc:
            raise UserError(f"{exc}; the spec's waveform cache there is not complete and cannot be prepared "
                            "(give another --cache)") from None
    todo = [r for r in rates if not waveforms.is_complete(r)]
    # a reader that keeps clips without audio, to be recorded as skipped (MTAT's, a manifest's), on none: a
    # cache to prepare would hold no clip (a complete one trains without the audio)
    if todo and (silent := splits_without_audio(index)):
        raise cannot_run(f"no usable audio in the {', '.join(silent)} split(s) (every audio file missing or empty)")
    if todo:  # its size before any work (the disk is checked too)
        print(f"waveform cache to prepare: {sum(map(waveforms.rate_bytes, todo)) / 1e9:.3g} GB "
              f"({', '.join(f'{r} Hz' for r in todo)}, float16) in {waveforms.dir}")
        for folder, size in waveforms.earlier_versions():  # what a decoding rule changed left behind
            print(f"  {folder}: this dataset's cache of an earlier version, not used again ({size / 1e9:.3g} GB; "
                  "delete it to free the space)")
    reports = waveforms.prepare(rates, workers=workers, progress=partial(progress_bar, enabled=progress), log=print)
    for r in reports:
        state = "already prepared" if r.already_done else f"prepared in {r.seconds:.1f} s"
        if r.retried:
            state += f" ({r.retried} file(s) that had failed changed or became readable since, decoded again)"
        up = (f", {r.upsampled} upsampled from as low as {r.lowest_source_rate:,} Hz: none of their audio above "
              f"{r.lowest_source_rate / 2:,.0f} Hz" if r.upsampled else "")
        print(f"{r.sample_rate} Hz: {r.ok} clips ok ({r.padded} zero-padded{up}), {len(r.failed)} failed; "
              f"{state}: {r.path}")
    for line in skipped_lines(reports[0]) if reports else []:
        print(line)
    return index, waveforms, reports


SHOWN_FAILURES = 5
"""Failed clips named one per line, their file with them; more are grouped by reason."""
SHOWN_IDS = 3
"""Clip ids named per reason when they are grouped."""


def skipped_lines(report) -> list[str]:
    """The clips a cache could not decode (`PrepareReport.failed`), said in a few lines: each with its file
    where they are few, else a count per reason with the first ids, and where the whole list is (a
    partial download of MTAT misses thousands of files, and each grid start says this again)."""
    if len(report.failed) <= SHOWN_FAILURES:
        # a file's name may hold a line break: each clip stays on its one line
        return [f"  skipped {visible(str(clip_id))}: {visible(str(path))}: {one_line(reason)}"
                for clip_id, path, reason in report.failed]
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for clip_id, _path, reason in report.failed:
        by_kind.setdefault(reason_kind(reason), []).append((clip_id, reason))
    ranked = sorted(by_kind.items(), key=lambda item: -len(item[1]))
    lines = [f"  skipped {len(clips):,} clip(s): {one_line(clips[0][1]) if len(clips) == 1 else kind} "
             f"({first_of([visible(str(clip_id)) for clip_id, _ in clips], SHOWN_IDS)})"
             for kind, clips in ranked[:SHOWN_FAILURES]]
    others = ranked[SHOWN_FAILURES:]
    if others:
        lines.append(f"  skipped {sum(len(ids) for _, ids in others):,} clip(s) for {len(others):,} other reason(s)")
    lines.append(f"  every skipped clip, its file and why: \"failed\" in {Path(report.path) / MANIFEST}")
    return lines


def reason_kind(reason: str) -> str:
    """What a decoding failure is, without the file's own numbers: "truncated: the header says 5.00 s,
    ..." -> "truncated", "too short (0.50 s < 1 s)" -> "too short"."""
    return re.split(r" \(|:", reason, maxsplit=1)[0]
