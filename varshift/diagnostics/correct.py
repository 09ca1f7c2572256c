r"""Closed-form correction of BN's stored variance for case (a): the seed notebook's "restore".

For a noise layer directly in front of BatchNormalization (case (a)), Eq. 7 relates the
variance BN stored during training to the variance it sees at inference,
:math:`\mathrm{Var}^{Train} = (c^2 + v)/p - c^2`. Dropout does not move the mean, so the stored
moving mean estimates :math:`c`, and inverting Eq. 7 gives
(:func:`varshift.theory.restore_moving_variance`)

.. math::
    v = p\,(c^2 + \mathrm{Var}^{Train}) - c^2 .

**Limits, honestly.** This fixes only the variance BN divides by at inference. BN's
:math:`\gamma` and :math:`\beta`, and every later layer, were trained on activations normalised
by the *shifted* variance, so the corrected model is not the model one would have trained
without the shift, and its predictions can stay off (the seed notebook's toy model predicts
about 1.1 instead of 1 before, and is still off after). It assumes Eq. 7's model: independent
noise, statistics converged, and the Keras :math:`(m-1)/m` batch-variance bias either removed
(pass the training ``batch_size``) or ignored (the seed's formula). Cases (b)
and deeper have no such inverse (they depend on correlations); use
:func:`varshift.recalibrate_bn`, which measures instead of assuming and needs data.
"""

from __future__ import annotations

import numpy as np

from varshift import _validate, noise, theory
from varshift._graph import shared_bn_layers
from varshift._keras import to_numpy
from varshift._validate import check_positive_int
from varshift.bnstats import values_per_channel
from varshift.contracts import MODEL, Boolean, Integer, Optional, contract
from varshift.diagnostics.audit import audit_result

__all__ = ["correct_direct"]

# layers that may sit between the noise and BN without breaking Eq. 7. "any": they commute
# with any scalar factor (linear, or they only move values around); "non_negative": they
# commute only with a factor a >= 0 (relu(a x) = a relu(x) needs a >= 0)
_TRANSPARENT = {"Reshape": "any", "Flatten": "any", "Permute": "any", "Identity": "any",
                "Cropping1D": "any", "Cropping2D": "any", "Cropping3D": "any",
                "ReLU": "non_negative", "LeakyReLU": "non_negative"}
_HOMOGENEOUS_ACTIVATIONS = {"linear": "any", "relu": "non_negative",
                            "leaky_relu": "non_negative"}
# noise kind -> whether its multiplicative factor is never negative, given its parameter:
# Bernoulli dropout's is 0 or 1/p, Uout's 1 + r with r ~ U(-beta, beta) (>= 0 for beta <= 1);
# Gaussian dropout's N(1, rate / (1 - rate)) is negative with probability Phi(-1 / sigma)
_NON_NEGATIVE_FACTOR = {"dropout": lambda value: True, "spatial_dropout": lambda value: True,
                        "uout": lambda beta: beta <= 1.0,
                        "gaussian_dropout": lambda rate: rate == 0.0}


def _transparency(layer):
    """``"any"``, ``"non_negative"`` (see :data:`_TRANSPARENT`) or ``None`` (changes Eq. 7)."""
    name = type(layer).__name__
    if name in ("ReLU", "LeakyReLU"):
        # a cap or a threshold is not homogeneous: relu6(a x) != a relu6(x) even for a >= 0
        if getattr(layer, "max_value", None) is not None or \
                float(getattr(layer, "threshold", 0.0) or 0.0) != 0.0:
            return None
        return "non_negative"
    if name in _TRANSPARENT:
        return _TRANSPARENT[name]
    if name == "Activation":
        act = getattr(layer.activation, "__name__", str(layer.activation))
        return _HOMOGENEOUS_ACTIVATIONS.get(act)
    return None


def _negative_factor_probability(kind, value):
    """P(factor < 0) of a Gaussian dropout factor N(1, rate / (1 - rate)), for the message."""
    from math import erfc, sqrt

    if kind != "gaussian_dropout" or value <= 0:
        return None
    sigma = sqrt(value / (1.0 - value))
    return 0.5 * erfc(1.0 / (sigma * sqrt(2.0)))


