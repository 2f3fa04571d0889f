"""Read a spec's dataset (generating the synthetic one if absent) and fill its waveform caches."""

from __future__ import annotations

from functools import partial

from bench.core.progress import progress_bar


def prepare_spec(spec, data: str | None, cache: str | None, workers: int | None = None, progress: bool = True):
    """Read the spec's dataset (generating the synthetic one if absent) and fill its caches.
    `progress`: bars on a terminal (never in a log)."""
    from bench.data.cache import WaveformCache
    from bench.data.datasets import cache_root, dataset_root, load_index

    root = dataset_root(spec.dataset, data, spec.path)
    index = load_index(spec.dataset, root, progress=progress, log=print)
    counts = index.counts()
    print(f"{spec.dataset.name} at {root}: {len(index.clips)} clips (train {counts['train']}, "
          f"valid {counts['valid']}, test {counts['test']}), {len(index.tag_names)} tags; "
          f"{index.excluded_summary()}")
    waveforms = WaveformCache(cache_root(cache), index, spec.dataset.clip_seconds)
    rates = sorted({c.mel.sample_rate for c in spec.configurations()})
    todo = [r for r in rates if not waveforms.is_complete(r)]
    if todo:  # its size before any work (the disk is checked too)
        print(f"waveform cache to prepare: {sum(map(waveforms.rate_bytes, todo)) / 1e9:.3g} GB "
              f"({', '.join(f'{r} Hz' for r in todo)}, float16) in {waveforms.dir}")
    reports = waveforms.prepare(rates, workers=workers, progress=partial(progress_bar, enabled=progress), log=print)
    for r in reports:
        state = "already prepared" if r.already_done else f"prepared in {r.seconds:.1f} s"
        if r.retried:
            state += f" ({r.retried} file(s) that had failed changed or became readable since, decoded again)"
        up = (f", {r.upsampled} upsampled from as low as {r.lowest_source_rate:,} Hz: none of their audio above "
              f"{r.lowest_source_rate / 2:,.0f} Hz" if r.upsampled else "")
        print(f"{r.sample_rate} Hz: {r.ok} clips ok ({r.padded} zero-padded{up}), {len(r.failed)} failed; "
              f"{state}: {r.path}")
    for clip_id, path, reason in reports[0].failed if reports else []:
        print(f"  skipped {clip_id}: {path}: {reason}")
    return index, waveforms, reports
