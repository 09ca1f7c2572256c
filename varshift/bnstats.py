r"""The BatchNormalization-statistics engine: everything that computes or writes BN statistics.

One module serves :func:`varshift.measure_shift`, :func:`varshift.recalibrate_bn`,
:func:`varshift.correct_direct`, :func:`varshift.models.converged_bn_statistics` and the
:class:`varshift.callbacks.RecalibrateBN` callback (in the spirit of fvcore's
``precise_bn.py``):

- **finding layers**: :func:`bn_layers` (every BatchNormalization layer reachable from a model:
  nested models and custom layers included) and :func:`noise_kind` / :func:`noise_layers`;
- **data**: :func:`iter_batches` walks a numpy array, a ``tf.data.Dataset`` or a
  ``keras.utils.PyDataset`` batch by batch, checks the sample shape
  (:func:`check_input_shapes`) and, while the batch is in the forward pass anyway, that every
  value is finite;
- **moments**: :func:`collect_moments` runs the model once per batch and records, for every BN
  layer, per channel the count, the exact pooled mean and biased variance (Chan et al.'s
  parallel combination, :func:`chan_combine`) and the average of the per-batch mean and
  biased variance. BN layers use either their stored statistics (``bn="moving"``: inference)
  or the statistics of the batch at hand (``bn="batch"``: what ``fit`` does), and noise layers
  are forced off or on (``noise=``), independently of each other;
- **writing**: :func:`save_statistics` / :func:`assign_statistics`.

Nothing here modifies a model while it measures: BN layers in batch mode normalise with the
batch statistics computed by the engine itself, so Keras never updates a moving average.

Pooling versus averaging. For a channel that receives the values :math:`x_1..x_N` of a pass
(every sample, and every spatial position of a convolution), split in batches :math:`b` of
:math:`n_b` values with means :math:`\bar x_b` and biased variances :math:`s_b^2`,

.. math::
    \bar x = \frac1N \sum_b n_b \bar x_b, \qquad
    \sigma^2 = \frac1N \sum_b n_b \left(s_b^2 + (\bar x_b - \bar x)^2\right),

the pooled variance, includes the variance of the batch means; the plain average of
:math:`s_b^2` does not (it is what Keras' moving average converges to, :math:`\frac{m-1}{m}`
times :math:`\sigma^2` with :math:`m` values per channel and batch).
"""

from __future__ import annotations

import contextlib
import logging
import sys

import numpy as np

from varshift._graph import CallPatches, all_layers, signature_of
from varshift._keras import keras as _load_keras
from varshift._keras import tf as _load_tf
from varshift._keras import to_numpy
from varshift._validate import check_positive_int

__all__ = [
    "is_bn", "bn_layers", "noise_kind", "noise_layers", "reduce_axes", "values_per_channel",
    "check_input_shapes", "iter_batches", "chan_combine", "LayerMoments", "collect_moments",
    "save_statistics", "assign_statistics", "force_noise",
]

log = logging.getLogger("varshift.bnstats")
ILL = 64.0  # centre first when mean^2 > ILL * variance in some channel


# ------------------------------------------------------------------------------ finding layers


def is_bn(layer) -> bool:
    """Whether ``layer`` is a Keras ``BatchNormalization`` layer (subclasses included)."""
    return isinstance(layer, _load_keras().layers.BatchNormalization)


def bn_layers(model):
    """Every BatchNormalization layer reachable from ``model`` (nested models and custom layers
    included), each once, depth first in the order the layers were added."""
    return [layer for layer in all_layers(model) if is_bn(layer)]


def noise_kind(layer):
    """The kind of a noise layer (a key of :data:`varshift.noise.NOISES`: ``dropout``,
    ``spatial_dropout``, ``gaussian_dropout``, ``alpha_dropout``, ``gaussian_noise``,
    ``uout``) or ``None`` for any other layer."""
    from varshift import noise

    kind = noise.kind_of(layer)
    return None if kind is None else kind.name


