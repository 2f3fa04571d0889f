"""`input_bn_conv`: conv(bn(x)) whose training pass computes no input gradient for the convolution, and
`conv_bn`: bn(conv(input_bn(x))) whose training pass computes the BatchNorm in the convolution's weights.

The reference is autograd through the two modules as written (torch's own BatchNorm and conv backward),
in float64, where the rounding of either way is far below the tolerances."""

from __future__ import annotations

import math

import pytest
import torch
import torch._inductor.config as inductor_config
from torch import nn
from torch._inductor.utils import run_and_get_code
from torch.utils._python_dispatch import TorchDispatchMode

from architectures.layers import conv_bn, conv_pool_fuses, input_bn_conv
from architectures.planning import vgg_plan
from architectures.vgg import VGG, PaddedMaxPool2d
from bench.train.fastpath import compile_blocker


class ConvBackwardCalls(TorchDispatchMode):
    """Records (input channels, output mask) of every convolution backward, and the channels of every
    BatchNorm backward."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.bn_backward_channels = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            self.calls.append((args[1].shape[1], tuple(args[10])))
        if func is torch.ops.aten.native_batch_norm_backward.default:
            self.bn_backward_channels.append(args[1].shape[1])
        return func(*args, **(kwargs or {}))


def _pair(momentum=0.1):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(1, momentum=momentum).double()
    conv = nn.Conv2d(1, 6, (3, 5), stride=(1, 2), padding=(1, 2), dilation=(2, 1)).double()
    with torch.no_grad():  # gamma and beta away from 1 and 0, so that both terms of the gradient count
        bn.weight.fill_(1.7)
        bn.bias.fill_(-0.6)
    return bn, conv


@pytest.mark.parametrize("momentum", [0.1, None])
def test_gradients_and_running_statistics_equal_autograd_through_the_modules(momentum):
    x = 3 + 2 * torch.randn(4, 1, 12, 33, dtype=torch.float64)
    upstream = torch.randn(4, 6, 10, 17, dtype=torch.float64)  # any gradient from the layers above
    results = []
    for fold in (False, True):
        bn, conv = _pair(momentum)
        for _ in range(2):  # the second pass normalises with statistics updated by the first
            y = input_bn_conv(x, bn, conv) if fold else conv(bn(x))
            (y * upstream).sum().backward()
        results.append((y.detach(), bn, conv))
    (y_ref, bn_ref, conv_ref), (y, bn, conv) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for name, ref, got in [("gamma", bn_ref.weight, bn.weight), ("beta", bn_ref.bias, bn.bias),
                           ("weight", conv_ref.weight, conv.weight), ("bias", conv_ref.bias, conv.bias)]:
        torch.testing.assert_close(got.grad, ref.grad, rtol=1e-10, atol=1e-12, msg=name)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(bn_ref, name), rtol=1e-12, atol=0, msg=name)


def _block(momentum=0.1, track=True):
    """An input BatchNorm, a first convolution (asymmetric kernel, stride, padding and dilation) and the
    BatchNorm after it, with gammas and betas away from 1 and 0."""
    bn, conv = _pair(momentum)
    out_bn = nn.BatchNorm2d(6, momentum=momentum, track_running_stats=track).double()
    with torch.no_grad():
        out_bn.weight.copy_(torch.linspace(0.5, 2.0, 6))
        out_bn.bias.copy_(torch.linspace(-1.0, 0.7, 6))
    return bn, conv, out_bn


@pytest.mark.parametrize("fold_input", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_in_the_convolution_equals_autograd_through_the_modules(fold_input, momentum):
    """bn(conv(input_bn(x))) with the BatchNorm's statistics taken from the patches' mean and covariance
    gives the outputs, the six parameter gradients and both BatchNorms' running statistics of torch's
    own modules, over two passes (the second normalising with the first's running statistics)."""
    x = 3 + 2 * torch.randn(4, 1, 12, 33, dtype=torch.float64)
    upstream = torch.randn(4, 6, 10, 17, dtype=torch.float64)
    results = []
    for fold in (False, True):
        modules = _block(momentum)
        for _ in range(2):
            y = conv_bn(x, *modules, fold_input=fold_input) if fold else modules[2](modules[1](modules[0](x)))
            (y * upstream).sum().backward()
        results.append((y.detach(), modules))
    (y_ref, ref), (y, got) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for module_ref, module in zip(ref, got, strict=True):
        for (name, p_ref), p in zip(module_ref.named_parameters(), module.parameters(), strict=True):
            # the conv bias's exact gradient is 0 (the BatchNorm subtracts it): rounding either way
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-10, atol=1e-11, msg=f"{module} {name}")
        for (name, b_ref), b in zip(module_ref.named_buffers(), module.buffers(), strict=True):
            torch.testing.assert_close(b, b_ref, rtol=1e-12, atol=1e-15, msg=f"{module} {name}")


