"""Shape planning for the architectures: pure integer arithmetic, no torch.

VGG-CNN pooling
---------------
The four max-pooling layers (kernel = stride) must reduce a (n_mels, n_frames) input to exactly
1 x 1. For the paper's configurations the pools are Table III of the paper, stored below as data, and
pool as its authors' Keras scripts did: the remainder is dropped, so a size goes s -> s // p:

- frequency pools, by n_mels, whenever n_mels is in the table;
- time pools, by (sample_rate, hop_multiplier), only when n_frames is the paper's frame count for
  that pair (a 29.1 s clip: 1366, 683, ... at 12 kHz; 1820, 910, ... at 16 kHz).

Every other axis follows a general rule in the paper's words ("prioritise changes in the latter
layers; adjust the pooling size to match the input dimensions when possible, otherwise padding is
applied"): start from the original pools (frequency 2, 4, 3, 4; time 4, 5, 8, 8); layers 1-3 pool
min(original pool, what remains), what remains padded at its end to a multiple of the pool (`pads`:
the padding never wins a max), so a size goes s -> ceil(s / p); the last layer pools exactly what
remains, so the map ends at 1 x 1. Every band and frame of the input thus reaches the output (where
dropping remainders would lose, e.g., the last 2.0 s of a 5 s clip at 16 kHz: 4,5,8,1 pools 160 of
314 frames, and with the 3 x 3 convolutions' reach no output sees past frame 184, centred at 2.94
s), and no layer pools a dimension by more than what remains. The rule gives Table III's pools for
96 and 48 bands (which divide), and 2,4,1,1 for 8 bands where the paper has 2,2,2,1; at 16 kHz x1
(1820 frames) it gives 4,5,8,12 where the paper has 4,5,9,10. The paper spread its pooling by hand,
so the table wins where it applies.

MusiCNN
-------
Timbral filter heights are 90 % and 40 % of the bands, as the paper says (`int(0.9 * n_mels)`, never
below 1: the rule of Pons et al. 2018's models; the authors' script fixes 96 bands); the network sees
segments of `segment_seconds` (3 s in the paper).

The released models (musicnn 0.1.0, the Essentia paper's Table 1)
------------------------------------------------------------------
`musicnn-787k` is the released musicnn: timbral filters of heights int(0.4 n_mels) and
int(0.7 n_mels), 7 frames wide, 204 filters each; temporal filters of 128, 64 and 32 frames by one
band, 51 filters each, applied to every band and then max-pooled over frequency; a 64-filter mid end
and a 200-unit dense layer (787,159 parameters at 96 bands, 50 tags). `vgg-605k` is the package's
VGG baseline: five 3x3 convolutions of 128 filters with max-pools (kernel, stride) in (time, freq) of
(4,1),(2,2) then (2,2),(2,2) three times then (4,4),(4,4), valid (remainder dropped), flattened
(605,748 parameters at 187 x 96). On an input too small for a pool, the pool's kernel and stride
are clipped to what remains, so any input gives at least 1 x 1 (never the case at 187 x 96). Both see
segments of `segment_seconds` (3 s: 187 frames at 16 kHz, hop 256, as released).

Costs
-----
`vgg_macs`, `musicnn_macs` and `vgg605k_macs` count multiply-adds of convolutions and linear layers for one forward
pass of one input (one fused multiply-add = 1 MAC; biases, BatchNorm, activations and pooling are
not counted). GMAC = 1e9 MACs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

BASE_HOP = 256
"""Hop of multiplier 1 in samples; hop x m is BASE_HOP * m (the suite's front end, `bench.core.framing`)."""

# --------------------------------------------------------------------------------------------
# VGG-CNN

VGG_CHANNELS = (128, 384, 768, 2048)
"""Output channels of the four conv layers at width 1 (Choi et al. 2016, FCN-4)."""

ORIGINAL_POOL_FREQ = (2, 4, 3, 4)
ORIGINAL_POOL_TIME = (4, 5, 8, 8)
"""Pools of the original network for 96 x 1366 (paper Table I)."""

TABLE_III_TIME: dict[tuple[int, int], tuple[int, ...]] = {
    (12000, 1): (4, 5, 8, 8),
    (12000, 2): (4, 5, 8, 4),
    (12000, 3): (4, 5, 8, 2),
    (12000, 4): (4, 5, 8, 2),
    (12000, 5): (4, 5, 8, 1),
    (12000, 10): (4, 5, 4, 1),
    (16000, 1): (4, 5, 9, 10),
    (16000, 2): (4, 5, 9, 5),
    (16000, 3): (4, 5, 9, 3),
    (16000, 4): (4, 5, 9, 2),
    (16000, 5): (4, 5, 9, 2),
    (16000, 10): (4, 5, 9, 1),
}
"""Paper Table III, time pools by (sample_rate, hop_multiplier), for 29.1 s clips."""

TABLE_III_FRAMES: dict[tuple[int, int], int] = {
    (12000, 1): 1366, (12000, 2): 683, (12000, 3): 456, (12000, 4): 342, (12000, 5): 274, (12000, 10): 137,
    (16000, 1): 1820, (16000, 2): 910, (16000, 3): 607, (16000, 4): 455, (16000, 5): 364, (16000, 10): 182,
}
"""Frames of a 29.1 s clip by (sample_rate, hop_multiplier): the inputs Table III's time pools were
chosen for. The paper states the x1 and x10 counts (section V: 1366 and 137 at 12 kHz, 1820 and 182 at
16 kHz); x2-x5 are ceil(x1 frames / multiplier), the frames the authors' scripts keep when they take
every m-th frame of the x1 spectrogram."""

TABLE_III_FREQ: dict[int, tuple[int, ...]] = {
    128: (2, 4, 4, 4),
    96: (2, 4, 3, 4),
    48: (2, 4, 3, 2),
    32: (2, 2, 3, 2),
    24: (2, 2, 3, 2),
    16: (2, 2, 2, 2),
    8: (2, 2, 2, 1),
}
"""Paper Table III, frequency pools by n_mels."""


def rule_pools(size: int, original: tuple[int, ...]) -> tuple[int, ...]:
    """General rule: min(original, remaining) for all layers but the last, the remaining size padded to
    a multiple of the pool (s -> ceil(s / p)); the last layer pools the rest."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    pools = []
    for p in original[:-1]:
        p = min(p, size)
        pools.append(p)
        size = -(-size // p)
    pools.append(size)
    return tuple(pools)


def rule_pads(size: int, pools: tuple[int, ...]) -> tuple[int, ...]:
    """The padding at the end of each pool's input that the rule's pools need to divide it."""
    pads = []
    for p in pools:
        pads.append(-size % p)
        size = (size + pads[-1]) // p
    return tuple(pads)


def pool_sizes(size: int, pools: tuple[int, ...], pads: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Sizes before the first pool and after each one: (size + pad) // pool (without pads, floor
    division, as a max-pool drops the rest)."""
    sizes = [size]
    for p, pad in zip(pools, pads or (0,) * len(pools), strict=True):
        sizes.append((sizes[-1] + pad) // p)
    return tuple(sizes)


def table_time_pools(sample_rate: int, hop_multiplier: int, n_frames: int) -> tuple[int, ...] | None:
    """Table III time pools, or None unless n_frames is the paper's count for a 29.1 s clip."""
    pools = TABLE_III_TIME.get((sample_rate, hop_multiplier))
    return pools if pools is not None and n_frames == TABLE_III_FRAMES[(sample_rate, hop_multiplier)] else None


def one_value_batch(normalised: tuple[tuple[int, int], ...]) -> int:
    """The fewest clips a training batch can hold where BatchNorms normalise maps of these shapes: 2 if
    one is 1 x 1 (one value per channel and clip), else 1."""
    return 2 if (1, 1) in normalised else 1


@dataclass(frozen=True)
class VGGPlan:
    """Pools, channels and shapes of one VGG-CNN; shapes are (n_mels, n_frames) = (H, W)."""

    pool_freq: tuple[int, ...]
    pool_time: tuple[int, ...]
    source_freq: str
    """Either "table" (paper Table III) or "rule" (the general rule in the module docstring)."""
    source_time: str
    channels: tuple[int, ...]
    shapes: tuple[tuple[int, int], ...]
    """Input shape, then the shape after each of the 4 blocks (the last is (1, 1))."""
    pad_freq: tuple[int, ...] = (0, 0, 0, 0)
    pad_time: tuple[int, ...] = (0, 0, 0, 0)
    """Padding at the end of each pool's input (bands, frames): non-zero only on an axis the rule
    pools, where a pool does not divide what remains."""

    @property
    def padded(self) -> bool:
        return any(self.pad_freq) or any(self.pad_time)

    @property
    def min_train_batch(self) -> int:
        """The fewest clips a training batch can hold: 2 where a BatchNorm (the input's, or a block's,
        which sees its conv's map: the block's input shape) normalises a 1 x 1 map, one value per clip,
        which torch refuses to train on (8 mels at 12 kHz x10: 1 x 1 before block 4); else 1."""
        return one_value_batch(self.shapes[:-1])



def vgg_channels(width: float = 1.0) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in VGG_CHANNELS)


def vgg_plan(sample_rate: int, n_mels: int, hop_multiplier: int, n_frames: int,
             width: float = 1.0) -> VGGPlan:
    """Plan the VGG-CNN for a (n_mels, n_frames) input: Table III where it applies, else the rule."""
    if n_mels < 1 or n_frames < 1:
        raise ValueError(f"input must be at least 1x1, got {n_mels}x{n_frames}")
    pool_freq = TABLE_III_FREQ.get(n_mels)
    source_freq, pad_freq = "table", (0, 0, 0, 0)
    if pool_freq is None:
        pool_freq, source_freq = rule_pools(n_mels, ORIGINAL_POOL_FREQ), "rule"
        pad_freq = rule_pads(n_mels, pool_freq)
    pool_time = table_time_pools(sample_rate, hop_multiplier, n_frames)
    source_time, pad_time = "table", (0, 0, 0, 0)
    if pool_time is None:
        pool_time, source_time = rule_pools(n_frames, ORIGINAL_POOL_TIME), "rule"
        pad_time = rule_pads(n_frames, pool_time)
    shapes = tuple(zip(pool_sizes(n_mels, pool_freq, pad_freq), pool_sizes(n_frames, pool_time, pad_time), strict=True))
    assert shapes[-1] == (1, 1), shapes  # Table III and the rule both end at 1 x 1
    return VGGPlan(pool_freq=pool_freq, pool_time=pool_time, source_freq=source_freq,
                   source_time=source_time, channels=vgg_channels(width), shapes=shapes,
                   pad_freq=pad_freq, pad_time=pad_time)


def vgg_macs(plan: VGGPlan, n_tags: int) -> int:
    """MACs of one forward pass of one clip: 3x3 'same' convs at each block's input size + linear."""
    macs = 0
    c_in = 1
    for (h, w), c_out in zip(plan.shapes[:-1], plan.channels, strict=True):
        macs += h * w * c_in * c_out * 9
        c_in = c_out
    return macs + c_in * n_tags


# --------------------------------------------------------------------------------------------
# MusiCNN

TIMBRAL_WIDTHS = (7, 3, 1)
"""Frames of the timbral filters; their filter counts are 1x, 2x, 4x the base count."""
TEMPORAL_LENGTHS = (165, 128, 64, 32)
"""Frames of the temporal filters (kept in frames for every config); 1x, 2x, 4x, 8x the base."""
BASE_FILTERS = 16
MID_FILTERS = 512
DENSE_UNITS = 500
MID_WIDTH = 7
"""Frames of the three mid-end convolutions."""


def musicnn_heights(n_mels: int) -> tuple[int, int]:
    """Timbral filter heights: int(0.9 n_mels) and int(0.4 n_mels), never below 1 (86, 38 at 96)."""
    return max(1, int(0.9 * n_mels)), max(1, int(0.4 * n_mels))


def segment_frames(sample_rate: int, hop_multiplier: int, segment_seconds: float = 3.0) -> int:
    """Frames of one segment: int(seconds x sr / hop), at least 1 (187 at 16 kHz x1, 140 at 12 kHz),
    with the seconds as written (decimal): 2.32 s at 48 kHz is 435 frames exactly, 434.99999999999994
    in binary floating point."""
    exact = Fraction(repr(float(segment_seconds))) * sample_rate / (BASE_HOP * hop_multiplier)
    return max(1, math.floor(exact))


@dataclass(frozen=True)
class MusiCNNPlan:
    """Sizes of one MusiCNN; it sees segments of `segment_frames` frames cut from a clip."""

    heights: tuple[int, ...]
    segment_frames: int
    """Frames per segment (the whole clip when the clip is shorter than a segment)."""
    segments: int
    """Non-overlapping segments per clip: n_frames // segment_frames, at least 1."""
    timbral_filters: tuple[int, ...]
    """Filters per timbral width, for each height (the branches are height-major)."""
    temporal_filters: tuple[int, ...]
    mid_filters: int
    dense_units: int
    timbral_widths: tuple[int, ...] = TIMBRAL_WIDTHS
    temporal_lengths: tuple[int, ...] = TEMPORAL_LENGTHS
    temporal_on_bands: bool = False
    """False: temporal filters see the band mean (the paper). True: they run on every band and are
    max-pooled over frequency (the released musicnn)."""

    @property
    def min_train_batch(self) -> int:
        """2: the back end's BatchNorm normalises the features pooled over time, one value per clip,
        which torch refuses to train on."""
        return 2

    @property
    def front_channels(self) -> int:
        """Channels of the concatenated front end (464 at width 1)."""
        return len(self.heights) * sum(self.timbral_filters) + sum(self.temporal_filters)

    @property
    def dense_channels(self) -> int:
        """Channels of the dense connection [front end, c1, c2, c3] (2000 at width 1)."""
        return self.front_channels + 3 * self.mid_filters


def musicnn_plan(sample_rate: int, n_mels: int, hop_multiplier: int, n_frames: int,
                 width: float = 1.0, segment_seconds: float = 3.0) -> MusiCNNPlan:
    if n_mels < 1 or n_frames < 1:
        raise ValueError(f"input must be at least 1x1, got {n_mels}x{n_frames}")
    seg = min(segment_frames(sample_rate, hop_multiplier, segment_seconds), n_frames)
    base = max(1, round(BASE_FILTERS * width))
    return MusiCNNPlan(
        heights=musicnn_heights(n_mels),
        segment_frames=seg,
        segments=max(1, n_frames // seg),
        timbral_filters=(base, 2 * base, 4 * base),
        temporal_filters=(base, 2 * base, 4 * base, 8 * base),
        mid_filters=max(1, round(MID_FILTERS * width)),
        dense_units=max(1, round(DENSE_UNITS * width)),
    )


def musicnn_macs(plan: MusiCNNPlan, n_mels: int, n_tags: int) -> int:
    """MACs of one forward pass of one segment (the plan's `segment_frames`)."""
    t = plan.segment_frames
    macs = 0
    for h in plan.heights:  # valid in frequency, same in time
        for w, f in zip(plan.timbral_widths, plan.timbral_filters, strict=True):
            macs += (n_mels - h + 1) * t * h * w * f
    bands = n_mels if plan.temporal_on_bands else 1  # every band, or the band mean
    for k, f in zip(plan.temporal_lengths, plan.temporal_filters, strict=True):
        macs += bands * t * k * f
    c_in = plan.front_channels
    for _ in range(3):
        macs += t * MID_WIDTH * c_in * plan.mid_filters
        c_in = plan.mid_filters
    return macs + 2 * plan.dense_channels * plan.dense_units + plan.dense_units * n_tags


RELEASED_TIMBRAL_FRACTIONS = (0.4, 0.7)
"""Timbral filter heights of the released musicnn, as fractions of the bands (38 and 67 at 96)."""
RELEASED_TIMBRAL_WIDTHS = (7,)
RELEASED_TEMPORAL_LENGTHS = (128, 64, 32)
RELEASED_TIMBRAL_FILTERS = 204
"""int(1.6 x 128) in the released code."""
RELEASED_TEMPORAL_FILTERS = 51
"""int(1.6 x 32) in the released code."""
RELEASED_MID_FILTERS = 64
RELEASED_DENSE_UNITS = 200


def _scaled(count: int, width: float) -> int:
    return max(1, round(count * width))


def musicnn_787k_plan(sample_rate: int, n_mels: int, hop_multiplier: int, n_frames: int,
                      width: float = 1.0, segment_seconds: float = 3.0) -> MusiCNNPlan:
    """The released musicnn (`musicnn-787k`) for any input; `width` scales every filter count."""
    if n_mels < 1 or n_frames < 1:
        raise ValueError(f"input must be at least 1x1, got {n_mels}x{n_frames}")
    seg = min(segment_frames(sample_rate, hop_multiplier, segment_seconds), n_frames)
    return MusiCNNPlan(
        heights=tuple(max(1, int(fraction * n_mels)) for fraction in RELEASED_TIMBRAL_FRACTIONS),
        segment_frames=seg,
        segments=max(1, n_frames // seg),
        timbral_filters=(_scaled(RELEASED_TIMBRAL_FILTERS, width),),
        temporal_filters=(_scaled(RELEASED_TEMPORAL_FILTERS, width),) * len(RELEASED_TEMPORAL_LENGTHS),
        mid_filters=_scaled(RELEASED_MID_FILTERS, width),
        dense_units=_scaled(RELEASED_DENSE_UNITS, width),
        timbral_widths=RELEASED_TIMBRAL_WIDTHS,
        temporal_lengths=RELEASED_TEMPORAL_LENGTHS,
        temporal_on_bands=True,
    )


VGG605K_FILTERS = 128
VGG605K_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
"""(kernel, stride) of the five max-pools in (time, freq), as released."""


def clipped_pool(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(kernel, stride, output size) of a valid max-pool whose kernel and stride are clipped to `size`."""
    kernel, stride = min(kernel, size), min(stride, size)
    return kernel, stride, (size - kernel) // stride + 1


@dataclass(frozen=True)
class VGG605kPlan:
    """Pools and shapes of the released VGG baseline; shapes are (n_mels, frames) = (H, W)."""

    segment_frames: int
    segments: int
    channels: int
    pools: tuple[tuple[tuple[int, int], tuple[int, int]], ...]
    """(kernel, stride) of each pool in (freq, time) order, clipped to the input."""
    shapes: tuple[tuple[int, int], ...]
    """Input shape, then the shape after each pool."""

    @property
    def flat_features(self) -> int:
        h, w = self.shapes[-1]
        return h * w * self.channels

    @property
    def min_train_batch(self) -> int:
        """As VGG's (`VGGPlan.min_train_batch`): each BatchNorm sees its block's input shape."""
        return one_value_batch(self.shapes[:-1])


def vgg605k_plan(sample_rate: int, n_mels: int, hop_multiplier: int, n_frames: int,
                 width: float = 1.0, segment_seconds: float = 3.0) -> VGG605kPlan:
    """The released VGG baseline (`vgg-605k`) for any input: 2 x 1 x 128 after the pools at 96 x 187."""
    if n_mels < 1 or n_frames < 1:
        raise ValueError(f"input must be at least 1x1, got {n_mels}x{n_frames}")
    seg = min(segment_frames(sample_rate, hop_multiplier, segment_seconds), n_frames)
    h, w = n_mels, seg
    shapes, pools = [(h, w)], []
    for (k_time, k_freq), (s_time, s_freq) in VGG605K_POOLS:
        k_f, s_f, h = clipped_pool(h, k_freq, s_freq)
        k_t, s_t, w = clipped_pool(w, k_time, s_time)
        pools.append(((k_f, k_t), (s_f, s_t)))
        shapes.append((h, w))
    return VGG605kPlan(segment_frames=seg, segments=max(1, n_frames // seg),
                       channels=_scaled(VGG605K_FILTERS, width), pools=tuple(pools), shapes=tuple(shapes))


def vgg605k_macs(plan: VGG605kPlan, n_tags: int) -> int:
    """MACs of one forward pass of one segment: five 3x3 'same' convs, each before its pool, + linear."""
    macs, c_in = 0, 1
    for h, w in plan.shapes[:-1]:
        macs += h * w * c_in * plan.channels * 9
        c_in = plan.channels
    return macs + plan.flat_features * n_tags
