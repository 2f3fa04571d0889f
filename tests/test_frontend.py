"""MelFrontend against the paper's frame counts and librosa's mel spectrogram."""

import librosa
import numpy as np
import pytest
import torch

from bench.core import framing
from bench.train.frontend import MelFrontend

from .test_framing import PAPER_FRAMES


def music_like(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A deterministic test signal: a chord with vibrato, a bright partial, a decaying click train, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(framing.clip_samples(seconds, sr)) / sr
    chord = sum(0.15 * np.sin(2 * np.pi * f * t + 0.8 * np.sin(2 * np.pi * 5 * t)) for f in (220, 277, 330))
    bright = 0.05 * np.sin(2 * np.pi * 0.45 * sr * t)  # near Nyquist, whatever the rate
    clicks = 0.3 * np.exp(-((t * 8) % 1.0) * 60)
    return chord + bright + clicks * rng.standard_normal(t.size) + 0.01 * rng.standard_normal(t.size)


@pytest.mark.parametrize("sample_rate", [12000, 16000])
def test_frame_counts_of_a_29_1_s_clip(sample_rate):
    x = torch.zeros(1, framing.clip_samples(29.1, sample_rate))
    for m, expected in PAPER_FRAMES[sample_rate].items():
        out = MelFrontend(sample_rate, 8, m, "log")(x)
        assert out.shape == (1, 8, expected)


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")  # 128 bands at 44.1 kHz
@pytest.mark.filterwarnings("ignore:Empty filters detected in mel frequency basis")  # librosa's words for it
@pytest.mark.parametrize("sample_rate", [11025, 12000, 16000, 22050, 44100, 8001])
@pytest.mark.parametrize("n_mels", [128, 96, 16])
def test_the_mel_filters_are_librosas_at_every_rate(sample_rate, n_mels):
    """torchaudio's own filterbank puts the bins at linspace(0, sample_rate // 2): at an odd rate half a
    hertz low over the whole range, 0.4 % off librosa's filters at 11,025 Hz (0.84 dB in a band)."""
    from bench.train.frontend import mel_filterbank

    ref = librosa.filters.mel(sr=sample_rate, n_fft=512, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2, htk=False,
                              norm="slaney", dtype=np.float64).T
    ours = MelFrontend(sample_rate, n_mels, 1, "log").mel.mel_scale.fb.numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * ref.max())  # float32: measured <= 7.5e-6
    assert np.array_equal(ours, mel_filterbank(sample_rate, n_mels).numpy())


@pytest.mark.parametrize("sample_rate", [12000, 16000])
@pytest.mark.parametrize("n_mels", [128, 96, 48, 8])
@pytest.mark.parametrize("log", ["log", "dB"])
def test_parity_with_librosa(sample_rate, n_mels, log):
    """librosa (float64) on the same zero-padded signal is the reference.

    Tolerances: our front end runs in float32. Its power values agree with float64 librosa to
    a few 1e-6 of the spectrogram's maximum (measured: <= 2.7e-6 here, up to 6.5e-6 on other audio, most
    of it from torchaudio's float32 mel filters), so we allow
    1e-5. That absolute error is a larger relative error in weak bins, which `dB` magnifies: within
    60 dB of the maximum we allow 5e-3 dB (0.1 % in power; measured <= 8e-4), and 0.05 dB in the
    weakest bins (measured <= 0.01 dB, 70+ dB down). `log` compresses weak bins towards 0, so one
    absolute 5e-4 covers it (measured <= 6e-5). All far below any difference a network could use.
    """
    x = music_like(5.0, sample_rate)
    padded = np.pad(x, (0, framing.padded_samples(x.size) - x.size))
    for m in (1, 3, 10):
        ref_power = librosa.feature.melspectrogram(
            y=padded, sr=sample_rate, n_fft=512, hop_length=256 * m, n_mels=n_mels, power=2.0,
            center=True, pad_mode="constant", htk=False, norm="slaney", fmin=0.0, fmax=sample_rate / 2,
        )
        if log == "log":
            ref = np.log10(1 + 10000 * ref_power)
            atol = 5e-4
        else:
            ref = 10 * np.log10(np.maximum(ref_power, 1e-10))
            atol = 5e-2
        front = MelFrontend(sample_rate, n_mels, m, log)
        power = front.mel(torch.tensor(padded, dtype=torch.float32)[None])[0].numpy()
        np.testing.assert_allclose(power, ref_power, rtol=0, atol=1e-5 * ref_power.max())
        out = front(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=0, atol=atol)
        if log == "dB":
            strong = ref > ref.max() - 60
            np.testing.assert_allclose(out[strong], ref[strong], rtol=0, atol=5e-3)