def test_batchnorm_in_the_convolution_without_running_statistics():
    x = torch.randn(3, 1, 12, 33, dtype=torch.float64)
    ref, got = _block(track=False), _block(track=False)
    want = ref[2](ref[1](ref[0](x)))
    torch.testing.assert_close(conv_bn(x, *got), want, rtol=1e-12, atol=1e-12)


def test_where_the_batchnorm_cannot_fold_it_is_the_composition():
    x = torch.randn(3, 1, 12, 33, dtype=torch.float64)
    bn, conv, out_bn = _block()
    out_bn.eval()  # the running statistics, not the batch's
    assert torch.equal(conv_bn(x, bn, conv, out_bn), out_bn(input_bn_conv(x, bn, conv)))
    out_bn.train()
    out_bn.weight.requires_grad_(False)  # frozen
    assert torch.equal(conv_bn(x, bn, conv, out_bn), out_bn(input_bn_conv(x, bn, conv)))


def test_a_single_value_per_channel_fails_as_batchnorm_does():
    x = torch.randn(1, 1, 3, 3, dtype=torch.float64)  # nine values for the input BatchNorm
    bn, _, out_bn = _block()
    conv = nn.Conv2d(1, 6, 3).double()  # one output position
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        conv_bn(x, bn, conv, out_bn)


def test_the_folded_block_keeps_the_weights_memory_format():
    """Its convolution's output is channels_last where the model is: a convolution of one input channel
    otherwise follows the folded weight's strides (NCHW), and the max-pool after it reorders."""
    model = _tiny_vgg(True, torch.float32).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 16, 137).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        y = conv_bn(x, model.input_bn, model.blocks[0], model.blocks[1])
    assert y.shape[1] > 1 and y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


def _largest_copy(events) -> int:
    """The most elements any copy among the profiler's `events` wrote (`aten::copy_`, the op under every
    cast and layout change, also those made inside another operation)."""
    return max((math.prod(e.input_shapes[0]) for e in events if e.name == "aten::copy_" and e.input_shapes
                and e.input_shapes[0]), default=0)


@pytest.mark.parametrize("block", [True, False])
def test_a_bf16_backward_on_the_cpu_makes_no_copy_of_the_output_gradient(block):
    """The clips' sum of the first convolution's output gradient is taken in bf16 (torch accumulates in
    float32): a float32 sum of bf16 on the CPU first copies the whole gradient to float32, a third of a
    second in VGG's headline step. The bias gradient is still that of the float64 sum of the bf16
    output gradient, to bf16's rounding of the clips' sums."""
    torch.manual_seed(0)
    model = _tiny_vgg(True, torch.float32).to(memory_format=torch.channels_last)
    x = torch.randn(8, 1, 16, 137).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        y = (conv_bn(x, model.input_bn, model.blocks[0], model.blocks[1]) if block
             else input_bn_conv(x, model.input_bn, model.blocks[0]))
    grad = torch.randn(y.shape).to(y.dtype).contiguous(memory_format=torch.channels_last) + 0.1
    assert y.dtype == torch.bfloat16
    bias = model.blocks[1].bias if block else model.blocks[0].bias
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        got, = torch.autograd.grad(y, bias, grad)
    assert _largest_copy(prof.events()) < grad.numel() // 2
    want = grad.double().sum((0, 2, 3))
    torch.testing.assert_close(got.double(), want, rtol=2**-7, atol=2**-7 * float(want.abs().max()))


def _tiny_vgg(fold, dtype=torch.float64):
    torch.manual_seed(0)
    model = VGG(vgg_plan(12000, 16, 10, 137, width=1 / 32), 5, fold_input_bn=fold, fold_block1_bn=fold).to(dtype)
    with torch.no_grad():
        model.input_bn.weight.fill_(0.8)
        model.input_bn.bias.fill_(0.3)
    return model


def _grads(model, x, target, forward=None):
    logits = (model if forward is None else forward)(x)
    nn.functional.binary_cross_entropy_with_logits(logits.double(), target).backward()
    return {name: p.grad.double() for name, p in model.named_parameters()}


