"""GMAC and parameter counts against numbers derived by hand from the paper's channel counts (Table I)
and pools (Table III); the paper gives GMAC only in its Fig. 1 and online results."""

import dataclasses
import logging

import pytest
import torch

from architectures import InputConfig
from architectures.options import MusiCNNOptions, VGGOptions
from bench.cost.gmac import Cost, count_params, fvcore_gmac, model_cost

from .conftest import SPECS

CHANNELS = (1, 128, 384, 768, 2048)


def hand_vgg_macs(sizes, n_tags=50):
    """Conv 3x3 'same' at each block's input size (H*W*Cin*Cout*9) plus the linear layer."""
    convs = sum(h * w * CHANNELS[i] * CHANNELS[i + 1] * 9 for i, (h, w) in enumerate(sizes))
    return convs + 2048 * n_tags


# (config, block input sizes from the paper's pools, GMAC hand-counted to two decimals)
VGG_CASES = [
    (InputConfig(12000, 96, 1, 1366), [(96, 1366), (48, 341), (12, 68), (4, 8)], 10.01),
    (InputConfig(12000, 48, 1, 1366), [(48, 1366), (24, 341), (6, 68), (2, 8)], 5.01),
    (InputConfig(12000, 48, 10, 137), [(48, 137), (24, 34), (6, 6), (2, 1)], 0.49),
]


@pytest.mark.parametrize("config,sizes,hand_gmac", VGG_CASES, ids=["96x1366", "48x1366", "48x137"])
def test_vgg_gmac(config, sizes, hand_gmac):
    cost = model_cost("vgg", config, 50)
    assert cost.gmac_analytic == hand_vgg_macs(sizes) / 1e9
    assert round(cost.gmac_analytic, 2) == hand_gmac
    assert cost.gmac == pytest.approx(cost.gmac_analytic, rel=0.01)
    # fvcore also counts BatchNorm: 2 flops per element of an affine BatchNorm at inference (its
    # batchnorm_flop_jit), over the input's and each block's conv output
    bn_elements = sum(c * h * w for c, (h, w) in zip(CHANNELS, [sizes[0], *sizes], strict=True))
    assert cost.gmac * 1e9 - hand_vgg_macs(sizes) == pytest.approx(2 * bn_elements, abs=1)
    assert cost.segments is None
    # fvcore counted every conv and linear layer; what it skipped carries no multiply-adds
    assert not [op for op in cost.fvcore_unsupported if "conv" in op or "linear" in op or "mm" in op]
    assert cost.fvcore_unsupported == {"aten::elu": 4, "aten::max_pool2d": 4}  # one of each per block


def test_vgg_params_width_1():
    expected = (
        2  # input BatchNorm (weight, bias)
        + (1 * 128 * 9 + 128) + 2 * 128  # conv 1 (+ bias) and its BatchNorm = 1,536
        + (128 * 384 * 9 + 384) + 2 * 384  # 443,520
        + (384 * 768 * 9 + 768) + 2 * 768  # 2,656,512
        + (768 * 2048 * 9 + 2048) + 2 * 2048  # 14,161,920
        + (2048 * 50 + 50)  # linear = 102,450
    )
    assert expected == 17_365_940
    assert model_cost("vgg", InputConfig(12000, 96, 1, 1366), 50).params == expected


def test_musicnn_params_small_configuration_by_hand():
    # 8 bands, width 1/16: base 1 filter, 32 mid-end filters, 31 dense units, 5 tags.
    # Timbral heights int(0.9 * 8) = 7 and int(0.4 * 8) = 3; conv = h*w*f + f, BatchNorm = 2f.
    timbral = sum(h * w * f + f + 2 * f for h in (7, 3) for w, f in ((7, 1), (3, 2), (1, 4)))
    assert timbral == 140 + 72
    temporal = sum(k * f + f + 2 * f for k, f in ((165, 1), (128, 2), (64, 4), (32, 8)))
    assert temporal == 978
    front = 2 * (1 + 2 + 4) + (1 + 2 + 4 + 8)  # 29 channels
    mid = (7 * front * 32 + 32 + 64) + 2 * (7 * 32 * 32 + 32 + 64)  # 6,592 + 2 * 7,264
    dense = 2 * (front + 3 * 32)  # max and mean of 125 channels
    back = 2 * dense + (dense * 31 + 31) + 2 * 31 + (31 * 5 + 5)  # 500 + 7,781 + 62 + 160
    expected = 2 + timbral + temporal + mid + back
    assert expected == 30_815
    config = InputConfig(12000, 8, 1, 1366)
    assert model_cost("musicnn", config, 5, MusiCNNOptions(width=1 / 16)).params == expected


