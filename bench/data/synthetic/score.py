"""The score of a clip: tempo, key and mode, chord progression, register."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


# ----------------------------------------------------------------------------------------------
# The score: tempo, key, chords, register.
# ----------------------------------------------------------------------------------------------

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 0), (0, 3, 0, 4), (5, 4, 3, 4))
MAJOR_SHARE = 0.6
"""Share of clips in a major key; the rest are in the natural minor."""
_REGISTER_CENTRE = {"low": 40, "mid": 55, "high": 74}
"""MIDI note around which the instruments play (E2, G3, D5)."""


@dataclass(frozen=True)
class Score:
    sr: int
    n: int
    beat: float
    """Seconds per beat."""
    start: float
    """Time of the first downbeat (s), before the clip starts."""
    bars: int
    chords: tuple[tuple[int, int, int], ...]
    """Per bar: the triad's MIDI pitch classes (0-11 offsets from C, not octave-placed)."""
    scale: tuple[int, ...]
    """Pitch classes of the key."""
    mode: str
    """'major' or 'minor': no tag names it (`bench.data.synthetic.tasks`)."""
    centre: int

    @property
    def bar(self) -> float:
        return 4 * self.beat

    def bar_start(self, b: int) -> float:
        return self.start + b * self.bar

    def chord(self, b: int) -> tuple[int, int, int]:
        return self.chords[b % len(self.chords)]


def draw_score(rng: np.random.Generator, tags: frozenset[str], n: int, sr: int) -> Score:
    if "slow" in tags:
        bpm = rng.uniform(56, 78)
    elif "fast" in tags:
        bpm = rng.uniform(138, 176)
    else:
        bpm = rng.uniform(90, 124)
    beat = 60.0 / bpm
    key = int(rng.integers(12))
    mode = "major" if rng.random() < MAJOR_SHARE else "minor"
    scale = tuple((key + s) % 12 for s in (_MAJOR if mode == "major" else _MINOR))
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    chords = tuple((scale[d], scale[(d + 2) % 7], scale[(d + 4) % 7]) for d in progression)
    register = "low" if "low" in tags else "high" if "high" in tags else "mid"
    centre = _REGISTER_CENTRE[register] + int(rng.integers(-2, 3))
    start = -float(rng.uniform(0.0, 4 * beat))  # the clip is cut from a longer piece: music at t = 0
    bars = int(math.ceil((n / sr - start) / (4 * beat)))
    return Score(sr=sr, n=n, beat=beat, start=start, bars=bars, chords=chords, scale=scale, mode=mode,
                 centre=centre)


def place_pc(pc: int, near: float) -> int:
    """The MIDI note of pitch class `pc` nearest to `near`."""
    base = int(round(near)) - ((int(round(near)) - pc) % 12)
    return base + 12 if near - base > 6 else base
