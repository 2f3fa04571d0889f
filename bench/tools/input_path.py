"""The input path of a training step, timed for `bench perf` and `make gpu-check`: the mel front end
per clip (and against librosa), and the data path from the waveform cache to batches on the device
(read per batch as a run reads, with the file in the page cache and evicted from it, and on CUDA
the device-resident path) against what a run consumes."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.core.store import named_error
from bench.data.page_cache import page_cache_fraction
from bench.data.views import ClipDataset, ReadBatches, ResidentWaveforms, epoch_order
from bench.tools.cases import Case
from bench.tools.timing import PerfSettings, time_calls
from bench.train.fastpath import cpu_share, sync, torch_threads
from bench.train.frontend import LOG_SCALE, MelFrontend


def probe_clips(sample_rate: int, clip_seconds: float, n: int, seed: int = 0) -> np.ndarray:
    """Noise bursts over a few partials: enough spectral structure for a fair mel timing."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(clip_seconds * sample_rate)) / sample_rate
    partials = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 440.0, 1760.0))
    return (0.1 * partials + 0.05 * rng.standard_normal((n, t.size))).astype(np.float32)


def frontend_seconds(mel, clip_seconds: float, device: torch.device, settings: PerfSettings,
                     segment_frames: int | None = None) -> float:
    """Seconds the mel front end takes on a batch of `settings.batch` clips (median): of the whole clips,
    or with `segment_frames` of one segment of each at a random start, the frames a training step of a
    network on segments computes (`MelFrontend.frames`, as `Trainer._training_mel` does)."""
    frontend = MelFrontend.from_config(mel).to(device)
    batch = torch.from_numpy(probe_clips(mel.sample_rate, clip_seconds, settings.batch)).to(device)
    frames = frontend.n_frames(batch.shape[-1])
    if segment_frames is None or frames <= segment_frames:
        def compute():
            return frontend(batch)
    else:
        generator = torch.Generator().manual_seed(0)
        starts = torch.randint(0, frames - segment_frames + 1, (settings.batch,), generator=generator)

        def compute():
            return frontend.frames(batch, starts, segment_frames)
    with torch.no_grad():
        return time_calls(compute, device, settings.budget_seconds / 4, settings.max_steps)["seconds"]


def consumption_clips_per_second(step_seconds: float, frontend_ms_per_clip: float, batch: int) -> float:
    """Clips per second one run trains on: each step of `batch` clips and the mel front end of its clips
    (what the data path must deliver to keep the run fed)."""
    return batch / (step_seconds + frontend_ms_per_clip * batch / 1000)


def measure_frontend(case: Case, device: torch.device, settings: PerfSettings, step_seconds: float) -> dict:
    """The mel front end of a training step on a batch of clips, per clip and as a share of the step (a
    network on segments computes one segment's frames of each clip: `segment_ms_per_clip`, else the
    whole clip's), and the whole clip's against librosa."""
    mel = case.configuration.mel
    ours = frontend_seconds(mel, case.clip_seconds, device, settings)
    training = ours
    result = {"ms_per_clip": 1000 * ours / settings.batch, "librosa_ms_per_clip": None}
    if case.segments > 1:
        segment = case.build(torch.device("meta")).input_frames
        training = frontend_seconds(mel, case.clip_seconds, device, settings, segment_frames=segment)
        result["segment_ms_per_clip"] = 1000 * training / settings.batch
    result["training_ms_per_clip"] = 1000 * training / settings.batch
    result["share_of_step"] = training / (training + step_seconds)
    if settings.librosa:
        try:
            import librosa
        except ImportError:  # a dev dependency: absent in a plain install
            return result
        from bench.core import framing

        clips = probe_clips(mel.sample_rate, case.clip_seconds, settings.batch)
        padded = np.pad(clips, ((0, 0), (0, framing.padded_samples(clips.shape[1]) - clips.shape[1])))

        def reference():
            power = librosa.feature.melspectrogram(
                y=padded, sr=mel.sample_rate, n_fft=framing.N_FFT, hop_length=mel.hop_length,
                n_mels=mel.n_mels, pad_mode="constant")
            return np.log10(1.0 + LOG_SCALE * power)

        theirs = time_calls(reference, torch.device("cpu"), settings.budget_seconds / 4, 3)["seconds"]
        result["librosa_ms_per_clip"] = 1000 * theirs / settings.batch
        result["speedup_over_librosa"] = theirs / ours
    return result


