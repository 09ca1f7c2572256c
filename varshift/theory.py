r"""Closed-form variance shift: the paper's Eq. 7, 8, 13, 14 and 15, in numpy.

Notation (Li, Chen, Hu, Yang, arXiv:1801.05134, Sec. 3). A unit :math:`x` has mean
:math:`c = E[x]` and variance :math:`v = \mathrm{Var}[x]`. Dropout keeps a unit with
probability :math:`p` and, being *inverted* dropout, scales the kept units by :math:`1/p`
during training; at inference it is the identity. The public functions take Keras' drop
ratio ``rate``; the retain probability :math:`p = 1 - \text{rate}` appears only inside the
formulas below, never as an argument.

Every function broadcasts over numpy arrays, so a whole grid of (mean, var, rate) values is one
call. Invalid input raises an error naming the argument and the value received.

The variance shift is the ratio :math:`\mathrm{Var}^{Test} / \mathrm{Var}^{Train}` of the
variance that a following BatchNormalization layer sees at inference to the variance it stored
during training. A ratio below 1 means BN divides by too large a standard deviation at test
time, shrinking the normalised activations by :math:`\sqrt{\text{ratio}}`.
"""

from __future__ import annotations

import numpy as np

from varshift._validate import (
    as_float_array,
    check_beta,
    check_in_range,
    check_positive_int,
    check_rate,
    check_var,
)
from varshift._validate import broadcastable as _broadcastable
from varshift.contracts import BETA, FINITE, RATE, VARIANCE, Array, Integer, Optional, Real, contract
from varshift.noise import NOISES

__all__ = [
    "variance_ratio",
    "dropout_train_variance",
    "shift_ratio",
    "shift_ratio_linear",
    "cos2_theta",
    "fan_in",
    "uout_train_variance",
    "uout_shift_ratio",
    "gaussian_dropout_train_variance",
    "gaussian_dropout_shift_ratio",
    "noise_train_variance",
    "restore_moving_variance",
    "keras_expected_moving_variance",
    "uout_matched_rate",
]


