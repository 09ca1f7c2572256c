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

from varshift import _validate, theory
from varshift._graph import all_bn_layers, layer_paths
from varshift._keras import to_numpy
from varshift._validate import check_positive_int
from varshift.diagnostics.audit import audit, trace_layer_graph

__all__ = ["correct_direct"]

# layers that may sit between the noise and BN without breaking Eq. 7: they act on each value
# independently and commute with a non-negative multiplicative factor (relu(a x) = a relu(x)
# for a >= 0), or only move values around
_TRANSPARENT = ("Reshape", "Flatten", "Permute", "ReLU", "Identity", "Cropping1D", "Cropping2D",
                "Cropping3D")
_HOMOGENEOUS_ACTIVATIONS = ("relu", "linear")


def _transparent(layer):
    name = type(layer).__name__
    if name in _TRANSPARENT:
        return True
    if name == "Activation":
        act = getattr(layer.activation, "__name__", str(layer.activation))
        return act in _HOMOGENEOUS_ACTIVATIONS
    return False


def correct_direct(model, *, inplace=True, batch_size=None):
    r"""Apply Eq. 7's inverse to the moving variance of every BN layer fed by noise in case (a).

    For each BN layer whose only noise is directly in front of it (possibly through reshapes or
    ReLU, which commute with the noise), with retain probability :math:`p`:

    .. math::
        \text{moving\_var} \leftarrow p\,(\text{moving\_mean}^2 + \text{moving\_var})
                                      - \text{moving\_mean}^2,

    per channel (clipped at 0). Dropout and spatial dropout use :math:`p = 1-\text{rate}`;
    Gaussian dropout and Uout use the :math:`p` of equal noise variance
    (:math:`1-\text{rate}`, and :math:`3/(3+\beta^2)`, :func:`varshift.theory.uout_matched_rate`);
    several noise layers in a row multiply their factors. Everything else is left alone and
    reported with the reason: case (b)/deeper pairs, alpha dropout and Gaussian noise (not
    multiplicative), and paths through other layers (e.g. ``Add``, ``tanh``).

    This corrects the divisor only, not gamma/beta learned under the shift (see the module
    notes): for a real repair measure with :func:`varshift.recalibrate_bn`.

    Args:
        model: a Keras model; no data needed.
        inplace: change ``model``'s BN layers (default); ``False`` is a dry run that only
            reports what would change.
        batch_size: the training batch size :math:`m`, if known. Keras stores the average of
            *biased* batch variances, :math:`\frac{m-1}{m}\mathrm{Var}^{Train}`; with
            ``batch_size`` the stored variance is first divided by :math:`\frac{m-1}{m}`.
            Without it (the seed notebook's formula) the bias is amplified by the inverse when
            the mean is large: for :math:`c = 5, v = 4`, rate 0.5, :math:`m = 32` the result
            is about 3.5 instead of 4.

    Returns:
        A ``pandas.DataFrame``, one row per BN layer with noise upstream: ``bn_layer``,
        ``noise_layers``, ``rate`` (the effective drop ratio used, NaN if skipped), ``action``
        (``"corrected"``, ``"would correct"`` in a dry run, or ``"skipped"``), ``reason``,
        ``moving_var_before``, ``moving_var_after`` (channel means) and ``moving_mean``.

    Example:
        >>> from varshift.models import dropout_bn_model
        >>> correct_direct(dropout_bn_model(5, rate=0.5))["action"].tolist()
        ['corrected']
    """
    _validate.keras_model(model, known_inputs=True)
    import pandas as pd

    if not isinstance(inplace, bool):
        raise ValueError(f"Argument `inplace` must be True or False; received inplace={inplace!r}.")
    unbias = 1.0
    if batch_size is not None:
        unbias = check_positive_int("batch_size", batch_size, minimum=2)
        unbias = unbias / (unbias - 1.0)  # m / (m - 1)
    pairs = audit(model)
    paths = layer_paths(model)
    by_path = {paths.get(id(bn), bn.name): bn for bn in all_bn_layers(model)}
    records, _ = trace_layer_graph(model) if len(pairs) else ([], [])
    layer_by_name = {rec.layer.name: rec.layer for rec in records}

    rows = []
    for bn_path, group in pairs.groupby("bn_path", sort=False):
        bn = by_path[bn_path]
        bn_name = bn.name
        mean = to_numpy(bn.moving_mean).astype("float64")
        var = to_numpy(bn.moving_variance).astype("float64")
        row = {"bn_layer": bn_name, "noise_layers": ", ".join(group["noise_layer"]),
               "rate": float("nan"), "action": "skipped", "reason": "",
               "moving_var_before": float(var.mean()), "moving_var_after": float(var.mean()),
               "moving_mean": float(mean.mean())}
        reasons = []
        if (group["case"] != "a").any():
            reasons.append("noise reaches BN through a weight layer (case "
                           + "/".join(sorted(set(group["case"]) - {"a"}))
                           + "): Eq. 7 has no inverse there")
        bad_kind = sorted(set(group["noise_kind"]) & {"alpha_dropout", "gaussian_noise"})
        if bad_kind:
            reasons.append(f"{', '.join(bad_kind)} is not multiplicative noise")
        between = set()
        for route in group["route"]:
            between.update(route.split(" -> ")[1:-1])
        between -= set(group["noise_layer"])
        blocking = sorted(n for n in between
                          if n in layer_by_name and not _transparent(layer_by_name[n]))
        if blocking:
            reasons.append(f"layer(s) {', '.join(blocking)} between noise and BN change Eq. 7")
        if reasons:
            row["reason"] = "; ".join(reasons)
        else:
            # independent factors multiply: 1 + s^2 = prod(1 + s_i^2); p = 1 / (1 + s^2)
            second_moment = float(np.prod(1.0 + group["noise_var"].to_numpy()))
            rate = 1.0 - 1.0 / second_moment
            restored = theory.restore_moving_variance(mean, var * unbias, rate)
            if inplace:
                bn.moving_variance.assign(restored.astype(bn.moving_variance.dtype))
            row.update(rate=rate, action="corrected" if inplace else "would correct",
                       reason="case (a), Eq. 7 inverted", moving_var_after=float(restored.mean()))
        rows.append(row)
    df = pd.DataFrame(rows, columns=["bn_layer", "noise_layers", "rate", "action", "reason",
                                     "moving_var_before", "moving_var_after", "moving_mean"])
    df.attrs["message"] = pairs.attrs.get("message", "")
    return df
