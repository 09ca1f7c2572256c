r"""The BatchNormalization-statistics engine: everything that computes or writes BN statistics.

One module serves :func:`varshift.measure_shift`, :func:`varshift.recalibrate_bn`,
:func:`varshift.correct_direct`, :func:`varshift.models.converged_bn_statistics` and the
:class:`varshift.callbacks.RecalibrateBN` callback (in the spirit of fvcore's
``precise_bn.py``):

- **finding layers**: :func:`bn_layers` (every BatchNormalization layer reachable from a model:
  nested models and custom layers included) and :func:`noise_kind` / :func:`noise_layers`;
- **data**: :func:`iter_batches` walks a numpy array, a ``tf.data.Dataset`` (where TensorFlow
  is installed) or a ``keras.utils.PyDataset`` batch by batch, checks the sample shape
  (:func:`check_input_shapes`) and, while the batch is in the forward pass anyway, that every
  value is finite;
- **moments**: :func:`collect_moments` runs the model once per batch and records, for every BN
  layer, per channel the count, the exact pooled mean and biased variance (Chan et al.'s
  parallel combination, :func:`chan_combine`) and the average of the per-batch mean and
  biased variance. BN layers use either their stored statistics (``bn="moving"``: inference)
  or the statistics of the batch at hand (``bn="batch"``: what ``fit`` does), and noise layers
  are forced off or on (``noise=``), independently of each other. :func:`check_moments`
  refuses moments that are not finite or rest on a single value per channel;
- **writing**: :func:`save_statistics` / :func:`assign_statistics`, which refuses any mean that
  is not finite and any variance that is zero, negative or not finite
  (:func:`sound_statistics` keeps the stored values in such channels instead).

Backends. The per-batch work is written with ``keras.ops`` and runs on every Keras backend,
compiled once per model and configuration by a small wrapper per backend (``tf.function`` on
TensorFlow, ``jax.jit`` over ``model.stateless_call`` on JAX, eager calls under
``torch.no_grad()`` on PyTorch) and reused by later calls. Inside the pass everything is
float32 and per sample (sums over a sample's positions); the sums are combined across the batch
and across batches in float64 on the host (numpy), so JAX's default float32 costs nothing.

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

from varshift._graph import CallPatches, all_layers, is_bn, model_input_shapes
from varshift._keras import backend as _backend
from varshift._keras import keras as _load_keras
from varshift._keras import tf_if_present, to_numpy
from varshift._validate import check_positive_int

__all__ = [
    "is_bn", "bn_layers", "shared_bn_layers", "noise_kind", "noise_layers", "reduce_axes",
    "values_per_channel", "check_input_shapes", "iter_batches", "chan_combine",
    "LayerMoments", "collect_moments", "check_moments", "save_statistics",
    "assign_statistics", "sound_statistics", "unsound_channels", "restore_statistics",
    "time_distributed_layers", "force_noise", "reseeded",
]

log = logging.getLogger("varshift.bnstats")
_model_input_shapes = model_input_shapes  # a private alias of model_input_shapes


# ------------------------------------------------------------------------------ finding layers


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

    Counted on Keras' own graph (``varshift._graph.graph_calls``, nested models
    expanded), and from each layer's inbound nodes for layers inside custom layers.
    """
    from varshift._graph import graph_calls

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


def _flatten(x):
    return _load_keras().tree.flatten(x)


def _map(fn, x):
    return _load_keras().tree.map_structure(fn, x)


def check_input_shapes(model, x_struct):
    """Raise a one-line ``ValueError`` when a batch's sample shape does not fit the model."""
    expected = model_input_shapes(model)
    if expected is None:
        return
    got = [tuple(getattr(a, "shape", ())) for a in _flatten(x_struct)]
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


def _host(batch):
    """A batch as numpy arrays (tf.data's tensors, torch tensors, ...)."""
    return _map(lambda a: a if isinstance(a, np.ndarray) else np.asarray(to_numpy(a)), batch)