def test_log_compression_formulas():
    front_log = MelFrontend(16000, 8, 1, "log")
    front_db = MelFrontend(16000, 8, 1, "dB")
    from bench.train.frontend import log_compress

    x = torch.tensor([0.0, 1e-12, 1e-4, 1.0, 10.0])
    # log10(1 + 10000 x): 0, ~4.3e-9, log10(2), log10(10001), log10(100001)
    expected_log = torch.tensor(
        [0.0, 1e-8 / np.log(10), np.log10(2.0), np.log10(10001.0), np.log10(100001.0)], dtype=torch.float32
    )
    torch.testing.assert_close(log_compress(x, "log"), expected_log, rtol=1e-6, atol=1e-8)
    # 10 log10(max(x, 1e-10)): the floor gives -100 dB for 0 and 1e-12.
    expected_db = torch.tensor([-100.0, -100.0, -40.0, 0.0, 10.0])
    torch.testing.assert_close(log_compress(x, "dB"), expected_db)
    assert front_log.config.log == "log" and front_db.config.log == "dB"
    with pytest.raises(ValueError, match="unknown log type"):
        MelFrontend(16000, 8, 1, "ln")


def test_batched_output_equals_per_clip_output():
    clips = np.stack([music_like(3.0, 12000, seed=s) for s in range(4)]).astype(np.float32)
    front = MelFrontend(12000, 48, 2, "dB")
    batched = front(torch.from_numpy(clips))
    for i in range(len(clips)):
        single = front(torch.from_numpy(clips[i : i + 1]))
        torch.testing.assert_close(batched[i : i + 1], single, rtol=0, atol=1e-4)


def test_float32_under_autocast():
    x = torch.tensor(music_like(1.0, 16000), dtype=torch.float32)[None]
    front = MelFrontend(16000, 96, 1, "log")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = front(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, front(x))


