"""Which 2-byte sample format should the waveform cache use? Prints the log-mel error of int16 and
float16 storage against float32, for a loud, a medium and a quiet clip, both log types.

    .venv/bin/python benchmarks/cache_dtype.py
"""

import numpy as np
import torch

from bench.core import framing
from bench.train.frontend import MelFrontend


def test_signal(seconds: float, sr: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(framing.clip_samples(seconds, sr)) / sr
    chord = sum(np.sin(2 * np.pi * f * t + 0.8 * np.sin(2 * np.pi * 5 * t)) for f in (220, 277, 330))
    clicks = np.exp(-((t * 8) % 1.0) * 60) * rng.standard_normal(t.size)
    x = chord + 2 * clicks + 0.05 * rng.standard_normal(t.size)
    return (x / np.abs(x).max()).astype(np.float32)


def main():
    sr = 16000
    x = test_signal(10.0, sr)
    print(f"{'peak':>5} {'log':>4} {'format':>8} {'max abs':>9} {'mean abs':>9} {'99.9 %':>9}")
    for peak in (0.9, 0.1, 0.01):
        y = x * peak
        stored = {
            "int16": np.round(np.clip(y, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32767,
            "float16": y.astype(np.float16).astype(np.float32),
        }
        for log in ("log", "dB"):
            front = MelFrontend(sr, 96, 1, log)
            ref = front(torch.from_numpy(y)[None])
            for name, z in stored.items():
                err = (front(torch.from_numpy(z)[None]) - ref).abs().flatten()
                print(f"{peak:>5} {log:>4} {name:>8} {err.max():9.2e} {err.mean():9.2e} {err.quantile(0.999):9.2e}")


if __name__ == "__main__":
    main()
