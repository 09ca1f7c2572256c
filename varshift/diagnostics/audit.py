r"""Static audit: which noise layers feed which BatchNormalization layers, and how.

The paper (Sec. 3) distinguishes two placements of a noise layer in front of BN:

- **case (a)**: the noise reaches BN through shape or element-wise operations only (Eq. 7-8;
  e.g. ``Dropout -> BN``, ``Dropout -> ReLU -> BN``);
- **case (b)**: through exactly one weight layer, a Dense or convolution with :math:`d` inputs
  per unit, whose weights enter Eq. 14 through :math:`\cos^2\theta` (Eq. 13);
- ``deeper``: through two or more weight layers; no closed form, measure it with
  :func:`varshift.measure_shift`;
- ``merge``: through a layer that sums or multiplies branches (``Add``, ``Average``,
  ``Subtract``, ``Multiply``, ...): an un-noised branch added in dilutes the shift, so neither
  Eq. 8 nor Eq. 14 holds (PreResNet/WRN: dropout-(b) reaches the next block's BN through the
  residual ``Add``);
- ``pool``: through pooling (average pooling mixes positions linearly, max pooling is not
  linear): no closed form either.

``Concatenate`` is different: BN's statistics are per channel, so the channels that come from
the noisy branch keep their case exactly and the others have no shift; the column
``channels`` says which (DenseNet: dropout reaches the next BN through ``Concatenate``).

:func:`audit` finds every (BN, noise) pair by tracing the model once (no data, no weights
changed) and walking each BN layer's input upstream until the previous normalisation layer or
the model input.
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from varshift import _validate, theory
from varshift import noise as noise_registry
from varshift._graph import (
    all_layers,
    graph_calls,
    is_bn,
    layer_paths,
    leaf_layers,
    model_input_signature,
    record_calls,
)
from varshift._keras import is_backend, to_numpy
from varshift._keras import keras as _load_keras
from varshift._keras import tf as _load_tf
from varshift._routes import Walk, route_case, upstream_routes
from varshift.contracts import MODEL, Optional, Shape, contract
from varshift.noise import noise_kind

__all__ = ["audit", "audit_result", "AuditResult", "noise_kind", "AUDIT_COLUMNS", "CASES"]

log = logging.getLogger("varshift.diagnostics")

AUDIT_COLUMNS = [
    "bn_layer", "noise_layer", "noise_kind", "param", "param_value", "case", "d", "mean_cos2",
    "d_cos2", "noise_var", "weight_layer", "n_weight_layers", "through", "channels", "route",
    "bn_path", "noise_path", "shared", "method",
]
#: how a row's layer graph was read: Keras' own graph (every backend) or, for custom layers
#: that compute with raw operations between inner layers, a TensorFlow trace (TF only)
METHODS = ("keras-graph", "tf-trace")
CASES = ("a", "b", "deeper", "merge", "pool")
_MERGE = ("Add", "Average", "Subtract", "Multiply", "Maximum", "Minimum", "Dot")
_POOL = tuple(f"{kind}Pooling{k}D" for kind in ("Average", "Max", "GlobalAverage", "GlobalMax")
              for k in (1, 2, 3))


def _is_normalization(layer):
    keras = _load_keras()
    kinds = tuple(getattr(keras.layers, n) for n in
                  ("BatchNormalization", "LayerNormalization", "GroupNormalization",
                   "UnitNormalization") if hasattr(keras.layers, n))
    return isinstance(layer, kinds) or is_bn(layer)


def _weight_layers_crossed(layer):
    """How many weight layers ``layer`` counts as (0: shape/element-wise)."""
    keras = _load_keras()
    if noise_kind(layer) is not None or _is_normalization(layer):
        return 0
    if isinstance(layer, tuple(getattr(keras.layers, n) for n in
                               ("SeparableConv1D", "SeparableConv2D"))):
        return 2  # depthwise then pointwise
    elementwise = tuple(getattr(keras.layers, n) for n in ("PReLU", "Rescaling", "Normalization")
                        if hasattr(keras.layers, n))
    if isinstance(layer, elementwise):
        return 0  # per-element (or per-channel) scale/shift: shape/element-wise
    return 1 if layer.trainable_weights else 0


def _kernel_matrix(layer):
    """A ``(d, units)`` matrix of a Dense/Conv layer's weights, or ``None``."""
    keras = _load_keras()
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return None
    w = np.asarray(to_numpy(kernel), dtype=np.float64)
    if w.ndim < 2:
        return None
    if isinstance(layer, tuple(getattr(keras.layers, n) for n in
                               ("DepthwiseConv1D", "DepthwiseConv2D"))):
        # (*kernel_size, in_channels, multiplier): each output sees one input channel
        return w.reshape(int(np.prod(w.shape[:-2])), -1)
    return w.reshape(theory.fan_in(w), w.shape[-1])


