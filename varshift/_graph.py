"""Walking a Keras model's layers and recording what each layer call received and returned.

The building blocks of :mod:`varshift.bnstats` (the BN-statistics engine) and of
:func:`varshift.audit`: every layer reachable from a model (nested models and custom layers
included), its BatchNormalization layers (:func:`bn_layers`, :func:`shared_bn_layers`), their
paths, Keras' own graph of layer calls (:func:`graph_calls`), and :class:`record_calls`, which
intercepts layer calls while a ``tf.function`` is traced (TensorFlow only).
"""

from __future__ import annotations

from varshift._keras import keras as _keras
from varshift._keras import tf as _tf

__all__ = [
    "is_bn", "bn_layers", "shared_bn_layers", "time_distributed_layers", "bn_input_model",
    "sub_layers", "all_layers", "leaf_layers", "CallPatches", "CallRecord", "GraphCalls",
    "graph_calls", "record_calls", "model_input_signature", "layer_paths",
]


def is_bn(layer) -> bool:
    """Whether ``layer`` is a Keras ``BatchNormalization`` layer (subclasses included)."""
    return isinstance(layer, _keras().layers.BatchNormalization)


def bn_input_model(model, layers=None):
    """A Keras model with ``model``'s inputs and the input tensor of each BN layer as outputs.

    A convenience for the docs' small Functional models (BN layers in the top-level graph);
    the library measures through :func:`varshift.bnstats.collect_moments` instead, which
    handles nested models and custom layers. Raises ``ValueError`` naming the layer otherwise.
    """
    keras = _keras()
    layers = [la for la in all_layers(model) if is_bn(la)] if layers is None else list(layers)
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer; nothing to measure."
        )
    if not getattr(model, "inputs", None):
        raise ValueError(
            f"Model {model.name!r} is not built; call it on data or give it an Input first."
        )
    top = {id(layer) for layer in model.layers}
    outputs = []
    for layer in layers:
        if id(layer) not in top:
            raise ValueError(
                f"BatchNormalization layer {layer.name!r} is inside a nested model; "
                "use varshift.measure_shift, which handles nested models."
            )
        outputs.append(layer.input)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_bn_inputs")


# --------------------------------------------------------------------------------------------
# Call recording: what every layer received and returned in one traced forward pass.
#
# Keras' ``Layer.__call__`` ends in ``self.call(...)``, so an instance attribute ``call`` set on
# a layer object intercepts that layer wherever it sits: in a Sequential or Functional model,
# in a sub-model, or inside a custom layer's own ``call``. Tracing the model once inside a
# ``tf.function`` with such wrappers records the symbolic input/output tensors of each call.
# The wrappers are removed as soon as tracing ends; the traced graph keeps what it recorded.
# --------------------------------------------------------------------------------------------


def sub_layers(layer):
    """The direct sub-layers of ``layer`` (models' ``layers`` or any layer's tracked ``_layers``)."""
    subs = getattr(layer, "layers", None)
    if subs is None:
        subs = getattr(layer, "_layers", None)
    try:
        return list(subs or [])
    except TypeError:  # pragma: no cover - unusual containers
        return []


def all_layers(model):
    """Every layer reachable from ``model`` (itself excluded), depth first, each once."""
    found, seen = [], set()

    def walk(layer):
        for sub in sub_layers(layer):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            found.append(sub)
            walk(sub)

    walk(model)
    return found


def leaf_layers(model):
    """Layers of ``model`` that contain no other layer (the ones that do the computing)."""
    keras = _keras()
    return [layer for layer in all_layers(model)
            if not sub_layers(layer) and not isinstance(layer, keras.layers.InputLayer)]


