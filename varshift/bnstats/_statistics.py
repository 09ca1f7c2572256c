"""Writing BN statistics: save, check, assign and restore a model's moving mean and variance.

No statistic that is not a finite mean and a finite variance > 0 is ever stored:
:func:`assign_statistics` refuses it, :func:`sound_statistics` keeps the stored value instead.
"""

from __future__ import annotations

import numpy as np

from varshift._keras import to_numpy

__all__ = ["save_statistics", "unsound_channels", "sound_statistics", "assign_statistics",
           "restore_statistics"]


def save_statistics(layers):
    """``[(moving_mean, moving_variance)]`` numpy copies of BN ``layers``' stored statistics."""
    return [(to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy())
            for bn in layers]


def unsound_channels(mean, var, *, zero_variance=False):
    r"""Boolean mask of the channels whose statistics may not be stored: a mean that is not
    finite, or a variance that is zero, negative or not finite (also after rounding to
    float32, the dtype BN stores).

    ``zero_variance=True`` lets a variance of exactly 0 pass: the rule for statistics a model
    already holds and is measured against (:func:`varshift.measure_shift`), where a channel
    whose input was constant in training stores 0 and BN divides by
    :math:`\sqrt{0 + \epsilon}`; nothing varshift writes may be 0.
    """
    mean = np.asarray(mean, np.float64).reshape(-1)
    var = np.asarray(var, np.float64).reshape(-1)
    with np.errstate(over="ignore"):
        var32 = var.astype(np.float32)
        mean32 = mean.astype(np.float32)
    positive = var32 >= 0 if zero_variance else var32 > 0
    return ~np.isfinite(mean32) | ~np.isfinite(var32) | ~positive


def sound_statistics(layers, statistics):
    """``(statistics, skipped)``: per layer the new ``(mean, var)`` where they may be stored and
    the layer's stored values in the other channels (:func:`unsound_channels`: constant input
    gives variance 0); ``skipped`` maps each layer name with such channels to
    ``(channels skipped, channels)``. What :func:`assign_statistics` accepts."""
    out, skipped = [], {}
    for bn, (new_mean, new_var) in zip(layers, statistics, strict=True):
        mean = np.asarray(new_mean, np.float64).reshape(-1)
        var = np.asarray(new_var, np.float64).reshape(-1)
        bad = unsound_channels(mean, var)
        if bad.any():
            old_mean = to_numpy(bn.moving_mean).astype(np.float64).reshape(-1)
            old_var = to_numpy(bn.moving_variance).astype(np.float64).reshape(-1)
            mean, var = np.where(bad, old_mean, mean), np.where(bad, old_var, var)
            skipped[bn.name] = (int(bad.sum()), int(bad.size))
        out.append((mean, var))
    return out, skipped


def assign_statistics(layers, statistics):
    """Write ``[(mean, variance)]`` (per-channel arrays) into BN ``layers``' moving statistics.

    All arrays are converted and checked first, so a shape error or a statistic that may not
    be stored leaves every layer as it was: a variance that is zero, negative or not finite,
    or a mean that is not finite, is a ``ValueError`` naming the layer (see
    :func:`sound_statistics` for keeping the stored values in such channels instead).
    """
    values = []
    for bn, (mean, var) in zip(layers, statistics, strict=True):
        bad = unsound_channels(mean, var)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                f"BatchNormalization layer {bn.name!r}: refusing to store statistics that are "
                f"not a finite mean and a finite variance > 0 in {int(bad.sum())} of {bad.size} "
                f"channel(s) (channel {first}: mean {np.ravel(mean)[first]!r}, variance "
                f"{np.ravel(var)[first]!r}); nothing was written.")
        values.append((np.reshape(mean, bn.moving_mean.shape).astype(bn.moving_mean.dtype),
                       np.reshape(var, bn.moving_variance.shape).astype(bn.moving_variance.dtype)))
    for bn, (mean, var) in zip(layers, values, strict=True):
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(var)


def restore_statistics(layers, saved):
    """Put back what :func:`save_statistics` returned (the model's own values, unchecked)."""
    for bn, (mean, var) in zip(layers, saved, strict=True):
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(var)

