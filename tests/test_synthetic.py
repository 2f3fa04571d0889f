"""The synthetic MTAT-format dataset: layout, determinism, resumability, and tags that are audible.

Audio checks decode the MP3 files with soundfile and measure them with librosa (independent of the
generator's code): RMS level, onset counts, band energy above 6 kHz, spectral centroid, a mel-spectrum
peak-pair detector and an inter-onset-interval detector. The last two are run at a fine and at the
coarse extreme of the paper's grid (128 vs 8 mel bands; hop 256 vs 2560) to show that the frequency
and time tags need the resolution they were designed for (docs/synthetic.md).
"""

from __future__ import annotations

import csv
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import find_peaks
from sklearn.metrics import roc_auc_score

from bench.data import synthetic
from bench.data.mtat import read_mtat
from bench.data.synthetic import files as synthetic_files

librosa = pytest.importorskip("librosa")

SR = 16000
CLIPS = 48
SECONDS = 6.0
DOCUMENTED_TAGS = {  # docs/synthetic.md's table, in the annotation file's column order: tag -> share of clips
    "guitar": 0.40, "piano": 0.25, "strings": 0.30, "drums": 0.50, "synth": 0.20, "voice": 0.08, "slow": 0.30,
    "fast": 0.25, "low": 0.22, "high": 0.22, "loud": 0.25, "quiet": 0.18, "air": 0.22, "semitone": 0.35,
    "vibrato": 0.35, "ticks": 0.40, "tremolo": 0.30}
"""low and high: a share of the clips with a pitched instrument."""
N_FFT = 512


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "seed0"
    return synthetic.generate(out, clips=CLIPS, seed=0, clip_seconds=SECONDS, workers=2, progress=False)


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t", quotechar='"'))


@pytest.fixture(scope="module")
def clips(dataset):
    """(tag matrix as {name: bool array}, list of decoded float32 clips), in annotation order."""
    rows = read_rows(dataset.annotations)
    header = rows[0]
    audio = [sf.read(dataset.out_dir / row[-1], dtype="float32")[0] for row in rows[1:]]
    tags = {name: np.array([row[j] == "1" for row in rows[1:]]) for j, name in enumerate(header[:-1]) if j > 0}
    return tags, audio


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------

