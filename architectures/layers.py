"""Layers every architecture shares."""

from __future__ import annotations

import contextlib

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


def clip_of_ones(t: torch.Tensor) -> torch.Tensor:
    """One clip's map of ones shaped as a clip of `t` (1, ...), without memory of its own: the c of
    `affine_conv`, the same for every clip."""
    return t.new_ones(()).expand(1, *t.shape[1:])


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
    output gradient and a weight gradient of one clip's size. The bias's gradient is that sum's.
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
        _, g1, _ = torch.ops.aten.convolution_backward(
            grad, a.to(dtype=dtype, memory_format=layout), placeholder, None, stride, padding, dilation,
            False, [0] * n, 1, (False, True, False))
        summed = _sum_over_clips(grad, channels_last)
        # the bias's gradient from the clips' sum: one pass over the full-size gradient fewer
        acc = torch.promote_types(gamma.dtype, torch.float32)
        grad_bias = summed.sum([d for d in range(summed.dim()) if d != 1], dtype=acc).to(dtype)
        _, g0, _ = torch.ops.aten.convolution_backward(
            summed.to(dtype), c.to(dtype=dtype, memory_format=layout), placeholder,
            None, stride, padding, dilation, False, [0] * n, 1, (False, True, False))
        return None, None, *_affine_gradients(g1, g0, weight, gamma, beta), grad_bias, None, None, None


def _affine_gradients(g1: torch.Tensor, g0: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor,
                      beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dL/dgamma, dL/dbeta, dL/dW) of conv(gamma * a + beta * c, W) from G1 and G0, the weight gradients
    of a and of c (`_AffineConv`): <W, G1>, <W, G0> and gamma * G1 + beta * G0, in float32 at least,
    each returned in its parameter's dtype."""
    acc = torch.promote_types(gamma.dtype, torch.float32)
    g1, g0, w = g1.to(acc), g0.to(acc), weight.to(acc)
    return ((w * g1).sum().reshape(gamma.shape).to(gamma.dtype), (w * g0).sum().reshape(beta.shape).to(beta.dtype),
            (gamma.to(acc) * g1 + beta.to(acc) * g0).to(weight.dtype))