def test_musicnn_cost_per_segment_and_clip():
    cost = model_cost("musicnn", InputConfig(16000, 96, 1, 1820), 50)
    assert cost.segments == 9  # 1820 // 187
    # Hand count for one 187-frame segment (see test_planning.test_musicnn_macs_by_hand)
    t = 187
    macs = (sum((96 - h + 1) * t * h * (7 * 16 + 3 * 32 + 64) for h in (86, 38))
            + t * (165 * 16 + 128 * 32 + 64 * 64 + 32 * 128)
            + t * 7 * (464 * 512 + 2 * 512 * 512) + 4000 * 500 + 500 * 50)
    assert cost.gmac_analytic == pytest.approx(9 * macs / 1e9)
    assert cost.gmac == pytest.approx(9 * macs / 1e9, rel=0.01)  # fvcore's count against the hand count
    # the rest is fvcore's 2 flops per element of an affine BatchNorm at inference: the input's; the
    # timbral branches' (16, 32, 64 filters of 96 - 86 + 1 and 96 - 38 + 1 bands); the temporal ones' on
    # the band mean (16 to 128 filters); the mid end's three of 512; the back end's 2 x 2,000 and 500
    bn_elements = (96 * t + (11 + 59) * t * (16 + 32 + 64) + t * (16 + 32 + 64 + 128) + 3 * 512 * t
                   + 2 * (464 + 3 * 512) + 500)
    assert cost.gmac * 1e9 == pytest.approx(9 * (macs + 2 * bn_elements), abs=10)
    # what it cannot count, as the network is written: the mid end's 2 residual additions, the 6 timbral
    # branches' and the back end's max, the band mean and the back end's mean, the 4 temporal 'same' pads
    assert cost.fvcore_unsupported == {"aten::add": 2, "aten::amax": 7, "aten::mean": 2, "aten::pad": 4}
    # bench plan without fvcore (and bench status's estimate, which reads it): per clip, 9 segments too
    from bench.cost.plan import plan_rows
    from bench.spec import load_spec

    rows = plan_rows(load_spec(SPECS / "paper-mtat-musicnn.toml"), fvcore=False)
    (row,) = [r for r in rows if (r["sample_rate"], r["n_mels"], r["log"]) == (16000, 96, "log")]
    assert row["gmac_analytic"] == pytest.approx(9 * macs / 1e9) and row["gmac"] == ""


def test_options_are_used():
    """VGG's width scales the paper's 128/384/768/2048 channels: 4/12/24/64 at 1/32, 8/24/48/128 at
    1/16. By hand, with the input BatchNorm (2), each block's 3x3 conv, its bias and BatchNorm, and 5
    tags: 2 + 48 + 468 + 2,664 + 14,016 + 325 and 2 + 96 + 1,800 + 10,512 + 55,680 + 645."""
    config = InputConfig(12000, 16, 1, 64)
    small = model_cost("vgg", config, 5, VGGOptions(width=1 / 32))
    assert small.params == 17_523
    assert model_cost("vgg", config, 5, VGGOptions(width=1 / 16)).params == 68_735


