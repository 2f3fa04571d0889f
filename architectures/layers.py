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
        device = x.device.type
        if device in AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def _conv_dtype(x: torch.Tensor, conv: nn.Conv2d) -> torch.dtype:
    """The dtype `conv` computes in here: autocast's where it is on, otherwise the weight's."""
    device = x.device.type
    if device in AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return conv.weight.dtype


def _folds(x: torch.Tensor, bn: nn.Module, conv: nn.Module) -> bool:
    """Whether `input_bn_conv` can leave out the input gradient: a training pass (autograd on, the
    BatchNorm in training mode) whose input needs no gradient, into a trainable affine BatchNorm of one
    channel and a zero-padded, ungrouped Conv2d of one input channel."""
    return (torch.is_grad_enabled() and not x.requires_grad
            and isinstance(bn, nn.BatchNorm2d) and bn.training and bn.affine
            and bn.weight.requires_grad and bn.bias.requires_grad
            and type(conv) is nn.Conv2d and conv.in_channels == 1 and conv.groups == 1
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.weight.requires_grad and conv.bias is not None and conv.bias.requires_grad)


class _AffineConv(torch.autograd.Function):
    """conv2d(gamma * xhat + beta, weight, bias) of a one-channel `xhat` that needs no gradient.

    The gradients of gamma and beta come from the weight gradient instead of the input gradient. With
    y = gamma * xhat + beta (zero-padded at the conv's edges, as y is), the weight gradient is linear in
    the conv's input: dW = gamma * G1 + beta * G0, where G1 and G0 are the weight gradients of xhat and of
    a map of ones. And dL/dgamma = sum(dL/dy * xhat) = <W, G1>, dL/dbeta = sum(dL/dy) = <W, G0> (the input
    gradient dL/dy is the transposed convolution of the output gradient with W; moving W across the
    sum over positions gives the weight gradient's sum). One weight gradient of two input channels
    replaces the weight gradient and the input gradient, and the input gradient of a convolution
    with one output channel at the spectrogram's full size is the slowest of the three.
    """

    @staticmethod
    def forward(ctx, xhat, gamma, beta, weight, bias, stride, padding, dilation):
        y = (xhat * gamma + beta).to(weight.dtype)
        ctx.save_for_backward(xhat, gamma, beta, weight)
        ctx.conv = (stride, padding, dilation)
        return nn.functional.conv2d(y, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad):
        xhat, gamma, beta, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        both = torch.cat([xhat, torch.ones_like(xhat)], dim=1).to(weight.dtype)
        if grad.is_contiguous(memory_format=torch.channels_last):
            both = both.contiguous(memory_format=torch.channels_last)
        shape = (weight.shape[0], 2, *weight.shape[2:])
        _, g, grad_bias = torch.ops.aten.convolution_backward(
            grad, both, grad.new_empty(1).expand(shape), [weight.shape[0]], stride, padding, dilation,
            False, [0, 0], 1, (False, True, True))
        acc = torch.promote_types(gamma.dtype, torch.float32)
        g1, g0, w = g[:, :1].to(acc), g[:, 1:].to(acc), weight.to(acc)
        grad_weight = (gamma.to(acc) * g1 + beta.to(acc) * g0).to(weight.dtype)
        grad_gamma = (w * g1).sum().reshape(gamma.shape).to(gamma.dtype)
        grad_beta = (w * g0).sum().reshape(beta.shape).to(beta.dtype)
        return None, grad_gamma, grad_beta, grad_weight, grad_bias, None, None, None


def input_bn_conv(x: torch.Tensor, bn: nn.BatchNorm2d, conv: nn.Conv2d) -> torch.Tensor:
    """conv(bn(x)) for a network's input BatchNorm of one channel and its first convolution.

    The same outputs, parameter gradients (to rounding) and running statistics, but a training pass
    computes no gradient for the convolution's input, which nothing before it needs: the BatchNorm's
    gamma and beta get theirs from the convolution's weight gradient (`_AffineConv`). Elsewhere
    (evaluation, autograd off, an input that needs a gradient, frozen or other layers) it is conv(bn(x)).
    """
    if not _folds(x, bn, conv):
        return conv(bn(x))
    # The module's own forward with gamma 1 and beta 0 (exact in floating point) normalises and keeps
    # its running statistics as it always does.
    xhat = torch.func.functional_call(bn, {"weight": torch.ones_like(bn.weight), "bias": torch.zeros_like(bn.bias)},
                                      (x,))
    dtype = _conv_dtype(x, conv)  # autocast's casts, made here: the function's own conv2d then agrees
    return _AffineConv.apply(xhat, bn.weight, bn.bias, conv.weight.to(dtype), conv.bias.to(dtype),
                             conv.stride, conv.padding, conv.dilation)
