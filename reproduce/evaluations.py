r"""The paper's end-of-run measurements, as evaluation hooks of :func:`varshift.train.run`.

The trainer trains and evaluates (test error, the shift, the training error in inference
mode); what one artefact of the paper needs beyond that is a hook here
(:mod:`varshift.train.evaluation`), named with its parameters in the run's config
(``config["evaluations"]``, part of the run's key):

- ``cos2`` (Table 1, Fig. 3): :func:`cos2_table` of the trained network, every run;
- ``adjust_bn`` (Table 3): the test error after each "Adjust BN" variant of
  :data:`ADJUST_MODES`, ``{"samples": n}`` training images read (``None``: the run's
  ``stats_samples``);
- ``fig6`` (Fig. 6): predictions of fixed training images in training and in inference mode,
  of the trained network and of its shift-free control, ``{"images": n, "logits": k}``.

:func:`train` runs a config with the hooks it names.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EVALUATIONS", "ADJUST_MODES", "evaluations_config", "hooks_for", "train",
           "cos2", "cos2_table", "adjust_bn", "fig6"]

#: Table 3's "Adjust BN" variants: record key suffix -> ``recalibrate_bn`` keywords
ADJUST_MODES = {"sequential": {"mode": "sequential"}, "one_pass": {"mode": "one_pass"},
                "one_pass_noise": {"mode": "one_pass", "noise": True}}

#: Adjust BN's ``sequential`` mode reads its images as one batch when there are at most this
#: many: exact, and one pass instead of one per BN layer (``varshift.recalibrate_bn``);
#: more images are read ``eval_batch_size`` at a time
SEQUENTIAL_ONE_BATCH = 2048

#: Fig. 6's fixed training images (the same for every seed) and the images whose logits are kept
FIG6_IMAGES, FIG6_LOGITS = 512, 16
#: the draw index of Fig. 6's noise (``varshift.train.reseed_noise``; no run trains this long)
FIG6_DRAW = 100_000


def _keras():
    import keras  # noqa: PLC0415  (a hook runs inside a training process: Keras is loaded)

    return keras


def cos2_table(model):
    r"""Mean :math:`\cos^2\theta` (Eq. 13) and :math:`d\cos^2\theta` of every Conv/Dense layer.

    Returns:
        A list of dicts ``{layer, d, mean_cos2, mean_d_cos2}`` in layer order, with ``d`` the
        fan-in (:func:`varshift.theory.fan_in`) and the means taken over output units.
    """
    from varshift import theory

    keras = _keras()
    rows = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            w = keras.ops.convert_to_numpy(layer.kernel)
            c = theory.cos2_theta(w)
            d = theory.fan_in(w)
            rows.append({"layer": layer.name, "d": d, "mean_cos2": float(np.nanmean(c)),
                         "mean_d_cos2": float(d * np.nanmean(c))})
    return rows


def cos2(model, context):
    """Hook ``cos2``: ``{"cos2": cos2_table(model)}`` (no parameters)."""
    return {"cos2": cos2_table(model)}


def adjust_bn(model, context):
    """Hook ``adjust_bn`` (Table 3): ``{"adjust_samples": n, "test_error_adjust_<mode>": %}``
    for every mode of :data:`ADJUST_MODES`.

    The ``samples`` training images (``context.training_sample``: the seeded sample the shift
    is measured on, augmented as in training) are read once into memory, so every mode sees
    the same images in the same order (``one_pass``: in batches of ``eval_batch_size``;
    ``sequential``: as one batch up to :data:`SEQUENTIAL_ONE_BATCH` images). Each mode
    re-estimates BN on the run's work copy of the model, reset to the trained values first;
    ``model`` itself is not written.
    """
    from varshift.diagnostics import recalibrate_bn

    n = context.params.get("samples")
    idx, ds = context.training_sample(context.config.stats_samples if n is None else n)
    x = np.concatenate([_keras().ops.convert_to_numpy(batch[0]) for batch in ds])
    out = {"adjust_samples": len(idx)}
    for name, kwargs in ADJUST_MODES.items():
        work = context.work_copy(model)
        size = len(x) if kwargs["mode"] == "sequential" and len(x) <= SEQUENTIAL_ONE_BATCH \
            else context.config.eval_batch_size
        recalibrate_bn(work, x, batch_size=size, inplace=True, **kwargs)
        out[f"test_error_adjust_{name}"] = context.test_error(work)
    return out


def fig6(model, context):
    """Hook ``fig6`` (Fig. 6): predictions of fixed training images in training and in
    inference mode, of the trained network (``shifted``) and of its shift-free control.

    The ``images`` (default :data:`FIG6_IMAGES`) are the first of a constant (seed-0)
    permutation of the training set, un-augmented and normalised as in training, scored as
    one batch. The control is the run's work copy of the network with BN's moving statistics
    re-estimated on these images with the noise off (``recalibrate_bn(mode="sequential")``):
    its inference mode has no variance shift. Both training-mode calls use the same seeded
    noise draw (``reseed_noise`` of the run's seed at :data:`FIG6_DRAW`, past any training
    epoch) and leave BN's non-trainable state as it was (``frozen_state``).

    Returns:
        ``{"fig6": {n_images, image_indices, labels, pred: {shifted_train,
        shifted_inference, control_train, control_inference}, logits: {shifted_train,
        shifted_inference}}}`` (logits of the first ``logits`` images, default
        :data:`FIG6_LOGITS`).
    """
    from varshift import data as vdata
    from varshift.diagnostics import recalibrate_bn
    from varshift.train import frozen_state, reseed_noise

    ops = _keras().ops
    n_images = context.params.get("images", FIG6_IMAGES)
    n_logits = context.params.get("logits", FIG6_LOGITS)
    idx = vdata.subset_indices(context.y_train, n_images, 0, stratified=False)
    xb = context.images(idx)
    control = recalibrate_bn(context.work_copy(model), xb, mode="sequential",
                             batch_size=len(idx), inplace=True)
    logits = {}
    for name, net in (("shifted", model), ("control", control)):
        with frozen_state(net):
            reseed_noise(net, context.seed, FIG6_DRAW)  # the same dropout draw for both
            logits[f"{name}_train"] = ops.convert_to_numpy(net(xb, training=True))
        logits[f"{name}_inference"] = ops.convert_to_numpy(net(xb, training=False))
    return {"fig6": {
        "n_images": len(idx), "image_indices": idx.tolist(),
        "labels": context.y_train[idx].astype(int).tolist(),
        "pred": {k: np.argmax(v, axis=-1).astype(int).tolist() for k, v in logits.items()},
        "logits": {k: logits[k][:n_logits].astype(float).tolist()
                   for k in ("shifted_train", "shifted_inference")}}}


#: hook name -> hook
EVALUATIONS = {"cos2": cos2, "adjust_bn": adjust_bn, "fig6": fig6}


def evaluations_config(*, adjust_samples=None, adjust=False, fig6=False):
    """A run config's ``evaluations``: ``cos2`` always, ``adjust_bn`` and ``fig6`` if asked."""
    out = {"cos2": {}}
    if adjust:
        out["adjust_bn"] = {"samples": adjust_samples}
    if fig6:
        out["fig6"] = {"images": FIG6_IMAGES, "logits": FIG6_LOGITS}
    return out


def hooks_for(config):
    """``{name: hook}`` for the hooks a run config names (``KeyError`` naming an unknown one)."""
    names = (config.get("evaluations") if isinstance(config, dict)
             else getattr(config, "evaluations", None)) or {}
    unknown = sorted(set(names) - set(EVALUATIONS))
    if unknown:
        raise KeyError(f"unknown evaluation hook(s) {unknown}; expected some of "
                       f"{sorted(EVALUATIONS)}")
    return {name: EVALUATIONS[name] for name in names}


def train(config, **kwargs):
    """``varshift.train.run(config, evaluations=hooks_for(config), **kwargs)``."""
    from varshift import train as vtrain

    return vtrain.run(config, evaluations=hooks_for(config), **kwargs)
