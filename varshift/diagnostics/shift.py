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

Numerics: per batch and channel, the sum and the sum of squares are accumulated in float32
over each sample (e.g. the 1024 positions of a 32x32 map) and in float64 across the batch,
in the same forward pass; batches are merged with Chan et al.'s parallel update of (count,
mean, sum of squared deviations) in float64. Where that would cancel (a channel whose mean^2
exceeds 64 times its variance, say 5 +- 0.01), the batch is first centred on its mean in a
second float32 pass. Measured relative error of the variance against numpy in float64: below
1e-6 (float32 activations themselves carry about 6e-8).

Keras stores the EMA of biased *batch* variances, which converges to :math:`\frac{m-1}{m}` times
the population variance for training batch size :math:`m`: a perfectly unshifted layer therefore
reads ``ratio`` :math:`\approx m/(m-1)` (1.03 at :math:`m = 32`), not exactly 1. See
:func:`varshift.theory.keras_expected_moving_variance`.
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from varshift import _validate
from varshift._graph import (
    all_bn_layers,
    layer_paths,
    record_calls,
    reduce_axes,
    signature_of,
)
from varshift._keras import keras as _load_keras
from varshift._keras import tf as _load_tf
from varshift._keras import to_numpy
from varshift._validate import check_positive_int

__all__ = ["measure_shift"]

log = logging.getLogger("varshift.diagnostics")
ILL = 64.0  # centre first when mean^2 > ILL * variance in some channel


# ------------------------------------------------------------------------------ data handling


def _model_input_shapes(model):
    """Per-input shapes (batch dim included, may hold ``None``), or ``None`` when unknown."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return [tuple(t.shape) for t in inputs]


def _check_shapes(model, x_struct):
    """Raise a clear ``ValueError`` when the data's sample shape does not fit the model."""
    tf = _load_tf()
    expected = _model_input_shapes(model)
    if expected is None:
        return
    got = [tuple(getattr(a, "shape", ())) for a in tf.nest.flatten(x_struct)]
    if len(got) != len(expected):
        raise ValueError(
            f"Argument `data` gives {len(got)} input array(s) per batch; model {model.name!r} "
            f"takes {len(expected)} input(s) of shapes {[e[1:] for e in expected]}."
        )
    for g, e in zip(got, expected, strict=True):
        ok = len(g) == len(e) and all(
            b is None or a is None or a == b for a, b in zip(g[1:], e[1:], strict=True))
        if not ok:
            raise ValueError(
                f"Argument `data` has samples of shape {tuple(g[1:])}; model {model.name!r} "
                f"expects samples of shape {tuple(e[1:])} (batch dimension excluded)."
            )


def _x_of(element):
    """Drop labels/sample weights: ``x`` from ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``."""
    keras = _load_keras()
    x, _, _ = keras.utils.unpack_x_y_sample_weight(element)
    return x


def _float_dtype(model):
    try:
        return model.inputs[0].dtype or "float32"
    except (AttributeError, ValueError, IndexError, TypeError):
        return "float32"


