r"""Static audit of a PyTorch model: which dropout modules or calls feed which BatchNorm modules.

The same cases and table as :func:`varshift.audit` (paper, Sec. 3):

- **case (a)**: dropout reaches BN through shape or element-wise operations only (Eq. 7-8;
  ``Dropout -> BatchNorm``, ``Dropout -> ReLU -> flatten -> BatchNorm1d``);
- **case (b)**: through exactly one ``Linear`` or convolution with :math:`d` inputs per output
  unit (``in_channels / groups x kernel size``; 9 for a 3x3 depthwise convolution), whose
  weights enter Eq. 14 through :math:`\cos^2\theta` (Eq. 13);
- ``deeper``: through two or more weight layers; ``merge``: through an operation that combines
  branches (``out + identity``, ``x * scale``); ``pool``: through pooling or a mean over
  positions. No closed form for these three: measure them (:func:`varshift.torch.measure_shift`).

A concatenation along channels (``torch.cat(..., dim=1)``) keeps the case for the channels that
come from the noisy branch (column ``channels``).

The graph is read with ``torch.fx`` (column ``method``: ``torch.fx``), every ``torch.nn``
module a leaf; models fx cannot trace (data-dependent control flow) are read from one recorded
eval-mode forward pass on ``example_inputs`` (``recorded``), which sees the branch those inputs
take.
"""

from __future__ import annotations

import collections
import logging

import numpy as np
import torch

from varshift import theory
from varshift._routes import Walk, route_case, upstream_routes
from varshift.contracts import contract
from varshift.noise import noise_variance
from varshift.torch._core import EXAMPLE_INPUTS, MODEL, check_model, model_device
from varshift.torch._trace import fx_graph, fx_shapes, recorded_graph

__all__ = ["audit", "AUDIT_COLUMNS", "CASES"]

log = logging.getLogger("varshift.torch")

CASES = ("a", "b", "deeper", "merge", "pool")
#: the columns of :func:`varshift.audit` (that module imports Keras; this one must not)
AUDIT_COLUMNS = [
    "bn_layer", "noise_layer", "noise_kind", "param", "param_value", "case", "d", "mean_cos2",
    "d_cos2", "noise_var", "weight_layer", "n_weight_layers", "through", "channels", "route",
    "bn_path", "noise_path", "shared", "method",
]


def _example_inputs(items, model):
    """The checked positional inputs, floating tensors moved to the model's device and dtype."""
    device, dtype, _ = model_device(model)
    return tuple(t.to(device=device, dtype=dtype) if isinstance(t, torch.Tensor)
                 and t.is_floating_point() else t for t in items)


def _first_line(err):
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _graph(model, inputs):
    """``(calls, method)``: fx's graph, else a recorded pass, else a one-line ``ValueError``."""
    try:
        gm, (calls, nodes) = fx_graph(model, inputs)
    except Exception as err:  # noqa: BLE001 - any fx failure: record a forward pass instead
        fx_error = err
    else:
        try:
            fx_shapes(gm, calls, nodes, inputs)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"Argument `example_inputs` does not fit model "
                             f"{type(model).__name__}: running it fails: {_first_line(err)}") from err
        return calls, "torch.fx"
    try:
        return recorded_graph(model, inputs), "recorded"
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"Argument `model` ({type(model).__name__}) cannot be audited: torch.fx cannot trace "
            f"it ({_first_line(fx_error)}) and a forward pass on `example_inputs` fails "
            f"({_first_line(err)}).") from err


def _search(calls, b):
    """Per noise call upstream of BN call ``b``, its best :class:`varshift._routes.Route`."""
    return upstream_routes(_walk(calls), b)


def _walk(calls):
    """The :class:`varshift._routes.Walk` of fx's (or a recorded pass's) calls."""
    return Walk(preds=lambda i: calls[i].preds, stops=lambda i: calls[i].norm,
                is_noise=lambda i: calls[i].noise is not None,
                crossed=lambda i: calls[i].crossed, role=lambda i: calls[i].role,
                concat_channels=lambda i, p: dict(calls[i].parts or ()).get(p, "all"))


def _row(calls, b, i, found, extra):
    n_weight, weight_i, route, through, channels = (found.n_weight, found.weight, found.route,
                                                    found.through, found.channels)
    kind, rate = calls[i].noise
    case = route_case(found, role=lambda k: calls[k].role)
    d = mean_cos2 = float("nan")
    kernel = calls[weight_i].kernel if case == "b" and weight_i is not None else None
    if kernel is not None:
        d = float(kernel.shape[0])
        mean_cos2 = float(np.nanmean(theory.cos2_theta(kernel)))
    return {
        "bn_layer": calls[b].name, "noise_layer": calls[i].name, "noise_kind": kind,
        "param": "rate", "param_value": rate, "case": case, "d": d, "mean_cos2": mean_cos2,
        "d_cos2": d * mean_cos2, "noise_var": noise_variance(kind, rate),
        "weight_layer": calls[weight_i].name if case == "b" and weight_i is not None else None,
        "n_weight_layers": int(n_weight),
        "through": None if through is None else calls[through].name, "channels": channels,
        "route": " -> ".join(calls[k].name for k in route),
        "bn_path": calls[b].name, "noise_path": calls[i].name, **extra,
    }


