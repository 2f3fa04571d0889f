"""Layers every architecture shares."""

from __future__ import annotations

import torch
from torch import nn

AUTOCAST_DEVICES = ("cuda", "cpu", "xpu", "mps")


class OutputLinear(nn.Linear):
    """A network's last layer, computed in float32 even under autocast.

    Under bf16 autocast a Linear returns bf16 logits: 8 significant bits, so the scores of many test clips
    of a tag tie. Ties leave ROC-AUC unbiased (a tie counts half) but lower average precision, which
    credits a tied block at the block's mean precision: on a test split of MTAT's size (5,329 clips x 50
    tags), about 0.09 points of PR-AUC, and the loss would differ between a bf16 and an fp32 machine.
    The layer is a few thousand multiply-adds per clip; its float32 costs nothing measurable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _autocasting(x):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def _autocasting(x: torch.Tensor) -> bool:
    """Whether autocast is on for `x`'s device."""
    return x.device.type in AUTOCAST_DEVICES and torch.is_autocast_enabled(x.device.type)


def _conv_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype a convolution computes in here: autocast's where it is on, otherwise the weight's."""
    return torch.get_autocast_dtype(x.device.type) if _autocasting(x) else weight.dtype


def bn_folds(x: torch.Tensor, bn: nn.Module) -> bool:
    """Whether the convolutions after input BatchNorm `bn` can leave out their input gradient (`affine_conv`):
    a training pass (autograd on, the BatchNorm in training mode) whose input needs no gradient, into a
    trainable affine BatchNorm of one channel."""
    return (torch.is_grad_enabled() and not x.requires_grad
            and isinstance(bn, nn.BatchNorm2d) and bn.num_features == 1 and bn.training and bn.affine
            and bn.weight.requires_grad and bn.bias.requires_grad)


def conv_folds(conv: nn.Module) -> bool:
    """Whether `affine_conv` can compute `conv`: a zero-padded, ungrouped Conv1d or Conv2d with a
    bias, all trainable."""
    return (type(conv) in (nn.Conv1d, nn.Conv2d) and conv.groups == 1
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.weight.requires_grad and conv.bias is not None and conv.bias.requires_grad)


def normalized(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """bn(x) without its affine step, xhat: the module's own forward with gamma 1 and beta 0 (exact in
    floating point), so that it normalises and keeps its running statistics as it always does."""
    return torch.func.functional_call(bn, {"weight": torch.ones_like(bn.weight), "bias": torch.zeros_like(bn.bias)},
                                      (x,))


class _AffineConv(torch.autograd.Function):
    """conv(gamma * a + beta * c, weight, bias) where a and c need no gradient: a = T(xhat) and c = T(1)
    for a linear map T of the normalised input (the identity, zero padding, the band mean), so that
    gamma * a + beta * c = T(bn(x)). c is one clip's, the same for every clip.

    The gradients of gamma and beta come from weight gradients instead of the input gradient. The
    weight gradient is linear in the conv's input: dW = gamma * G1 + beta * G0, where G1 and G0 are the
    weight gradients of a and of c. And dL/dgamma = <dL/dy, a> = <W, G1>, dL/dbeta = <dL/dy, c> =
    <W, G0> (the input gradient dL/dy is the transposed convolution of the output gradient with W;
    moving W across the sum over positions gives the weight gradient's sum). G0 is the weight gradient
    of c against the output gradient summed over the clips: the input gradient, of a
    convolution of few input channels at the spectrogram's full size, is replaced by one sum of the
    output gradient and a weight gradient of one clip's size.
    """

    @staticmethod
    def forward(ctx, a, c, gamma, beta, weight, bias, stride, padding, dilation):
        y = a * gamma + c * beta
        ctx.save_for_backward(a, c, gamma, beta, weight)
        ctx.conv = (stride, padding, dilation)
        return torch.ops.aten.convolution(y.to(weight.dtype), weight, bias, stride, padding, dilation, False,
                                          [0] * len(stride), 1)

    @staticmethod
    def backward(ctx, grad):
        a, c, gamma, beta, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        dtype, shape, n = weight.dtype, weight.shape, len(stride)
        # The layout every operand states unambiguously (a one-channel map's strides fit both, and
        # `contiguous` leaves them as they are): on the CPU, oneDNN otherwise reorders the output
        # gradient to NCHW, 20x the weight gradient's own time.
        channels_last = grad.dim() == 4 and grad.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        grad = grad.contiguous(memory_format=layout)
        placeholder = torch.empty(shape, dtype=dtype, device=grad.device, memory_format=layout)
        _, g1, grad_bias = torch.ops.aten.convolution_backward(
            grad, a.to(dtype=dtype, memory_format=layout), placeholder, [shape[0]], stride, padding, dilation,
            False, [0] * n, 1, (False, True, True))
        _, g0, _ = torch.ops.aten.convolution_backward(
            _sum_over_clips(grad, channels_last), c.to(dtype=dtype, memory_format=layout), placeholder,
            None, stride, padding, dilation, False, [0] * n, 1, (False, True, False))
        acc = torch.promote_types(gamma.dtype, torch.float32)
        g1, g0, w = g1.to(acc), g0.to(acc), weight.to(acc)
        grad_weight = (gamma.to(acc) * g1 + beta.to(acc) * g0).to(dtype)
        grad_gamma = (w * g1).sum().reshape(gamma.shape).to(gamma.dtype)
        grad_beta = (w * g0).sum().reshape(beta.shape).to(beta.dtype)
        return None, None, grad_gamma, grad_beta, grad_weight, grad_bias, None, None, None


def _sum_over_clips(grad: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(clips, ...) -> (1, ...): the clips summed, read as the rows of one matrix that the tensor is in
    memory (a reduction over the batch axis of a channels_last tensor as such took 30x longer on the
    CPU). Accumulated in float32 for bf16 and fp16 as torch does."""
    rows = grad.permute(0, 2, 3, 1) if channels_last else grad  # contiguous either way
    summed = rows.reshape(rows.shape[0], -1).sum(0).view(1, *rows.shape[1:])
    return summed.permute(0, 3, 1, 2) if channels_last else summed


def affine_conv(a: torch.Tensor, c: torch.Tensor, bn: nn.BatchNorm2d, weight: torch.Tensor, bias: torch.Tensor,
                stride, padding, dilation) -> torch.Tensor:
    """The convolution (1-D or 2-D by the weight's dimensions) of T(bn(x)) = gamma * a + beta * c, given
    a = T(xhat) (`normalized`) and c = T(1) for a linear map T, one clip's, the same for every clip
    (`_AffineConv`): the same outputs and parameter gradients as autograd through bn, T and the
    convolution, without the gradient of the convolution's input. Computes in autocast's dtype where
    autocast is on."""
    dtype = _conv_dtype(a, weight)  # autocast's casts, made here: the function's own convolution then agrees
    n = weight.dim() - 2
    return _AffineConv.apply(a, c, bn.weight, bn.bias, weight.to(dtype), bias.to(dtype),
                             _tuple(stride, n), _tuple(padding, n), _tuple(dilation, n))


def _tuple(value, n: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * n


def input_bn_conv(x: torch.Tensor, bn: nn.BatchNorm2d, conv: nn.Conv2d, fold: bool = True) -> torch.Tensor:
    """conv(bn(x)) for a network's input BatchNorm of one channel and its first convolution.

    The same outputs, parameter gradients (to rounding) and running statistics, but a training pass
    computes no gradient for the convolution's input, which nothing before it needs: the BatchNorm's
    gamma and beta get theirs from the convolution's weight gradient (`affine_conv`). Elsewhere
    (evaluation, autograd off, an input that needs a gradient, frozen or other layers) and with
    `fold` False it is conv(bn(x)).
    """
    if not (fold and bn_folds(x, bn) and conv_folds(conv) and isinstance(conv, nn.Conv2d)):
        return conv(bn(x))
    xhat = normalized(x, bn)
    return affine_conv(xhat, xhat.new_ones(()).expand(1, *xhat.shape[1:]), bn, conv.weight, conv.bias,
                       conv.stride, conv.padding, conv.dilation)
