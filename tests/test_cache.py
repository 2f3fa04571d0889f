"""The waveform cache: decoding, bad audio, atomic completion, resume after SIGKILL, torch views."""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from bench.core import framing
from bench.data.audio import BadAudio, decode_clip
from bench.data.cache import WaveformCache
from bench.data.index import Clip, DatasetIndex
from bench.data.views import ClipDataset, eval_segments, segment_mean

from .conftest import group_ends
from .data_fixtures import tone, write_mp3


def bad_audio_corpus(root):
    """(name, path, expected reason) for every kind of bad input the cache must survive."""
    root.mkdir(parents=True, exist_ok=True)
    good = write_mp3(root / "good.mp3", tone(3.0))
    (root / "zero.mp3").write_bytes(b"")
    truncated = good.read_bytes()[:300]
    (root / "truncated.mp3").write_bytes(truncated)
    (root / "random.mp3").write_bytes(np.random.default_rng(0).bytes(20000))
    write_mp3(root / "silence.mp3", np.zeros(3 * 16000, dtype=np.float32))
    write_mp3(root / "short.mp3", tone(0.3))
    sf.write(root / "nan.wav", np.full(16000 * 2, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    # integer-scaled samples in a float file: 16-bit values, under float16's largest (65504) but not audio
    sf.write(root / "loud.wav", 32767 * tone(2.0) / np.abs(tone(2.0)).max(), 16000, subtype="FLOAT")
    return [
        ("zero", root / "zero.mp3", "empty file (0 bytes)"),
        ("truncated", root / "truncated.mp3", None),  # undecodable or too short, depending on the cut
        ("random", root / "random.mp3", "undecodable"),
        ("silence", root / "silence.mp3", "silent"),
        ("short", root / "short.mp3", "too short"),
        ("missing", root / "missing.mp3", "missing file"),
        ("nan", root / "nan.wav", "non-finite samples"),
        ("loud", root / "loud.wav", "samples out of range (peak "),
    ]


def test_bad_audio_reasons(tmp_path):
    for name, path, reason in bad_audio_corpus(tmp_path):
        with pytest.raises(BadAudio) as info:
            decode_clip(str(path), (16000,), 2.0)
        if reason:
            assert str(info.value).startswith(reason), (name, str(info.value))
        else:
            assert str(info.value).startswith(("undecodable", "too short")), (name, str(info.value))


def test_a_file_just_under_a_second_is_not_said_to_last_one(tmp_path):
    """Rounded, 0.999 s read "too short (1.00 s < 1.0 s)"."""
    path = tmp_path / "almost.wav"
    sf.write(path, tone(0.999), 16000)
    with pytest.raises(BadAudio, match=r"^too short \(0\.99 s < 1\.0 s\)$"):
        decode_clip(str(path), (16000,), 2.0)


def test_a_file_whose_name_is_not_utf8_is_decoded(tmp_path):
    """Old Latin-1 rips keep Latin-1 names; Python hands them over with surrogate escapes, which
    soundfile would not encode ("surrogates not allowed")."""
    written = write_mp3(tmp_path / "cafe.mp3", tone(3.0))
    os.rename(written, os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp3"))
    path = tmp_path / os.fsdecode(b"caf\xe9.mp3")
    assert "\udce9" in str(path) and path.is_file()
    assert decode_clip(str(path), (16000,), 2.0).clips[16000].shape == (32000,)


def test_decode_centre_crop_resample_and_pad(tmp_path):
    sr = 16000
    t = np.arange(10 * sr) / sr
    ramp = (0.5 * np.sin(2 * np.pi * 300 * t) * (t / 10)).astype(np.float32)  # level rises with time
    stereo = np.stack([ramp, ramp], axis=1)
    sf.write(tmp_path / "long.wav", stereo, sr, subtype="FLOAT")
    out = decode_clip(str(tmp_path / "long.wav"), (12000, 16000), 4.0)
    assert not out.padded
    # centre 4 s of 10 s: samples 3 s .. 7 s at 16 kHz, downmixed (identical channels)
    np.testing.assert_allclose(out.clips[16000], ramp[3 * sr: 7 * sr], atol=1e-7)
    assert out.clips[12000].shape == (framing.clip_samples(4.0, 12000),)
    reference = soxr.resample(ramp[3 * sr: 7 * sr], sr, 12000, quality="HQ")
    np.testing.assert_allclose(out.clips[12000], reference[: 48000], atol=1e-6)
    short = decode_clip(str(write_mp3(tmp_path / "short.mp3", tone(2.0))), (16000,), 4.0)
    assert short.padded
    assert short.clips[16000].shape == (64000,)
    assert np.all(short.clips[16000][33000:] == 0)


def make_index(paths, splits=None):
    clips = tuple(
        Clip(clip_id=str(i), path=str(p), split=(splits[i] if splits else "train"), labels=(i % 2,))
        for i, p in enumerate(paths)
    )
    return DatasetIndex(name="t", root="/", tag_names=("a", "b"), clips=clips)


def test_a_dataset_in_a_folder_whose_name_is_not_utf8_has_a_cache_key(tmp_path):
    """A folder named in Latin-1 (b"caf\\xe9", read by Python as a lone surrogate) stopped `bench prepare`
    and `bench grid` in a UnicodeEncodeError: the key is taken of the name's bytes. A UTF-8 name's key is
    what it was (the same bytes)."""
    from bench.data.audio import MIN_SECONDS
    from bench.data.cache import cache_key
    from bench.data.cached_waveforms import CACHE_VERSION

    latin, utf8 = tmp_path / os.fsdecode(b"caf\xe9"), tmp_path / "café"
    for folder in (latin, utf8):
        folder.mkdir()
        (folder / "a.mp3").write_bytes(b"ID3")
    keys = {cache_key(make_index([folder / "a.mp3"]), 29.1) for folder in (latin, utf8)}
    assert len(keys) == 2
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, "t", 29.1, MIN_SECONDS]).encode())
    digest.update(f"\n0\t{utf8 / 'a.mp3'}".encode())
    assert f"t-{digest.hexdigest()[:12]}" in keys


def test_prepare_lists_skips_and_counts_bad_files(tmp_path):
    corpus = bad_audio_corpus(tmp_path / "audio")
    good = [write_mp3(tmp_path / "audio" / f"g{i}.mp3", tone(3.0, freq=200 + 50 * i, seed=i)) for i in range(3)]
    short_but_ok = write_mp3(tmp_path / "audio" / "one_second.mp3", tone(1.5))
    paths = good + [short_but_ok] + [p for _, p, _ in corpus]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.5)
    reports = cache.prepare([12000, 16000], workers=2)
    for r in reports:
        assert (r.ok, r.padded, len(r.failed)) == (4, 1, len(corpus))
        assert {f[0] for f in r.failed} == {str(i) for i in range(4, len(paths))}
        assert all(reason for _, _, reason in r.failed)
    opened = cache.open(16000)
    assert opened.waveforms.shape == (len(paths), 40000)
    assert list(opened.rows("train")) == [0, 1, 2, 3]  # failed clips are skipped by the views
    # A second run does nothing: nothing is rewritten.
    stamp = (cache.rate_dir(16000) / "waveforms.f16").stat().st_mtime_ns
    again = cache.prepare([12000, 16000])
    assert all(r.already_done for r in again)
    assert (cache.rate_dir(16000) / "waveforms.f16").stat().st_mtime_ns == stamp