def _sum_over_clips(grad: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(clips, ...) -> (1, ...): the clips summed, read as the rows of one matrix that the tensor is in
    memory (a reduction over the batch axis of a channels_last tensor as such took 30x longer on the
    CPU). In float32 at least, except on the CPU: asked for a float32 sum of bf16, it first copied the
    whole gradient to float32 (VGG's headline step: 350 ms against 40). There the sum keeps the gradient's
    dtype, accumulated in float32 by torch and rounded once: an error the size of the gradient's own
    rounding (bf16 has float32's range; fp16 with its overflow, loss scaling's dtype, runs on GPUs)."""
    rows = grad.permute(0, 2, 3, 1) if channels_last else grad  # contiguous either way
    acc = None if grad.device.type == "cpu" else torch.promote_types(grad.dtype, torch.float32)
    summed = rows.reshape(rows.shape[0], -1).sum(0, dtype=acc).view(1, *rows.shape[1:])
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


def bn_trains(bn: nn.Module) -> bool:
    """Whether `bn` is a BatchNorm2d that normalises with the batch's statistics and learns gamma and
    beta: a training pass (autograd on, training mode) of a trainable affine BatchNorm."""
    return (torch.is_grad_enabled() and isinstance(bn, nn.BatchNorm2d) and bn.training and bn.affine
            and bn.weight.requires_grad and bn.bias.requires_grad)


def _patches(t: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """(N, K, L): the K = in_channels x kernel values `conv` multiplies at each of its L output
    positions, in the order of its flattened weight (zero padding included)."""
    return nn.functional.unfold(t, conv.kernel_size, conv.dilation, conv.padding, conv.stride)


def _output_values(x: torch.Tensor, conv: nn.Conv2d) -> int:
    """Values per output channel of `conv` on a batch `x`: clips x output positions."""
    n = x.shape[0]
    for size, k, s, p, d in zip(x.shape[2:], conv.kernel_size, conv.stride, conv.padding, conv.dilation, strict=True):
        n *= (size + 2 * p - d * (k - 1) - 1) // s + 1
    return n


def _conv_input_moments(u: torch.Tensor | None, a: torch.Tensor | None, c: torch.Tensor | None,
                        gamma: torch.Tensor | None, beta: torch.Tensor | None, conv: nn.Conv2d, dtype: torch.dtype
                        ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mean (K,), covariance (K, K), n): the moments of the K values `conv` reads at each output
    position, over the batch's n = clips x output positions, normalised by n as BatchNorm's are. Of the
    patches of `u` where it is given (autograd through them), else of u = gamma * a + beta * c
    (`_AffineConv`'s input: a and c need no gradient; c is one clip's) as functions of gamma and beta.
    The data's sums are taken in float32 at least; those with c in float64 (c's covariance is a
    difference of terms near 1)."""
    acc = torch.promote_types(dtype, torch.float32)
    pa = _patches((a if u is None else u).to(acc), conv)
    n = pa.shape[0] * pa.shape[2]
    mean_a = pa.mean((0, 2))
    cov_aa = ((pa @ pa.transpose(1, 2)).sum(0) / n - torch.outer(mean_a, mean_a)).to(dtype)
    if u is not None:
        return mean_a.to(dtype), cov_aa, n
    pc = _patches(c.to(torch.float64), conv)[0]  # (K, L), the same for every clip
    clip_mean_a = pa.mean(0).to(torch.float64)  # (K, L): what products with c see of a
    mean_c = pc.mean(1)
    cov_cc = (pc @ pc.T / pc.shape[1] - torch.outer(mean_c, mean_c)).to(dtype)
    cov_ac = (clip_mean_a @ pc.T / pc.shape[1] - torch.outer(clip_mean_a.mean(1), mean_c)).to(dtype)
    gamma, beta = gamma.to(dtype).reshape(()), beta.to(dtype).reshape(())
    return (gamma * mean_a.to(dtype) + beta * mean_c.to(dtype),
            gamma**2 * cov_aa + gamma * beta * (cov_ac + cov_ac.T) + beta**2 * cov_cc, n)


def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """What `bn`'s training forward does to its running statistics, given the batch's per-channel mean
    and biased variance over n values: the unbiased variance is averaged in."""
    if not bn.track_running_stats or bn.running_mean is None:
        return
    with torch.no_grad():
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:  # the cumulative average
                factor = 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1 - factor).add_(mean.detach().to(bn.running_mean.dtype), alpha=factor)
        bn.running_var.mul_(1 - factor).add_(var.detach().to(bn.running_var.dtype), alpha=factor * n / (n - 1))


def conv_bn(x: torch.Tensor, input_bn: nn.BatchNorm2d, conv: nn.Conv2d, bn: nn.BatchNorm2d, fold_input: bool = True,
            fold: bool = True, pool: nn.MaxPool2d | None = None) -> torch.Tensor:
    """bn(conv(input_bn(x))) for a network's input BatchNorm of one channel, its first convolution (of one
    input channel) and the BatchNorm after it, whose statistics are quadratic in the input's patches;
    pool(bn(conv(input_bn(x)))) where the max-pool after them, `pool`, is given.

    In a training pass the output BatchNorm is computed in the convolution's weights: with the mean m
    and covariance S of the K patch values the convolution reads (K = its kernel's elements, taken over
    the batch's clips and output positions, `_conv_input_moments`), output channel j's batch mean is
    w_j . m + b_j and its variance w_j^T S w_j, so bn(conv(u)) = conv(u, w', b') with
    w'_j = gamma_j w_j / sqrt(var_j + eps) and b'_j = beta_j - gamma_j (w_j . m) / sqrt(var_j + eps).
    Autograd through these K x K and per-channel terms replaces the BatchNorm's passes over the block's
    full-size maps (its statistics, its normalisation, its backward): the same outputs, parameter
    gradients (to rounding) and running statistics. The convolution's input gradient is left out as
    `input_bn_conv` does (`fold_input`). Elsewhere (evaluation, autograd off, frozen or other layers)
    and with `fold` False it is bn(input_bn_conv(x, input_bn, conv, fold_input)).

    While `torch.compile` traces a training pass with the input BatchNorm folded, the convolution and
    the max-pool are one computation where `conv_pool_fuses` (`_ConvPool`): no full-size map forward or
    backward.
    """
    if not (fold and bn_trains(bn) and conv_folds(conv) and type(conv) is nn.Conv2d and conv.in_channels == 1
            and _output_values(x, conv) > 1):  # BatchNorm's own error for a single value per channel
        y = bn(input_bn_conv(x, input_bn, conv, fold_input))
        return y if pool is None else pool(y)
    dtype = bn.weight.dtype
    folds_input = fold_input and bn_folds(x, input_bn)
    with torch.autocast(x.device.type, enabled=False) if _autocasting(x) else contextlib.nullcontext():
        if folds_input:
            u, a = None, normalized(x, input_bn)
            c = clip_of_ones(a)
            mean, cov, n = _conv_input_moments(None, a, c, input_bn.weight, input_bn.bias, conv, dtype)
        else:
            u = input_bn(x)
            mean, cov, n = _conv_input_moments(u, None, None, None, None, conv, dtype)
        w = conv.weight.reshape(conv.out_channels, -1).to(dtype)
        channel_mean = w @ mean + conv.bias.to(dtype)
        var = ((w @ cov) * w).sum(1).clamp(min=0)  # a constant channel's rounding below 0
        scale = bn.weight / torch.sqrt(var + bn.eps)
        # in the weight's own strides: a convolution's memory format follows its weight's where its input's
        # (one channel) fits both, and an NCHW output on the CPU cost its max-pool 1.5x the step
        weight = torch.empty_like(conv.weight, dtype=dtype).copy_((w * scale[:, None]).reshape(conv.weight.shape))
        bias = bn.bias + (conv.bias.to(dtype) - channel_mean) * scale
    _update_running_stats(bn, channel_mean, var, n)
    if folds_input and pool is not None and torch.compiler.is_compiling() and conv_pool_fuses(conv, pool):
        return conv_pool(a, input_bn, weight, bias, conv, pool, _conv_dtype(x, weight))
    if folds_input:
        y = affine_conv(a, c, input_bn, weight, bias, conv.stride, conv.padding, conv.dilation)
    else:
        y = nn.functional.conv2d(u, weight, bias, conv.stride, conv.padding, conv.dilation)
    return y if pool is None else pool(y)


def conv_pool_fuses(conv: nn.Conv2d, pool: nn.Module) -> bool:
    """Whether `conv_pool` computes pool(conv(.)): a 'same' convolution (odd kernel, stride 1, no
    dilation) and a max-pool whose windows tile its input (kernel = stride, no padding, dilation or
    indices; at most 127 elements, each window's winner kept as int8), padded at its end by `pad`
    (bands, frames) with -inf where it has that attribute (VGG's `PaddedMaxPool2d`), in ceil mode or not."""
    kernel, stride = _tuple(pool.kernel_size, 2), _tuple(pool.stride or pool.kernel_size, 2)
    return (tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1) and kernel[0] * kernel[1] <= 127
            and all(k % 2 == 1 and p == k // 2 for k, p in zip(conv.kernel_size, _tuple(conv.padding, 2), strict=True))
            and isinstance(pool, nn.MaxPool2d) and kernel == stride and _tuple(pool.padding, 2) == [0, 0]
            and _tuple(pool.dilation, 2) == [1, 1] and not pool.return_indices)


def _pooled_sizes(size: tuple[int, int], pool: nn.MaxPool2d) -> tuple[int, int]:
    """(bands, frames) that `pool` (`conv_pool_fuses`) makes of maps of `size`."""
    kernel, pad = _tuple(pool.kernel_size, 2), tuple(getattr(pool, "pad", (0, 0)))
    if pool.ceil_mode:
        return tuple(-(-n // k) for n, k in zip(size, kernel, strict=True))
    return tuple((n + p) // k for n, p, k in zip(size, pad, kernel, strict=True))


def conv_pool(a: torch.Tensor, bn: nn.BatchNorm2d, weight: torch.Tensor, bias: torch.Tensor, conv: nn.Conv2d,
              pool: nn.MaxPool2d, dtype: torch.dtype) -> torch.Tensor:
    """pool(conv(gamma * a + beta, weight, bias)) of a one-channel normalised input a (`normalized`, of
    the input BatchNorm `bn`), for `conv`'s geometry and `pool` (`conv_pool_fuses`), in float32 and
    returned in `dtype`, channels_last where `a` is (`_ConvPool`)."""
    kernel = _tuple(pool.kernel_size, 2)
    size = tuple(a.shape[2:])
    pooled = _pooled_sizes(size, pool)
    k_h, k_w = conv.kernel_size
    # the input's padding: the convolution's at the top and left; at the bottom and right as far as the
    # pool's windows read (the rest the pool drops, cropped: a negative pad)
    covered = [n * k + kk - 1 for n, k, kk in zip(pooled, kernel, (k_h, k_w), strict=True)]
    pads = (k_w // 2, covered[1] - size[1] - k_w // 2, k_h // 2, covered[0] - size[0] - k_h // 2)
    acc = torch.promote_types(a.dtype, torch.float32)
    a_pad = nn.functional.pad(a.to(acc), pads)
    c_pad = nn.functional.pad(a.new_ones((1, 1, *size), dtype=acc), pads)
    channels_last = a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous()
    return _ConvPool.apply(a_pad, c_pad, bn.weight, bn.bias, weight.to(acc), bias.to(acc), tuple(kernel),
                           tuple(pooled), size, dtype, channels_last)


class _ConvPool(torch.autograd.Function):
    """maxpool(conv(u, W, b)) for a one-channel input u = gamma * a + beta * c (`_AffineConv`'s), written
    as what it is, for `torch.compile` to make one computation of: each output of the pool is the
    largest of its window's convolution outputs, each a sum of the K kernel taps' products with the
    input (one channel: u read, no full-size map written). The backward pass needs only the pooled
    gradient and which element of its window won (int8): the weight gradients of a and c are sums,
    over the pooled positions, of the gradient times the input values that the winner's taps read.
    gamma's and beta's gradients follow from them as in `_AffineConv`; no input gradient.

    Inputs a_pad and c_pad are a and c (the ones, zero in the padding) padded as the convolution pads
    and cropped to what the pool's windows read. Ties go to the window's first element in row-major
    order, as torch's max-pool has them (`torch.max` over the window's axis); NaN propagates. Eager,
    this computes every window element's map: only for compiled training (`conv_bn`).
    """

    @staticmethod
    def forward(ctx, a_pad, c_pad, gamma, beta, weight, bias, kernel, pooled, size, dtype, channels_last):
        u = a_pad * gamma + c_pad * beta
        (p_h, p_w), (k_h, k_w), taps = pooled, kernel, weight.shape[2:]
        n, channels = u.shape[0], weight.shape[0]
        w = weight.reshape(channels, -1).t().reshape(-1, 1, channels, 1, 1, 1)  # (K, 1, C, 1, 1, 1)
        # (clips, channels, p_h, p_w, window): a max over the last axis with its index is one reduction whose
        # input inductor computes inline; a chain of pairwise maxima had it store each window element's map
        y = bias.reshape(1, -1, 1, 1, 1)
        for i in range(taps[0]):
            for j in range(taps[1]):
                read = u[:, :, i:i + k_h * p_h, j:j + k_w * p_w].reshape(n, 1, p_h, k_h, p_w, k_w)
                y = y + w[i * taps[1] + j] * read.permute(0, 1, 2, 4, 3, 5).reshape(n, 1, p_h, p_w, k_h * k_w)
        if k_h * p_h > size[0] or k_w * p_w > size[1]:  # windows past the input's end
            rows = (torch.arange(p_h, device=u.device) * k_h)[:, None] + torch.arange(k_h, device=u.device) < size[0]
            cols = (torch.arange(p_w, device=u.device) * k_w)[:, None] + torch.arange(k_w, device=u.device) < size[1]
            inside = (rows[:, None, :, None] & cols[None, :, None, :]).reshape(p_h, p_w, k_h * k_w)
            y = torch.where(inside, y, float("-inf"))
        best, arg = y.max(-1)
        ctx.save_for_backward(a_pad, c_pad, gamma, beta, weight, arg.to(torch.int8))
        ctx.kernel = kernel
        # no conversion or copy that returns its own input: torch 2.11's dynamo (not 2.10, 2.12-2.14) gave
        # every input of a Function whose output was such a no-op (`.to` of its own dtype, `.contiguous` of a
        # contiguous tensor) a gradient of zeros, with no error (in float32, every gradient before the pool)
        out = best if best.dtype == dtype else best.to(dtype)
        if channels_last and not out.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    @staticmethod
    def backward(ctx, grad):
        a_pad, c_pad, gamma, beta, weight, arg = ctx.saved_tensors
        (k_h, k_w), taps = ctx.kernel, weight.shape[2:]
        n, channels, p_h, p_w = grad.shape
        width = a_pad.shape[3]
        arg = arg.to(torch.int64)
        corner = ((torch.arange(p_h, device=grad.device) * k_h)[:, None] * width
                  + torch.arange(p_w, device=grad.device) * k_w)
        first = (corner + (arg // k_w) * width + arg % k_w).reshape(n, channels, -1)  # the winner's first tap
        g = grad.to(weight.dtype).reshape(n, channels, -1)
        g1, g0 = [], []
        for source, out in ((a_pad.reshape(n, 1, -1), g1), (c_pad.reshape(1, 1, -1), g0)):
            values = source.expand(n, channels, -1)
            for i in range(taps[0]):
                for j in range(taps[1]):
                    out.append((g * values.gather(2, first + (i * width + j))).sum((0, 2)))
        g1 = torch.stack(g1, 1).reshape(weight.shape)
        g0 = torch.stack(g0, 1).reshape(weight.shape)
        return (None, None, *_affine_gradients(g1, g0, weight, gamma, beta), g.sum((0, 2)),
                None, None, None, None, None)


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
    return affine_conv(xhat, clip_of_ones(xhat), bn, conv.weight, conv.bias, conv.stride, conv.padding,
                       conv.dilation)
