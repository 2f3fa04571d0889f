"""Torch views over a prepared cache: batches of clips (device-resident or through a loader), and
the non-overlapping segments MusiCNN is evaluated on.

Datasets return raw waveforms (float16, as cached) and multi-hot targets; the mel is computed on the
training device, per batch (`bench.train.frontend.MelFrontend`; MusiCNN's random training segment is
framed there directly). Evaluation segments are cut from the mel, in frames, so a segment is exactly
what the network is built for.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from bench.core.store import close_inherited_locks
from bench.data.cached_waveforms import CachedWaveforms


class ClipDataset(torch.utils.data.Dataset):
    """(waveform float16 (clip_samples,), target float32 (n_tags,)) for every decoded clip of a split.

    Waveforms stay float16, as cached: half the bytes through a loader and over PCIe; the front end
    casts them to float32 on the training device.
    """

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

    @property
    def item_bytes(self) -> int:
        """Bytes of one item as a loader hands it over: its waveform (float16) and its target (float32)."""
        return self.cache.waveforms.shape[1] * self.cache.waveforms.dtype.itemsize + self.targets[0].nbytes

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave = np.array(self.cache.waveforms[self.rows[i]], dtype=np.float16)
        return torch.from_numpy(wave), self.targets[i]


def epoch_order(n: int, shuffle: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """The order in which an epoch visits a split's n clips: one permutation drawn from `generator`
    (nothing else is drawn from it), or 0..n-1. Both batch sources below follow it."""
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


def full_batches(order: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`order` without its last partial batch, so every training step has the same shape (a compiled
    graph stays valid, cuDNN's autotuned kernels apply). A split smaller than one batch is kept whole.
    With a fresh permutation each epoch, every clip is still seen."""
    usable = len(order) // batch_size * batch_size
    return order[:usable] if usable else order