@contract(model=MODEL, inplace=Boolean(), batch_size=Optional(Integer(2)))
def correct_direct(model, *, inplace=True, batch_size=None):
    r"""Apply Eq. 7's inverse to the moving variance of every BN layer fed by noise in case (a).

    For each BN layer whose only noise is directly in front of it (possibly through reshapes or
    ReLU, which commute with the noise), with retain probability :math:`p`:

    .. math::
        \text{moving\_var} \leftarrow p\,(\text{moving\_mean}^2 + \text{moving\_var})
                                      - \text{moving\_mean}^2,

    per channel. A layer where the result would not be a finite variance > 0 in some channel
    (Eq. 7 cannot hold: e.g. a second call on an already corrected model, or stored mean 5,
    variance 1 at rate 0.5) is skipped with that reason, as is a layer whose stored
    statistics are not finite; a variance of 0 is never written. Dropout and spatial dropout
    use :math:`p = 1-\text{rate}`;
    Gaussian dropout and Uout use the :math:`p` of equal noise variance
    (:math:`1-\text{rate}`, and :math:`3/(3+\beta^2)`, :func:`varshift.theory.uout_matched_rate`);
    several noise layers in a row multiply their factors. Everything else is left alone and
    reported with the reason: case (b)/deeper pairs, paths through a merge (``Add``, ...) or
    pooling layer, alpha dropout and Gaussian noise (not multiplicative), paths through
    other layers (e.g. ``tanh``, a capped ``ReLU``), shared BN layers (called more than once
    per forward pass: the stored statistics mix the calls), and a ReLU behind a noise whose
    factor can be negative. The ReLU is transparent only because
    :math:`\mathrm{relu}(a x) = a\,\mathrm{relu}(x)` for :math:`a \ge 0`: true of Bernoulli
    and spatial dropout (factor 0 or :math:`1/p`) and of Uout with :math:`\beta \le 1`
    (factor in :math:`[1-\beta, 1+\beta]`), not of Gaussian dropout, whose factor
    :math:`N(1, \text{rate}/(1-\text{rate}))` is negative 16% of the time at rate 0.5.

    This corrects the divisor only, not gamma/beta learned under the shift (see the module
    notes): for a real repair measure with :func:`varshift.recalibrate_bn`.

    Args:
        model: a Keras model; no data needed.
        inplace: change ``model``'s BN layers (default); ``False`` is a dry run that only
            reports what would change.
        batch_size: the training batch size :math:`B`, if known. Keras stores the average of
            *biased* batch variances, :math:`\frac{m-1}{m}\mathrm{Var}^{Train}` with
            :math:`m` the values per channel and batch: :math:`m = B` on a Dense BN,
            :math:`m = B \cdot H \cdot W` on a 2-D convolutional BN
            (:func:`varshift.bnstats.values_per_channel`); with ``batch_size`` the stored
            variance is first divided by :math:`\frac{m-1}{m}`.
            Without it (the seed notebook's formula) the bias is amplified by the inverse when
            the mean is large: for :math:`c = 5, v = 4`, rate 0.5, :math:`m = 32` the result
            is about 3.5 instead of 4.

    Returns:
        A ``pandas.DataFrame``, one row per BN layer with noise upstream: ``bn_layer``,
        ``noise_layers``, ``rate`` (the effective drop ratio used, NaN if skipped), ``action``
        (``"corrected"``, ``"would correct"`` in a dry run, or ``"skipped"``), ``reason``,
        ``values_per_channel`` (:math:`m`, None without ``batch_size``),
        ``moving_var_before``, ``moving_var_after`` (channel means) and ``moving_mean``.

    Example:
        >>> from varshift.models import dropout_bn_model
        >>> correct_direct(dropout_bn_model(5, rate=0.5))["action"].tolist()
        ['corrected']
    """
    _validate.keras_model(model, known_inputs=True)
    import pandas as pd

    inplace = _validate.check_bool("inplace", inplace)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size, minimum=2)
    result = audit_result(model)
    pairs = result.frame
    shared = shared_bn_layers(model) if len(pairs) else set()
    rows = []
    for _, group in pairs.groupby("bn_path", sort=False):
        routes = [result.routes[k] for k in group.index]
        bn = routes[0][-1]
        m = (values_per_channel(bn, result.bn_inputs[id(bn)], batch_size)
             if batch_size is not None else None)
        rows.append(_correct_one(bn, group, routes, m, inplace, bn.name in shared))
    df = pd.DataFrame(rows, columns=["bn_layer", "noise_layers", "rate", "action", "reason",
                                     "values_per_channel", "moving_var_before",
                                     "moving_var_after", "moving_mean"])
    df.attrs["message"] = pairs.attrs.get("message", "")
    return df


