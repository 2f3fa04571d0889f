"""Stand-ins for what a CUDA device does differently, so its code paths run and fail here on the CPU.

`DeviceTensor` behaves like a tensor on a GPU as far as the host is concerned: `.numpy()` refuses
(with CUDA's own message), and every operation that makes the host wait for the device (`.item()`,
`bool()`, `float()`, `int()`, use as an index, formatting, `.tolist()`, `.cpu()`) is counted in
`DeviceTensor.syncs`. (`.to(device)` is not: on this CPU the stand-in device is the CPU.) Operations on it
return DeviceTensors (torch's subclass propagation), as results of device tensors stay on the device.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from bench.spec import parse_spec


class DeviceTensor(torch.Tensor):
    syncs = 0

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                        "to host memory first.")

    def _host(self) -> torch.Tensor:
        DeviceTensor.syncs += 1
        with torch._C.DisableTorchFunctionSubclass():
            return torch.Tensor.cpu(self).as_subclass(torch.Tensor)

    def cpu(self, *args, **kwargs):
        return self._host()

    def item(self):
        return self._host().item()

    def tolist(self):
        return self._host().tolist()

    def __bool__(self):
        return bool(self._host())

    def __float__(self):
        return float(self._host())

    def __int__(self):
        return int(self._host())

    def __index__(self):
        return self._host().__index__()

    def __format__(self, spec):  # f"{loss:.3f}" reads the value too
        return self._host().__format__(spec)

    def __array__(self, *args, **kwargs):
        self.numpy()


def on_device(tensor: torch.Tensor) -> DeviceTensor:
    return tensor.as_subclass(DeviceTensor)


class ToyCache:
    """What the trainer reads from a prepared cache: float16 waveforms whose tags are audible (tag k
    adds a tone at 1 kHz x (k + 1)), split rows, multi-hot targets and the tag names."""

    def __init__(self, clips=(20, 10, 10), seconds=1.0, sample_rate=16000, n_tags=3, seed=0):
        rng = np.random.default_rng(seed)
        n = sum(clips)
        t = np.arange(round(seconds * sample_rate)) / sample_rate
        self._targets = (rng.random((n, n_tags)) < 0.5).astype(np.float32)
        self._targets[:n_tags + 1] = np.vstack([np.eye(n_tags), np.zeros(n_tags)])  # every tag + and -
        waves = 0.05 * rng.standard_normal((n, t.size))
        for k in range(n_tags):
            waves += 0.3 * self._targets[:, k:k + 1] * np.sin(2 * np.pi * 1000 * (k + 1) * t)[None]
        self.waveforms = waves.astype(np.float16)
        self.splits = np.repeat(["train", "valid", "test"], clips)
        for split in ("valid", "test"):  # each evaluated split sees every tag present and absent
            rows = np.flatnonzero(self.splits == split)
            self._targets[rows[:n_tags + 1]] = self._targets[:n_tags + 1]
            self.waveforms[rows[:n_tags + 1]] = self.waveforms[:n_tags + 1]
        self.index = SimpleNamespace(tag_names=[f"tone{k + 1}k" for k in range(n_tags)])
        self.folder = f"toy-{id(self)}"
        self.manifest = {"failed": [], "padded": 0}

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        return self._targets[rows]


def tiny_runs(archs=("vgg",), n_mels=(16,), hops=(2,), batch_size=8, epochs=2, seconds=1.0, patience=5,
              precision="fp32"):
    """RunSpecs of a tiny grid (16 kHz, 1 s clips, width 1/16) for the trainer."""
    raw = {
        "name": "tiny", "seeds": [0],
        "dataset": {"name": "synthetic", "clip_seconds": seconds, "n_tags": 3},
        "arch": {"vgg": {"width": 0.0625}, "musicnn": {"width": 0.0625, "segment_seconds": 0.5}},
        "protocol": {"batch_size": batch_size, "max_epochs": epochs, "patience": patience, "precision": precision},
        "grid": [{"arch": list(archs), "sample_rate": [16000], "n_mels": list(n_mels), "hop_multiplier": list(hops),
                  "log": ["log"]}],
    }
    return parse_spec(raw, "tiny.toml").runs()