@pytest.mark.parametrize("hop_multiplier", [1, 3, 10])
def test_segment_frames_equal_librosa_frames_of_the_whole_clip(hop_multiplier):
    """MusiCNN's training segments are computed alone (`frames`): frames s..s+n-1 of librosa's mel of
    the whole zero-padded clip, wherever the segment starts (first frame, middle, last frame)."""
    sr, n_mels, n = 16000, 48, 20
    x = music_like(4.0, sr, seed=3)
    padded = np.pad(x, (0, framing.padded_samples(x.size) - x.size))
    ref = np.log10(1 + 10000 * librosa.feature.melspectrogram(
        y=padded, sr=sr, n_fft=512, hop_length=256 * hop_multiplier, n_mels=n_mels, power=2.0, center=True,
        pad_mode="constant", htk=False, norm="slaney", fmin=0.0, fmax=sr / 2))
    total = ref.shape[1]
    starts = [0, (total - n) // 2, total - n]
    front = MelFrontend(sr, n_mels, hop_multiplier, "log")
    waves = torch.tensor(np.stack([x] * 3), dtype=torch.float32)
    segments = front.frames(waves, torch.tensor(starts), n).numpy()
    assert segments.shape == (3, n_mels, n)
    for segment, start in zip(segments, starts, strict=True):
        np.testing.assert_allclose(segment, ref[:, start:start + n], rtol=0, atol=5e-4)


@pytest.mark.parametrize("released", [False, True], ids=["run", "released"])
@pytest.mark.parametrize("n_samples", [160_000, 160_256, 160_300])  # ends on a hop, a hop later, between hops
def test_a_long_clips_mel_in_chunks_is_librosas_mel_of_the_whole_clip(released, n_samples):
    """`chunks`, bench tag's mel of a long file one chunk's STFT at a time: at every chunk's edge and at
    both ends of the clip, the frames librosa gives the whole clip, with zeros outside it (a run's
    framing, padded to the hop, of float16 samples) or the clip mirrored (the released models')."""
    sr, n_mels = 16000, 48
    x = music_like(10.1, sr, seed=5)[:n_samples].astype(np.float32)
    if released:
        front = MelFrontend(sr, n_mels, 1, "log", pad_mode="reflect", pad_to_hop=False)
        y, mode = x.astype(np.float64), "reflect"
    else:
        front = MelFrontend(sr, n_mels, 1, "log", float16_waveform=True)
        rounded = x.astype(np.float16).astype(np.float64)
        y, mode = np.pad(rounded, (0, framing.padded_samples(n_samples) - n_samples)), "constant"
    ref = np.log10(1 + 10000 * librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=512, hop_length=256, n_mels=n_mels, power=2.0, center=True, pad_mode=mode, htk=False,
        norm="slaney", fmin=0.0, fmax=sr / 2))
    waveform = torch.from_numpy(x[None])
    chunks = list(front.chunks(waveform, 100))
    assert len(chunks) == -(-ref.shape[1] // 100) > 6 and {c.shape[-1] for c in chunks[:-1]} == {100}
    joined = torch.cat(chunks, dim=-1)
    np.testing.assert_allclose(joined.numpy()[0], ref, rtol=0, atol=5e-4)
    torch.testing.assert_close(joined, front(waveform), rtol=0, atol=1e-5)  # and the whole clip's, at once


@pytest.mark.parametrize("n_samples", [257, 300, 513, 1000])
def test_a_short_clips_mel_in_one_frame_chunks_is_its_mel(n_samples):
    """Chunks of one frame of a clip barely longer than the half frame mirrored at each edge (the released
    models' framing: 257 samples is the shortest torch mirrors): the mel `forward` gives it."""
    front = MelFrontend(16000, 16, 1, "log", pad_mode="reflect", pad_to_hop=False)
    x = torch.from_numpy(np.random.default_rng(n_samples).standard_normal((1, n_samples)).astype(np.float32))
    torch.testing.assert_close(torch.cat(list(front.chunks(x, 1)), dim=-1), front(x), rtol=0, atol=1e-5)
    for call in (front, lambda x: list(front.chunks(x, 1))):  # one sample less: refused, not made up
        with pytest.raises(RuntimeError):
            call(x[:, :256])


def test_bench_tags_patches_of_a_long_file_take_the_stft_a_chunk_at_a_time(monkeypatch):
    """An hour's mel at 16 kHz held 1.4 GB of STFT at once: the patches of a 5-minute file come from STFTs
    of at most `MEL_CHUNK_FRAMES` frames, equal to the whole file's patches."""
    from bench.data.views import eval_segments
    from bench.tools.tag import MEL_CHUNK_FRAMES, Tagger

    tagger = Tagger("long", None, MelFrontend(16000, 48, 1, "log", float16_waveform=True), [], 187)
    x = (0.1 * np.random.default_rng(0).standard_normal(300 * 16000 + 77)).astype(np.float32)
    whole = eval_segments(tagger.frontend(torch.from_numpy(x[None])), 187)[0]
    frames, stft = [], torch.stft

    def counted(*args, **kwargs):
        out = stft(*args, **kwargs)
        frames.append(out.shape[-1])
        return out

    monkeypatch.setattr(torch, "stft", counted)
    with torch.inference_mode():
        patches = tagger.patches(x)
    assert len(frames) > 1 and max(frames) <= MEL_CHUNK_FRAMES
    assert patches.shape == whole.shape == (tagger.patch_count(len(x)), 48, 187)
    torch.testing.assert_close(patches, whole, rtol=0, atol=1e-5)


def test_a_front_end_with_empty_mel_bands_builds_without_torchaudios_warnings():
    """200 bands at 22.05 kHz leave some empty (`framing.empty_mel_bands`, which `bench plan` and
    `bench grid` say in one line per configuration): torchaudio warned twice more for every front end
    built, every run, once of a filterbank the front end replaces at once."""
    import warnings

    import torchaudio

    from bench.core import framing
    from bench.train.frontend import MelFrontend

    assert framing.empty_mel_bands(22050, 200)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        torchaudio.functional.melscale_fbanks(framing.N_FFT // 2 + 1, 0.0, 11025.0, 200, 22050, norm="slaney",
                                              mel_scale="slaney")
    assert any("mel filterbank has all zero values" in str(w.message) for w in said)  # torchaudio's own
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        MelFrontend(22050, 200, 1, "log")
    assert not [str(w.message) for w in said]


@pytest.mark.parametrize("n_samples", [47_616, 47_617, 47_871, 48_000])
def test_the_released_models_framing_counts_librosas_centred_frames(n_samples):
    """The released musicnn models' front end (`pad_to_hop=False`: plain centred framing, as librosa) says
    how many frames a clip gives (what `bench tag` sizes its 3 s patches by) as librosa frames it."""
    frontend = MelFrontend(16000, 96, 1, "log", pad_mode="reflect", pad_to_hop=False, float16_mel=True)
    y = np.random.default_rng(0).uniform(-0.5, 0.5, n_samples)
    frames = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96).shape[1]
    assert frontend.n_frames(n_samples) == frames == frontend(torch.from_numpy(y[None]).float()).shape[-1]


def test_the_released_models_float16_mel_of_a_loud_clip_stays_finite():
    """The released models' front end rounds the mel power to float16, whose largest value is 65,504: a
    clip a float file holds at up to 16 times full scale (what the decoder accepts) gives more, which
    float16 makes infinite, and the scores NaN. The power is held at 65,504 first (without it, every
    test passed)."""
    frontend = MelFrontend(16000, 96, 1, "log", pad_mode="reflect", pad_to_hop=False, float16_mel=True)
    t = np.arange(48_000) / 16_000
    loud = torch.from_numpy(16 * np.sin(2 * np.pi * 1000 * t)[None]).float()
    mel = frontend(loud)
    assert torch.isfinite(mel).all()
    assert mel.max().item() == pytest.approx(np.log10(1 + 10_000 * 65_504), rel=1e-6)  # the held power's log
