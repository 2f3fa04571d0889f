"""A synthetic dataset in MagnaTagATune's exact layout, whose tags need known resolutions.

`generate(out_dir)` writes real MP3 files (mono, 16 kHz, ~30 kbit/s like MTAT's) into folders `0`-`9`,
`a`-`f` and an `annotations_final.csv` in MTAT's format, so the demo exercises the real MTAT reader,
decoder and cache. Every tag is an audible property of generated music (`TAGS`): instruments, tempo,
register, loudness, and five tags built so that a mel front end at a given resolution can or cannot
see them (docs/synthetic.md):

- frequency: `semitone` (a dyad one semitone apart; decoy 2-3 semitones apart) and `vibrato` (a
  whistle with +-15-30 cent vibrato; decoy a warble between two steady pitches 6 % apart) need
  narrow mel bands. Both decoys keep what a wide triangle measures, the power-weighted mean frequency,
  the same as the tag's, so 8 bands see them alike and 16 bands only at the triangles' corners.
- time: `ticks` (even clicks, 4 per beat; decoy click pairs 55-70 ms apart at half the rate, the same
  clicks per second) and `tremolo` (6.8-10.2 Hz amplitude modulation; decoy a 0.23-2.9 Hz swell) need
  short hops; at hop 2560 the frames cover a fifth of the signal and alias these rates.
- sample rate: `air` (a noise band at 6.3-7.2 kHz; independent decoy band at 4.3-5.2 kHz) only exists
  at 16 kHz.

Rhythmic layers run at multiples of the beat, so they reinforce the tempo tags instead of masking
them (a click layer at unrelated rates hides the tempo).

Why the carriers of the four frequency/time tags play in *every* clip: if a layer is in all positives
but only a share q of the negatives, a front end too coarse to see the tag's fine structure still
ranks by the layer's presence, with ROC-AUC 1 - q/2 (0.75 for q = 0.5). Only q = 1 lets such a tag
fall to chance where its resolution is missing. The `air` decoy is instead independent of the tag, so
at 12 kHz (where the tag's band is gone) nothing visible correlates with it.

Determinism: the tag plan comes from `np.random.default_rng([seed, 0])` and clip i's audio from
`default_rng([seed, 1, i])`, so the output does not depend on the number of worker processes. LAME
(through libsndfile) writes no date or random field, so the same numpy and libsndfile versions on
the same kind of CPU give byte-identical files (SIMD float paths may differ between CPUs).

Generation time and output size, as measured: docs/performance.md#measurements-behind-the-codes-choices.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.core import framing
from bench.core.errors import ignore_interrupts
from bench.core.progress import progress_bar
from bench.core.store import atomic_write_bytes, exclusive_lock

GENERATOR_VERSION = 1
"""Bump when the audio or the tag plan changes, so existing datasets are regenerated."""

ANNOTATIONS = "annotations_final.csv"
META = "synthetic.json"
"""Parameters of a complete dataset; written just before the annotations file."""

FOLDERS = tuple("0123456789abcdef")
"""MTAT's folders; downstream, `0`-`b` are train, `c` valid, `d`-`f` test."""

MP3_BITRATE_MODE = "VARIABLE"
MP3_COMPRESSION_LEVEL = 0.4
"""LAME VBR at about 30 kbit/s for this material (MTAT's files are 32 kbit/s). It keeps content up
to ~7.3 kHz, above the `air` band, and the decoded length equals the written one; constant 32 kbit/s
adds 1536 samples at decode, and coarser settings low-pass at 6 kHz."""

PEAK_LIMIT = 10 ** (-1.0 / 20)
"""Peak after loudness scaling: -1 dBFS, headroom for the MP3 decoder's overshoot."""

MP3_RATES = (16000, 22050, 24000, 32000, 44100, 48000)
"""MP3 sample rates at which the `air` band (up to 7.2 kHz) exists."""


@dataclass(frozen=True)
class Tag:
    name: str
    audible: str
    """What a listener hears in a positive clip."""
    axis: str
    """The resolution the tag needs: 'frequency', 'time', 'sample rate' or 'none'."""
    decoy: str
    """What negatives carry that looks the same when that resolution is missing ('' = no decoy)."""
    share: float
    """Target fraction of clips carrying the tag (stratified per folder)."""
    band: str
    """Where its energy lies."""
    group: str = ""
    """Tags of one group are mutually exclusive (tempo, register, loudness)."""


