r"""Re-estimate BatchNormalization's moving statistics in inference mode: Table 3's "Adjust BN".

With all weights fixed and the network in inference mode (noise layers off), every BN layer's
moving mean and variance are replaced by the exact one-pass mean and *biased* variance of its
input over the data (the estimator of :func:`varshift.measure_shift`), which removes the
variance shift that training-time noise left in the stored statistics. The paper does not say
whether layers are updated together or one after another; both are offered:

- ``"sequential"`` (exact): layer by layer in graph order, one pass over the data per BN layer,
  so each layer is measured with every earlier layer already corrected. Afterwards
  ``measure_shift`` on the same data reports ``ratio == 1`` for every layer.
- ``"simultaneous"`` (cheap): one pass measures all layers under the old statistics, then all
  are written. Deeper layers were measured behind uncorrected earlier layers, so their new
  statistics are close to, not exactly, what they see afterwards.

Only the moving statistics change; gamma and beta stay as trained.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from varshift import _validate
from varshift._graph import all_bn_layers
from varshift._keras import keras as _load_keras
from varshift._keras import to_numpy
from varshift.diagnostics.shift import collect_input_moments

__all__ = ["recalibrate_bn", "copy_model"]

_MODES = ("sequential", "simultaneous")


def copy_model(model):
    """An independent copy of ``model`` with the same weights (and compile state if possible).

    Tries ``keras.models.clone_model`` + ``set_weights`` (fast; custom layers need a
    ``get_config``), then falls back to saving to and loading from a temporary ``.keras`` file
    (custom classes must be registered serialisable, as :class:`varshift.layers.Uout` is).
    """
    keras = _load_keras()
    import varshift.layers  # noqa: F401  (registers Uout for deserialisation)

    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        if len(all_bn_layers(clone)) != len(all_bn_layers(model)):
            raise ValueError("clone lost BatchNormalization layers")
    except Exception:  # noqa: BLE001 - any cloning failure: use the file round trip
        with tempfile.TemporaryDirectory(prefix="varshift-copy-") as tmp:
            path = os.path.join(tmp, "model.keras")
            try:
                model.save(path)
                return keras.models.load_model(
                    path, compile=bool(getattr(model, "compiled", False)))
            except Exception as err:  # noqa: BLE001
                raise TypeError(
                    f"Cannot copy model {model.name!r}: neither keras.models.clone_model nor a "
                    "save/load round trip works for it (register custom classes with "
                    "@keras.saving.register_keras_serializable). Pass inplace=True to "
                    f"recalibrate it in place. Cause: {str(err).splitlines()[0][:200]}"
                ) from err
    if getattr(model, "compiled", False):
        try:
            clone.compile_from_config(model.get_compile_config())
        except Exception:  # noqa: BLE001 - compile state is a convenience, not required
            pass
    return clone


def _assign(layer, mean, var):
    layer.moving_mean.assign(np.reshape(mean, layer.moving_mean.shape).astype(
        layer.moving_mean.dtype))
    layer.moving_variance.assign(np.reshape(var, layer.moving_variance.shape).astype(
        layer.moving_variance.dtype))


def recalibrate_bn(model, data, *, mode="sequential", inplace=False, batch_size=256,
                   progress=False):
    r"""Re-estimate every BN layer's moving mean and variance from data in inference mode.

    For each BatchNormalization layer the stored statistics become

    .. math::
        \text{moving\_mean} = \frac1N \sum_j x_j, \qquad
        \text{moving\_var} = \frac1N \sum_j (x_j - \bar x)^2,

    per channel, over every value :math:`x_j` of that channel of the layer's input when the
    model runs in inference mode over ``data`` (exact one-pass average, biased variance as Keras
    uses). This is the paper's "Adjust BN" (Table 3); ``mode`` names which variant.

    Args:
        model: a trained Keras model with BatchNormalization layers.
        data: numpy array, ``tf.data.Dataset`` or ``keras.utils.PyDataset`` of inputs (labels
            ignored); use the training data, with its augmentation, as the paper does.
        mode: ``"sequential"`` (exact, one pass per BN layer, each seeing the corrected earlier
            layers) or ``"simultaneous"`` (one pass for all layers, measured under the old
            statistics).
        inplace: write into ``model`` itself instead of a copy.
        batch_size: batch size for numpy input.
        progress: show progress bars on stderr.

    Returns:
        The recalibrated model: a copy (``inplace=False``, made by clone + ``set_weights``
        or a save/load round trip) or ``model`` itself. If anything fails part-way (bad data,
        an interrupt), ``model`` is left exactly as it was, also with ``inplace=True``.

    Example:
        >>> from varshift.models import dropout_bn_model, seed_data
        >>> fixed = recalibrate_bn(dropout_bn_model(5, 0.5), seed_data(1000))
    """
    _validate.model_and_data(model, data)
    if mode not in _MODES:
        raise ValueError(
            f"Argument `mode` must be one of {_MODES}; received mode={mode!r}.")
    if not isinstance(inplace, bool):
        raise ValueError(f"Argument `inplace` must be True or False; received inplace={inplace!r}.")
    if not all_bn_layers(model):
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer; nothing to recalibrate.")

    target = model if inplace else copy_model(model)
    layers = all_bn_layers(target)
    saved = [(to_numpy(bn.moving_mean), to_numpy(bn.moving_variance)) for bn in layers]
    try:
        if mode == "simultaneous":
            for layer, _, mean, var in collect_input_moments(
                    target, data, batch_size=batch_size, progress=progress,
                    desc="recalibrating all BN layers"):
                _assign(layer, mean, var)
        else:
            # The first pass measures every layer under the old statistics and gives the graph
            # (call) order. The first layer called depends on no other BN layer, so its
            # numbers are already final; each later layer gets a pass of its own, made after
            # all earlier layers were corrected.
            first_pass = collect_input_moments(
                target, data, layers=layers, batch_size=batch_size, progress=progress,
                desc=f"BN 1/{len(layers)}")
            order = [layer for layer, *_ in first_pass]
            layer, _, mean, var = first_pass[0]
            _assign(layer, mean, var)
            for k, layer in enumerate(order[1:], 2):
                ((_, _, mean, var),) = collect_input_moments(
                    target, data, layers=[layer], batch_size=batch_size, progress=progress,
                    desc=f"BN {k}/{len(order)}")
                _assign(layer, mean, var)
    except BaseException:
        for bn, (mean, var) in zip(layers, saved, strict=True):
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(var)
        raise
    return target
