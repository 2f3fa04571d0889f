"""Torch views over a prepared cache: batches of clips (device-resident or read per batch), and
the non-overlapping segments MusiCNN is evaluated on.

Datasets return raw waveforms (float16, as cached) and multi-hot targets; the mel is computed on the
training device, per batch (`bench.train.frontend.MelFrontend`; MusiCNN's random training segment is
framed there directly). Evaluation segments are cut from the mel, in frames, so a segment is exactly
what the network is built for.
"""

from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from bench.data.cached_waveforms import CachedWaveforms
from bench.data.page_cache import RowAdvice


class ClipDataset(torch.utils.data.Dataset):
    """(waveform float16 (clip_samples,), target float32 (n_tags,)) for every decoded clip of a split.

    Waveforms stay float16, as cached: half the bytes read and sent over PCIe; the front end
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

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        wave = np.array(self.cache.waveforms[self.rows[i]], dtype=np.float16)
        return torch.from_numpy(wave), self.targets[i]


def epoch_order(n: int, shuffle: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """The order in which an epoch visits a split's n clips: one permutation drawn from `generator`, or
    0..n-1. Both batch sources below follow it. The training loop draws the epoch's MusiCNN segment
    starts from the same generator after it: its draws depend on the seed and the epoch alone."""
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


def full_batches(order: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`order` without its last partial batch, so every training step has the same shape (a compiled
    graph stays valid, cuDNN's autotuned kernels apply). A split smaller than one batch is kept whole.
    With a fresh permutation each epoch, every clip is still seen."""
    usable = len(order) // batch_size * batch_size
    return order[:usable] if usable else order


class InlineReads:
    """An executor that runs each read as it is submitted, in the calling thread."""

    def submit(self, fn, *args) -> Future:
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except Exception as exc:  # raised where the result is asked for, as from a thread
            done.set_exception(exc)
        return done

    def shutdown(self, **kwargs) -> None:
        pass