def test_a_cost_is_frozen():
    small = model_cost("vgg", InputConfig(12000, 16, 1, 64), 5, VGGOptions(width=1 / 32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.gmac = 0.0
    assert isinstance(small, Cost)


def test_count_params_counts_trainable_only():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    assert count_params(model) == (3 * 4 + 4) + 2 * 4 + (4 * 2 + 2)
    model[0].weight.requires_grad_(False)
    assert count_params(model) == 4 + 2 * 4 + (4 * 2 + 2)


def test_fvcore_is_quiet_and_restores_mode(caplog, recwarn):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ELU()).train()
    with caplog.at_level(logging.INFO):
        gmac, unsupported = fvcore_gmac(model, torch.zeros(1, 1, 8, 10))
    assert gmac == 8 * 10 * 4 * 9 / 1e9
    assert unsupported == {"aten::elu": 1}
    assert model.training
    assert not caplog.records and not recwarn.list


def test_the_documented_grid_table_is_what_the_planner_gives():
    """docs/frontend-and-cost.md's table of the paper's VGG-CNN grid (inputs, pools, GMAC per clip) is
    the planner's, cell by cell: a table typed by hand once read 1.95 GMAC where the count is 1.94."""
    import re
    from pathlib import Path

    from architectures.planning import vgg_macs, vgg_plan

    doc = (Path(__file__).resolve().parents[1] / "docs" / "frontend-and-cost.md").read_text()
    rows = re.findall(r"^\| (\d+) \| x(\d+) \| (\d+)x(\d+) \| ([\d-]+) / ([\d-]+) \| ([\d.]+) \| "
                      r"(\d+)x(\d+) \| ([\d-]+) / ([\d-]+) \| ([\d.]+) \|$", doc, flags=re.M)
    assert len(rows) == 22  # 128, 96 and 48 bands x 6 hops, and 32, 24, 16 and 8 bands at x1
    for mels, hop, *cells in rows:
        for rate, (bands, frames, freq, time, gmac) in ((12000, cells[:5]), (16000, cells[5:])):
            assert bands == mels
            plan = vgg_plan(rate, int(mels), int(hop), int(frames))
            assert "-".join(map(str, plan.pool_freq)) == freq and "-".join(map(str, plan.pool_time)) == time
            assert f"{vgg_macs(plan, 50) / 1e9:.2f}" == gmac, (mels, hop, rate)


def test_the_footprint_covers_evaluation_and_the_served_throughput():
    """The paper's largest input, VGG-CNN at 128 x 1820 (16 kHz), batch 32, pools 2-4-4-4 (frequency) and
    4-5-9-10 (time). Training keeps every layer's output in fp32; per clip, with each block's pool before
    its ELU (the same function, on a quarter of the elements): the input BatchNorm 128 x 1820; block 1
    conv and BatchNorm 128 x 128 x 1820 each, pool and ELU 128 x 64 x 455 each; block 2 384 x 64 x 455
    twice, 384 x 16 x 91 twice; block 3 768 x 16 x 91 twice, 768 x 4 x 10 twice; block 4 2048 x 4 x 10
    twice, 2048 x 1 x 1 twice; 50 outputs. Evaluation without autograd holds a layer's input and output
    at once; the largest pair is block 1's conv and BatchNorm outputs: at 4 x 32 clips in bf16,
    2 x 29,818,880 x 128 x 2 bytes = 15,267,266,560 bytes (14.2 GiB), more than training's
    11,939,027,200: what runs per GPU must reserve. Each pass also holds its batch: a 29.1 s clip is
    465,600 samples in float16 and a 128 x 1820 mel in fp32, 2 x 465,600 + 4 x 232,960 = 1,863,040 bytes
    per clip. And 256 MiB for cuDNN's workspaces."""
    from bench.cost.gmac import training_footprint_bytes
    from bench.spec import load_spec
    from bench.train.latency import cuda_passes_without_grad

    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    run = next(r for r in spec.runs() if (r.mel.sample_rate, r.mel.n_mels, r.mel.hop_multiplier) == (16000, 128, 1))
    assert run.protocol.batch_size == 32
    weights = 16 * 17_365_940 + 256 * 2**20  # fp32 weights, gradients, Adam's two moments; workspace
    held = 2 * 465_600 + 4 * 128 * 1820
    per_clip = (128 * 1820 + 2 * 128 * 128 * 1820 + 2 * 128 * 64 * 455 + 2 * 384 * 64 * 455 + 2 * 384 * 16 * 91
                + 2 * 768 * 16 * 91 + 2 * 768 * 4 * 10 + 2 * 2048 * 4 * 10 + 2 * 2048 + 50)
    assert per_clip * 32 * 4 == 11_939_027_200
    assert training_footprint_bytes(run) == weights + 11_939_027_200 + 32 * held
    passes = cuda_passes_without_grad(32, "auto")
    assert passes == ((128, 2), (64, 4))  # evaluation at 4 batches in bf16, the served throughput at 64 in fp32
    assert training_footprint_bytes(run, passes) == weights + 15_267_266_560 + 128 * held
    fp32 = cuda_passes_without_grad(32, "fp32")
    assert training_footprint_bytes(run, fp32) == weights + 2 * 15_267_266_560 + 128 * held


@pytest.mark.parametrize(("arch", "mels", "largest", "clips"), [
    ("musicnn", 128, 64 * (128 - 51 + 1) * 187, 128),  # 933,504 per segment, 8,401,536 per clip
    ("musicnn-787k", 96, 204 * (96 - 38 + 1) * 187, 106),  # 2,250,732 per segment, 20,256,588 per clip
])
def test_musicnns_evaluation_convolutions_count_towards_its_largest_tensor(arch, mels, largest, clips):
    """MusiCNN evaluates its timbral branches with `F.conv2d` beside its modules (the pool over bands
    comes first), so the largest tensor of its evaluation is no module's output: a timbral filter
    0.4 x n_mels bands tall over the whole band axis, n_mels - h + 1 positions by the segment's 187
    frames, for each filter. The paper's MusiCNN at 16 kHz, 128 mels: 64 filters 51 bands tall. Pons
    et al.'s released MTT model (`musicnn-787k`, 96 mels): 204 filters 38 bands tall. A 29.1 s clip is
    9 segments of 3 s; at 128 clips the released model's 2,592,843,264 elements pass 2^31 - 1."""
    import architectures
    from bench.train.fastpath import eval_clips

    config = architectures.InputConfig(16000, mels, 1, 1820)
    model, outputs = architectures.meta_output_elements(arch, config, 50, 1)
    assert model.segments == 9 and model.input_frames == 187
    assert max(outputs) == largest
    assert eval_clips(arch, config, 50, {}, 128) == clips == min(128, (2**31 - 1) // (9 * largest))


@pytest.mark.parametrize(("spec_file", "arch", "mels", "largest", "fits"), [
    ("paper-mtat-vgg.toml", "vgg", 128, 128 * 128 * 1820, 72),  # the first block's output, per clip
    ("paper-mtat-musicnn.toml", "musicnn", 128, 64 * (128 - 51 + 1) * 187, 2300),  # one 3 s segment per clip
])
def test_a_training_batch_beyond_32_bit_indexing_is_refused_on_cuda(spec_file, arch, mels, largest, fits):
    """A training batch is what the spec asks for, not capped like an evaluation batch: one with a
    tensor of more than 2^31 - 1 elements is refused on CUDA, naming the largest batch_size that
    fits. VGG at 16 kHz, 128 mels, hop x1: 29,818,880 elements per clip, so 72 clips
    (2,146,959,360) and not 73. MusiCNN trains on one random 3 s segment per clip (187 frames) and
    its largest tensor is a timbral filter's 64 x 78 x 187 = 933,504: 2300 clips and not 2301."""
    from bench.spec import load_spec
    from bench.train.fastpath import cuda_batch_problem

    spec = load_spec(SPECS / spec_file)
    run = next(r for r in spec.runs() if (r.mel.sample_rate, r.mel.n_mels, r.mel.hop_multiplier) == (16000, mels, 1))
    assert run.arch == arch and fits * largest <= 2**31 - 1 < (fits + 1) * largest
    assert cuda_batch_problem(run) is None  # the paper's 32
    batch = dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, batch_size=fits))
    assert cuda_batch_problem(batch) is None
    over = dataclasses.replace(run, protocol=dataclasses.replace(run.protocol, batch_size=fits + 1))
    problem = cuda_batch_problem(over)
    assert problem.startswith(f"protocol.batch_size = {fits + 1}: {arch} at 16000 Hz, 128 mels, hop x1")
    assert f"{largest:,} elements per clip" in problem and f"at most {fits}" in problem