class OrderSampler(torch.utils.data.Sampler):
    """The indices of one epoch, set before each pass: one DataLoader (and its persistent workers)
    serves every epoch of a run."""

    def __init__(self):
        self.order: list[int] = []

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def leave_job_signals_to_the_run(_worker_id: int = 0) -> None:
    """A loader worker ignores the signals a Slurm job gets when it ends, which Slurm sends to every
    process of the job step; the run's process answers them.

    SIGUSR2, before the time limit (`--signal=USR2@90`): a forked worker would otherwise run the
    submitit handler it inherited (checkpoint the job, writing the same file, and race the run's own
    `scontrol requeue`); one started by spawn or forkserver would die of it.

    SIGTERM, at a requeue, the time limit, `scancel` or preemption: torch's worker handler exits
    quietly only where the loader itself sends it, and otherwise dies of it; the run's process then
    raised "DataLoader worker ... exited unexpectedly", and the run, still training (a submitit task
    waits for SIGKILL), was recorded as failed instead of resuming from its checkpoint. Ignoring it,
    a worker still ends when the loader stops it (its done event) or its parent is gone (torch's
    watchdog); only a worker hung in a read outlives the loader's SIGTERM, until the run's process ends."""
    for name in ("SIGUSR2", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def start_loader_worker(worker_id: int) -> None:
    """A loader worker's first step: the job's signals left to the run, the run's locks to it too
    (a forked worker shares their descriptors, and would hold them past its parent's death)."""
    leave_job_signals_to_the_run(worker_id)
    close_inherited_locks()


LOADER_START_METHOD = "fork" if sys.platform.startswith("linux") else None
"""How loader workers start: by fork on Linux whatever Python's default (forkserver from 3.14 on, whose
workers each import torch again, for up to 4 workers per split a run reads: docs/performance.md,
measurements behind the code's choices); the platform's default elsewhere (spawn on macOS, where
fork is unsafe). The workers only read the cache: they never touch CUDA."""


LOADER_PREFETCH = 2
"""Batches each loader worker keeps ready (torch's default `prefetch_factor`)."""

SHARED_MEMORY = Path("/dev/shm")
"""Where a loader worker's batches wait for the run's process: torch hands tensors between processes
as shared-memory files there."""


def shared_memory_free() -> int | None:
    """Bytes free in SHARED_MEMORY, or None where the platform has none (macOS)."""
    try:
        return shutil.disk_usage(SHARED_MEMORY).free
    except OSError:
        return None


def workers_for_shared_memory(wanted: int, batch_bytes: int, free_bytes: int | None, runs: int = 1) -> int:
    """Loader workers (at most `wanted`) whose batches ready at once (LOADER_PREFETCH each, of
    `batch_bytes`) take at most this run's share of half the free shared memory, among the `runs` on
    the machine (which start together, each seeing it all free). A container's /dev/shm is 64 MiB by
    default (Docker, Kubernetes), where a worker's batches of full clips (MTAT: 32 x 465,600 float16
    samples, 29.8 MB) would not fit, and the worker dies of a bus error, failing the run. None (no such
    memory): `wanted`."""
    if free_bytes is None or wanted <= 0:
        return max(0, wanted)
    return max(0, min(wanted, (free_bytes // 2 // max(1, runs)) // (LOADER_PREFETCH * max(1, batch_bytes))))


class LoaderBatches:
    """Batches read from the cache by a DataLoader in a given order (worker processes kept alive
    across epochs, pinned memory, float16 as stored)."""

    def __init__(self, dataset: ClipDataset, batch_size: int, workers: int = 0, pin_memory: bool = False):
        self.sampler = OrderSampler()
        # The loader draws a base seed for its workers from `generator`; a throwaway one keeps that draw
        # away from the global RNG (dropout, initialisation) and from the run's epoch generator.
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                                  num_workers=workers, pin_memory=pin_memory,
                                                  persistent_workers=workers > 0, generator=torch.Generator(),
                                                  prefetch_factor=LOADER_PREFETCH if workers else None,
                                                  worker_init_fn=start_loader_worker,
                                                  multiprocessing_context=LOADER_START_METHOD if workers else None)

    def batches(self, order: torch.Tensor):
        self.sampler.order = order.tolist()
        return iter(self.loader)

    def close(self) -> None:
        """End the worker processes now rather than when the loader is collected (the persistent
        workers' iterator is the loader's `_iterator`, as torch keeps it)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


class ResidentWaveforms:
    """Every cached waveform of one sample rate (float16, as cached) on the training device.

    One copy serves every split and every run of a worker at that sample rate (`resident_waveforms`).
    """

    COPY_ROWS = 256
    """Rows copied to the device at a time: the host never holds the whole cache as a second copy."""

    def __init__(self, cache: CachedWaveforms, device: torch.device):
        waveforms = cache.waveforms
        self.key = resident_key(cache, device)
        self.device = torch.device(device)
        self.waves = torch.empty(tuple(waveforms.shape), dtype=torch.float16, device=self.device)
        for start in range(0, len(waveforms), self.COPY_ROWS):
            # a copy: the cache is mapped read-only, which torch warns about (once per worker) as unsafe
            chunk = torch.from_numpy(np.array(waveforms[start:start + self.COPY_ROWS], dtype=np.float16))
            self.waves[start:start + len(chunk)].copy_(chunk)

    @property
    def nbytes(self) -> int:
        return self.waves.numel() * self.waves.element_size()

    def split(self, dataset: ClipDataset) -> ResidentClips:
        return ResidentClips(self, dataset)


class ResidentClips:
    """A split's waveforms and targets on the training device.

    Batches are gathered there, with no loader and no host-to-device copy per step, in the same
    `epoch_order` as the loader, so a run sees the same batches whichever path feeds it.
    """

    def __init__(self, resident: ResidentWaveforms, dataset: ClipDataset):
        self.waves = resident.waves
        self.device = resident.device
        self.rows = torch.from_numpy(np.asarray(dataset.rows, dtype=np.int64)).to(self.device)
        self.targets = dataset.targets.to(self.device)

    def __len__(self) -> int:
        return len(self.targets)

    def batches(self, batch_size: int, order: torch.Tensor):
        """(waveform float16 (B, samples), target (B, n_tags)) on the device."""
        order = order.to(self.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield self.waves[self.rows[index]], self.targets[index]


def resident_key(cache: CachedWaveforms, device: torch.device) -> tuple[str, str]:
    return str(cache.folder), str(torch.device(device))


_resident: ResidentWaveforms | None = None
"""The worker's device-resident copy (a worker is one process and runs one run at a time)."""


def resident_waveforms(cache: CachedWaveforms, device: torch.device, fits) -> ResidentWaveforms | None:
    """The worker's device-resident copy of `cache`, uploaded once and reused by the next runs at the
    same sample rate; None when it does not fit (`fits(n_bytes, reusable_bytes)`), then the run reads
    through a loader. A copy of another sample rate is released either way (its memory counts as
    free for the new copy, and a run on the loader path gets it for its activations)."""
    global _resident
    key = resident_key(cache, device)
    if _resident is not None and _resident.key == key:
        return _resident
    n_bytes = int(np.prod(cache.waveforms.shape)) * 2
    reusable = _resident.nbytes if _resident is not None and _resident.device == torch.device(device) else 0
    fit = fits(n_bytes, reusable)
    release_resident()
    if not fit:
        return None
    _resident = ResidentWaveforms(cache, device)
    return _resident


def release_resident() -> None:
    global _resident
    if _resident is not None:
        device = _resident.device
        _resident = None
        if device.type == "cuda":
            torch.cuda.empty_cache()


def pad_frames(mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Pad (B, F, T) on the right to at least `frames` with each clip's minimum (its silence level:
    0 for `log`, the floor for `dB`), not with zeros, which would be loud in dB."""
    missing = frames - mel.shape[-1]
    if missing <= 0:
        return mel
    floor = mel.amin(dim=(1, 2), keepdim=True).expand(-1, mel.shape[1], missing)
    return torch.cat([mel, floor], dim=2)


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
