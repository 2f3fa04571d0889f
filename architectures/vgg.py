"""VGG-CNN: the FCN-4 of Choi et al. (2016) as used in the paper, pooled to 1 x 1 for any input.

Input BatchNorm, then 4 blocks of Conv 3x3 ('same', bias) -> BatchNorm -> ELU -> MaxPool
(kernel = stride; on Table III's axes the remainder dropped, on the rule's the input padded at its
end to a multiple of the pool: `PaddedMaxPool2d`), then Linear(C4, n_tags).

Channels and pools come from `architectures.planning.vgg_plan` (paper Table III where it applies, a
documented rule elsewhere).

The modules apply the max-pool before the ELU: ELU is strictly increasing, so max(ELU(x)) = ELU(max(x))
and the gradient reaches the same element (unless ELU rounds two inputs of a window to one value).
Outputs are identical and the ELU runs on 1/8 to 1/45 of the elements (`bench perf` measures the
saving); `pool_before_elu=False` builds the textbook order.

In training, the input BatchNorm and the first convolution go through `architectures.layers.input_bn_conv`:
the same function and gradients, but no gradient for the first convolution's input, which nothing
needs (the BatchNorm's gamma and beta get theirs from the convolution's weight gradient). That input
gradient, a convolution from C1 channels to one at the spectrogram's full size, was on this project's
CPU the slowest of the first layer's three convolutions (`bench perf` measures the saving);
`fold_input_bn=False` computes it.

Block 1's BatchNorm is computed in the first convolution's weights in training (`architectures.layers.conv_bn`):
its batch statistics are quadratic in the input's 3 x 3 patches, so the patches' mean and 9 x 9
covariance give every channel's mean and variance, and bn(conv(u)) = conv(u, w', b'). No pass of the
BatchNorm over block 1's maps, the largest of a step, forward or backward; `fold_block1_bn=False`
applies it as written. (The later blocks' patches have 9 x C values: their covariance would cost more
than the convolution.)

`vgg-605k` (`VGG605k`) is a different network: the VGG baseline released with musicnn 0.1.0 (five
128-filter blocks on 3 s segments, ReLU before BatchNorm), whose TF checkpoints map onto it 1:1.
"""

from __future__ import annotations

import torch
from torch import nn

from architectures import InputConfig
from architectures.layers import OutputLinear, conv_bn, input_bn_conv
from architectures.musicnn import BN_EPS
from architectures.options import ReleasedOptions, VGGOptions
from architectures.planning import VGG605kPlan, VGGPlan, vgg605k_macs, vgg605k_plan, vgg_macs, vgg_plan


class PaddedMaxPool2d(nn.MaxPool2d):
    """A max-pool whose input is first padded at its end by `pad` = (bands, frames) with -inf, which
    never wins a max (every window holds at least one real value: a pad is smaller than its pool).

    Given the input's `size`, where every axis is padded or divides by its pool, it pools in ceil mode
    instead: the windows that overhang the input's end take the max of the values they hold. The same
    outputs and gradients, without a padded copy of the block's maps (the largest tensors of a step)
    and the slice of its gradient. An axis whose rest is dropped (Table III's) beside a padded one
    needs the pad: ceil mode would pool that rest too."""

    def __init__(self, kernel_size: tuple[int, int], pad: tuple[int, int], size: tuple[int, int] | None = None):
        ceil = size is not None and all(p > 0 or n % k == 0 for n, k, p in zip(size, kernel_size, pad, strict=True))
        super().__init__(kernel_size, ceil_mode=ceil)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ceil_mode:
            return super().forward(x)
        return super().forward(nn.functional.pad(x, (0, self.pad[1], 0, self.pad[0]), value=float("-inf")))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad={self.pad}"