def _dataset_batches(model, data, batch_size, tf):
    spec = _x_of(data.element_spec)
    expected = model_input_shapes(model)
    flat = tf.nest.flatten(spec)
    if expected is not None and len(flat) == len(expected) and all(
            s.shape.rank is not None and s.shape.rank == len(e) - 1
            for s, e in zip(flat, expected, strict=True)):
        data = data.batch(batch_size)  # an unbatched dataset of single samples
    card = int(data.cardinality())
    return (_host(_x_of(el)) for el in data.as_numpy_iterator()), (card if card >= 0 else None)


def _array_batches(model, data, batch_size):
    dtype = _float_dtype(model)

    def as_array(a):
        a = np.asarray(a)
        return a.astype(dtype) if a.dtype.kind in "fiu" else a

    x = _map(as_array, data) if isinstance(data, (list, dict)) else as_array(data)
    flat = _flatten(x)
    if any(a.ndim == 0 for a in flat):
        raise ValueError("Argument `data` must hold a batch dimension; received a scalar array.")
    n = len(flat[0])
    if n == 0:
        raise ValueError("Argument `data` is empty (0 samples); nothing to measure.")
    starts = range(0, n, batch_size)
    return (_map(lambda a, s=s: a[s:s + batch_size], x) for s in starts), len(starts)


def iter_batches(model, data, batch_size):
    """``(iterator over input batches as numpy, number of batches or None)`` for any ``data``.

    Accepts a numpy array (or a tuple ``(x, y[, w])`` of arrays, or a dict/list of arrays for a
    multi-input model), a ``tf.data.Dataset`` where TensorFlow is installed (batched, or single
    samples, which are batched here) and a Keras ``PyDataset``. Labels and sample weights are
    dropped.
    """
    keras = _load_keras()
    batch_size = check_positive_int("batch_size", batch_size)
    tf = tf_if_present()
    if tf is not None and isinstance(data, tf.data.Dataset):
        return _dataset_batches(model, data, batch_size, tf)
    if isinstance(data, keras.utils.PyDataset):
        total = len(data)
        return (_host(_x_of(data[i])) for i in range(total)), total
    if isinstance(data, tuple) and len(model_input_shapes(model) or [None]) == 1 \
            and 1 <= len(data) <= 3:
        data = data[0]  # (x, y) or (x, y, w) as given to fit: labels ignored
    if isinstance(data, (np.ndarray, list, dict)) or hasattr(data, "__array__"):
        return _array_batches(model, data, batch_size)
    raise TypeError(
        "Argument `data` must be a numpy array, a tf.data.Dataset or a keras.utils.PyDataset; "
        f"received an object of type {type(data).__name__}.")


def _capped(batches, max_samples):
    """Yield ``(offset, batch)``; stop after ``max_samples`` samples (the last batch cut)."""
    offset = 0
    for batch in batches:
        n = int(_flatten(batch)[0].shape[0])
        if max_samples is not None and offset + n > max_samples:
            n = max_samples - offset
            batch = _map(lambda a, n=n: a[:n], batch)  # noqa: PLW2901
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


def _channel_count(layer, shape):
    axes = reduce_axes(layer, len(shape))
    return int(np.prod([int(shape[a]) for a in range(1, len(shape)) if a not in axes]))


