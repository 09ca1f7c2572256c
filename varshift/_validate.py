"""Argument checks shared by the public API (the "Input contract" of ``docs/api.md``).

Every public function and command checks its arguments before any work. A failure is one line
that names the argument, shows the value received (or a summary: shape, dtype, the first bad
element's index and value) and says what was expected, in the style of Keras' own layers:
``TypeError`` for a wrong kind of object (wrong type, non-numeric dtype, a missing value),
``ValueError`` for a right kind with a wrong value (range, shape, NaN/inf, empty, an output
destination that cannot be written).

TensorFlow is imported only by the checks that need a Keras object.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["as_float_array", "check_rate", "check_beta", "check_var", "check_in_range",
           "check_positive_int", "check_seed", "check_finite_positive", "broadcastable",
           "keras_model", "model_and_data", "data_like", "output_path", "output_folder",
           "describe"]

NUMERIC_KINDS = "biuf"  # bool, signed/unsigned integer, float


def describe(value) -> str:
    """A short summary of any value for an error message (never a huge repr)."""
    if isinstance(value, np.ndarray) or hasattr(value, "__array__") and hasattr(value, "shape"):
        return f"an array of shape {tuple(value.shape)} and dtype {getattr(value, 'dtype', '?')}"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} of type {type(value).__name__}"


def _show(value) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(value.item() if hasattr(value, "item") else value)
    text = " ".join(np.array2string(arr, threshold=8, edgeitems=2, precision=6).split())
    return f"{text} (array of shape {arr.shape})"


def _first_bad(name, arr, bad, value) -> str:
    """``name=value`` for a scalar; for an array also the first bad element's index and value."""
    if arr.ndim == 0:
        return f"{name}={_show(value)}"
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = ", ".join(map(str, index))
    return (f"{name}={_show(arr)}; first bad element {name}[{where}]={arr[index].item()!r}, "
            f"{int(np.count_nonzero(bad))} of {arr.size} bad")


def as_float_array(name: str, value) -> np.ndarray:
    """Convert ``value`` to a float64 array; reject missing, non-numeric and non-finite input."""
    if value is None:
        raise TypeError(f"Argument `{name}` is missing (received None); expected a real number "
                        "or an array of real numbers.")
    try:
        raw = np.asarray(value)
        if raw.dtype.kind not in NUMERIC_KINDS:
            raise TypeError
        arr = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"Argument `{name}` must be a real number or an array of real numbers; "
            f"received {name}={describe(value)}."
        ) from None
    bad = ~np.isfinite(arr)
    if np.any(bad):
        raise ValueError(f"Argument `{name}` must be finite (no NaN or infinity); received "
                         f"{_first_bad(name, arr, bad, value)}.")
    return arr


def check_in_range(name, value, low, high, *, low_open=False, high_open=False, meaning=""):
    """Validate that every element of ``value`` lies in the interval given; return the array."""
    arr = as_float_array(name, value)
    bad = (arr <= low if low_open else arr < low) | (arr >= high if high_open else arr > high)
    if np.any(bad):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        extra = f" ({meaning})" if meaning else ""
        raise ValueError(f"Argument `{name}` must be in {interval}{extra}; received "
                         f"{_first_bad(name, arr, bad, value)}.")
    return arr


def check_rate(value, name: str = "rate") -> np.ndarray:
    """A Keras drop ratio: the fraction of units set to zero, in [0, 1)."""
    return check_in_range(name, value, 0.0, 1.0, high_open=True, meaning="Keras' drop ratio")


def check_beta(value, name: str = "beta") -> np.ndarray:
    """Uout's noise half-width: r ~ U(-beta, beta), beta in [0, 1]."""
    return check_in_range(name, value, 0.0, 1.0, meaning="Uout's noise half-width")


