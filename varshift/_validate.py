"""Argument checks shared by the public API (the "Input contract" of ``docs/api.md``).

Every public function and command checks its arguments before any work. A failure is one line
that names the argument, shows the value received (or a summary: shape, dtype, the first bad
element's index and value) and says what was expected, in the style of Keras' own layers:
:class:`ArgumentTypeError` (a ``TypeError`` that is also a ``ValueError``) for a wrong kind of
object (wrong type, non-numeric dtype, a missing value, a boolean where a number is expected),
``ValueError`` for a right kind with a wrong value (range, shape, NaN/inf, empty, an output
destination that cannot be written). The arguments of the public API are declared once, with
the constraints of :mod:`varshift.contracts`, which use these checks.

Keras (and with it its backend) is imported only by the checks that need a Keras object; the
data contract (where the inputs are in the data, and their shape check) is
:mod:`varshift._inputs`, which the BN-statistics engine applies to every streamed batch too.
"""

from __future__ import annotations

import numbers
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from varshift._inputs import check_input_count, check_sample_shape, inputs_of, model_input_shapes

__all__ = ["as_float_array", "check_rate", "check_beta", "check_var", "check_in_range",
           "check_positive_int", "check_max_samples", "check_seed", "check_bool",
           "check_choice", "check_finite_positive", "broadcastable", "keras_model",
           "model_and_data", "data_like", "finite_data", "bounded_stream", "is_numeric_dtype",
           "output_path", "output_folder",
           "describe", "ArgumentTypeError", "MAX_SEED"]