def _frame(rows, message):
    import pandas as pd

    df = pd.DataFrame(rows, columns=AUDIT_COLUMNS) if rows else \
        pd.DataFrame({c: [] for c in AUDIT_COLUMNS})
    df.attrs["message"] = message
    if not rows:
        log.warning("%s", message)
    return df


@contract(model=MODEL, example_inputs=EXAMPLE_INPUTS)
def audit(model, example_inputs):
    r"""List every (BatchNorm, dropout) pair of a PyTorch model and classify its path.

    For each call of a BN module with running statistics (``BatchNorm1d/2d/3d``, lazy BN,
    ``SyncBatchNorm``), the dropout upstream of it, up to the previous normalisation or the
    model input, is found on the model's traced graph: the modules ``Dropout``,
    ``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout`` and the functions
    ``F.dropout``, ``F.dropout1d/2d/3d``, ``F.alpha_dropout``, ``F.feature_alpha_dropout``.
    Each pair's path is classified by the weight layers it crosses (the route with the fewest
    is kept): ``a`` (none, Eq. 7-8), ``b`` (one ``Linear``/convolution, Eq. 14, with its fan-in
    :math:`d` and the mean over its output units of
    :math:`\cos^2\theta = (\sum_i w_i)^2 / (d \sum_i w_i^2)` from the current weights),
    ``deeper`` (two or more), ``merge`` / ``pool`` (through a branch combination or pooling,
    at most one weight layer). A concatenation along channels keeps the case and names the
    channels that come from the noisy branch.

    The graph comes from ``torch.fx`` (traced in training mode, so a functional
    ``F.dropout(x, training=self.training)`` is seen; shapes from one eval-mode run of
    ``example_inputs``), or, where fx cannot trace the model, from one recorded eval-mode
    forward pass (column ``method``). A model neither can read is a one-line ``ValueError``.
    Nothing is changed: modes and BN buffers are as before.

    Args:
        model: a ``torch.nn.Module`` with BatchNorm modules.
        example_inputs: one batch of the model's positional input(s): a tensor or a tuple of
            them (as for ``torch.export``); moved to the model's device and dtype.

    Returns:
        A ``pandas.DataFrame`` with the columns of :func:`varshift.audit`, one row per pair:
        ``bn_layer`` / ``noise_layer`` are qualified module names (``layer1.0.bn1``; a
        functional dropout is ``owner.dropout``), ``param`` is ``rate`` (PyTorch's ``p``,
        the drop probability), ``d`` and ``mean_cos2`` are NaN unless the case is ``b``,
        ``method`` is ``torch.fx`` or ``recorded``. No dropout feeding BN gives an empty frame
        whose ``attrs["message"]`` says so.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 4), nn.BatchNorm1d(4))
        >>> audit(net, torch.randn(2, 8))[["bn_layer", "noise_layer", "case", "d"]].values.tolist()
        [['2', '0', 'b', 8.0]]
    """
    net = check_model(model)
    inputs = _example_inputs(example_inputs, net)

    calls, method = _graph(net, inputs)
    name = type(net).__name__
    bn_calls = [i for i, c in enumerate(calls) if c.bn]
    if not any(c.noise for c in calls):
        return _frame([], f"Model {name} has no dropout (Dropout, Dropout1d/2d/3d, "
                          "AlphaDropout, FeatureAlphaDropout, F.dropout): no variance shift.")
    calls_of = collections.Counter(id(calls[b].module) for b in bn_calls)
    rows = []
    for b in bn_calls:
        n = calls_of[id(calls[b].module)]
        extra = {"method": method, "shared": (
            f"called {n} times: its running statistics mix the calls, no per-call closed "
            "form") if n > 1 else None}
        best = _search(calls, b)
        rows += [_row(calls, b, i, best[i], extra) for i in sorted(best)]
    if not rows:
        return _frame([], f"Model {name}: no dropout lies upstream of a BatchNorm module "
                          "(dropout only after the last BN), no variance shift.")
    df = _frame(rows, "")
    df.attrs["message"] = (f"{len(df)} (BN, dropout) pair(s) in model {name}: "
                           + ", ".join(f"{c}: {n}" for c, n in df["case"].value_counts().items()))
    return df
