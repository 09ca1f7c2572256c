r"""The paper's CIFAR input pipeline, deterministic under a seed: ``tf.data`` on TensorFlow,
a ``keras.utils.PyDataset`` of numpy batches on JAX and PyTorch.

bearpaw/pytorch-classification (the recipes the paper defers to) trains with
``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()`` and a per-channel
``Normalize(mean, std)``. :func:`make_dataset` does the same on uint8 NHWC arrays, a whole batch
at a time:

1. shuffle (a permutation drawn from ``seed``; a new ``seed`` gives a new order),
2. (training and ``augment``) pad every image with ``pad`` zero pixels per side and crop a
   random ``H x W`` window; flip it left-right with probability 1/2; crops and flips are
   drawn with stateless random ops keyed by ``(seed, batch index)``,
3. normalise: :math:`x \leftarrow (x / 255 - \mu_c) / \sigma_c` per channel ``c``
   (the zero padding is black, as with PIL, i.e. :math:`-\mu_c/\sigma_c` after normalising),
4. (TensorFlow) prefetch a fixed number of batches (tf.data's autotuning off: the same
   batches, no stalls).

On JAX and PyTorch the same steps run in numpy, batch by batch (:func:`augment_batch_numpy`:
the same distribution of crops and flips, other random numbers than TensorFlow's).

Because the randomness is a function of ``seed`` alone, one epoch's stream is reproducible on
its own; :mod:`varshift.train` passes a seed derived from the run's seed and the epoch
(:func:`varshift.seeds.derive_seed` ``(seed, "epoch_data", epoch)``), so a resumed run sees the
same data as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

from varshift.contracts import COUNT, Array, Boolean, Integer, Optional, Real, contract
from varshift.seeds import derive_seed, rng

__all__ = ["make_dataset", "channel_stats", "augment_batch"]


def channel_stats(x):
    """Per-channel mean and standard deviation of uint8 images on the 0..1 scale.

    Args:
        x: uint8 array ``(N, H, W, C)``.

    Returns:
        ``(mean, std)``, two float32 arrays of shape ``(C,)``.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"Argument `x` must be NHWC images (4-D); received shape {x.shape}.")
    c = x.shape[-1]
    flat = x.reshape(-1, c)
    # one pass of sums and sums of squares in float64, chunked over rows to bound memory
    n = flat.shape[0]
    s = np.zeros(c)
    s2 = np.zeros(c)
    for i in range(0, n, 1 << 22):
        chunk = flat[i:i + (1 << 22)].astype(np.float64) / 255.0
        s += chunk.sum(0)
        s2 += (chunk**2).sum(0)
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def augment_batch(images, seed, pad=4, flip=True):
    """Zero-pad by ``pad``, random-crop back to size and randomly flip a batch (stateless).

    Args:
        images: float tensor ``(B, H, W, C)``.
        seed: int32 tensor/array of shape ``(2,)``, the stateless seed of this batch.
        pad: pixels of zero padding per side (4 in the paper's recipe).
        flip: random horizontal flip with probability 1/2.

    Returns:
        A tensor of the same shape.
    """
    from varshift._keras import tf as _tf

    tf = _tf()
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    if pad > 0:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        offsets = tf.random.stateless_uniform(
            (b, 2), seeds[0], minval=0, maxval=2 * pad + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(h)[None, :]  # (B, H): the rows each crop keeps
        cols = offsets[:, 1:] + tf.range(w)[None, :]  # (B, W)
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    if flip:
        coin = tf.random.stateless_uniform((b, 1, 1, 1), seeds[1]) < 0.5
        images = tf.where(coin, tf.reverse(images, axis=[2]), images)
    return images


@contract(x=Array(4, what="NHWC images"), y=Optional(Array(1, what="integer labels")),
          batch_size=COUNT, training=Boolean(), augment=Boolean(),
          mean=Optional(Real(array=True)),
          std=Optional(Real(0.0, None, closed="neither", array=True)), seed=Integer(0),
          pad=Integer(0), flip=Boolean(), drop_remainder=Boolean(), shuffle=Optional(Boolean()))
def make_dataset(x, y, *, batch_size, training, augment=True, mean=None, std=None, seed=0,
                 pad=4, flip=True, drop_remainder=False, shuffle=None):
    """A batched, normalised, (optionally) augmented stream of the images, for ``fit``.

    Args:
        x: images ``(N, H, W, C)`` on the 0..255 scale: uint8 (as loaded), or integers or
            floats in [0, 255]. Float images already scaled to [0, 1] are refused rather than
            divided by 255 a second time.
        y: integer labels ``(N,)``, or ``None`` for an images-only dataset.
        batch_size: images per batch.
        training: shuffle and (with ``augment``) augment.
        augment: pad-and-crop and flip when ``training`` (the CIFAR recipe).
        mean, std: per-channel statistics on the 0..1 scale (one value, or one per channel;
            ``std`` > 0); ``None`` computes them from ``x`` (pass the training set's to the
            test set).
        seed: integer; the shuffle order and the augmentation are functions of it alone.
        pad: zero padding before the random crop (4).
        flip: random horizontal flips (True).
        drop_remainder: drop a last, smaller batch (then ``batch_size`` may not exceed the
            number of images: the dataset would be empty).
        shuffle: override whether to shuffle (default: ``training``).

    Returns:
        Batches of ``(images float32 (B, H, W, C), labels int32 (B,))`` (or images only when
        ``y is None``): on TensorFlow a prefetched ``tf.data.Dataset``, on JAX and PyTorch a
        ``keras.utils.PyDataset`` of numpy arrays.

    Example:

    >>> ds = make_dataset(x, y, batch_size=128, training=True, seed=3)  # doctest: +SKIP
    """
    from varshift._keras import is_backend

    x = _pixels(np.asarray(x))
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"Arguments `x` and `y` must hold as many images as labels; "
                             f"received {len(x)} images and {len(y)} labels.")
    n = len(x)
    if drop_remainder and batch_size > n:
        raise ValueError(f"Argument `batch_size` must be <= the number of images ({n}) with "
                         f"drop_remainder=True; received batch_size={batch_size} (the dataset "
                         "would be empty).")
    if mean is None or std is None:
        m, s = channel_stats(x)
        mean = m if mean is None else mean
        std = s if std is None else std
    mean, std = (_per_channel(k, v, x.shape[-1]) for k, v in (("mean", mean), ("std", std)))
    shuffle = training if shuffle is None else shuffle
    order = rng(seed, "shuffle").permutation(n) if shuffle else np.arange(n)
    do_aug = bool(training and augment)
    if not is_backend("tensorflow"):
        return _batches(x, y, order, batch_size, drop_remainder,
                        (do_aug, derive_seed(seed, "augment"), pad, flip), (mean, std))
    return _tf_dataset(x, y, order, batch_size, drop_remainder,
                       (do_aug, derive_seed(seed, "augment"), pad, flip), (mean, std))