class CallPatches:
    """Instance-level replacements of layers' ``call`` (Keras' ``__call__`` ends in
    ``self.call``); :meth:`restore` undoes them all, newest first."""

    def __init__(self):
        self._saved = []

    def set(self, layer, fn):
        self._saved.append((layer, "call" in layer.__dict__, layer.__dict__.get("call")))
        object.__setattr__(layer, "call", fn)  # bypass Keras' attribute tracking

    def restore(self):
        for layer, had, value in reversed(self._saved):
            if had:
                object.__setattr__(layer, "call", value)
            else:
                object.__delattr__(layer, "call")
        self._saved = []


class CallRecord:
    """One call of one layer during a trace: the layer, its tensor inputs and outputs."""

    __slots__ = ("layer", "inputs", "outputs", "first_input")

    def __init__(self, layer, inputs, outputs, first_input):
        self.layer = layer
        self.inputs = inputs  # flat list of tensors passed in (args and kwargs)
        self.outputs = outputs  # flat list of tensors returned
        self.first_input = first_input  # the ``inputs`` argument (BN: the tensor it normalises)


class GraphCalls:
    """:func:`graph_calls`' answer: ``records`` (one :class:`CallRecord` per layer call, in
    execution order), ``preds`` (per record, the indices of the records whose outputs it
    reads), ``source`` (``source(tensor)``: the set of records that produced a tensor) and
    ``opaque`` (custom layers holding other layers, whose inside is not a Keras graph)."""

    __slots__ = ("records", "preds", "source", "opaque")

    def __init__(self, records, preds, source, opaque):
        self.records, self.preds, self.source, self.opaque = records, preds, source, opaque


def _graph_of(layer):
    """The Functional graph of a Functional model or a built Sequential, else ``None``."""
    graph = getattr(layer, "_functional", None) or layer  # Sequential keeps one inside
    return graph if hasattr(graph, "_nodes_by_depth") and getattr(graph, "inputs", None) \
        else None


def _node_order(graph):
    for depth in sorted(graph._nodes_by_depth, reverse=True):  # noqa: SLF001 (Keras' graph)
        for node in graph._nodes_by_depth[depth]:  # noqa: SLF001
            if node.operation is not None and not node.is_input:
                yield node


def graph_calls(model):
    """Every layer call of a Functional/Sequential ``model`` read from Keras' own graph
    (``Node`` objects: each layer call, its ``KerasTensor`` arguments and outputs), nested
    models expanded into their own calls; backend-neutral, nothing is run. A layer called
    twice (shared) gives two records. Raises ``ValueError`` for a model without a graph
    (subclassed)."""
    graph = _graph_of(model)
    if graph is None:
        raise ValueError(f"Model {model.name!r} has no Keras graph (a subclassed model).")
    records, preds, producer, opaque = [], [], {}, []

    def expand(g, feeds):
        for t, fed in zip(g.inputs, feeds, strict=False):
            producer[id(t)] = fed
        for node in _node_order(g):
            layer, args = node.operation, list(node.arguments.keras_tensors)
            inner = _graph_of(layer)
            if inner is not None:
                outs = expand(inner, [producer.get(id(t), frozenset()) for t in args])
                for t, fed in zip(node.outputs, outs, strict=False):
                    producer[id(t)] = fed
                continue
            if sub_layers(layer):
                opaque.append(layer)
            first = node.arguments.args[0] if node.arguments.args else args[0] if args else None
            preds.append(sorted(set().union(*[producer.get(id(t), frozenset()) for t in args])))
            records.append(CallRecord(layer, args, list(node.outputs), first))
            for t in node.outputs:
                producer[id(t)] = frozenset([len(records) - 1])
        return [producer.get(id(t), frozenset()) for t in g.outputs]

    expand(graph, [frozenset()] * len(graph.inputs))
    return GraphCalls(records, preds, lambda t: producer.get(id(t), frozenset()), opaque)


def _tensors(structure):
    tf = _tf()
    return [t for t in tf.nest.flatten(structure) if isinstance(t, tf.Tensor)]


