"""What one forward pass computes: each BN layer's call is intercepted to record its input's
per-sample sums (and, in batch mode, to normalise with the batch's own moments), and noise
layers are forced on or off. Written with ``keras.ops``: the same code on every backend,
compiled by :mod:`varshift.bnstats._runners`."""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from varshift._graph import CallPatches, bn_layers
from varshift._keras import backend as _backend
from varshift._keras import keras as _load_keras
from varshift._keras import tf as _load_tf
from varshift._keras import to_numpy
from varshift.noise import noise_layers

__all__ = ["reduce_axes", "values_per_channel", "Intercept", "force_noise", "reseeded",
           "nonfinite_per_sample"]


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



def _channel_count(layer, shape):
    axes = reduce_axes(layer, len(shape))
    return int(np.prod([int(shape[a]) for a in range(1, len(shape)) if a not in axes]))


def _sample_sums(ops, layer, x, mask=None, moments=True):
    """``(centres (R, C), per-row sums of x - centre (R, C), of (x - centre)^2 (R, C), batch
    mean (C,), batch variance (C,))`` of BN ``layer``'s input ``x``, computed in float32; a row
    is one sample (one sample x step under ``TimeDistributed``); the moments are ``None``
    without ``moments`` (only ``bn="batch"`` normalises with them).

    Values are summed within each sample (e.g. the 784 positions of a 28x28 map: short sums,
    little float32 loss) and the sums are combined across samples and batches in float64 on
    the host (:mod:`varshift.bnstats._moments`), so neither a large mean nor a long batch
    costs precision. Relative error of the variance against float64 numpy: below 1e-6.

    Three ways, one result up to float32 rounding; the batch moments always come from the
    per-sample sums, with no further read of the input:

    - TensorFlow: each sample's plain sum and sum of squares (centre 0), one read of the
      input each; a sample whose plain sums would lose precision (a mean far from 0 for its
      spread) is summed again about its own mean (:func:`_row_sums_tf`).
    - PyTorch: each sample's own float32 mean is its centre; the deviations from it and
      their squares are summed.
    - ``mask`` given (JAX: ``(B,)``, 1 for a sample of the data, 0 for padding): the centre is
      the first sample's mean, so the deviations and both sums are one variadic reduction,
      one read of the input; the batch moments come from the per-sample sums of the data's
      samples only. A short last batch padded to the compiled batch size
      (:mod:`varshift.bnstats._runners`) is thus normalised and measured as if unpadded; the
      padding's rows are dropped on the host. A layer whose input has another batch size
      than the mask (``TimeDistributed``'s samples x steps) is summed as on PyTorch (the
      runner never pads such a model).
    """
    t = ops.cast(x, "float32")
    axes = reduce_axes(layer, len(t.shape))
    inner = [a for a in axes if a != 0]
    channels = _channel_count(layer, t.shape)
    per_row = float(values_per_channel(layer, t.shape, 1))  # values per row and channel
    if mask is not None and 0 in axes and t.shape[0] == mask.shape[0]:
        centres, s1, s2, mean, var = _masked_sums_jit(
            tuple(axes), tuple(inner), channels, per_row)(t, mask)
    else:
        if not inner:  # one value per row and channel
            centres = ops.reshape(t, (-1, channels))
            s1 = s2 = ops.zeros_like(centres)
        elif _backend() == "tensorflow" and 0 in axes:
            centres, s1, s2 = _row_sums_tf(t, inner, channels, per_row)
        else:
            centres = ops.mean(t, axis=inner, keepdims=True)
            dev = t - centres  # the deviations' sum too: a float32 mean is off by eps x |mean|
            s1 = ops.reshape(ops.sum(dev, axis=inner), (-1, channels))
            s2 = ops.reshape(ops.sum(ops.square(dev), axis=inner), (-1, channels))
            centres = ops.reshape(centres, (-1, channels))
        if not moments:
            return centres, s1, s2, None, None
        row_mean = centres + s1 / per_row if inner else centres
        mean = ops.mean(row_mean, axis=0)
        var = ops.mean(ops.square(row_mean - mean), axis=0)
        if inner:
            var = var + ops.mean(s2 - s1 * s1 / per_row, axis=0) / per_row
    return centres, s1, s2, mean, var


@functools.lru_cache(maxsize=256)
def _masked_sums_jit(axes, inner, channels, per_row):
    """:func:`_masked_sums` as a nested ``jax.jit``, traced once per input shape: BN layers
    with inputs of one shape share one traced body in the pass's program (which XLA
    inlines)."""
    import jax

    ops = _load_keras().ops
    return jax.jit(lambda t, mask: _masked_sums(ops, t, list(axes), list(inner), channels,
                                                per_row, mask))


