r"""Measure the variance shift of every BatchNormalization layer of a trained model.

This is the statistic of the paper's Fig. 1 (bottom) and Fig. 4: for BN layer :math:`i`,

.. math::
    \text{ratio}_i = \max\!\left(\frac{\text{real\_var}_i}{\text{moving\_var}_i},
                                 \frac{\text{moving\_var}_i}{\text{real\_var}_i}\right),

where ``moving_var`` is the channel mean of the stored moving variance (what BN divides by at
inference) and ``real_var`` the channel mean of the variance of the layer's *input* when the
whole model runs in inference mode (noise layers off, every BN using its stored statistics)
over the data.

**Estimator.** ``real_var`` is an exact average over one pass of the data, not a moving
average: per channel, the *biased* (population) variance :math:`\frac1N\sum_j (x_j-\bar x)^2`
over all :math:`N` values of that channel in the pass (every sample, and every spatial position
for convolutions), the same "divide by the count" convention as Keras' BatchNormalization, whose
moving variance is an average of biased batch variances.

Numerics: in the same forward pass, per sample and channel, the input is summed in float32 over
the sample (e.g. the 1024 positions of a 32x32 map: short sums): on TensorFlow its values and
their squares, and again about the sample's mean wherever that would lose precision (a mean far
from 0 for the sample's spread); on JAX its deviations from the batch's first sample's mean and
their squares, which lets XLA read the input once; elsewhere its deviations from the sample's
mean and their squares. On the host, in float64, each sample's mean and sum of squared
deviations are pooled across the batch, and batches are merged with Chan et al.'s parallel
update of (count, mean, sum of squared deviations) in float64. So a channel whose mean is large
against its spread (say 5 +- 0.01, or 1000 +- 1) does not cancel. Measured relative error of
the variance against numpy in float64: below 1e-6 (float32 activations themselves carry about
6e-8).

Keras stores the EMA of biased *batch* variances, which converges to :math:`\frac{m-1}{m}` times
the population variance, where :math:`m` is the number of values one channel averages per
batch: the batch size for a Dense BN, batch x H x W for a convolutional one
(:func:`varshift.bnstats.values_per_channel`). A perfectly unshifted Dense BN therefore reads
``ratio`` :math:`\approx m/(m-1)` (1.03 at batch 32), not exactly 1; on a conv BN the values
within one image are correlated, so the effective count lies between the batch size and
batch x H x W and the ratio between the two predictions. See
:func:`varshift.theory.keras_expected_moving_variance`.

Two names, two quantities: ``shift`` is :math:`\Delta = \mathrm{Var}^{Test}/\mathrm{Var}^{Train}`
(below 1 behind dropout; Eq. 8), ``ratio`` the paper's *shift statistic*
:math:`\max(\text{real}/\text{moving}, \text{moving}/\text{real}) \ge 1`.
"""

from __future__ import annotations

import numpy as np

from varshift import _validate
from varshift._graph import bn_layers, layer_paths
from varshift._keras import to_numpy
from varshift.bnstats import collect_moments, unsound_channels
from varshift.contracts import COUNT, MODEL, Boolean, Data, Optional, contract

__all__ = ["measure_shift"]


def _ratio_both_ways(real, moving):
    """``max(real/moving, moving/real)``; NaN when either is 0 or their signs differ."""
    real, moving = float(real), float(moving)
    if real == 0 or moving == 0 or (real > 0) != (moving > 0):
        return float("nan")
    r = real / moving
    return max(r, 1.0 / r)


def _stored_statistics_sound(model):
    """One line, before any pass, for a BN layer whose stored statistics are not a finite
    mean and a finite, non-negative variance (no ratio can be formed against them): the rule
    of :func:`varshift.bnstats.unsound_channels` for statistics a model holds, under which a
    variance of 0 (a channel that was constant in training) is measured, not refused."""
    for layer in bn_layers(model):
        mean = to_numpy(layer.moving_mean).astype("float64").reshape(-1)
        var = to_numpy(layer.moving_variance).astype("float64").reshape(-1)
        bad = unsound_channels(mean, var, zero_variance=True)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                f"Argument `model`: BatchNormalization layer {layer.name!r} stores statistics "
                f"that are not a finite mean and a finite variance >= 0 in {int(bad.sum())} of "
                f"{bad.size} channel(s) (channel {k}: moving_mean {float(mean[k])!r}, "
                f"moving_variance {float(var[k])!r}); no shift can be measured against them (recalibrate_bn "
                "re-estimates them from data).")


@contract(model=MODEL, data=Data(), batch_size=COUNT, per_channel=Boolean(),
          max_samples=Optional(COUNT), progress=Boolean())