def _pixels(x):
    """Images on the 0..255 scale: integers in [0, 255], or floats in [0, 255] that are not
    already scaled to [0, 1] (dividing those by 255 again would be silent)."""
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "b" or x.size == 0:
        raise ValueError(f"Argument `x` must be NHWC images on the 0..255 scale; received an "
                         f"array of dtype {x.dtype} and shape {x.shape}.")
    low, high = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        bad = int(np.count_nonzero(~np.isfinite(x) | (x < 0) | (x > 255)))
        raise ValueError(f"Argument `x` must hold pixel values in [0, 255] (uint8 images); "
                         f"received values in [{low:g}, {high:g}] ({bad} outside).")
    if x.dtype.kind == "f" and high <= 1.0 and high > 0:
        raise ValueError(f"Argument `x` holds float images already in [0, 1] (max {high:g}); "
                         "make_dataset divides by 255 itself: pass the 0..255 images (uint8), "
                         "e.g. (x * 255).round().astype('uint8').")
    return x


def _per_channel(name, value, channels):
    """A per-channel statistic: one value or one per channel of the images."""
    arr = np.asarray(value, np.float64).reshape(-1)
    if arr.size not in (1, channels):
        expected = "1 value" if channels == 1 else f"1 or {channels} values (one per channel)"
        raise ValueError(f"Argument `{name}` must hold {expected} for the {channels}-channel "
                         f"images of `x`; received {arr.size} values.")
    return arr.astype(np.float32).reshape(1, 1, 1, -1)