def _masked_sums(ops, t, axes, inner, channels, per_row, mask):
    """The masked way of :func:`_sample_sums` (one variadic reduction about the first
    sample's mean; the batch moments over the data's samples only)."""
    centre = ops.mean(t[:1], axis=axes, keepdims=True)
    dev = t - centre
    if inner:
        s1, s2 = _sum_and_square_sum(dev, inner)
    else:
        s1, s2 = dev, ops.square(dev)
    s1, s2 = ops.reshape(s1, (-1, channels)), ops.reshape(s2, (-1, channels))
    w = ops.reshape(ops.cast(mask, "float32"), (-1, 1))
    count = ops.sum(w) * per_row
    mean_dev = ops.sum(s1 * w, axis=0) / count
    var = ops.maximum(ops.sum(s2 * w, axis=0) / count - ops.square(mean_dev), 0.0)
    centres = ops.broadcast_to(ops.reshape(centre, (1, channels)), ops.shape(s1))
    return centres, s1, s2, ops.reshape(centre, (channels,)) + mean_dev, var


#: a row's plain sums stand for its moments where, in every channel, its sum of squares is at
#: most this many times its :math:`M_2` (float32 then loses at most about this factor of
#: :math:`M_2`'s relative precision: below 3e-7 for up to 3,136 positions)
_CONDITION = 16.0


def _row_sums_tf(t, inner, channels, per_row):
    """TensorFlow: per-row ``(centres, sums of x - centre, sums of (x - centre)^2)``, each
    ``(R, C)``, of ``t`` (rows along axis 0) from two reductions that read ``t`` once each
    (``Sum`` and ``EuclideanNorm``), centre 0.

    A row where that would cost precision (in some channel the sum of squares exceeds
    ``_CONDITION`` times :math:`M_2`, or is not finite: a mean far from 0 for the row's
    spread, values near float32's range) is summed again about its own float32 mean: the
    deviations and their squares; only those rows are read a second time.

    A nested ``tf.function``, traced once per input shape: BN layers with inputs of one shape
    share one traced body in the pass's graph (which TensorFlow inlines when it runs)."""
    return _row_sums_fn(tuple(inner), channels, per_row)(t)


@functools.lru_cache(maxsize=256)
def _row_sums_fn(inner, channels, per_row):
    tf = _load_tf()

    def rows(v):  # (R, C) whatever the number of channel axes
        return v if len(v.shape) == 2 else tf.reshape(v, (-1, channels))

    def sums(t):
        s1 = rows(tf.reduce_sum(t, inner))
        s2 = tf.square(rows(tf.math.reduce_euclidean_norm(t, inner)))
        # sum of squares <= K * M2, with M2 = s2 - s1^2 / n, as s1^2 <= s2 n (K - 1) / K
        sound = s1 * s1 <= s2 * (per_row * (_CONDITION - 1.0) / _CONDITION)
        redo = tf.where(tf.logical_not(tf.reduce_all(sound, axis=1)))  # (k, 1) row indices
        bad = tf.gather_nd(t, redo)
        centre = tf.reduce_mean(bad, inner, keepdims=True)
        dev = bad - centre  # the deviations' sum too: a float32 mean is off by eps x |mean|
        return (tf.tensor_scatter_nd_update(tf.zeros_like(s1), redo, rows(centre)),
                tf.tensor_scatter_nd_update(s1, redo, rows(tf.reduce_sum(dev, inner))),
                tf.tensor_scatter_nd_update(s2, redo,
                                            rows(tf.reduce_sum(tf.square(dev), inner))))

    return tf.function(sums, autograph=False)


def _sum_and_square_sum(dev, axes):
    """``(sum of dev, sum of dev^2)`` over ``axes`` (JAX) as variadic reductions, one axis at a
    time from the last: XLA reads ``dev`` once for both sums, and on CPU reduces one axis
    several times faster than two at once."""
    import jax

    zero = jax.numpy.zeros((), dev.dtype)
    sums = (dev, dev * dev)
    for axis in sorted(axes, reverse=True):
        sums = jax.lax.reduce(sums, (zero, zero), lambda a, b: (a[0] + b[0], a[1] + b[1]),
                              (axis,))
    return sums