NUMERIC_KINDS = "biuf"  # bool, signed/unsigned integer, float
#: the largest seed accepted: ``keras.utils.set_random_seed`` seeds numpy's legacy generator,
#: which takes 32-bit seeds only
MAX_SEED = 2**32 - 1


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (``"100"`` for a count, ``"yes"`` for a flag).

    Both a ``TypeError`` (the Input contract: a wrong kind of object) and a ``ValueError``
    (an argument the function cannot use), so either ``except`` works.
    """


def is_numeric_dtype(dtype) -> bool:
    """bool, integer and float dtypes, including ``ml_dtypes``' (bfloat16, float8, int4)."""
    dtype = np.dtype(dtype)
    return dtype.kind in NUMERIC_KINDS or \
        getattr(dtype.type, "__module__", "").split(".")[0] == "ml_dtypes"


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
        raise ArgumentTypeError(f"Argument `{name}` is missing (received None); expected a real number "
                        "or an array of real numbers.")
    if isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"Argument `{name}` must be a real number or an array of real "
                                f"numbers; received {name}={value!r} (a boolean).")
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_, np.number)):
        value = float(value)  # fractions.Fraction and other numbers.Real
    try:
        raw = np.asarray(value)
        if not is_numeric_dtype(raw.dtype):
            raise TypeError
        arr = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
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


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer count such as a batch size or a width: ``minimum <= value (<= maximum)``.

    ``2.5``, ``"100"``, ``True`` and ``None`` are an :class:`ArgumentTypeError`, a number out
    of range a ``ValueError``; both name the argument and the value received.
    """
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    expected = "a positive integer" if minimum == 1 and maximum is None else \
        f"an integer {bounds}"
    if not _is_int(value):
        raise ArgumentTypeError(f"Argument `{name}` must be {expected}; received "
                                f"{name}={value!r} of type {type(value).__name__}.")
    if value < minimum or maximum is not None and value > maximum:
        raise ValueError(f"Argument `{name}` must be {expected}; received {name}={value!r}.")
    return int(value)


def check_max_samples(value, name: str = "max_samples"):
    """``None`` (all the data) or a positive integer."""
    return None if value is None else check_positive_int(name, value)


def check_seed(value, name: str = "seed", *, allow_none: bool = True, maximum=MAX_SEED):
    """A random seed: ``None`` (where allowed) or an integer in ``[0, maximum]``.

    ``maximum=None`` for seeds that only feed ``numpy.random.default_rng`` (any size); the
    default :data:`MAX_SEED` where the seed may reach ``keras.utils.set_random_seed``.
    """
    if value is None and allow_none:
        return None
    return check_positive_int(name, value, minimum=0, maximum=maximum)


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (numpy booleans too); ``"no"``, ``0`` or ``None`` are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"Argument `{name}` must be True or False; received "
                                f"{name}={value!r} of type {type(value).__name__}.")
    return bool(value)


def check_choice(name: str, value, choices):
    """One of ``choices`` (compared with ``==``, so only hashable, comparable values)."""
    if not isinstance(value, str) and isinstance(next(iter(choices), None), str):
        raise ArgumentTypeError(f"Argument `{name}` must be one of "
                                f"{', '.join(map(repr, choices))}; received {name}={value!r} "
                                f"of type {type(value).__name__}.")
    if value not in tuple(choices):
        raise ValueError(f"Argument `{name}` must be one of {', '.join(map(repr, choices))}; "
                         f"received {name}={value!r}.")
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
        raise ArgumentTypeError(f"Argument `{name}` must be a Keras model (keras.Model); {what}.")
    if input_shape is not None and (
            not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
                d is None or isinstance(d, int) and not isinstance(d, bool) and d > 0
                for d in input_shape)):
        raise ValueError("Argument `input_shape` must be the shape of one sample, a tuple of "
                         f"positive integers (batch axis excluded); received {describe(input_shape)}.")
    if known_inputs and not model_input_shapes(model):
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


def model_and_data(model, data, *, model_name="model", data_name="data", **options):
    """:func:`keras_model` then :func:`data_like`: the first line of every data-taking function.

    ``options`` are the function's own counts, checked here too: ``batch_size`` (a positive
    integer), ``max_samples`` (``None`` or a positive integer), ``seed`` (``None`` or an
    integer in ``[0, MAX_SEED]``), ``passes`` (a positive integer). Returns the data in the
    one form every engine takes (see :func:`data_like`).
    """
    checks = {"batch_size": check_positive_int, "passes": check_positive_int,
              "max_samples": lambda n, v: check_max_samples(v, n),
              "seed": lambda n, v: check_seed(v, n)}
    for key, value in options.items():
        if key not in checks:
            raise TypeError(f"model_and_data() got an unexpected keyword argument {key!r}")
        checks[key](key, value)
    keras_model(model, model_name)
    if "max_samples" in options:
        bounded_stream(data, options["max_samples"], data_name)
    return data_like(data, model, data_name)


def finite_data(data, name: str = "data"):
    """Raise one line if in-memory ``data`` (an array, or a list/dict of arrays, as
    :func:`data_like` returns) holds NaN or infinity: how many, and the first index. Streams
    (datasets) are checked by the engine as they are read."""
    arrays = data.items() if isinstance(data, dict) else (
        enumerate(data) if isinstance(data, list) else [(None, data)])
    for key, arr in arrays:
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fc":
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            label = name if key is None else f"{name}[{key!r}]"
            first = ", ".join(str(int(i)) for i in np.argwhere(bad)[0])
            raise ValueError(f"Argument `{label}` must be finite; it holds "
                             f"{int(bad.sum())} NaN or infinite value(s) of {arr.size}, the "
                             f"first at index ({first}).")


def bounded_stream(data, max_samples, name: str = "data"):
    """Refuse an infinite ``tf.data.Dataset`` (``.repeat()``) when ``max_samples`` is None:
    a pass over it would never end."""
    tf = sys.modules.get("tensorflow")
    dataset = getattr(getattr(tf, "data", None), "Dataset", None) if tf is not None else None
    if max_samples is None and dataset is not None and isinstance(data, dataset):
        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(f"Argument `{name}` is an infinite tf.data.Dataset (e.g. made with "
                             ".repeat()); a pass over it never ends: give max_samples=N.")


def _as_array(name, a):
    """``a`` as a numeric numpy array (ml_dtypes' floats as float32): the one conversion."""
    if a is None:
        raise ArgumentTypeError(f"Argument `{name}` is missing (received None); expected a numpy array "
                        "of inputs, a tf.data.Dataset or a keras.utils.PyDataset.")
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError):  # ragged lists
        raise ArgumentTypeError(f"Argument `{name}` must be a numeric array; received "
                        f"{describe(a)}.") from None
    if not is_numeric_dtype(arr.dtype):
        raise ArgumentTypeError(f"Argument `{name}` must hold numbers (a bool, int or float dtype); "
                        f"received an array of dtype {arr.dtype} and shape {arr.shape}.")
    if arr.dtype.kind not in NUMERIC_KINDS:  # bfloat16 and friends: numbers numpy cannot add
        arr = arr.astype(np.float32)
    _fits_float32(name, arr)
    if arr.ndim == 0 or len(arr) == 0:
        raise ValueError(f"Argument `{name}` is empty: it must hold at least one sample along "
                         f"its first (batch) axis; received an array of shape {arr.shape}.")
    return arr


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fits_float32(name, arr):
    """Finite values beyond float32's range become infinite in the model: one line saying so
    (not "NaN or infinite" about data that is finite)."""
    if arr.dtype.kind not in "fiu" or arr.dtype.itemsize <= 4 or arr.size == 0:
        return
    big = np.abs(arr.astype(np.float64) if arr.dtype.kind != "f" else arr) > FLOAT32_MAX
    big &= np.isfinite(arr) if arr.dtype.kind == "f" else True
    if np.any(big):
        first = tuple(int(i) for i in np.argwhere(big)[0])
        raise ValueError(
            f"Argument `{name}` is finite but overflows float32 (the models' compute dtype): "
            f"{int(np.count_nonzero(big))} value(s) beyond +-{FLOAT32_MAX:.4g}, the first "
            f"{name}[{', '.join(map(str, first))}]={arr[first].item()!r}; rescale the data.")