def test_prepare_counts_the_clips_it_upsampled(tmp_path):
    """A manifest's own recordings may be 8 kHz: at a 16 kHz cache they are resampled up and their mel
    bands above 4 kHz hold nothing; the preparation counted them nowhere. Each file's rate is recorded
    per row, and the count and the lowest rate are in the manifest and the printed line."""
    audio = tmp_path / "audio"
    audio.mkdir()
    for name, rate in (("a", 8000), ("b", 16000), ("c", 22050), ("d", 8000)):
        sf.write(audio / f"{name}.wav", tone(3.0, sr=rate), rate)
    cache = WaveformCache(tmp_path / "cache", make_index(sorted(audio.glob("*.wav"))), clip_seconds=2.0)
    low, high = cache.prepare([12000, 16000], workers=1)
    assert (low.upsampled, low.lowest_source_rate) == (2, 8000)  # a, d
    assert (high.upsampled, high.lowest_source_rate) == (2, 8000)  # a, d; b is 16 kHz itself
    assert cache.manifest(16000)["upsampled"] == 2
    assert cache.prepare([16000])[0].upsampled == 2  # read back from the manifest of the complete cache
    # rows decoded by a version that recorded no rates: the count is not known, not a part of it
    (cache.rate_dir(22050) / "source_rates.npy").unlink(missing_ok=True)
    first = cache.prepare([22050])[0]
    assert (first.upsampled, first.lowest_source_rate) == (3, 8000)  # a, b, d
    (cache.rate_dir(22050) / "source_rates.npy").write_bytes(b"torn")
    (cache.rate_dir(22050) / "manifest.json").unlink()  # prepared again from its progress: rates unknown
    assert cache.prepare([22050])[0].upsampled is None


def test_a_bad_file_replaced_after_prepare_is_decoded_again_and_nothing_else(tmp_path, monkeypatch):
    """A user fixes a broken download and reruns: the file is decoded, not skipped for good; the rows
    that were fine, and the failures that did not change, stay as they were."""
    audio = tmp_path / "audio"
    paths = [write_mp3(audio / f"g{i}.mp3", tone(3.0, freq=200 + 50 * i, seed=i)) for i in range(3)]
    (audio / "broken.mp3").write_bytes(np.random.default_rng(0).bytes(20000))
    (audio / "still_broken.mp3").write_bytes(b"")
    paths += [audio / "broken.mp3", audio / "still_broken.mp3", audio / "not_yet_downloaded.mp3"]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.0)
    first = cache.prepare([12000, 16000], workers=1)
    assert [len(r.failed) for r in first] == [3, 3]
    before = np.array(cache.open(16000).waveforms[:3])
    stamp = {r: (cache.rate_dir(r) / "waveforms.f16").stat().st_mtime_ns for r in (12000, 16000)}
    assert cache.prepare([12000, 16000])[0].already_done  # nothing changed: nothing redone

    write_mp3(audio / "broken.mp3", tone(3.0, freq=700, seed=9))  # the fixed download
    write_mp3(audio / "not_yet_downloaded.mp3", tone(3.0, freq=900, seed=8))
    seen = []
    decode_rows = WaveformCache._decode_rows

    def watched(self, rows, *args):  # workers of a running grid must find the cache complete meanwhile
        seen.append((len(rows), self.is_complete(12000) and self.is_complete(16000)))
        return decode_rows(self, rows, *args)

    monkeypatch.setattr(WaveformCache, "_decode_rows", watched)
    again = cache.prepare([12000, 16000], workers=1)
    assert seen == [(2, True)]
    for report in again:
        assert not report.already_done and report.retried == 2
        assert [(f[0], f[2]) for f in report.failed] == [("4", "empty file (0 bytes)")]
        assert report.ok == 5
    opened = cache.open(16000)
    np.testing.assert_array_equal(opened.waveforms[:3], before)
    direct = decode_clip(str(audio / "broken.mp3"), (16000,), 2.0).clips[16000]
    np.testing.assert_allclose(np.asarray(opened.waveforms[3], np.float32), direct, atol=1e-3)
    assert list(opened.rows("train")) == [0, 1, 2, 3, 5]
    assert all((cache.rate_dir(r) / "waveforms.f16").stat().st_mtime_ns != stamp[r] for r in stamp)
    assert cache.prepare([12000, 16000])[0].already_done


def test_a_file_that_could_not_be_reached_is_decoded_once_it_can_be(tmp_path):
    """A folder moved away during prepare (an unmounted disk, a permission) and moved back keeps its
    files' old times: they were recorded "missing file" for good, though they were there again."""
    audio = tmp_path / "audio"
    paths = [write_mp3(audio / "a" / "g0.mp3", tone(3.0, freq=200, seed=0)),
             write_mp3(audio / "b" / "g1.mp3", tone(3.0, freq=300, seed=1))]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.0)
    (audio / "b").rename(tmp_path / "elsewhere")
    (first,) = cache.prepare([16000], workers=1)
    assert [(f[0], f[2]) for f in first.failed] == [("1", "missing file")]
    assert cache.prepare([16000])[0].already_done  # still away: nothing to redo
    (tmp_path / "elsewhere").rename(audio / "b")  # back, its file's times unchanged
    (again,) = cache.prepare([16000], workers=1)
    assert again.retried == 1 and not again.failed and again.ok == 2
    direct = decode_clip(str(paths[1]), (16000,), 2.0).clips[16000]
    np.testing.assert_allclose(np.asarray(cache.open(16000).waveforms[1], np.float32), direct, atol=1e-3)


def test_cached_waveforms_equal_direct_decoding(tmp_path):
    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(3.0, freq=300 + 100 * i, seed=i)) for i in range(3)]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.0)
    cache.prepare([12000], workers=1)
    opened = cache.open(12000)
    for i, path in enumerate(paths):
        direct = decode_clip(str(path), (12000,), 2.0).clips[12000]
        # float16 storage: relative precision 2^-11
        np.testing.assert_allclose(np.asarray(opened.waveforms[i], dtype=np.float32), direct, atol=4e-4)


