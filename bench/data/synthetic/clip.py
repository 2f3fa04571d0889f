"""One clip: the layers its tags call for, mixed at their levels and scaled to its loudness."""

from __future__ import annotations

import numpy as np

from bench.core import framing
from bench.data.synthetic.layers import INSTRUMENTS, band_noise, dyad, lead, pad, ticks
from bench.data.synthetic.plan import ClipPlan
from bench.data.synthetic.score import draw_score

PEAK_LIMIT = 10 ** (-1.0 / 20)
"""Peak after loudness scaling: -1 dBFS, headroom for the MP3 decoder's overshoot."""

_INSTRUMENT_DB = (-6.0, 0.0)
_DRUM_PEAK = 2.5
"""Drum peak relative to a unit-RMS instrument (+8 dB): drums set by peak keep the crest factor sane."""
_CARRIER_DB = {"dyad": (-15.0, -9.0), "lead": (-13.0, -7.0), "ticks": (0.0, 6.0), "pad": (-10.0, -4.0),
               "air": (-20.0, -14.0)}
"""Level of each layer relative to a unit-RMS instrument: RMS, except the ticks' click peak."""
_LOUDNESS_DBFS = {"loud": (-16.0, -13.0), "normal": (-24.0, -21.0), "quiet": (-34.0, -30.0)}


def synthesize(plan: ClipPlan, seed: int, clip_seconds: float, sample_rate: int) -> np.ndarray:
    """The clip's mono float32 waveform at `sample_rate`, peak <= -1 dBFS."""
    rng = np.random.default_rng([seed, 1, plan.index])
    n = framing.clip_samples(clip_seconds, sample_rate)
    tags = plan.tags
    sc = draw_score(rng, tags, n, sample_rate)
    mix = np.zeros(n, dtype=np.float32)

    def level(lo_hi: tuple[float, float]) -> float:
        return 10 ** (rng.uniform(*lo_hi) / 20)

    for name, render in INSTRUMENTS.items():
        if name in tags:
            scale = _DRUM_PEAK if name == "drums" else 1.0  # drums come unit-peak, the others unit-RMS
            mix += np.float32(scale * level(_INSTRUMENT_DB)) * render(rng, sc)
    mix += np.float32(level(_CARRIER_DB["dyad"])) * dyad(rng, sc, "semitone" in tags)
    mix += np.float32(level(_CARRIER_DB["lead"])) * lead(rng, sc, "vibrato" in tags)
    mix += np.float32(level(_CARRIER_DB["ticks"])) * ticks(rng, sc, "ticks" in tags)
    mix += np.float32(level(_CARRIER_DB["pad"])) * pad(rng, sc, "tremolo" in tags)
    if "air" in tags:
        mix += np.float32(level(_CARRIER_DB["air"])) * band_noise(rng, n, sample_rate, 6300, 7200)
    if plan.air_decoy:
        mix += np.float32(level(_CARRIER_DB["air"])) * band_noise(rng, n, sample_rate, 4300, 5200)

    loudness = "loud" if "loud" in tags else "quiet" if "quiet" in tags else "normal"
    target = 10 ** (rng.uniform(*_LOUDNESS_DBFS[loudness]) / 20)
    mix *= np.float32(target / float(np.sqrt(np.mean(np.square(mix, dtype=np.float64)))))
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK_LIMIT:  # a static gain: a limiter's moving gain would itself be a tremolo
        mix *= np.float32(PEAK_LIMIT / peak)
    return mix
