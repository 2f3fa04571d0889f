"""`bench plan`: what a grid costs before anything is trained (no data, no training).

One row per (architecture, mel configuration): the input each run will see, how the architecture is
fitted to it (VGG pooling plan, MusiCNN filter heights), its cost (GMAC per clip by fvcore and by
the analytic conv + linear count, parameters) and the storage of one clip's spectrogram. Rows are
plain dicts so the CLI can print them as a table, CSV or JSON.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any

import architectures
from architectures import InputConfig
from architectures.planning import MusiCNNPlan, musicnn_787k_plan, musicnn_plan, vgg605k_plan, vgg_plan
from bench import framing
from bench.spec import Configuration, Spec

SEGMENT_PLANS = {"musicnn": musicnn_plan, "musicnn-787k": musicnn_787k_plan, "vgg-605k": vgg605k_plan}
"""Architectures that see segments of a clip, by name: their planning function."""


def _dashed(values) -> str:
    return "-".join(map(str, values))


def arch_columns(config: Configuration, n_frames: int) -> dict[str, Any]:
    """How the architecture is fitted to this input (pure planning, no torch)."""
    mel, options = config.mel, config.options
    columns = {"pool_freq": "", "pool_time": "", "filter_heights": "", "segments": ""}
    if config.arch == "vgg":
        plan = vgg_plan(mel.sample_rate, mel.n_mels, mel.hop_multiplier, n_frames, width=options.width)
        columns.update(pool_freq=_dashed(plan.pool_freq), pool_time=_dashed(plan.pool_time))
    elif config.arch in SEGMENT_PLANS:
        plan = SEGMENT_PLANS[config.arch](mel.sample_rate, mel.n_mels, mel.hop_multiplier, n_frames,
                                          width=options.width, segment_seconds=options.segment_seconds)
        columns.update(segments=plan.segments)
        if isinstance(plan, MusiCNNPlan):
            columns.update(filter_heights=_dashed(plan.heights))
    return columns


@cache
def _cost(arch: str, options, input_config: InputConfig, n_tags: int, fvcore: bool) -> tuple:
    """(gmac, gmac_analytic, params, unsupported) per clip; cached because `log` changes no shape."""
    import torch

    from bench.cost import count_params, model_cost

    if fvcore:
        cost = model_cost(arch, input_config, n_tags, options)
        return (round(cost.gmac, 4), round(cost.gmac_analytic, 4), cost.params,
                json.dumps(cost.fvcore_unsupported, sort_keys=True))
    with torch.device("meta"):  # shapes and parameter counts without allocating or computing
        model = architectures.build(arch, input_config, n_tags, **dataclasses.asdict(options))
    per_clip = model.segments or 1
    return "", round(model.analytic_macs() * per_clip / 1e9, 4), count_params(model), ""


def plan_row(config: Configuration, clip_seconds: float, n_tags: int, fvcore: bool = True) -> dict[str, Any]:
    mel = config.mel
    n_frames = mel.n_frames(clip_seconds)
    input_config = InputConfig(sample_rate=mel.sample_rate, n_mels=mel.n_mels, hop_multiplier=mel.hop_multiplier,
                               n_frames=n_frames)
    gmac, gmac_analytic, params, unsupported = _cost(config.arch, config.options, input_config, n_tags, fvcore)
    return {
        "arch": config.arch,
        "width": config.options.width,
        "sample_rate": mel.sample_rate,
        "n_mels": mel.n_mels,
        "hop_multiplier": mel.hop_multiplier,
        "log": mel.log,
        "n_frames": n_frames,
        "input_shape": f"{mel.n_mels}x{n_frames}",
        **arch_columns(config, n_frames),
        "gmac": gmac,
        "gmac_analytic": gmac_analytic,
        "params": params,
        "storage_bytes_f32": framing.storage_bytes(mel.n_mels, n_frames, 4),
        "storage_bytes_f16": framing.storage_bytes(mel.n_mels, n_frames, 2),
        "fvcore_unsupported": unsupported,
    }


def plan_rows(spec: Spec, fvcore: bool = True) -> list[dict[str, Any]]:
    return [plan_row(c, spec.dataset.clip_seconds, spec.dataset.n_tags, fvcore) for c in spec.configurations()]