def test_a_preparation_stopped_at_one_rate_resumed_with_two_decodes_the_rest_at_both(tmp_path, monkeypatch):
    """A row is done only where it is done at every rate of the pass: 16 kHz stopped after 3 of 6 files,
    then a spec needing 12 and 16 kHz gets all six clips at 12 kHz too."""
    from bench.data import cache as cache_module

    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(3.0, freq=200 + 50 * i, seed=i)) for i in range(6)]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.0)
    decode = cache_module.decode_in_processes

    def three_then_stop(fn, jobs, workers, **handing_out):
        for n, result in enumerate(decode(fn, jobs, workers, **handing_out)):
            if n == 3:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(cache_module, "SAVE_EVERY_SECONDS", -1.0)
    monkeypatch.setattr(cache_module, "decode_in_processes", three_then_stop)
    with pytest.raises(KeyboardInterrupt):
        cache.prepare([16000], workers=1)
    monkeypatch.setattr(cache_module, "decode_in_processes", decode)
    assert [(r.sample_rate, r.ok) for r in cache.prepare([12000, 16000], workers=1)] == [(12000, 6), (16000, 6)]
    opened = cache.open(12000)
    assert len(opened.rows("train")) == 6
    direct = decode_clip(str(paths[0]), (12000,), 2.0).clips[12000]
    np.testing.assert_allclose(np.asarray(opened.waveforms[0], np.float32), direct, atol=4e-4)


def test_a_fixed_file_copied_in_with_its_old_time_is_decoded_again(tmp_path):
    """A broken file replaced by a copy that keeps its old modification time (`cp -p`, `rsync -a`, `tar x`):
    moving it into place changes its inode change time, and the next preparation decodes it."""
    good = write_mp3(tmp_path / "good.mp3", tone(3.0, seed=0))
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 100)
    cache = WaveformCache(tmp_path / "cache", make_index([good, bad]), clip_seconds=2.0)
    (first,) = cache.prepare([16000], workers=1)
    assert [f[0] for f in first.failed] == ["1"]
    fixed = write_mp3(tmp_path / "download" / "bad.mp3", tone(3.0, freq=500, seed=1))
    month_ago = time.time() - 30 * 86400
    os.utime(fixed, (month_ago, month_ago))
    os.replace(fixed, bad)
    (again,) = cache.prepare([16000], workers=1)
    assert again.retried == 1 and not again.failed and again.ok == 2


def test_a_fixed_file_on_a_file_system_whose_clock_is_behind_the_caches_is_decoded_again(tmp_path):
    """The data and the cache may be on two file systems whose clocks differ (a dataset on an NFS server
    10 minutes behind the local disk the cache is on): a broken file fixed since carries times earlier
    than the manifest's, and was skipped for good. Its size and times are compared with what the manifest
    recorded of it instead; a failure left as it was is not decoded again."""
    good = write_mp3(tmp_path / "good.mp3", tone(3.0, seed=0))
    bad, empty = tmp_path / "bad.mp3", tmp_path / "empty.mp3"
    bad.write_bytes(b"not audio at all" * 100)
    empty.write_bytes(b"")
    cache = WaveformCache(tmp_path / "cache", make_index([good, bad, empty]), clip_seconds=2.0)
    (first,) = cache.prepare([16000], workers=1)
    assert [f[0] for f in first.failed] == ["1", "2"]
    manifest = cache.rate_dir(16000) / "manifest.json"
    ahead = time.time() + 600  # the cache's clock: 10 minutes ahead of the data's
    os.utime(manifest, (ahead, ahead))
    write_mp3(bad, tone(3.0, freq=500, seed=1))  # fixed now, by the data's clock
    (again,) = cache.prepare([16000], workers=1)
    assert again.retried == 1 and [f[0] for f in again.failed] == ["2"] and again.ok == 2


def test_a_failed_file_fixed_while_the_preparation_still_ran_is_decoded_again_by_the_next(tmp_path, monkeypatch):
    """The failed file's size and times are those it had when it was read, not when the manifest was
    written: a file fixed between the two (a long preparation, or one killed and resumed after the fix)
    had been recorded as fixed already, and was skipped for good."""
    from bench.data import cache as cache_module
    from tests.harness.hostile import decode_row_or_crash

    decode = cache_module.decode_in_processes
    good = write_mp3(tmp_path / "good.mp3", tone(3.0, seed=0))
    # a file that cannot be decoded, and one that kills its decoding process, which sends nothing back (it
    # had been stamped when the manifest was written, as the fixed file)
    for name, content, reason in (("bad", b"not audio at all", "undecodable"),
                                  ("crashing", b"CRASH", cache_module.DIED)):
        broken = tmp_path / f"{name}.mp3"
        broken.write_bytes(content * 100)
        cache = WaveformCache(tmp_path / f"cache-{name}", make_index([good, broken]), clip_seconds=2.0)

        def fixed_once_it_failed(fn, jobs, workers, broken=broken, **handing_out):
            for result in decode(fn, jobs, workers, **handing_out):
                if result[0] == 1:
                    write_mp3(tmp_path / "download.mp3", tone(3.0, freq=500, seed=1)).replace(broken)
                yield result

        with monkeypatch.context() as patched:
            patched.setattr(cache_module, "_decode_row", decode_row_or_crash)
            patched.setattr(cache_module, "decode_in_processes", fixed_once_it_failed)
            (first,) = cache.prepare([16000], workers=1)
        assert [f[0] for f in first.failed] == ["1"] and first.failed[0][2].startswith(reason)
        (again,) = cache.prepare([16000], workers=1)
        assert again.retried == 1 and not again.failed and again.ok == 2


def test_files_are_stamped_as_they_are_handed_out_not_all_before_the_first_is_decoded(tmp_path, monkeypatch):
    """A stat of every file before any decoding kept the decoding processes waiting: for a dataset of
    hundreds of thousands of files on a network disk, minutes. Each file is stamped as it is handed out,
    a few ahead of the processes (at most 4 per process in flight)."""
    from bench.data import cache as cache_module

    bad = []
    for i in range(24):
        bad.append(tmp_path / f"{i}.mp3")
        bad[-1].write_bytes(b"not audio at all" * 100)
    cache = WaveformCache(tmp_path / "cache", make_index(bad), clip_seconds=2.0)
    stamped, seen_at_first_result = [], []
    stamp_of, decode = cache_module._file_stamp_of, cache_module.decode_in_processes

    def counted(path):
        stamped.append(path)
        return stamp_of(path)

    def noting(fn, jobs, workers, **handing_out):
        for result in decode(fn, jobs, workers, **handing_out):
            seen_at_first_result.append(len(stamped))
            yield result

    monkeypatch.setattr(cache_module, "_file_stamp_of", counted)
    monkeypatch.setattr(cache_module, "decode_in_processes", noting)
    (report,) = cache.prepare([16000], workers=1)
    assert len(report.failed) == 24 and sorted(stamped) == sorted(map(str, bad))  # every failed file stamped once
    assert seen_at_first_result[0] <= 5
    stamps = json.loads((cache.rate_dir(16000) / "manifest.json").read_text())["failed_stats"]
    assert stamps["23"] == stamp_of(str(bad[23]))


