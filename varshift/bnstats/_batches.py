"""Data, batch by batch: every kind of data the engine takes, as numpy batches of the model's
inputs (labels dropped, sample shapes checked by the data contract of ``varshift._inputs``)."""

from __future__ import annotations

import numpy as np

from varshift._inputs import check_input_count, check_sample_shape, inputs_of, model_input_shapes
from varshift._keras import keras as _load_keras
from varshift._keras import tf_if_present, to_numpy
from varshift._validate import check_positive_int

__all__ = ["check_input_shapes", "iter_batches", "capped", "chain"]


def _flatten(x):
    return _load_keras().tree.flatten(x)


def _map(fn, x):
    return _load_keras().tree.map_structure(fn, x)


def check_input_shapes(model, x_struct):
    """Raise a one-line ``ValueError`` when a batch's sample shape does not fit the model
    (the data contract's check, ``varshift._inputs``)."""
    expected = model_input_shapes(model)
    if expected is None:
        return
    got = [tuple(getattr(a, "shape", ())) for a in _flatten(x_struct)]
    check_input_count("data", len(got), expected, model.name, per_batch=True)
    for shape, want in zip(got, expected, strict=True):
        check_sample_shape("data", shape, want, model.name)


def _x_of(element, expected):
    """The inputs of one element of a stream (labels and sample weights dropped: the data
    contract's unpacking, ``varshift._inputs.inputs_of``; a list is read as a tuple, as
    ``keras.utils.unpack_x_y_sample_weight`` does)."""
    return inputs_of(tuple(element) if isinstance(element, list) else element, expected)


def _float_dtype(model):
    try:
        return model.inputs[0].dtype or "float32"
    except (AttributeError, ValueError, IndexError, TypeError):
        return "float32"


def _host(batch):
    """A batch as numpy arrays (tf.data's tensors, torch tensors, ...)."""
    return _map(lambda a: a if isinstance(a, np.ndarray) else np.asarray(to_numpy(a)), batch)


def _dataset_batches(model, data, batch_size, tf):
    expected = model_input_shapes(model)
    spec = _x_of(data.element_spec, expected)
    flat = tf.nest.flatten(spec)
    if expected is not None and len(flat) == len(expected) and all(
            s.shape.rank is not None and s.shape.rank == len(e) - 1
            for s, e in zip(flat, expected, strict=True)):
        data = data.batch(batch_size)  # an unbatched dataset of single samples
    card = int(data.cardinality())
    return ((_host(_x_of(el, expected)) for el in data.as_numpy_iterator()),
            card if card >= 0 else None)


def _array_batches(model, data, batch_size):
    dtype = _float_dtype(model)

    def as_array(a):
        a = np.asarray(a)
        return a.astype(dtype, copy=False) if a.dtype.kind in "fiu" else a

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
    dropped (``varshift._inputs.inputs_of``, the unpacking of
    ``varshift._validate.data_like``).
    """
    keras = _load_keras()
    batch_size = check_positive_int("batch_size", batch_size)
    tf = tf_if_present()
    if tf is not None and isinstance(data, tf.data.Dataset):
        return _dataset_batches(model, data, batch_size, tf)
    expected = model_input_shapes(model)
    if isinstance(data, keras.utils.PyDataset):
        total = len(data)
        return (_host(_x_of(data[i], expected)) for i in range(total)), total
    data = inputs_of(data, expected)  # (x, y[, w]) as given to fit: x
    if isinstance(data, (np.ndarray, list, dict)) or hasattr(data, "__array__"):
        return _array_batches(model, data, batch_size)
    raise TypeError(
        "Argument `data` must be a numpy array, a tf.data.Dataset or a keras.utils.PyDataset; "
        f"received an object of type {type(data).__name__}.")


def capped(batches, max_samples):
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


def chain(first, rest):
    """``first``, then every item of ``rest``."""
    yield first
    yield from rest
