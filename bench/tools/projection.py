"""A spec's device-hours from measured step times: the fit of step time against GMAC, interpolation
between the measured configurations, the projection of every run, and the share of a device a run takes
when several share it. Pure arithmetic over what `bench perf` measured."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np

from bench.data.known import split_sizes
from bench.spec import Spec
from bench.tools.cases import Case
from bench.tools.peaks import hours_at_peak


def linear_fit(gmac: list[float], seconds: list[float]) -> dict:
    """Least-squares step time = intercept + slope x GMAC, and how far each point is from it. With fewer
    than two distinct costs (a spec of one configuration, `--scaling 1`) a line is not determined: time
    proportional to GMAC instead (intercept 0, `proportional` True)."""
    if len(set(gmac)) < 2:
        slope = float(np.mean(np.asarray(seconds) / np.asarray(gmac)))
        predicted = slope * np.asarray(gmac)
        return {"intercept_seconds": 0.0, "seconds_per_gmac": slope, "proportional": True,
                "relative_residuals": [float(r) for r in (np.asarray(seconds) - predicted) / predicted]}
    slope, intercept = np.polyfit(gmac, seconds, 1)
    predicted = intercept + slope * np.asarray(gmac)
    return {"intercept_seconds": float(intercept), "seconds_per_gmac": float(slope),
            "relative_residuals": [float(r) for r in (np.asarray(seconds) - predicted) / predicted]}


def interpolate(gmac: list[float], values: list[float]) -> Callable[[float], float]:
    """Value at a GMAC, linear between the measured points (ordered by GMAC; points of one GMAC
    averaged), the nearest end's value outside them. Small configurations are overhead-bound on a GPU,
    where a line through all points misses them by half. One measured cost (`--scaling 1`, a spec of
    one input shape): in proportion to GMAC."""
    by_cost: dict[float, list[float]] = {}
    for x, y in zip(gmac, values, strict=True):
        by_cost.setdefault(float(x), []).append(float(y))
    xs = sorted(by_cost)
    ys = [float(np.mean(by_cost[x])) for x in xs]
    if len(xs) == 1:
        return lambda x: ys[0] * x / xs[0]
    return lambda x: float(np.interp(x, xs, ys))


def _by_configuration(cases: list[Case], rows: list[dict], field: str) -> dict:
    """`field` of each scaling row by what the cost of its case depends on (`cost_key`: width included,
    as three widths of one input share a label's shape)."""
    return {c.configuration.cost_key: r[field] for c, r in zip(cases, rows, strict=True)}


def measured_or_interpolated(cases: list[Case], rows: list[dict], field: str) -> Callable[[Case], float]:
    """case -> `field` of the scaling row measured at its configuration, matched by what the cost
    depends on (`cost_key`: width included, as three widths of one input share a label's shape), else
    interpolated in GMAC per input between the rows (`interpolate`)."""
    measured = _by_configuration(cases, rows, field)
    between = interpolate([r["gmac_per_input"] for r in rows], [r[field] for r in rows])
    return lambda case: measured.get(case.configuration.cost_key, between(case.gmac_per_input))


def measured_or_mean(cases: list[Case], rows: list[dict], field: str) -> Callable[[Case], float]:
    """case -> `field` of the scaling row measured at its configuration (`cost_key`), else the mean of
    the rows': for what does not follow the GMAC, such as a run's compilation."""
    measured = _by_configuration(cases, rows, field)
    mean = statistics.mean(measured.values())
    return lambda case: measured.get(case.configuration.cost_key, mean)


def project(spec: Spec, cases: list[Case], step_seconds: Callable[[Case], float], batch: int,
            epochs: float, eval_seconds: Callable[[Case], float] | None = None,
            frontend_seconds: Callable[[Case], float] | None = None,
            run_seconds_once: Callable[[Case], float] | None = None,
            share: Callable[[Case], float] | None = None, runs_at_once: int = 1) -> dict | None:
    """Device-hours of every run of `spec` from measured step times, one run at a time on one device,
    or with `share` and `runs_at_once` K, K runs at a time: each run then takes `share(case)` of its
    time alone from the device (`shared_run_fraction`).

    Per run: `epochs` x (the train split in training steps + the valid split in forward passes),
    plus the test split once, times the segments per clip for MusiCNN's evaluation.
    `step_seconds(case)` gives the measured training-step time at `batch`, `eval_seconds(case)` the
    measured evaluation time per network input (both from the cases measured, or interpolated in GMAC
    for configurations not measured); without `eval_seconds` a forward pass is taken as a third of a
    training step (6 vs 2 flops per MAC). `frontend_seconds(case)` is the mel of one whole clip: each
    clip evaluated computes it once, each clip trained on its share of it (MusiCNN's one segment of
    `segments`). `run_seconds_once(case)` is what each run spends once, whatever its epochs (its
    compilation). Only for splits of known sizes (`split_sizes`). `max_epochs_hours` is the same at
    the spec's max_epochs, the bound no run exceeds."""
    sizes = split_sizes(spec.dataset)
    if sizes is None:
        return None
    n_train, n_valid, n_test = sizes
    per_config = []
    bound = 0.0
    for case in cases:
        mel_per_clip = frontend_seconds(case) if frontend_seconds else 0.0
        step_per_clip = step_seconds(case) / batch
        train_per_clip = step_per_clip + mel_per_clip / case.segments
        eval_per_clip = case.segments * (eval_seconds(case) if eval_seconds else step_per_clip / 3) + mel_per_clip
        per_epoch = n_train * train_per_clip + n_valid * eval_per_clip
        once = n_test * eval_per_clip + (run_seconds_once(case) if run_seconds_once else 0.0)
        fraction = share(case) if share else 1.0
        run_seconds = (epochs * per_epoch + once) * fraction
        bound += (spec.protocol.max_epochs * per_epoch + once) * fraction * len(spec.seeds) / 3600
        run_flops = 2e9 * case.gmac_per_input * (epochs * (3 * n_train + case.segments * n_valid)
                                                 + case.segments * n_test)
        per_config.append({"case": case.label, "log": case.configuration.mel.log,
                           "hours": run_seconds * len(spec.seeds) / 3600,
                           "pflop": run_flops * len(spec.seeds) / 1e15})
    return {"device_hours": sum(c["hours"] for c in per_config), "runs": len(cases) * len(spec.seeds),
            "max_epochs_hours": bound,
            "pflop": sum(c["pflop"] for c in per_config), "per_config": per_config,
            "assumptions": {"epochs_per_run": epochs, "max_epochs": spec.protocol.max_epochs,
                            "train_valid_test_clips": list(sizes),
                            "batch_measured": batch, "batch_in_spec": spec.protocol.batch_size,
                            "evaluation": "measured" if eval_seconds else "a third of a training step",
                            "front_end": "measured" if frontend_seconds else "not counted",
                            "once_per_run": "measured" if run_seconds_once else "not counted",
                            "runs_at_once": runs_at_once if share else 1}}


def shared_run_fraction(busy: float, runs_at_once: int) -> float:
    """The share of its time alone that a run takes from a device it shares with K = `runs_at_once`
    runs like it, given the share of its time alone in which the device ran its kernels (`busy`): its
    kernels' time where K such runs fill the device (K x busy >= 1), else a K-th of its time (the K
    runs progress side by side). A model, and an optimistic one: it takes the kernels of K runs to
    leave each other's durations alone, and they do not. Against `make gpu-check`'s P1 on H200s (the
    smallest configuration alone, then 3 runs of it at once) it predicted 1.27x, 1.35x and 1.50x the
    clips per second measured (`tests/data/h200_p1_shared.json`): a lower bound of the hours."""
    return max(busy, 1.0 / runs_at_once)


def projected_fraction(projection: dict, peak_tflops: float | None) -> float | None:
    """The grid's work over its projected hours, as a share of the bf16 dense peak: the hours it would
    take at the peak (its compute floor) over the projected hours."""
    if not peak_tflops:
        return None
    return hours_at_peak(projection["pflop"], peak_tflops) / projection["device_hours"]
