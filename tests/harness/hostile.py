"""Hostile inputs for the reliability checks (`tests.harness.stress`, tests): bad audio files, random spec
documents, and pickles that try to run code.

Each audio item says what docs/reliability.md promises for it: a file that cannot give a clip is skipped with
a one-line reason (the prefix given here), any other file decodes, whatever its extension, channel
count, sample format or length.
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

DECODES = "decodes"
"""The expected outcome of a file that must give a clip."""

HOURS = 2.0
"""Length of the hours-long file (a sparse WAV: it costs no disk, and decoding must read only its centre)."""


@dataclass(frozen=True)
class AudioCase:
    kind: str
    path: Path
    expect: str | tuple[str, ...]
    """DECODES, or the reason prefix(es) the file is skipped with."""


def _tone(seconds: float, sr: int, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


def _mp3(path: Path, audio: np.ndarray, sr: int = 16000) -> Path:
    sf.write(path, audio, sr, format="MP3", subtype="MPEG_LAYER_III")
    return path


def hours_long_wav(path: Path, hours: float = HOURS, sr: int = 44100, channels: int = 2) -> np.ndarray:
    """A 16-bit PCM WAV of `hours`, silent but for 10 s of tone at its centre; returns that tone (mono).

    The header is written by hand and the silence is a hole in a sparse file, so the file takes
    hours of audio on paper and a few hundred kB on disk.
    """
    frames = int(hours * 3600 * sr)
    block = 2 * channels
    data_bytes = frames * block
    tone = _tone(10.0, sr, freq=330.0)
    pcm = np.repeat((tone * 32767).astype("<i2")[:, None], channels, axis=1).tobytes()
    with open(path, "wb") as handle:
        handle.write(b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE")
        handle.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, 16))
        handle.write(b"data" + struct.pack("<I", data_bytes))
        handle.truncate(44 + data_bytes)
        handle.seek(44 + (frames // 2 - tone.size // 2) * block)
        handle.write(pcm)
    return tone


def bad_audio_corpus(root: Path) -> list[AudioCase]:
    """Write every kind of odd or broken audio file under `root`; 16 kHz unless said otherwise."""
    root.mkdir(parents=True, exist_ok=True)
    sr = 16000
    good = _mp3(root / "good.mp3", _tone(3.0, sr))
    (root / "zero.mp3").write_bytes(b"")
    (root / "truncated.mp3").write_bytes(good.read_bytes()[:300])
    (root / "random.mp3").write_bytes(np.random.default_rng(0).bytes(20000))
    (root / "text.mp3").write_text("this is not audio\n" * 100)
    (root / "folder.mp3").mkdir(exist_ok=True)
    _mp3(root / "silence.mp3", np.zeros(3 * sr, dtype=np.float32))
    _mp3(root / "short.mp3", _tone(0.3, sr))
    nan = _tone(2.0, sr)
    nan[sr // 2: sr // 2 + 100] = np.nan
    sf.write(root / "nan.wav", nan, sr, subtype="FLOAT")
    inf = _tone(2.0, sr)
    inf[sr] = np.inf
    sf.write(root / "inf.wav", inf, sr, subtype="FLOAT")
    sf.write(root / "wav-named.mp3", _tone(3.0, sr), sr, format="WAV", subtype="PCM_16")
    stereo = np.stack([_tone(3.0, sr, 300.0), _tone(3.0, sr, 500.0, seed=1)], axis=1)
    sf.write(root / "stereo.wav", stereo, sr, subtype="PCM_16")
    sf.write(root / "8bit.wav", _tone(3.0, sr), sr, subtype="PCM_U8")
    sf.write(root / "float.wav", _tone(3.0, sr) * 5.0, sr, subtype="FLOAT")  # peaks above full scale
    sf.write(root / "8khz.wav", _tone(3.0, 8000), 8000, subtype="PCM_16")
    hours_long_wav(root / "hours.wav")
    return [
        AudioCase("zero bytes", root / "zero.mp3", "empty file (0 bytes)"),
        AudioCase("truncated MP3", root / "truncated.mp3", ("undecodable", "too short")),
        AudioCase("random bytes", root / "random.mp3", "undecodable"),
        AudioCase("text named .mp3", root / "text.mp3", "undecodable"),
        AudioCase("folder named .mp3", root / "folder.mp3", "undecodable"),
        AudioCase("missing file", root / "missing.mp3", "missing file"),
        AudioCase("silence", root / "silence.mp3", "silent"),
        AudioCase("0.3 s", root / "short.mp3", "too short"),
        AudioCase("NaN samples", root / "nan.wav", "non-finite samples"),
        AudioCase("inf sample", root / "inf.wav", "non-finite samples"),
        AudioCase("WAV named .mp3", root / "wav-named.mp3", DECODES),
        AudioCase("stereo WAV", root / "stereo.wav", DECODES),
        AudioCase("8-bit WAV", root / "8bit.wav", DECODES),
        AudioCase("float WAV", root / "float.wav", DECODES),
        AudioCase("8 kHz WAV", root / "8khz.wav", DECODES),
        AudioCase(f"{HOURS:g} h WAV", root / "hours.wav", DECODES),
        AudioCase("good MP3", good, DECODES),
    ]


def audio_outcome(case: AudioCase, sample_rates: tuple[int, ...] = (16000,), clip_seconds: float = 2.0) -> str | None:
    """None if `case` is handled as promised, else what happened instead."""
    from bench.data.audio import BadAudio, decode_clip

    try:
        decoded = decode_clip(str(case.path), sample_rates, clip_seconds)
    except BadAudio as exc:
        if case.expect == DECODES:
            return f"skipped ({exc})"
        prefixes = case.expect if isinstance(case.expect, tuple) else (case.expect,)
        return None if str(exc).startswith(prefixes) and "\n" not in str(exc) else f"reason {exc!r}"
    except Exception as exc:  # anything but BadAudio escaping the decoder is a crash
        return f"raised {type(exc).__name__}: {exc}"
    if case.expect != DECODES:
        return "decoded, but should have been skipped"
    if not all(np.isfinite(clip).all() for clip in decoded.clips.values()):
        return "decoded to non-finite samples"
    return None


class Exploit:
    """Unpickling this runs `touch <marker>`: the marker's existence proves the code was run."""

    def __init__(self, marker: str | Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"TR1": Exploit(marker)}, protocol=2))
    return path


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A torch checkpoint (zip) whose pickle runs a command when loaded without weights_only."""
    import torch

    torch.save({"epoch": 1, "model": {}, "payload": Exploit(marker)}, path)
    return path


# --------------------------------------------------------------------------------------------
# Random spec documents (hypothesis strategies)

SPEC_KEYS = ("name", "description", "seeds", "dataset", "arch", "protocol", "grid", "path", "clip_seconds",
             "n_tags", "drop_untagged", "clips", "seed", "batch_size", "lr", "max_epochs", "patience",
             "lr_patience", "lr_factor", "weight_decay", "precision", "vgg", "musicnn", "width",
             "segment_seconds", "sample_rate", "n_mels", "hop_multiplier", "log")
BASE_SPEC = {
    "name": "h",
    "seeds": [0],
    "dataset": {"name": "synthetic", "clip_seconds": 3.0},
    "arch": {"vgg": {"width": 0.25}, "musicnn": {"width": 0.25}},
    "protocol": {"max_epochs": 2},
    "grid": [{"arch": ["vgg", "musicnn"], "sample_rate": [16000], "n_mels": [48], "hop_multiplier": [2],
              "log": ["log"]}],
}
"""A valid spec: the mutations below start from it, so most documents are nearly valid."""


def spec_documents():
    """Hypothesis strategy: spec files as bytes, from well-formed TOML near a valid spec to garbage."""
    import tomli_w
    from hypothesis import strategies as st

    keys = st.sampled_from(SPEC_KEYS) | st.text(min_size=1, max_size=10)
    scalars = (st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
               | st.sampled_from([0, -1, 1, 8, 96, 257, 258, 16000, 10**9, 1e-300, 1e300, "vgg", "musicnn",
                                  "log", "dB", "synthetic", "mtat", "bf16", ""]))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(keys, inner, max_size=4), max_leaves=8)

    def mutate(doc: dict, edits: list) -> dict:
        doc = _deep_copy(doc)
        for path, value, delete in edits:
            table = doc
            for key in path[:-1]:
                nxt = table.get(key) if isinstance(table, dict) else None
                if isinstance(nxt, list) and nxt and isinstance(nxt[0], dict):
                    nxt = nxt[0]
                if not isinstance(nxt, dict):
                    break
                table = nxt
            else:
                if delete:
                    table.pop(path[-1], None)
                else:
                    table[path[-1]] = value
        return doc

    paths = st.sampled_from(["", "dataset", "arch", "protocol", "grid", "arch.vgg", "arch.musicnn"]).map(
        lambda p: [k for k in p.split(".") if k])
    edit = st.tuples(st.tuples(paths, keys).map(lambda t: [*t[0], t[1]]), values, st.booleans())
    near_valid = st.lists(edit, min_size=1, max_size=3).map(lambda edits: mutate(BASE_SPEC, edits))
    toml_docs = (near_valid | st.dictionaries(keys, values, max_size=6)).map(
        lambda doc: tomli_w.dumps(doc).encode("utf-8"))
    garbage = st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
    return toml_docs | garbage


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def spec_outcome(path: Path) -> str | None:
    """Run `bench plan` on a spec file: None if it printed a plan (exit 0) or one line (exit 2)."""
    import contextlib
    import io

    from bench.cli import EXIT_USER_ERROR, main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["plan", str(path), "--no-fvcore"])
    except BaseException as exc:  # a traceback for a user's file is the failure looked for
        return f"raised {type(exc).__name__}: {exc}"
    lines = err.getvalue().strip().splitlines()
    if status == 0:
        return None if not lines else f"exit 0 with stderr {lines!r}"
    if status != EXIT_USER_ERROR:
        return f"exit {status}"
    if len(lines) != 1 or not lines[0].startswith("bench plan: error: ") or str(path) not in lines[0]:
        return f"exit 2 but stderr {lines!r}"
    return None


def decode_or_die(job: tuple) -> tuple:
    """A stand-in for the cache's per-file decoder, run in its worker processes: the process is killed
    (as a decoder crash or the out-of-memory killer would end it) on a path ending "crashes", and on a
    path ending "dies-once" the first time only (a marker file beside it remembers); a path ending "slow"
    takes 5 s (but "0.slow")."""
    import signal

    row, path = job[0], str(job[1])
    if path.endswith("crashes"):
        os.kill(os.getpid(), signal.SIGKILL)
    if path.endswith("dies-once") and not Path(path + ".died").exists():
        Path(path + ".died").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if path.endswith("slow") and not path.endswith("0.slow"):
        import time

        time.sleep(5)
    return row, 1, "", {}


def decode_row_or_crash(job: tuple) -> tuple:
    """The cache's own per-file decoder, run in its worker processes, but the process is killed (as a
    decoder crash would end it) on a file whose bytes start with CRASH."""
    import signal

    from bench.data.cache import _decode_row

    if Path(job[1]).read_bytes().startswith(b"CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)
    return _decode_row(job)