#: batches the TensorFlow pipeline prepares ahead of the step that reads them
PREFETCH_BATCHES = 2


def _tf_dataset(x, y, order, batch_size, drop_remainder, aug, norm):
    """The TensorFlow backend's pipeline: a prefetched ``tf.data.Dataset``."""
    from varshift._keras import tf as _tf

    tf = _tf()
    do_aug, seed_value, pad, flip = aug
    mean, std = (tf.constant(a) for a in norm)
    xs = tf.constant(x)
    ys = None if y is None else tf.constant(y.astype(np.int32))

    def gather(step, idx):
        images = tf.cast(tf.gather(xs, idx), tf.float32)
        if do_aug:
            batch_seed = tf.stack([tf.constant(seed_value, tf.int32), tf.cast(step, tf.int32)])
            images = augment_batch(images, batch_seed, pad=pad, flip=flip)
        images = (images / 255.0 - mean) / std
        if ys is None:
            return images
        return images, tf.gather(ys, idx)

    ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).enumerate()
    ds = ds.map(gather).prefetch(PREFETCH_BATCHES)  # a sequential map: deterministic
    # a fixed pipeline: tf.data's autotuning, with one inter-op thread, stalls an epoch to
    # multiples of its 5.12 s tuning period while the CPU idles; the batches are the same
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    return ds.with_options(options)


def augment_batch_numpy(images, seed, *, pad=4, flip=True):
    """:func:`augment_batch` in numpy, for backends other than TensorFlow: the same
    distribution (zero-pad, uniform crop offsets in ``[0, 2 pad]``, flip with probability
    1/2), drawn from ``numpy.random.default_rng(seed)`` (other numbers than TensorFlow's)."""
    gen = np.random.default_rng(seed)
    b, h, w = images.shape[:3]
    if pad > 0:
        padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
        offsets = gen.integers(0, 2 * pad + 1, size=(b, 2))
        rows = offsets[:, :1] + np.arange(h)[None, :]
        cols = offsets[:, 1:] + np.arange(w)[None, :]
        images = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        coin = gen.random((b, 1, 1, 1)) < 0.5
        images = np.where(coin, images[:, :, ::-1], images)
    return images


def _batches(x, y, order, batch_size, drop_remainder, aug, norm):
    """The pipeline on JAX/PyTorch: a ``keras.utils.PyDataset`` of numpy batches, in order
    and deterministic under the seed (batch ``k`` is augmented with seed ``(seed, k)``)."""
    from varshift._keras import keras

    do_aug, seed_value, pad, flip = aug
    mean, std = norm
    n_batches = len(order) // batch_size if drop_remainder else -(-len(order) // batch_size)
    labels = None if y is None else y.astype(np.int32)

    class Batches(keras().utils.PyDataset):
        def __len__(self):
            return n_batches

        def __getitem__(self, k):
            idx = order[k * batch_size:(k + 1) * batch_size]
            images = x[idx].astype(np.float32)
            if do_aug:
                images = augment_batch_numpy(images, (seed_value, k), pad=pad, flip=flip)
            images = (images / np.float32(255.0) - mean) / std
            return images if labels is None else (images, labels[idx])

    return Batches(workers=1, use_multiprocessing=False)