class ReadBatches:
    """Batches of a split read from the cache in a given order by this process, each batch's rows
    gathered with torch's `index_select` over the memory-mapped cache (spread over torch's intra-op
    threads). On CUDA a thread gathers the next batches while the current one trains, into pinned
    buffers reused in turn, copied to the device without a host sync. On the CPU, whose cores the step
    already uses, each batch is read in turn in the calling thread, a new host tensor. Float16 as stored.

    In a pass whose rows are not all in the page cache (a dataset larger than RAM, a first epoch), the
    kernel is told the rows of the first batch and, as each batch is gathered, those of the next
    (`RowAdvice`): their reads are queued at once instead of faulted in one readahead window at a time.

    Measured on an H200 box (16 cores), 32 clips of 16 kHz a batch: 22,500 clips/s, against 1,900
    through a DataLoader with 4 worker processes (2,600 with 12), whose batches each pass through a
    new shared-memory file (docs/performance.md)."""

    AHEAD = 2
    """Batches gathered ahead of the one being trained on."""

    def __init__(self, dataset: ClipDataset, batch_size: int, device: torch.device | str = "cpu"):
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.pinned = self.device.type == "cuda"
        with warnings.catch_warnings():  # the cache is mapped read-only, which torch warns of: nothing writes it
            warnings.simplefilter("ignore", UserWarning)
            self.source = torch.from_numpy(dataset.cache.waveforms)
        self.rows = torch.from_numpy(np.asarray(dataset.rows, dtype=np.int64))
        self.advice = RowAdvice(dataset.cache.waveforms)
        if self.pinned:  # CUDA's current device is the thread's: a new thread's is GPU 0, where its first call
            # (an event's wait, a pinned allocation) would open a context of ~0.5 GiB on a GPU not this worker's
            index = torch.cuda.current_device() if self.device.index is None else self.device.index
            self.reader = ThreadPoolExecutor(1, thread_name_prefix="bench-reader", initializer=torch.cuda.set_device,
                                             initargs=(index,))
        else:
            self.reader = InlineReads()
        self._pass: object | None = None  # the pass now iterated (`batches`)
        self.slots: list[list] = []  # pinned (waveforms, targets, the event of their last copy to the device)

    def _read(self, order: torch.Tensor, k: int, slot: int, advised: np.ndarray | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Batch `k` of `order` (waveforms, targets, clips), cut from the order where it is read (on
        CUDA, in the reading thread, into the buffers of `slot`, whose first rows it fills: a last
        partial batch is cut on the device). With `advised`, the pass's file rows, the kernel is told
        the next batch's rows first (and the first batch's own)."""
        index = order[k * self.batch_size:(k + 1) * self.batch_size]
        rows = self.rows[index]
        if advised is not None:
            b = self.batch_size
            self.advice.rows(advised[(0 if k == 0 else (k + 1) * b):(k + 2) * b])
        if not self.pinned:
            return torch.index_select(self.source, 0, rows), self.dataset.targets[index], len(rows)
        if slot == len(self.slots):  # a split smaller than a batch: its size
            clips = min(self.batch_size, len(self.rows))
            self.slots.append([torch.empty((clips, self.source.shape[1]), dtype=self.source.dtype).pin_memory(),
                               torch.empty((clips, self.dataset.targets.shape[1])).pin_memory(), None])
        waves, targets, copied = self.slots[slot]
        if copied is not None:  # the buffers' last batch has reached the device
            copied.synchronize()
        n = len(rows)
        torch.index_select(self.source, 0, rows, out=waves[:n])
        torch.index_select(self.dataset.targets, 0, index, out=targets[:n])
        return waves, targets, n

    def batches(self, order: torch.Tensor):
        """(waveform float16 (B, samples), target (B, n_tags)) in `order`, on the device. One pass at a
        time: the pinned buffers are the reader's, so an earlier pass still iterated after this one
        started raises rather than hand out the other's batches."""
        self._pass = this = object()
        count = -(-len(order) // self.batch_size)
        slots = self.AHEAD + 1
        # the pass's file rows, as numbers on the host (for the kernel, not for torch)
        file_rows = np.asarray(self.dataset.rows)[order.numpy()] if self.advice.possible else None
        advised = file_rows if file_rows is not None and self.advice.worth_it(file_rows) else None
        pending = deque(self.reader.submit(self._read, order, k, k % slots, advised)
                        for k in range(min(self.AHEAD, count)))
        for k in range(count):
            if self._pass is not this:
                raise RuntimeError("ReadBatches: a later pass over this reader started; one pass at a time")
            waves, targets, n = pending.popleft().result()
            if self.pinned:
                waves = waves.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                # blocking: the reading thread that waits on it sleeps until the copy is done, where CUDA's
                # default spin-wait would hold a CPU core for as long as the GPU's queue ahead of the copy
                copied = torch.cuda.Event(blocking=True)
                copied.record()
                self.slots[k % slots][2] = copied
            if k + self.AHEAD < count:  # into the buffers of batch k - 1, whose copy is queued
                pending.append(self.reader.submit(self._read, order, k + self.AHEAD, (k + self.AHEAD) % slots,
                                                  advised))
            yield waves[:n], targets[:n]

    def close(self) -> None:
        """Stop the reading thread on CUDA (reads already queued are dropped) and let go of the pinned buffers
        (to torch's cache of pinned memory, which keeps them for the process's next pinned tensors)."""
        self.reader.shutdown(wait=True, cancel_futures=True)
        self.slots.clear()


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

    Batches are gathered there, with no reader and no host-to-device copy per step, in the same
    `epoch_order` as `ReadBatches`, so a run sees the same batches whichever path feeds it.
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
    through `ReadBatches`. A copy of another sample rate is released either way (its memory counts as
    free for the new copy, and a run reading from the cache gets it for its activations)."""
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
