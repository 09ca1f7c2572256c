"""DenseNet-BC for CIFAR (Huang et al. 2017), as in bearpaw/pytorch-classification.

Each dense layer (a "block" for the noise placements, ``block{i}``) is a bottleneck::

    x -> bn1 -> relu1 -> conv1 (1x1, 4k) -> [noise (a)] -> bn2 -> relu2 -> [noise (b)]
      -> conv2 (3x3, k) -> concat(x, .)

Three dense stages of ``n = (depth - 4) / 6`` layers, separated by transitions
``transition{j}_bn -> _relu -> _conv (1x1, compression) -> _pool (2x2 average)``; the
transitions carry no noise. Stem ``conv1`` with ``2 k`` channels; after the last stage
``final_bn -> final_relu -> pool -> [noise] -> fc``. DenseNet-BC L=100, k=12 (n = 16):
2 x 48 + 2 + 1 = 99 BN layers, 0.77 M parameters on CIFAR-10.
"""

from __future__ import annotations

from varshift._keras import keras as _keras
from varshift.nets._blocks import Builder

__all__ = ["densenet_bc"]


def check_size(depth=100, **_):
    """Blocks per stage for ``depth``, or one line saying why not (checked before any layer
    is made, and by :func:`varshift.nets.check_size`)."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"Argument `depth` must be 6n+4 (e.g. 100); received depth={depth!r}.")
    return (depth - 4) // 6


def densenet_bc(num_classes=10, placement="none", noise="dropout", rate=0.0, *,
                input_shape=(32, 32, 3), seed=None, depth=100, growth_rate=12,
                compression=0.5, name=None, **builder_kwargs):
    """Build a DenseNet-BC.

    Args:
        depth: ``6 n + 4`` (100 gives n = 16 bottleneck layers per stage).
        growth_rate: ``k``, channels each dense layer adds (12).
        compression: transition output = ``floor(channels x compression)`` (0.5).
        Other arguments: see :func:`varshift.nets.build`; ``builder_kwargs`` (``beta``,
            ``bn_momentum``, ``bn_epsilon``) go to :class:`varshift.nets.Builder`.
    """
    keras = _keras()
    n = check_size(depth=depth)
    b = Builder(placement, noise, rate, seed, **builder_kwargs)

    inputs = keras.Input(input_shape, name="image")
    channels = 2 * growth_rate
    x = b.conv(inputs, channels, 3, "conv1")
    index = 0
    for stage in range(3):
        for _ in range(n):
            index += 1
            p = f"block{index}"
            out = b.relu(b.bn(x, f"{p}_bn1"), f"{p}_relu1")
            out = b.conv(out, 4 * growth_rate, 1, f"{p}_conv1")
            out = b.maybe_noise(out, "a", p)
            out = b.relu(b.bn(out, f"{p}_bn2"), f"{p}_relu2")
            out = b.maybe_noise(out, "b", p)
            out = b.conv(out, growth_rate, 3, f"{p}_conv2")
            x = keras.layers.Concatenate(name=f"{p}_concat")([x, out])
            channels += growth_rate
        if stage < 2:
            t = f"transition{stage + 1}"
            channels = int(channels * compression)
            x = b.relu(b.bn(x, f"{t}_bn"), f"{t}_relu")
            x = b.conv(x, channels, 1, f"{t}_conv")
            x = keras.layers.AveragePooling2D(2, name=f"{t}_pool")(x)
    x = b.relu(b.bn(x, "final_bn"), "final_relu")
    outputs = b.head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"densenet_bc{depth}_{growth_rate}")
