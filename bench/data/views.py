"""Torch views over a prepared cache: whole clips for VGG, random segments for MusiCNN training,
non-overlapping segments for evaluation.

Datasets return raw waveforms (float32) and multi-hot targets; the mel is computed afterwards on the
training device, per batch (`bench.frontend.MelFrontend`). Segments are cut from that mel, in frames,
so a segment is exactly what the network is built for.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data.cache import CachedWaveforms


class ClipDataset(torch.utils.data.Dataset):
    """(waveform float32 (clip_samples,), target float32 (n_tags,)) for every decoded clip of a split."""

    def __init__(self, cache: CachedWaveforms, split: str):
        self.cache = cache
        self.split = split
        self.rows = cache.rows(split)
        self.targets = torch.from_numpy(cache.targets(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        """Bytes of this split's cached waveforms (as stored, float16)."""
        return len(self.rows) * self.cache.waveforms.shape[1] * self.cache.waveforms.dtype.itemsize

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave = np.asarray(self.cache.waveforms[self.rows[i]], dtype=np.float32)
        return torch.from_numpy(wave), self.targets[i]


def epoch_order(n: int, shuffle: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """The order in which an epoch visits a split's n clips: one permutation drawn from `generator`
    (nothing else is drawn from it), or 0..n-1. Both batch sources below follow it."""
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


def loader_batches(dataset: ClipDataset, batch_size: int, order: torch.Tensor, workers: int = 0,
                   pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batches read from the cache in `order` by a DataLoader (worker processes, pinned memory)."""
    # The loader draws a base seed for its workers from `generator`; a throwaway one keeps that draw
    # away from the global RNG (dropout, initialisation) and from the run's epoch generator.
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(),
                                       num_workers=workers, pin_memory=pin_memory,
                                       generator=torch.Generator())


class ResidentClips:
    """A split's waveforms (float16, as cached) and targets held on the training device.

    Batches are gathered there, with no loader and no host-to-device copy per step, in the same
    `epoch_order` as `loader_batches`, so a run sees the same batches whichever path feeds it.
    """

    COPY_ROWS = 256
    """Rows copied to the device at a time: the host never holds the whole split as a second copy."""

    def __init__(self, dataset: ClipDataset, device: torch.device):
        waveforms = dataset.cache.waveforms
        self.device = torch.device(device)
        self.waves = torch.empty((len(dataset), waveforms.shape[1]), dtype=torch.float16, device=self.device)
        for start in range(0, len(dataset), self.COPY_ROWS):
            rows = dataset.rows[start:start + self.COPY_ROWS]
            self.waves[start:start + len(rows)] = torch.from_numpy(np.asarray(waveforms[rows]))
        self.targets = dataset.targets.to(self.device)

    def __len__(self) -> int:
        return len(self.targets)

    def batches(self, batch_size: int, order: torch.Tensor):
        """(waveform float32 (B, samples), target (B, n_tags)) on the device."""
        order = order.to(self.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield self.waves[index].float(), self.targets[index]


def pad_frames(mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Pad (B, F, T) on the right to at least `frames` with each clip's minimum (its silence level:
    0 for `log`, the floor for `dB`), not with zeros, which would be loud in dB."""
    missing = frames - mel.shape[-1]
    if missing <= 0:
        return mel
    floor = mel.amin(dim=(1, 2), keepdim=True).expand(-1, mel.shape[1], missing)
    return torch.cat([mel, floor], dim=2)


def random_segments(mel: torch.Tensor, segment_frames: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random `segment_frames`-long window per clip: (B, F, T) -> (B, F, segment_frames).

    Clips shorter than a segment are padded on the right with their quietest value (`pad_frames`).
    """
    batch, _, frames = mel.shape
    if frames <= segment_frames:
        return pad_frames(mel, segment_frames)
    starts = torch.randint(0, frames - segment_frames + 1, (batch,), generator=generator, device="cpu")
    index = starts.to(mel.device)[:, None] + torch.arange(segment_frames, device=mel.device)[None, :]
    return torch.gather(mel, 2, index[:, None, :].expand(-1, mel.shape[1], -1))


def eval_segments(mel: torch.Tensor, segment_frames: int) -> tuple[torch.Tensor, int]:
    """Non-overlapping segments from the start: (B, F, T) -> (B * S, F, segment_frames), S.

    S = T // segment_frames (at least 1; a clip shorter than one segment is padded). Predictions for
    a clip are the mean over its S segments: `segment_mean`.
    """
    batch, n_mels, frames = mel.shape
    n_segments = max(1, frames // segment_frames)
    mel = pad_frames(mel, segment_frames)
    used = mel[:, :, : n_segments * segment_frames]
    segments = used.reshape(batch, n_mels, n_segments, segment_frames).permute(0, 2, 1, 3)
    return segments.reshape(batch * n_segments, n_mels, segment_frames), n_segments


def segment_mean(scores: torch.Tensor, n_segments: int) -> torch.Tensor:
    """(B * S, n_tags) segment scores -> (B, n_tags) clip scores (mean over segments)."""
    return scores.reshape(-1, n_segments, scores.shape[-1]).mean(dim=1)