def trace_layer_graph(model, input_shape=None):
    """Trace ``model`` once and return ``(records, predecessors)``.

    ``records`` lists every call of a leaf layer in execution order; ``predecessors[i]`` the
    indices of the records whose outputs reach record ``i``'s inputs, possibly through raw
    TensorFlow operations done outside any layer (e.g. ``x + y`` in a custom layer).
    """
    tf = _load_tf()
    if input_shape is not None:
        spec = tf.TensorSpec((None, *tuple(input_shape)), "float32")
    else:
        spec = model_input_signature(model)
    leaves = leaf_layers(model)
    holder = {}

    def forward(x):
        with record_calls(leaves, identity_outputs=True) as records:
            out = model(x, training=False)
        holder["records"] = list(records)
        return out

    tf.function(forward, input_signature=[spec], autograph=False).get_concrete_function()
    records = holder["records"]
    producer = {}
    for i, rec in enumerate(records):
        for t in rec.outputs:
            producer[t.ref()] = i
    source = _tf_source(producer)

    preds = []
    for rec in records:
        found, seen = [], set()
        stack = list(rec.inputs)
        while stack:
            t = stack.pop()
            if t.ref() in seen:
                continue
            seen.add(t.ref())
            if t.ref() in producer:
                if producer[t.ref()] not in found:
                    found.append(producer[t.ref()])
                continue
            stack.extend(t.op.inputs)
        preds.append(found)
    return records, preds, source


def _tf_source(producer):
    def source(t):
        ref = t.ref() if hasattr(t, "ref") else None
        return frozenset([producer[ref]]) if ref in producer else frozenset()

    return source


def _needs_trace(model, calls):
    """Whether Keras' graph leaves BN or noise layers hidden inside custom layers (opaque)."""
    return any(is_bn(la) or noise_kind(la) is not None
               for layer in calls.opaque for la in all_layers(layer))


def layer_graph(model, input_shape=None):
    """``(records, preds, source, method)``: Keras' own graph (:func:`varshift._graph.graph_calls`)
    where it shows every BN and noise layer; otherwise (custom layers with inner layers,
    subclassed models) a TensorFlow trace, on the TensorFlow backend only."""
    calls = None
    if input_shape is None:
        try:
            calls = graph_calls(model)
        except ValueError:
            calls = None
    if calls is not None and not _needs_trace(model, calls):
        return calls.records, calls.preds, calls.source, "keras-graph"
    if not is_backend("tensorflow"):
        hidden = "it is subclassed" if calls is None else "custom layer(s) " + ", ".join(
            repr(la.name) for la in calls.opaque) + " hold BN or noise layers"
        raise ValueError(
            f"Argument `model` ({model.name!r}) cannot be audited on the "
            f"{_load_keras().backend.backend()} backend: {hidden}, and only TensorFlow can "
            "trace through raw operations; audit it with KERAS_BACKEND=tensorflow.")
    records, preds, source = trace_layer_graph(model, input_shape)
    return records, preds, source, "tf-trace"


def _empty(message):
    import pandas as pd

    df = pd.DataFrame({c: [] for c in AUDIT_COLUMNS})
    df.attrs["message"] = message
    log.warning("%s", message)
    return df