TAGS: tuple[Tag, ...] = (
    Tag("guitar", "plucked-string arpeggios in 8th notes (decaying harmonics)", "none", "", 0.40,
        "f0 of the register, partials < 4.5 kHz"),
    Tag("piano", "struck chords twice a bar (inharmonic partials, two-stage decay)", "none", "", 0.25,
        "f0 of the register, partials < 5 kHz"),
    Tag("strings", "bowed, sustained chords, one per bar (slow attack, sawtooth through a body resonance)",
        "none", "", 0.30, "f0 of the register, partials < 5 kHz"),
    Tag("drums", "kick on beats 1 and 3, snare on 2 and 4, hi-hat on 8th notes", "none", "", 0.50,
        "kick 45-120 Hz, snare 0.2-6 kHz, hat 5-8 kHz"),
    Tag("synth", "sawtooth or square lead melody in 8th and quarter notes", "none", "", 0.20,
        "f0 an octave above the register, partials < 5.5 kHz"),
    Tag("voice", "sung vowels (a e i o u) through formant filters, quarter and half notes", "none", "", 0.08,
        "f0 ~110-700 Hz by register, formants 0.3-3.4 kHz"),
    Tag("slow", "56-78 BPM; notes, drums, clicks and pad modulation all follow the beat", "none", "", 0.30,
        "beat 0.9-1.3 Hz", group="tempo"),
    Tag("fast", "138-176 BPM (not slow, not fast: 90-124 BPM)", "none", "", 0.25, "beat 2.3-2.9 Hz",
        group="tempo"),
    Tag("low", "the instruments play around E2 (drawn among clips with a pitched instrument)", "none", "", 0.22,
        "f0 ~70-350 Hz", group="register"),
    Tag("high", "the instruments play around D5 (neither: around G3)", "none", "", 0.22, "f0 ~500-2500 Hz",
        group="register"),
    Tag("loud", "mix at -16..-13 dBFS RMS (at least 2 dB above any normal clip)", "none", "", 0.25, "all",
        group="loudness"),
    Tag("quiet", "mix at -34..-30 dBFS RMS (normal: -24..-21)", "none", "", 0.18, "all", group="loudness"),
    Tag("air", "a steady hiss band above 6 kHz", "sample rate",
        "the same hiss at 4.3-5.2 kHz, in 45% of all clips independently of the tag", 0.22, "6.3-7.2 kHz"),
    Tag("semitone", "a sustained sine dyad one semitone apart, a new pitch each bar", "frequency",
        "the same dyad 2-3 semitones apart around the same centres, either note up to 12 dB softer "
        "(every negative)", 0.35, "centre 3.14-4.19 kHz, notes 3.0-4.6 kHz"),
    Tag("vibrato", "a whistle (pure tone, one note per bar) with +-15-30 cent vibrato at 5-7 Hz", "frequency",
        "the same whistle warbling between two steady pitches 6 % apart at the same rate, so that its "
        "power-weighted mean pitch moves like the vibrato (every negative)", 0.35, "1.48-2.79 kHz"),
    Tag("ticks", "even 16th-note clicks, 4 per beat (3.7-11.7 Hz)", "time",
        "click pairs 55-70 ms apart, 2 per beat: the same clicks per second (every negative)", 0.40,
        "2-5 kHz, 15 ms clicks"),
    Tag("tremolo", "an organ pad pulsing 3, 4, 6 or 8 times per beat, whichever is nearest 8.5 Hz (6.8-10.2 Hz)",
        "time", "the same pad swelling 1/4 to 1 time per beat (0.23-2.9 Hz), same depth (every negative)", 0.30,
        "root and fifth at 165-330 Hz, 3 partials"),
)

TAG_NAMES = tuple(t.name for t in TAGS)
PITCHED = frozenset({"guitar", "piano", "strings", "synth", "voice"})
"""Instruments that carry the register; `low` and `high` are drawn among clips having one of them."""


@dataclass(frozen=True)
class ClipPlan:
    index: int
    clip_id: str
    folder: str
    mp3_path: str
    """`<folder>/<file>.mp3`, relative to the dataset root."""
    tags: frozenset[str]
    air_decoy: bool


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


# ----------------------------------------------------------------------------------------------
# The plan: folders, names and tags of every clip (global, so that tags can be stratified).
# ----------------------------------------------------------------------------------------------

