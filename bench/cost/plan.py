"""`bench plan`: what a grid costs before anything is trained (no data, no training).

One row per (architecture, mel configuration): the input each run will see, how the architecture is
fitted to it (VGG pooling plan, MusiCNN filter heights), its cost (GMAC per clip by fvcore and by
the analytic conv + linear count, parameters) and the storage of one clip's spectrogram. Rows are
plain dicts so the CLI can print them as a table, CSV or JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import architectures
from architectures import InputConfig
from architectures.options import width_of
from bench.core import framing
from bench.core.errors import UserError
from bench.core.store import is_finite_number
from bench.core.text import significant as plain_significant
from bench.data.known import clip_count, n_outputs, split_sizes, tag_count, unknown_split_why
from bench.spec import Configuration, Spec


def amount(value: float, decimals: int) -> str:
    """`value` with thousands separators and `decimals` decimals, or two significant figures below 1
    (a small grid's 0.045 device-hours is not 0)."""
    return f"{value:,.{decimals}f}" if abs(value) >= 1 or value == 0 else f"{value:.2g}"


def plain_figures(value: float, digits: int = 3) -> str:
    """`value` to `digits` (at most 4) significant figures as `g` writes them, from 1,000 up with thousands
    separators and never an exponent (1,000 GMAC, not 1e+03)."""
    text = f"{value:.{digits}g}"
    return text if abs(float(text)) < 1000 else f"{float(text):,.0f}"


def significant(value: float, digits: int) -> str:
    """`value` to `digits` significant figures, trailing zeros kept (a demo network's 0.00016800 GMAC,
    the paper's 10.010), never an exponent or a bare point: from 10^(digits - 1) up, a whole number with
    thousands separators (13,988 and 125,740 GMAC, not 13988. and 1.2574e+05)."""
    if not math.isfinite(value) or value == 0:
        return f"{value:#.{digits}g}"
    rounded = float(f"{value:#.{digits}g}")  # rounded first: 9999.95 to 5 figures is 10000.
    if abs(rounded) >= 10 ** (digits - 1):
        return f"{rounded:,.0f}"
    # below 1e-4 `g` writes an exponent: as many decimals as the figures need (0.000032400)
    return plain_significant(rounded, digits)


def hours_unit(device: str | None) -> str:
    """What an hour of `device` is called: GPU-hours for CUDA, CPU-hours for the CPU."""
    return {"cuda": "GPU-hours", "cpu": "CPU-hours"}.get(device, f"{device}-hours")


def size_text(n_bytes: float) -> str:
    """Bytes to three significant figures in kB, MB or GB (1e3, 1e6, 1e9 bytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{plain_figures(n_bytes / scale)} {unit}"
    return f"{plain_figures(n_bytes / 1e3)} kB"


def arch_columns(config: Configuration, n_frames: int) -> dict[str, Any]:
    """How the architecture is fitted to this input (pure planning, no torch)."""
    mel, options = config.mel, config.options
    plan = architectures.plan(config.arch, InputConfig(mel.sample_rate, mel.n_mels, mel.hop_multiplier, n_frames),
                              **dataclasses.asdict(options))
    # read from the plan's fields by name, so an added architecture's plan shows what it has of them
    columns = {"pool_freq": "", "pool_time": "", "filter_heights": "", "segments": ""}
    for column, field in (("pool_freq", "pool_freq"), ("pool_time", "pool_time"), ("filter_heights", "heights")):
        if isinstance(getattr(plan, field, None), tuple):
            columns[column] = _dashed(getattr(plan, field))
    if isinstance(getattr(plan, "segments", None), int):  # an architecture that sees segments of a clip
        columns["segments"] = plan.segments
    return columns


def _dashed(values) -> str:
    return "-".join(map(str, values))


CPU_ALLOCATION_FAILURE = "DefaultCPUAllocator: can't allocate memory"
"""Torch's words (a RuntimeError) where the host could not give it a tensor's memory."""


@cache
def _cost(arch: str, options, input_config: InputConfig, n_tags: int, fvcore: bool) -> tuple:
    """(gmac, gmac_analytic, params, unsupported) per clip; cached because `log` changes no shape."""
    import torch

    from bench.cost.gmac import count_params, model_cost

    if fvcore:
        try:
            cost = model_cost(arch, input_config, n_tags, options)
        except (MemoryError, RuntimeError) as exc:  # fvcore runs the network: its weights and maps are allocated
            if not isinstance(exc, MemoryError) and CPU_ALLOCATION_FAILURE not in str(exc):
                raise
            raise UserError(f"{arch} at {input_config.n_mels}x{input_config.n_frames}: fvcore counts GMAC by running "
                            "the network on one clip, and this machine could not allocate its memory; "
                            "--no-fvcore counts them analytically, without running it") from None
        return (cost.gmac, cost.gmac_analytic, cost.params,
                json.dumps(cost.fvcore_unsupported, sort_keys=True))
    with torch.device("meta"):  # shapes and parameter counts without allocating or computing
        model = architectures.build(arch, input_config, n_tags, **dataclasses.asdict(options))
    per_clip = model.segments or 1
    return "", model.analytic_macs() * per_clip / 1e9, count_params(model), ""


def plan_row(config: Configuration, clip_seconds: float, n_tags: int, fvcore: bool = True) -> dict[str, Any]:
    mel = config.mel
    input_config = mel.input_config(clip_seconds)
    n_frames = input_config.n_frames
    gmac, gmac_analytic, params, unsupported = _cost(config.arch, config.options, input_config, n_tags, fvcore)
    return {
        "arch": config.arch,
        "width": width_of(config.options),
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
    """One row per configuration, for the number of tags the spec's dataset gives (`bench.data.known`)."""
    n_tags = n_outputs(spec.dataset)
    return [plan_row(c, spec.dataset.clip_seconds, n_tags, fvcore) for c in spec.configurations()]


def cache_bytes(spec: Spec, clips: int) -> int:
    """The waveform cache of `clips` clips: float16 mono, one copy per sample rate of the grid."""
    rates = {c.mel.sample_rate for c in spec.configurations()}
    return sum(clips * framing.clip_samples(spec.dataset.clip_seconds, rate) * 2 for rate in rates)


def measured_projection(spec: Spec, perf_json: str | Path) -> dict | None:
    """The device-hours projection `bench perf --out` wrote for this spec, or None if that file is not
    bench perf's JSON for this spec. Where perf made no projection, "device_hours" is None and "why_none"
    says why."""
    try:
        report = json.loads(Path(perf_json).read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        return None
    if not isinstance(report, dict) or report.get("spec") != spec.name or "projection" not in report:
        return None
    projection = report["projection"]
    if projection is None:  # the splits' sizes were not known where perf measured
        return {"device_hours": None, "why_none": report.get("no_projection") or "the splits' sizes were not known",
                "path": str(perf_json)}
    if not isinstance(projection, dict):
        return None
    assumptions = projection.get("assumptions")
    found = {"device_hours": projection.get("device_hours"), "device": report.get("device"),
             "device_name": report.get("device_name"), "runs": projection.get("runs"),
             "current": projection.get("runs_fingerprint") in (None, spec.runs_fingerprint()),
             "epochs_per_run": assumptions.get("epochs_per_run") if isinstance(assumptions, dict) else None,
             "path": str(perf_json)}
    # what `format_totals` prints must be what bench perf writes (a hand-edited or foreign file is not read)
    hours, epochs, runs = found["device_hours"], found["epochs_per_run"], found["runs"]
    typed = _positive(hours) and _positive(epochs)  # bench perf's projection always has both
    typed = typed and (runs is None or _positive(runs) and isinstance(runs, int))
    typed = typed and all(found[name] is None or isinstance(found[name], str) for name in ("device", "device_name"))
    return found if typed else None


def _positive(value: object) -> bool:
    """A number of a JSON file that counts something: positive and finite, not a bool."""
    return is_finite_number(value) and value > 0


def grid_totals(spec: Spec, rows: list[dict[str, Any]], perf_json: str | Path | None = None) -> dict[str, Any]:
    """What the whole grid holds: runs, forward GMAC per clip summed over runs, the waveform cache
    (where the dataset's clip count is known) and the device-hours `bench perf` projected (if measured)."""
    gmac = [float(r["gmac"] if r["gmac"] != "" else r["gmac_analytic"]) for r in rows]
    seeds = len(spec.seeds)
    clips = clip_count(spec.dataset)
    return {
        "configurations": len(rows),
        "runs": len(rows) * seeds,
        "gmac_per_clip_min": min(gmac),
        "gmac_per_clip_max": max(gmac),
        "gmac_per_clip_sum_over_runs": sum(gmac) * seeds,
        "n_tags": tag_count(spec.dataset),
        "clips": clips,
        "cache_bytes": cache_bytes(spec, clips) if clips else None,
        # best.pt of every run: its float32 parameters (the BatchNorm statistics add a fraction of a percent)
        "weights_bytes": sum(4 * int(r["params"]) for r in rows) * seeds,
        "largest_weights_bytes": max(4 * int(r["params"]) for r in rows),
        "projection": (projection := measured_projection(spec, perf_json) if perf_json else None),
        "perf_json": str(perf_json) if perf_json else None,
        # a file there, but not bench perf's JSON for this spec (damaged, hand-edited, or another spec's of
        # the same file name): not "not measured", whose advice would replace it
        "perf_json_unread": projection is None and perf_json is not None and _is_file(perf_json),
    }


def _is_file(path: str | Path) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # a name too long for the file system, say: no file there
        return False


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def format_totals(spec: Spec, totals: dict[str, Any]) -> list[str]:
    lines = [f"grid: {plural(totals['runs'], 'run')} ({plural(totals['configurations'], 'configuration')} x "
             f"{plural(len(spec.seeds), 'seed')}); "
             f"{plain_figures(totals['gmac_per_clip_min'])}-{plain_figures(totals['gmac_per_clip_max'])} "
             "GMAC per clip, "
             f"{plain_figures(totals['gmac_per_clip_sum_over_runs'], 4)} summed over the runs"]
    if totals["cache_bytes"]:
        published = "" if spec.dataset.name in ("synthetic", "manifest") else \
            f"; {spec.dataset.name}'s published split sizes, not counted from a folder: bench dataset counts it" \
            if split_sizes(spec.dataset) is not None else \
            f"; at most {spec.dataset.name}'s published clips: bench dataset counts the folder's"
        lines.append(f"waveform cache: {plain_figures(totals['cache_bytes'] / 1e9)} GB for {totals['clips']:,} clips "
                     f"(float16, one copy per sample rate{published})")
    else:
        lines.append("waveform cache: 2 bytes per sample per clip and sample rate (clip count known once read)")
    largest = totals["largest_weights_bytes"]
    lines.append(f"results: {size_text(totals['weights_bytes'])} of trained weights (best.pt, float32; "
                 f"{size_text(largest)} for the largest network), and while a run trains its checkpoint "
                 f"(weights and Adam's two moments: about {size_text(3 * largest)} for the largest; removed when "
                 f"the run is done)")
    projection = totals["projection"]
    if projection and projection.get("runs") not in (None, totals["runs"]):
        lines.append(f"projected device-hours: {projection['path']} was measured for {projection['runs']:,} runs, "
                     f"not this grid's {totals['runs']:,} (the spec changed since): run bench perf again")
    elif projection and not projection.get("current", True):
        lines.append(f"projected device-hours: {projection['path']} was measured for other runs of this spec "
                     f"(its configurations, dataset or protocol changed since): run bench perf again")
    elif projection and projection.get("why_none"):
        again = ": the splits' sizes are known now, run bench perf again" if split_sizes(spec.dataset) else ""
        lines.append(f"projected device-hours: none in {projection['path']} ({projection['why_none']}){again}")
    elif projection and projection.get("device_hours") is not None:
        on = f" of {projection['device_name']}" if projection.get("device_name") else ""
        hours = f"{amount(projection['device_hours'], 1)} {hours_unit(projection['device'])}"
        lines.append(f"projected: {hours}{on}, one run at a time, at {projection['epochs_per_run']:g} epochs per "
                     f"run (measured by bench perf: {projection['path']})")
    elif why := unknown_split_why(spec.dataset):
        lines.append(f"projected device-hours: none before the dataset is read ({why})")
    elif totals.get("perf_json_unread"):
        lines.append(f"projected device-hours: not read: {totals['perf_json']} is not the JSON bench perf writes for "
                     f"spec {spec.name!r} (damaged, edited, or another spec's); bench perf SPEC --out FILE measures "
                     "it, bench plan SPEC --perf FILE reads it")
    else:
        where = totals.get("perf_json") or "results/perf/<spec>.json"
        lines.append(f"projected device-hours: not measured (bench perf SPEC --out {where})")
    return lines