def _sample_sums(ops, layer, x):
    """``(centre (C,), per-sample sums of x - centre (B, C), of (x - centre)^2 (B, C), batch
    mean, batch variance)`` of BN ``layer``'s input ``x``, computed in float32.

    The centre is the batch mean in float32; deviations from it are summed within each sample
    (e.g. the 1024 positions of a 32x32 map: short sums, little float32 loss) and the sums are
    combined across the batch in float64 on the host (:func:`_host_moments`), so neither a large
    mean nor a long batch costs precision. Relative error of the variance against float64
    numpy: below 1e-6.
    """
    t = ops.cast(x, "float32")
    axes = reduce_axes(layer, len(t.shape))
    inner = [a for a in axes if a != 0]
    channels = _channel_count(layer, t.shape)
    centre = ops.mean(t, axis=axes, keepdims=True)
    dev = t - centre
    s1 = ops.sum(dev, axis=inner, keepdims=True) if inner else dev
    s2 = ops.sum(ops.square(dev), axis=inner, keepdims=True) if inner else ops.square(dev)
    mean_dev = ops.mean(dev, axis=axes, keepdims=True)
    var = ops.maximum(ops.mean(ops.square(dev), axis=axes, keepdims=True)
                      - ops.square(mean_dev), 0.0)
    return (ops.reshape(centre, (channels,)), ops.reshape(s1, (-1, channels)),
            ops.reshape(s2, (-1, channels)), centre + mean_dev, var)


def _normalize_with(ops, layer, x, mean, var):
    """BN ``layer``'s training-mode output: ``x`` normalised with the given batch moments."""
    xf = ops.cast(x, "float32")
    axes = reduce_axes(layer, len(xf.shape))
    shape = [1 if i in axes else int(xf.shape[i]) for i in range(len(xf.shape))]
    out = (xf - mean) * ops.rsqrt(var + layer.epsilon)
    if layer.scale:
        out = out * ops.reshape(ops.cast(layer.gamma.value, "float32"), shape)
    if layer.center:
        out = out + ops.reshape(ops.cast(layer.beta.value, "float32"), shape)
    return ops.cast(out, x.dtype)


def _forced(original, on: bool):
    def call(*args, **kwargs):
        kwargs["training"] = bool(on)
        return original(*args, **kwargs)

    return call


class _Intercept:
    """Replacements of the ``call`` of BN layers (batch statistics recorded; in ``bn="batch"``
    mode normalising with them) and of noise layers (forced on/off), active while a pass runs
    (compiled functions may retrace on a new batch shape, eager backends call them each time).
    ``records`` receives, per forward pass, ``(layer, input shape, sums)`` in call order."""

    def __init__(self, model, bn_mode, noise):
        self.bn_mode, self.noise = bn_mode, noise
        self.bn, self.noise_list = bn_layers(model), noise_layers(model)
        self.records = []
        self._patches = CallPatches()

    def _bn_call(self, layer, original):
        ops, records, batch = _load_keras().ops, self.records, self.bn_mode == "batch"

        def call(*args, **kwargs):
            x = args[0] if args else kwargs["inputs"]
            centre, s1, s2, mean, var = _sample_sums(ops, layer, x)
            records.append((layer, tuple(x.shape), (centre, s1, s2)))
            if not batch:
                return original(*args, **kwargs)
            return _normalize_with(ops, layer, x, mean, var)

        return call

    def __enter__(self):
        for layer in self.bn:
            self._patches.set(layer, self._bn_call(layer, layer.call))
        for layer in self.noise_list:
            self._patches.set(layer, _forced(layer.call, self.noise))
        return self

    def __exit__(self, *exc):
        self._patches.restore()
        return False


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


def _nonfinite_per_sample(ops, x):
    """``(B, 1)`` float32: how many NaN/infinite values each sample of the batch holds."""
    keras = _load_keras()
    total = None
    for a in _flatten(x):
        if not keras.backend.standardize_dtype(a.dtype).startswith(("float", "bfloat")):
            continue
        bad = ops.cast(ops.logical_not(ops.isfinite(a)), "float32")
        bad = ops.sum(ops.reshape(bad, (ops.shape(a)[0], -1)), axis=1, keepdims=True)
        total = bad if total is None else total + bad
    if total is None:
        total = ops.zeros((ops.shape(_flatten(x)[0])[0], 1), "float32")
    return total