def test_layout_is_mtat(dataset):
    root = dataset.out_dir
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == list("0123456789abcdef")
    text = dataset.annotations.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == CLIPS + 1
    for line in lines:  # every field double-quoted, tab-separated, as in MTAT's file
        assert all(re.fullmatch(r'"[^"\t]*"', field) for field in line.split("\t")), line
    rows = read_rows(dataset.annotations)
    header = rows[0]
    assert header[0] == "clip_id" and header[-1] == "mp3_path"
    assert header[1:-1] == list(DOCUMENTED_TAGS)
    ids = [int(row[0]) for row in rows[1:]]
    assert len(set(ids)) == CLIPS
    expected = round(SECONDS * SR)
    for row in rows[1:]:
        assert len(row) == len(header)
        assert set(row[1:-1]) <= {"0", "1"}
        folder, name = row[-1].split("/")
        assert folder in "0123456789abcdef" and re.fullmatch(r"synthetic-artist_\d\d-track_\d{4}-\d+-\d+\.mp3", name)
        info = sf.info(root / row[-1])
        assert info.format == "MP3" and info.samplerate == SR and info.channels == 1
        assert abs(info.frames - expected) <= 0.005 * SR, (row[-1], info.frames, expected)
    # the summary agrees with the file
    matrix = np.array([[int(v) for v in row[1:-1]] for row in rows[1:]])
    assert dataset.tag_counts == dict(zip(header[1:-1], matrix.sum(axis=0).tolist(), strict=True))
    assert sum(dataset.folder_counts.values()) == CLIPS
    assert all(count == CLIPS // 16 for count in dataset.folder_counts.values())
    assert not dataset.reused


def test_the_mtat_reader_reads_it(dataset):
    index = read_mtat(dataset.out_dir, n_tags=50, broken_ids=frozenset(), published_order=False)
    assert len(index.clips) == CLIPS and not index.excluded
    assert set(index.tag_names) == set(DOCUMENTED_TAGS)
    # 3 clips per folder, read as MTAT's folders are: 0-b train, c valid, d-f test
    assert index.counts() == {"train": 36, "valid": 3, "test": 9}


def test_decoded_audio_is_safe_and_exact(clips):
    _, audio = clips
    for y in audio:
        assert len(y) == round(SECONDS * SR)
        assert np.max(np.abs(y)) < 0.99  # -1 dBFS before encoding leaves room for the decoder's overshoot
        assert np.sqrt(np.mean(y**2)) > 10 ** (-40 / 20)


def test_tag_design_is_complete():
    assert {t.name: t.share for t in synthetic.TAGS} == DOCUMENTED_TAGS  # what docs/synthetic.md tells users
    assert {t.axis for t in synthetic.TAGS} == {"none", "frequency", "time", "sample rate"}
    assert sum(t.axis == "frequency" for t in synthetic.TAGS) >= 2
    assert sum(t.axis == "time" for t in synthetic.TAGS) >= 2
    for t in synthetic.TAGS:
        assert 0.05 <= t.share <= 0.5, t
        assert t.audible and t.band
        assert bool(t.decoy) == (t.axis != "none"), t


def test_plan_600_is_stratified_and_independent():
    """The demo's 600 clips: every tag has positives and negatives in valid and test, shares as designed,
    and no tag is a function of another (all four combinations occur, except within a group)."""
    plans = synthetic.plan_clips(600, seed=0)
    assert [p.folder for p in plans[:17]] == list("0123456789abcdef0")
    split = {f: "train" for f in "0123456789ab"} | {"c": "valid"} | {f: "test" for f in "def"}
    pitched = np.array([bool(p.tags & synthetic.PITCHED) for p in plans])
    for tag in synthetic.TAGS:
        has = np.array([tag.name in p.tags for p in plans])
        among = pitched if tag.group == "register" else np.ones_like(pitched)  # a register needs instruments
        assert abs(has[among].mean() - DOCUMENTED_TAGS[tag.name]) <= 0.01, tag.name
        assert not has[~among].any()
        for name, minimum in (("valid", 2), ("test", 8)):
            in_split = np.array([split[p.folder] == name for p in plans])
            assert has[in_split].sum() >= minimum and (~has[in_split]).sum() >= minimum, (tag.name, name)
    for a in synthetic.TAGS:
        for b in synthetic.TAGS:
            if a.name >= b.name:
                continue
            pairs = {(a.name in p.tags, b.name in p.tags) for p in plans}
            if a.group and a.group == b.group:
                assert (True, True) not in pairs
            else:
                assert len(pairs) == 4, (a.name, b.name)
    decoy = np.array([p.air_decoy for p in plans])
    air = np.array(["air" in p.tags for p in plans])
    assert 0.35 < decoy[air].mean() < 0.55 and 0.35 < decoy[~air].mean() < 0.55


# ------------------------------------------------------------------------------------------------
# Determinism, interruption, reuse
# ------------------------------------------------------------------------------------------------

def test_same_seed_same_bytes_whatever_the_workers_another_seed_differs(tmp_path):
    kwargs = dict(clips=16, clip_seconds=2.0, progress=False)
    a = synthetic.generate(tmp_path / "a", seed=0, workers=2, **kwargs)
    b = synthetic.generate(tmp_path / "b", seed=0, workers=1, **kwargs)
    c = synthetic.generate(tmp_path / "c", seed=1, workers=2, **kwargs)
    assert file_bytes(a.out_dir) == file_bytes(b.out_dir)
    assert len(file_bytes(a.out_dir)) == 16 + 2  # MP3s, annotations, synthetic.json (the lock file is removed)
    assert a.annotations.read_bytes() != c.annotations.read_bytes()
    assert all(pa.read_bytes() != pc.read_bytes() for pa, pc in zip(a.mp3_paths, c.mp3_paths, strict=True))


def test_interrupted_generation_is_redone(tmp_path):
    out = tmp_path / "d"
    kwargs = dict(clips=8, seed=3, clip_seconds=2.0, workers=1, progress=False)
    first = synthetic.generate(out, **kwargs)
    reference = file_bytes(out)
    assert synthetic.is_complete(out, 8, 3, 2.0, SR)
    # a run killed before its last step: no annotations, a temp file, a half-written MP3
    first.annotations.unlink()
    stray = out / "5" / f".{first.mp3_paths[5].name}.k3j_9x.tmp"  # bench.core.store's temp-file naming
    stray.write_bytes(b"partial")
    first.mp3_paths[2].write_bytes(b"truncated")
    assert not synthetic.is_complete(out, 8, 3, 2.0, SR)
    second = synthetic.generate(out, **kwargs)
    assert not second.reused
    assert not stray.exists()
    assert file_bytes(out) == reference
    # other parameters are not mistaken for these
    assert not synthetic.is_complete(out, 8, 4, 2.0, SR)
    assert not synthetic.is_complete(out, 9, 3, 2.0, SR)
    assert not synthetic.is_complete(out, 8, 3, 3.0, SR)


def test_a_regeneration_stopped_midway_is_complete_for_neither_seed(tmp_path, monkeypatch):
    """Another seed rewrites the clips under the same names: stopped after 3 of 8, the folder holds
    clips of both seeds, and must pass as neither dataset (the old done-markers go first)."""
    from bench.data.synthetic import files

    out = tmp_path / "d"
    kwargs = dict(clips=8, clip_seconds=2.0, workers=1, progress=False)
    synthetic.generate(out, seed=0, **kwargs)
    real, rendered = files._render_clip, []

    def stopped_after_3(job):
        if len(rendered) == 3:
            raise KeyboardInterrupt
        rendered.append(job)
        return real(job)

    monkeypatch.setattr(files, "_render_clip", stopped_after_3)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, seed=1, **kwargs)
    assert len(rendered) == 3
    assert not synthetic.is_complete(out, 8, 0, 2.0, SR)
    assert not synthetic.is_complete(out, 8, 1, 2.0, SR)


