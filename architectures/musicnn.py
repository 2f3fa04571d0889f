"""MusiCNN for any number of mel bands: the front end as the paper describes it (Pons et al. 2018's),
the mid and back end of the `musicnn` package (docs/architectures.md: how they differ from 2018's).

Front end on a (n_mels, T) segment, every conv -> ReLU -> BatchNorm (ReLU first, as in the original):
timbral filters of heights int(0.9 n_mels) and int(0.4 n_mels) x 7, 3, 1 frames (valid in
frequency, 'same' in time, then max over the remaining frequency axis) and temporal filters of 165,
128, 64, 32 frames on the band mean. Mid end: three width-7 convs with residual connections on the
2nd and 3rd, densely concatenated with the front end. Back end: global max and mean over time ->
dense -> logits. Sizes come from `architectures.planning.musicnn_plan`.

This follows the paper's description (frequency on the conv's height axis), not the EUSIPCO code,
which applied the network transposed with sizes fixed for 96 bands. BatchNorm uses TensorFlow's
epsilon (1e-3), as the original implementation did. Any segment length T >= 1 works, including
one shorter than the temporal filters.

`musicnn-787k` is the released musicnn (musicnn 0.1.0) in the same module: its plan
(`musicnn_787k_plan`) has one timbral width, temporal filters on every band max-pooled over
frequency, and a smaller mid end and dense layer; its TF checkpoints map onto it 1:1
(`bench.tools.pretrained`).

In eval mode a branch max-pools over frequency *before* its ReLU and BatchNorm: both are monotone
per channel (increasing where the BatchNorm scale is >= 0, decreasing where it is < 0, where the
minimum is taken instead), so the result is the same, and the two elementwise layers run on one
value per frame instead of one per band and frame. On the CPU the timbral convolutions are also
arranged differently (`_band_max_of_timbral_conv`): the same sums, in another order.

In training the front end's convolutions compute no gradient for their input, which nothing needs
(`MusiCNN._front_folded`): the input BatchNorm's gamma and beta get theirs from the weight gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from architectures import InputConfig
from architectures.layers import OutputLinear, affine_conv, bn_folds, clip_of_ones, conv_folds, normalized
from architectures.options import MusiCNNOptions, ReleasedOptions
from architectures.planning import (
    MID_WIDTH,
    MusiCNNPlan,
    musicnn_787k_plan,
    musicnn_macs,
    musicnn_plan,
)

BN_EPS = 1e-3
"""TensorFlow's BatchNorm epsilon, as the original implementations used."""


def _same_pad(k: int, two_d: bool = False) -> nn.Module:
    """TF 'same' padding in time (the last axis): for even k the extra zero goes at the end."""
    left, right = (k - 1) // 2, k // 2
    return nn.ConstantPad2d((left, right, 0, 0), 0.0) if two_d else nn.ConstantPad1d((left, right), 0.0)


