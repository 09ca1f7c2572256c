r"""The paper's four CIFAR networks, with noise layers in the paper's placements.

:func:`build` makes PreResNet, ResNeXt-29, Wide ResNet and DenseNet-BC at the paper's sizes
(Table 2) or, with the size keywords, at small sizes that train on a CPU with the same code.
Each network is one entry of :data:`NETWORKS` (``varshift/nets/registry.py``: builder, paper
name, sizes, recipes); :data:`NAMES`, :data:`DEFAULT_SIZES` and
:data:`SMALL_SIZES` are views of it.

Placements (paper Sec. 4; definitions in :mod:`varshift.nets._blocks`):

- ``"none"``: no noise.
- ``"a"``: noise right before the last BN of every block, case (a):
  :math:`\mathrm{Var}^{Test}/\mathrm{Var}^{Train} = p v / (v + (1-p) c^2)` (Eq. 8).
- ``"b"``: noise right before the last convolution of every block, case (b) (Eq. 14).
- ``"after_bn"``: one noise layer after the last BN, before the classifier.

Layer names: block ``i`` (counted from 1 over the whole network) owns ``block{i}_bn1``,
``block{i}_conv1``, ..., ``block{i}_noise``, ``block{i}_add``; the stem is ``conv1`` (and
``bn1`` for ResNeXt), the end ``final_bn``, ``pool``, ``head_noise``, ``fc``. The model
returns logits (``fc`` is float32 even under mixed precision).

Parameter / BN-layer counts at the default sizes, ``num_classes=10`` (trainable parameters,
the number PyTorch and the paper report; Keras' ``count_params`` adds the BN moving
statistics):

=================  ========================  ===========  =========
name               network                   parameters   BN layers
=================  ========================  ===========  =========
``preresnet``      PreResNet-164 bottleneck  1.70 M       163
``preresnet``      ``depth=110`` (basic)     1.73 M       109
``resnext29``      ResNeXt-29 8x64d          34.43 M      31
``wrn``            WRN-28-10                 36.48 M      25
``densenet_bc``    DenseNet-BC L=100 k=12    0.77 M       99
=================  ========================  ===========  =========

PreResNet's block type follows the depth: ``depth=110`` is the basic-block PreResNet-110,
any other ``9 n + 2`` depth (164, 20, ...) is bottleneck, other ``6 n + 2`` depths are basic;
``block="basic"`` / ``block="bottleneck"`` forces it.

Example:

>>> from varshift import nets
>>> model = nets.build("preresnet", placement="a", rate=0.5, **nets.SMALL_SIZES["preresnet"])
>>> "block1_noise" in [layer.name for layer in model.layers]
True
"""

from __future__ import annotations

from varshift.contracts import (
    COUNT,
    Optional,
    Options,
    Real,
    Shape,
    contract,
)
from varshift.nets._blocks import BUILDER_ARGUMENTS, NOISES, PLACEMENTS, Builder
from varshift.nets.registry import NETWORKS, Network, recipe_for, recipes

__all__ = ["build", "small", "NETWORKS", "Network", "NAMES", "SMALL_SIZES", "DEFAULT_SIZES",
           "PLACEMENTS", "NOISES", "Builder", "SIZE_KEYWORDS", "check_size", "trainable_params",
           "bn_count", "recipe_for", "recipes"]

#: the networks' names, in the paper's order (the keys of :data:`NETWORKS`)
NAMES = tuple(NETWORKS)
#: the paper's sizes (Table 2), from :data:`NETWORKS`
DEFAULT_SIZES = {name: dict(net.paper_size) for name, net in NETWORKS.items()}
#: tiny variants for CPU runs and tests (the same code, a few 10k parameters)
SMALL_SIZES = {name: dict(net.small_size) for name, net in NETWORKS.items()}


#: the declared arguments of :func:`build` and :func:`small` (size keywords included; those
#: :class:`Builder` takes are its own declarations)
_ARGUMENTS = {
    "name": Options(*NAMES), "num_classes": COUNT, "placement": BUILDER_ARGUMENTS["placement"],
    "noise": BUILDER_ARGUMENTS["noise"], "rate": BUILDER_ARGUMENTS["rate"],
    "beta": BUILDER_ARGUMENTS["beta"],
    "input_shape": Shape(3, what="the shape of one image (H, W, C)"),
    "seed": BUILDER_ARGUMENTS["seed"],
    "depth": COUNT, "width": COUNT, "widen_factor": COUNT, "cardinality": COUNT,
    "base_width": COUNT, "stem_width": COUNT, "growth_rate": COUNT,
    "compression": Real(0.0, 1.0, closed="right", meaning="DenseNet-BC's transition ratio"),
    "block": Optional(Options("bottleneck", "basic")),
    "bn_momentum": BUILDER_ARGUMENTS["bn_momentum"], "bn_epsilon": BUILDER_ARGUMENTS["bn_epsilon"],
}