def test_rendering_stopped_early_ends_its_processes_at_once(tmp_path, monkeypatch):
    """Ctrl-C while the clips rendered (`bench synth`, or `bench grid` generating the demo data) sometimes
    printed "interrupted" and never exited: the pool was shut down waiting for processes its stop signals
    never reached. Stopped early, the pool's processes are terminated, not waited for, and its thread
    prints nothing (Python 3.11's printed an InvalidStateError for futures `Executor.map` had cancelled)."""
    import threading

    from bench.data.synthetic.plan import plan_clips

    pools, printed = [], []
    real = synthetic_files.ProcessPoolExecutor

    def recorded(*args, **kwargs):
        pools.append(real(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(synthetic_files, "ProcessPoolExecutor", recorded)
    monkeypatch.setattr(threading, "excepthook", printed.append)
    for folder in synthetic_files.FOLDERS:
        (tmp_path / folder).mkdir()
    jobs = [(plan, 0, 2.0, 8000, str(tmp_path)) for plan in plan_clips(40, 0)]
    rendering = synthetic_files._run(jobs, 2)
    next(rendering)
    processes, manager = list(pools[0]._processes.values()), pools[0]._executor_manager_thread
    rendering.close()  # what Ctrl-C in the loop over it does
    manager.join(30)  # the pool's thread reaps its processes (a join here too would race it for their status)
    assert not manager.is_alive() and printed == []
    assert [process.exitcode for process in processes] == [-15, -15]  # SIGTERM: not left to finish their clips


def test_complete_dataset_is_reused_untouched(dataset, monkeypatch):
    paths = [dataset.annotations, dataset.meta, *dataset.mp3_paths]
    before = {p: p.stat().st_mtime_ns for p in paths}

    def render(*args, **kwargs):
        raise AssertionError("a complete dataset was rendered again")

    monkeypatch.setattr(synthetic_files, "_render_clip", render)
    monkeypatch.setattr(synthetic_files, "encode_mp3", render)
    again = synthetic.generate(dataset.out_dir, clips=CLIPS, seed=0, clip_seconds=SECONDS, workers=1,
                               progress=False)
    assert again.reused and again.tag_counts == dataset.tag_counts
    assert {p: p.stat().st_mtime_ns for p in paths} == before


def test_other_parameters_replace_the_dataset(tmp_path):
    out = tmp_path / "d"
    synthetic.generate(out, clips=8, seed=0, clip_seconds=2.0, workers=1, progress=False)
    other = synthetic.generate(out, clips=4, seed=1, clip_seconds=2.0, workers=1, progress=False)
    assert not other.reused and len(read_rows(other.annotations)) == 5
    mp3s = sorted(str(p.relative_to(out)) for p in out.rglob("*.mp3"))
    assert mp3s == sorted(str(p.relative_to(out)) for p in other.mp3_paths)  # stale clips removed


def test_concurrent_calls_generate_once(tmp_path):
    """Grid workers starting together: one generates, the other waits on the lock and reuses it."""
    out = tmp_path / "d"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: synthetic.generate(out, clips=8, seed=0, clip_seconds=2.0, workers=1,
                                                             progress=False), range(2)))
    assert sorted(r.reused for r in results) == [False, True]
    assert synthetic.is_complete(out, 8, 0, 2.0, SR)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sample_rate"):
        synthetic.generate(tmp_path, clips=2, sample_rate=12000, progress=False)
    with pytest.raises(ValueError, match="clips"):
        synthetic.generate(tmp_path, clips=0, progress=False)


