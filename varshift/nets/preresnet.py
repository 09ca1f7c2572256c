"""Pre-activation ResNet for CIFAR (He et al. 2016), as in bearpaw/pytorch-classification.

Bottleneck block (``block="bottleneck"``, depth = 9 n + 2, expansion 4)::

    x -> bn1 -> relu1 -> conv1 (1x1, w) -> bn2 -> relu2 -> conv2 (3x3, w, stride)
      -> [noise (a)] -> bn3 -> relu3 -> [noise (b)] -> conv3 (1x1, 4w) -> add(shortcut)

Basic block (``block="basic"``, depth = 6 n + 2)::

    x -> bn1 -> relu1 -> conv1 (3x3, stride) -> [noise (a)] -> bn2 -> relu2 -> [noise (b)]
      -> conv2 (3x3) -> add(shortcut)

The shortcut is the identity, or a bias-free 1x1 convolution (``block{i}_shortcut``, stride 2
where the resolution halves) when the shape changes; it takes the block's input (bearpaw's
``downsample``). After the last block: ``final_bn -> final_relu -> pool -> [noise] -> fc``.
Depth 164 (bottleneck, n = 18) has 3 x 18 x 3 + 1 = 163 BN layers and 1.70 M parameters on
CIFAR-10; depth 110 (basic, n = 18) has 109 BN layers and 1.73 M parameters.
"""

from __future__ import annotations

from varshift._keras import keras as _keras
from varshift.nets._blocks import Builder

__all__ = ["preresnet"]


def check_size(depth=164, block=None, **_):
    """``(blocks per stage, block)`` for ``depth`` and ``block``, or one line saying why not
    (checked before any layer is made, and by :func:`varshift.nets.check_size`)."""
    if block is None:
        block = "bottleneck" if (depth - 2) % 9 == 0 and depth != 110 else "basic"
    per = 9 if block == "bottleneck" else 6
    if block not in ("bottleneck", "basic") or depth < per + 2 or (depth - 2) % per:
        raise ValueError(
            f"Argument `depth` must be 9n+2 for bottleneck blocks or 6n+2 for basic blocks "
            f"(e.g. 164 or 110) and `block` one of 'bottleneck', 'basic'; received depth={depth!r}, "
            f"block={block!r}."
        )
    return (depth - 2) // per, block


def preresnet(num_classes=10, placement="none", noise="dropout", rate=0.0, *,
              input_shape=(32, 32, 3), seed=None, depth=164, block=None, width=16,
              name=None, **builder_kwargs):
    """Build a pre-activation ResNet.

    Args:
        depth: total number of weight layers; ``9 n + 2`` for bottleneck blocks, ``6 n + 2``
            for basic blocks.
        block: ``"bottleneck"`` or ``"basic"``. Default (``None``): ``"basic"`` for
            ``depth=110`` (the paper's text names PreResNet-110, bearpaw's basic-block network;
            110 is also 9n+2, so it must be special-cased), otherwise bottleneck when
            ``(depth - 2) % 9 == 0`` (164: the 163 BN layers of Fig. 4), else basic.
        width: channels of the first stage (16); the stages use ``width``, ``2 width``,
            ``4 width`` (times 4 at the bottleneck output).
        Other arguments: see :func:`varshift.nets.build`; ``builder_kwargs`` (``beta``,
            ``bn_momentum``, ``bn_epsilon``) go to :class:`varshift.nets.Builder`.
    """
    keras = _keras()
    n, block = check_size(depth=depth, block=block)
    b = Builder(placement, noise, rate, seed, **builder_kwargs)
    expansion = 4 if block == "bottleneck" else 1

    inputs = keras.Input(input_shape, name="image")
    x = b.conv(inputs, width, 3, "conv1")
    channels = width
    index = 0
    for stage, planes in enumerate((width, 2 * width, 4 * width)):
        for j in range(n):
            index += 1
            p = f"block{index}"
            stride = 2 if (stage > 0 and j == 0) else 1
            shortcut = x
            if stride != 1 or channels != planes * expansion:
                shortcut = b.conv(x, planes * expansion, 1, f"{p}_shortcut", strides=stride)
            out = b.relu(b.bn(x, f"{p}_bn1"), f"{p}_relu1")
            if block == "bottleneck":
                out = b.conv(out, planes, 1, f"{p}_conv1")
                out = b.relu(b.bn(out, f"{p}_bn2"), f"{p}_relu2")
                out = b.conv(out, planes, 3, f"{p}_conv2", strides=stride)
                out = b.maybe_noise(out, "a", p)
                out = b.relu(b.bn(out, f"{p}_bn3"), f"{p}_relu3")
                out = b.maybe_noise(out, "b", p)
                out = b.conv(out, planes * expansion, 1, f"{p}_conv3")
            else:
                out = b.conv(out, planes, 3, f"{p}_conv1", strides=stride)
                out = b.maybe_noise(out, "a", p)
                out = b.relu(b.bn(out, f"{p}_bn2"), f"{p}_relu2")
                out = b.maybe_noise(out, "b", p)
                out = b.conv(out, planes, 3, f"{p}_conv2")
            x = keras.layers.Add(name=f"{p}_add")([shortcut, out])
            channels = planes * expansion
    x = b.relu(b.bn(x, "final_bn"), "final_relu")
    outputs = b.head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"preresnet{depth}")