@pytest.mark.parametrize(("rate", "mels", "hop", "clips"), [
    (16000, 128, 1, 72),   # 128 x 128 x 1820 = 29,818,880 elements per clip
    (12000, 128, 1, 95),   # 128 x 128 x 1366 = 22,380,544
    (16000, 96, 1, 96),    # 128 x 96 x 1820 = 22,364,160
    (12000, 96, 1, 127),   # 128 x 96 x 1366 = 16,785,408: 128 clips are 2,148,532,224, just over
    (16000, 128, 2, 128),  # 128 x 128 x 910 = 14,909,440: 128 clips stay under
])
def test_evaluation_batches_keep_every_tensor_within_32_bit_indexing(rate, mels, hop, clips):
    """On CUDA a run evaluates 4 training batches (128 clips) at once, where no tensor passes 2^31 - 1
    elements: kernels that index with 32-bit integers have failed on larger ones with an illegal memory
    access, after which the run could never be recorded. VGG's largest tensor is its first block's
    output, 128 channels x n_mels x frames (the paper's 1820 frames at 16 kHz, 1366 at 12 kHz, hop x1)."""
    from types import SimpleNamespace

    from bench.spec import load_spec
    from bench.train.fastpath import eval_batch_size

    spec = load_spec(SPECS / "paper-mtat-vgg.toml")
    run = next(r for r in spec.runs() if (r.mel.sample_rate, r.mel.n_mels, r.mel.hop_multiplier) == (rate, mels, hop))
    assert eval_batch_size(run, SimpleNamespace(eval_batch_factor=4)) == clips
    assert eval_batch_size(run, SimpleNamespace(eval_batch_factor=1)) == 32