def test_vgg_trains_with_the_gradients_of_the_textbook_composition():
    x, target = torch.randn(3, 1, 16, 137, dtype=torch.float64), torch.rand(3, 5).round().double()
    folded, plain = _tiny_vgg(True), _tiny_vgg(False)
    assert folded.state_dict().keys() == plain.state_dict().keys()  # checkpoints load either way
    got, want = _grads(folded, x, target), _grads(plain, x, target)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-9, atol=1e-12, msg=name)
    with ConvBackwardCalls() as folded_calls:
        _grads(folded, x, target)
    with ConvBackwardCalls() as plain_calls:
        _grads(plain, x, target)
    # autograd as written computes the first conv's input gradient; the folded pass computes none, and
    # instead a second weight gradient, of one clip's map of ones against the output gradient summed
    assert [mask[0] for c_in, mask in plain_calls.calls if c_in == 1] == [True]
    assert [mask for c_in, mask in folded_calls.calls if c_in == 1] == [(False, True, False)] * 2
    # no BatchNorm backward for the input (1 channel) and block 1 (C1 = 4 at this width): blocks 2-4 only
    assert sorted(plain_calls.bn_backward_channels) == sorted([1, *folded.plan.channels])
    assert sorted(folded_calls.bn_backward_channels) == sorted(folded.plan.channels[1:])


def test_vgg_605k_trains_with_the_gradients_of_the_textbook_composition():
    import architectures
    from architectures import InputConfig

    x, target = torch.randn(3, 1, 96, 187, dtype=torch.float64), torch.rand(3, 50).round().double()
    grads = []
    for fold in (True, False):
        torch.manual_seed(0)
        model = architectures.build("vgg-605k", InputConfig(16000, 96, 1, 187), 50, width=0.125).double()
        model.fold_input_bn = fold
        with torch.no_grad():
            model.input_bn.weight.fill_(1.3)
            model.input_bn.bias.fill_(0.2)
        torch.manual_seed(1)  # the same dropout masks
        grads.append(_grads(model, x, target))
    for name in grads[1]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12, msg=name)


def test_bf16_channels_last_gradients_are_as_close_to_float64_as_autograd_as_written():
    """Under bf16 autocast the folded gradients round differently, no worse than autograd's own. (Only
    well-conditioned gradients are compared: BatchNorm after the first conv cancels most of the input
    BatchNorm's and the first conv bias's effect, so their exact gradients are near 0 and any rounding
    is a large relative error, either way.)"""
    x, target = torch.randn(6, 1, 16, 137), torch.rand(6, 5).round().double()
    exact = _grads(_tiny_vgg(True), x.double(), target)
    errors = {}
    for fold in (False, True):
        model = _tiny_vgg(fold, torch.float32).to(memory_format=torch.channels_last)
        with torch.autocast("cpu", torch.bfloat16):
            grads = _grads(model, x.contiguous(memory_format=torch.channels_last), target)
        errors[fold] = {name: float((grads[name] - exact[name]).norm() / exact[name].norm()) for name in exact}
    for name in ("blocks.0.weight", "blocks.1.weight", "blocks.4.weight", "classifier.weight"):
        assert errors[True][name] < max(2 * errors[False][name], 0.02), (name, errors)


def test_where_it_cannot_fold_it_is_the_composition():
    bn, conv = _pair()
    x = torch.randn(2, 1, 12, 33, dtype=torch.float64, requires_grad=True)  # an input gradient wanted
    input_bn_conv(x, bn, conv).sum().backward()
    wanted = x.grad.clone()
    x.grad = None
    conv(bn(x)).sum().backward()
    torch.testing.assert_close(wanted, x.grad)
    bn.eval()
    with torch.no_grad():
        assert torch.equal(input_bn_conv(x, bn, conv), conv(bn(x)))


def test_compiled_folded_step_equals_eager():
    x, target = torch.randn(3, 1, 16, 137, dtype=torch.float64), torch.rand(3, 5).round().double()
    eager = _grads(_tiny_vgg(True), x, target)
    torch._dynamo.reset()
    compiled = _tiny_vgg(True)
    got = _grads(compiled, x, target, torch.compile(compiled, backend="aot_eager", fullgraph=True))
    torch._dynamo.reset()
    for name in eager:
        torch.testing.assert_close(got[name], eager[name], rtol=1e-9, atol=1e-12, msg=name)