def _skip_reasons(group, routes):
    reasons = []
    weight_cases = sorted(set(group["case"]) & {"b", "deeper"})
    if weight_cases:
        reasons.append(f"noise reaches BN through a weight layer (case {'/'.join(weight_cases)})"
                       ": Eq. 7 has no inverse there")
    for kind, what in (("merge", "a merge layer"), ("pool", "a pooling layer")):
        through = sorted(set(group.loc[group["case"] == kind, "through"]))
        if through:
            reasons.append(f"noise reaches BN through {what} ({', '.join(through)}): "
                           "Eq. 7 does not hold there")
    bad_kind = sorted(k for k in set(group["noise_kind"]) if not noise.get(k).multiplicative)
    if bad_kind:
        reasons.append(f"{', '.join(bad_kind)} is not multiplicative noise")
    noise_ids = {id(route[0]) for route in routes}
    blocking = sorted({layer.name for route in routes for layer in route[1:-1]
                       if id(layer) not in noise_ids and _transparency(layer) is None})
    if blocking and not (set(group["case"]) & {"merge", "pool"}):
        reasons.append(f"layer(s) {', '.join(blocking)} between noise and BN change Eq. 7")
    reasons += _sign_reasons(group, routes, noise_ids)
    return reasons


def _sign_reasons(group, routes, noise_ids):
    """A ReLU between a noise whose factor can be negative and BN: no closed form."""
    reasons = []
    for (_, row), route in zip(group.iterrows(), routes, strict=True):
        kind, value = row["noise_kind"], float(row["param_value"])
        if kind not in _NON_NEGATIVE_FACTOR or _NON_NEGATIVE_FACTOR[kind](value):
            continue
        relus = [layer.name for layer in route[1:-1] if id(layer) not in noise_ids
                 and _transparency(layer) == "non_negative"]
        if relus:
            prob = _negative_factor_probability(kind, value)
            odds = f" ({100 * prob:.1f}% of the time at {row['param']}={value:g})" \
                if prob is not None else ""
            reasons.append(
                f"{row['noise_layer']} ({kind}) reaches BN through {', '.join(relus)}: the "
                f"ReLU commutes with the noise only if its factor is never negative, and "
                f"this one is negative{odds}; no closed form, measure with recalibrate_bn")
    return reasons


def _correct_one(bn, group, routes, m, inplace, shared=False):
    """Correct (or skip, with the reason) one BN layer fed by the noise layers of ``group``."""
    mean = to_numpy(bn.moving_mean).astype("float64")
    var = to_numpy(bn.moving_variance).astype("float64")
    row = {"bn_layer": bn.name, "noise_layers": ", ".join(group["noise_layer"]),
           "rate": float("nan"), "action": "skipped", "reason": "",
           "values_per_channel": m, "moving_var_before": float(var.mean()),
           "moving_var_after": float(var.mean()), "moving_mean": float(mean.mean())}
    reasons = _skip_reasons(group, routes)
    if shared:
        reasons.insert(0, "shared BN layer (called more than once per forward pass): its "
                          "stored statistics mix the inputs of every call, so Eq. 7 has no "
                          "inverse there; left untouched")
    if reasons:
        row["reason"] = "; ".join(reasons)
        return row
    # independent factors multiply: 1 + s^2 = prod(1 + s_i^2); p = 1 / (1 + s^2)
    second_moment = float(np.prod(1.0 + group["noise_var"].to_numpy()))
    rate = 1.0 - 1.0 / second_moment
    unbias = 1.0 if m is None else m / (m - 1.0)  # Keras stored (m-1)/m of the variance
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var > 0).all()):
        row["reason"] = ("stored statistics are not a finite mean and a finite variance > 0; "
                         "left untouched (recalibrate_bn re-estimates them from data)")
        return row
    with np.errstate(over="ignore", invalid="ignore"):
        exact = (1.0 - rate) * (mean * mean + var * unbias) - mean * mean  # Eq. 7 inverted
    bad = ~np.isfinite(exact) | ~(exact.astype(np.float32) > 0)
    if bad.any():
        k = int(np.argmax(bad))
        row["rate"] = rate
        row["reason"] = (
            f"Eq. 7 cannot hold: inverting it at rate {rate:g} gives a variance <= 0 in "
            f"{int(bad.sum())} of {bad.size} channel(s) (channel {k}: stored mean "
            f"{mean[k]:.6g}, variance {var[k]:.6g}, so p (mean^2 + var) - mean^2 = "
            f"{exact[k]:.6g}); the stored variance is smaller than this noise makes it (already "
            "corrected, or not trained with it); left untouched")
        return row
    restored = theory.restore_moving_variance(mean, var * unbias, rate)
    if inplace:
        bn.moving_variance.assign(restored.astype(bn.moving_variance.dtype))
    row.update(rate=rate, action="corrected" if inplace else "would correct",
               reason="case (a), Eq. 7 inverted", moving_var_after=float(restored.mean()))
    return row
