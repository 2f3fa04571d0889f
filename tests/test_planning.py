"""Shape planning: Table III of the paper, the general pooling rule, MusiCNN sizes, analytic MACs.

Expected numbers are written out from the paper (Tables II and III, section V) or derived by hand here,
never read back from architectures.planning.
"""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from architectures.planning import (
    musicnn_heights,
    musicnn_macs,
    musicnn_plan,
    rule_pads,
    rule_pools,
    segment_frames,
    vgg_macs,
    vgg_plan,
)
from bench.core import framing

# Frames of a 29.1 s clip by sample rate and hop multiplier: x1 and x10 as the paper's section V states
# them, x2-x5 derived by hand as ceil(x1 frames / multiplier) (every m-th frame of the x1 spectrogram).
PAPER_FRAMES = {
    12000: {1: 1366, 2: 683, 3: 456, 4: 342, 5: 274, 10: 137},
    16000: {1: 1820, 2: 910, 3: 607, 4: 455, 5: 364, 10: 182},
}
# Paper Table III, copied from the paper (not from the code).
PAPER_TIME_POOLS = {
    12000: {1: (4, 5, 8, 8), 2: (4, 5, 8, 4), 3: (4, 5, 8, 2), 4: (4, 5, 8, 2), 5: (4, 5, 8, 1),
            10: (4, 5, 4, 1)},
    16000: {1: (4, 5, 9, 10), 2: (4, 5, 9, 5), 3: (4, 5, 9, 3), 4: (4, 5, 9, 2), 5: (4, 5, 9, 2),
            10: (4, 5, 9, 1)},
}
PAPER_FREQ_POOLS = {128: (2, 4, 4, 4), 96: (2, 4, 3, 4), 48: (2, 4, 3, 2), 32: (2, 2, 3, 2),
                    24: (2, 2, 3, 2), 16: (2, 2, 2, 2), 8: (2, 2, 2, 1)}
# Paper Table II: 128/96/48 bands at every hop, 32/24/16/8 bands at x1, both sample rates.
TABLE_II = [(sr, n, m) for sr in (12000, 16000) for n in (128, 96, 48) for m in (1, 2, 3, 4, 5, 10)]
TABLE_II += [(sr, n, 1) for sr in (12000, 16000) for n in (32, 24, 16, 8)]