def noise_layers(model):
    """Every noise layer (see :func:`noise_kind`) reachable from ``model``."""
    return [layer for layer in all_layers(model) if noise_kind(layer) is not None]


def reduce_axes(layer, ndim: int):
    """The axes a BN layer reduces over for an input of rank ``ndim`` (all but ``layer.axis``)."""
    axis = layer.axis
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    axes = {a % ndim for a in axes}
    return [i for i in range(ndim) if i not in axes]


def values_per_channel(layer, input_shape, batch_size: int) -> int:
    """How many values one channel of BN ``layer`` averages per batch: :math:`m` in Keras'
    biased batch variance, ``batch_size`` times every reduced non-batch dimension (H x W for
    a 2-D convolution's output)."""
    axes = reduce_axes(layer, len(input_shape))
    return int(batch_size) * int(np.prod([int(input_shape[a]) for a in axes if a != 0]))


# ---------------------------------------------------------------------------------------- data


def _model_input_shapes(model):
    """Per-input shapes (batch dim included, may hold ``None``), or ``None`` when unknown."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    return [tuple(t.shape) for t in inputs] if inputs else None


def check_input_shapes(model, x_struct):
    """Raise a one-line ``ValueError`` when a batch's sample shape does not fit the model."""
    tf = _load_tf()
    expected = _model_input_shapes(model)
    if expected is None:
        return
    got = [tuple(getattr(a, "shape", ())) for a in tf.nest.flatten(x_struct)]
    if len(got) != len(expected):
        raise ValueError(
            f"Argument `data` gives {len(got)} input array(s) per batch; model {model.name!r} "
            f"takes {len(expected)} input(s) of shapes {[e[1:] for e in expected]}.")
    for g, e in zip(got, expected, strict=True):
        ok = len(g) == len(e) and all(
            b is None or a is None or a == b for a, b in zip(g[1:], e[1:], strict=True))
        if not ok:
            raise ValueError(
                f"Argument `data` has samples of shape {tuple(g[1:])}; model {model.name!r} "
                f"expects samples of shape {tuple(e[1:])} (batch dimension excluded).")


def _x_of(element):
    """Drop labels/sample weights: ``x`` from ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``."""
    x, _, _ = _load_keras().utils.unpack_x_y_sample_weight(element)
    return x


def _float_dtype(model):
    try:
        return model.inputs[0].dtype or "float32"
    except (AttributeError, ValueError, IndexError, TypeError):
        return "float32"


def _dataset_batches(model, data, batch_size):
    spec = _x_of(data.element_spec)
    expected = _model_input_shapes(model)
    flat = _load_tf().nest.flatten(spec)
    if expected is not None and len(flat) == len(expected) and all(
            s.shape.rank is not None and s.shape.rank == len(e) - 1
            for s, e in zip(flat, expected, strict=True)):
        data = data.batch(batch_size)  # an unbatched dataset of single samples
    card = int(data.cardinality())
    return (_x_of(el) for el in data), (card if card >= 0 else None)


def _array_batches(model, data, batch_size):
    tf = _load_tf()
    dtype = _float_dtype(model)

    def as_array(a):
        a = np.asarray(a)
        return a.astype(dtype) if a.dtype.kind in "fiu" else a

    x = tf.nest.map_structure(as_array, data) if isinstance(data, (list, dict)) \
        else as_array(data)
    flat = tf.nest.flatten(x)
    if any(a.ndim == 0 for a in flat):
        raise ValueError("Argument `data` must hold a batch dimension; received a scalar array.")
    n = len(flat[0])
    if n == 0:
        raise ValueError("Argument `data` is empty (0 samples); nothing to measure.")
    starts = range(0, n, batch_size)
    return (tf.nest.map_structure(lambda a, s=s: a[s:s + batch_size], x) for s in starts), \
        len(starts)


