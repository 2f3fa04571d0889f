"""Measured inference cost of a tagger, beside its GMAC: what the paper's "cheaper inference" means on a
real device.

- latency at batch 1, in ms per clip: the mel front end on one clip's waveform plus the network on
  all of the clip's inputs (one for VGG-CNN, its segments for MusiCNN), and the network alone;
- throughput at batch 64, in clips/s, front end included.

Each figure is the median of `repeats` (at least 5) timed passes after `warmup` untimed ones, in
inference mode, with the device synchronised before each clock read. The model is measured as it
would serve: fp32 weights, eval mode, on the run's device, with the threads torch has (on the CPU with
glibc's own allocator, not the freed memory a grid run's training keeps). On CUDA the
convolutions use TF32 as the run's training does (`served_tf32`: on, PyTorch's default, unless the
protocol's precision is fp32), in a grid run and in `bench plan --latency` alike.
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.core import framing
from bench.core.errors import is_host_out_of_memory, is_out_of_memory
from bench.core.machine import available_host_bytes, reuse_freed_memory
from bench.data.views import eval_segments
from bench.train.fastpath import EVAL_BATCH_FACTOR, eval_clips, largest_tensor, sync

THROUGHPUT_BATCH = 64
MIN_REPEATS = 5


HOST_SHARE = 0.5
"""The share of the host's available memory (`bench.core.machine.available_host_bytes`) a throughput
pass on the CPU may take."""


def served_batch(arch: str, input_config, n_tags: int, options: dict, host_bytes: int | None = None) -> int:
    """Clips of the throughput pass: THROUGHPUT_BATCH, fewer where a tensor of the batch would pass
    `bench.train.fastpath.INDEXED_ELEMENTS` (VGG at 22.05 kHz, 128 mels, hop x1: 41 M elements per
    clip in its first block, 2.6e9 at 64 clips), as evaluation batches are capped; on the CPU
    (`host_bytes`, the memory available) as many as HOST_SHARE of it holds (`host_clip_bytes`): 64
    clips of 60 s at 192 kHz would take 21 GB, and Linux kills a process that overcommits, before any
    error could halve the batch."""
    batch = eval_clips(arch, input_config, n_tags, options, THROUGHPUT_BATCH)
    if host_bytes is not None:
        batch = max(1, min(batch, int(HOST_SHARE * host_bytes) // host_clip_bytes(arch, input_config, n_tags,
                                                                                  options)))
    return batch


def host_clip_bytes(arch: str, input_config, n_tags: int, options: dict) -> int:
    """An upper estimate of the host memory one clip of the throughput pass takes: its waveform in fp32
    and the front end's zero-padded copy, three arrays of the STFT's (n_fft/2 + 1) x frames complex64
    bins (the spectrum, its magnitudes, their power), the mel, and 3.5 of the network's largest fp32
    tensor per network input: a layer's input and output, and what the allocator holds besides (a
    measured pass of `vgg-605k`, whose ReLU is not in place, peaked at 2.9 of them)."""
    largest, inputs = largest_tensor(arch, input_config, n_tags, options)
    samples = input_config.n_frames * framing.hop_length(input_config.hop_multiplier)
    frames = input_config.n_frames
    return (8 * samples + 3 * 8 * (framing.N_FFT // 2 + 1) * frames + 4 * input_config.n_mels * frames
            + 14 * largest * inputs)


def cuda_passes_without_grad(batch_size: int, precision: str) -> tuple[tuple[int, int], ...]:
    """What a CUDA run computes without autograd, as `bench.cost.gmac.training_footprint_bytes` takes it
    ((clips per batch, bytes per element), ...): evaluation at EVAL_BATCH_FACTOR training batches under
    autocast (2 bytes; 4 with `precision` "fp32"), and the served throughput here (THROUGHPUT_BATCH clips,
    fp32)."""
    return ((EVAL_BATCH_FACTOR["cuda"] * batch_size, 4 if precision == "fp32" else 2), (THROUGHPUT_BATCH, 4))


def _median_seconds(step, device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(max(MIN_REPEATS, repeats)):
        sync(device)
        started = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_inference(model: torch.nn.Module, frontend: torch.nn.Module, clip_samples: int, device: torch.device,
                      repeats: int = MIN_REPEATS, warmup: int = 2, batch: int = THROUGHPUT_BATCH,
                      tf32: bool = True) -> dict:
    """{"latency_ms": ..., "network_latency_ms": ..., "throughput_clips_per_second": ..., "batch": ...,
    "repeats": ...} of `model` (which takes (B, n_mels, input_frames) and sees `model.input_frames`
    frames per input) behind `frontend` (waveforms (B, samples) -> mel (B, n_mels, frames))."""
    was_training = model.training
    model.eval()
    if device.type == "cpu":  # glibc's own allocator, as a process serving has it and `bench plan --latency`
        reuse_freed_memory(False)  # measures: a grid run's training kept freed memory, which its run sets again
    generator = torch.Generator().manual_seed(0)
    one = (0.1 * torch.randn(1, clip_samples, generator=generator)).to(device)
    many = (0.1 * torch.randn(batch, clip_samples, generator=generator)).to(device)
    frames = model.input_frames

    def tag(waveforms: torch.Tensor) -> torch.Tensor:
        inputs, _ = eval_segments(frontend(waveforms), frames)
        return model(inputs)

    # cuDNN's autotuning off and TF32 as `tf32` says, whatever the caller left them at: a grid run leaves
    # its training settings, `bench plan --latency` torch's defaults, and the two measure one thing
    autotune, tensor_float = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = False, tf32
    try:
        with torch.inference_mode():
            inputs, _ = eval_segments(frontend(one), frames)
            latency = _median_seconds(lambda: tag(one), device, repeats, warmup)
            network = _median_seconds(lambda: model(inputs), device, repeats, warmup)
            per_batch = _median_seconds(lambda: tag(many), device, repeats, min(warmup, 1))
    finally:
        model.train(was_training)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = autotune, tensor_float
    return {"latency_ms": 1000 * latency, "network_latency_ms": 1000 * network,
            "throughput_clips_per_second": batch / per_batch, "batch": batch, "repeats": max(MIN_REPEATS, repeats)}


def measure_fitting(model: torch.nn.Module, frontend: torch.nn.Module, clip_samples: int, device: torch.device,
                    batch: int, tf32: bool = True) -> dict:
    """`measure_inference` at `batch` clips, or half as many each time the device runs out of memory (in
    any of torch's words: `bench.core.errors.is_out_of_memory`, and the host's where it says so:
    `is_host_out_of_memory`); "batch" says the one measured. The fp32 throughput batch can need more
    memory than a run's training did, or than a smaller GPU has."""
    while True:
        try:
            return measure_inference(model, frontend, clip_samples, device, batch=batch, tf32=tf32)
        except Exception as exc:
            if batch == 1 or not (is_out_of_memory(exc) or is_host_out_of_memory(exc)):
                raise
            batch //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()


def untrained_latency(configuration, clip_seconds: float, n_tags: int, device: torch.device,
                      precision: str = "auto") -> dict:
    """`measure_inference` of a freshly built (untrained) network and its front end: the inference cost
    of a configuration before any training (`bench plan --latency`). Weights do not change the cost;
    `precision` (the spec's protocol.precision) sets TF32 as a run's measurement has it."""
    import dataclasses

    import architectures
    from bench.train.frontend import MelFrontend

    mel = configuration.mel
    torch.manual_seed(0)
    options, config = dataclasses.asdict(configuration.options), mel.input_config(clip_seconds)
    model = architectures.build(configuration.arch, config, n_tags, **options).to(device)
    frontend = MelFrontend.from_config(mel).to(device)
    batch = served_batch(configuration.arch, config, n_tags, options,
                         available_host_bytes() if device.type == "cpu" else None)
    return measure_fitting(model, frontend, framing.clip_samples(clip_seconds, mel.sample_rate), device, batch,
                           tf32=served_tf32(precision))


def served_tf32(precision: str) -> bool:
    """Whether a run's served measurement lets cuDNN's fp32 convolutions use TF32: as its training does,
    on (PyTorch's default) unless the protocol's precision is "fp32"."""
    return precision != "fp32"