def max_over_bands(branch: nn.Sequential, x: torch.Tensor, pool_first: bool = True,
                   rearrange: bool = True) -> torch.Tensor:
    """max over frequency (dim 2) of `branch(x)`, for a branch ending in conv -> ReLU -> BatchNorm.

    In eval mode the pool comes first (exact: see the module docstring), unless `pool_first` is
    False: (B, C, F, T) -> (B, C, T). With `rearrange`, a timbral convolution on the CPU is computed
    as a 1-D convolution over frequency (`_timbral_conv_as_conv1d`): the same sums in another order.
    """
    *pad, conv, relu, bn = branch
    if branch.training or not pool_first:
        if _as_conv1d(rearrange, x.device.type, conv, pad):
            return _max_for_training(bn(relu(_timbral_conv_as_conv1d(x, conv.weight, conv.bias, conv.padding[1]))))
        return _max_for_training(branch(x))
    for layer in pad:
        x = layer(x)
    # The minimum where the BatchNorm scale is negative: the maximum of the negated filter's output,
    # negated back (both negations are exact), so one max serves every channel.
    sign = torch.where(bn.weight * torch.rsqrt(bn.running_var + bn.eps) >= 0, 1.0, -1.0).to(conv.weight.dtype)
    weight = conv.weight * sign.view(-1, *[1] * (conv.weight.dim() - 1))
    if rearrange and x.device.type == "cpu" and conv.kernel_size[0] > 1:
        y = _band_max_of_timbral_conv(x, weight, conv.bias * sign, conv.padding[1])
    else:
        y = F.conv2d(x, weight, conv.bias * sign, conv.stride, conv.padding).amax(dim=2)
    y = y * sign[:, None]
    return F.batch_norm(y.relu(), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _as_conv1d(rearrange: bool, device_type: str, conv: nn.Conv2d, pad: list) -> bool:
    """Whether a training pass computes `conv` (a branch's, after its `pad` modules) on a device of
    `device_type` as a 1-D convolution over frequency (`_timbral_conv_as_conv1d`): a timbral filter on
    the CPU."""
    return rearrange and device_type == "cpu" and conv.kernel_size[0] > 1 and not pad


def conv1d_over_bands(conv: nn.Conv2d, input_shape: tuple[int, ...]) -> tuple[nn.Conv1d, tuple[int, ...]]:
    """The 1-D convolution over frequency (and its input shape) that computes a timbral `conv` of one
    input channel on an input of `input_shape` (B, 1, F, T) when rearranged (`_timbral_conv_as_conv1d`):
    the w time taps as input channels, one sequence per frame. The same multiply-adds. Shapes from
    the arrangement's own functions, on meta tensors."""
    taps = _time_taps(torch.empty(input_shape, device="meta"), conv.kernel_size[1], conv.padding[1])
    out_channels, in_channels, height = _over_bands(conv.weight.to("meta")).shape
    return nn.Conv1d(in_channels, out_channels, height, bias=conv.bias is not None), tuple(taps.shape)


def _max_for_training(y: torch.Tensor) -> torch.Tensor:
    """`y.amax(dim=2)`, except in a graph torch.compile traces, where it is `y.max(dim=2).values`: the
    same values, with a gradient that goes through the forward pass's indices. Inductor's backward of
    amax finds the maxima again by comparing the input, recomputed in float32, with the saved bf16
    maximum; nothing compares equal, and it divides by a count of zero: NaN gradients from the first
    step (MusiCNN under bf16 autocast). Where several values tie for the maximum, max gives the
    gradient to one of them and amax splits it among them."""
    return y.max(dim=2).values if torch.compiler.is_compiling() else y.amax(dim=2)


def _band_max_of_timbral_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pad: int) -> torch.Tensor:
    """max over frequency of conv2d(x, weight, bias, padding=(0, pad)) for one input channel.

    The same sums, arranged for the CPU: the w time taps become w input channels of a 1-D convolution
    over frequency, one sequence per frame, and the maximum is then taken over its contiguous last
    axis. The released musicnn's timbral filters were measured faster this way than as a 2-D
    convolution with one input channel (docs/performance.md#measurements-behind-the-codes-choices).
    (B, 1, F, T) -> (B, C, T).
    """
    y = _conv1d_over_bands(x, weight, bias, pad)  # (B, T, C, F - h + 1)
    return y.amax(dim=3).transpose(1, 2)


def _conv1d_over_bands(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pad: int) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=(0, pad)) of one input channel as a 1-D convolution over
    frequency whose input channels are the w time taps, one sequence per frame:
    (B, 1, F, T) -> (B, T, C, F - h + 1)."""
    return _by_frame(F.conv1d(_time_taps(x, weight.shape[-1], pad), _over_bands(weight), bias), x.shape[0])


def _time_taps(x: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    """(B, 1, F, T) -> (B * T, w, F): each frame's w time taps (the input zero-padded by `pad` frames at
    each end) as the channels of a sequence over frequency."""
    taps = F.pad(x[:, 0], (pad, pad)).unfold(2, width, 1)  # (B, F, T, w)
    return taps.permute(0, 2, 3, 1).reshape(-1, width, x.shape[2])


def _over_bands(weight: torch.Tensor) -> torch.Tensor:
    """A (C, 1, h, w) timbral filter as a 1-D filter over frequency of w input channels: (C, w, h)."""
    return weight[:, 0].transpose(1, 2)


def _by_frame(y: torch.Tensor, batch: int) -> torch.Tensor:
    """(B * T, C, F') -> (B, T, C, F')."""
    return y.view(batch, -1, y.shape[1], y.shape[2])


def _timbral_conv_as_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pad: int) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=(0, pad)) for one input channel, arranged as
    `_band_max_of_timbral_conv` arranges it but keeping every band: (B, 1, F, T) -> (B, C, F - h + 1, T).

    Training needs the whole map (BatchNorm's batch statistics cover every band). oneDNN's backward
    pass of a tall 2-D filter on one input channel is slow on the CPU (for musicnn-787k's 67 x 7
    filters, many times its forward pass); as a 1-D convolution with the w time taps as input
    channels, forward and backward together were measured several times faster, which made
    musicnn-787k train faster than the reference PyTorch implementation of the same network
    (measured: docs/performance.md#measurements-behind-the-codes-choices).
    """
    return _conv1d_over_bands(x, weight, bias, pad).permute(0, 2, 3, 1)


