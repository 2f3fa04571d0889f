"""Compute cost of an architecture: GMAC per clip (fvcore and analytic) and parameters.

Units: a MAC is one fused multiply-add; GMAC = 1e9 MACs, for ONE forward pass of ONE clip (batch 1,
eval mode). fvcore "counts one fused multiply-add as one flop", so its total / 1e9 is GMAC. Besides
convolutions and linear layers it also counts BatchNorm (2 per element in eval mode), so it reads
0.1-1.8 % above the analytic conv + linear count of `architectures.planning` at width 1 (VGG-CNN
0.38-0.48 %, MusiCNN 0.10-0.36 % from 8 to 128 mels; more at narrower widths, 12 % at 1/32); the
operators it has no handle for (ELU, pooling, ...) are kept in `fvcore_unsupported` with how often
they occur; those on fvcore's own ignore list (ReLU, cat, stack, dropout, max) are not reported.
The mel front end is not counted.

An architecture built by `architectures.build` exposes `input_frames` (frames of one forward
input), `segments` (inputs per clip, None when the network sees the whole clip) and
`analytic_macs()` (per input). MusiCNN sees segments: per clip = segments x per segment.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

import architectures
from architectures import InputConfig
from bench.core.framing import clip_samples


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fvcore_gmac(model: nn.Module, example: torch.Tensor) -> tuple[float, dict[str, int]]:
    """GMAC of one forward pass of `example` by fvcore, and the operators it could not count.

    The model is traced in eval mode (its mode is restored afterwards). fvcore traces with
    torch.jit.trace, which torch >= 2.9 marks deprecated: the FutureWarning and fvcore's own
    "unsupported operator" log lines are silenced here, the unsupported operators are returned.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation, on import too
        from fvcore.nn import FlopCountAnalysis

        was_training = model.training
        model.eval()
        try:
            analysis = FlopCountAnalysis(model, example)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            fvcore_logger = logging.getLogger("fvcore")
            level = fvcore_logger.level
            fvcore_logger.setLevel(logging.ERROR)
            try:
                with torch.no_grad():
                    total = analysis.total()
            finally:
                fvcore_logger.setLevel(level)
            unsupported = dict(sorted(analysis.unsupported_ops().items()))
        finally:
            model.train(was_training)
    return total / 1e9, unsupported


@dataclass(frozen=True)
class Cost:
    """Cost of one architecture for one input configuration; GMAC are per clip, one forward pass."""

    arch: str
    gmac: float
    """fvcore count per clip (convs, linear layers and BatchNorm)."""
    gmac_analytic: float
    """Conv + linear multiply-adds per clip, from the architecture's shape plan."""
    params: int
    """Trainable parameters."""
    fvcore_unsupported: dict[str, int] = field(hash=False)
    """Operators fvcore did not count (name -> occurrences in one forward pass)."""
    segments: int | None = None
    """Segments per clip for architectures that see segments (MusiCNN); None otherwise (a segment's
    cost is the clip's over its segments)."""


def model_cost(arch: str, input_config: InputConfig, n_tags: int, options=None) -> Cost:
    """Build `arch` for a whole clip (`input_config.n_frames`) and measure its cost.

    `options` is the architecture's options dataclass (e.g. a spec configuration's `options`), or
    None for its defaults.
    """
    kwargs = dataclasses.asdict(options) if options is not None else {}
    model = architectures.build(arch, input_config, n_tags, **kwargs)
    if hasattr(model, "pool_first"):  # count the network as written, not MusiCNN's rearrangements
        model.pool_first = False
        model.rearrange = False
    example = torch.zeros(1, 1, input_config.n_mels, model.input_frames)
    gmac_input, unsupported = fvcore_gmac(model, example)
    analytic_input = model.analytic_macs() / 1e9
    per_clip = model.segments or 1
    return Cost(
        arch=arch,
        gmac=gmac_input * per_clip,
        gmac_analytic=analytic_input * per_clip,
        params=count_params(model),
        fvcore_unsupported=unsupported,
        segments=model.segments,
    )


CUDNN_WORKSPACE_BYTES = 256 * 2**20
"""What the footprint allows for cuDNN's convolution workspaces and the caching allocator's rounding of
blocks, beside the tensors it counts. `make gpu-check` (P2) measures the peaks this estimate must cover."""


def training_footprint_bytes(run, passes_without_grad: Iterable[tuple[int, int]] = ()) -> int:
    """An upper estimate of the device memory one run of `run` (a `RunSpec`) holds besides its waveforms:
    weights, gradients and Adam's two moments in fp32 (16 bytes per parameter), CUDNN_WORKSPACE_BYTES,
    plus the larger of

    - training: every layer's output for one training batch in fp32 (what autograd keeps for the
      backward pass);
    - each pass without autograd, given as (clips per batch, bytes per element): e.g. evaluation at a
      larger batch in bf16, or the served-throughput measurement in fp32. Such a pass frees each output
      once the next layer has read it, so it holds the largest pair of consecutive tensors (a layer's
      input and output) for that batch; MusiCNN's clips are each all of their segments.

    Each pass also holds its batch as the network's caller has it: the clips' waveforms in float16 (as
    cached) and their whole mel in fp32 (the front end's output, of which MusiCNN cuts its segments).

    Shapes come from the model built on the meta device: nothing is allocated, nothing is run."""
    config = run.mel.input_config(run.dataset.clip_seconds)
    batch = run.protocol.batch_size
    model, outputs = architectures.meta_output_elements(
        run.arch, config, run.dataset.n_tags, batch, **dataclasses.asdict(run.configuration.options))
    # the batch as the caller holds it: waveforms in float16, the whole clip's mel in fp32
    held_per_clip = (2 * clip_samples(run.dataset.clip_seconds, run.mel.sample_rate)
                     + 4 * config.n_mels * config.n_frames)
    training = 4 * sum(outputs[1:]) + batch * held_per_clip
    pair_per_input = max(a + b for a, b in zip(outputs[:-1], outputs[1:], strict=True)) / batch
    inputs_per_clip = model.segments or 1
    without_grad = [int(pair_per_input * clips * inputs_per_clip * element_bytes) + clips * held_per_clip
                    for clips, element_bytes in passes_without_grad]
    return 16 * count_params(model) + CUDNN_WORKSPACE_BYTES + max([training, *without_grad])