# ------------------------------------------------------------------------------------------------
# Tags are audible: simple measurements on the decoded audio
# ------------------------------------------------------------------------------------------------

def mel_power(y: np.ndarray, n_mels: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa's Slaney mel (the paper's front end: n_fft 512) and the centre frequency of each band."""
    m = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=hop, n_mels=n_mels, pad_mode="constant")
    return m, librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=SR / 2)[1:-1]


def auc(positive: np.ndarray, score) -> float:
    return float(roc_auc_score(positive, np.asarray(score, dtype=float)))


def onset_times(y: np.ndarray, hop: int = 256, lo: float = 0.0, hi: float = SR / 2) -> np.ndarray:
    """librosa's onset detector on the log-mel flux of the bands between lo and hi Hz."""
    m, freqs = mel_power(y, 128, hop)
    log_mel = librosa.power_to_db(m[(freqs >= lo) & (freqs <= hi)])
    envelope = librosa.onset.onset_strength(S=log_mel, sr=SR, hop_length=hop)
    return librosa.onset.onset_detect(onset_envelope=envelope, sr=SR, hop_length=hop, units="time")


def test_loud_clips_are_louder_than_quiet_ones(clips):
    tags, audio = clips
    rms_db = np.array([20 * np.log10(np.sqrt(np.mean(y**2))) for y in audio])
    normal = ~tags["loud"] & ~tags["quiet"]
    assert rms_db[tags["loud"]].min() > rms_db[normal].max() > rms_db[normal].min() > rms_db[tags["quiet"]].max()
    assert rms_db[tags["loud"]].mean() - rms_db[tags["quiet"]].mean() > 12
    # docs/synthetic.md's levels: quiet -34..-30 and normal -24..-21 dBFS RMS (MP3 coding moves them by
    # hundredths of a dB; a normal clip's peak stays under the -1 dBFS limit, which binds on loud ones only)
    assert -34.5 < rms_db[tags["quiet"]].min() and rms_db[tags["quiet"]].max() < -29.5
    assert -24.5 < rms_db[normal].min() and rms_db[normal].max() < -20.5


def test_fast_clips_have_more_onsets_than_slow_ones(clips):
    tags, audio = clips
    rate = np.array([len(onset_times(y)) / SECONDS for y in audio])
    fast, slow = rate[tags["fast"]], rate[tags["slow"]]
    assert np.median(fast) > 1.5 * np.median(slow)
    assert auc(tags["fast"][tags["fast"] | tags["slow"]], rate[tags["fast"] | tags["slow"]]) > 0.9


