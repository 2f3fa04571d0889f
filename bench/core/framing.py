"""Pure integer arithmetic of the paper's mel framing (no torch, no audio).

The paper's frame counts (section V: 1366 at 12 kHz and 1820 at 16 kHz for a 29.1 s clip, 137 and
182 at hop x10; in between ceil(F1 / m) for hop multiplier m, the frames its authors' scripts keep
when they take every m-th frame) are what librosa gives *after* the clip is zero-padded on the
right to a multiple of the reference hop (256 samples) and framed centred, with n_fft // 2 zeros on
each side. Plain centred framing of the unpadded clip gives one frame fewer (1365 / 1819).
"""

from __future__ import annotations

import math

N_FFT = 512
"""Frame (window) size in samples, fixed across the grid as in the paper."""

BASE_HOP = 256
"""Reference hop in samples; a config's hop is BASE_HOP x hop_multiplier."""

PAPER_CLIP_SECONDS = 29.1
"""Clip length used by the paper (and by VGG-CNN's original 1366-frame input)."""


def clip_samples(clip_seconds: float, sample_rate: int) -> int:
    """Samples in a clip of `clip_seconds` at `sample_rate` (rounded, so 29.1 s x 12 kHz = 349200)."""
    return int(round(clip_seconds * sample_rate))


def padded_samples(n_samples: int) -> int:
    """Length after zero-padding on the right to a multiple of BASE_HOP."""
    return BASE_HOP * math.ceil(n_samples / BASE_HOP)


def hop_length(hop_multiplier: int) -> int:
    """Hop in samples for a hop multiplier (x1 = 256, x10 = 2560)."""
    return BASE_HOP * hop_multiplier


def frames_for_samples(n_samples: int, hop_multiplier: int) -> int:
    """Frames produced by the front end for a signal of `n_samples` samples.

    Centred framing of the padded signal gives 1 + padded // hop frames, which equals
    ceil(F1 / m) with F1 = 1 + padded // 256, the paper's rule.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    return 1 + padded_samples(n_samples) // hop_length(hop_multiplier)


def n_frames(clip_seconds: float, sample_rate: int, hop_multiplier: int) -> int:
    """Frames of a clip of `clip_seconds` at `sample_rate` with hop 256 x `hop_multiplier`."""
    return frames_for_samples(clip_samples(clip_seconds, sample_rate), hop_multiplier)


def storage_bytes(n_mels: int, n_frames: int, bytes_per_value: int) -> int:
    """Bytes to store one clip's mel spectrogram (n_mels x n_frames values)."""
    return n_mels * n_frames * bytes_per_value


def _slaney_mel(hz: float) -> float:
    """Slaney's mel scale (the front end's `mel_scale="slaney"`): linear to 1 kHz, logarithmic above."""
    return hz * 3 / 200 if hz < 1000 else 15 + math.log(hz / 1000) * 27 / math.log(6.4)


def _slaney_hz(mel: float) -> float:
    return mel * 200 / 3 if mel < 15 else 1000 * math.exp((mel - 15) * math.log(6.4) / 27)


def empty_mel_bands(sample_rate: int, n_mels: int) -> int:
    """How many of `n_mels` Slaney mel bands (0 Hz to Nyquist) hold no FFT bin of an N_FFT frame: a
    triangle narrower than the bins' spacing (sample_rate / N_FFT) can fall between two bins, and its
    row of the spectrogram is then constant zero. The arithmetic of torchaudio's `melscale_fbanks`
    (a band is non-empty when a bin lies strictly inside its triangle; tests check it against
    torchaudio), here so that a spec is checked without importing torch."""
    top = _slaney_mel(sample_rate / 2)
    edges = [_slaney_hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bins = [k * sample_rate / N_FFT for k in range(N_FFT // 2 + 1)]
    return sum(not any(edges[m] < f < edges[m + 2] for f in bins) for m in range(n_mels))
