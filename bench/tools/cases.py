"""The configurations `bench perf` and `make gpu-check` measure: a spec's configurations with their
analytic cost (`spec_cases`), and which of them stand for the grid (`select_cases`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import architectures
from architectures import InputConfig
from architectures.vgg import VGG
from bench.data.known import n_outputs
from bench.spec import Configuration, Spec


@dataclass(frozen=True)
class Case:
    """One configuration of a spec, as measured: what is built and what it costs per clip."""

    configuration: Configuration
    clip_seconds: float
    n_tags: int
    gmac_per_input: float
    """Analytic conv + linear GMAC of one forward pass of one network input: a whole clip (VGG) or
    one segment (MusiCNN, which trains on one segment per clip and evaluates all of them)."""
    segments: int = 1
    """Network inputs per clip in evaluation."""

    @property
    def label(self) -> str:
        m = self.configuration.mel
        shape = f"{m.n_mels}x{self.input_config.n_frames}"
        width = getattr(self.configuration.options, "width", 1.0)  # networks of one input at other widths
        narrow = "" if width == 1.0 else f" w{width:g}"
        return f"{self.configuration.arch}{narrow} {m.sample_rate // 1000}k {shape} x{m.hop_multiplier}"

    @property
    def input_config(self) -> InputConfig:
        return self.configuration.mel.input_config(self.clip_seconds)

    def build(self, device: torch.device, **module_options) -> nn.Module:
        """The network of this case; `module_options` are its implementation switches (VGG's
        `pool_before_elu` and `fold_block1_bn`, every network's `fold_input_bn`), which change how it computes,
        not what."""
        model = architectures.build(self.configuration.arch, self.input_config, self.n_tags,
                                    **dataclasses.asdict(self.configuration.options))
        if module_options and type(model) is VGG:
            return VGG(model.plan, self.n_tags, **module_options).to(device)
        for name, value in module_options.items():  # the other networks' switches are attributes
            if not hasattr(model, name):
                raise ValueError(f"{self.configuration.arch} has no switch {name!r}")
            setattr(model, name, value)
        return model.to(device)


def spec_cases(spec: Spec) -> list[Case]:
    """Every configuration of `spec` with its analytic GMAC per network input, counted on the network as
    measured and as the grid trains it (as many outputs as the dataset gives its runs, `n_outputs`), built
    on the meta device (no memory allocated, nothing computed)."""
    cases = []
    n_tags = n_outputs(spec.dataset)
    for configuration in spec.configurations():
        case = Case(configuration, spec.dataset.clip_seconds, n_tags, 0.0)
        with torch.device("meta"):
            model = architectures.build(configuration.arch, case.input_config, case.n_tags,
                                        **dataclasses.asdict(configuration.options))
        cases.append(dataclasses.replace(case, gmac_per_input=model.analytic_macs() / 1e9,
                                         segments=model.segments or 1))
    return cases


def select_cases(cases: list[Case], n_scaling: int) -> tuple[Case, Case, list[Case]]:
    """(headline, smallest, scaling cases) among a spec's cases.

    The headline is the issue's reference: 96 mel bands, hop x1, the lowest sample rate, `log`
    (VGG at 96 x 1366 in the paper's grids), the costliest network of those (VGG, not MusiCNN's segment;
    width 1, not a narrower one), else the costliest configuration. The smallest has the
    fewest GMAC. The scaling cases spread evenly in log GMAC over the distinct input shapes."""
    by_shape: dict[tuple, Case] = {}
    for case in cases:  # log and dB share every cost
        by_shape.setdefault(case.configuration.cost_key, case)
    distinct = sorted(by_shape.values(), key=lambda c: c.gmac_per_input)
    reference = [c for c in distinct if c.configuration.mel.n_mels == 96 and c.configuration.mel.hop_multiplier == 1]
    headline = min(reference, key=lambda c: (c.configuration.mel.sample_rate, -c.gmac_per_input)) if reference \
        else distinct[-1]
    smallest = distinct[0]
    if len(distinct) <= n_scaling:
        scaling = distinct
    else:
        logs = np.log([c.gmac_per_input for c in distinct])
        wanted = np.linspace(logs[0], logs[-1], n_scaling)
        picked = sorted({int(np.argmin(np.abs(logs - w))) for w in wanted})
        scaling = [distinct[i] for i in picked]
    return headline, smallest, scaling
