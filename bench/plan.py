"""`bench plan`: what a grid costs before anything is trained (no data, no training).

One row per (architecture, mel configuration): the input shape each run will see and the storage one
clip's spectrogram takes. Rows are plain dicts so the CLI can print them as a table, CSV or JSON.
"""

from __future__ import annotations

from typing import Any

from bench import framing
from bench.spec import Configuration, Spec


def plan_row(config: Configuration, clip_seconds: float) -> dict[str, Any]:
    mel = config.mel
    n_frames = mel.n_frames(clip_seconds)
    return {
        "arch": config.arch,
        "sample_rate": mel.sample_rate,
        "n_mels": mel.n_mels,
        "hop_multiplier": mel.hop_multiplier,
        "log": mel.log,
        "n_frames": n_frames,
        "input_shape": f"{mel.n_mels}x{n_frames}",
        "storage_bytes_f32": framing.storage_bytes(mel.n_mels, n_frames, 4),
        "storage_bytes_f16": framing.storage_bytes(mel.n_mels, n_frames, 2),
    }


def plan_rows(spec: Spec) -> list[dict[str, Any]]:
    return [plan_row(c, spec.dataset.clip_seconds) for c in spec.configurations()]