@contract(model=MODEL, input_shape=Optional(Shape(unknown=True)))
def audit(model, *, input_shape=None):
    r"""List every (BatchNormalization, noise layer) pair of a model and classify its path.

    For each BN layer (graph order) the noise layers upstream of it, up to the previous
    normalisation layer or the model input, are found by tracing the model once. The noise
    layers recognised are Keras' ``Dropout``, ``SpatialDropout1D/2D/3D``, ``GaussianDropout``,
    ``AlphaDropout``, ``GaussianNoise`` and :class:`varshift.layers.Uout`. Each pair's path is
    classified by the number of weight layers it crosses (the route with the fewest is kept):

    - ``a`` (none): Eq. 7-8, shift :math:`p v / (v + (1-p) c^2)`;
    - ``b`` (exactly one Dense/Conv): Eq. 14, with that layer's fan-in :math:`d` and the mean
      over its output units of Eq. 13's
      :math:`\cos^2\theta = (\sum_i w_i)^2 / (d \sum_i w_i^2)` from the current weights;
    - ``deeper`` (two or more);
    - ``merge`` / ``pool``: the route crosses a layer that sums or multiplies branches
      (``Add``, ``Average``, ``Subtract``, ``Multiply``, ``Maximum``, ``Minimum``, ``Dot``) or
      a pooling layer (column ``through`` names it), with at most one weight layer: Eq. 8 and
      Eq. 14 do not hold there, no closed-form prediction (``d`` is NaN); measure instead.

    A route through ``Concatenate`` keeps its case: BN's statistics are per channel, so only
    the channels coming from the noisy branch are concerned (column ``channels``, e.g.
    ``"16:32 of 48"``; the other channels have no shift). Merges done with raw TensorFlow
    operations inside a custom layer (``x + y``) are not recognised.

    Sequential and Functional models and nested sub-models are read from Keras' own graph
    (``Node`` objects), on every backend (column ``method``: ``keras-graph``). Custom layers
    that call other layers with raw operations between them, and subclassed models, are
    traced with TensorFlow instead (``tf-trace``), on the TensorFlow backend only. A BN layer
    called more than once (shared) gives a row per call, and column ``shared`` gives the
    reason its statistics have no per-call closed form (``None`` otherwise); a BN layer inside
    ``TimeDistributed`` is called once per time step on slices of one tensor and is one row,
    not shared. The model must
    have a known input shape, or pass ``input_shape``. Nothing is changed.

    Args:
        model: a built Keras model.
        input_shape: shape of one sample (no batch dimension), for models without
            ``model.inputs`` (subclassed models); by default taken from the model.

    Returns:
        A ``pandas.DataFrame``, one row per pair, columns ``bn_layer, noise_layer, noise_kind,
        param`` (the name of the noise layer's parameter in :data:`varshift.noise.NOISES`:
        ``rate``, ``beta`` or ``stddev``), ``param_value, case, d, mean_cos2`` plus ``d_cos2``
        (:math:`d\,\overline{\cos^2\theta}`),
        ``noise_var`` (:math:`s^2` of the multiplicative noise factor, NaN for alpha dropout
        and Gaussian noise), ``weight_layer``, ``n_weight_layers``, ``through`` (the merge or
        pooling layer, else None), ``channels`` (``"all"``, or the slice of BN's channels a
        ``Concatenate`` fed from the noisy branch), ``route`` (the layers from the noise layer
        to BN, for display), the full paths ``bn_path``/``noise_path``, ``shared`` and ``method``. ``d`` and
        ``mean_cos2`` are NaN unless the case is ``b``. A model with no noise layer
        feeding BN gives an empty frame whose ``attrs["message"]`` says so (also logged as a
        warning); a model with no BN layer is a ``ValueError`` (docs/api.md, Input contract).

    Example:
        >>> from varshift.models import dropout_dense_bn_model
        >>> audit(dropout_dense_bn_model(8, 4, rate=0.5))[["bn_layer", "case", "d"]].values.tolist()
        [['bn', 'b', 8.0]]
    """
    _validate.keras_model(model, input_shape=input_shape)
    return audit_result(model, input_shape=input_shape).frame


class AuditResult:
    """:func:`audit`'s table plus structured data for other diagnostics.

    Attributes:
        frame: the ``pandas.DataFrame`` :func:`audit` returns.
        routes: per row, the tuple of layer objects from the noise layer to the BN layer.
        records: the traced layer calls (:func:`trace_layer_graph`), ``[]`` if no pair.
        bn_inputs: ``{id(bn_layer): input shape}`` of every BN layer called.
    """

    __slots__ = ("frame", "routes", "records", "bn_inputs")

    def __init__(self, frame, routes, records, bn_inputs):
        self.frame, self.routes, self.records, self.bn_inputs = frame, routes, records, bn_inputs


def _role(layer):
    """``"merge"``, ``"pool"``, ``"concat"`` or ``None`` for any other layer."""
    keras = _load_keras()

    def kinds(names):
        return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))

    if isinstance(layer, keras.layers.Concatenate):
        return "concat"
    if isinstance(layer, kinds(_MERGE)):
        return "merge"
    if isinstance(layer, kinds(_POOL)):
        return "pool"
    return None


def _concat_channels(records, i, p, source):
    """Which channels of Concatenate record ``i``'s output come from record ``p``: ``"a:b of
    C"``, or ``"all"`` when that cannot be told (not the last axis, raw ops in between)."""
    rec = records[i]
    parts = rec.first_input if isinstance(rec.first_input, (list, tuple)) else []
    ndim = len(rec.outputs[0].shape) if rec.outputs else 0
    if not parts or ndim == 0 or rec.layer.axis % ndim != ndim - 1:
        return "all"
    sizes = [t.shape[-1] for t in parts]
    if any(size is None for size in sizes):
        return "all"
    total, start = sum(sizes), 0
    for t, size in zip(parts, sizes, strict=True):
        if p in source(t):
            return f"{start}:{start + size} of {total}"
        start += size
    return "all"


