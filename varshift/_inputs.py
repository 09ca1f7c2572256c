"""The data contract: where a model's inputs are in the data a user passes, and whether their
samples fit the model.

One unpacking (:func:`inputs_of`) and one shape check (:func:`check_input_count`,
:func:`check_sample_shape`), used by :func:`varshift._validate.data_like` before any work and
by the BN-statistics engine (:func:`varshift.bnstats.iter_batches`,
:func:`varshift.bnstats.check_input_shapes`) on every batch a stream yields, so both accept
the same data and refuse it with the same line. Pure Python: nothing here imports Keras.

Example:

>>> import numpy as np
>>> x, y = np.zeros((4, 3)), np.zeros(4)
>>> inputs_of((x, y), [(None, 3)]) is x  # (x, y) as given to fit: the labels are dropped
True
>>> inputs_of((1.0, 2.0), None)  # a tuple of numbers is one sample, not (x, y)
(1.0, 2.0)
>>> check_sample_shape("data", (4, 3), (None, 3), "net")  # fits: nothing to say
>>> check_sample_shape("data", (4, 2), (None, 3), "net")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: Argument `data` has samples of shape (2,); model 'net' expects samples of shape (3,) ...
"""

from __future__ import annotations

import numbers

__all__ = ["model_input_shapes", "inputs_of", "check_input_count", "check_sample_shape"]


def model_input_shapes(model):
    """Per-input shapes (batch dim included, may hold ``None``), or ``None`` when unknown."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    return [tuple(t.shape) for t in inputs] if inputs else None


def _is_plain_row(data) -> bool:
    """A tuple of plain numbers (one sample written as a tuple), not ``(x, y)``."""
    return all(isinstance(v, numbers.Number) for v in data)


def inputs_of(data, expected):
    """The model's inputs in ``data``: ``x`` from ``(x,)``, ``(x, y)`` or ``(x, y, w)`` as given to
    ``fit`` (for a model of several inputs, ``([x1, x2], y[, w])``); anything else as it is.

    ``expected`` is :func:`model_input_shapes` of the model (``None`` when unknown: one input
    is assumed). A tuple of plain numbers is one sample, not ``(x, y)``.
    """
    if not isinstance(data, tuple):
        return data
    if expected is not None and len(expected) > 1:
        if 2 <= len(data) <= 3 and isinstance(data[0], (list, tuple, dict)):
            return data[0]
        return data
    if 1 <= len(data) <= 3 and (len(data) == 1 or not _is_plain_row(data)):
        return data[0]
    return data


def check_input_count(name, count, expected, model_name, *, per_batch=False):
    """One line unless ``count`` input arrays are what a model of inputs ``expected`` takes."""
    if expected is not None and count != len(expected):
        where = " per batch" if per_batch else ""
        raise ValueError(
            f"Argument `{name}` gives {count} input array(s){where}; model {model_name!r} takes "
            f"{len(expected)} input(s) of sample shapes {[tuple(e[1:]) for e in expected]}.")


def check_sample_shape(name, shape, expected, model_name):
    """One line unless an array of ``shape`` (batch axis first) holds samples of the shape
    ``expected`` (one input's shape, batch axis first; ``None`` entries match any size)."""
    if expected is None:
        return
    shape = tuple(shape)
    ok = len(shape) == len(expected) and all(
        e is None or g is None or g == e for g, e in zip(shape[1:], expected[1:], strict=True))
    if not ok:
        raise ValueError(
            f"Argument `{name}` has samples of shape {shape[1:]}; model {model_name!r} expects "
            f"samples of shape {tuple(expected[1:])} (batch axis excluded).")