class MusiCNN(nn.Module):
    """Takes (B, n_mels, T) or (B, 1, n_mels, T) log-mel segments; returns (B, n_tags) logits."""

    def __init__(self, plan: MusiCNNPlan, n_mels: int, n_tags: int):
        super().__init__()
        self.plan = plan
        self.pool_first = True
        """Eval mode pools over frequency before ReLU and BatchNorm (False: the order as written,
        what `bench.cost.gmac` counts)."""
        self.rearrange = True
        """Timbral convolutions on the CPU as 1-D convolutions over frequency (False: as written): in
        evaluation, and in training where the pass computes their input gradient (not with the fold)."""
        self.fold_input_bn = True
        """Training computes no gradient for the front end's convolutions' input (`_front_folded`)."""
        self.n_mels = n_mels
        self.n_tags = n_tags
        self.input_frames = plan.segment_frames
        """Frames of one input: a segment."""
        self.segments = plan.segments
        """Segments per clip; a clip's prediction is the mean of its segments' sigmoids."""
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        self.timbral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(1, f, (h, w), padding=(0, w // 2)), nn.ReLU(),
                          nn.BatchNorm2d(f, eps=BN_EPS))
            for h in plan.heights
            for w, f in zip(plan.timbral_widths, plan.timbral_filters, strict=True)
        )
        if plan.temporal_on_bands:  # (1, k) filters on every band, then max over frequency
            self.temporal = nn.ModuleList(
                nn.Sequential(_same_pad(k, two_d=True), nn.Conv2d(1, f, (1, k)), nn.ReLU(),
                              nn.BatchNorm2d(f, eps=BN_EPS))
                for k, f in zip(plan.temporal_lengths, plan.temporal_filters, strict=True)
            )
        else:  # on the band mean
            self.temporal = nn.ModuleList(
                nn.Sequential(_same_pad(k), nn.Conv1d(1, f, k), nn.ReLU(), nn.BatchNorm1d(f, eps=BN_EPS))
                for k, f in zip(plan.temporal_lengths, plan.temporal_filters, strict=True)
            )
        c_front, c_mid = plan.front_channels, plan.mid_filters
        self.mid = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c_in, c_mid, MID_WIDTH, padding=MID_WIDTH // 2), nn.ReLU(),
                          nn.BatchNorm1d(c_mid, eps=BN_EPS))
            for c_in in (c_front, c_mid, c_mid)
        )
        self.back = nn.Sequential(
            nn.BatchNorm1d(2 * plan.dense_channels, eps=BN_EPS), nn.Dropout(0.5),
            nn.Linear(2 * plan.dense_channels, plan.dense_units), nn.ReLU(),
            nn.BatchNorm1d(plan.dense_units, eps=BN_EPS), nn.Dropout(0.5),
            OutputLinear(plan.dense_units, n_tags),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.pooled(x))

    def rearranged_convs(self, device: torch.device) -> list[nn.Conv2d]:
        """The front end's convolutions that a training pass on `device` computes as 1-D convolutions
        over frequency (`conv1d_over_bands`): the timbral filters on the CPU where the pass computes
        their input gradient (`fold_input_bn` off), unless `rearrange` is off; none with the fold."""
        if self.fold_input_bn:
            return []
        return [conv for *pad, conv, _, _ in [*self.timbral, *self.temporal]
                if isinstance(conv, nn.Conv2d) and _as_conv1d(self.rearrange, device.type, conv, pad)]

    embedding_names = ("penultimate", "max_pool", "mean_pool")
    """Layers `embeddings` returns, by musicnn's extractor's names; the first is the default embedding."""

    def embeddings(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """musicnn's features of a segment: `max_pool` and `mean_pool` over time of the dense connection
        (B, dense_channels each) and `penultimate`, the dense layer after its ReLU and BatchNorm
        (B, dense_units)."""
        pooled = self.pooled(x)
        return {"penultimate": self.back[:5](pooled), "max_pool": pooled[:, 0::2], "mean_pool": pooled[:, 1::2]}

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The back end's input: interleaved (max0, mean0, max1, mean1, ...) over time of the dense
        connection [front end, c1, c2, c3], (B, 2 x dense_channels)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        branches = [*self.timbral, *self.temporal]
        if self.fold_input_bn and bn_folds(x, self.input_bn) and all(conv_folds(b[-3]) for b in branches):
            front = self._front_folded(x)
        else:
            front = self._front(self.input_bn(x))  # of (B, 1, n_mels, T)
        c1 = self.mid[0](front)
        c2 = self.mid[1](c1) + c1
        c3 = self.mid[2](c2) + c2
        dense = torch.cat([front, c1, c2, c3], dim=1)
        # Interleaved (max0, mean0, max1, ...) as the original flattens it, so TF weights map 1:1.
        return torch.stack([_max_for_training(dense), dense.mean(dim=2)], dim=2).flatten(1)

    def _front(self, x: torch.Tensor) -> torch.Tensor:
        """The front end's maps, (B, front_channels, T), of the normalised input (B, 1, n_mels, T)."""
        timbral = [max_over_bands(branch, x, self.pool_first, self.rearrange) for branch in self.timbral]
        if self.plan.temporal_on_bands:
            temporal = [max_over_bands(branch, x, self.pool_first, self.rearrange) for branch in self.temporal]
        else:
            band_mean = x.mean(dim=2)  # (B, 1, T)
            temporal = [branch(band_mean) for branch in self.temporal]
        return torch.cat(timbral + temporal, dim=1)

    def _front_folded(self, x: torch.Tensor) -> torch.Tensor:
        """`_front(self.input_bn(x))` in training, computing no gradient for the front end's convolutions'
        input, which nothing needs: the input BatchNorm's gamma and beta get theirs from the
        convolutions' weight gradients (`architectures.layers.affine_conv`: each convolution is of
        gamma * T(xhat) + beta * T(1), for its own linear map T of the normalised input). The same
        function, gradients and running statistics; the saving measured:
        docs/performance.md#measurements-behind-the-codes-choices."""
        bn_in = self.input_bn
        xhat = normalized(x, bn_in)
        ones = clip_of_ones(xhat)

        def through(branch: nn.Sequential, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            *pad, conv, relu, bn = branch
            for layer in pad:
                a, c = layer(a), layer(c)
            return bn(relu(affine_conv(a, c, bn_in, conv.weight, conv.bias, conv.stride, conv.padding,
                                       conv.dilation)))

        # Every convolution as written, the timbral filters too: without their input gradient, oneDNN's
        # 2-D convolutions of one input channel trained faster on the CPU than the 1-D arrangement
        # `rearrange` makes for the input gradient's sake (docs/performance.md#measurements-behind-the-codes-choices).
        timbral = [_max_for_training(through(branch, xhat, ones)) for branch in self.timbral]
        if self.plan.temporal_on_bands:
            temporal = [_max_for_training(through(branch, xhat, ones)) for branch in self.temporal]
        else:
            band_mean = xhat.mean(dim=2)  # (B, 1, T); the band mean of ones is 1
            temporal = [through(branch, band_mean, clip_of_ones(band_mean)) for branch in self.temporal]
        return torch.cat(timbral + temporal, dim=1)

    def analytic_macs(self) -> int:
        """Conv + linear multiply-adds of one forward pass of one segment (architectures.planning)."""
        return musicnn_macs(self.plan, self.n_mels, self.n_tags)


def build(input_config: InputConfig, n_tags: int, options: MusiCNNOptions) -> MusiCNN:
    plan = musicnn_plan(input_config.sample_rate, input_config.n_mels, input_config.hop_multiplier,
                        input_config.n_frames, width=options.width,
                        segment_seconds=options.segment_seconds)
    return MusiCNN(plan, input_config.n_mels, n_tags)


def build_787k(input_config: InputConfig, n_tags: int, options: ReleasedOptions) -> MusiCNN:
    """`musicnn-787k`: the released musicnn (787,159 parameters at 96 bands and 50 tags)."""
    plan = musicnn_787k_plan(input_config.sample_rate, input_config.n_mels, input_config.hop_multiplier,
                             input_config.n_frames, width=options.width,
                             segment_seconds=options.segment_seconds)
    return MusiCNN(plan, input_config.n_mels, n_tags)