_SPLIT_OF_FOLDER = {f: "train" for f in FOLDERS[:12]} | {"c": "valid"} | {f: "test" for f in "def"}


def _stratified_categories(rng: np.random.Generator, members: list[int], shares: list[float]) -> dict[int, int]:
    """Category (index into shares, or len(shares) = none) for each member, counts within +-1 of n*share.

    Cumulative counts use one shared random dither, so every folder gets floor or ceil of its share and
    the expected count over folders is exact.
    """
    n = len(members)
    u = rng.random()
    bounds = [math.floor(n * s + u) for s in np.cumsum(shares)]
    order = rng.permutation(members)
    out, start = {}, 0
    for category, stop in enumerate([*bounds, n]):
        for m in order[start:stop]:
            out[int(m)] = category
        start = max(start, stop)
    return out


def plan_clips(clips: int, seed: int) -> list[ClipPlan]:
    """Folders, file names and tags of every clip; depends only on (clips, seed)."""
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    rng = np.random.default_rng([seed, 0])
    by_folder = {f: [i for i in range(clips) if FOLDERS[i % len(FOLDERS)] == f] for f in FOLDERS}
    tags: dict[int, set[str]] = {i: set() for i in range(clips)}
    groups: dict[str, list[Tag]] = {}
    for tag in TAGS:
        groups.setdefault(tag.group or tag.name, []).append(tag)
    air_decoy: dict[int, bool] = {}
    for members in by_folder.values():
        if not members:
            continue
        for key, group in groups.items():
            # the register is a property of the instruments: only clips that have one get a register tag
            eligible = [i for i in members if tags[i] & PITCHED] if key == "register" else members
            categories = _stratified_categories(rng, eligible, [t.share for t in group])
            for i, c in categories.items():
                if c < len(group):
                    tags[i].add(group[c].name)
        for i, c in _stratified_categories(rng, members, [0.45]).items():
            air_decoy[i] = c == 0
    plans = []
    for i in range(clips):
        folder = FOLDERS[i % len(FOLDERS)]
        start = (0, 30, 59, 88)[(i // len(FOLDERS)) % 4]
        name = f"synthetic-artist_{(i // len(FOLDERS)) % 50:02d}-track_{i:04d}-{start}-{start + 29}.mp3"
        plans.append(ClipPlan(index=i, clip_id=str(i), folder=folder, mp3_path=f"{folder}/{name}",
                              tags=frozenset(tags[i]), air_decoy=air_decoy[i]))
    return plans


# ----------------------------------------------------------------------------------------------
# Sound: small vectorised building blocks. Every generator returns float32 at unit-ish level.
# ----------------------------------------------------------------------------------------------

def _midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _fade(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    """Linear attack and release ramps over n samples (float32)."""
    env = np.ones(n, dtype=np.float32)
    a = min(n, max(1, int(attack * sr)))
    r = min(n - a, max(1, int(release * sr)))
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False, dtype=np.float32)
    if r > 0:
        env[n - r:] *= np.linspace(1.0, 0.0, r, dtype=np.float32)
    return env


def _partials(freqs: np.ndarray, amps: np.ndarray, n: int, sr: int, decays: np.ndarray | None = None,
              phases: np.ndarray | None = None) -> np.ndarray:
    """Sum of sinusoids at fixed frequencies, optionally each decaying exp(-t * decay)."""
    t = np.arange(n, dtype=np.float64) / sr
    cycles = np.outer(freqs, t)  # float64: long notes keep their phase accurate
    cycles -= np.floor(cycles)
    if phases is not None:
        cycles += phases[:, None]
    waves = np.sin((2 * np.pi * cycles).astype(np.float32))
    if decays is not None:
        waves *= np.exp(-np.outer(decays, t.astype(np.float32))).astype(np.float32)
    return (amps.astype(np.float32) @ waves).astype(np.float32)


def _partials_each(freqs: np.ndarray, n: int, sr: int, phases: np.ndarray) -> np.ndarray:
    """(len(freqs), n) unit sinusoids (phases in cycles)."""
    cycles = np.outer(freqs, np.arange(n, dtype=np.float64) / sr) + phases[:, None]
    return np.sin((2 * np.pi * (cycles - np.floor(cycles))).astype(np.float32))


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float, taper: float = 0.1) -> np.ndarray:
    """White noise band-limited to [lo, hi] Hz by an FFT mask with raised-cosine edges; unit RMS."""
    size = 1 << max(0, (n - 1).bit_length())  # a power of two: fast FFT whatever the clip length
    spectrum = np.fft.rfft(rng.standard_normal(size))
    f = np.fft.rfftfreq(size, 1.0 / sr)
    width = taper * (hi - lo)
    mask = np.clip(np.minimum(f - lo, hi - f) / width + 0.5, 0.0, 1.0)
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    x = np.fft.irfft(spectrum * mask, size)[:n]
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def _place(out: np.ndarray, start: int, sound: np.ndarray, gain: float = 1.0) -> None:
    """out[start:] += gain * sound, clipped to out's bounds."""
    if start >= len(out) or start + len(sound) <= 0:
        return
    lo = max(0, -start)
    hi = min(len(sound), len(out) - start)
    out[start + lo:start + hi] += np.float32(gain) * sound[lo:hi]


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return x / np.float32(rms) if rms > 0 else x


# ----------------------------------------------------------------------------------------------
# The score: tempo, key, chords, register.
# ----------------------------------------------------------------------------------------------

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 0), (0, 3, 0, 4), (5, 4, 3, 4))
_REGISTER_CENTRE = {"low": 40, "mid": 55, "high": 74}
"""MIDI note around which the instruments play (E2, G3, D5)."""


