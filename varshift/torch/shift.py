r"""Measure the variance shift of every BatchNorm module of a trained PyTorch model.

The paper's Fig. 1/4 statistic, with the same table as :func:`varshift.measure_shift`: for BN
module :math:`i`,

.. math::
    \text{ratio}_i = \max\!\left(\frac{\text{real\_var}_i}{\text{moving\_var}_i},
                                 \frac{\text{moving\_var}_i}{\text{real\_var}_i}\right),

``moving_var`` the channel mean of the stored ``running_var`` (what BN divides by in eval
mode) and ``real_var`` the channel mean of the variance of the module's input with the whole
model in eval mode over the data.

**Unbiased, like PyTorch.** PyTorch's BN stores the moving average of the *unbiased* batch
variance, which estimates the population variance itself (Keras stores biased batch
variances, :math:`\frac{m-1}{m}` of it). So ``real_var`` here is the unbiased pooled variance
:math:`\frac1{N-1}\sum_j (x_j-\bar x)^2` over all :math:`N` values of the channel in the pass
(samples times positions), and an unshifted layer reads ratio 1 up to sampling error, on
Linear and convolutional BN alike.
"""

from __future__ import annotations

import numpy as np

from varshift.contracts import COUNT, Boolean, Optional, contract
from varshift.torch._core import (
    DATA,
    FORWARD_FN,
    MODEL,
    batches,
    bn_modules,
    check_model,
    forward_for,
    pass_modes,
)
from varshift.torch._moments import collect

__all__ = ["measure_shift"]


def _ratio_both_ways(real, moving):
    """``max(real/moving, moving/real)``; NaN when either is 0 or their signs differ."""
    if real == 0 or moving == 0 or (real > 0) != (moving > 0):
        return float("nan")
    r = real / moving
    return max(r, 1.0 / r)


def _row(i, m, per_channel):
    bn = m.module
    moving_mean = bn.running_mean.detach().double().cpu().numpy().reshape(-1)
    moving_var = bn.running_var.detach().double().cpu().numpy().reshape(-1)
    mean = m.mean.double().cpu().numpy()
    var = m.unbiased_var.double().cpu().numpy()
    mm, rm, mv, rv = (float(moving_mean.mean()), float(mean.mean()), float(moving_var.mean()),
                      float(var.mean()))
    row = {
        "index": i, "bn_layer": m.name, "path": m.name, "channels": int(mean.size),
        "count": int(round(float(m.count))), "moving_mean": mm, "real_mean": rm,
        "mean_ratio": _ratio_both_ways(rm, mm),
        "mean_shift_std": float(np.mean(np.abs(mean - moving_mean) / np.sqrt(moving_var + bn.eps))),
        "moving_var": mv, "real_var": rv, "shift": rv / mv if mv > 0 else float("nan"),
        "ratio": _ratio_both_ways(rv, mv),
    }
    if per_channel:
        row.update({"moving_mean_channels": moving_mean, "real_mean_channels": mean,
                    "moving_var_channels": moving_var, "real_var_channels": var})
    return row


@contract(model=MODEL, data=DATA, batch_size=COUNT, per_channel=Boolean(),
          max_samples=Optional(COUNT), progress=Boolean(), forward_fn=FORWARD_FN)
def measure_shift(model, data, *, batch_size=256, per_channel=False, max_samples=None,
                  progress=False, forward_fn=None):
    r"""Per-BN-module variance shift of a trained PyTorch model on data (Fig. 1/4 statistic).

    For each BN module with running statistics, in the order forward calls them:

    .. math::
        \text{ratio}_i = \max\!\left(\frac{\overline{\text{real\_var}}_i}
                                          {\overline{\text{moving\_var}}_i},
                                     \frac{\overline{\text{moving\_var}}_i}
                                          {\overline{\text{real\_var}}_i}\right)

    (bars: means over channels). ``moving_var`` is the stored ``running_var``: PyTorch's
    moving average of the **unbiased** training-mode (dropout on) batch variance, Eq. 7's
    :math:`\mathrm{Var}^{Train}`. ``real_var`` is the **unbiased** variance (divide by
    :math:`N-1`) of the module's input with the whole model in eval mode over ``data``, pooled
    exactly per channel over every sample and spatial position (:math:`N` values), Eq. 8's
    :math:`\mathrm{Var}^{Test}`: the same convention, so an unshifted module reads 1.

    One pass, every BN module measured through forward pre-hooks, under ``torch.no_grad()``
    on the model's device; every module's mode and every BN buffer are as before afterwards.
    Under ``torch.distributed`` the counts and sums are all-reduced (every rank gets the
    statistics of all ranks' data).

    Args:
        model: a trained ``torch.nn.Module`` with BatchNorm modules.
        data: a tensor or numpy array of samples, an ``(x, y)`` tuple of them, or a
            re-iterable of batches (``DataLoader``); NaN/infinity in the input is a ``ValueError``.
        batch_size: batch size for tensor data (the result does not depend on it).
        per_channel: add columns ``*_channels`` holding the per-channel numpy arrays.
        max_samples: read at most this many samples (``None``: all).
        progress: show a progress bar on stderr.
        forward_fn: ``forward_fn(model, batch)`` for batches the default ``model(x)`` cannot
            take (dicts, several inputs).

    Returns:
        A ``pandas.DataFrame``, one row per BN module, with the columns of
        :func:`varshift.measure_shift`: ``index, bn_layer, path`` (the module's qualified
        name, both), ``channels, count`` (values per channel), ``moving_mean, real_mean,
        mean_ratio, mean_shift_std, moving_var, real_var, shift`` (``real_var / moving_var``)
        and ``ratio``. ``attrs["estimator"]`` names the estimator. A BN module that forward
        does not call on this data (or that sees one value per channel) has no row.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(4))
        >>> measure_shift(net, torch.randn(64, 4))[["bn_layer", "channels"]].values.tolist()
        [['1', 4]]
    """
    net = check_model(model)
    import pandas as pd

    with pass_modes(net, bn_train=False, noise=False):
        measured = collect(net, bn_modules(net),
                           batches(data, batch_size=batch_size, max_samples=max_samples),
                           forward_fn or forward_for(net), progress=progress,
                           desc="measuring the shift")
    rows = [_row(i, m, per_channel) for i, m in enumerate(measured, 1) if float(m.count) > 1]
    df = pd.DataFrame(rows)
    df.attrs["estimator"] = ("exact pooled average over one pass, unbiased variance (divide by "
                             "N-1, PyTorch's running_var convention), whole model in eval mode")
    return df
