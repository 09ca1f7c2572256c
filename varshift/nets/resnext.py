"""ResNeXt-29 for CIFAR (Xie et al. 2017), as in bearpaw/pytorch-classification.

Post-activation bottleneck block with grouped convolution (``D = cardinality x base_width``
channels inside, ``cardinality`` groups)::

    x -> conv_reduce (1x1, D) -> bn_reduce -> relu_reduce -> conv_group (3x3, D, groups, stride)
      -> bn_group -> relu_group -> [noise (b)] -> conv_expand (1x1, out) -> [noise (a)]
      -> bn_expand -> add(shortcut) -> relu

The shortcut is the identity, or ``block{i}_shortcut`` (1x1 conv, stride) followed by
``block{i}_shortcut_bn`` when the shape changes (the first block of each stage). The stem is
``conv1 -> bn1 -> relu1`` with 64 channels; stage outputs are 256, 512, 1024 channels
(``4 x 64 x 2^s`` for ``widen_factor=4``). Depth 29 (n = 3 blocks per stage), cardinality 8,
base width 64: 31 BN layers, 34.43 M parameters on CIFAR-10.
"""

from __future__ import annotations

from varshift._keras import keras as _keras
from varshift.nets._blocks import Builder

__all__ = ["resnext29"]


def check_size(depth=29, **_):
    """Blocks per stage for ``depth``, or one line saying why not (checked before any layer
    is made, and by :func:`varshift.nets.check_size`)."""
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"Argument `depth` must be 9n+2 (e.g. 29); received depth={depth!r}.")
    return (depth - 2) // 9


def resnext29(num_classes=10, placement="none", noise="dropout", rate=0.0, *,
              input_shape=(32, 32, 3), seed=None, depth=29, cardinality=8, base_width=64,
              widen_factor=4, stem_width=64, name=None, **builder_kwargs):
    """Build a CIFAR ResNeXt.

    Args:
        depth: ``9 n + 2`` (29 gives n = 3 blocks per stage).
        cardinality: number of groups of the 3x3 convolution (8).
        base_width: channels per group in the first stage (64); doubles per stage.
        widen_factor: stage output channels are ``widen_factor x stem_width x 2^s`` (4).
        stem_width: channels of the first convolution (64).
        Other arguments: see :func:`varshift.nets.build`; ``builder_kwargs`` (``beta``,
            ``bn_momentum``, ``bn_epsilon``) go to :class:`varshift.nets.Builder`.
    """
    keras = _keras()
    n = check_size(depth=depth)
    b = Builder(placement, noise, rate, seed, **builder_kwargs)

    inputs = keras.Input(input_shape, name="image")
    x = b.relu(b.bn(b.conv(inputs, stem_width, 3, "conv1"), "bn1"), "relu1")
    channels = stem_width
    index = 0
    for stage in range(3):
        out_channels = widen_factor * stem_width * 2**stage
        inner = cardinality * base_width * 2**stage  # D = C x d
        for j in range(n):
            index += 1
            p = f"block{index}"
            stride = 2 if (stage > 0 and j == 0) else 1
            shortcut = x
            if stride != 1 or channels != out_channels:
                shortcut = b.conv(x, out_channels, 1, f"{p}_shortcut", strides=stride)
                shortcut = b.bn(shortcut, f"{p}_shortcut_bn")
            out = b.conv(x, inner, 1, f"{p}_conv_reduce")
            out = b.relu(b.bn(out, f"{p}_bn_reduce"), f"{p}_relu_reduce")
            out = b.conv(out, inner, 3, f"{p}_conv_group", strides=stride, groups=cardinality)
            out = b.relu(b.bn(out, f"{p}_bn_group"), f"{p}_relu_group")
            out = b.maybe_noise(out, "b", p)
            out = b.conv(out, out_channels, 1, f"{p}_conv_expand")
            out = b.maybe_noise(out, "a", p)
            out = b.bn(out, f"{p}_bn_expand")
            x = keras.layers.Add(name=f"{p}_add")([shortcut, out])
            x = b.relu(x, f"{p}_relu")
            channels = out_channels
    outputs = b.head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"resnext{depth}")