def _times_square(k, c):
    r""":math:`k\,c^2` without overflow warnings or :math:`0 \cdot \infty`.

    For :math:`|c|` beyond :math:`10^{154}` the square exceeds float64 and becomes ``inf``
    (the true value is that large: every ratio built on it is then 0, not NaN); a zero factor
    gives 0 whatever :math:`c`.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(k == 0, 0.0, k * (c * c))


@contract(var_test=VARIANCE, var_train=VARIANCE)
def variance_ratio(var_test, var_train):
    r"""The variance shift :math:`\mathrm{Var}^{Test} / \mathrm{Var}^{Train}`, elementwise.

    A constant unit (:math:`0/0`) has no shift: its ratio is 1. Every ``*shift_ratio`` function
    of this module ends with this division.

    Args:
        var_test: the variance at inference.
        var_train: the variance during training.

    Returns:
        The ratio, broadcast over the arguments (a float for scalars).

    Example:
        >>> float(variance_ratio(4.0, 11.25)), float(variance_ratio(0.0, 0.0))
        (0.35555555555555557, 1.0)
    """
    numerator, denominator = np.broadcast_arrays(var_test, var_train)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denominator == 0, 1.0, numerator / np.where(denominator == 0, 1.0, denominator))
    return out[()] if out.ndim == 0 else out


#: the body of :func:`variance_ratio`, for the formulas below: their intermediate training
#: variances may legitimately overflow to infinity (the ratio is then 0)
_variance_ratio = variance_ratio.__wrapped__


@contract(mean=FINITE, var=VARIANCE, noise_var=VARIANCE)
def noise_train_variance(mean, var, noise_var):
    r"""Training-mode variance of :math:`x\,m` for any multiplicative noise with :math:`E[m]=1`.

    With :math:`\mathrm{Var}[m] = s^2` and :math:`m` independent of :math:`x`,

    .. math::
        \mathrm{Var}[x\,m] = E[x^2]\,E[m^2] - c^2 = v + s^2 (c^2 + v).

    Bernoulli inverted dropout has :math:`s^2 = (1-p)/p`, Gaussian dropout :math:`s^2=\sigma^2`
    and Uout :math:`s^2 = \beta^2/3`; all the ``*_train_variance`` functions are this one.

    Args:
        mean: :math:`c`, the unit's mean.
        var: :math:`v \ge 0`, the unit's variance.
        noise_var: :math:`s^2 \ge 0`, the variance of the multiplicative noise.

    Returns:
        The variance during training, broadcast over the arguments.
    """
    c = as_float_array("mean", mean)
    v = check_var(var)
    s2 = check_var(noise_var, "noise_var")
    _broadcastable(mean=c, var=v, noise_var=s2)
    return v + s2 * v + _times_square(s2, c)


@contract(mean=FINITE, var=VARIANCE, rate=RATE)
def dropout_train_variance(mean, var, rate):
    r"""Variance of a unit after inverted Dropout in training mode (Eq. 7).

    .. math::
        \mathrm{Var}^{Train}(X) = \frac{1}{p}\,(c^2 + v) - c^2, \qquad p = 1 - \text{rate}.

    At inference dropout is the identity, so :math:`\mathrm{Var}^{Test}(X) = v`.

    Args:
        mean: :math:`c`, the mean of the unit entering Dropout.
        var: :math:`v \ge 0`, its variance.
        rate: Keras' drop ratio in [0, 1).

    Returns:
        :math:`\mathrm{Var}^{Train}`, broadcast over the arguments.

    Example:
        >>> float(dropout_train_variance(mean=5.0, var=4.0, rate=0.2))
        11.25
    """
    c = as_float_array("mean", mean)
    v = check_var(var)
    p = 1.0 - check_rate(rate)  # retain probability p
    _broadcastable(mean=c, var=v, rate=p)
    c2 = _times_square(1.0, c)
    with np.errstate(invalid="ignore"):  # a square beyond float64: inf - inf, the answer is inf
        return np.where(np.isfinite(c2), (c2 + v) / p - c2, v + _times_square((1 - p) / p, c))[()]  # Eq. 7


@contract(mean=FINITE, var=VARIANCE, rate=RATE)
def shift_ratio(mean, var, rate):
    r"""Variance shift for Dropout directly before BatchNormalization, case (a) (Eq. 8).

    .. math::
        \Delta(p) = \frac{\mathrm{Var}^{Test}}{\mathrm{Var}^{Train}}
                  = \frac{v}{\frac{1}{p}(c^2+v) - c^2}
                  = \frac{p\,v}{v + (1-p)\,c^2}.

    With :math:`c = 0` the shift equals :math:`p`. A constant unit (:math:`v = c = 0`) has
    ratio 1.

    Args:
        mean: :math:`c`.
        var: :math:`v \ge 0`.
        rate: Keras' drop ratio in [0, 1).

    Returns:
        The ratio in (0, 1], broadcast over the arguments.

    Example:
        >>> round(float(shift_ratio(mean=5.0, var=4.0, rate=0.2)), 5)
        0.35556
    """
    c = as_float_array("mean", mean)
    v = check_var(var)
    p = 1.0 - check_rate(rate)  # retain probability p
    _broadcastable(mean=c, var=v, rate=p)
    # Eq. 8 as p v / (v + (1-p) c^2): finite for any finite input (no inf - inf)
    return _variance_ratio(p * v, v + _times_square(1.0 - p, c))


@contract(mean=FINITE, var=VARIANCE, rate=RATE,
          rho=Real(-1.0, 1.0, array=True, meaning="a correlation"), d_cos2=VARIANCE)
def shift_ratio_linear(mean, var, rate, rho, d_cos2):
    r"""Variance shift for Dropout -> linear layer -> BatchNormalization, case (b) (Eq. 14).

    A Dense or convolution with weights :math:`w \in \mathbb{R}^d` follows the dropout. Every
    input has mean :math:`c`, variance :math:`v` and all pairs share correlation :math:`\rho`;
    after dropout their correlation is shrunk to :math:`\Delta(p)\rho` (Eq. 11). Writing
    :math:`\cos^2\theta` for Eq. 13 (see :func:`cos2_theta`), Eq. 9-14 give

    .. math::
        \Delta(p, d) = \frac{v + v\rho\,(d\cos^2\theta - 1)}
                            {\frac{1}{p}(c^2+v) - c^2 + v\rho\,(d\cos^2\theta - 1)}.

    It tends to 1 as :math:`p \to 1` or :math:`d\cos^2\theta \to \infty` (a wide layer).
    Caveat: with :math:`\rho = 0` it is exactly case (a) and does not depend on :math:`d`; the
    paper reports no measured :math:`\rho`.

    Args:
        mean: :math:`c`, the inputs' common mean.
        var: :math:`v \ge 0`, their common variance.
        rate: Keras' drop ratio in [0, 1).
        rho: :math:`\rho \in [-1, 1]`, the inputs' common pairwise correlation.
        d_cos2: :math:`d\cos^2\theta \ge 0`, fan-in times Eq. 13.

    Returns:
        The ratio, broadcast over the arguments.

    Example:
        >>> round(float(shift_ratio_linear(0.0, 1.0, 0.5, rho=0.5, d_cos2=10.0)), 6)
        0.846154
    """
    v = check_var(var)
    r = check_in_range("rho", rho, -1.0, 1.0, meaning="a correlation")
    dc = check_var(d_cos2, "d_cos2")
    _broadcastable(mean=mean, var=v, rate=rate, rho=r, d_cos2=dc)
    correlated = v * r * (dc - 1.0)  # v rho (d cos^2 theta - 1), the cross terms of Eq. 9-12
    return _variance_ratio(v + correlated, dropout_train_variance(mean, var, rate) + correlated)  # Eq. 14


@contract(kernel=Array((2, 3, 4, 5), what="a Dense or Conv kernel", boolean=False))
def fan_in(kernel) -> int:
    """The number of inputs :math:`d` of one output unit of a Dense or Conv kernel.

    Keras stores a Dense kernel as ``(d, units)`` and an N-D convolution kernel as
    ``(*kernel_size, in_channels, filters)``, so :math:`d` is the product of every axis but the
    last (channels x kernel height x kernel width for a 2-D convolution).
    """
    w = np.asarray(kernel)
    if w.ndim < 2:
        raise ValueError(
            "Argument `kernel` must be a Dense kernel (d, units) or a Conv kernel "
            f"(*kernel_size, in_channels, filters); received an array of shape {w.shape}."
        )
    return int(np.prod(w.shape[:-1]))


@contract(kernel=Array((2, 3, 4, 5), what="a Dense or Conv kernel", boolean=False))
def cos2_theta(kernel):
    r"""Eq. 13's :math:`\cos^2\theta` for each output unit of a Dense or Conv kernel.

    :math:`\theta` is the angle between a unit's weight vector :math:`w \in \mathbb{R}^d` and
    the all-ones vector :math:`\mathbf{1}`:

    .. math::
        \cos^2\theta = \frac{(\mathbf{1}^\top w)^2}{\lVert\mathbf{1}\rVert^2 \lVert w\rVert^2}
                     = \frac{(\sum_i w_i)^2}{d\,\sum_i w_i^2}.

    Args:
        kernel: a Keras kernel, ``(d, units)`` for Dense or ``(*kernel_size, in_channels,
            filters)`` for a convolution; :math:`d` = :func:`fan_in` ``(kernel)``.

    Returns:
        An array of shape ``(units,)`` with values in [0, 1]; an all-zero weight vector gives
        NaN (its angle is undefined).

    Example:
        >>> cos2_theta(np.array([[1.0], [1.0]])).tolist()
        [1.0]
    """
    w = as_float_array("kernel", kernel)
    d = fan_in(w)
    w = w.reshape(d, w.shape[-1])  # one column per output unit
    sum_w = w.sum(axis=0)
    sum_w2 = (w**2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sum_w**2 / (d * sum_w2)  # Eq. 13


@contract(mean=FINITE, var=VARIANCE, beta=BETA)
def uout_train_variance(mean, var, beta):
    r"""Training-mode variance after Uout, :math:`x + x r` with :math:`r \sim U(-\beta, \beta)`.

    The noise factor :math:`m = 1 + r` has :math:`E[m]=1` and :math:`\mathrm{Var}[m]=\beta^2/3`,
    so (Sec. 5)

    .. math::
        \mathrm{Var}^{Train} = v + \frac{\beta^2}{3}(c^2 + v).

    Args:
        mean: :math:`c`.
        var: :math:`v \ge 0`.
        beta: :math:`\beta \in [0, 1]`.
    """
    b = check_beta(beta)
    _broadcastable(mean=mean, var=var, beta=b)
    return noise_train_variance(mean, var, NOISES["uout"].noise_var(b))  # beta^2 / 3


@contract(mean=FINITE, var=VARIANCE, beta=BETA)
def uout_shift_ratio(mean, var, beta):
    r"""Variance shift of Uout before BatchNormalization, for any mean (Eq. 15).

    .. math::
        \Delta(\beta) = \frac{3v}{3v + \beta^2 (c^2 + v)},

    which for :math:`c = 0` is the paper's Eq. 15, :math:`3 / (3 + \beta^2)`.

    Example:
        >>> round(float(uout_shift_ratio(0.0, 1.0, 0.5)), 6)
        0.923077
    """
    v = check_var(var)
    return _variance_ratio(v, uout_train_variance(mean, var, beta))  # Eq. 15


@contract(mean=FINITE, var=VARIANCE, rate=RATE)
def gaussian_dropout_train_variance(mean, var, rate):
    r"""Training-mode variance after Keras' ``GaussianDropout(rate)``.

    Keras multiplies by :math:`m \sim N(1, \sigma^2)` with
    :math:`\sigma^2 = \text{rate} / (1 - \text{rate})`, which is the variance of Bernoulli
    inverted dropout's factor at the same rate, so this equals :func:`dropout_train_variance`:

    .. math::
        \mathrm{Var}^{Train} = v + \frac{\text{rate}}{1-\text{rate}}(c^2 + v).
    """
    r = check_rate(rate)
    _broadcastable(mean=mean, var=var, rate=r)
    return noise_train_variance(mean, var, NOISES["gaussian_dropout"].noise_var(r))  # r / (1-r)


@contract(mean=FINITE, var=VARIANCE, rate=RATE)
def gaussian_dropout_shift_ratio(mean, var, rate):
    r"""Variance shift of Keras' ``GaussianDropout(rate)`` before BatchNormalization.

    .. math::
        \Delta = \frac{v}{v + \frac{\text{rate}}{1-\text{rate}}(c^2+v)}.
    """
    v = check_var(var)
    return _variance_ratio(v, gaussian_dropout_train_variance(mean, var, rate))


@contract(beta=BETA)
def uout_matched_rate(beta):
    r"""The dropout ``rate`` whose training variance equals Uout(:math:`\beta`)'s.

    Matching :math:`(1-p)/p = \beta^2/3` gives :math:`p = 3/(3+\beta^2)`, i.e.
    ``rate`` :math:`= \beta^2 / (3 + \beta^2)`. Useful for comparing the two at equal noise.
    """
    b = check_beta(beta)
    return b**2 / (3.0 + b**2)


@contract(moving_mean=FINITE, moving_var=VARIANCE, rate=RATE)
def restore_moving_variance(moving_mean, moving_var, rate):
    r"""Undo Eq. 7 on BatchNormalization's stored statistics (the seed notebook's "restore").

    Dropout leaves the mean unchanged, so the stored moving mean estimates :math:`c`; solving
    Eq. 7 for :math:`v` gives

    .. math::
        v = p\,(c^2 + \mathrm{Var}^{Train}) - c^2, \qquad p = 1 - \text{rate}.

    This corrects the variance BN divides by at inference, but not :math:`\gamma` and
    :math:`\beta`, which were learned under the shifted variance; predictions stay off. Only
    valid for case (a), Dropout directly before BN.

    Args:
        moving_mean: the stored moving mean (:math:`c`).
        moving_var: the stored moving variance (:math:`\mathrm{Var}^{Train}`).
        rate: the drop ratio of the Dropout in front of the BN layer.

    Returns:
        The restored variance, clipped at 0 (a stored value below :math:`(1-p)c^2/p`, possible
        only through estimation noise, would otherwise turn negative).

    Example:
        >>> float(restore_moving_variance(5.0, 11.25, 0.2))
        4.0
    """
    c = as_float_array("moving_mean", moving_mean)
    var_train = check_var(moving_var, "moving_var")
    p = 1.0 - check_rate(rate)
    _broadcastable(moving_mean=c, moving_var=var_train, rate=p)
    c2 = _times_square(1.0, c)
    with np.errstate(invalid="ignore"):  # a square beyond float64: p V - (1-p) c^2, no inf - inf
        v = np.where(np.isfinite(c2), p * (c2 + var_train) - c2,
                     p * var_train - _times_square(1.0 - p, c))
    return np.maximum(v, 0.0)[()]


@contract(population_var=VARIANCE, batch_size=Integer(2), steps=Optional(Integer(0)),
          momentum=Real(0.0, 1.0, closed="left"), initial=VARIANCE, positions=Integer(1))
def keras_expected_moving_variance(population_var, batch_size, *, steps=None, momentum=0.99,
                                   initial=1.0, positions=1):
    r"""The moving variance Keras' BatchNormalization is expected to store.

    Keras 3 updates ``moving_var = momentum * moving_var + (1 - momentum) * batch_var`` with the
    *biased* batch variance (divide by :math:`m`, the values per channel in a batch: the batch
    size for a Dense BN, batch x H x W for a convolutional one), whose expectation for
    :math:`m` i.i.d. values is :math:`\frac{m-1}{m}` times the population variance. (Positions
    of one image are correlated, so on a conv BN the true factor lies between the
    ``positions=1`` and the ``positions=H*W`` values.) After ``steps`` updates from
    ``initial`` (1.0 in Keras) the expectation is

    .. math::
        E[\text{moving}] = \mu^{n}\,\text{initial} + (1 - \mu^{n})\,\frac{m-1}{m}\,\sigma^2 .

    (PyTorch, the paper's framework, stores the unbiased estimate instead.)

    Args:
        population_var: :math:`\sigma^2`, e.g. :func:`dropout_train_variance`.
        batch_size: the training batch size :math:`B`.
        steps: :math:`n`, the number of training steps; ``None`` means converged.
        momentum: :math:`\mu`, Keras' default 0.99.
        initial: the moving variance before training.
        positions: values per sample and channel (H x W on a 2-D conv BN); :math:`m = B`
            times this.

    Example:
        >>> float(keras_expected_moving_variance(11.25, batch_size=32))
        10.8984375
    """
    sigma2 = check_var(population_var, "population_var")
    m = check_positive_int("batch_size", batch_size, minimum=2)
    mu = float(check_in_range("momentum", momentum, 0.0, 1.0, high_open=True))  # even if unused
    check_var(initial, "initial")
    m *= check_positive_int("positions", positions)
    converged = (m - 1) / m * sigma2
    if steps is None:
        return converged
    n = check_positive_int("steps", steps, minimum=0)
    return mu**n * initial + (1.0 - mu**n) * converged
