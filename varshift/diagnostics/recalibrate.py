r"""Re-estimate BatchNormalization's moving statistics from data: Table 3's "Adjust BN".

With all weights fixed, every BN layer's moving mean and variance are replaced by statistics
measured over data, which removes the variance shift that training-time noise left in them.
Two modes, both exact pooled estimators (:mod:`varshift.bnstats`):

- ``"one_pass"`` (default): one pass over the data with every BN layer normalising with the
  statistics of the batch at hand (as in training) and every noise layer **off**; each channel's
  new moving mean/variance are the pooled mean and biased variance of all values it received.
  Peers: PyTorch's ``torch.optim.swa_utils.update_bn``, detectron2's PreciseBN hook,
  mmpretrain's ``PreciseBNHook`` and AIMET's Keras ``reestimate_bn_stats`` put the whole model
  in training mode, so Dropout stays **on** and they re-measure the very shift this paper is
  about (``noise=True`` reproduces that); ``update_bn`` and PreciseBN also average per-batch
  variances instead of pooling them. AIMET's PyTorch ``reestimate_bn_stats`` (the whole model in
  eval mode, only BN in training mode) and NNCF's BN adaptation (only the BN layers in training
  mode) do turn dropout off. fvcore's ``update_bn_stats`` leaves the mode to its caller and
  pools, counting every position of a convolution. What varshift adds: Keras, the noise off
  whatever the layer kind (Dropout, GaussianDropout, SpatialDropout, GaussianNoise, Uout),
  exact float64 pooling, a ``"sequential"`` mode, the shift statistic
  (:func:`~varshift.diagnostics.measure_shift`) and :func:`~varshift.diagnostics.audit`.
- ``"sequential"``: inference mode, layer by layer in graph order, one pass per BN layer, each
  measured behind already corrected upstream layers. Afterwards ``measure_shift`` on the same
  data reads ratio 1 for every layer; it costs one pass per BN layer, or one in all when the
  data come as a single batch (then BN normalising with that batch's statistics *is* the
  sequential result, so one batch-mode pass gives every layer at once).

A "simultaneous" inference-mode variant (measure every layer behind the *old* upstream
statistics, then write all) is deliberately absent: once an upstream layer is corrected its
output grows by about :math:`1/\sqrt p`, every deeper layer was measured on smaller inputs than
it now gets, and the error compounds block after block.

Only the moving statistics change; gamma, beta and every other weight stay as trained.
"""

from __future__ import annotations

import os
import tempfile
import warnings

from varshift import _validate
from varshift._keras import keras as _load_keras
from varshift.bnstats import (
    assign_statistics,
    bn_layers,
    collect_moments,
    iter_batches,
    restore_statistics,
    save_statistics,
    sound_statistics,
)
from varshift.contracts import COUNT, MODEL, SEED, Boolean, Data, Optional, Options, contract

__all__ = ["recalibrate_bn", "copy_model", "MODES", "ConstantInputWarning"]

MODES = ("one_pass", "sequential")


def copy_model(model):
    """An independent copy of ``model`` with the same weights (and compile state if possible).

    Tries the model's class rebuilt from its config (a Functional or Sequential model of
    serialisable layers), then ``keras.models.clone_model`` (custom layers need a
    ``get_config``), each followed by ``set_weights``; then falls back to saving to and loading
    from a temporary ``.keras`` file (custom classes must be registered serialisable, as
    :class:`varshift.layers.Uout` is).
    """
    keras = _load_keras()
    import varshift.layers  # noqa: F401  (registers Uout for deserialisation)

    try:
        clone = _rebuilt(keras, model)
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
            _compile_like(keras, clone, model)
        except Exception:  # noqa: BLE001 - compile state is a convenience, not required
            pass
    return clone


def _rebuilt(keras, model):
    """``model`` rebuilt with its weights: from its config where that gives the same layers
    (no optimizer state is built: ``clone_model`` compiles its clone from the compile config,
    which makes the optimizer's slot variables), else by ``keras.models.clone_model``."""
    for build in (lambda: type(model).from_config(model.get_config()),
                  lambda: keras.models.clone_model(model)):
        try:
            clone = build()
            clone.set_weights(model.get_weights())
        except Exception:  # noqa: BLE001 - this way does not rebuild this model: the next
            continue
        if len(bn_layers(clone)) == len(bn_layers(model)):
            return clone
    raise ValueError(f"Model {model.name!r} cannot be rebuilt from its config.")