def iter_batches(model, data, batch_size):
    """``(iterator over input batches, number of batches or None)`` for any supported ``data``.

    Accepts a numpy array (or a tuple ``(x, y[, w])`` of arrays, or a dict/list of arrays for a
    multi-input model), a ``tf.data.Dataset`` (batched or not) and a Keras ``PyDataset``.
    """
    tf = _load_tf()
    keras = _load_keras()
    batch_size = check_positive_int("batch_size", batch_size)
    n_inputs = len(_model_input_shapes(model) or [None])

    if isinstance(data, tf.data.Dataset):
        spec = _x_of(data.element_spec)
        expected = _model_input_shapes(model)
        flat = tf.nest.flatten(spec)
        if expected is not None and len(flat) == len(expected) and all(
                s.shape.rank is not None and s.shape.rank == len(e) - 1
                for s, e in zip(flat, expected, strict=True)):
            data = data.batch(batch_size)  # an unbatched dataset of single samples
        card = int(data.cardinality())
        total = card if card >= 0 else None
        return (_x_of(el) for el in data), total

    if isinstance(data, keras.utils.PyDataset):
        total = len(data)
        return (_x_of(data[i]) for i in range(total)), total

    if isinstance(data, tuple) and n_inputs == 1 and 1 <= len(data) <= 3:
        data = data[0]  # (x, y) or (x, y, w) as given to fit: labels ignored
    if isinstance(data, (np.ndarray, list, dict)) or hasattr(data, "__array__"):
        dtype = _float_dtype(model)

        def as_array(a):
            a = np.asarray(a)
            return a.astype(dtype) if a.dtype.kind == "f" or a.dtype.kind in "iu" else a

        x = tf.nest.map_structure(as_array, data) if isinstance(data, (list, dict)) \
            else as_array(data)
        flat = tf.nest.flatten(x)
        if any(a.ndim == 0 for a in flat):
            raise ValueError(
                "Argument `data` must hold a batch dimension; received a scalar array.")
        n = len(flat[0])
        if n == 0:
            raise ValueError("Argument `data` is empty (0 samples); nothing to measure.")
        starts = range(0, n, batch_size)
        return (tf.nest.map_structure(lambda a, s=s: a[s:s + batch_size], x)
                for s in starts), len(starts)

    raise TypeError(
        "Argument `data` must be a numpy array, a tf.data.Dataset or a keras.utils.PyDataset; "
        f"received an object of type {type(data).__name__}."
    )


# ------------------------------------------------------------------------- moment collection


def _chan(acc, n_b, mean_b, m2_b):
    """Chan et al.'s parallel combination of (count, mean, M2) summaries, in float64."""
    if acc is None:
        return n_b, mean_b, m2_b
    n_a, mean_a, m2_a = acc
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta**2 * (n_a * n_b / n)


def _progress_bar(progress, total, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, disable=not progress,
                leave=False)