def pooled(size, pools):
    """Sizes after each MaxPool (kernel = stride, remainder dropped)."""
    sizes = [size]
    for p in pools:
        sizes.append(sizes[-1] // p)
    return sizes


def test_planning_does_not_import_torch():
    code = "import sys, architectures.planning; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_paper_frame_counts_are_what_framing_gives():
    for sr, by_hop in PAPER_FRAMES.items():
        for m, frames in by_hop.items():
            assert framing.n_frames(29.1, sr, m) == frames


@pytest.mark.parametrize("sample_rate,n_mels,hop", TABLE_II)
def test_table_iii_for_every_table_ii_configuration(sample_rate, n_mels, hop):
    frames = PAPER_FRAMES[sample_rate][hop]
    plan = vgg_plan(sample_rate, n_mels, hop, frames)
    assert plan.pool_freq == PAPER_FREQ_POOLS[n_mels]
    assert plan.pool_time == PAPER_TIME_POOLS[sample_rate][hop]
    assert (plan.source_freq, plan.source_time) == ("table", "table")
    heights = pooled(n_mels, PAPER_FREQ_POOLS[n_mels])
    widths = pooled(frames, PAPER_TIME_POOLS[sample_rate][hop])
    assert (heights[-1], widths[-1]) == (1, 1)
    assert plan.shapes == tuple(zip(heights, widths, strict=True))


def test_original_network_shapes():
    # 96x1366 -> 48x341 -> 12x68 -> 4x8 -> 1x1 (the paper's Table I prints other sizes)
    plan = vgg_plan(12000, 96, 1, 1366)
    assert plan.shapes == ((96, 1366), (48, 341), (12, 68), (4, 8), (1, 1))
    assert plan.channels == (128, 384, 768, 2048)
    assert (plan.pool_freq, plan.pool_time) == ((2, 4, 3, 4), (4, 5, 8, 8))


def test_time_table_needs_the_paper_frame_count():
    # One frame fewer (plain librosa framing) is not the paper's input: the rule plans it.
    plan = vgg_plan(16000, 96, 1, 1819)
    assert plan.source_time == "rule" and plan.source_freq == "table"
    # 1819 (+1) -> 455 -> 91 (+5) -> 12 -> 1: padded at the end to a multiple of each pool
    assert (plan.pool_time, plan.pad_time) == ((4, 5, 8, 12), (1, 0, 5, 0))
    assert vgg_plan(22050, 96, 1, 1366).source_time == "rule"  # other sample rate, same count


def test_rule_examples_derived_by_hand():
    # (size, original pools) -> (pools, padding at the end of each pool's input): what remains is
    # padded up to a multiple of the pool (s -> ceil(s / p)), the last pool takes the rest
    for size, original, pools, pads in [
        (1820, (4, 5, 8, 8), (4, 5, 8, 12), (0, 0, 5, 0)),  # 1820 -> 455 -> 91 (+5) -> 12 -> 1
        (137, (4, 5, 8, 8), (4, 5, 7, 1), (3, 0, 0, 0)),  # 137 (+3) -> 35 -> 7 -> 1 (8 > 7: pools 7)
        (314, (4, 5, 8, 8), (4, 5, 8, 2), (2, 1, 0, 0)),  # 5 s at 16 kHz: 314 (+2) -> 79 (+1) -> 16 -> 2 -> 1
        (100, (2, 4, 3, 4), (2, 4, 3, 5), (0, 2, 2, 0)),  # 100 -> 50 (+2) -> 13 (+2) -> 5 -> 1
        (8, (2, 4, 3, 4), (2, 4, 1, 1), (0, 0, 0, 0)),  # 8 -> 4 -> 1
        (1, (2, 4, 3, 4), (1, 1, 1, 1), (0, 0, 0, 0)),
        (257, (2, 4, 3, 4), (2, 4, 3, 11), (1, 3, 0, 0)),  # 257 (+1) -> 129 (+3) -> 33 -> 11 -> 1
        (96, (2, 4, 3, 4), (2, 4, 3, 4), (0, 0, 0, 0)),  # Table III's, which divide
        (48, (2, 4, 3, 4), (2, 4, 3, 2), (0, 0, 0, 0)),
    ]:
        assert (rule_pools(size, original), rule_pads(size, pools)) == (pools, pads), size
    plan = vgg_plan(12000, 40, 1, 1366)
    assert (plan.source_freq, plan.pool_freq, plan.pad_freq) == ("rule", (2, 4, 3, 2), (0, 0, 1, 0))  # 40 -> 20 -> 5
    assert plan.shapes[:3] == ((40, 1366), (20, 341), (5, 68))


def check_rule(size, original, pools):
    remaining = size
    for i, (p, pad) in enumerate(zip(pools, rule_pads(size, pools), strict=True)):
        assert 1 <= p <= remaining  # never pools by more than what remains
        if i < 3:
            assert p == min(original[i], remaining)  # original pools early where they fit
        assert 0 <= pad < p and (remaining + pad) % p == 0  # every window holds at least one real value
        remaining = (remaining + pad) // p
    assert remaining == 1


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 257))
def test_rule_frequency_property(size):
    pools = rule_pools(size, (2, 4, 3, 4))
    check_rule(size, (2, 4, 3, 4), pools)
    if size >= 96:
        assert pools[:3] == (2, 4, 3)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 20000))
def test_rule_time_property(size):
    pools = rule_pools(size, (4, 5, 8, 8))
    check_rule(size, (4, 5, 8, 8), pools)
    if size >= 1366:
        assert pools[:3] == (4, 5, 8)