def _compile_like(keras, clone, model):
    """Compile ``clone`` as ``model`` was (optimizer, loss, metrics), as ``compile`` leaves a
    model: the optimizer's slot variables are made by the first ``fit``, not now (a copy's
    optimizer starts afresh either way; ``compile_from_config`` would build them)."""
    config = model.get_compile_config()
    if type(clone).compile is not keras.Model.compile:  # a custom compile: Keras' own route
        clone.compile_from_config(config)
    else:
        clone.compile(**keras.saving.deserialize_keras_object(config))


class ConstantInputWarning(RuntimeWarning):
    """BN channels that received constant input (variance 0) kept their stored statistics."""


def _write(layers, statistics, skipped):
    """Write what may be stored (:func:`varshift.bnstats.sound_statistics`); collect into
    ``skipped`` the layers whose channels kept their stored values."""
    sound, bad = sound_statistics(layers, statistics)
    assign_statistics(layers, sound)
    skipped.update(bad)


def _warn(skipped):
    if skipped:
        named = ", ".join(f"{name!r} ({n} of {c} channels)" for name, (n, c) in skipped.items())
        warnings.warn(f"recalibrate_bn: BatchNormalization layer(s) {named} received constant "
                      "input (variance 0, or statistics that are not finite) on `data`; those "
                      "channels keep their stored statistics (a variance of 0 is never "
                      "written).", ConstantInputWarning, stacklevel=4)


def _one_pass(model, data, noise, kwargs, inplace, skipped):
    """Measure on ``model`` itself (nothing is written while measuring, and its compiled pass
    is reused by later calls), then write into ``model`` or into a copy made only now."""
    measured = collect_moments(model, data, bn="batch", noise=noise,
                               desc="recalibrating BN (one pass)", **kwargs)
    target = model if inplace else copy_model(model)
    index = {id(layer): k for k, layer in enumerate(bn_layers(model))}
    layers = bn_layers(target)
    _write([layers[index[id(m.layer)]] for m in measured], [(m.mean, m.var) for m in measured],
           skipped)
    return target


def _sequential(model, data, kwargs, skipped):
    # The first pass measures every layer under the old statistics, checks the whole data
    # set and gives the call (graph) order. The first layer called depends on no other BN
    # layer, so its numbers are final; each later layer gets a pass of its own, made after
    # all earlier layers were corrected.
    batches = []
    if iter_batches(model, data, kwargs["batch_size"])[1] != 1 or kwargs.get("max_samples"):
        first = collect_moments(model, data, bn="moving", noise=False,
                                desc=f"BN 1/{len(bn_layers(model))}",
                                on_batch=lambda done, total: batches.append(done), **kwargs)
    if len(batches) <= 1:
        # All the data in one batch: BN normalising with that batch's own statistics uses
        # exactly the statistics the layer-by-layer passes would store (those of every value
        # the layer receives behind corrected upstream layers), so one batch-mode pass gives
        # every layer's final numbers: one pass (two where the batch count is not known
        # beforehand) instead of one per BN layer.
        first = collect_moments(model, data, bn="batch", noise=False,
                                desc="BN (one batch)", **kwargs)
        _write([m.layer for m in first], [(m.mean, m.var) for m in first], skipped)
        return
    _write([first[0].layer], [(first[0].mean, first[0].var)], skipped)
    for k, m in enumerate(first[1:], 2):
        (again,) = collect_moments(model, data, layers=[m.layer], bn="moving", noise=False,
                                   desc=f"BN {k}/{len(first)}", **kwargs)
        _write([m.layer], [(again.mean, again.var)], skipped)


@contract(model=MODEL, data=Data(), mode=Options(*MODES, removed={
    "simultaneous": "it compounds errors through the layers"}), noise=Boolean(),
          max_samples=Optional(COUNT), inplace=Boolean(), batch_size=COUNT, progress=Boolean(),
          seed=SEED)