def test_a_failure_saved_before_failures_were_stamped_is_looked_at_again(tmp_path):
    """Progress saved by a version that kept no stamps, its file fixed before the resume: the row is
    recorded with no stamp, so the next preparer looks at it again (it had been stamped as the fixed
    file when the manifest was written, and skipped for good)."""
    good = write_mp3(tmp_path / "good.mp3", tone(3.0, seed=0))
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 100)
    cache = WaveformCache(tmp_path / "cache", make_index([good, bad]), clip_seconds=2.0)
    cache.prepare([16000], workers=1)
    folder = cache.rate_dir(16000)
    (folder / "manifest.json").unlink()  # as if killed before it, by a version without failed_stats.json
    (folder / "failed_stats.json").unlink()
    write_mp3(tmp_path / "download.mp3", tone(3.0, freq=500, seed=1)).replace(bad)
    (resumed,) = cache.prepare([16000], workers=1)
    assert [f[0] for f in resumed.failed] == ["1"]  # resumed: its row was done (failed) already
    (again,) = cache.prepare([16000], workers=1)
    assert again.retried == 1 and not again.failed and again.ok == 2


def test_what_a_decoding_process_sends_back_fits_one_write_to_a_pipe(tmp_path):
    """A decoding process killed while it sends a result back (the out-of-memory killer) leaves what it
    wrote in the pool's pipe; a result of megabytes, cut so, had left the pool's reader waiting for the
    rest, and the preparation hung with nothing printed, Ctrl-C included. The decoded clips go into the
    waveform files from the process itself, and what it sends fits in PIPE_BUF bytes, which the OS
    writes to a pipe whole or not at all."""
    import pickle
    import select

    from bench.data import cache as cache_module

    path = write_mp3(tmp_path / "song.mp3", tone(31.0, seed=0))
    cache = WaveformCache(tmp_path / "cache", make_index([path]), clip_seconds=29.1)
    partial = {rate: cache_module._PartialRate(cache.rate_dir(rate), 1, framing.clip_samples(29.1, rate))
               for rate in (12000, 16000)}
    targets = {rate: part.target for rate, part in partial.items()}
    for job in ((0, str(path), (12000, 16000), 29.1, targets), (0, str(tmp_path / "missing.mp3"), (16000,), 29.1,
                                                                  targets)):
        result = cache_module._decode_row(job)
        assert len(pickle.dumps(result)) < select.PIPE_BUF, result[:3]
    written = np.fromfile(targets[16000][0], dtype=np.float16)
    np.testing.assert_array_equal(written, decode_clip(str(path), (16000,), 29.1).clips[16000].astype(np.float16))


def test_specs_cutting_the_same_tracks_to_other_lengths_get_their_own_waveforms(tmp_path):
    """dataset.clip_seconds 2 and 3 over the same files: the 3 s spec's rows hold 3 s (48,000 samples at
    16 kHz), not the 2 s spec's rows."""
    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(4.0, seed=i)) for i in range(2)]
    WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.0).prepare([16000], workers=1)
    three = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=3.0)
    three.prepare([16000], workers=1)
    assert three.open(16000).waveforms.shape == (2, 48_000)


def test_a_generated_dataset_replaced_while_its_cache_is_prepared_leaves_none_of_its_rows(tmp_path, monkeypatch):
    """`bench synth --seed 1` (or a grid of another seed) over a dataset whose cache was being prepared:
    the preparer decoded the new files (the same names) and marked them complete under the old dataset's
    key, so the old dataset's runs trained on the new one's audio for good."""
    import dataclasses

    from bench.core.errors import UserError
    from bench.data.cache import generated_parameters

    data = tmp_path / "data"
    paths = [write_mp3(data / f"{i}.mp3", tone(2.0, seed=i)) for i in range(3)]
    (data / "synthetic.json").write_text('{"seed": 0}')
    index = dataclasses.replace(make_index(paths), root=str(data))
    clean = WaveformCache(tmp_path / "clean", index, clip_seconds=1.0)
    clean.prepare([16000], workers=1)
    real_decode = WaveformCache._decode_rows

    def replaced_meanwhile(self, *args):
        for i, path in enumerate(paths):
            write_mp3(path, tone(2.0, seed=10 + i))
        (data / "synthetic.json").write_text('{"seed": 1}')
        return real_decode(self, *args)

    monkeypatch.setattr(WaveformCache, "_decode_rows", replaced_meanwhile)
    cache = WaveformCache(tmp_path / "cache", index, clip_seconds=1.0)
    assert cache.dir.name == clean.dir.name
    with pytest.raises(UserError, match=f"^the generated dataset at {data} was replaced while its waveform cache"):
        cache.prepare([16000], workers=1)
    assert not cache.is_complete(16000) and not (cache.rate_dir(16000) / "progress.npy").exists()
    monkeypatch.undo()  # the first dataset back (a grid of its spec generates it again): every row decoded again
    for i, path in enumerate(paths):
        write_mp3(path, tone(2.0, seed=i))
    (data / "synthetic.json").write_text('{"seed": 0}')
    again = WaveformCache(tmp_path / "cache", index, clip_seconds=1.0)
    assert again.dir == cache.dir and generated_parameters(index) == b'{"seed": 0}'
    (report,) = again.prepare([16000], workers=1)
    assert not report.already_done and report.ok == 3
    np.testing.assert_array_equal(again.open(16000).waveforms[:], clean.open(16000).waveforms[:])


def test_a_pool_that_cannot_start_its_thread_under_a_process_limit_stops_the_preparation(tmp_path, monkeypatch):
    """Under a container's pids limit the decoding pool's management thread died starting the thread that
    feeds its processes ("can't start new thread"), and bench prepare and bench grid waited for its
    results for good. The wait now ends in OSError EAGAIN: the CLI's "too many processes" line."""
    import threading

    from bench.core import interrupts

    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(2.0, seed=i)) for i in range(3)]
    real_start = threading.Thread.start

    def limited(thread):
        if thread.name == "QueueFeederThread":
            raise RuntimeError("can't start new thread")
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", limited)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the dying thread's own report
    monkeypatch.setattr(interrupts, "POOL_CHECK_SECONDS", 0.2)
    with pytest.raises(OSError) as stopped:
        WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=1.0).prepare([16000], workers=2)
    assert stopped.value.errno == errno.EAGAIN