def collect_input_moments(model, data, *, layers=None, batch_size=256, progress=False,
                          desc="measuring BN inputs"):
    """Exact per-channel mean and biased variance of BN layers' inputs, one pass, inference mode.

    All requested BN layers are measured in the same forward pass of each batch. A BN layer
    called several times per forward pass (shared) pools all its calls.

    Args:
        model: a Keras model (Sequential, Functional, nested or with custom layers).
        data: see :func:`iter_batches`.
        layers: the BN layers to measure (default: all).
        batch_size: batch size for numpy input.
        progress: show a tqdm bar on stderr.
        desc: the bar's label.

    Returns:
        ``list`` of ``(layer, count, mean, var)`` in the order the layers are first called
        during the forward pass (graph order); ``mean``/``var`` are float64 arrays per channel.
    """
    tf = _load_tf()
    layers = all_bn_layers(model) if layers is None else list(layers)
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer; nothing to measure.")
    batches, total = iter_batches(model, data, batch_size)
    try:
        first = next(batches)
    except StopIteration:
        raise ValueError("Argument `data` yielded no batch; nothing to measure.") from None
    _check_shapes(model, first)

    order = []  # layers in call order, filled while tracing

    def step(x):
        with record_calls(layers) as records:
            model(x, training=False)
        order.clear()
        stats = []
        for rec in records:
            t = tf.cast(rec.first_input, "float32")
            axes = reduce_axes(rec.layer, len(t.shape))
            stage = _two_stage_sum(tf, axes)
            s1 = stage(t)
            n = tf.cast(tf.size(t) // tf.size(s1), "float64")  # values per channel
            mean = s1 / n
            m2_raw = stage(tf.square(t)) - s1 * mean
            # Sum and sum of squares need no broadcast pass and are exact enough unless the
            # mean dwarfs the spread (cancellation). Then, and only then, a second pass
            # centres the batch on its mean first.
            ill = tf.reduce_any(tf.square(mean) * n > ILL * m2_raw)

            def centred(t=t, mean=mean, stage=stage, n=n):
                centre = tf.cast(mean, t.dtype)  # the deviations are taken from this value
                dev = t - centre
                mean_dev = stage(dev) / n
                return (tf.cast(centre, "float64"), mean_dev,
                        stage(tf.square(dev)) - tf.square(mean_dev) * n)

            def direct(mean=mean, m2=m2_raw):
                return mean, tf.zeros_like(mean), m2

            shift, mean_dev, m2 = tf.cond(ill, centred, direct)
            flat = [tf.reshape(v, [-1]) for v in (shift, mean_dev, tf.maximum(m2, 0.0))]
            order.append(rec.layer)
            stats.append((n, *flat))
        return stats

    fn = tf.function(step, input_signature=[signature_of(first)], autograph=False)
    acc = {}
    with _progress_bar(progress, total, desc) as bar:
        for xb in _chain(first, batches):
            out = fn(xb)
            for layer, (count, shift, mean_dev, m2) in zip(order, out, strict=True):
                mean = shift.numpy().astype("float64") + mean_dev.numpy().astype("float64")
                summary = (float(count.numpy()), mean, m2.numpy().astype("float64"))
                if summary[0] == 0:
                    continue
                acc[id(layer)] = _chan(acc.get(id(layer)), *summary)
            bar.update(1)
    result, seen = [], set()
    for layer in order:
        if id(layer) in seen or id(layer) not in acc:
            continue
        seen.add(id(layer))
        n, mean, m2 = acc[id(layer)]
        result.append((layer, n, mean, m2 / n))  # biased: divide by the count, as Keras
    missing = [layer.name for layer in layers if id(layer) not in seen]
    if missing:
        log.warning("BatchNormalization layer(s) %s are not called in the forward pass; "
                    "they are not measured.", ", ".join(missing))
    return result


def _two_stage_sum(tf, axes):
    """Sum over ``axes`` (keepdims): float32 within each sample, then float64 over the batch.

    Partial sums of one sample's values (e.g. the 1024 positions of a 32x32 map) stay short,
    so float32 loses little; adding them up across the batch in float64 loses nothing more.
    """
    inner = [a for a in axes if a != 0]

    def stage(t):
        if inner:
            t = tf.reduce_sum(t, axis=inner, keepdims=True)
        t = tf.cast(t, "float64")
        return tf.reduce_sum(t, axis=[0], keepdims=True) if 0 in axes else t

    return stage


def _chain(first, rest):
    yield first
    yield from rest


# ------------------------------------------------------------------------------- public API


def _ratio_both_ways(real, moving):
    """``max(real/moving, moving/real)``; NaN when either is 0 or their signs differ."""
    real, moving = float(real), float(moving)
    if real == 0 or moving == 0 or (real > 0) != (moving > 0):
        return float("nan")
    r = real / moving
    return max(r, 1.0 / r)


def measure_shift(model, data, *, batch_size=256, per_channel=False, progress=False):
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
    parallel formula in float64. All BN layers are measured in one forward pass per batch
    (their inputs are recorded while the model is traced once); nested models and custom layers
    that contain BN layers are handled.

    Args:
        model: a trained Keras model with BatchNormalization layers.
        data: the inputs: a numpy array (``(x, y)`` tuples are accepted, labels ignored), a
            ``tf.data.Dataset`` yielding ``x``, ``(x, y)`` or ``(x, y, w)`` (batched, or single
            samples, which are then batched) or a ``keras.utils.PyDataset``. Include the
            training augmentation in it to reproduce the paper exactly.
        batch_size: batch size for numpy input (the result does not depend on it).
        per_channel: add columns ``*_channels`` holding the per-channel numpy arrays.
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

    Example:
        >>> from varshift.models import dropout_bn_model, seed_data
        >>> model = dropout_bn_model(5, rate=0.5)
        >>> df = measure_shift(model, seed_data(1000))
        >>> list(df[["bn_layer", "ratio"]].columns)
        ['bn_layer', 'ratio']
    """
    _validate.model_and_data(model, data)
    import pandas as pd

    paths = layer_paths(model)
    rows = []
    for i, (layer, n, mean, var) in enumerate(
            collect_input_moments(model, data, batch_size=batch_size, progress=progress), 1):
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