#: the size keywords :func:`build` takes (some networks use only some of them)
SIZE_KEYWORDS = ("depth", "width", "block", "widen_factor", "cardinality", "base_width",
                 "stem_width", "growth_rate", "compression", "bn_momentum", "bn_epsilon")


def _network(name):
    if name not in NETWORKS:
        raise ValueError(
            f"Argument `name` must be one of {', '.join(map(repr, NAMES))}; received name={name!r}."
        )
    return NETWORKS[name]


@contract(**_ARGUMENTS)
def build(name, num_classes=10, placement="none", noise="dropout", rate=0.0, *, beta=0.0,
          input_shape=(32, 32, 3), seed=None, **size):
    """Build one of the paper's CIFAR networks as a functional ``keras.Model`` (logits out).

    Args:
        name: ``"preresnet"``, ``"resnext29"``, ``"wrn"`` or ``"densenet_bc"`` (the keys of
            :data:`NETWORKS`).
        num_classes: classifier outputs (10 for CIFAR-10, 100 for CIFAR-100).
        placement: ``"none"``, ``"a"``, ``"b"`` or ``"after_bn"`` (see module docstring).
        noise: a kind of :data:`varshift.noise.NOISES` that has a factory: ``"dropout"``
            (Keras ``Dropout``), ``"gaussian_dropout"`` (alias ``"gaussian"``, Keras
            ``GaussianDropout``) or ``"uout"`` (:class:`varshift.layers.Uout`).
        rate: drop ratio :math:`1 - p` of the dropout kinds, in [0, 1).
        beta: Uout's :math:`\\beta`, in [0, 1]. The argument that is not the noise kind's
            parameter must stay 0.
        input_shape: ``(H, W, C)``; 32x32x3 for CIFAR, 28x28x1 for Fashion-MNIST, 8x8x1 for
            the scikit-learn digits.
        seed: optional integer; noise layers get ``seed, seed + 1, ...``.
        **size: architecture sizes: ``depth``, ``width``, ``block`` (PreResNet);
            ``depth``, ``cardinality``, ``base_width``, ``widen_factor``, ``stem_width``
            (ResNeXt); ``depth``, ``widen_factor``, ``width`` (WRN); ``depth``,
            ``growth_rate``, ``compression`` (DenseNet-BC); and ``bn_momentum`` /
            ``bn_epsilon`` (default 0.9 / 1e-5, PyTorch's BN defaults as in the reference
            code). Missing keywords take the paper's sizes (:data:`DEFAULT_SIZES`).

    Returns:
        An uncompiled ``keras.Model``.

    Example:

    >>> model = build("wrn", placement="b", rate=0.3, **SMALL_SIZES["wrn"])
    >>> model.output_shape
    (None, 10)
    """
    network = _network(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"Argument `num_classes` must be an integer >= 1; received num_classes={num_classes!r}."
        )
    try:
        return network.builder_function()(num_classes, placement, noise, rate, beta=beta,
                                          input_shape=tuple(input_shape), seed=seed, **size)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            allowed = sorted(set(network.paper_size) | set(network.small_size)
                             | {"bn_momentum", "bn_epsilon", "name"})
            raise ValueError(
                f"Unknown size keyword for {name!r}: {err}. Allowed: {', '.join(allowed)}."
            ) from None
        raise


def check_size(name, size):
    """Check the size keywords ``size`` of network ``name`` without building it: known
    keywords, each within its declared range, and a depth the network can have. One line
    naming the keyword otherwise."""
    import importlib

    network = _network(name)
    for key, value in size.items():
        if key not in SIZE_KEYWORDS:
            raise ValueError(f"Argument `size` has unknown size keyword {key!r}; expected some "
                             f"of {', '.join(sorted(SIZE_KEYWORDS))}.")
        if key in _ARGUMENTS:
            _ARGUMENTS[key].check(key, value)
    module = importlib.import_module(network.builder.split(":")[0])
    module.check_size(**{**network.paper_size, **size})


@contract(**_ARGUMENTS)
def small(name, num_classes=10, placement="none", noise="dropout", rate=0.0, **kwargs):
    """:func:`build` at the tiny CPU size :data:`SMALL_SIZES[name] <SMALL_SIZES>`.

    Keywords in ``kwargs`` (``beta`` included) override the small sizes or pass through to
    :func:`build`.
    """
    size = _network(name).small_size
    return build(name, num_classes, placement, noise, rate, **{**size, **kwargs})


def trainable_params(model) -> int:
    """Number of trainable parameters (PyTorch's and the paper's count)."""
    import numpy as np

    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def bn_count(model) -> int:
    """Number of BatchNormalization layers in ``model``."""
    from varshift._graph import bn_layers

    return len(bn_layers(model))