def test_a_full_dev_shm_is_named_in_the_line_not_the_disk(tmp_path, monkeypatch):
    """A container's full /dev/shm (Docker's 64 MB), where a pool's semaphores are made: the OSError names
    no file, and bench prepare and bench grid said "cannot write No space left on device; free some space"
    of no place, which the disk holding --results and --cache is not."""
    import multiprocessing.synchronize

    from bench.cli import resource_message

    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(2.0, seed=i)) for i in range(3)]

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(multiprocessing.synchronize.SemLock, "__init__", full)
    with pytest.raises(OSError) as stopped:
        WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=1.0).prepare([16000], workers=2)
    assert resource_message(stopped.value, "prepare").startswith("cannot write /dev/shm: No space left on device; "
                                                                 "free some space")


def test_a_dataset_moved_elsewhere_gets_a_cache_of_its_own_and_a_link_to_it_the_same(tmp_path):
    """docs/datasets.md: the key holds each file's resolved path. The same files in another folder are a
    new cache (the old one is not read for them), while a symbolic link to the folder is read as the
    files it points to."""
    first = tmp_path / "disk1" / "mtat"
    paths = [write_mp3(first / f"{i}.mp3", tone(2.0, seed=i)) for i in range(2)]
    cached = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=1.0)
    linked = tmp_path / "link"
    linked.symlink_to(first)
    via_link = WaveformCache(tmp_path / "cache", make_index([linked / p.name for p in paths]), clip_seconds=1.0)
    moved = tmp_path / "disk2" / "mtat"
    moved.parent.mkdir()
    first.rename(moved)
    elsewhere = WaveformCache(tmp_path / "cache", make_index([moved / p.name for p in paths]), clip_seconds=1.0)
    assert via_link.dir == cached.dir and elsewhere.dir != cached.dir


def test_an_interrupted_preparation_resumes_on_a_disk_its_allocated_file_fills(tmp_path, monkeypatch):
    """The waveform file of an interrupted preparation is already allocated in full: the space check
    counts it as held, and a disk with no room for a second copy still resumes it."""
    import shutil

    from bench.data import cache as cache_module

    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(3.0, seed=i)) for i in range(4)]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.5)
    cache.prepare([16000], workers=1)
    (cache.rate_dir(16000) / "manifest.json").unlink()  # killed before its manifest and progress were saved
    (cache.rate_dir(16000) / "progress.npy").unlink()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    (report,) = cache.prepare([16000], workers=1)
    assert report.ok == 4

KILLABLE = """
import sys, time
import bench.data.audio as audio, bench.data.cache as cache
cache.SAVE_EVERY_SECONDS = 0.0
real = audio.decode_clip
def slow(*a, **k):
    time.sleep(0.05)
    return real(*a, **k)
cache.decode_clip = slow
from tests.test_cache import corpus_index
index = corpus_index(sys.argv[1])
cache.WaveformCache(sys.argv[2], index, clip_seconds=2.0).prepare([16000], workers=1)
"""


def corpus_index(folder):
    from pathlib import Path

    return make_index(sorted(Path(folder).glob("*.mp3")))


def test_a_cache_the_disk_cannot_hold_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    """MSD at 12 and 16 kHz is 394 GB of float16. The 12 kHz file used to be allocated (169 GB held) before
    the 16 kHz one failed for want of space; now the whole need is checked first, in one line."""
    import shutil

    from bench.core.errors import UserError
    from bench.data import cache as cache_module

    paths = [write_mp3(tmp_path / "audio" / f"g{i}.mp3", tone(3.0, seed=i)) for i in range(4)]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.5)
    # 4 clips x (30,000 + 40,000 samples) x 2 bytes = 560,000 bytes
    assert cache.rate_bytes(12000) + cache.rate_bytes(16000) == 560_000
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage._replace(free=500_000))
    with pytest.raises(UserError, match=r"needs 0\.00056 GB more .*\(12000 Hz 0\.00024 GB, 16000 Hz 0\.00032 GB; "
                                         r"float16, 4 clips\) and 0\.0005 GB are free"):
        cache.prepare([12000, 16000], workers=1)
    assert not list((tmp_path / "cache").rglob("waveforms.f16"))
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage._replace(free=560_000))
    assert all(r.ok == 4 for r in cache.prepare([12000, 16000], workers=1))


def test_a_centre_crop_decodes_without_the_decoders_resync_messages(tiny_synthetic, tmp_path, capfd):
    """A 1 s crop from the middle of 3 s MP3s seeks into the stream, and mpg123 writes "error:
    part2_3_length ... too large" to stderr for the frame it lands on (the bit reservoir of the frames
    before it was skipped) while the clip decodes fine: 44 such lines for 96 good clips, in a log that
    then reads as if something failed. The decoding processes keep them off stderr."""
    paths = sorted(tiny_synthetic.rglob("*.mp3"))[:8]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=1.0)
    (report,) = cache.prepare([16000], workers=1)
    assert report.ok == 8
    assert "part2_3_length" not in capfd.readouterr().err


def test_a_second_preparer_says_it_waits_for_the_first(tmp_path):
    """Two grids on one cache take turns: the second used to wait in silence (at MSD scale, for the whole
    preparation). It says so, then finds the work its lock's holder left."""
    paths = [write_mp3(tmp_path / "audio" / "g.mp3", tone(3.0))]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.5)
    cache.dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, time; "
                               f"fd = os.open({str(cache.dir / 'prepare.lock')!r}, os.O_RDWR | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        said = []
        # the holder lets go when the second preparer has said that it waits: no race with a clock
        reports = cache.prepare([16000], workers=1, log=lambda line: (said.append(line), holder.kill()))
    finally:
        holder.kill()
        holder.wait()
    assert len(said) == 1 and said[0].startswith("waiting for another process preparing this waveform cache")
    assert reports[0].ok == 1


def test_a_file_whose_decoding_process_dies_is_skipped_and_the_rest_decoded(tmp_path):
    """A decoder crash on one broken file among thousands (or the out-of-memory killer) kills its worker
    process. multiprocessing.Pool never noticed: the preparation waited forever, holding the cache's lock.
    Now the files that were in flight are retried one by one, alone: the one that dies alone twice is failed
    with the reason, one that died with its neighbour is decoded, and every other file is decoded."""
    from bench.data.cache import DIED, FAILED, OK, decode_in_processes
    from tests.harness.hostile import decode_or_die

    names = [f"{i}.mp3" for i in range(40)]
    names[7], names[23] = "7.crashes", "23.dies-once"
    jobs = [(i, str(tmp_path / name)) for i, name in enumerate(names)]
    results = {row: (status, reason) for row, status, reason, _ in decode_in_processes(decode_or_die, jobs, 2)}
    assert sorted(results) == list(range(40))
    assert results[7] == (FAILED, DIED)
    assert all(status == OK for row, (status, _) in results.items() if row != 7)  # 23 too, on its retry
    assert (tmp_path / "23.dies-once.died").exists()