def _search(records, preds, source, b):
    """Per noise record upstream of BN record ``b``, its best :class:`varshift._routes.Route`."""
    walk = Walk(preds=lambda i: preds[i], stops=lambda i: _is_normalization(records[i].layer),
                is_noise=lambda i: noise_kind(records[i].layer) is not None,
                crossed=lambda i: _weight_layers_crossed(records[i].layer),
                role=lambda i: _role(records[i].layer),
                concat_channels=lambda i, p: _concat_channels(records, i, p, source))
    return upstream_routes(walk, b)


def _pair_row(records, paths, b, i, found, extra):
    """One audit row for BN record ``b`` and noise record ``i``."""
    n_weight, weight_rec, route, through, channels = (found.n_weight, found.weight, found.route,
                                                      found.through, found.channels)
    bn, noise = records[b].layer, records[i].layer
    kind = noise_registry.kind_of(noise)
    value = kind.value_of(noise)
    case = route_case(found, role=lambda k: _role(records[k].layer))
    d = mean_cos2 = float("nan")
    weight_name = None
    if case == "b" and weight_rec is not None:
        weight = records[weight_rec].layer
        weight_name = weight.name
        kernel = _kernel_matrix(weight)
        if kernel is not None:
            d = float(kernel.shape[0])
            mean_cos2 = float(np.nanmean(theory.cos2_theta(kernel)))
    return {
        "bn_layer": bn.name, "noise_layer": noise.name, "noise_kind": kind.name,
        "param": kind.param, "param_value": value, "case": case, "d": d, "mean_cos2": mean_cos2,
        "d_cos2": d * mean_cos2, "noise_var": noise_registry.noise_variance(kind.name, value),
        "weight_layer": weight_name, "n_weight_layers": int(n_weight),
        "through": None if through is None else records[through].layer.name,
        "channels": channels,
        "route": " -> ".join(records[k].layer.name for k in route),
        "bn_path": paths.get(id(bn), bn.name), "noise_path": paths.get(id(noise), noise.name),
        **extra,
    }


def audit_result(model, *, input_shape=None):
    """:func:`audit` with its structured data (an :class:`AuditResult`): the routes as layer
    objects and the traced calls, for :func:`varshift.correct_direct` and other diagnostics."""
    import pandas as pd

    from varshift._graph import time_distributed_layers

    records, preds, source, method = layer_graph(model, input_shape)
    bn_calls, bn_inputs, calls_of = [], {}, collections.Counter()
    per_step = time_distributed_layers(model)  # called once per time step: one row
    for i, rec in enumerate(records):
        if is_bn(rec.layer):
            if id(rec.layer) in per_step and calls_of[id(rec.layer)]:
                continue
            calls_of[id(rec.layer)] += 1
            bn_calls.append(i)
            bn_inputs.setdefault(id(rec.layer), tuple(rec.first_input.shape))
    if not bn_calls:
        return AuditResult(_empty(f"Model {model.name!r} has no BatchNormalization layer: "
                                  "there is no variance shift to audit."), [], [], bn_inputs)
    if not any(noise_kind(rec.layer) for rec in records):
        return AuditResult(_empty(
            f"Model {model.name!r} has no noise layer (Dropout, SpatialDropout, "
            "GaussianDropout, AlphaDropout, GaussianNoise, Uout): no variance shift."),
            [], records, bn_inputs)
    paths = layer_paths(model)
    rows, routes = [], []
    for b in bn_calls:
        calls = calls_of[id(records[b].layer)]
        extra = {"method": method, "shared": (
            f"called {calls} times: its moving statistics mix the calls, no per-call closed "
            "form; left untouched by correct_direct") if calls > 1 else None}
        best = _search(records, preds, source, b)
        for i in sorted(best):
            rows.append(_pair_row(records, paths, b, i, best[i], extra))
            routes.append(tuple(records[k].layer for k in best[i].route))
    if not rows:
        return AuditResult(_empty(
            f"Model {model.name!r}: no noise layer lies upstream of a BatchNormalization "
            "layer (noise only after the last BN), no variance shift."), [], records, bn_inputs)
    df = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    df.attrs["message"] = (f"{len(df)} (BN, noise) pair(s) in model {model.name!r}: "
                           + ", ".join(f"{c}: {n}" for c, n in df["case"].value_counts().items()))
    return AuditResult(df, routes, records, bn_inputs)