def _normalize_with(ops, layer, x, mean, var):
    """BN ``layer``'s training-mode output: ``x`` normalised with the given batch moments
    (per channel, flat) as ``x * scale + shift``, with the per-channel
    ``scale = gamma / sqrt(var + epsilon)`` and ``shift = beta - mean * scale``. On
    TensorFlow, where the channel axis is the last, that is one ``FusedBatchNormV3`` kernel
    in inference mode (one read and one write of ``x``; two element-wise kernels otherwise)."""
    xf = ops.cast(x, "float32")
    fused = _fused_inference(layer, xf, mean, var)
    if fused is not None:
        return ops.cast(fused, x.dtype)
    axes = reduce_axes(layer, len(x.shape))
    shape = [1 if i in axes else int(x.shape[i]) for i in range(len(x.shape))]
    mean, var = ops.reshape(mean, shape), ops.reshape(var, shape)
    scale = ops.rsqrt(var + layer.epsilon)
    if layer.scale:
        scale = scale * ops.reshape(ops.cast(layer.gamma.value, "float32"), shape)
    shift = -mean * scale
    if layer.center:
        shift = shift + ops.reshape(ops.cast(layer.beta.value, "float32"), shape)
    return ops.cast(xf * scale + shift, x.dtype)


#: TensorFlow's fused batch norm raises a smaller epsilon to this (cuDNN's minimum)
_FUSED_MIN_EPSILON = 1.001e-5


def _fused_inference(layer, xf, mean, var):
    """TensorFlow's ``FusedBatchNormV3`` (inference mode: the given flat moments) on ``xf``
    (seen as ``(B, positions, 1, C)`` unless of rank 4), or ``None`` where it does not apply
    (another backend, a channel axis that is not the last, an epsilon the kernel would
    raise)."""
    rank = len(xf.shape)
    if (_backend() != "tensorflow" or rank < 2 or xf.shape[-1] is None
            or reduce_axes(layer, rank) != list(range(rank - 1))
            or layer.epsilon < _FUSED_MIN_EPSILON):
        return None
    tf = _load_tf()
    channels = int(xf.shape[-1])
    gamma = tf.cast(layer.gamma.value, tf.float32) if layer.scale \
        else tf.ones((channels,), tf.float32)
    beta = tf.cast(layer.beta.value, tf.float32) if layer.center \
        else tf.zeros((channels,), tf.float32)
    positions = int(np.prod(xf.shape[1:-1])) if rank > 2 else 1
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(
        xf if rank == 4 else tf.reshape(xf, (-1, positions, 1, channels)), gamma, beta,
        mean=mean, variance=var, epsilon=layer.epsilon, is_training=False)
    return y if rank == 4 else tf.reshape(y, tf.shape(xf))


def _forced(original, on: bool):
    def call(*args, **kwargs):
        kwargs["training"] = bool(on)
        return original(*args, **kwargs)

    return call


class Intercept:
    """Replacements of the ``call`` of BN layers (batch statistics recorded; in ``bn="batch"``
    mode normalising with them) and of noise layers (forced on/off), active while a pass runs
    (compiled functions may retrace on a new batch shape, eager backends call them each time).
    ``records`` receives, per forward pass, ``(layer, input shape, sums)`` in call order."""

    def __init__(self, model, bn_mode, noise):
        self.bn_mode, self.noise = bn_mode, noise
        self.bn, self.noise_list = bn_layers(model), noise_layers(model)
        self.records = []
        self.mask = None  # (B,) 1 for data, 0 for padding; None: every sample is data
        self._patches = CallPatches()

    def _bn_call(self, layer, original):
        ops, records, batch = _load_keras().ops, self.records, self.bn_mode == "batch"

        def call(*args, **kwargs):
            x = args[0] if args else kwargs["inputs"]
            centre, s1, s2, mean, var = _sample_sums(ops, layer, x, self.mask, batch)
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


def nonfinite_per_sample(ops, x):
    """``(B, 1)`` float32: how many NaN/infinite values each sample of the batch holds."""
    keras = _load_keras()
    total = None
    for a in _load_keras().tree.flatten(x):
        if not keras.backend.standardize_dtype(a.dtype).startswith(("float", "bfloat")):
            continue
        bad = ops.cast(ops.logical_not(ops.isfinite(a)), "float32")
        bad = ops.sum(ops.reshape(bad, (ops.shape(a)[0], -1)), axis=1, keepdims=True)
        total = bad if total is None else total + bad
    if total is None:
        total = ops.zeros((ops.shape(_load_keras().tree.flatten(x)[0])[0], 1), "float32")
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