def test_a_pool_found_broken_when_a_file_is_handed_to_it_hands_that_file_to_a_fresh_pool(tmp_path, monkeypatch):
    """A process can die between the wait for a finished file and the handing-out of the next: the pool
    then refuses the file (BrokenProcessPool from `submit`), which stopped the whole preparation (seen
    under load). The file never reached the pool: it goes to the next pool, with the rest, once each."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from bench.data import cache
    from tests.harness.hostile import decode_or_die

    handed = []

    class BreaksOnce(ProcessPoolExecutor):
        def submit(self, fn, job):
            handed.append(job[0])
            if len(handed) in (7, 8):  # the 7th: in flight beside others; the 8th: the next pool's first
                raise BrokenProcessPool("A child process terminated abruptly, the process pool is not usable anymore")
            return super().submit(fn, job)

    monkeypatch.setattr(cache, "ProcessPoolExecutor", BreaksOnce)
    jobs = [(i, str(tmp_path / f"{i}.mp3")) for i in range(12)]
    rows = [row for row, *_ in cache.decode_in_processes(decode_or_die, jobs, 1)]
    assert sorted(rows) == list(range(12))
    assert handed.count(6) == 3 and handed.count(7) == 1  # refused twice, then decoded


def test_a_file_still_queued_when_the_pool_broke_is_failed_only_if_it_dies_twice_alone(tmp_path):
    """One decoding process: it dies on file 0 while file 1 waits in the pool's queue, never started. File
    1's first death then comes alone (the out-of-memory killer, say): that is no proof against it, so it
    is tried alone once more and decoded. File 0 dies alone twice more and is failed."""
    from bench.data.cache import DIED, FAILED, OK, decode_in_processes
    from tests.harness.hostile import decode_or_die

    names = ["0.crashes", "1.dies-once", "2.mp3", "3.mp3"]
    jobs = [(i, str(tmp_path / name)) for i, name in enumerate(names)]
    results = {row: (status, reason) for row, status, reason, _ in decode_in_processes(decode_or_die, jobs, 1)}
    assert results == {0: (FAILED, DIED), 1: (OK, ""), 2: (OK, ""), 3: (OK, "")}
    assert (tmp_path / "1.dies-once.died").exists()


def test_prepare_resumes_after_sigkill(tmp_path):
    audio = tmp_path / "audio"
    for i in range(40):
        write_mp3(audio / f"{i:02d}.mp3", tone(2.0, freq=150 + 20 * i, seed=i))
    killed_root = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(audio), str(killed_root)],
                            cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()}, start_new_session=True)
    cache = WaveformCache(killed_root, corpus_index(audio), clip_seconds=2.0)
    progress = cache.rate_dir(16000) / "progress.npy"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if progress.exists() and np.load(progress).astype(bool).sum() >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # its decoding process ends with it (it waited for work forever: it holds both ends of the pool's queue)
    assert group_ends(proc.pid, seconds=10), "a decoding process outlived its killed preparer"
    assert not cache.is_complete(16000), "a killed prepare must not look complete"
    done_before = int(np.load(progress).astype(bool).sum())
    assert 5 <= done_before < 40
    report = cache.prepare([16000], workers=1)[0]
    assert report.ok == 40 and not report.failed
    clean = WaveformCache(tmp_path / "clean", corpus_index(audio), clip_seconds=2.0)
    clean.prepare([16000], workers=2)
    np.testing.assert_array_equal(cache.open(16000).waveforms, clean.open(16000).waveforms)
    manifest = json.loads((cache.rate_dir(16000) / "manifest.json").read_text())
    assert manifest["dtype"] == "float16" and manifest["n_clips"] == 40


def test_specs_that_label_the_same_clips_differently_share_waveforms_but_not_labels(tmp_path):
    """Two grids on one cache, e.g. MTAT's top 50 and top 20 tags: the same clips, other targets. Each
    worker must train on its own spec's labels, whichever spec prepared last."""
    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(3.0, seed=i)) for i in range(3)]
    three = make_index(paths)  # tags a, b
    two = DatasetIndex(name=three.name, root=three.root, tag_names=("a",),
                       clips=tuple(Clip(c.clip_id, c.path, c.split, (0,)) for c in three.clips))
    first = WaveformCache(tmp_path / "cache", three, clip_seconds=2.0)
    second = WaveformCache(tmp_path / "cache", two, clip_seconds=2.0)
    first.prepare([16000], workers=1)
    assert second.dir == first.dir  # one copy of the waveforms
    assert second.prepare([16000], workers=1)[0].already_done  # decoded once
    reopened = WaveformCache.from_index(first.index_path)
    assert reopened.index.tag_names == three.tag_names
    assert [c.labels for c in reopened.index.clips] == [c.labels for c in three.clips]
    assert WaveformCache.from_index(second.index_path).index.tag_names == ("a",)


def test_views(tmp_path):
    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(3.0, seed=i)) for i in range(4)]
    index = make_index(paths, splits=["train", "train", "valid", "test"])
    cache = WaveformCache(tmp_path / "cache", index, clip_seconds=2.0)
    cache.prepare([16000], workers=1)
    train = ClipDataset(cache.open(16000), "train")
    assert len(train) == 2
    wave, target = train[1]
    assert wave.shape == (32000,) and wave.dtype == torch.float16  # as cached; cast on the device
    assert target.tolist() == [0.0, 1.0]  # clip 1 carries tag index 1

    mel = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(2, 3, 10)
    segments, n = eval_segments(mel, 4)
    assert n == 2 and segments.shape == (4, 3, 4)
    torch.testing.assert_close(segments[1], mel[0, :, 4:8])  # clip 0, segment 1
    torch.testing.assert_close(segments[2], mel[1, :, 0:4])  # clip 1, segment 0
    scores = torch.tensor([[0.0], [1.0], [2.0], [4.0]])
    assert segment_mean(scores, 2).tolist() == [[0.5], [3.0]]
    short, n_short = eval_segments(mel[:, :, :3], 4)
    assert n_short == 1 and short.shape == (2, 3, 4)
    assert short[0, 0, 3] == mel[0, :, :3].min()  # padded with the clip's floor, not zeros
    # every band with the clip's floor (a dB clip's silence), not its own minimum: bands whose minima differ
    quiet_low = torch.tensor([[[-100.0, -90.0], [-30.0, -20.0]], [[5.0, 6.0], [1.0, 2.0]]])
    padded, _ = eval_segments(quiet_low, 3)
    assert padded[:, :, 2].tolist() == [[-100.0, -100.0], [1.0, 1.0]]


