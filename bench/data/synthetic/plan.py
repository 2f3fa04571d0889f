"""The tag plan: which clip carries which tag, in which MTAT folder, under which file name.

Tags are
stratified per folder, so every split holds each tag at its share (docs/synthetic.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TASKS = ("hiss", "mode")
"""Downstream tasks `bench synth --task` writes beside the dataset, as `<task>.csv` (bench.data.synthetic.tasks)."""

FOLDERS = tuple("0123456789abcdef")
"""MTAT's folders; downstream, `0`-`b` are train, `c` valid, `d`-`f` test."""

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
        "kick 45-120 Hz, snare 0.2-6 kHz, hat 5-7.3 kHz (made up to 7.8; the MP3 keeps 7.3)"),
    Tag("synth", "sawtooth or square lead melody in 8th and quarter notes", "none", "", 0.20,
        "f0 an octave above the register, partials < 5.5 kHz"),
    Tag("voice", "sung vowels (a e i o u) through formant filters, quarter and half notes", "none", "", 0.08,
        "f0 ~110-700 Hz by register, formants 0.3-3.4 kHz"),
    Tag("slow", "56-78 BPM; notes, drums, clicks and pad modulation all follow the beat", "none", "", 0.30,
        "beat 0.9-1.3 Hz", group="tempo"),
    Tag("fast", "138-176 BPM (not slow, not fast: 90-124 BPM)", "none", "", 0.25, "beat 2.3-2.9 Hz",
        group="tempo"),
    Tag("low", "the instruments play around E2 (drawn among clips with a pitched instrument)", "none", "", 0.22,
        "f0 ~26-250 Hz", group="register"),
    Tag("high", "the instruments play around D5 (neither: around G3)", "none", "", 0.22, "f0 ~185-1760 Hz",
        group="register"),
    Tag("loud", "mix at -16..-13 dBFS RMS, lower where the -1 dBFS peak limit binds (loud drums)", "none", "", 0.25,
        "all",
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
        "root and fifth at 156-294 Hz, 3 partials"),
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

# ----------------------------------------------------------------------------------------------
# The plan: folders, names and tags of every clip (global, so that tags can be stratified).
# ----------------------------------------------------------------------------------------------

SPLIT_OF_FOLDER = {f: "train" for f in FOLDERS[:12]} | {"c": "valid"} | {f: "test" for f in "def"}


def folder_of(clip: int) -> str:
    """The folder of clip number `clip` of the plan: they take the 16 folders in turn."""
    return FOLDERS[clip % len(FOLDERS)]


def split_counts(clips: int) -> dict[str, int]:
    """Clips per split of a synthetic set of `clips` clips (each in its `folder_of`), before any clip is
    dropped for lacking a tag."""
    counts = dict.fromkeys(("train", "valid", "test"), 0)
    for i in range(clips):
        counts[SPLIT_OF_FOLDER[folder_of(i)]] += 1
    return counts


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
    by_folder = {f: [i for i in range(clips) if folder_of(i) == f] for f in FOLDERS}
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
        folder = folder_of(i)
        start = (0, 30, 59, 88)[(i // len(FOLDERS)) % 4]
        name = f"synthetic-artist_{(i // len(FOLDERS)) % 50:02d}-track_{i:04d}-{start}-{start + 29}.mp3"
        plans.append(ClipPlan(index=i, clip_id=str(i), folder=folder, mp3_path=f"{folder}/{name}",
                              tags=frozenset(tags[i]), air_decoy=air_decoy[i]))
    return plans
