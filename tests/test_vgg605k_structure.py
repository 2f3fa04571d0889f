"""`vgg-605k` layer by layer against the released network: musicnn 0.1.0, models.py, `vgg(x, is_training,
num_classes, num_filters)`, built with num_filters=128 for both 'MTT_vgg' and 'MSD_vgg'
(`define_model`), on x of shape (batch, time, freq) = (batch, 187, 96) (extractor.py's placeholder).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import architectures
from architectures import InputConfig

RELEASED_INPUT = InputConfig(sample_rate=16000, n_mels=96, hop_multiplier=1, n_frames=187)
N_TAGS = 50

# Transcribed from musicnn 0.1.0 models.py `vgg` (TensorFlow 1 layers API, layout (batch, time, freq, channel)):
#   bn_input = batch_normalization(expand_dims(x, 3))
#   block k = 1..5: conv2d(filters=num_filters, kernel_size=[3, 3], padding='same', activation=relu)
#                   -> batch_normalization -> max_pooling2d(pool_size, strides)   (padding 'valid', the default)
#                   -> dropout(rate=0.25)                                          (after pools 1-4 only)
#     pool_size / strides in (time, freq): [4, 1] / [2, 2]; [2, 2] / [2, 2] (blocks 2, 3, 4); [4, 4] / [4, 4]
#   flatten(pool5) -> dropout(rate=0.5) -> dense(units=num_classes, activation=None)
# TF's batch_normalization epsilon defaults to 1e-3; conv2d and dense have biases (use_bias=True).
MUSICNN_VGG_FILTERS = 128
MUSICNN_VGG_POOLS_TIME_FREQ = [((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)),
                               ((4, 4), (4, 4))]
MUSICNN_VGG_DROPOUTS = [0.25, 0.25, 0.25, 0.25, None]  # after each pool
MUSICNN_VGG_FINAL_DROPOUT = 0.5

# pool5's output at 187 frames x 96 bands, 'valid' pools: time 187 -> 92 -> 46 -> 23 -> 11 -> 2,
# freq 96 -> 48 -> 24 -> 12 -> 6 -> 1 (out = (in - kernel) // stride + 1), so 2 x 1 x 128 = 256 features.
FLAT_FEATURES = 2 * 1 * 128


def expected_sequence() -> list[tuple]:
    """The transcription above in PyTorch's terms: (batch, channel, freq, time), so every (time, freq)
    pair is swapped; 'same' 3x3 convolution = padding 1."""
    seq: list[tuple] = [("BatchNorm2d", 1, 1e-3)]
    c_in = 1
    for ((k_time, k_freq), (s_time, s_freq)), dropout in zip(MUSICNN_VGG_POOLS_TIME_FREQ, MUSICNN_VGG_DROPOUTS,
                                                           strict=True):
        seq += [("Conv2d", c_in, MUSICNN_VGG_FILTERS, (3, 3), (1, 1), True), ("ReLU",),
                ("BatchNorm2d", MUSICNN_VGG_FILTERS, 1e-3), ("MaxPool2d", (k_freq, k_time), (s_freq, s_time), 0, False)]
        if dropout is not None:
            seq.append(("Dropout", dropout))
        c_in = MUSICNN_VGG_FILTERS
    return seq + [("Dropout", MUSICNN_VGG_FINAL_DROPOUT), ("Linear", FLAT_FEATURES, N_TAGS, True)]


def describe(module: nn.Module) -> tuple:
    def pair(value):
        return tuple(value) if isinstance(value, (tuple, list)) else (value, value)

    if isinstance(module, nn.Conv2d):
        return ("Conv2d", module.in_channels, module.out_channels, tuple(module.kernel_size), tuple(module.padding),
                module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return ("BatchNorm2d", module.num_features, module.eps)
    if isinstance(module, nn.MaxPool2d):
        return ("MaxPool2d", pair(module.kernel_size), pair(module.stride), module.padding, module.ceil_mode)
    if isinstance(module, nn.Dropout):
        return ("Dropout", module.p)
    if isinstance(module, nn.Linear):
        return ("Linear", module.in_features, module.out_features, module.bias is not None)
    return (type(module).__name__,)


@pytest.fixture(scope="module")
def model():
    return architectures.build("vgg-605k", RELEASED_INPUT, N_TAGS)


def test_vgg_605k_declares_the_released_layers_in_order(model):
    leaves = [m for m in model.modules() if not list(m.children())]
    assert [describe(m) for m in leaves] == expected_sequence()


def test_vgg_605k_runs_the_released_layers_in_order(model):
    """What forward really executes, in training mode (where every dropout acts), once each, in order.
    (With autograd on, the input BatchNorm and the first conv run as one function that computes no
    input gradient, `input_bn_conv`: tests/test_input_bn_conv.py holds it to these two modules.)"""
    ran = []
    hooks = [m.register_forward_hook(lambda module, _in, out: ran.append((describe(module), tuple(out.shape))))
             for m in model.modules() if not list(m.children())]
    try:
        model.train()
        with torch.no_grad():
            model(torch.zeros(2, 96, 187))
    finally:
        for hook in hooks:
            hook.remove()
        model.eval()
    assert [layer for layer, _ in ran] == expected_sequence()
    # (freq, time) after each pool, worked out above
    pooled = [shape[2:] for layer, shape in ran if layer[0] == "MaxPool2d"]
    assert pooled == [(48, 92), (24, 46), (12, 23), (6, 11), (1, 2)]
    assert ran[-1][1] == (2, N_TAGS)


def test_vgg_605k_parameter_count_from_the_layer_list(model):
    # input BN 2 (gamma, beta); conv1 3*3*1*128 + 128 = 1,280; convs 2-5 4 x (3*3*128*128 + 128) = 590,336;
    # BN 1-5 5 x 256 = 1,280; dense 256*50 + 50 = 12,850: 605,748, the count in vgg-605k's name.
    assert 2 + 1_280 + 590_336 + 1_280 + 12_850 == 605_748
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 605_748