class record_calls:  # noqa: N801  (used as a context manager, reads like a function)
    """Context manager: while active, each call of ``layers`` appends a :class:`CallRecord`.

    Args:
        layers: the layer objects to intercept.
        identity_outputs: pass outputs through ``tf.identity`` so that a layer that returns its
            input unchanged (Dropout at inference) still produces a tensor of its own.

    The list of records is the context manager's value. Use only while tracing a
    ``tf.function``: eager calls would record concrete values instead of graph tensors.
    """

    def __init__(self, layers, *, identity_outputs=False):
        self.layers = list(layers)
        self.identity_outputs = identity_outputs
        self.records = []
        self._patches = CallPatches()

    def _wrap(self, layer):
        tf = _tf()
        original = layer.call
        records = self.records
        identity = self.identity_outputs

        def call(*args, **kwargs):
            first = args[0] if args else kwargs.get("inputs")
            outputs = original(*args, **kwargs)
            if identity:
                outputs = tf.nest.map_structure(
                    lambda t: tf.identity(t) if isinstance(t, tf.Tensor) else t, outputs)
            records.append(CallRecord(layer, _tensors((args, kwargs)), _tensors(outputs), first))
            return outputs

        return call

    def __enter__(self):
        for layer in self.layers:
            self._patches.set(layer, self._wrap(layer))
        return self.records

    def __exit__(self, *exc):
        self._patches.restore()
        return False


def model_input_signature(model):
    """``tf.TensorSpec`` structure (batch dimension ``None``) of a built model's inputs."""
    tf = _tf()
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no known input shape: build it with keras.Input, or "
            "pass input_shape= (the shape of one sample)."
        )
    specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype or "float32") for t in inputs]
    return specs[0] if len(specs) == 1 else specs


def layer_paths(model):
    """``{id(layer): "outer/inner/name"}`` for every layer reachable from ``model``."""
    paths = {}

    def walk(layer, prefix):
        for sub in sub_layers(layer):
            if id(sub) in paths:
                continue
            paths[id(sub)] = f"{prefix}{sub.name}"
            walk(sub, f"{prefix}{sub.name}/")

    walk(model, "")
    return paths


# ------------------------------------------------------------------ BatchNormalization layers


def bn_layers(model):
    """Every BatchNormalization layer reachable from ``model`` (nested models and custom layers
    included), each once, depth first in the order the layers were added."""
    return [layer for layer in all_layers(model) if is_bn(layer)]


def time_distributed_layers(model) -> set:
    """``id`` of every layer of ``model`` wrapped by a ``TimeDistributed`` layer: the wrapper
    calls it once per time step on slices of one tensor, so several calls per forward pass
    do not make it shared (its statistics are those of all steps)."""
    wrapped = set()
    for layer in all_layers(model):
        if type(layer).__name__ == "TimeDistributed":
            wrapped |= {id(inner) for inner in all_layers(layer.layer)} | {id(layer.layer)}
    return wrapped


def shared_bn_layers(model) -> set:
    """Names of the BN layers of ``model`` called more than once per forward pass (shared
    weights: one layer applied to two tensors). Their stored statistics mix the calls, so no
    per-call closed form applies to them (:func:`varshift.correct_direct` leaves them alone).

    Counted on Keras' own graph (``varshift._graph.graph_calls``, nested models expanded), and from each
    layer's inbound nodes for layers inside custom layers.
    """
    counts = {}
    try:
        for rec in graph_calls(model).records:
            if is_bn(rec.layer):
                counts[id(rec.layer)] = counts.get(id(rec.layer), 0) + 1
    except ValueError:  # no Keras graph (subclassed model): inbound nodes only
        pass
    wrapped = time_distributed_layers(model)
    return {layer.name for layer in bn_layers(model) if id(layer) not in wrapped and (
        counts.get(id(layer), 0) > 1 or len(getattr(layer, "_inbound_nodes", [])) > 1)}