def recalibrate_bn(model, data, *, mode="one_pass", noise=False, max_samples=None,
                   inplace=False, batch_size=256, progress=False, seed=0):
    r"""Re-estimate every BN layer's moving mean and variance from data ("Adjust BN").

    For each BatchNormalization layer and channel the stored statistics become

    .. math::
        \text{moving\_mean} = \frac1N \sum_j x_j, \qquad
        \text{moving\_var} = \frac1N \sum_j (x_j - \bar x)^2,

    over every value :math:`x_j` that reached the channel in the pass (samples times spatial
    positions), pooled exactly across batches (Chan et al.'s combination; averaging per-batch
    variances instead would miss the variance of the batch means). With
    ``mode="one_pass"`` the upstream BN layers normalise with each batch's own statistics
    while :math:`x_j` is collected; with ``"sequential"`` they use their new moving
    statistics. Keras' equivalent of PyTorch's ``update_bn``, fvcore's ``update_bn_stats``
    (PreciseBN) and AIMET's ``reestimate_bn_stats``, with the noise layers off by default.

    **Precision and max_samples.** The estimate's standard error shrinks as
    :math:`1/\sqrt{n}` in the number :math:`n` of samples read: the relative standard error of
    a variance is about :math:`\sqrt{2/n_\text{eff}}` (:math:`\sqrt{(\kappa-1)/n_\text{eff}}`
    for kurtosis :math:`\kappa`), with :math:`n_\text{eff}` between :math:`n` and :math:`n`
    times the spatial positions (pixels of one image are correlated). The peers' default of a
    few thousand samples (fvcore: 200 batches) gives about 2-3% on a Dense BN, less on a conv
    BN. ``one_pass`` also carries the batch-to-batch fluctuation of upstream normalisation,
    which shrinks as the evaluation ``batch_size`` grows.

    Args:
        model: a trained Keras model with BatchNormalization layers (nested models and
            custom layers included).
        data: numpy array (``(x, y)`` accepted, labels ignored), ``tf.data.Dataset`` or
            ``keras.utils.PyDataset``; use the training data, with its augmentation, as the
            paper does. Any NaN/infinity raises ``ValueError`` before anything is written.
        mode: ``"one_pass"`` (one pass, BN on batch statistics) or ``"sequential"`` (exact in
            inference mode, one pass per BN layer; one in all when ``data`` is a single batch).
        noise: ``one_pass`` only: keep every noise layer (Dropout, ..., Uout) **on** during the
            pass, as the peers named above do. It re-measures the training-time variance, so
            the shift remains; it exists to show that (docs, Table 3), not as a repair.
        max_samples: read at most this many samples of ``data`` (``None``: all).
        inplace: write into ``model`` itself instead of a copy.
        batch_size: batch size for numpy input (``one_pass``: the batch BN normalises with).
        progress: show progress bars on stderr.
        seed: with ``noise=True``, seed of the noise masks.

    Returns:
        The recalibrated model: a copy (``inplace=False``, made by clone + ``set_weights``
        or a save/load round trip) or ``model`` itself. If anything fails part-way (bad data,
        an interrupt), ``model`` is left exactly as it was, also with ``inplace=True``.

    Constant input. A channel whose values are all equal on ``data`` (variance 0), or whose
    statistics are not finite, keeps its stored mean and variance: a variance of 0 is never
    written. A :class:`ConstantInputWarning` names the layers and how many channels.

    Raises:
        ValueError: ``mode`` is not ``"one_pass"`` or ``"sequential"``
            (``"simultaneous"`` is refused with its reason: it compounds errors through the
            layers), ``noise=True`` with ``"sequential"``, no BN layer, or bad data.

    Example: ``Dropout -> BN`` (case (a)); with Dropout off, BN's input is the data itself, so
    the new moving statistics are its mean and biased variance. The model passed in is left
    as it was (``inplace=False``).

        >>> import numpy as np
        >>> from varshift._keras import to_numpy
        >>> from varshift.models import dropout_bn_model, seed_data
        >>> model, x = dropout_bn_model(5, 0.5), seed_data(1000)
        >>> fixed = recalibrate_bn(model, x)
        >>> bn = fixed.get_layer("bn")
        >>> bool(np.allclose(to_numpy(bn.moving_variance), x.var(axis=0), rtol=1e-5))
        True
        >>> bool(np.allclose(to_numpy(bn.moving_mean), x.mean(axis=0), rtol=1e-5))
        True
        >>> to_numpy(model.get_layer("bn").moving_variance).tolist()  # the original: untouched
        [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    data = _validate.model_and_data(model, data, batch_size=batch_size, max_samples=max_samples,
                                    seed=seed)
    noise = _validate.check_bool("noise", noise)
    inplace = _validate.check_bool("inplace", inplace)
    if noise and mode != "one_pass":
        raise ValueError(f"Argument `noise` applies to mode='one_pass' only; received "
                         f"noise={noise!r} with mode={mode!r}.")
    if not bn_layers(model):
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer; nothing to recalibrate.")

    kwargs = {"batch_size": batch_size, "max_samples": max_samples, "progress": progress}
    skipped = {}
    if mode == "one_pass":  # the model is only written once everything was measured and checked
        target = _one_pass(model, data, noise, {**kwargs, "seed": seed}, inplace, skipped)
        _warn(skipped)
        return target
    target = model if inplace else copy_model(model)
    layers = bn_layers(target)
    saved = save_statistics(layers)
    try:
        _sequential(target, data, kwargs, skipped)
    except BaseException:
        restore_statistics(layers, saved)
        raise
    _warn(skipped)
    return target