def test_air_clips_have_energy_above_6khz(clips):
    """Median over frames of the share of energy in 6.2-7.3 kHz (hi-hats are brief, the air band steady)."""
    tags, audio = clips
    share = []
    for y in audio:
        m, freqs = mel_power(y, 128, 256)
        share.append(np.median(m[(freqs > 6200) & (freqs < 7300)].sum(axis=0) / (m.sum(axis=0) + 1e-12)))
    assert auc(tags["air"], share) > 0.95


def test_high_register_clips_sound_higher_than_low_ones(clips):
    """Median spectral centroid below 1.5 kHz (above it sit the fixed-range dyad, clicks and air)."""
    tags, audio = clips
    centroid = []
    for y in audio:
        m, freqs = mel_power(y, 128, 256)
        band = freqs < 1500
        centroid.append(np.median((freqs[band, None] * m[band]).sum(axis=0) / (m[band].sum(axis=0) + 1e-12)))
    centroid = np.array(centroid)
    either = tags["high"] | tags["low"]
    assert np.median(centroid[tags["high"]]) > 1.5 * np.median(centroid[tags["low"]])
    assert auc(tags["high"][either], centroid[either]) > 0.9


def close_peak_share(y: np.ndarray, n_mels: int) -> float:
    """Share of frames whose two strongest mel-spectrum peaks in 2.9-4.8 kHz lie < 1.5 semitones apart.

    A peak is a band louder than both neighbours; with 8 bands there are about three bands in that
    range, so two peaks can rarely be found and never a semitone apart.
    """
    m, freqs = mel_power(y, n_mels, 256)
    band = (freqs > 2900) & (freqs < 4800)
    spectrum, f = m[band], freqs[band]
    close = 0
    for frame in spectrum.T:
        peaks = [i for i in range(1, len(frame) - 1) if frame[i] > frame[i - 1] and frame[i] >= frame[i + 1]]
        if len(peaks) >= 2:
            a, b = sorted(peaks, key=lambda i: -frame[i])[:2]
            close += abs(12 * np.log2(f[a] / f[b])) < 1.5
    return close / spectrum.shape[1]


def test_semitone_needs_many_mel_bands(clips):
    tags, audio = clips
    fine = auc(tags["semitone"], [close_peak_share(y, 128) for y in audio])
    coarse = auc(tags["semitone"], [close_peak_share(y, 8) for y in audio])
    assert fine > 0.9
    assert coarse < 0.65 and fine - coarse > 0.3


def short_gap_share(y: np.ndarray, hop: int) -> float:
    """Share of gaps between envelope peaks (2-5 kHz, the clicks' band) shorter than 3/4 of their median.

    The envelope is the median over mel bands of the log-mel flux (a click lifts every band at once,
    a tone only one or two); peaks are local maxima above mean + std / 2. Even clicks give almost no
    short gaps; click pairs alternate a 55-70 ms gap with a long one, so about half.
    """
    m, freqs = mel_power(y, 128, hop)
    log_mel = librosa.power_to_db(m[(freqs >= 1500) & (freqs <= 5500)])
    envelope = librosa.onset.onset_strength(S=log_mel, sr=SR, hop_length=hop, aggregate=np.median)
    peaks, _ = find_peaks(envelope, height=envelope.mean() + 0.5 * envelope.std())
    gaps = np.diff(peaks)
    return float(np.mean(gaps < 0.75 * np.median(gaps))) if len(gaps) > 2 else 0.0


def test_ticks_need_a_short_hop(clips):
    tags, audio = clips
    fine = auc(~tags["ticks"], [short_gap_share(y, 256) for y in audio])
    coarse = auc(~tags["ticks"], [short_gap_share(y, 2560) for y in audio])
    assert fine > 0.85
    assert coarse < 0.7 and fine - coarse > 0.25


def fast_pulsing(y: np.ndarray) -> float:
    """Power of the pad band's (140-320 Hz) log envelope modulated at 6.5-10.5 Hz over that at 0.2-3 Hz
    (hop 256: 62.5 frames a second)."""
    m, freqs = mel_power(y, 128, 256)
    envelope = np.log(m[(freqs > 140) & (freqs < 320)].sum(axis=0) + 1e-12)
    spectrum = np.abs(np.fft.rfft((envelope - envelope.mean()) * np.hanning(len(envelope)))) ** 2
    rates = np.fft.rfftfreq(len(envelope), 256 / SR)
    return spectrum[(rates > 6.5) & (rates < 10.5)].sum() / (spectrum[(rates > 0.2) & (rates < 3.0)].sum() + 1e-12)