def _same_block(kernel=(3, 3)):
    """An input BatchNorm, a 'same' first convolution (stride 1) and the BatchNorm after it, with gammas
    and betas away from 1 and 0."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(1).double()
    conv = nn.Conv2d(1, 6, kernel, padding=(kernel[0] // 2, kernel[1] // 2)).double()
    out_bn = nn.BatchNorm2d(6).double()
    with torch.no_grad():
        bn.weight.fill_(1.7)
        bn.bias.fill_(-0.6)
        out_bn.weight.copy_(torch.linspace(0.5, 2.0, 6))
        out_bn.bias.copy_(torch.linspace(-1.0, 0.7, 6))
    return bn, conv, out_bn


POOLS = {  # on 12 x 33 maps
    "rest dropped": lambda: nn.MaxPool2d((2, 4)),  # 33 = 8 x 4 + 1
    "ceil mode": lambda: PaddedMaxPool2d((2, 4), (0, 3), (12, 33)),
    "padded with -inf": lambda: PaddedMaxPool2d((4, 4), (0, 3)),
    "3 x 5, rest dropped": lambda: nn.MaxPool2d((3, 5)),
}


@pytest.mark.parametrize("pool", POOLS.values(), ids=POOLS.keys())
@pytest.mark.parametrize("kernel", [(3, 3), (5, 3)])
def test_conv_and_pool_as_one_equal_the_modules(monkeypatch, pool, kernel):
    """The computation `torch.compile` gets for block 1 (forced here in eager float64): the modules'
    outputs, all six parameters' gradients and the running statistics."""
    pool = pool()
    assert conv_pool_fuses(_same_block(kernel)[1], pool)
    x = torch.randn(3, 1, 12, 33, dtype=torch.float64)
    ref, got = _same_block(kernel), _same_block(kernel)
    want = pool(ref[2](ref[1](ref[0](x))))
    with monkeypatch.context() as patch:
        patch.setattr(torch.compiler, "is_compiling", lambda: True)
        y = conv_bn(x, *got, pool=pool)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(want)
    wanted = torch.autograd.grad(want, [p for m in ref for p in (m.weight, m.bias)], grad)
    for w, g in zip(wanted, torch.autograd.grad(y, [p for m in got for p in (m.weight, m.bias)], grad), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[2].running_mean, ref[2].running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[2].running_var, ref[2].running_var, rtol=1e-12, atol=1e-12)


def _centre_tap(block):
    """`block` with only its convolution's centre tap weighted: on an input of two values many windows
    tie, between elements whose neighbours differ, so that the other taps' weight gradients tell which
    element of a window took the gradient."""
    with torch.no_grad():
        block[1].weight.zero_()
        block[1].weight[:, :, 1, 1] = torch.linspace(-1.0, 1.0, block[1].out_channels)[:, None]
    return block


def test_tied_windows_pass_the_gradient_to_their_first_element_as_the_max_pool_does(monkeypatch):
    pool = nn.MaxPool2d((2, 4))
    x = torch.randint(0, 2, (3, 1, 12, 32)).double()
    ref, got = _centre_tap(_same_block()), _centre_tap(_same_block())
    want = pool(ref[2](ref[1](ref[0](x))))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    y = conv_bn(x, *got, pool=pool)
    grad = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(y, got[1].weight, grad)[0],
                               torch.autograd.grad(want, ref[1].weight, grad)[0], rtol=1e-10, atol=1e-12)


def test_what_cannot_pool_in_the_convolution_is_the_composition(monkeypatch):
    conv = _same_block()[1]
    assert not conv_pool_fuses(conv, nn.MaxPool2d(3, stride=2))  # overlapping windows
    assert not conv_pool_fuses(conv, nn.MaxPool2d(2, padding=1))
    assert conv_pool_fuses(conv, nn.MaxPool2d((1, 127))) and not conv_pool_fuses(conv, nn.MaxPool2d((2, 64)))  # int8
    assert not conv_pool_fuses(conv, nn.AvgPool2d(2))
    assert not conv_pool_fuses(nn.Conv2d(1, 6, 3, stride=2, padding=1), nn.MaxPool2d(2))
    assert not conv_pool_fuses(nn.Conv2d(1, 6, 3), nn.MaxPool2d(2))  # not 'same'
    x = torch.randn(3, 1, 12, 33, dtype=torch.float64)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for pool in (nn.MaxPool2d(3, stride=2), nn.AvgPool2d(2)):
        ref, got = _same_block(), _same_block()
        torch.testing.assert_close(conv_bn(x, *got, pool=pool), pool(conv_bn(x, *ref)), rtol=0, atol=0)


