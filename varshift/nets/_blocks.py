"""Shared pieces of the CIFAR networks: noise-layer factory, placements, conv/BN helpers.

Every network in :mod:`varshift.nets` is built from these helpers so that the four
placements of the paper (Sec. 4) mean the same thing everywhere:

- ``"none"``: no noise layer at all.
- ``"a"`` (Dropout-(a)): one noise layer right before the *last* BatchNormalization of every
  block (``... conv -> noise -> BN -> ReLU -> conv``), so the noise meets BN directly: the
  paper's case (a), Eq. 7-8.
- ``"b"`` (Dropout-(b)): one noise layer right before the *last* convolution of every block
  (``BN -> ReLU -> noise -> conv``), the Wide ResNet position: case (b), Eq. 9-14.
- ``"after_bn"``: a single noise layer after the last BN of the network, after global
  average pooling, right before the classifier (Tables 4 and 5).

Noise kinds: the kinds of :data:`varshift.noise.NOISES` with a factory: ``"dropout"`` (Keras
``Dropout(rate)``, Bernoulli, inverted), ``"gaussian_dropout"`` (alias ``"gaussian"``, Keras
``GaussianDropout(rate)``, :math:`s^2 = rate / (1 - rate)`) and ``"uout"``
(:class:`varshift.layers.Uout`, parameter ``beta``, its half-width :math:`\\beta`).
"""

from __future__ import annotations

from varshift import noise as noise_registry
from varshift._keras import keras as _keras
from varshift._validate import check_choice
from varshift.contracts import BETA_SCALAR, RATE_SCALAR, SEED, Options, Real, contract

__all__ = ["PLACEMENTS", "NOISES", "BUILDER_ARGUMENTS", "Builder", "resolve_noise"]

PLACEMENTS = ("none", "a", "b", "after_bn")
#: the noise kinds a network can place (those of :data:`varshift.noise.NOISES` with a factory)
NOISES = noise_registry.buildable()

# bearpaw/pytorch-classification (the recipes the paper points to) uses PyTorch's BN defaults:
# momentum 0.1 on the new batch statistic (Keras momentum 0.9) and eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def resolve_noise(noise, rate=0.0, beta=0.0):
    """``(NoiseKind, value)`` of a noise given as kind + ``rate`` (dropout kinds) or ``beta``.

    The argument that is not the kind's parameter (:attr:`varshift.noise.NoiseKind.param`)
    must be 0; the other is validated by the registry (rate in [0, 1), beta in [0, 1]).
    """
    kind = noise_registry.get(check_choice("noise", noise, (*NOISES, *_aliases())))
    values = {"rate": rate, "beta": beta}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Argument `{name}` must be a float; received {name}={value!r}.")
    other = "beta" if kind.param == "rate" else "rate"
    if values[other] != 0:
        raise ValueError(
            f"Argument `{other}` is not a parameter of noise={noise!r} (its parameter is "
            f"`{kind.param}`); received {other}={values[other]!r}.")
    kind.check(values[kind.param], kind.param)
    return kind, float(values[kind.param])


def _aliases():
    return tuple(a for name in NOISES for a in noise_registry.NOISES[name].aliases)


#: the declared arguments of :class:`Builder` (and of :func:`varshift.nets.build`, which passes
#: them on)
BUILDER_ARGUMENTS = {
    "placement": Options(*PLACEMENTS), "noise": Options(*NOISES, *_aliases()),
    "rate": RATE_SCALAR, "beta": BETA_SCALAR, "seed": SEED,
    "bn_momentum": Real(0.0, 1.0, closed="left", meaning="BN's moving-average momentum"),
    "bn_epsilon": Real(0.0, None, closed="neither", meaning="BN's variance offset"),
}


@contract(**BUILDER_ARGUMENTS)
class Builder:
    """Creates named layers for one network and places the noise layers: what a network's
    builder function uses (``docs/developers.md``, "Adding a fifth network").

    Args:
        placement: one of :data:`PLACEMENTS`.
        noise: one of :data:`NOISES` (or an alias).
        rate: drop ratio of the dropout kinds.
        seed: optional integer; noise layer ``i`` gets ``seed + i`` so the whole network's
            noise is reproducible, and each layer draws independent masks.
        beta: Uout's half-width (``uout``).
        bn_momentum, bn_epsilon: BatchNormalization settings (PyTorch-equivalent defaults).

    Raises:
        TypeError, ValueError: one line naming the argument, the value and what is expected.

    Example:
        >>> from varshift import load_keras
        >>> from varshift.nets import Builder
        >>> keras = load_keras()
        >>> b = Builder("a", "dropout", 0.3, seed=0)
        >>> inputs = keras.Input((8, 8, 3))
        >>> x = b.maybe_noise(b.conv(inputs, 4, 3, "block1_conv1"), "a", "block1")
        >>> model = keras.Model(inputs, b.head(b.relu(b.bn(x, "block1_bn2"), "relu"), 10))
        >>> [layer.name for layer in model.layers if "noise" in layer.name]
        ['block1_noise']
    """

    def __init__(self, placement="none", noise="dropout", rate=0.0, seed=None, *, beta=0.0,
                 bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON):
        self.placement = placement
        self.noise, self.value = resolve_noise(noise, rate, beta)
        self.seed = seed
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self._noise_count = 0
        self.keras = _keras()

    # -- layers ------------------------------------------------------------------------------
    def conv(self, x, filters, kernel_size, name, *, strides=1, groups=1):
        """A bias-free convolution with 'same' padding and He-normal (fan-out) initialisation.

        The initialisation is bearpaw's ``normal(0, sqrt(2 / (k * k * out_channels)))``.
        """
        k = self.keras
        return k.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=False, groups=groups,
            kernel_initializer=k.initializers.VarianceScaling(
                2.0, mode="fan_out", distribution="untruncated_normal"),
            name=name,
        )(x)

    def bn(self, x, name):
        return self.keras.layers.BatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name)(x)

    def relu(self, x, name):
        return self.keras.layers.ReLU(name=name)(x)

    def noise_layer(self, name):
        """A fresh noise layer of this network's kind and parameter (identity at inference)."""
        seed = None if self.seed is None else self.seed + self._noise_count
        self._noise_count += 1
        return self.noise.make(self.value, seed=seed, name=name)

    def maybe_noise(self, x, position, prefix):
        """Apply ``{prefix}_noise`` if ``position`` ('a', 'b' or 'after_bn') is the placement."""
        if self.placement == position:
            return self.noise_layer(f"{prefix}_noise")(x)
        return x

    def head(self, x, num_classes, prefix=""):
        """Global average pooling, the optional ``after_bn`` noise, and the linear classifier.

        The classifier returns logits (no softmax) in float32, also under mixed precision.
        """
        k = self.keras
        x = k.layers.GlobalAveragePooling2D(name="pool")(x)
        x = self.maybe_noise(x, "after_bn", "head")
        return k.layers.Dense(
            num_classes, dtype="float32", name="fc",
            # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            kernel_initializer=k.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        )(x)
