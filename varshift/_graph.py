"""Finding BatchNormalization layers and the tensors that enter them.

Shared by :mod:`varshift.models` (converged statistics) and the diagnostics. A *probe* runs
the model once on a batch and returns, for every BatchNormalization layer, the tensor that
entered it, in graph order: one forward pass serves all layers.
"""

from __future__ import annotations

from varshift._keras import keras as _keras

__all__ = ["bn_layers", "bn_input_model", "reduce_axes"]


def _is_bn(layer) -> bool:
    keras = _keras()
    return isinstance(layer, keras.layers.BatchNormalization)


def bn_layers(model):
    """Every BatchNormalization layer of ``model`` in graph order (nested models included)."""
    found = []
    seen = set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if _is_bn(layer):
            found.append(layer)
            return
        for sub in getattr(layer, "layers", None) or []:
            walk(sub)

    for layer in model.layers:
        walk(layer)
    return found


def bn_input_model(model, layers=None):
    """A Keras model with ``model``'s inputs and the input tensor of each BN layer as outputs.

    Works for Sequential and Functional models whose BN layers sit in the top-level graph.
    Raises ``ValueError`` naming the layer otherwise.
    """
    keras = _keras()
    layers = bn_layers(model) if layers is None else list(layers)
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


def reduce_axes(layer, ndim: int):
    """The axes a BN layer reduces over for an input of rank ``ndim`` (all but ``layer.axis``)."""
    axis = layer.axis
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    axes = {a % ndim for a in axes}
    return [i for i in range(ndim) if i not in axes]