def test_compiled_vgg_pools_block_1_in_its_convolution_with_the_modules_gradients():
    """dynamo's graph of the compiled training pass: block 1's max-pool is in the fused computation (the
    other three blocks' remain), and the gradients are the textbook modules'."""
    x, target = torch.randn(3, 1, 16, 137, dtype=torch.float64), torch.rand(3, 5).round().double()
    want = _grads(_tiny_vgg(False), x, target)
    graphs = []

    def recording(gm, inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    model = _tiny_vgg(True)
    model.fuse_block1_pool = True
    got = _grads(model, x, target, torch.compile(model, backend=recording, fullgraph=True))
    torch._dynamo.reset()
    pools = [n for g in graphs for n in g.graph.nodes if n.target is nn.functional.max_pool2d]
    assert len(graphs) == 1 and len(pools) == 3, (len(graphs), len(pools))
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.slow
@pytest.mark.skipif(compile_blocker(torch.device("cpu")) is not None, reason="inductor needs a C compiler")
def test_inductor_makes_no_full_size_map_of_block_1(monkeypatch):
    """The point of the fusion: inductor's code for the training pass of block 1 allocates no tensor of
    the convolution's output size, forward or backward (only pooled-size ones and the input's); its
    gradients are the modules', ties included."""
    bn, conv, out_bn = _centre_tap(_same_block())
    pool = nn.MaxPool2d((2, 4))
    x = torch.randint(0, 2, (2, 1, 12, 32)).double()
    grad = torch.randn(2, 6, 6, 8, dtype=torch.float64)

    def block(x):
        return (conv_bn(x, bn, conv, out_bn, pool=pool) * grad).sum()

    def step():
        block_compiled(x).backward()

    torch._dynamo.reset()
    block_compiled = torch.compile(block, fullgraph=True)
    # which buffers the code allocates is the scheduler's fusion, not its vector ISA: scalar C++ compiles
    # in half the time
    with inductor_config.patch({"cpp.vec_isa_ok": False}):
        _, codes = run_and_get_code(step)
    torch._dynamo.reset()
    assert len(codes) == 2  # forward and backward
    full = "(2, 6, 12, 32)"
    assert not any(full in line for code in codes for line in code.splitlines() if "empty_strided" in line)
    ref = _centre_tap(_same_block())
    (pool(ref[2](ref[1](ref[0](x)))) * grad).sum().backward()
    torch.testing.assert_close((bn.weight.grad, conv.weight.grad), (ref[0].weight.grad, ref[1].weight.grad))


@pytest.mark.parametrize("arch", ["musicnn", "musicnn-787k"])
@pytest.mark.parametrize("rearrange", [True, False])  # the unfolded pass: the CPU's 1-D timbral convs, or 2-D
def test_musicnn_trains_with_the_gradients_of_the_textbook_composition(arch, rearrange):
    """Every front-end convolution (timbral, temporal on every band or on the band mean) folded, with
    the same gradients and running statistics as autograd through the modules."""
    import architectures
    from architectures import InputConfig

    runs = []
    for fold in (True, False):
        torch.manual_seed(0)
        model = architectures.build(arch, InputConfig(16000, 24, 1, 187), 5, width=0.25).double()
        model.fold_input_bn, model.rearrange = fold, rearrange
        with torch.no_grad():
            model.input_bn.weight.fill_(1.4)
            model.input_bn.bias.fill_(-0.4)
        clips = torch.Generator().manual_seed(1)
        x = 2 + torch.randn(3, 1, 24, model.input_frames, dtype=torch.float64, generator=clips)
        target = torch.rand(3, 5, generator=torch.Generator().manual_seed(2)).round().double()
        torch.manual_seed(3)  # the same dropout masks
        with ConvBackwardCalls() as calls:
            grads = _grads(model, x, target)
        runs.append((grads, model, calls.calls))
    (folded, model, folded_calls), (plain, plain_model, plain_calls) = runs
    for name in plain:
        torch.testing.assert_close(folded[name], plain[name], rtol=1e-9, atol=1e-12, msg=name)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(model.input_bn, name), getattr(plain_model.input_bn, name))
    # per front-end branch, weight gradients of the input and of one clip's ones (the bias's gradient
    # summed from the latter's output gradient), and no input gradient
    branches = len(model.timbral) + len(model.temporal)
    assert sum(got == (False, True, False) for _, got in folded_calls) == 2 * branches
    assert sum(got == (False, True, False) for _, got in plain_calls) == 0
    assert len(folded_calls) == len(plain_calls) + branches