def test_tremolo_clips_pulse_several_times_a_beat(clips):
    """`tremolo`: the organ pad pulses at 6.8-10.2 Hz; its decoy swells at 0.23-2.9 Hz, the same depth."""
    tags, audio = clips
    assert auc(tags["tremolo"], [fast_pulsing(y) for y in audio]) > 0.9


def whistle_peak_ratio(y: np.ndarray) -> float:
    """Frequency ratio of the two strongest peaks of the clip's mean spectrum in 1.4-3 kHz (the whistle's
    range; n_fft 8192, 2 Hz bins), the second within 10 % of the first; 1 where there is none."""
    frames = np.lib.stride_tricks.sliding_window_view(y, 8192)[::1024] * np.hanning(8192)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(8192, 1 / SR)
    band = (freqs > 1400) & (freqs < 3000)
    spectrum, f = power[band], freqs[band]
    top = int(np.argmax(spectrum))
    near = [i for i in range(1, len(spectrum) - 1) if spectrum[i] > spectrum[i - 1] and spectrum[i] >= spectrum[i + 1]
            and abs(i - top) > 1 and abs(np.log(f[i] / f[top])) < np.log(1.1)]
    return max(f[top], f[b]) / min(f[top], f[b]) if (b := max(near, key=lambda i: spectrum[i], default=None)) else 1.0


def test_vibrato_clips_glide_where_their_decoy_steps_between_two_pitches(clips):
    """`vibrato`: a whistle swinging +-15-30 cents, whose mean spectrum peaks near the ends of its swing, at
    most 3.5 % apart; the decoy warbles between two steady pitches 6 % apart, its two peaks."""
    tags, audio = clips
    ratios = np.array([whistle_peak_ratio(y) for y in audio])
    assert auc(~tags["vibrato"], -np.abs(np.log(ratios / 1.06))) > 0.85
    # the swing itself: peaks 0.5-3.5 % apart (a steady whistle gives none, or its window's sidelobes)
    assert np.mean((ratios[tags["vibrato"]] > 1.005) & (ratios[tags["vibrato"]] < 1.035)) > 0.85

def test_a_real_dataset_is_never_overwritten(tmp_path):
    """A synthetic spec pointed at a real MTAT folder (`--data /data/mtat`) would have replaced its
    annotations_final.csv and mixed synthetic clips into its folders: it is refused, nothing touched."""
    from bench.core.errors import UserError

    mtat = tmp_path / "mtat"
    (mtat / "f").mkdir(parents=True)
    (mtat / "annotations_final.csv").write_text("clip_id\tguitar\tmp3_path\n2\t1\tf/x.mp3\n")
    (mtat / "f" / "american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3").write_bytes(b"ID3")
    before = {p: p.read_bytes() for p in mtat.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=r"holds files `bench synth` did not write \(annotations_final.csv, f/"):
        synthetic.generate(mtat, clips=4, seed=0, clip_seconds=2.0, workers=1, progress=False)
    assert {p: p.read_bytes() for p in mtat.rglob("*") if p.is_file()} == before
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    with pytest.raises(UserError, match="Documents/"):
        synthetic.generate(home, clips=4, seed=0, clip_seconds=2.0, workers=1, progress=False)