def _check_array(name, a, expected, model):
    arr = _as_array(name, a)
    check_sample_shape(name, arr.shape, expected, getattr(model, "name", None))
    return arr


def data_like(data, model=None, name: str = "data"):
    """Inputs for ``model``, checked, in the one form every entry point uses; returned.

    The one data contract of the package: every function and class that takes data accepts
    the same things, the same way:

    - a numpy array, anything ``numpy.asarray`` reads (a nested Python list, a TensorFlow or
      JAX array), of any numeric dtype (bool, int, float, and ml_dtypes' bfloat16, which is
      converted to float32);
    - a tuple ``(x, y)`` or ``(x, y, w)`` as given to ``fit`` (labels and weights dropped);
    - for a model with several inputs, a list or dict of such arrays, one per input;
    - a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``, returned as they are and checked
      per batch as they stream (recognised without importing TensorFlow: such an object exists
      only once its module is imported).

    Arrays must hold at least one sample and, when the model's input shape is known, samples
    of that shape; a subclassed model (no declared input) is checked against the shape it was
    built with, or called on one sample in inference mode (which changes nothing), so data of
    the wrong shape is one line here rather than a Keras traceback later. NaN and infinity are
    found by the BN-statistics engine (:mod:`varshift.bnstats`) on the batches as they stream,
    so finiteness costs no second pass.

    Returns:
        A numpy array, a list/dict of numpy arrays (multi-input), or the dataset.
    """
    if data is None:
        _as_array(name, None)
    if not isinstance(data, (np.ndarray, list, tuple, dict)) and not hasattr(data, "__array__"):
        return _stream(data, name)
    expected = model_input_shapes(model) if model is not None else None
    multi = expected is not None and len(expected) > 1
    data = inputs_of(data, expected)  # (x, y[, w]) as given to fit: x
    if not isinstance(data, (np.ndarray, list, tuple, dict)) and not hasattr(data, "__array__"):
        return _stream(data, name)
    if model is None and isinstance(data, list) and data and all(
            isinstance(a, np.ndarray) or hasattr(a, "__array__") for a in data):
        multi = len(data) > 1  # a list of arrays, one per input, for a model not known yet
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, (list, tuple)) and multi:
        items = list(enumerate(data))
    else:
        items = [(None, data)]
    check_input_count(name, len(items), expected, getattr(model, "name", None))
    arrays = [_check_array(name if key is None else f"{name}[{key!r}]", a,
                           expected[i] if expected else None, model)
              for i, (key, a) in enumerate(items)]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        given = ", ".join(f"{name if key is None else f'{name}[{key!r}]'}: {len(a)}"
                          for (key, _), a in zip(items, arrays, strict=True))
        raise ValueError(f"Argument `{name}` gives input arrays of different lengths ({given} "
                         "samples); every input needs one entry per sample.")
    if model is not None and expected is None and len(arrays) == 1:
        _probe_subclassed(model, arrays[0], name)
    if isinstance(data, dict):
        return dict(zip(data, arrays, strict=True))
    return arrays if multi else arrays[0]