def check_var(value, name: str = "var") -> np.ndarray:
    """A variance: finite and non-negative."""
    arr = as_float_array(name, value)
    bad = arr < 0
    if np.any(bad):
        raise ValueError(f"Argument `{name}` must be a variance (>= 0); received "
                         f"{_first_bad(name, arr, bad, value)}.")
    return arr


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """An integer count such as a batch size or a width."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}; received {name}={value!r}."
        )
    return int(value)


def check_seed(value, name: str = "seed"):
    """A random seed: ``None`` or an integer >= 0."""
    if value is not None:
        check_positive_int(name, value, minimum=0)
    return value


def check_finite_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """One finite real number > 0 (>= 0 with ``allow_zero``), e.g. a learning rate or a std."""
    arr = as_float_array(name, value)
    if arr.ndim != 0 or (arr < 0 if allow_zero else arr <= 0):
        raise ValueError(f"Argument `{name}` must be a number {'>=' if allow_zero else '>'} 0; "
                         f"received {name}={_show(value)}.")
    return float(arr)


def broadcastable(**arrays):
    """Raise one line naming the arguments when numpy arrays do not broadcast together."""
    try:
        np.broadcast_shapes(*(np.shape(a) for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"`{k}` {np.shape(a)}" for k, a in arrays.items())
        raise ValueError(f"Arguments {', '.join(f'`{k}`' for k in arrays)} must broadcast "
                         f"together (numpy rules); received shapes {shapes}.") from None


# ------------------------------------------------------------------------------ Keras objects

def keras_model(model, name: str = "model", *, known_inputs: bool = False, need_bn: bool = True,
                input_shape=None):
    """A ``keras.Model`` with BatchNormalization layers (``need_bn``); with ``known_inputs``,
    one whose input shape is known. ``input_shape`` (one sample's shape) is checked if given."""
    from varshift._keras import keras as load_keras  # noqa: PLC0415

    keras = load_keras()
    if model is None or not isinstance(model, keras.Model):
        what = "missing (received None)" if model is None else f"received {describe(model)}"
        raise TypeError(f"Argument `{name}` must be a Keras model (keras.Model); {what}.")
    if input_shape is not None and (
            not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
                d is None or isinstance(d, int) and not isinstance(d, bool) and d > 0
                for d in input_shape)):
        raise ValueError("Argument `input_shape` must be the shape of one sample, a tuple of "
                         f"positive integers (batch axis excluded); received {describe(input_shape)}.")
    if known_inputs and not _input_shapes(model):
        raise ValueError(
            f"Argument `{name}` ({model.name!r}, {type(model).__name__}) has no known input "
            "shape: this function needs a Functional or Sequential model built with "
            "keras.Input (for a subclassed model, audit(model, input_shape=...) still works).")
    if need_bn:
        from varshift._graph import all_layers, is_bn  # noqa: PLC0415

        if not any(is_bn(layer) for layer in all_layers(model)):
            raise ValueError(f"Argument `{name}`: model {model.name!r} has no BatchNormalization "
                             "layer; there is no variance shift to audit, measure or correct.")
    return model


def model_and_data(model, data, *, model_name="model", data_name="data"):
    """:func:`keras_model` then :func:`data_like`: the first line of every data-taking function."""
    keras_model(model, model_name)
    data_like(data, model, data_name)


def _input_shapes(model):
    from varshift._graph import model_input_shapes as _model_input_shapes  # noqa: PLC0415

    return _model_input_shapes(model)


def _check_array(name, a, expected, model):
    if a is None:
        raise TypeError(f"Argument `{name}` is missing (received None); expected a numpy array "
                        "of inputs, a tf.data.Dataset or a keras.utils.PyDataset.")
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError):  # ragged lists
        raise TypeError(f"Argument `{name}` must be a numeric array; received "
                        f"{describe(a)}.") from None
    if arr.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"Argument `{name}` must hold numbers (a bool, int or float dtype); "
                        f"received an array of dtype {arr.dtype} and shape {arr.shape}.")
    if arr.ndim == 0 or len(arr) == 0:
        raise ValueError(f"Argument `{name}` is empty: it must hold at least one sample along "
                         f"its first (batch) axis; received an array of shape {arr.shape}.")
    if expected is not None:
        ok = len(arr.shape) == len(expected) and all(
            e is None or a_ == e for a_, e in zip(arr.shape[1:], expected[1:], strict=True))
        if not ok:
            raise ValueError(
                f"Argument `{name}` has samples of shape {arr.shape[1:]}; model {model.name!r} "
                f"expects samples of shape {tuple(expected[1:])} (batch axis excluded).")
    return arr