@contextlib.contextmanager
def reseeded(layers, seed):
    """Context manager: the seed generators of ``layers`` restart from ``seed + k`` (k-th
    layer), as a fresh ``keras.random.SeedGenerator(seed + k)`` would; restored on exit.

    The generators' state variables are assigned (not replaced), so compiled passes that
    carry the model's non-trainable variables (JAX) see the new seeds too.
    """
    saved, stack = [], contextlib.ExitStack()
    try:
        if _backend() == "torch":
            # Keras' torch dropout with an unseeded layer draws from torch's global generator
            # (not the layer's seed generator): seed that too, in a forked RNG state
            import torch

            stack.enter_context(torch.random.fork_rng())
            torch.manual_seed(int(seed))
        for k, layer in enumerate(layers):
            generator = getattr(layer, "seed_generator", None)
            if generator is None:
                continue
            state = generator.state
            saved.append((state, to_numpy(state.value).copy()))
            state.assign(np.asarray([int(seed) + k, 0], dtype=saved[-1][1].dtype))
        yield
    finally:
        for state, value in saved:
            state.assign(value)
        stack.close()


def _progress_bar(progress, total, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, disable=not progress,
                leave=False)


# ---------------------------------------------------------------------- one pass per backend


def _tf_runner(model, step):
    """``tf.function`` over the eager model call (retraced at most once for a smaller batch)."""
    from varshift._keras import tf as _load_tf

    fn = _load_tf().function(lambda x: step(lambda xx: model(xx, training=False), x),
                             autograph=False, reduce_retracing=True)

    def run(x):
        centres, sums = fn(x)
        return centres.numpy(), sums.numpy()

    return run, lambda: None


def _jax_runner(model, step):
    """``jax.jit`` over ``model.stateless_call``: the variables are arguments (read afresh at
    the start of each pass) and the non-trainable ones (noise layers' seed states) are carried
    from batch to batch, so masks advance as in ``fit``; the model is not written."""
    import jax

    holder, state = {}, {}

    def pure(trainable, non_trainable, x):
        def forward(xx):
            _, holder["ntv"] = model.stateless_call(trainable, non_trainable, xx, training=False)

        centres, sums = step(forward, x)
        return centres, sums, holder["ntv"]

    jitted = jax.jit(pure)

    def begin():
        state["tv"] = [v.value for v in model.trainable_variables]
        state["ntv"] = [v.value for v in model.non_trainable_variables]

    def run(x):
        centres, sums, state["ntv"] = jitted(state["tv"], state["ntv"], _sharded(x))
        return np.asarray(centres), np.asarray(sums)

    return run, begin


def _sharded(x):
    """Under ``keras.distribution.DataParallel`` (or any distribution), the batch split over
    the devices by the distribution's data layout: jit then computes every BN statistic over
    the whole batch (XLA all-reduces the per-device sums), so the result is one device's. A
    batch the devices do not divide stays whole (replicated)."""
    keras = _load_keras()
    distribution = keras.distribution.distribution()
    if distribution is None:
        return x

    def put(a):
        try:
            return keras.distribution.distribute_tensor(a, distribution.get_data_layout(a.shape))
        except ValueError:
            return a
    return _map(put, x)


def _eager_runner(model, step):
    """Eager calls (PyTorch: under ``torch.no_grad()``; any other backend as is)."""
    ops = _load_keras().ops

    def run(x):
        context = contextlib.nullcontext()
        if _backend() == "torch":
            import torch

            context = torch.no_grad()
        with context:
            centres, sums = step(lambda xx: model(xx, training=False), _map(ops.convert_to_tensor, x))
        return to_numpy(centres), to_numpy(sums)

    return run, lambda: None


_RUNNERS = {"tensorflow": _tf_runner, "jax": _jax_runner}


