"""Should the seeds of one configuration train together? Prints the training-step time of K seeds'
networks stepped one after another (what the grid does: one run per seed) against the same K
networks stacked into one vmapped network (`torch.func.stack_module_state` + `vmap`), which turns
every convolution into one grouped convolution and launches K times fewer kernels.

    .venv/bin/python benchmarks/seed_stack.py [--device cuda] [--seeds 3] [--out seed-stack.json]

Measured for the smallest and the headline configuration of a spec (default paper-mtat-vgg), with
the suite's fast path for the device (autocast, fused Adam on CUDA; no compilation for either), in
interleaved rounds so that a noisy machine slows both sides alike. Each seed gets its own batch, as
it would in its own run. The stacked networks train BatchNorm on batch statistics without running
averages (`torch.func.replace_all_batch_norm_modules_`): that is what vmap supports, the training
step computes the same function, and the running averages would have to be kept outside the vmapped
call. Before timing, the stacked forward pass is checked against the separate networks (fp32).
The separate networks train as the grid's runs do, without their first convolutions' input gradient
(`architectures.layers.affine_conv`); inside `vmap` that does not apply (the stacked parameters do
not say they need a gradient there), and the stacked networks compute it.

The grid keeps one run per seed unless this measures `stacked` clearly faster on the device that
runs it; early stopping would then also have to mask seeds that stop before the others.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state, vmap

from bench.cli import at_least, comma_list
from bench.core.arguments import Parser
from bench.core.errors import UserError
from bench.core.store import atomic_write_json
from bench.spec import load_spec
from bench.tools.cases import Case, select_cases, spec_cases
from bench.tools.perf import _batch
from bench.train.fastpath import fast_path, sync
from bench.train.loop import forward, make_optimizer, optimise, resolve_device


def separate_step(case: Case, device: torch.device, seeds: int, batch: int):
    """One training step of each seed's own network, one after another."""
    path = dataclasses.replace(fast_path(device, planned_steps=None, arch=case.configuration.arch), compile=False)
    models, optimizers = [], []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = path.prepare_model(case.build(device)).train()
        models.append(model)
        optimizers.append(make_optimizer(model, path, lr=1e-4))
    batches = [_batch(case, batch, device, seed=s) for s in range(seeds)]
    scaler = torch.amp.GradScaler(device.type, enabled=path.torch_amp_dtype == torch.float16)
    loss_fn = nn.BCEWithLogitsLoss()

    def step():
        for model, optimizer, (mel, target) in zip(models, optimizers, batches, strict=True):
            optimise(loss_fn(forward(model, path, mel), target), optimizer, scaler)

    return step, models, batches, path


def _without_dropout(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Dropout | nn.Dropout2d):
            module.eval()
    return model


def stacked_step(case: Case, device: torch.device, seeds: int, batch: int, dropout: bool = True):
    """One training step of all seeds' networks as one vmapped network and one optimiser."""
    path = fast_path(device, planned_steps=None, arch=case.configuration.arch)
    models = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = case.build(device).train()
        replace_all_batch_norm_modules_(model)
        models.append(model)
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    if not dropout:
        _without_dropout(base)

    def one(p, b, x):
        return functional_call(base, (p, b), (x,))

    stacked = vmap(one, in_dims=(0, 0, 0), randomness="different")
    fused = {"fused": True} if path.fused_adam else {}
    optimizer = torch.optim.Adam(list(params.values()), lr=1e-4, **fused)
    batches = [_batch(case, batch, device, seed=s) for s in range(seeds)]
    mel = torch.stack([m for m, _ in batches]).unsqueeze(2).contiguous()  # (K, B, 1, F, T)
    target = torch.stack([t for _, t in batches])
    scaler = torch.amp.GradScaler(device.type, enabled=path.torch_amp_dtype == torch.float16)
    loss_fn = nn.BCEWithLogitsLoss()

    def logits(amp: bool = True):
        with path.autocast() if amp else contextlib.nullcontext():
            return stacked(params, buffers, mel).float()

    def step():
        # the mean over seeds of each seed's mean loss: every seed's gradient is its own loss's / K
        optimise(loss_fn(logits(), target) * seeds, optimizer, scaler)

    return step, logits