def iter_batches(model, data, batch_size):
    """``(iterator over input batches, number of batches or None)`` for any supported ``data``.

    Accepts a numpy array (or a tuple ``(x, y[, w])`` of arrays, or a dict/list of arrays for a
    multi-input model), a ``tf.data.Dataset`` (batched, or single samples, which are batched
    here) and a Keras ``PyDataset``. Labels and sample weights are dropped.
    """
    tf = _load_tf()
    keras = _load_keras()
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(data, tf.data.Dataset):
        return _dataset_batches(model, data, batch_size)
    if isinstance(data, keras.utils.PyDataset):
        total = len(data)
        return (_x_of(data[i]) for i in range(total)), total
    if isinstance(data, tuple) and len(_model_input_shapes(model) or [None]) == 1 \
            and 1 <= len(data) <= 3:
        data = data[0]  # (x, y) or (x, y, w) as given to fit: labels ignored
    if isinstance(data, (np.ndarray, list, dict)) or hasattr(data, "__array__"):
        return _array_batches(model, data, batch_size)
    raise TypeError(
        "Argument `data` must be a numpy array, a tf.data.Dataset or a keras.utils.PyDataset; "
        f"received an object of type {type(data).__name__}.")


def _batch_len(xb) -> int:
    return int(_load_tf().nest.flatten(xb)[0].shape[0])


def _capped(batches, max_samples):
    """Yield ``(offset, batch)``; stop after ``max_samples`` samples (the last batch cut)."""
    tf = _load_tf()
    offset = 0
    for batch in batches:
        n = _batch_len(batch)
        if max_samples is not None and offset + n > max_samples:
            n = max_samples - offset
            batch = tf.nest.map_structure(lambda a, n=n: a[:n], batch)  # noqa: PLW2901
        if n > 0:
            yield offset, batch
        offset += n
        if max_samples is not None and offset >= max_samples:
            return


# ------------------------------------------------------------------------------------- moments


def chan_combine(acc, n_b, mean_b, m2_b):
    r"""Chan et al.'s parallel combination of two ``(count, mean, M2)`` summaries (float64).

    With :math:`\delta = \bar x_b - \bar x_a`: :math:`n = n_a + n_b`,
    :math:`\bar x = \bar x_a + \delta\,n_b/n`, :math:`M_2 = M_{2,a} + M_{2,b}
    + \delta^2 n_a n_b / n`. ``acc`` may be ``None`` (nothing accumulated yet).
    """
    if acc is None:
        return n_b, mean_b, m2_b
    n_a, mean_a, m2_a = acc
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta**2 * (n_a * n_b / n)


class LayerMoments:
    """What :func:`collect_moments` measured for one BN layer (per-channel float64 arrays).

    ``layer`` (the BatchNormalization layer); ``count`` (values per channel pooled over the
    pass: samples x positions x calls); ``mean`` and ``var`` (exact pooled mean and biased,
    divide-by-count, variance); ``batch_mean`` and ``batch_var`` (average over batches and
    calls of each batch's mean and biased variance: what Keras' moving averages converge
    to); ``n_batches`` (how many batch statistics were averaged); ``input_shape`` (the
    layer's input shape in the first batch).
    """

    __slots__ = ("layer", "count", "mean", "var", "batch_mean", "batch_var", "n_batches",
                 "input_shape", "_acc", "_sums")

    def __init__(self, layer):
        self.layer = layer
        self._acc = None
        self._sums = None
        self.n_batches = 0
        self.input_shape = None

    def add(self, n, mean, m2):
        self._acc = chan_combine(self._acc, n, mean, m2)
        batch = (mean, m2 / n)
        self._sums = batch if self._sums is None else tuple(
            s + b for s, b in zip(self._sums, batch, strict=True))
        self.n_batches += 1

    def finish(self):
        self.count, self.mean, m2 = self._acc
        self.var = m2 / self.count  # biased: divide by the count, as Keras
        self.batch_mean, self.batch_var = (s / self.n_batches for s in self._sums)
        return self


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