class _Pass:
    """One model's forward pass under an :class:`_Intercept`, compiled for the backend, made
    once per (model, BN mode, noise) and reused by every later pass (no per-call tracing)."""

    def __init__(self, model, bn_mode, noise):
        self.intercept = _Intercept(model, bn_mode, noise)
        self.order = []  # (layer, input shape, channels) in call order
        self.run, self.begin = _RUNNERS.get(_backend(), _eager_runner)(model, self._step)

    def _step(self, forward, x):
        ops = _load_keras().ops
        self.intercept.records.clear()
        forward(x)
        order, centres, sums = [], [], [_nonfinite_per_sample(ops, x)]
        for layer, shape, (centre, s1, s2) in self.intercept.records:
            order.append((layer, shape, int(centre.shape[0])))
            centres.append(centre)
            sums += [s1, s2]
        self.order[:] = order
        return ops.concatenate(centres, axis=0), ops.concatenate(sums, axis=1)


def _pass_for(model, bn_mode, noise):
    """The cached :class:`_Pass` of ``model`` (kept on the model object, outside Keras'
    tracking), rebuilt if its BN or noise layers changed."""
    cache = model.__dict__.get("_varshift_passes")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_varshift_passes", cache)
    key = (_backend(), bn_mode, bool(noise), tuple(id(b) for b in bn_layers(model)),
           tuple(id(n) for n in noise_layers(model)))
    if key not in cache:
        cache[key] = _Pass(model, bn_mode, noise)
    return cache[key]


def collect_moments(model, data, *, layers=None, bn="moving", noise=False, batch_size=256,
                    max_samples=None, seed=None, progress=False, on_batch=None,
                    desc="measuring BN inputs"):
    """Per-channel moments of BN layers' inputs over one pass of ``data``; nothing is modified.

    Args:
        model: a Keras model (Sequential, Functional, nested or with custom layers).
        data: see :func:`iter_batches`.
        layers: the BN layers to return (default: all of them; all are measured anyway).
        bn: ``"moving"`` (BN layers use their stored statistics: inference) or ``"batch"``
            (every BN layer normalises with the batch at hand: training-mode BN, without any
            update of the moving averages). A batch that gives some BN layer fewer than 2
            values per channel cannot be normalised: it is skipped, with a warning.
        noise: ``False`` forces every noise layer off, ``True`` on (masks drawn as in
            ``fit``); everything else runs in inference mode.
        batch_size: batch size for numpy input.
        max_samples: read at most this many samples (``None``: all).
        seed: with ``noise=True``, seed of the noise layers' masks (``None``: their own).
        progress: show a tqdm bar on stderr.
        on_batch: optional callable ``on_batch(done, total)`` after each batch.
        desc: the bar's label.

    Returns:
        ``list`` of :class:`LayerMoments` in call order (graph order), checked by
        :func:`check_moments`. A BN layer called several times per forward pass pools all its
        calls.

    Raises:
        ValueError: a batch holds NaN or infinity (one line naming ``data``, how many
            values, and the first sample's index in the whole data set), before anything
            is returned; the data does not fit the model; no BN layer is called; or the
            moments are not sound (:func:`check_moments`).
    """
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
    compiled = _pass_for(model, bn, noise)
    seeds = reseeded(compiled.intercept.noise_list, seed) if (noise and seed is not None) \
        else contextlib.nullcontext()
    with seeds, compiled.intercept:
        compiled.begin()
        acc = _accumulate(compiled, _chain(first, batches), total, bn == "batch",
                          (progress, on_batch, desc))
    return check_moments(_finish(acc, compiled.order, layers), model)


def _batch_parts(order, centres, sums):
    """Per measured call ``(layer, shape, n, mean, M2)`` of one batch, pooled in float64."""
    parts, at_c, at_s = [], 0, 1
    for layer, shape, channels in order:
        centre = centres[at_c:at_c + channels].astype(np.float64)
        s1 = sums[:, at_s:at_s + channels].sum(axis=0, dtype=np.float64)
        s2 = sums[:, at_s + channels:at_s + 2 * channels].sum(axis=0, dtype=np.float64)
        at_c, at_s = at_c + channels, at_s + 2 * channels
        inner = [a for a in reduce_axes(layer, len(shape)) if a != 0]
        n = float(sums.shape[0] * int(np.prod([int(shape[a]) for a in inner])))
        parts.append((layer, shape, n, centre + s1 / n, np.maximum(s2 - s1 * s1 / n, 0.0)))
    return parts