@dataclass(frozen=True)
class _Score:
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
    centre: int

    @property
    def bar(self) -> float:
        return 4 * self.beat

    def bar_start(self, b: int) -> float:
        return self.start + b * self.bar

    def chord(self, b: int) -> tuple[int, int, int]:
        return self.chords[b % len(self.chords)]


def _score(rng: np.random.Generator, tags: frozenset[str], n: int, sr: int) -> _Score:
    if "slow" in tags:
        bpm = rng.uniform(56, 78)
    elif "fast" in tags:
        bpm = rng.uniform(138, 176)
    else:
        bpm = rng.uniform(90, 124)
    beat = 60.0 / bpm
    key = int(rng.integers(12))
    scale = tuple((key + s) % 12 for s in (_MAJOR if rng.random() < 0.6 else _MINOR))
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    chords = tuple((scale[d], scale[(d + 2) % 7], scale[(d + 4) % 7]) for d in progression)
    register = "low" if "low" in tags else "high" if "high" in tags else "mid"
    centre = _REGISTER_CENTRE[register] + int(rng.integers(-2, 3))
    start = -float(rng.uniform(0.0, 4 * beat))  # the clip is cut from a longer piece: music at t = 0
    bars = int(math.ceil((n / sr - start) / (4 * beat)))
    return _Score(sr=sr, n=n, beat=beat, start=start, bars=bars, chords=chords, scale=scale, centre=centre)


def _place_pc(pc: int, near: float) -> int:
    """The MIDI note of pitch class `pc` nearest to `near`."""
    base = int(round(near)) - ((int(round(near)) - pc) % 12)
    return base + 12 if near - base > 6 else base


# ----------------------------------------------------------------------------------------------
# Instruments (tags that need no particular resolution). Each returns a unit-RMS float32 track.
# ----------------------------------------------------------------------------------------------