def _batch_moments(tf, layer, x):
    """``(n, centre, mean_dev, M2)`` per channel (keepdims shapes) of BN ``layer``'s input ``x``.

    Sum and sum of squares need no broadcast pass and are exact enough unless the mean dwarfs
    the spread (cancellation: mean^2 > 64 variance); then, and only then, the batch is centred
    on its mean in a second float32 pass. Relative error of the variance against float64
    numpy: below 1e-6.
    """
    t = tf.cast(x, "float32")
    stage = _two_stage_sum(tf, reduce_axes(layer, len(t.shape)))
    s1 = stage(t)
    n = tf.cast(tf.size(t) // tf.size(s1), "float64")  # values per channel
    mean = s1 / n
    m2_raw = stage(tf.square(t)) - s1 * mean
    ill = tf.reduce_any(tf.square(mean) * n > ILL * m2_raw)

    def centred():
        centre = tf.cast(mean, t.dtype)  # the deviations are taken from this value
        dev = t - centre
        mean_dev = stage(dev) / n
        return tf.cast(centre, "float64"), mean_dev, stage(tf.square(dev)) - tf.square(mean_dev) * n

    def direct():
        return mean, tf.zeros_like(mean), m2_raw

    centre, mean_dev, m2 = tf.cond(ill, centred, direct)
    return n, centre, mean_dev, tf.maximum(m2, 0.0)


def _normalize_with(tf, layer, x, mean, var):
    """BN ``layer``'s training-mode output: ``x`` normalised with the given batch moments."""
    xf = tf.cast(x, "float32")
    axes = reduce_axes(layer, len(xf.shape))
    shape = [1 if i in axes else -1 for i in range(len(xf.shape))]
    if sum(s == -1 for s in shape) > 1:  # several channel axes: broadcast the full shape
        shape = [1 if i in axes else int(xf.shape[i]) for i in range(len(xf.shape))]
    out = (xf - tf.cast(mean, "float32")) * tf.math.rsqrt(tf.cast(var, "float32") + layer.epsilon)
    if layer.scale:
        out = out * tf.reshape(tf.cast(layer.gamma.value, "float32"), shape)
    if layer.center:
        out = out + tf.reshape(tf.cast(layer.beta.value, "float32"), shape)
    return tf.cast(out, x.dtype)


class _intercept:  # noqa: N801  (a context manager that reads like a function)
    """Replace the ``call`` of BN layers (batch statistics, recorded) and noise layers (forced
    on/off) while a ``tf.function`` is traced; restores everything on exit."""

    def __init__(self, bn, measured, bn_mode, noise, noise_list):
        self.bn, self.measured, self.bn_mode, self.noise = bn, measured, bn_mode, noise
        self.noise_list = noise_list
        self.records = []
        self._patches = CallPatches()

    def _bn_call(self, layer, original):
        tf, records, measure = _load_tf(), self.records, id(layer) in self.measured
        batch = self.bn_mode == "batch"

        def call(*args, **kwargs):
            x = args[0] if args else kwargs["inputs"]
            moments = _batch_moments(tf, layer, x) if (measure or batch) else None
            if measure:
                records.append((layer, tuple(x.shape), moments))
            if not batch:
                return original(*args, **kwargs)
            n, centre, mean_dev, m2 = moments
            return _normalize_with(tf, layer, x, centre + mean_dev, m2 / n)

        return call

    def __enter__(self):
        for layer in self.bn:
            self._patches.set(layer, self._bn_call(layer, layer.call))
        for layer in self.noise_list:
            self._patches.set(layer, _forced(layer.call, self.noise))
        return self.records

    def __exit__(self, *exc):
        self._patches.restore()
        return False


def _forced(original, on: bool):
    def call(*args, **kwargs):
        kwargs["training"] = bool(on)
        return original(*args, **kwargs)

    return call


@contextlib.contextmanager
def force_noise(model, on: bool):
    """Context manager: every noise layer of ``model`` runs as if ``training=on`` on each call,
    whatever the model is called with (eager calls, ``predict``, new traces)."""
    patches = CallPatches()
    for layer in noise_layers(model):
        patches.set(layer, _forced(layer.call, on))
    try:
        yield
    finally:
        patches.restore()


def _finite_check(tf, x):
    """``(number of non-finite values, first sample holding one)`` of a batch (0, 0 if none)."""
    count = tf.constant(0, "int64")
    first = tf.constant(-1, "int64")
    for a in tf.nest.flatten(x):
        if not a.dtype.is_floating:
            continue
        bad = tf.logical_not(tf.math.is_finite(a))
        per_sample = tf.reduce_any(tf.reshape(bad, [tf.shape(a)[0], -1]), axis=1)
        count += tf.reduce_sum(tf.cast(bad, "int64"))
        idx = tf.argmax(tf.cast(per_sample, "int32"), output_type="int64")
        first = tf.where(tf.reduce_any(per_sample) & ((first < 0) | (idx < first)), idx, first)
    return count, first


def _reseeded(layers, seed):
    """Swap in fresh seed generators (``seed + k``) for ``layers``; return the originals."""
    keras = _load_keras()
    saved = []
    for k, layer in enumerate(layers):
        if hasattr(layer, "seed_generator"):
            saved.append((layer, layer.seed_generator))
            object.__setattr__(layer, "seed_generator",
                               keras.random.SeedGenerator(int(seed) + k))
    return saved


def _progress_bar(progress, total, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, disable=not progress,
                leave=False)


def _traced_step(model, layers, bn, noise, noise_list):
    """A ``tf.function`` running ``model`` on a batch with the engine's interceptions, plus
    the list that receives, while tracing, the measured layers in call order."""
    tf = _load_tf()
    order = []
    measured = {id(layer) for layer in layers}
    everything = bn_layers(model) if bn == "batch" else list(layers)

    def step(x):
        with _intercept(everything, measured, bn, noise, noise_list) as records:
            model(x, training=False)
        count, first = _finite_check(tf, x)
        parts = [tf.cast(tf.stack([count, first]), "float64")]
        order.clear()
        for layer, shape, (n, c, d, m2) in records:
            mean = tf.reshape(c + d, [-1])
            order.append((layer, shape, int(mean.shape[0])))
            parts += [tf.reshape(n, [1]), mean, tf.reshape(m2, [-1])]
        return tf.concat(parts, axis=0)  # one transfer per batch

    return step, order


def collect_moments(model, data, *, layers=None, bn="moving", noise=False, batch_size=256,
                    max_samples=None, seed=None, progress=False, on_batch=None,
                    desc="measuring BN inputs"):
    """Per-channel moments of BN layers' inputs over one pass of ``data``; nothing is modified.

    Args:
        model: a Keras model (Sequential, Functional, nested or with custom layers).
        data: see :func:`iter_batches`.
        layers: the BN layers to measure (default: all of them).
        bn: ``"moving"`` (BN layers use their stored statistics: inference) or ``"batch"``
            (every BN layer normalises with the batch at hand: training-mode BN, without any
            update of the moving averages).
        noise: ``False`` forces every noise layer off, ``True`` on (masks drawn as in
            ``fit``); everything else runs in inference mode.
        batch_size: batch size for numpy input.
        max_samples: read at most this many samples (``None``: all).
        seed: with ``noise=True``, seed of the noise layers' masks (``None``: their own).
        progress: show a tqdm bar on stderr.
        on_batch: optional callable ``on_batch(done, total)`` after each batch.
        desc: the bar's label.

    Returns:
        ``list`` of :class:`LayerMoments` in call order (graph order). A BN layer called
        several times per forward pass pools all its calls.

    Raises:
        ValueError: a batch holds NaN or infinity (one line naming ``data``, how many
            values, and the first sample's index in the whole data set), before anything
            is returned; the data does not fit the model; or no BN layer is called.
    """
    tf = _load_tf()
    layers = bn_layers(model) if layers is None else list(layers)
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer; nothing to measure.")
    if bn not in ("moving", "batch"):
        raise ValueError(f"Argument `bn` must be 'moving' or 'batch'; received bn={bn!r}.")
    batches, total = iter_batches(model, data, batch_size)
    batches = _capped(batches, max_samples)
    first = next(batches, None)
    if first is None:
        raise ValueError("Argument `data` yielded no batch; nothing to measure.")
    check_input_shapes(model, first[1])
    noise_list = noise_layers(model)
    reseeded = _reseeded(noise_list, seed) if (noise and seed is not None) else []
    try:
        step, order = _traced_step(model, layers, bn, noise, noise_list)
        fn = tf.function(step, input_signature=[signature_of(first[1])], autograph=False)
        acc = _accumulate(fn, order, _chain(first, batches), total, progress, on_batch, desc)
    finally:
        for layer, generator in reseeded:
            object.__setattr__(layer, "seed_generator", generator)
    return _finish(acc, order, layers)


def _accumulate(fn, order, batches, total, progress, on_batch, desc):
    acc = {}
    with _progress_bar(progress, total, desc) as bar:
        for done, (offset, xb) in enumerate(batches, 1):
            out = fn(xb).numpy()
            if out[0] > 0:
                raise ValueError(
                    f"Argument `data` must be finite; it holds {int(out[0])} NaN or infinite "
                    f"value(s) in the batch starting at sample {offset}, the first in sample "
                    f"{offset + int(out[1])}.")
            at = 2
            for layer, shape, channels in order:
                n, mean, m2 = out[at], out[at + 1:at + 1 + channels], \
                    out[at + 1 + channels:at + 1 + 2 * channels]
                at += 1 + 2 * channels
                if n == 0:
                    continue
                if id(layer) not in acc:
                    acc[id(layer)] = LayerMoments(layer)
                    acc[id(layer)].input_shape = shape
                acc[id(layer)].add(float(n), mean, m2)
            bar.update(1)
            if on_batch is not None:
                on_batch(done, total)
    return acc


def _finish(acc, order, layers):
    result, seen = [], set()
    for layer, *_ in order:
        if id(layer) in seen or id(layer) not in acc:
            continue
        seen.add(id(layer))
        result.append(acc[id(layer)].finish())
    missing = [layer.name for layer in layers if id(layer) not in seen]
    if missing:
        log.warning("BatchNormalization layer(s) %s are not called in the forward pass; "
                    "they are not measured.", ", ".join(missing))
    return result


def _chain(first, rest):
    yield first
    yield from rest


# ------------------------------------------------------------------------------------- writing


def save_statistics(layers):
    """``[(moving_mean, moving_variance)]`` numpy copies of BN ``layers``' stored statistics."""
    return [(to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy())
            for bn in layers]


def assign_statistics(layers, statistics):
    """Write ``[(mean, variance)]`` (per-channel arrays) into BN ``layers``' moving statistics.

    All arrays are converted first, so a shape error leaves every layer as it was.
    """
    values = []
    for bn, (mean, var) in zip(layers, statistics, strict=True):
        values.append((np.reshape(mean, bn.moving_mean.shape).astype(bn.moving_mean.dtype),
                       np.reshape(var, bn.moving_variance.shape).astype(bn.moving_variance.dtype)))
    for bn, (mean, var) in zip(layers, values, strict=True):
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(var)


def shared_bn_layers(model):
    """Names of the BatchNormalization layers called more than once in one forward pass.

    A shared BN layer (the same weights called on two inputs) stores moving statistics that
    mix every call's input, so no per-call statement about them holds (Eq. 7's inverse, a
    per-call shift). Found by tracing the model once in inference mode; nothing is changed.
    A model without a known input shape (subclassed) gives an empty set.
    """
    from collections import Counter

    from varshift._graph import model_input_signature, record_calls

    tf = _load_tf()
    layers = bn_layers(model)
    if not layers:
        return set()
    try:
        spec = model_input_signature(model)
    except ValueError:
        return set()
    with record_calls(layers) as records:
        tf.function(lambda x: model(x, training=False), input_signature=[spec],
                    autograph=False).get_concrete_function()
    counts = Counter(id(rec.layer) for rec in records)
    return {layer.name for layer in layers if counts[id(layer)] > 1}