def _accumulate(compiled, batches, total, batch_mode, show):
    progress, on_batch, desc = show
    acc, skipped = {}, 0
    with _progress_bar(progress, total, desc) as bar:
        for done, (offset, xb) in enumerate(batches, 1):
            centres, sums = compiled.run(xb)
            bad = sums[:, 0]
            if bad.any():
                raise ValueError(
                    f"Argument `data` must be finite; it holds {int(bad.sum())} NaN or infinite "
                    f"value(s) in the batch starting at sample {offset}, the first in sample "
                    f"{offset + int(np.argmax(bad > 0))}.")
            parts = _batch_parts(compiled.order, centres, sums)
            if batch_mode and any(n < 2 for _, _, n, _, _ in parts):
                skipped += 1  # one value per channel: BN cannot normalise this batch
            else:
                for layer, shape, n, mean, m2 in parts:
                    if id(layer) not in acc:
                        acc[id(layer)] = LayerMoments(layer)
                        acc[id(layer)].input_shape = shape
                    acc[id(layer)].add(n, mean, m2)
            bar.update(1)
            if on_batch is not None:
                on_batch(done, total)
    if skipped:
        log.warning("%d batch(es) gave a BatchNormalization layer a single value per channel "
                    "and were skipped (batch statistics need at least 2).", skipped)
    if not acc:
        raise ValueError("Every batch gives a BatchNormalization layer a single value per "
                         "channel; use batch_size >= 2 (and at least 2 samples).")
    return acc


def _finish(acc, order, layers):
    wanted = {id(layer) for layer in layers}
    result, seen = [], set()
    for layer, *_ in order:
        if id(layer) in seen or id(layer) not in acc or id(layer) not in wanted:
            continue
        seen.add(id(layer))
        result.append(acc[id(layer)].finish())
    missing = [layer.name for layer in layers if id(layer) not in seen]
    if missing:
        log.warning("BatchNormalization layer(s) %s are not called in the forward pass; "
                    "they are not measured.", ", ".join(missing))
    return result


#: a trainable weight beyond this size, with activations that overflow on finite data, is
#: taken for diverged training (healthy weights of the networks here stay below 10)
_DIVERGED = 1e3


def _weights_finite(model):
    """Non-finite weights (training diverged: a learning rate too high) are the cause to
    name, not the BN layer where the activations first overflowed."""
    if model is None:
        return
    values = [(getattr(v, "path", None) or v.name, to_numpy(v)) for v in model.weights]
    bad = [name for name, w in values if not np.isfinite(w).all()]
    if bad:
        raise ValueError(
            f"Model {model.name!r} has weights that are NaN or infinite ({len(bad)} of "
            f"{len(values)} variables, the first {bad[0]!r}): training diverged; lower the "
            "learning rate (`lr`) or check the data. No statistics were computed or written.")
    trainable = {id(v) for v in model.trainable_weights}
    sizes = [(float(np.max(np.abs(w))), name) for (name, w), v in zip(values, model.weights,
                                                                      strict=True)
             if w.size and id(v) in trainable]
    largest, where = max(sizes) if sizes else (0.0, "?")
    if largest > _DIVERGED:
        raise ValueError(
            f"Model {model.name!r}: activations overflow on finite data because its weights "
            f"are huge (|w| up to {largest:.3g}, in {where!r}): training diverged; lower the "
            "learning rate (`lr`). No statistics were computed or written.")