def agreement(case: Case, device: torch.device, seeds: int, batch: int) -> float:
    """Largest |difference| between the stacked and the separate networks' fp32 training-mode logits,
    over the largest |logit|, with dropout off (its draws differ)."""
    with torch.no_grad():
        _, models, batches, _ = separate_step(case, device, seeds, batch)
        separate = torch.stack([_without_dropout(m)(mel.unsqueeze(1).contiguous()).float()
                                for m, (mel, _) in zip(models, batches, strict=True)])
        _, logits = stacked_step(case, device, seeds, batch, dropout=False)
        stacked = logits(amp=False)
    return float((stacked - separate).abs().max() / separate.abs().max().clamp_min(1e-12))


def measure(case: Case, device: torch.device, seeds: int, batch: int, rounds: int, steps: int) -> dict:
    sep, *_ = separate_step(case, device, seeds, batch)
    stk, _ = stacked_step(case, device, seeds, batch)
    times: dict[str, list[float]] = {"separate": [], "stacked": []}
    for fn in (sep, stk):  # warm-up (cuDNN autotuning, allocator)
        fn()
        sync(device)
    for _ in range(rounds):
        for name, fn in (("separate", sep), ("stacked", stk)):
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    sep_s, stk_s = statistics.median(times["separate"]), statistics.median(times["stacked"])
    return {"case": case.label, "gmac_per_input": case.gmac_per_input, "seeds": seeds, "batch": batch,
            "separate_seconds": sep_s, "stacked_seconds": stk_s, "speedup": sep_s / stk_s,
            "rounds": rounds, "steps_per_round": steps}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="specs/paper-mtat-vgg.toml")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seeds", type=at_least(1), default=3)
    parser.add_argument("--batch", type=at_least(1), default=None,
                        help="clips per seed per step (default 32 on CUDA, 8)")
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--steps", type=at_least(1), default=None, help="steps per round (default 10 on CUDA, 1)")
    parser.add_argument("--cases", type=comma_list, default=("smallest", "headline"),
                        help="smallest, headline or both, separated by a comma (default both)")
    parser.add_argument("--out", default=None, help="also write the numbers as JSON (a .json file)")
    args = parser.parse_args(argv)
    if unknown := [name for name in args.cases if name not in ("smallest", "headline")]:
        parser.error(f"argument --cases: {', '.join(map(repr, unknown))}: the cases are smallest and headline")
    out = parser.output_file(args.out, "--out", ".json")
    try:  # a spec that is not there or not valid, --device cuda without a GPU: one line
        device = resolve_device(args.device)
        spec = load_spec(args.spec)
    except UserError as exc:
        parser.error(str(exc))
    cuda = device.type == "cuda"
    batch = args.batch or (32 if cuda else 8)
    steps = args.steps or (10 if cuda else 1)
    headline, smallest, _ = select_cases(spec_cases(spec), 1)
    named = {"smallest": smallest, "headline": headline}
    rows = []
    print(f"{'case':<28} {'GMAC':>6} {'diff':>8} {'separate s':>11} {'stacked s':>10} {'speedup':>8}")
    for name in args.cases:
        case = named[name]
        diff = agreement(case, device, args.seeds, min(batch, 4))
        row = {"name": name, "relative_difference": diff,
               **measure(case, device, args.seeds, batch, args.rounds, steps)}
        rows.append(row)
        print(f"{case.label:<28} {case.gmac_per_input:6.2f} {diff:8.1e} {row['separate_seconds']:11.4f} "
              f"{row['stacked_seconds']:10.4f} {row['speedup']:7.2f}x")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, {"device": str(device), "torch": torch.__version__, "rows": rows,
                                "device_name": torch.cuda.get_device_name(device) if cuda else None})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