def data_like(data, model=None, name: str = "data"):
    """Inputs for ``model``: numeric dtype, at least one sample, shape matching its inputs.

    Accepts what the diagnostics accept: an array (or ``(x, y[, w])``), a list/dict of arrays
    for a multi-input model, a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``. Datasets
    are not read here. Arrays are checked without a pass over their values: NaN and infinity
    are found by the BN-statistics engine (:mod:`varshift.bnstats`) on the batches as they
    stream, so finiteness costs no second pass.
    """
    if data is None:
        _check_array(name, None, None, model)
    if not isinstance(data, (np.ndarray, list, tuple, dict)) and not hasattr(data, "__array__"):
        return _stream(data, name)
    expected = _input_shapes(model) if model is not None else None
    if isinstance(data, tuple) and (expected is None or len(expected) == 1) and \
            1 <= len(data) <= 3:
        data = data[0]  # (x, y) or (x, y, w) as given to fit
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list) and expected is not None and len(expected) > 1:
        items = list(enumerate(data))
    else:
        items = [(None, data)]
    if expected is not None and len(items) != len(expected):
        raise ValueError(f"Argument `{name}` gives {len(items)} input array(s); model "
                         f"{model.name!r} takes {len(expected)} input(s).")
    for i, (key, a) in enumerate(items):
        label = name if key is None else f"{name}[{key!r}]"
        _check_array(label, a, expected[i] if expected else None, model)
    return data


def _stream(data, name):
    """A ``tf.data.Dataset`` or ``keras.utils.PyDataset``: checked per batch as it streams."""
    from varshift._keras import keras as load_keras  # noqa: PLC0415
    from varshift._keras import tf_if_present  # noqa: PLC0415

    keras, tf = load_keras(), tf_if_present()
    if isinstance(data, keras.utils.PyDataset) or (tf is not None
                                                   and isinstance(data, tf.data.Dataset)):
        return data
    raise TypeError(f"Argument `{name}` must be a numpy array (or a list/dict of arrays), a "
                    f"tf.data.Dataset or a keras.utils.PyDataset; received {describe(data)}.")


# --------------------------------------------------------------------------- output files

def output_path(path, name: str, *, suffix: str | None = None, make_parents: bool = False):
    """An output file destination: not a folder, its folder exists (or is created) and is writable.

    Checked by creating and removing a temporary file in that folder (works for read-only file
    systems and for root, where ``os.access`` always answers yes). An existing file is allowed:
    it is replaced atomically and keeps its permissions (:mod:`varshift._io`).
    """
    if path is None or not isinstance(path, (str, os.PathLike)) or str(path) == "":
        what = "missing" if path in (None, "") else f"received {describe(path)}"
        raise TypeError(f"Argument `{name}` must be a file path; {what}.")
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"Argument `{name}` must name a {suffix} file; received {str(path)!r}.")
    if path.is_dir():
        raise ValueError(f"Argument `{name}` {str(path)!r} is a folder; expected a file path.")
    folder = path.parent
    if make_parents:
        output_folder(folder, name)
        return path
    if not folder.is_dir():
        raise ValueError(f"Argument `{name}` {str(path)!r}: folder {str(folder)!r} does not exist.")
    _probe(folder, name, str(path))
    return path


def output_folder(folder, name: str):
    """An output folder: created if missing (with its parents), and writable."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"Argument `{name}`: cannot create folder {str(folder)!r} "
                         f"({err.strerror or err}).") from None
    _probe(folder, name, str(folder))
    return folder


def _probe(folder, name, shown):
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".varshift-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ValueError(f"Argument `{name}` {shown!r}: cannot write in folder {str(folder)!r} "
                         f"({err.strerror or err}).") from None


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (numpy booleans too); ``"no"``, ``0`` or ``None`` are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be True or False; received "
                        f"{name}={value!r} of type {type(value).__name__}.")
    return bool(value)