@settings(max_examples=200, deadline=None)
@given(
    sample_rate=st.sampled_from([8000, 11025, 12000, 16000, 22050, 44100]),
    n_mels=st.integers(1, 257),
    hop=st.integers(1, 20),
    clip_seconds=st.floats(0.05, 120.0),
    width=st.sampled_from([1 / 64, 0.25, 1.0, 2.0]),
)
def test_vgg_plan_property(sample_rate, n_mels, hop, clip_seconds, width):
    frames = framing.n_frames(clip_seconds, sample_rate, hop)
    plan = vgg_plan(sample_rate, n_mels, hop, frames, width=width)
    assert plan.shapes[0] == (n_mels, frames) and plan.shapes[-1] == (1, 1)
    layers = zip(plan.shapes[:-1], plan.shapes[1:], plan.pool_freq, plan.pool_time, strict=True)
    for (h, w), (h2, w2), pf, pt in layers:
        assert 1 <= pf <= h and 1 <= pt <= w
        # Table III's axes drop the remainder (its authors' pooling); the rule's pad it, losing nothing
        assert h2 == (h // pf if plan.source_freq == "table" else -(-h // pf))
        assert w2 == (w // pt if plan.source_time == "table" else -(-w // pt))
    in_paper = hop in PAPER_FRAMES.get(sample_rate, {}) and frames == PAPER_FRAMES[sample_rate][hop]
    assert plan.source_time == ("table" if in_paper else "rule")
    assert plan.source_freq == ("table" if n_mels in PAPER_FREQ_POOLS else "rule")
    assert all(c >= 1 for c in plan.channels)


def test_vgg_channels_at_widths():
    assert vgg_plan(12000, 96, 1, 1366, width=1 / 64).channels == (2, 6, 12, 32)
    assert vgg_plan(12000, 96, 1, 1366, width=0.5).channels == (64, 192, 384, 1024)
    assert vgg_plan(12000, 96, 1, 1366, width=1e-3).channels == (1, 1, 1, 2)
    # round(c x width), as docs/specs.md says, not truncation: 128/3 = 42.7 and 2048/3 = 682.7
    assert vgg_plan(12000, 96, 1, 1366, width=1 / 3).channels == (43, 128, 256, 683)


def test_vgg_macs_by_hand():
    # Conv 3x3 'same' at each block's input size: H*W*Cin*Cout*9, plus Linear 2048*50.
    # 96x1366 (12 kHz x1): sizes 96x1366, 48x341, 12x68, 4x8
    expected = (96 * 1366 * 1 * 128 * 9 + 48 * 341 * 128 * 384 * 9 + 12 * 68 * 384 * 768 * 9
                + 4 * 8 * 768 * 2048 * 9 + 2048 * 50)
    assert expected == 10_010_669_056
    assert vgg_macs(vgg_plan(12000, 96, 1, 1366), 50) == expected
    assert round(expected / 1e9, 2) == 10.01
    # 48x1366: sizes 48x1366, 24x341, 6x68, 2x8
    expected = (48 * 1366 * 128 * 9 + 24 * 341 * 128 * 384 * 9 + 6 * 68 * 384 * 768 * 9
                + 2 * 8 * 768 * 2048 * 9 + 2048 * 50)
    assert vgg_macs(vgg_plan(12000, 48, 1, 1366), 50) == expected
    assert round(expected / 1e9, 2) == 5.01
    # 48x137 (12 kHz x10, time pools 4,5,4,1): sizes 48x137, 24x34, 6x6, 2x1
    expected = (48 * 137 * 128 * 9 + 24 * 34 * 128 * 384 * 9 + 6 * 6 * 384 * 768 * 9
                + 2 * 1 * 768 * 2048 * 9 + 2048 * 50)
    assert vgg_macs(vgg_plan(12000, 48, 10, 137), 50) == expected
    assert round(expected / 1e9, 2) == 0.49


def test_musicnn_heights():
    assert musicnn_heights(96) == (86, 38)
    assert musicnn_heights(48) == (43, 19)
    assert musicnn_heights(8) == (7, 3)
    assert musicnn_heights(128) == (115, 51)
    assert musicnn_heights(2) == (1, 1)
    assert musicnn_heights(1) == (1, 1)


@given(n_mels=st.integers(1, 257))
def test_musicnn_heights_property(n_mels):
    tall, short = musicnn_heights(n_mels)
    assert n_mels >= tall >= short >= 1


def test_segment_frames():
    assert segment_frames(16000, 1) == 187  # 3 s * 16000 / 256 = 187.5
    assert segment_frames(12000, 1) == 140  # 140.6
    assert segment_frames(16000, 10) == 18  # 18.75
    # 2.32 s x 48,000 = 111,360 samples = 435 hops of 256 exactly (in floating point 434.99999999999994)
    assert segment_frames(48000, 1, 2.32) == 435
    assert segment_frames(12000, 1, 36.8) == 1725  # 441,600 samples = 1,725 x 256
    assert segment_frames(16000, 1, segment_seconds=15.0) == 937
    assert segment_frames(1000, 20, segment_seconds=0.1) == 1  # never 0


def test_musicnn_plan():
    plan = musicnn_plan(16000, 96, 1, 1820)
    assert plan.heights == (86, 38)
    assert (plan.segment_frames, plan.segments) == (187, 9)  # 1820 // 187
    assert plan.timbral_filters == (16, 32, 64)
    assert plan.temporal_filters == (16, 32, 64, 128)
    assert plan.front_channels == 2 * (16 + 32 + 64) + (16 + 32 + 64 + 128) == 464
    assert (plan.mid_filters, plan.dense_units, plan.dense_channels) == (512, 500, 464 + 3 * 512)
    tiny = musicnn_plan(12000, 8, 1, 50, width=1 / 64)
    assert tiny.timbral_filters == (1, 2, 4) and tiny.mid_filters == 8 and tiny.dense_units == 8
    assert (tiny.segment_frames, tiny.segments) == (50, 1)  # a clip shorter than a segment


def test_musicnn_macs_by_hand():
    # 96 bands, 187 frames, width 1, 50 tags. Timbral: (96 - h + 1) * T * h * w * filters.
    t = 187
    timbral = sum((96 - h + 1) * t * h * (7 * 16 + 3 * 32 + 1 * 64) for h in (86, 38))
    temporal = t * (165 * 16 + 128 * 32 + 64 * 64 + 32 * 128)
    mid = t * 7 * (464 * 512 + 512 * 512 + 512 * 512)
    back = 4000 * 500 + 500 * 50
    expected = timbral + temporal + mid + back
    assert musicnn_macs(musicnn_plan(16000, 96, 1, 1820), 96, 50) == expected
    assert round(expected / 1e9, 3) == 1.164


@pytest.mark.parametrize("width, base, mid, dense", [(0.3, 5, 154, 150), (2 / 3, 11, 341, 333), (0.0625, 1, 32, 31)])
def test_musicnn_filter_counts_at_a_width_are_rounded_to_the_nearest(width, base, mid, dense):
    """docs/architectures.md: 16 base filters, 512 mid-end filters and 500 dense units at width 1, each
    count times `width` rounded to the nearest integer: 16 x 0.3 = 4.8 is 5 (truncating gave 4, another
    network with other GMAC and parameters, where 16 x width is not whole)."""
    from architectures.planning import musicnn_plan

    plan = musicnn_plan(16000, 96, 1, 1820, width=width)
    assert plan.timbral_filters == (base, 2 * base, 4 * base)
    assert plan.temporal_filters == (base, 2 * base, 4 * base, 8 * base)
    assert (plan.mid_filters, plan.dense_units) == (mid, dense)