def measure_shift(model, data, *, batch_size=256, per_channel=False, max_samples=None,
                  progress=False):
    r"""Per-BN-layer variance shift of a trained model on data: the paper's Fig. 1/4 statistic.

    For each BatchNormalization layer :math:`i`, in graph order:

    .. math::
        \text{ratio}_i = \max\!\left(\frac{\overline{\text{real\_var}}_i}
                                          {\overline{\text{moving\_var}}_i},
                                     \frac{\overline{\text{moving\_var}}_i}
                                          {\overline{\text{real\_var}}_i}\right)

    with bars denoting the mean over channels. ``moving_var`` is BN's stored moving variance
    (Keras: EMA of the training-mode, dropout-on, biased batch variance: Eq. 7's
    :math:`\mathrm{Var}^{Train}`); ``real_var`` is the variance of the same layer's input with
    the **whole model in inference mode** over ``data`` (Eq. 8's :math:`\mathrm{Var}^{Test}`).

    Estimator: one exact pass, per channel the biased variance (divide by the number :math:`N`
    of values of the channel: samples times spatial positions), matching how Keras computes the
    batch variances it averages into ``moving_variance``. Batches are merged with Chan's
    parallel formula in float64 (:mod:`varshift.bnstats`). All BN layers are measured in one
    forward pass per batch (their inputs are recorded while the model is traced once); nested
    models and custom layers that contain BN layers are handled. Any NaN or infinity in
    ``data`` raises a ``ValueError`` naming the first bad sample; so do finite values beyond
    float32's range, input arrays of different lengths, an endless dataset without
    ``max_samples``, and a BN layer whose stored statistics are not finite (or negative).

    Args:
        model: a trained Keras model with BatchNormalization layers.
        data: the inputs: a numpy array (``(x, y)`` tuples are accepted, labels ignored), a
            ``tf.data.Dataset`` yielding ``x``, ``(x, y)`` or ``(x, y, w)`` (batched, or single
            samples, which are then batched) or a ``keras.utils.PyDataset``. Include the
            training augmentation in it to reproduce the paper exactly.
        batch_size: batch size for numpy input (the result does not depend on it).
        per_channel: add columns ``*_channels`` holding the per-channel numpy arrays.
        max_samples: read at most this many samples of ``data`` (``None``: all).
        progress: show a progress bar on stderr.

    Returns:
        A ``pandas.DataFrame`` with one row per BN layer: ``index`` (1-based), ``bn_layer``,
        ``path`` (``outer/inner/name``), ``channels``, ``count`` (values per channel),
        ``moving_mean``, ``real_mean``, ``mean_ratio`` (max of both ratios of the channel means,
        NaN if their signs differ or one is 0), ``mean_shift_std`` (channel mean of
        :math:`|\text{real\_mean}-\text{moving\_mean}| / \sqrt{\text{moving\_var}+\epsilon}`),
        ``moving_var``, ``real_var``, ``shift`` (``real_var / moving_var``, the paper's
        :math:`\mathrm{Var}^{Test}/\mathrm{Var}^{Train}`, comparable with
        :func:`varshift.theory.shift_ratio`) and ``ratio``.

    Example: an untrained ``Dropout -> BN`` model stores a moving variance of 1; at inference
    its BN sees the data itself, :math:`N(5, 2^2)`, whose variance is about 4.

        >>> from varshift.models import dropout_bn_model, seed_data
        >>> model, x = dropout_bn_model(5, rate=0.5), seed_data(1000)
        >>> df = measure_shift(model, x)
        >>> df[["bn_layer", "channels", "count", "moving_var"]].values.tolist()
        [['bn', 5, 1000, 1.0]]
        >>> bool(abs(df["real_var"][0] - x.var(axis=0).mean()) < 1e-5), round(float(df["ratio"][0]), 1)
        (True, 4.0)
    """
    data = _validate.model_and_data(model, data, batch_size=batch_size, max_samples=max_samples)
    per_channel = _validate.check_bool("per_channel", per_channel)
    import pandas as pd

    _stored_statistics_sound(model)
    paths = layer_paths(model)
    rows = []
    measured = collect_moments(model, data, bn="moving", noise=False, batch_size=batch_size,
                               max_samples=max_samples, progress=progress)
    for i, m in enumerate(measured, 1):
        layer, n, mean, var = m.layer, m.count, m.mean, m.var
        moving_mean = to_numpy(layer.moving_mean).astype("float64").reshape(-1)
        moving_var = to_numpy(layer.moving_variance).astype("float64").reshape(-1)
        mm, rm = float(moving_mean.mean()), float(mean.mean())
        mv, rv = float(moving_var.mean()), float(var.mean())
        row = {
            "index": i,
            "bn_layer": layer.name,
            "path": paths.get(id(layer), layer.name),
            "channels": int(mean.size),
            "count": int(round(n)),
            "moving_mean": mm,
            "real_mean": rm,
            "mean_ratio": _ratio_both_ways(rm, mm),
            "mean_shift_std": float(np.mean(np.abs(mean - moving_mean)
                                            / np.sqrt(moving_var + layer.epsilon))),
            "moving_var": mv,
            "real_var": rv,
            "shift": rv / mv if mv > 0 else float("nan"),
            "ratio": _ratio_both_ways(rv, mv),
        }
        if per_channel:
            row.update({"moving_mean_channels": moving_mean, "real_mean_channels": mean,
                        "moving_var_channels": moving_var, "real_var_channels": var})
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["estimator"] = ("exact one-pass average, biased variance (divide by N), "
                             "whole model in inference mode")
    return df
