"""`make gpu-check`'s C6 (`bench.tools.gpucheck`): the folds (the first convolutions without their input
gradient, VGG's block-1 BatchNorm in its convolution's weights), eager and compiled, and compiled VGG's
block-1 convolution and max-pool as one, give the gradients of the modules as written on this GPU."""

from __future__ import annotations

import math
from dataclasses import replace

from bench.tools.gpucheck_common import Check

FOLD_CASES = (("vgg", (16000, 48, 3, 63), {"width": 1 / 16}), ("musicnn", (16000, 48, 1, 187), {"width": 0.125}),
              ("vgg-605k", (16000, 96, 1, 187), {"width": 0.125}))
"""C6's networks, small: (arch, InputConfig fields, options). Each folds its input BatchNorm into its
first convolutions; VGG also block 1's BatchNorm (`architectures.layers.conv_bn`)."""

FOLD_TOLERANCE = 1e-3
"""C6: the largest relative difference allowed between a parameter's gradient with the folds and as
written, in float32 without TF32 (rounding alone gave at most 8e-5 on CPUs with AVX512, 1.5e-4 on one
with AVX2 only, mostly about 1e-5; in float64 at most 5e-13)."""


def _fold_switches(model, on: bool) -> None:
    for name in ("fold_input_bn", "fold_block1_bn"):
        if hasattr(model, name):
            setattr(model, name, on)


FUSED_CASE = "vgg, block 1 fused, compiled"
"""C6's row for VGG compiled with block 1's convolution and max-pool as one (`fuse_block1_pool`)."""

COMPILED_CASES = ("vgg", "musicnn")
"""C6's networks also compiled as a run compiles them (the folds, no fusion): rows "<arch>, compiled".
The box's own torch and its GPU code generator are held to the modules eager: a release whose
compiler gets a gradient wrong (torch 2.11 zeroed the fused block 1's) fails C6, not a grid."""


def fold_gradient_errors(device, compiled_backend: str | None = None) -> dict[str, dict[str, float]]:
    """Per network of FOLD_CASES: each parameter's relative difference between one training step's
    gradients with the folds on and with the modules as written, in float32 with TF32 off, from the
    same weights and batch (dropout off: the same function). A difference is taken relative to the
    parameter's gradient, or to a thousandth of the whole gradient's norm where that is larger (the
    convolution bias before a BatchNorm has a gradient of exactly 0, which either way computes as
    rounding). With `compiled_backend`, also COMPILED_CASES' folded steps compiled by that backend and
    FUSED_CASE, VGG's with block 1's convolution and pool fused, each against the modules eager."""
    import torch
    from torch import nn

    import architectures
    from architectures import InputConfig

    # (row, arch, InputConfig fields, options, compiled, block 1 fused)
    cases = [(arch, arch, shape, options, False, False) for arch, shape, options in FOLD_CASES]
    if compiled_backend:
        cases += [(f"{case[0]}, compiled", *case[1:4], True, False) for case in cases if case[0] in COMPILED_CASES]
        cases += [(FUSED_CASE, *case[1:4], True, True) for case in cases if case[0] == "vgg"]
    errors = {}
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for name, arch, shape, options, compiled, fused in cases:
            grads = []
            for fold in (True, False):
                torch.manual_seed(0)
                model = architectures.build(arch, InputConfig(*shape), 10, **options).to(device).train()
                _fold_switches(model, fold)
                for module in model.modules():
                    if isinstance(module, nn.Dropout):
                        module.p = 0.0
                forward = model
                if fold and compiled:
                    if fused:
                        model.fuse_block1_pool = True
                    torch._dynamo.reset()
                    # graph breaks allowed, as a run's compile allows them; the fused row asks for one
                    # graph, since the fusion acts only while dynamo traces (a break there would skip it)
                    forward = torch.compile(model, backend=compiled_backend, dynamic=False, fullgraph=fused)
                clips = torch.Generator().manual_seed(1)
                x = 2 + torch.randn(4, 1, shape[1], model.input_frames, generator=clips)
                target = torch.rand(4, 10, generator=clips).round()
                loss = nn.functional.binary_cross_entropy_with_logits(forward(x.to(device)), target.to(device))
                loss.backward()
                grads.append({n: p.grad.double().cpu() for n, p in model.named_parameters()})
            if compiled:
                torch._dynamo.reset()
            folded, written = grads
            total = math.sqrt(sum(float(g.square().sum()) for g in written.values()))
            errors[name] = {n: float((folded[n] - g).norm()) / max(float(g.norm()), 1e-3 * total)
                            for n, g in written.items()}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    return errors


def check_folds(check: Check, device=None) -> None:
    """C6: the folds (no first-convolution input gradient; VGG's block-1 BatchNorm in its convolution),
    eager and, where a compiler is there, compiled, and compiled VGG's block-1 convolution and max-pool
    as one, train with the gradients of the modules as written on this device, and a step of the fast
    path (autocast, channels_last) with them gives finite gradients."""
    import torch

    import architectures
    from architectures import InputConfig
    from bench.train.fastpath import compile_backend, compile_blocker, fast_path
    from bench.train.loop import forward

    device = device or torch.device("cuda")
    blocker = compile_blocker(device)
    errors = fold_gradient_errors(device, None if blocker else compile_backend())
    # per row the largest difference, and every parameter past the tolerance: where all of block 1's
    # gradients came out zero, the largest alone named only its input BatchNorm's bias
    rows = {}
    for arch, per in errors.items():
        error, parameter = max((e, n) for n, e in per.items())
        rows[arch] = {"error": error, "parameter": parameter,
                      "over_tolerance": sorted(n for n, e in per.items() if not e <= FOLD_TOLERANCE)}
    check.numbers = {"relative_errors": rows, "tolerance": FOLD_TOLERANCE, "fused_not_compiled": blocker}
    finite = {}
    for arch, shape, options in FOLD_CASES:  # eager: what compiles is C4's
        path = replace(fast_path(device, arch=arch), compile=False, compile_backend=None, compile_mode=None,
                       reuse_host_memory=False)
        model = path.prepare_model(architectures.build(arch, InputConfig(*shape), 10, **options).to(device)).train()
        mel = torch.randn(4, shape[1], model.input_frames, device=device)
        forward(model, path, mel).square().mean().backward()
        finite[arch] = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    check.numbers["fast_path_finite"] = finite
    over = {arch: row["over_tolerance"] for arch, row in rows.items() if row["over_tolerance"]}
    arch, worst = max(rows.items(), key=lambda item: item[1]["error"])
    check.ok = not over and all(finite.values())
    check.detail = (f"float32 gradients folded vs as written: largest relative difference {worst['error']:.1e} "
                    f"({arch} {worst['parameter']}; at most {FOLD_TOLERANCE:g})"
                    + "".join(f"; {a}: {len(names)} parameters past it ({', '.join(names)})"
                              for a, names in over.items())
                    + (f"; block 1 fused not compiled: {blocker}" if blocker else "") + "; fast-path steps "
                    + ("finite" if all(finite.values()) else
                       "NOT finite: " + ", ".join(a for a, ok in finite.items() if not ok)))

