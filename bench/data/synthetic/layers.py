"""The sound layers of a clip: instruments (tags that need no particular resolution) and the carriers
of the resolution tags, built from small vectorised blocks. Each returns a float32 track at unit-ish level."""

from __future__ import annotations

import numpy as np

from bench.data.synthetic.score import Score, midi_hz, place_pc

# ----------------------------------------------------------------------------------------------
# Sound: small vectorised building blocks. Every generator returns float32 at unit-ish level.
# ----------------------------------------------------------------------------------------------

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


def band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float, taper: float = 0.1) -> np.ndarray:
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
# Instruments (tags that need no particular resolution). Each returns a unit-RMS float32 track.
# ----------------------------------------------------------------------------------------------

def _guitar(rng: np.random.Generator, sc: Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    pluck = rng.uniform(0.12, 0.22)
    tau1 = rng.uniform(0.7, 1.3)
    cache: dict[int, np.ndarray] = {}

    def note(midi: int) -> np.ndarray:
        if midi not in cache:
            f0 = midi_hz(midi)
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
            midi = place_pc(chord[idx], sc.centre + 4 * idx)
            _place(out, int((sc.bar_start(b) + j * sc.beat / 2) * sr), note(midi), rng.uniform(0.6, 1.0))
    return _unit_rms(out)


def _piano(rng: np.random.Generator, sc: Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    cache: dict[int, np.ndarray] = {}
    length = int(2 * sc.beat * sr)  # notes are damped at the next chord

    def note(midi: int) -> np.ndarray:
        if midi not in cache:
            f0 = midi_hz(midi)
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
                _place(out, t, note(place_pc(pc, sc.centre + 4 * i)), v)
            _place(out, t, note(place_pc(chord[0], sc.centre - 12)), 0.8 * v)
    return _unit_rms(out)


def _strings(rng: np.random.Generator, sc: Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    length = int(sc.bar * sr)
    attack = rng.uniform(0.15, 0.35)
    cache: dict[int, np.ndarray] = {}

    def note(midi: int) -> np.ndarray:
        if midi not in cache:
            f0 = midi_hz(midi)
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
            _place(out, t, note(place_pc(pc, sc.centre + 3 + 4 * i)))
    return _unit_rms(out)


def _synth(rng: np.random.Generator, sc: Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    square = rng.random() < 0.4
    cutoff = rng.uniform(1500, 4000)
    cache: dict[tuple[int, int], np.ndarray] = {}

    def note(midi: int, length: int) -> np.ndarray:
        if (midi, length) not in cache:
            f0 = midi_hz(midi)
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
            midi = place_pc(pc, sc.centre + 12)
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


def _voice(rng: np.random.Generator, sc: Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    centre = min(max(sc.centre + 7, 45), 79)  # a singable range whatever the register
    scale_formants = 1.0 if centre < 60 else 1.15
    cache: dict[tuple[int, str, int], np.ndarray] = {}

    def note(midi: int, vowel: str, length: int) -> np.ndarray:
        key = (midi, vowel, length)
        if key not in cache:
            f0 = midi_hz(midi)
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
            midi = place_pc(sc.scale[degree % 7], centre)
            vowel = "aeiou"[int(rng.integers(5))]
            _place(out, int(t * sr), note(midi, vowel, int(beats * sc.beat * sr)))
        degree += int(rng.choice((-1, 1, 1, -2, 2, 0)))
        t += beats * sc.beat
    return _unit_rms(out)


def _drums(rng: np.random.Generator, sc: Score) -> np.ndarray:
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    t = np.arange(int(0.4 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(45 + 75 * np.exp(-t / 0.04)) / sr) * np.exp(-t / 0.18)
    ts = t[: int(0.25 * sr)]
    snare = (band_noise(rng, len(ts), sr, 200, 6000) * 0.5 * np.exp(-ts / 0.07)
             + np.sin(2 * np.pi * 185 * ts) * np.exp(-ts / 0.05))
    th = t[: int(0.06 * sr)]
    hat = band_noise(rng, len(th), sr, 5000, 0.49 * sr) * 0.4 * np.exp(-th / 0.015)
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


INSTRUMENTS = {"guitar": _guitar, "piano": _piano, "strings": _strings, "drums": _drums, "synth": _synth,
                "voice": _voice}


# ----------------------------------------------------------------------------------------------
# Carriers of the resolution tags. The four frequency/time carriers play in every clip.
# ----------------------------------------------------------------------------------------------

def dyad(rng: np.random.Generator, sc: Score, semitone: bool) -> np.ndarray:
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
        freqs = np.array([midi_hz(centre - interval / 2), midi_hz(centre + interval / 2)])
        amps = np.array([1.0, 10 ** (rng.uniform(-12, 0) / 20)])[rng.permutation(2)]
        _place(out, int(sc.bar_start(b) * sr), _partials(freqs, amps, length, sr, phases=rng.random(2)) * fade)
    return _unit_rms(out)


WARBLE = 0.03
"""Half the spacing of the vibrato decoy's two pitches (relative): lines 6 % apart, >= 89 Hz (2.8 FFT
bins) at 1.48 kHz, so they do not beat within one 512-sample frame, yet close enough that the corners
of 16-band triangles (18 % apart) rarely fall between them."""


def lead(rng: np.random.Generator, sc: Score, vibrato: bool) -> np.ndarray:
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
            f0 = midi_hz(place_pc(chord[int(rng.integers(3))], 96))  # F#6..F#7
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


def ticks(rng: np.random.Generator, sc: Score, isochronous: bool) -> np.ndarray:
    """16th-note clicks, 4 per beat (tag), or click pairs 55-70 ms apart at half that rate (decoy).

    Both give the same clicks per second, and both follow the tempo, so they reinforce the tempo tags
    instead of masking them.
    """
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    rate = 4.0 / sc.beat
    m = int(0.015 * sr)
    click = band_noise(rng, 4 * m, sr, 2000, 5000)[:m] * np.exp(-np.arange(m) / (0.003 * sr))
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


def pad(rng: np.random.Generator, sc: Score, tremolo: bool) -> np.ndarray:
    """An organ pad (root and fifth of each bar's chord) under tremolo, 3-8 per beat (tag), or a swell
    of 1/4 to 1 per beat (decoy), of the same depth."""
    sr, out = sc.sr, np.zeros(sc.n, dtype=np.float32)
    length = int(sc.bar * sr) + int(0.05 * sr)
    fade = _fade(length, sr, 0.05, 0.05)
    cache: dict[tuple[int, int], np.ndarray] = {}
    for b in range(sc.bars):
        chord = sc.chord(b)
        notes = (place_pc(chord[0], 57), place_pc(chord[2], 57))  # 156-294 Hz, partials to 1 kHz
        if notes not in cache:
            f = np.array([midi_hz(m) * h for m in notes for h in (1, 2, 3)])
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
