"""Training speed side by side with sota-music-tagging-models (Won et al.), the field's reference
PyTorch implementation of FCN and Musicnn, on this machine.

    python benchmarks/peer_speed.py --peer PATH/TO/sota-music-tagging-models/training [--batch 16]

The peer's networks are imported from your checkout (nothing of it is copied here) and trained as
its solver does: fp32, Adam, BCE on sigmoid outputs, its mel front end inside the forward pass.
Ours train as `bench grid` trains them: the fast path chosen for this device and architecture, the
front end on the batch's waveforms, BCE on logits, Adam. Steps alternate between the two networks of
a pair (interleaved rounds, the same batch size, random clips of the networks' input length), and
the median step time is kept, so both see the same machine state.

Pairs: the peer's FCN against our VGG at width 0.5 (first block 64 channels like the FCN's, about
the FCN's GMAC) on 29.1 s at 16 kHz / 96 bands / hop 256; the peer's Musicnn (MTAT size) against our
`musicnn-787k` (the released network, a similar parameter count) and our paper MusiCNN on 3 s.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from architectures import InputConfig, build
from bench.core import framing
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
    return label, step, count_params(model), path


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

    return f"peer {name}", step, count_params(model)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, help="the `training` folder of a sota-music-tagging-models checkout")
    parser.add_argument("--batch", type=int, default=16, help="clips per step for both (default 16, the peer's)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", help="also write the numbers as JSON")
    args = parser.parse_args()
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
        (peer(module, "Musicnn", 3.0, args.batch, n_tags), ours("musicnn-787k", 3.0, args.batch, n_tags)),
        (peer(module, "Musicnn", 3.0, args.batch, n_tags), ours("musicnn", 3.0, args.batch, n_tags)),
    ]
    rows = []
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, median of {args.rounds} interleaved rounds")
    for (peer_label, peer_step, peer_params), (our_label, our_step, our_params, path) in pairs:
        median = interleaved({peer_label: peer_step, our_label: our_step}, args.rounds)
        ratio = median[peer_label] / median[our_label]
        layout = "channels_last" if path.channels_last else "NCHW"
        rows.append({"peer": peer_label, "ours": our_label, "peer_seconds": median[peer_label],
                     "our_seconds": median[our_label], "ours_faster_by": ratio, "peer_params": peer_params,
                     "our_params": our_params, "our_path": f"{path.amp_dtype or 'float32'} {layout}"})
        print(f"  {peer_label:12s} {median[peer_label]:7.2f} s/step ({peer_params:,} params)   "
              f"{our_label:28s} {median[our_label]:7.2f} s/step ({our_params:,} params, "
              f"{path.amp_dtype or 'float32'} {layout})   ours {ratio:.2f}x as fast", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