class ScratchCache:
    """A cache-shaped memmap of noise (what `ClipDataset` reads), for timing the data path; its reader
    maps the file, whose pages the cold pass evicts."""

    def __init__(self, folder: Path, n_clips: int, samples: int, n_tags: int):
        self.folder = folder
        self.path = folder / "waveforms.f16"
        rng = np.random.default_rng(0)
        # written, not filled through a map: a full disk is an OSError naming the file, not a SIGBUS
        try:
            with open(self.path, "wb") as handle:
                for _ in range(n_clips):
                    handle.write(rng.standard_normal(samples).astype(np.float16).tobytes())
        except OSError as exc:
            raise named_error(exc, self.path) from None
        self.shape = (n_clips, samples)
        self.waveforms = self._open()
        self._targets = (rng.random((n_clips, n_tags)) < 0.1).astype(np.float32)

    def _open(self) -> np.memmap:
        return np.memmap(self.path, dtype=np.float16, mode="r", shape=self.shape)

    def rows(self, split: str) -> np.ndarray:
        return np.arange(len(self._targets))

    def targets(self, rows: np.ndarray) -> np.ndarray:
        return self._targets[rows]

    def evict(self) -> float | None:
        """Drop the file from the page cache, as for a dataset larger than RAM: the pages this process
        has mapped are unmapped first (the kernel keeps mapped pages), then the file is reopened.
        Returns the fraction of its pages still in the page cache afterwards (a tmpfs keeps them all),
        or None where the file cannot be evicted (no `posix_fadvise`)."""
        if not hasattr(os, "posix_fadvise"):
            return None
        self.waveforms = None  # the last reference: numpy unmaps the file
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        self.waveforms = self._open()
        return page_cache_fraction(self.path)


EVICTED_AT_MOST = 0.05
"""A cold read is measured only where at most this fraction of the file stayed in the page cache."""


def describe_cold_read(data_path: dict) -> str:
    """The evicted pass of `measure_data_path`'s result in words: its rate, or why it was not timed."""
    cold, left = data_path["clips_per_second_evicted"], data_path.get("page_cache_fraction_after_evicting")
    if cold is not None:
        return f"evicted {cold:.0f}"
    return "not evicted" + (f" ({100 * left:.0f} % stayed in the page cache)" if left is not None else "")


def scratch_parent() -> str | None:
    """Where the data path's scratch file goes: the waveform cache's folder when it exists (the disk
    the real cache is read from), else the system's temporary folder."""
    from bench.data.datasets import cache_root

    root = cache_root()
    return str(root) if root.is_dir() else None


def measure_data_path(case: Case, device: torch.device, settings: PerfSettings, consumption: float) -> dict:
    """Clips/s from the cache to float16 batches on the device, against `consumption`: read per batch
    as a run reads (`ReadBatches`: page cache warm and evicted) on every device, and on
    CUDA also the device-resident path (upload once, gather per batch). The evicted pass is measured
    only where the file really left the page cache (not on a tmpfs): `page_cache_fraction_after_evicting`.
    On CUDA the reads use the threads a run of a grid on this machine gets (`cpu_share`, one run per GPU:
    on a box of 8 GPUs, an eighth of its CPUs), not all of this process's."""
    mel = case.configuration.mel
    samples = round(case.clip_seconds * mel.sample_rate)
    with (tempfile.TemporaryDirectory(prefix="bench-perf-", dir=scratch_parent()) as folder,
          torch_threads(cpu_share() if device.type == "cuda" else torch.get_num_threads()) as threads):
        cache = ScratchCache(Path(folder), settings.data_clips, samples, case.n_tags)
        dataset = ClipDataset(cache, "train")
        generator = torch.Generator().manual_seed(0)

        def one_pass(batches_of) -> float:
            start = time.perf_counter()
            for wave, target in batches_of(epoch_order(len(dataset), True, generator)):
                wave.to(device, non_blocking=True), target.to(device, non_blocking=True)
            sync(device)
            return len(dataset) / (time.perf_counter() - start)

        reader = ReadBatches(dataset, settings.batch, device)
        one_pass(reader.batches)  # allocates the pinned buffers, which a run does once
        warm = one_pass(reader.batches)
        reader.close()
        del reader  # it has the file's pages mapped: they would stay cached
        in_page_cache = cache.evict()
        cold = None
        if in_page_cache is not None and in_page_cache <= EVICTED_AT_MOST:
            reader = ReadBatches(dataset, settings.batch, device)
            cold = one_pass(reader.batches)
            reader.close()
        resident = None
        if device.type == "cuda":
            clips = ResidentWaveforms(cache, device).split(dataset)
            one_pass(lambda order: clips.batches(settings.batch, order))
            resident = one_pass(lambda order: clips.batches(settings.batch, order))
            del clips
    loader_rate = min(x for x in (warm, cold) if x is not None)
    return {"clips_per_second_page_cache": warm, "clips_per_second_evicted": cold,
            "page_cache_fraction_after_evicting": in_page_cache,
            "clips_per_second_resident": resident, "mb_per_clip": samples * 2 / 2**20,
            "consumption_clips_per_second": consumption, "loader_over_consumption": loader_rate / consumption,
            "over_consumption": max(loader_rate, resident or 0) / consumption,
            "threads": threads, "pin_memory": device.type == "cuda"}
