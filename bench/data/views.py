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

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave = np.asarray(self.cache.waveforms[self.rows[i]], dtype=np.float32)
        return torch.from_numpy(wave), self.targets[i]


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