def check_moments(measured, model=None):
    """Raise a one-line ``ValueError`` unless every :class:`LayerMoments` is sound: finite
    mean and variance in every channel (a float16 model can overflow on finite data; with
    ``model``, non-finite weights are named as the cause: training diverged) and at least 2
    values per channel (one value has no variance). Returns ``measured``."""
    for m in measured:
        if not (np.isfinite(m.mean).all() and np.isfinite(m.var).all()):
            _weights_finite(model)
            policy = getattr(getattr(m.layer, "dtype_policy", None), "name", "?")
            raise ValueError(
                f"BatchNormalization layer {m.layer.name!r} received non-finite activations "
                f"from finite data (overflow? its dtype policy is {policy!r}); no statistics "
                "were computed or written.")
        if m.count < 2:
            raise ValueError(
                f"BatchNormalization layer {m.layer.name!r} received {int(m.count)} value per "
                "channel; a variance needs at least 2 (raise `max_samples`).")
    return measured


def _chain(first, rest):
    yield first
    yield from rest


# ------------------------------------------------------------------------------------- writing


def save_statistics(layers):
    """``[(moving_mean, moving_variance)]`` numpy copies of BN ``layers``' stored statistics."""
    return [(to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy())
            for bn in layers]


def unsound_channels(mean, var):
    """Boolean mask of the channels whose statistics may not be stored: a mean that is not
    finite, or a variance that is zero, negative or not finite (also after rounding to
    float32, the dtype BN stores)."""
    mean = np.asarray(mean, np.float64).reshape(-1)
    var = np.asarray(var, np.float64).reshape(-1)
    with np.errstate(over="ignore"):
        var32 = var.astype(np.float32)
        mean32 = mean.astype(np.float32)
    return ~np.isfinite(mean32) | ~np.isfinite(var32) | ~(var32 > 0)


def sound_statistics(layers, statistics):
    """``(statistics, skipped)``: per layer the new ``(mean, var)`` where they may be stored and
    the layer's stored values in the other channels (:func:`unsound_channels`: constant input
    gives variance 0); ``skipped`` maps each layer name with such channels to
    ``(channels skipped, channels)``. What :func:`assign_statistics` accepts."""
    out, skipped = [], {}
    for bn, (new_mean, new_var) in zip(layers, statistics, strict=True):
        mean = np.asarray(new_mean, np.float64).reshape(-1)
        var = np.asarray(new_var, np.float64).reshape(-1)
        bad = unsound_channels(mean, var)
        if bad.any():
            old_mean = to_numpy(bn.moving_mean).astype(np.float64).reshape(-1)
            old_var = to_numpy(bn.moving_variance).astype(np.float64).reshape(-1)
            mean, var = np.where(bad, old_mean, mean), np.where(bad, old_var, var)
            skipped[bn.name] = (int(bad.sum()), int(bad.size))
        out.append((mean, var))
    return out, skipped


def assign_statistics(layers, statistics):
    """Write ``[(mean, variance)]`` (per-channel arrays) into BN ``layers``' moving statistics.

    All arrays are converted and checked first, so a shape error or a statistic that may not
    be stored leaves every layer as it was: a variance that is zero, negative or not finite,
    or a mean that is not finite, is a ``ValueError`` naming the layer (see
    :func:`sound_statistics` for keeping the stored values in such channels instead).
    """
    values = []
    for bn, (mean, var) in zip(layers, statistics, strict=True):
        bad = unsound_channels(mean, var)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueError(
                f"BatchNormalization layer {bn.name!r}: refusing to store statistics that are "
                f"not a finite mean and a finite variance > 0 in {int(bad.sum())} of {bad.size} "
                f"channel(s) (channel {first}: mean {np.ravel(mean)[first]!r}, variance "
                f"{np.ravel(var)[first]!r}); nothing was written.")
        values.append((np.reshape(mean, bn.moving_mean.shape).astype(bn.moving_mean.dtype),
                       np.reshape(var, bn.moving_variance.shape).astype(bn.moving_variance.dtype)))
    for bn, (mean, var) in zip(layers, values, strict=True):
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(var)


def restore_statistics(layers, saved):
    """Put back what :func:`save_statistics` returned (the model's own values, unchecked)."""
    for bn, (mean, var) in zip(layers, saved, strict=True):
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(var)