def test_a_preparation_killed_before_its_failure_reasons_were_saved_decodes_those_files_again(tmp_path, monkeypatch):
    """Rows and the reasons of failed rows are two files. A kill while saving them must never leave a
    failed row without its reason (the grid would print "unknown" for it, and never decode it again):
    the reasons are saved first, and a failed row found without one is decoded again."""
    from bench.data import cache as cache_module

    paths = [write_mp3(tmp_path / "audio" / "g.mp3", tone(3.0)), tmp_path / "audio" / "missing.mp3"]
    cache = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.5)
    folder = cache.rate_dir(16000)
    original = cache_module.atomic_write_json

    def killed_after_the_reasons(path, data):
        written = original(path, data)
        if path.name == "failures.json":
            raise KeyboardInterrupt  # SIGKILL before anything else is written
        return written

    monkeypatch.setattr(cache_module, "atomic_write_json", killed_after_the_reasons)
    with pytest.raises(KeyboardInterrupt):
        cache.prepare([16000], workers=1)
    monkeypatch.setattr(cache_module, "atomic_write_json", original)
    assert json.loads((folder / "failures.json").read_text()) == {"1": "missing file"}
    assert not (folder / "progress.npy").exists()  # the rows are recorded after their reasons, not before
    (report,) = cache.prepare([16000], workers=1)
    assert [(row, reason) for row, _, reason in report.failed] == [("1", "missing file")]
    # a cache an older version left with a failed row and no reason decodes the row again
    for name in ("manifest.json", "failures.json"):
        (folder / name).unlink()
    (report,) = cache.prepare([16000], workers=1)
    assert [(row, reason) for row, _, reason in report.failed] == [("1", "missing file")]


def test_a_stopped_preparation_ends_its_decoding_processes(tmp_path):
    """Ctrl-C, or an error while writing a result, stops the loop over the decoded files: the processes
    still decoding are ended then (a hung read on a stalled network disk would otherwise keep the
    interpreter from exiting), not left to finish every file they were given."""
    import multiprocessing

    from bench.data.cache import decode_in_processes
    from tests.harness.hostile import decode_or_die

    jobs = [(i, str(tmp_path / f"{i}.slow")) for i in range(8)]
    before = set(multiprocessing.active_children())  # another test's children are not this one's
    results = decode_in_processes(decode_or_die, jobs, 2)
    next(results)
    results.close()
    deadline = time.monotonic() + 2  # each slow file takes 5 s
    while set(multiprocessing.active_children()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(multiprocessing.active_children()) - before == set()


def test_a_synthetic_dataset_regenerated_with_another_seed_is_not_read_from_the_old_waveforms(tmp_path, capsys):
    # The spec's seed changes: the grid regenerates every MP3 under the same names in the same folder.
    # The cache of the old seed must not serve the new labels.
    from bench.data.audio import decode_clip
    from bench.run.prepare import prepare_spec
    from bench.spec import load_spec

    def spec(seed):
        path = tmp_path / f"s{seed}.toml"
        path.write_text(f'name = "s{seed}"\nseeds = 1\n[dataset]\nname = "synthetic"\npath = "{tmp_path / "data"}"\n'
                        f'clips = 32\nclip_seconds = 1.5\nseed = {seed}\n[arch.vgg]\nwidth = 0.0625\n'
                        f'[[grid]]\narch = ["vgg"]\nsample_rate = [16000]\nn_mels = [32]\nhop_multiplier = [1]\n'
                        f'log = ["log"]\n')
        return load_spec(path)

    prepare_spec(spec(0), None, str(tmp_path / "cache"), workers=1, progress=False)
    generated = f"generated the synthetic dataset in {tmp_path / 'data'}: 32 clips of 1.5 s, "
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(generated + "seed 0, in ") and first.endswith(" s")  # no bar in a log: this line
    index, cache, reports = prepare_spec(spec(1), None, str(tmp_path / "cache"), workers=1, progress=False)
    assert not reports[0].already_done
    replaced = capsys.readouterr().out.splitlines()[0]  # the user's data, replaced: said so
    assert replaced.startswith(generated + "seed 1, in ")
    assert replaced.endswith(" s, replacing the one made with seed 0")
    prepare_spec(spec(1), None, str(tmp_path / "cache"), workers=1, progress=False)
    assert "generated" not in capsys.readouterr().out  # there already: nothing generated, nothing said
    next((tmp_path / "data").rglob("*.mp3")).unlink()  # an interrupted or damaged one, same parameters
    prepare_spec(spec(1), None, str(tmp_path / "cache"), workers=1, progress=False)
    assert capsys.readouterr().out.splitlines()[0].endswith(" s, completing an unfinished one")
    cached = cache.open(16000)
    for row, clip in enumerate(index.clips[:4]):
        now = decode_clip(clip.path, (16000,), 1.5).clips[16000]
        np.testing.assert_allclose(cached.waveforms[row].astype(np.float32), now, atol=1e-3)


def test_a_spec_with_two_sample_rates_is_prepared_at_both(tmp_path):
    """One cache of waveforms per sample rate the spec's grid trains at: its 16 kHz runs find theirs too."""
    from bench.run.prepare import prepare_spec
    from bench.spec import load_spec

    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\nseeds = 1\n[dataset]\nname = "synthetic"\npath = "{tmp_path / "data"}"\n'
                    'clips = 32\nclip_seconds = 1.5\n[arch.vgg]\nwidth = 0.0625\n[[grid]]\narch = ["vgg"]\n'
                    'sample_rate = [12000, 16000]\nn_mels = [32]\nhop_multiplier = [1]\nlog = ["log"]\n')
    _, cache, _ = prepare_spec(load_spec(path), None, str(tmp_path / "cache"), workers=1, progress=False)
    for rate in (12000, 16000):
        assert cache.is_complete(rate), rate
        assert cache.open(rate).waveforms.shape[1] == round(1.5 * rate)


def test_the_cache_file_is_reserved_without_glibcs_byte_per_block_emulation(tmp_path, monkeypatch):
    """glibc's posix_fallocate writes a byte into every 4 KiB block where the file system cannot reserve
    blocks (NFS v3): hours for a paper-scale cache on a cluster's shared disk. On Linux the cache calls
    fallocate(2), which says so instead, and then makes a sparse file."""
    from bench.data import cache as cache_module

    if sys.platform.startswith("linux"):
        monkeypatch.setattr(os, "posix_fallocate", lambda *a: pytest.fail("glibc's emulating posix_fallocate"))
    size = 64 * 2**20
    cache_module._allocate(tmp_path / "reserved", size)
    reserved = os.stat(tmp_path / "reserved")
    assert reserved.st_size == size and reserved.st_blocks * 512 >= size  # blocks held now: ENOSPC here, not later

    def cannot(fd, size):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(cache_module, "reserve_blocks", cannot)
    cache_module._allocate(tmp_path / "sparse", size)
    sparse = os.stat(tmp_path / "sparse")
    assert sparse.st_size == size and sparse.st_blocks * 512 < size // 16