class VGG(nn.Module):
    """Takes (B, n_mels, T) or (B, 1, n_mels, T) log-mel and returns (B, n_tags) logits."""

    def __init__(self, plan: VGGPlan, n_tags: int, pool_before_elu: bool = True, fold_input_bn: bool = True,
                 fold_block1_bn: bool = True, fuse_block1_pool: bool = False):
        super().__init__()
        self.plan = plan
        self.n_tags = n_tags
        self.fold_input_bn = fold_input_bn
        """Training computes no gradient for the first convolution's input (`input_bn_conv`)."""
        self.fold_block1_bn = fold_block1_bn
        """Training computes block 1's BatchNorm in the first convolution's weights (`conv_bn`)."""
        self.fuse_block1_pool = fuse_block1_pool
        """Compiled training computes block 1's convolution and max-pool as one (`conv_bn`'s `pool`)."""
        self.input_frames = plan.shapes[0][1]
        """Frames of one input: the whole clip."""
        self.segments = None
        """VGG sees the whole clip at once (no segments)."""
        self.input_bn = nn.BatchNorm2d(1)
        blocks = []
        c_in = 1
        for c_out, pool, pad, size in zip(plan.channels, zip(plan.pool_freq, plan.pool_time, strict=True),
                                          zip(plan.pad_freq, plan.pad_time, strict=True), plan.shapes[:-1],
                                          strict=True):
            # Conv and BatchNorm keep indices 0 and 1 of each block in both orders (checkpoints load).
            pooling = PaddedMaxPool2d(pool, pad, size) if any(pad) else nn.MaxPool2d(pool)
            tail = [pooling, nn.ELU()] if pool_before_elu else [nn.ELU(), pooling]
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), *tail]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.classifier = OutputLinear(c_in, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.classifier(self._features(x).flatten(1))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output: (B, C4, 1, 1) at the planned input size."""
        pool = self.blocks[2] if self.fuse_block1_pool and isinstance(self.blocks[2], nn.MaxPool2d) else None
        first = conv_bn(x, self.input_bn, self.blocks[0], self.blocks[1], self.fold_input_bn, self.fold_block1_bn,
                        pool)
        return self.blocks[2 if pool is None else 3:](first)

    @property
    def embedding_names(self) -> tuple[str, ...]:
        """Layers `embeddings` returns; the first is the default embedding."""
        return (f"pool{len(self.plan.channels)}",)

    def embeddings(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The last block, pooled to 1 x 1: (B, C4), what the classifier reads."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return {self.embedding_names[0]: self._features(x).flatten(1)}

    def analytic_macs(self) -> int:
        """Conv + linear multiply-adds of one forward pass of one clip (architectures.planning)."""
        return vgg_macs(self.plan, self.n_tags)


def build(input_config: InputConfig, n_tags: int, options: VGGOptions) -> VGG:
    plan = vgg_plan(input_config.sample_rate, input_config.n_mels, input_config.hop_multiplier,
                    input_config.n_frames, width=options.width)
    return VGG(plan, n_tags)


class VGG605k(nn.Module):
    """The VGG baseline released with musicnn (`vgg-605k`), on 3 s segments.

    Input BatchNorm, then five blocks of Conv 3x3 ('same', 128 filters) -> ReLU -> BatchNorm -> MaxPool
    (the planned kernel and stride, valid), dropout 0.25 after pools 1-4, flatten in TensorFlow's
    (time, freq, channel) order so the released dense weights map 1:1, dropout 0.5, Linear -> tags.
    BatchNorm uses TensorFlow's epsilon (1e-3). Takes (B, n_mels, T) or (B, 1, n_mels, T). Training
    computes no gradient for the first convolution's input, as `VGG` does (`input_bn_conv`).
    """

    def __init__(self, plan: VGG605kPlan, n_tags: int, fold_input_bn: bool = True):
        super().__init__()
        self.plan = plan
        self.n_tags = n_tags
        self.input_frames = plan.segment_frames
        """Frames of one input: a segment."""
        self.segments = plan.segments
        """Segments per clip; a clip's prediction is the mean of its segments' sigmoids."""
        self.fold_input_bn = fold_input_bn
        """Training computes no gradient for the first convolution's input (`input_bn_conv`)."""
        self.input_bn = nn.BatchNorm2d(1, eps=BN_EPS)
        blocks: list[nn.Module] = []
        c_in = 1
        for i, (kernel, stride) in enumerate(plan.pools):
            blocks += [nn.Conv2d(c_in, plan.channels, 3, padding=1), nn.ReLU(),
                       nn.BatchNorm2d(plan.channels, eps=BN_EPS), nn.MaxPool2d(kernel, stride)]
            if i < len(plan.pools) - 1:
                blocks.append(nn.Dropout(0.25))
            c_in = plan.channels
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(0.5)
        self.classifier = OutputLinear(plan.flat_features, n_tags)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last pooled map in TensorFlow's layout (B, time, freq, channel)."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.blocks[1:](input_bn_conv(x, self.input_bn, self.blocks[0], self.fold_input_bn))
        return x.permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x).flatten(1)))

    embedding_names = ("pool5",)
    """Layers `embeddings` returns (musicnn's extractor's name for the last pooled map)."""

    def embeddings(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The last pooled map flattened in TensorFlow's (time, freq, channel) order: (B, flat_features)."""
        return {"pool5": self.features(x).flatten(1)}

    def analytic_macs(self) -> int:
        """Conv + linear multiply-adds of one forward pass of one segment (architectures.planning)."""
        return vgg605k_macs(self.plan, self.n_tags)


def build_605k(input_config: InputConfig, n_tags: int, options: ReleasedOptions) -> VGG605k:
    """`vgg-605k`: the released VGG baseline (605,748 parameters at 187 x 96 and 50 tags)."""
    plan = vgg605k_plan(input_config.sample_rate, input_config.n_mels, input_config.hop_multiplier,
                        input_config.n_frames, width=options.width, segment_seconds=options.segment_seconds)
    return VGG605k(plan, n_tags)