def test_a_file_it_did_not_write_is_found_behind_a_hundred_of_its_own(tmp_path):
    """A folder 0-f of a large dataset holds over 100 of its MP3s: the look for files it did not write
    went through the first 100 names only, and generated beside a note filed after them."""
    from bench.core.errors import UserError

    out = tmp_path / "d"
    (out / "0").mkdir(parents=True)
    for k in range(120):
        (out / "0" / f"synthetic-artist_00-track_{k:04d}-0-29.mp3").write_bytes(b"ID3")
    (out / "0" / "zz_notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"did not write \(0/zz_notes.txt"):
        synthetic.generate(out, clips=4, seed=0, clip_seconds=2.0, workers=1, progress=False)
    assert (out / "0" / "zz_notes.txt").read_text() == "mine"


def test_a_replaced_dataset_takes_its_task_files_with_it(tmp_path):
    """hiss.csv labels the clips of the dataset it was written for: after a regeneration with other
    parameters most of its paths would not exist."""
    from bench.data.synthetic.tasks import write_task

    out = tmp_path / "d"
    synthetic.generate(out, clips=8, seed=0, clip_seconds=2.0, workers=1, progress=False)
    task = write_task(out, "hiss")
    synthetic.generate(out, clips=8, seed=0, clip_seconds=2.0, workers=1, progress=False)  # reused: kept
    assert task.exists()
    synthetic.generate(out, clips=4, seed=1, clip_seconds=2.0, workers=1, progress=False)
    assert not task.exists()


def test_a_task_file_is_written_only_for_the_dataset_its_bench_synth_generated(tmp_path, capsys, monkeypatch):
    """Two `bench synth` into one folder: the first's --task file was written after the second had
    replaced its dataset, labelling clips of another seed (both exit 0), where transfer would have read
    it. It is written under the generator's lock, for the dataset the command generated, or refused."""
    from bench.cli import main
    from bench.core.errors import UserError
    from bench.data.synthetic import tasks

    out = tmp_path / "d"
    write_task = tasks.write_task

    def replaced_first(out_dir, task, clips=None, seed=None):  # the other `bench synth` gets the lock first
        synthetic.generate(out, clips=6, seed=1, clip_seconds=2.0, workers=1, progress=False)
        return write_task(out_dir, task, clips, seed)

    monkeypatch.setattr(tasks, "write_task", replaced_first)
    assert main(["synth", "--out", str(out), "--clips", "8", "--seconds", "2", "--seed", "2", "--task", "mode"]) == 2
    assert capsys.readouterr().err.startswith(f"bench synth: error: {out}: another `bench synth` replaced the "
                                              "dataset meanwhile (6 clips, seed 1, where this one generated 8 clips, "
                                              "seed 2)")
    assert not (out / "mode.csv").exists()
    with pytest.raises(UserError, match="not a complete synthetic dataset"):
        write_task(tmp_path / "nothing-here", "mode")
    # the other `bench synth` still writing (its synthetic.json not there yet): not "run `bench synth` first",
    # which this command just did
    (out / "synthetic.json").unlink()
    with pytest.raises(UserError, match=f"^{out}: another `bench synth` is replacing the dataset meanwhile \\(this "
                                        "one generated 8 clips, seed 2\\); no mode.csv written for it$"):
        write_task(out, "mode", 8, 2)


def test_bench_synth_says_what_it_generated_and_what_it_replaced(tmp_path, capsys):
    """`bench synth --out DIR` on a folder of another dataset (the demo's data/synthetic, 400 clips) makes
    it anew: the line says so, as `bench grid` does, and a second call says nothing was generated."""
    from bench.cli import main

    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--clips", "32", "--seconds", "1.5"]) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith(f"generated the synthetic dataset in {out}: 32 clips of 1.5 s, seed 0, in ")
    assert main(["synth", "--out", str(out), "--clips", "33", "--seconds", "1.5"]) == 0
    assert capsys.readouterr().out.strip().endswith(" s, replacing the one made with clips 32")
    assert main(["synth", "--out", str(out), "--clips", "33", "--seconds", "1.5"]) == 0
    assert capsys.readouterr().out.strip() == (f"the synthetic dataset in {out} is complete already (33 clips of "
                                               "1.5 s, seed 0): nothing generated")
    # --task: the downstream task's manifest beside the clips, one row per clip (`bench transfer` reads it)
    assert main(["synth", "--out", str(out), "--clips", "33", "--seconds", "1.5", "--task", "hiss"]) == 0
    rows = list(csv.reader((out / "hiss.csv").open(newline="")))
    assert rows[0] == ["path", "label"] and len(rows) == 34
    assert {label for _, label in rows[1:]} == {"hiss", "none"}
    assert all((out / path).is_file() for path, _ in rows[1:])
