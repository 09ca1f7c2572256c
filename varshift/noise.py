r"""The noise registry: every noise layer varshift knows, written once.

Each kind of noise layer is one :class:`NoiseKind` in :data:`NOISES`: the Keras class(es) it is,
the name and attribute of its parameter (Keras' drop ratio ``rate`` for the dropout kinds,
:math:`\beta` for :class:`varshift.layers.Uout`), the variance :math:`s^2` of its
multiplicative factor :math:`m` (:math:`E[m] = 1`) as a function of that parameter, and, for
the kinds :func:`varshift.nets.build` can place, a factory of a fresh layer.

.. math::
    s^2_{\text{dropout}} = \frac{1-p}{p} = \frac{\text{rate}}{1-\text{rate}},\qquad
    s^2_{\text{Gaussian dropout}} = \frac{\text{rate}}{1-\text{rate}},\qquad
    s^2_{\text{Uout}} = \frac{\beta^2}{3}.

:func:`kind_of` tells a layer's kind, :func:`noise_layers` finds a model's noise layers.
Every consumer reads this table: :mod:`varshift.theory` (training variances),
:func:`varshift.audit` (which layer is noise, its parameter and :math:`s^2`),
:func:`varshift.correct_direct`, the network builder :mod:`varshift.nets` and the Eq. 15 target
of the reproduction. Adding a noise kind is one :class:`NoiseKind` entry here (plus its layer
module if Keras has none).

Example:

>>> from varshift.noise import NOISES
>>> NOISES["uout"].param, float(NOISES["uout"].noise_var(0.5))
('beta', 0.08333333333333333)
>>> get("gaussian").name  # an alias
'gaussian_dropout'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from varshift._graph import all_layers

__all__ = ["NoiseKind", "NOISES", "get", "kind_of", "noise_kind", "noise_layers", "buildable",
           "noise_variance"]


def _odds(rate):
    """:math:`\\text{rate} / (1 - \\text{rate})`, infinite at rate 1 (broadcasts)."""
    rate = np.asarray(rate, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = rate / (1.0 - rate)
    return out[()] if out.ndim == 0 else out


def _third_square(beta):
    """:math:`\\beta^2 / 3` (broadcasts)."""
    beta = np.asarray(beta, dtype=np.float64)
    out = beta**2 / 3.0
    return out[()] if out.ndim == 0 else out


def _check_rate(value, name="rate"):
    from varshift._validate import check_rate

    return check_rate(value, name)


def _check_beta(value, name="beta"):
    from varshift._validate import check_beta

    return check_beta(value, name)


def _keras_layers(*names):
    """A loader of ``keras.layers`` classes (Keras is imported only when asked)."""
    def load():
        from varshift._keras import keras

        layers = keras().layers
        return tuple(getattr(layers, n) for n in names if hasattr(layers, n))
    return load


def _uout_class():
    from varshift.layers import Uout

    return (Uout,)


def _keras_factory(class_name):
    def make(value, *, seed=None, name=None):
        from varshift._keras import keras

        return getattr(keras().layers, class_name)(value, seed=seed, name=name)
    return make


def _uout_factory(value, *, seed=None, name=None):
    from varshift.layers import Uout

    return Uout(value, seed=seed, name=name)


@dataclass(frozen=True)
class NoiseKind:
    r"""One kind of noise layer.

    Args:
        name: the registry key (also ``noise_kind`` in :func:`varshift.audit`).
        param: the name of its parameter, as the layer's attribute and as the argument of
            :func:`varshift.nets.build` / :class:`varshift.train.RunConfig` (``"rate"``,
            ``"beta"`` or ``"stddev"``).
        classes: a function returning the layer class(es) of this kind (lazy: Keras is imported
            on the first call).
        noise_var: :math:`s^2` as a function of the parameter (broadcasts), or ``None`` when the
            noise is not a multiplicative factor with mean 1 (alpha dropout, additive noise).
        check: validator of the parameter (raises ``ValueError`` naming it), or ``None``.
        factory: ``factory(value, *, seed, name)`` makes a fresh layer, for the kinds the
            networks of :mod:`varshift.nets` can place; ``None`` otherwise.
        aliases: other names accepted by :func:`get`.
        label: a short human-readable name.
    """

    name: str
    param: str
    classes: Callable[[], tuple]
    noise_var: Callable | None = None
    check: Callable | None = None
    factory: Callable | None = None
    aliases: tuple = ()
    label: str = ""

    def __repr__(self):
        return (f"NoiseKind({self.name!r}, param={self.param!r}, "
                f"multiplicative={self.multiplicative}, buildable={self.factory is not None})")

    @property
    def multiplicative(self) -> bool:
        """Whether the noise is :math:`x\\,m` with :math:`E[m] = 1` (it has an :math:`s^2`)."""
        return self.noise_var is not None

    def value_of(self, layer) -> float:
        """The parameter of a layer of this kind (``layer.rate``, ``layer.beta``, ...)."""
        return float(getattr(layer, self.param))

    def make(self, value, *, seed=None, name=None):
        """A fresh layer of this kind with parameter ``value``."""
        if self.factory is None:
            raise ValueError(f"Noise kind {self.name!r} cannot be built by varshift; "
                             f"expected one of {', '.join(map(repr, buildable()))}.")
        return self.factory(value, seed=seed, name=name)


#: every noise kind, keyed by name (the order is the display order)
NOISES = {k.name: k for k in (
    NoiseKind("dropout", "rate", _keras_layers("Dropout"), _odds, _check_rate,
              _keras_factory("Dropout"), label="Bernoulli dropout"),
    NoiseKind("spatial_dropout", "rate",
              _keras_layers("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"),
              _odds, _check_rate, label="spatial dropout"),
    NoiseKind("gaussian_dropout", "rate", _keras_layers("GaussianDropout"), _odds, _check_rate,
              _keras_factory("GaussianDropout"), aliases=("gaussian",), label="Gaussian dropout"),
    NoiseKind("alpha_dropout", "rate", _keras_layers("AlphaDropout"), label="alpha dropout"),
    NoiseKind("gaussian_noise", "stddev", _keras_layers("GaussianNoise"),
              label="Gaussian noise (additive)"),
    NoiseKind("uout", "beta", _uout_class, _third_square, _check_beta, _uout_factory,
              label="Uout"),
)}

_ALIASES = {alias: k.name for k in NOISES.values() for alias in (k.name, *k.aliases)}


def buildable() -> tuple:
    """Names of the kinds :func:`varshift.nets.build` can place (they have a factory)."""
    return tuple(name for name, k in NOISES.items() if k.factory is not None)


def get(name) -> NoiseKind:
    """The :class:`NoiseKind` called ``name`` (or one of its aliases)."""
    if name not in _ALIASES:
        raise ValueError(
            f"Argument `noise` must be one of {', '.join(map(repr, _ALIASES))}; "
            f"received noise={name!r}.")
    return NOISES[_ALIASES[name]]


def kind_of(layer) -> NoiseKind | None:
    """The registry entry of a layer, or ``None`` if it is not a noise layer.

    The most derived matching class wins (``SpatialDropout2D`` is a ``Dropout`` subclass).
    """
    by_class = {cls: k for k in NOISES.values() for cls in k.classes()}
    for cls in type(layer).__mro__:
        if cls in by_class:
            return by_class[cls]
    return None


def noise_variance(kind, value) -> float:
    r""":math:`s^2` of noise ``kind`` at parameter ``value``; NaN if it is not multiplicative."""
    entry = get(kind)
    return float("nan") if entry.noise_var is None else float(entry.noise_var(value))


def noise_kind(layer) -> str | None:
    """The name of a noise layer's kind (a key of :data:`varshift.noise.NOISES`: ``dropout``,
    ``spatial_dropout``, ``gaussian_dropout``, ``alpha_dropout``, ``gaussian_noise``,
    ``uout``) or ``None`` for any other layer."""
    kind = kind_of(layer)
    return None if kind is None else kind.name


def noise_layers(model) -> list:
    """Every noise layer (:func:`varshift.noise.kind_of` is not ``None``) reachable from ``model`` (nested
    models and custom layers included), depth first."""
    return [layer for layer in all_layers(model) if kind_of(layer) is not None]
