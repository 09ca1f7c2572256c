"""Wide ResNet for CIFAR (Zagoruyko and Komodakis 2016), as in bearpaw/pytorch-classification.

Pre-activation basic block::

    x -> bn1 -> relu1 -> conv1 (3x3, stride) -> [noise (a)] -> bn2 -> relu2 -> [noise (b)]
      -> conv2 (3x3) -> add(shortcut)

``[noise (b)]`` is WRN's own dropout position. When the shape changes, the shortcut is
``block{i}_shortcut`` (1x1 conv, stride) applied to ``relu1``'s output, as in the reference
code; otherwise it is the identity. Stem ``conv1`` (16 channels); stages of
``16 k``, ``32 k``, ``64 k`` channels; ``final_bn -> final_relu -> pool -> [noise] -> fc``.
WRN-28-10 (n = 4 blocks per stage): 25 BN layers, 36.48 M parameters on CIFAR-10.
"""

from __future__ import annotations

from varshift._keras import keras as _keras
from varshift.nets._blocks import Builder

__all__ = ["wrn"]


def check_size(depth=28, **_):
    """Blocks per stage for ``depth``, or one line saying why not (checked before any layer
    is made, and by :func:`varshift.nets.check_size`)."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"Argument `depth` must be 6n+4 (e.g. 28); received depth={depth!r}.")
    return (depth - 4) // 6


def wrn(num_classes=10, placement="none", noise="dropout", rate=0.0, *,
        input_shape=(32, 32, 3), seed=None, depth=28, widen_factor=10, width=16,
        name=None, **builder_kwargs):
    """Build a Wide ResNet ``WRN-depth-widen_factor``.

    Args:
        depth: ``6 n + 4`` (28 gives n = 4 blocks per stage).
        widen_factor: ``k`` (10): stage ``s`` has ``width * k * 2^s`` channels.
        width: channels of the stem, and the base that ``widen_factor`` multiplies (16; the
            small CPU size uses 8).
        Other arguments: see :func:`varshift.nets.build`; ``builder_kwargs`` (``beta``,
            ``bn_momentum``, ``bn_epsilon``) go to :class:`varshift.nets.Builder`.
    """
    keras = _keras()
    n = check_size(depth=depth)
    b = Builder(placement, noise, rate, seed, **builder_kwargs)

    inputs = keras.Input(input_shape, name="image")
    x = b.conv(inputs, width, 3, "conv1")
    channels = width
    index = 0
    for stage in range(3):
        planes = width * widen_factor * 2**stage
        for j in range(n):
            index += 1
            p = f"block{index}"
            stride = 2 if (stage > 0 and j == 0) else 1
            act = b.relu(b.bn(x, f"{p}_bn1"), f"{p}_relu1")
            if channels == planes and stride == 1:
                shortcut = x
            else:
                shortcut = b.conv(act, planes, 1, f"{p}_shortcut", strides=stride)
            out = b.conv(act, planes, 3, f"{p}_conv1", strides=stride)
            out = b.maybe_noise(out, "a", p)
            out = b.relu(b.bn(out, f"{p}_bn2"), f"{p}_relu2")
            out = b.maybe_noise(out, "b", p)
            out = b.conv(out, planes, 3, f"{p}_conv2")
            x = keras.layers.Add(name=f"{p}_add")([shortcut, out])
            channels = planes
    x = b.relu(b.bn(x, "final_bn"), "final_relu")
    outputs = b.head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"wrn{depth}_{widen_factor}")