def _built_sample_shape(model):
    """The sample shape a subclassed model was built with (``None`` if unknown)."""
    shapes = getattr(model, "_build_shapes_dict", None)
    if not isinstance(shapes, dict) or len(shapes) != 1:
        return None
    shape = next(iter(shapes.values()))
    if not isinstance(shape, (tuple, list)) or not all(
            d is None or isinstance(d, int) for d in shape):
        return None
    return tuple(shape)[1:]


def _probe_subclassed(model, arr, name):
    """Data of the wrong shape for a model without declared inputs: one line, not a traceback."""
    import re  # noqa: PLC0415

    built = _built_sample_shape(model)
    if built is not None:
        ok = len(built) == arr.ndim - 1 and all(
            b is None or a == b for a, b in zip(arr.shape[1:], built, strict=True))
        if not ok:
            raise ValueError(f"Argument `{name}` has samples of shape {arr.shape[1:]}; model "
                             f"{model.name!r} was built on samples of shape {built} (batch "
                             "axis excluded).")
        return
    sample = arr[:1].astype(np.float32) if arr.dtype.kind in NUMERIC_KINDS else arr[:1]
    try:
        model(sample, training=False)
    except Exception as err:  # noqa: BLE001  (any failure of the user's call() is the answer)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        text = re.sub(r"Exception encountered when calling \S+\.\s*", "", text)
        text = " ".join(text.split("Arguments received by")[0].split()) or type(err).__name__
        raise ValueError(f"Argument `{name}` (samples of shape {arr.shape[1:]}) does not fit "
                         f"model {model.name!r}: calling it on one sample fails: "
                         f"{text}") from None


def _stream(data, name):
    """A ``tf.data.Dataset`` or ``keras.utils.PyDataset``, recognised without importing
    TensorFlow or Keras (an instance exists only once its module is imported)."""
    tf, keras = sys.modules.get("tensorflow"), sys.modules.get("keras")
    kinds = []
    data_mod = getattr(tf, "data", None) if tf is not None else None
    if data_mod is not None and hasattr(data_mod, "Dataset"):
        kinds.append(data_mod.Dataset)
    utils = getattr(keras, "utils", None) if keras is not None else None
    if utils is not None and hasattr(utils, "PyDataset"):
        kinds.append(utils.PyDataset)
    if kinds and isinstance(data, tuple(kinds)):
        return data
    raise ArgumentTypeError(f"Argument `{name}` must be a numpy array (or a list/dict of arrays), a "
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
        raise ArgumentTypeError(f"Argument `{name}` must be a file path; {what}.")
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