def _guitar(rng: np.random.Generator, sc: _Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    pluck = rng.uniform(0.12, 0.22)
    tau1 = rng.uniform(0.7, 1.3)
    cache: dict[int, np.ndarray] = {}

    def note(midi: int) -> np.ndarray:
        if midi not in cache:
            f0 = _midi_hz(midi)
            k = np.arange(1, max(2, min(24, int(4500 / f0))) + 1)
            amps = np.abs(np.sin(np.pi * k * pluck)) / k**1.1
            decays = (1 + 0.35 * (k - 1)) / (tau1 * (220 / f0) ** 0.3)
            m = int(1.6 * sr)
            cache[midi] = _partials(k * f0, amps, m, sr, decays) * _fade(m, sr, 0.002, 0.05)
        return cache[midi]

    pattern = (0, 1, 2, 1, 0, 2, 1, 2) if rng.random() < 0.5 else (0, 1, 2, 0, 1, 2, 1, 0)
    for b in range(sc.bars):
        chord = sc.chord(b)
        for j in range(8):
            idx = pattern[j]
            midi = _place_pc(chord[idx], sc.centre + 4 * idx)
            _place(out, int((sc.bar_start(b) + j * sc.beat / 2) * sr), note(midi), rng.uniform(0.6, 1.0))
    return _unit_rms(out)


def _piano(rng: np.random.Generator, sc: _Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    cache: dict[int, np.ndarray] = {}
    length = int(2 * sc.beat * sr)  # notes are damped at the next chord

    def note(midi: int) -> np.ndarray:
        if midi not in cache:
            f0 = _midi_hz(midi)
            k = np.arange(1, max(2, min(20, int(5000 / f0))) + 1)
            freqs = k * f0 * np.sqrt(1 + 3e-4 * k**2)
            keep = freqs < 5000
            amps = 1.0 / k[keep] ** 1.3
            fast = _partials(freqs[keep], amps, length, sr, 1 / 0.25 + 0.6 * k[keep])
            slow = _partials(freqs[keep], amps, length, sr, 0.5 + 0.4 * k[keep])
            cache[midi] = (0.7 * fast + 0.3 * slow) * _fade(length, sr, 0.002, 0.06)
        return cache[midi]

    for b in range(sc.bars):
        chord = sc.chord(b)
        for half in range(2):
            t = int((sc.bar_start(b) + half * 2 * sc.beat) * sr)
            v = rng.uniform(0.7, 1.0)
            for i, pc in enumerate(chord):
                _place(out, t, note(_place_pc(pc, sc.centre + 4 * i)), v)
            _place(out, t, note(_place_pc(chord[0], sc.centre - 12)), 0.8 * v)
    return _unit_rms(out)


def _strings(rng: np.random.Generator, sc: _Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    length = int(sc.bar * sr)
    attack = rng.uniform(0.15, 0.35)
    cache: dict[int, np.ndarray] = {}

    def note(midi: int) -> np.ndarray:
        if midi not in cache:
            f0 = _midi_hz(midi)
            k = np.arange(1, max(2, min(20, int(5000 / f0))) + 1)
            f = k * f0
            body = 1 + 1.5 * np.exp(-0.5 * (np.log2(f / 500) / 0.4) ** 2) + np.exp(-0.5 * np.log2(f / 2500) ** 2 / 0.25)
            amps = body / k
            fade = _fade(length, sr, attack, 0.25)
            cache[midi] = _partials(f, amps, length, sr, phases=rng.random(len(k))) * fade
        return cache[midi]

    for b in range(sc.bars):
        t = int(sc.bar_start(b) * sr)
        for i, pc in enumerate(sc.chord(b)):
            _place(out, t, note(_place_pc(pc, sc.centre + 3 + 4 * i)))
    return _unit_rms(out)


def _synth(rng: np.random.Generator, sc: _Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    square = rng.random() < 0.4
    cutoff = rng.uniform(1500, 4000)
    cache: dict[tuple[int, int], np.ndarray] = {}

    def note(midi: int, length: int) -> np.ndarray:
        if (midi, length) not in cache:
            f0 = _midi_hz(midi)
            k = np.arange(1, max(2, int(5500 / f0)) + 1)
            if square:
                k = k[k % 2 == 1]
            amps = np.exp(-k * f0 / cutoff) / k
            env = _fade(length, sr, 0.005, 0.04) * (0.7 + 0.3 * np.exp(-np.arange(length) / (0.1 * sr)))
            cache[(midi, length)] = _partials(k * f0, amps, length, sr) * env.astype(np.float32)
        return cache[(midi, length)]

    degree = int(rng.integers(7))
    t = sc.start
    while t < sc.n / sr:
        steps = 1 if rng.random() < 0.6 else 2  # 8th or quarter note
        if rng.random() > 0.15:  # else a rest
            pc = sc.scale[degree % 7]
            midi = _place_pc(pc, sc.centre + 12)
            _place(out, int(t * sr), note(midi, int(steps * sc.beat / 2 * sr)), rng.uniform(0.7, 1.0))
        degree += int(rng.choice((-2, -1, -1, 1, 1, 2)))
        t += steps * sc.beat / 2
    return _unit_rms(out)


_VOWELS = {  # formant centres (Hz) and bandwidths
    "a": ((800, 1150, 2900), (80, 90, 120)),
    "e": ((400, 1600, 2700), (60, 80, 120)),
    "i": ((300, 2300, 3000), (60, 90, 120)),
    "o": ((450, 800, 2830), (70, 80, 100)),
    "u": ((325, 700, 2530), (50, 60, 100)),
}


def _voice(rng: np.random.Generator, sc: _Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    centre = min(max(sc.centre + 7, 45), 79)  # a singable range whatever the register
    scale_formants = 1.0 if centre < 60 else 1.15
    cache: dict[tuple[int, str, int], np.ndarray] = {}

    def note(midi: int, vowel: str, length: int) -> np.ndarray:
        key = (midi, vowel, length)
        if key not in cache:
            f0 = _midi_hz(midi)
            k = np.arange(1, max(2, int(4500 / f0)) + 1)
            f = k * f0
            formants, widths = _VOWELS[vowel]
            shape = sum(g / (1 + ((f - fc * scale_formants) / bw) ** 2)
                        for g, fc, bw in zip((1.0, 0.5, 0.25), formants, widths, strict=True))
            amps = (shape + 0.02) / k**0.7
            cache[key] = _partials(f, amps, length, sr) * _fade(length, sr, 0.06, 0.08)
        return cache[key]

    degree = int(rng.integers(7))
    t = sc.start
    while t < sc.n / sr:
        beats = int(rng.choice((1, 2, 2)))
        if rng.random() > 0.2:
            midi = _place_pc(sc.scale[degree % 7], centre)
            vowel = "aeiou"[int(rng.integers(5))]
            _place(out, int(t * sr), note(midi, vowel, int(beats * sc.beat * sr)))
        degree += int(rng.choice((-1, 1, 1, -2, 2, 0)))
        t += beats * sc.beat
    return _unit_rms(out)


def _drums(rng: np.random.Generator, sc: _Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    t = np.arange(int(0.4 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(45 + 75 * np.exp(-t / 0.04)) / sr) * np.exp(-t / 0.18)
    ts = t[: int(0.25 * sr)]
    snare = (_band_noise(rng, len(ts), sr, 200, 6000) * 0.5 * np.exp(-ts / 0.07)
             + np.sin(2 * np.pi * 185 * ts) * np.exp(-ts / 0.05))
    th = t[: int(0.06 * sr)]
    hat = _band_noise(rng, len(th), sr, 5000, 0.49 * sr) * 0.4 * np.exp(-th / 0.015)
    extra_kick = rng.random() < 0.5
    for b in range(sc.bars):
        t0 = sc.bar_start(b)
        for beat in range(4):
            pos = int((t0 + beat * sc.beat) * sr)
            _place(out, pos, (kick if beat % 2 == 0 else snare).astype(np.float32), rng.uniform(0.8, 1.0))
            for half in range(2):
                _place(out, pos + int(half * sc.beat / 2 * sr), hat.astype(np.float32), 1.0 if half == 0 else 0.6)
        if extra_kick:
            _place(out, int((t0 + 2.5 * sc.beat) * sr), kick.astype(np.float32), 0.6)
    return out / np.float32(np.max(np.abs(out)) + 1e-12)


_INSTRUMENTS = {"guitar": _guitar, "piano": _piano, "strings": _strings, "drums": _drums, "synth": _synth,
                "voice": _voice}


# ----------------------------------------------------------------------------------------------
# Carriers of the resolution tags. The four frequency/time carriers play in every clip.
# ----------------------------------------------------------------------------------------------

def _dyad(rng: np.random.Generator, sc: _Score, semitone: bool) -> np.ndarray:
    """Two sines per bar, 1 semitone apart (tag) or 2-3 (decoy), placed symmetrically around a centre
    drawn from the same range for both; either note is up to 12 dB softer than the other.

    Wide mel triangles are linear in frequency, so they see a dyad as one tone at its energy-weighted
    mean frequency: drawing the centre (not the lower note) keeps that mean the same for tag and decoy,
    and the random balance blurs what a triangle's corner could tell about the spread.
    """
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    length = int(sc.bar * sr)
    fade = _fade(length, sr, 0.05, 0.08)
    for b in range(sc.bars):
        centre = rng.uniform(103.0, 108.0)  # MIDI: 3.14-4.19 kHz; notes 3.0-4.6 kHz, >= 6 FFT bins apart
        interval = 1.0 if semitone else rng.uniform(2.0, 3.0)
        freqs = np.array([_midi_hz(centre - interval / 2), _midi_hz(centre + interval / 2)])
        amps = np.array([1.0, 10 ** (rng.uniform(-12, 0) / 20)])[rng.permutation(2)]
        _place(out, int(sc.bar_start(b) * sr), _partials(freqs, amps, length, sr, phases=rng.random(2)) * fade)
    return _unit_rms(out)


WARBLE = 0.03
"""Half the spacing of the vibrato decoy's two pitches (relative): lines 6 % apart, >= 89 Hz (2.8 FFT
bins) at 1.48 kHz, so they do not beat within one 512-sample frame, yet close enough that the corners
of 16-band triangles (18 % apart) rarely fall between them."""


def _lead(rng: np.random.Generator, sc: _Score, vibrato: bool) -> np.ndarray:
    """A whistle (pure tone, 1.48-2.96 kHz), one note per bar (two when bars are long): with vibrato
    (tag) or with a warble between two steady pitches 6 % apart (decoy), at the same rate.

    The decoy is what a wide mel triangle cannot tell from vibrato: a triangle is linear in frequency,
    so it measures a tone's power-weighted mean frequency, and the warble's power moves between its
    two pitches so that this mean follows the vibrato's excursion while the power stays constant. A
    steady tone would not do: wide bands still see vibrato as power sliding along a triangle's slopes.
    """
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    cents = rng.uniform(15, 30)
    excursion = 2 ** (cents / 1200) - 1  # relative, 0.9-1.7 %, below WARBLE
    rate = rng.uniform(5, 7)
    lfo_phase = rng.random()
    per_bar = 2 if sc.bar > 3.0 else 1
    length = int(sc.bar / per_bar * sr)
    fade = _fade(length, sr, 0.04, 0.06)
    for b in range(sc.bars):
        chord = sc.chord(b)
        for h in range(per_bar):
            t0 = sc.bar_start(b) + h * sc.bar / per_bar
            f0 = _midi_hz(_place_pc(chord[int(rng.integers(3))], 96))  # F#6..F#7
            lfo = np.sin(2 * np.pi * (rate * (t0 + np.arange(length) / sr) + lfo_phase))
            if vibrato:
                cycles = np.cumsum(f0 * 2.0 ** (cents / 1200 * lfo)) / sr
                note = np.sin((2 * np.pi * (cycles - np.floor(cycles))).astype(np.float32))
            else:
                mix = excursion / WARBLE * lfo  # power share moves between the two pitches
                gains = np.sqrt(np.stack([1 - mix, 1 + mix]).clip(0.0, None)).astype(np.float32)
                freqs = f0 * np.array([1 - WARBLE, 1 + WARBLE])
                note = np.sum(gains * _partials_each(freqs, length, sr, rng.random(2)), axis=0)
            _place(out, int(t0 * sr), note * fade)
    return _unit_rms(out)


def _ticks(rng: np.random.Generator, sc: _Score, isochronous: bool) -> np.ndarray:
    """16th-note clicks, 4 per beat (tag), or click pairs 55-70 ms apart at half that rate (decoy).

    Both give the same clicks per second, and both follow the tempo, so they reinforce the tempo tags
    instead of masking them.
    """
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    rate = 4.0 / sc.beat
    m = int(0.015 * sr)
    click = _band_noise(rng, 4 * m, sr, 2000, 5000)[:m] * np.exp(-np.arange(m) / (0.003 * sr))
    click[: m // 10] *= np.linspace(0.0, 1.0, m // 10)  # a 1.5 ms onset keeps the click inside its band
    click = (click / np.max(np.abs(click))).astype(np.float32)
    # the pair gap stays longer than the 512-sample window at 12 kHz (43 ms) and well off half the period
    gap = 1.0 / rate if isochronous else min(rng.uniform(0.055, 0.070), 0.35 * 2.0 / rate)
    t = sc.start
    while t < sc.n / sr:
        _place(out, int(t * sr), click)
        _place(out, int((t + gap) * sr), click)
        t += 2.0 / rate
    return out


def _pad(rng: np.random.Generator, sc: _Score, tremolo: bool) -> np.ndarray:
    """An organ pad (root and fifth of each bar's chord) under tremolo, 3-8 per beat (tag), or a swell
    of 1/4 to 1 per beat (decoy), of the same depth."""
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    length = int(sc.bar * sr) + int(0.05 * sr)
    fade = _fade(length, sr, 0.05, 0.05)
    cache: dict[tuple[int, int], np.ndarray] = {}
    for b in range(sc.bars):
        chord = sc.chord(b)
        notes = (_place_pc(chord[0], 57), _place_pc(chord[2], 57))  # 165-330 Hz, partials to 1 kHz
        if notes not in cache:
            f = np.array([_midi_hz(m) * h for m in notes for h in (1, 2, 3)])
            amps = np.array([1.0, 0.35, 0.15] * 2)
            cache[notes] = _partials(f, amps, length, sr, phases=rng.random(6)) * fade
        _place(out, int(sc.bar_start(b) * sr), cache[notes])
    # synced to the beat, so the modulation follows the tempo instead of masking it
    if tremolo:  # 3, 4, 6 or 8 per beat, whichever is nearest 8.5 Hz: 6.8-10.2 Hz over the tempo ranges
        rate = min((k / sc.beat for k in (3, 4, 6, 8)), key=lambda r: abs(r - 8.5))
    else:
        rate = float(rng.choice((0.25, 0.5, 1.0))) / sc.beat
    depth = rng.uniform(0.5, 0.9)
    t = np.arange(sc.n) / sr - sc.start
    gain = 1 - depth * (0.5 - 0.5 * np.cos(2 * np.pi * rate * t))
    return _unit_rms(out * gain.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# One clip.
# ----------------------------------------------------------------------------------------------

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
    sc = _score(rng, tags, n, sample_rate)
    mix = np.zeros(n, dtype=np.float32)

    def level(lo_hi: tuple[float, float]) -> float:
        return 10 ** (rng.uniform(*lo_hi) / 20)

    for name, render in _INSTRUMENTS.items():
        if name in tags:
            scale = _DRUM_PEAK if name == "drums" else 1.0  # drums come unit-peak, the others unit-RMS
            mix += np.float32(scale * level(_INSTRUMENT_DB)) * render(rng, sc)
    mix += np.float32(level(_CARRIER_DB["dyad"])) * _dyad(rng, sc, "semitone" in tags)
    mix += np.float32(level(_CARRIER_DB["lead"])) * _lead(rng, sc, "vibrato" in tags)
    mix += np.float32(level(_CARRIER_DB["ticks"])) * _ticks(rng, sc, "ticks" in tags)
    mix += np.float32(level(_CARRIER_DB["pad"])) * _pad(rng, sc, "tremolo" in tags)
    if "air" in tags:
        mix += np.float32(level(_CARRIER_DB["air"])) * _band_noise(rng, n, sample_rate, 6300, 7200)
    if plan.air_decoy:
        mix += np.float32(level(_CARRIER_DB["air"])) * _band_noise(rng, n, sample_rate, 4300, 5200)

    loudness = "loud" if "loud" in tags else "quiet" if "quiet" in tags else "normal"
    target = 10 ** (rng.uniform(*_LOUDNESS_DBFS[loudness]) / 20)
    mix *= np.float32(target / float(np.sqrt(np.mean(np.square(mix, dtype=np.float64)))))
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK_LIMIT:  # a static gain: a limiter's moving gain would itself be a tremolo
        mix *= np.float32(PEAK_LIMIT / peak)
    return mix


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
    except (OSError, ValueError):
        return False
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
        split_tag_counts={s: {t: sum(t in p.tags for p in plans if _SPLIT_OF_FOLDER[p.folder] == s)
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


def _run(jobs: list, workers: int) -> Iterator[tuple[int, float, float]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_render_clip, jobs)
        return
    # spawn: the caller may hold torch/OpenMP threads, which fork would copy in a broken state
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=ignore_interrupts)
    try:
        yield from pool.map(_render_clip, jobs, chunksize=1)
    finally:  # on Ctrl-C too: clips being rendered are not waited for
        pool.shutdown(wait=True, cancel_futures=True)


def generate(out_dir: str | Path, clips: int = 600, seed: int = 0, clip_seconds: float = framing.PAPER_CLIP_SECONDS,
             sample_rate: int = 16000, workers: int | None = None, progress: bool = True) -> SynthSummary:
    """Write the synthetic dataset to out_dir (MP3 folders 0-f, synthetic.json, annotations_final.csv).

    Returns at once, touching nothing, when out_dir already holds a complete dataset with the same
    (clips, seed, clip_seconds, sample_rate). Otherwise, under an exclusive lock on out_dir, the old
    done-markers go first, every MP3 is written atomically, then synthetic.json and last
    annotations_final.csv, so an interrupted run never looks complete and the next call redoes it.

    `workers` (default os.cpu_count()) processes render clips; the output does not depend on it.
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
    for folder in FOLDERS:
        (out / folder).mkdir(exist_ok=True)
    _clean_stale(out, {p.mp3_path for p in plans})

    clips = len(plans)
    workers = max(1, min(workers or os.cpu_count() or 1, clips))
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