def test_on_macos_the_cache_files_blocks_are_written(tmp_path, monkeypatch):
    """macOS has neither fallocate(2) nor posix_fallocate: the file was left sparse, and a disk that
    filled up during the preparation was met as a SIGBUS writing into the memory map."""
    from bench.data import cache as cache_module

    monkeypatch.setattr(cache_module.sys, "platform", "darwin")
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    size = 40 * 2**20 + 5  # more than one chunk of zeros, and not a multiple of it
    cache_module._allocate(tmp_path / "written", size)
    written = os.stat(tmp_path / "written")
    assert written.st_size == size and written.st_blocks * 512 >= size
    assert (tmp_path / "written").read_bytes() == bytes(size)


@pytest.mark.parametrize("peak_dbfs, silent", [(-80.0, False), (-110.0, True)])
def test_a_quiet_recording_is_kept_and_only_one_below_minus_100_dbfs_is_silent(tmp_path, peak_dbfs, silent):
    """A fade or a quiet classical passage at -80 dBFS is music; below -100 dBFS nothing is heard."""
    path = tmp_path / "quiet.wav"
    wave = tone(3.0)
    sf.write(path, (10 ** (peak_dbfs / 20) * wave / np.abs(wave).max()).astype(np.float32), 16000, subtype="FLOAT")
    if silent:
        with pytest.raises(BadAudio, match="^silent$"):
            decode_clip(str(path), (16000,), 2.0)
    else:
        clip = decode_clip(str(path), (16000,), 2.0).clips[16000]
        assert 20 * np.log10(np.abs(clip).max()) == pytest.approx(peak_dbfs, abs=1.0)


DECODER_DIGESTS = {3: "eda811101040b3b2"}
"""CACHE_VERSION -> the first 16 hex digits of bench/data/audio.py's SHA-256 it holds for (recorded again where a
change to the file left what a clip holds as it was)."""


def test_the_decoding_rules_are_those_the_cache_version_names():
    """Eight changes to what a clip holds (files cut short skipped, not padded; float files peaking over 16
    refused; a few ms of WAV header overstatement and MP3s followed by junk decoded) kept the version of
    2: their caches' folder names were the same, and a cache of the old rules was reused, "already
    prepared", its padded and out-of-range clips trained on. A change to bench/data/audio.py asks for a
    decision: raise CACHE_VERSION where it changes which files give a clip or what the clip holds, and
    record the file's new digest for the version either way."""
    import hashlib

    from bench.data import audio
    from bench.data.cached_waveforms import CACHE_VERSION

    digest = hashlib.sha256(open(audio.__file__, "rb").read()).hexdigest()[:16]
    assert DECODER_DIGESTS.get(CACHE_VERSION) == digest, (
        f"bench/data/audio.py ({digest}) is not the decoder CACHE_VERSION {CACHE_VERSION} was recorded for: "
        "raise CACHE_VERSION if what a clip holds changed, and record the digest in DECODER_DIGESTS")



def test_this_datasets_caches_of_an_earlier_version_are_named_when_a_new_one_is_prepared(tmp_path, monkeypatch,
                                                                                         capsys):
    """The version is inside a cache folder's hashed name: after a version change nothing told the old
    cache (42 GB for MTAT at two rates) from the new one, which `bench prepare` made beside it unsaid."""
    from bench.data import cache as cache_module
    from bench.data import cached_waveforms

    paths = [write_mp3(tmp_path / f"{i}.mp3", tone(3.0, seed=i)) for i in range(2)]
    for module in (cache_module, cached_waveforms):
        monkeypatch.setattr(module, "CACHE_VERSION", cached_waveforms.CACHE_VERSION - 1)
    old = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.0)
    old.prepare([16000], workers=1)
    monkeypatch.undo()
    new = WaveformCache(tmp_path / "cache", make_index(paths), clip_seconds=2.0)
    assert new.dir != old.dir
    (found,) = new.earlier_versions()
    assert found[0] == old.dir and found[1] >= 2 * 32000 * 2  # its two clips of 2 s at 16 kHz, float16
    new.prepare([16000], workers=1)
    assert new.earlier_versions() == [found]  # the new one is not among them


def test_an_index_is_written_as_dataclasses_asdict_wrote_it():
    """The index file's name is the digest of its JSON: written without asdict's deep copies (seconds at a
    grid start for MSD), it must stay the same text, or every prepared cache's index would be written
    again under another name."""
    import dataclasses

    from bench.data.cache import index_file_name, index_from_json, index_to_json
    from bench.data.index import Clip, DatasetIndex

    index = DatasetIndex("msd", "/data/msd", ("rock", "pop, folk"),
                         (Clip("TRA", "/data/msd/A/a.mp3", "train", (0, 1)), Clip("TRB", "/data/b.mp3", "test", ())),
                         (("TRC", "audio file missing"),))
    # as written before an index had notes (a reader's remarks, no part of the labelling)
    written = {key: value for key, value in dataclasses.asdict(index).items() if key != "notes"}
    assert json.dumps(index_to_json(index)) == json.dumps(written)  # keys in the same order
    assert index_file_name(index) == "index-" + hashlib.sha256(
        json.dumps(written, sort_keys=True).encode()).hexdigest()[:12] + ".json"
    assert index_from_json(json.loads(json.dumps(index_to_json(index)))) == index
    assert index_file_name(dataclasses.replace(index, notes=("2 tag(s) of the manifest not in m.tags.txt",))) == \
        index_file_name(index)


def test_paths_are_resolved_as_realpath_resolves_them(tmp_path, monkeypatch):
    """The cache's key holds each clip's resolved path, now resolved a folder at a time: the same paths
    as os.path.realpath's, through linked folders and files, dangling and missing ones, relative ones."""
    from bench.data.cache import resolved_paths

    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "a.mp3").write_bytes(b"x")
    (tmp_path / "other.mp3").write_bytes(b"y")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "b.mp3").symlink_to(tmp_path / "other.mp3")
    (tmp_path / "real" / "c.mp3").symlink_to(tmp_path / "nowhere.mp3")
    (tmp_path / "real" / "up").symlink_to("..")
    monkeypatch.chdir(tmp_path / "real")
    paths = [str(tmp_path / "real" / "a.mp3"), str(tmp_path / "linked" / "a.mp3"), str(tmp_path / "linked" / "b.mp3"),
             str(tmp_path / "linked" / "c.mp3"), str(tmp_path / "linked" / "missing.mp3"), "a.mp3", "sub/../a.mp3",
             "up/other.mp3", str(tmp_path / "linked" / "up"), str(tmp_path / "linked" / "sub" / ".."), "up", ".",
             str(tmp_path / "linked") + "/"]
    assert list(resolved_paths(paths)) == [os.path.realpath(path) for path in paths]
