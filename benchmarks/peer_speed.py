"""Training speed side by side with sota-music-tagging-models (Won et al.), the field's reference
PyTorch implementation of FCN and Musicnn, on this machine.

    python benchmarks/peer_speed.py --peer PATH/TO/sota-music-tagging-models/training [--batch 16]

The peer's networks are imported from your checkout (nothing of it is copied here) and trained as
its solver does: fp32, Adam, BCE on sigmoid outputs, its mel front end inside the forward pass.
Ours train as `bench grid` trains them: the fast path chosen for this device and architecture, the
front end on the batch's waveforms, BCE on logits, Adam. Steps alternate between the two networks of
a pair (interleaved rounds, the same batch size, random clips of the networks' input length), and
the median step time is kept, so both see the same machine state.

Pairs: the peer's FCN against our VGG at width 0.5 (first block 64 channels like the FCN's; 3.38
GMAC per clip against the FCN's 2.16) and at width 0.4 (2.18 GMAC, the FCN's compute) on 29.1 s at
16 kHz / 96 bands / hop 256; the peer's Musicnn
(MTAT size) against our `musicnn-787k` (the released network, a similar parameter count) and our
paper MusiCNN on 3 s. Each side's GMAC per clip (`forward_gmac`: the network after the mel front
end, one forward pass) is printed beside its step time, and the ratio of the two sides' multiply-adds per
second: where the networks' compute differs, the step ratio alone says little of the code.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from architectures import InputConfig, build
from bench.cli import at_least
from bench.core import framing
from bench.core.arguments import Parser
from bench.core.store import atomic_write_json
from bench.cost.gmac import count_params
from bench.train.fastpath import fast_path
from bench.train.frontend import MelFrontend
from bench.train.loop import forward, make_optimizer, optimise


def ours(arch: str, seconds: float, batch: int, n_tags: int, **options):
    sample_rate = 16000
    config = InputConfig(sample_rate, 96, 1, framing.n_frames(seconds, sample_rate, 1))
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    path = fast_path(cpu, "auto", planned_steps=0, arch=arch)
    model = path.prepare_model(build(arch, config, n_tags, **options))
    model.train()
    frontend = MelFrontend(sample_rate, 96, 1, "log")
    optimizer = make_optimizer(model, path, 1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    samples = framing.clip_samples(seconds, sample_rate)
    wave = torch.randn(batch, samples) * 0.1
    target = (torch.rand(batch, n_tags) < 0.1).float()
    loss_fn = nn.BCEWithLogitsLoss()

    def step():
        with torch.no_grad():
            mel = frontend(wave)
        if model.segments is not None:
            mel = mel[:, :, :model.input_frames]
        optimise(loss_fn(forward(model, path, mel), target), optimizer, scaler)

    label = f"ours {arch}" + (f" (width {options['width']})" if "width" in options else "")
    with torch.no_grad():
        mel = frontend(wave[:1])[:, :, :model.input_frames] if model.segments is not None else frontend(wave[:1])
    return label, step, count_params(model), path, forward_gmac(model, mel) * (model.segments or 1)


def peer(module, name: str, seconds: float, batch: int, n_tags: int, **kwargs):
    torch.manual_seed(0)
    model = getattr(module, name)(n_class=n_tags, **kwargs)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    wave = torch.randn(batch, int(seconds * 16000)) * 0.1
    target = (torch.rand(batch, n_tags) < 0.1).float()
    loss_fn = nn.BCELoss()

    def step():
        optimizer.zero_grad()
        loss_fn(model(wave), target).backward()
        optimizer.step()

    return f"peer {name}", step, count_params(model), peer_gmac(model, wave[:1])


def peer_gmac(model: nn.Module, wave: torch.Tensor) -> float:
    """GMAC per clip of a peer network after its mel front end, as ours are counted: its `spec` and
    `to_db` (mel and dB, the first two steps of its forward pass) taken out, a clip's dB mel fed in."""
    import copy

    with torch.no_grad():
        mel = model.to_db(model.spec(wave))
    body = copy.deepcopy(model)
    body.spec, body.to_db = nn.Identity(), nn.Identity()
    return forward_gmac(body, mel)


def forward_gmac(model: nn.Module, x: torch.Tensor) -> float:
    """GMAC of one forward pass of `x` in eval mode by torch's FlopCounterMode (convolutions and matrix
    products; 2 FLOPs per multiply-add), the same counter for both sides. Not fvcore, whose tracing
    fails on the peer's Musicnn (it builds pooling layers from tensor sizes inside its forward pass)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2e9


def interleaved(steps: dict, rounds: int) -> dict:
    for step in steps.values():  # warm-up
        step()
    times: dict = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, help="the `training` folder of a sota-music-tagging-models checkout")
    parser.add_argument("--batch", type=at_least(1), default=16,
                        help="clips per step for both (default 16, the peer's)")
    parser.add_argument("--rounds", type=at_least(1), default=5)
    parser.add_argument("--threads", type=at_least(1), default=None)
    parser.add_argument("--out", help="also write the numbers as JSON (a .json file)")
    args = parser.parse_args()
    out = parser.output_file(args.out, "--out", ".json")
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.peer).resolve()
    if not (folder / "model.py").is_file():
        print(f"--peer {folder}: no model.py (give the checkout's training/ folder)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(folder))
    module = importlib.import_module("model")
    n_tags = 50
    pairs = [
        (peer(module, "FCN", 29.1, args.batch, n_tags), ours("vgg", 29.1, args.batch, n_tags, width=0.5)),
        (peer(module, "FCN", 29.1, args.batch, n_tags), ours("vgg", 29.1, args.batch, n_tags, width=0.4)),
        (peer(module, "Musicnn", 3.0, args.batch, n_tags), ours("musicnn-787k", 3.0, args.batch, n_tags)),
        (peer(module, "Musicnn", 3.0, args.batch, n_tags), ours("musicnn", 3.0, args.batch, n_tags)),
    ]
    rows = []
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, median of {args.rounds} interleaved rounds")
    for (peer_label, peer_step, peer_params, peer_gmac_), (our_label, our_step, our_params, path, our_gmac) in pairs:
        median = interleaved({peer_label: peer_step, our_label: our_step}, args.rounds)
        ratio = median[peer_label] / median[our_label]
        mac_ratio = ratio * our_gmac / peer_gmac_  # (our GMAC / our step) / (peer GMAC / peer step)
        layout = "channels_last" if path.channels_last else "NCHW"
        rows.append({"peer": peer_label, "ours": our_label, "peer_seconds": median[peer_label],
                     "our_seconds": median[our_label], "ours_faster_by": ratio, "peer_params": peer_params,
                     "our_params": our_params, "peer_gmac": peer_gmac_, "our_gmac": our_gmac,
                     "our_macs_per_second_by": mac_ratio, "our_path": f"{path.amp_dtype or 'float32'} {layout}"})
        print(f"  {peer_label:12s} {median[peer_label]:7.2f} s/step ({peer_params:,} params, {peer_gmac_:.3f} GMAC)   "
              f"{our_label:28s} {median[our_label]:7.2f} s/step ({our_params:,} params, {our_gmac:.3f} GMAC, "
              f"{path.amp_dtype or 'float32'} {layout})   ours {ratio:.2f}x as fast, {mac_ratio:.2f}x the "
              f"multiply-adds per second", flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
