"""Declared argument contracts: each public callable's arguments are declared once.

In the style of scikit-learn's ``validate_params``: a public function, class or command is
decorated with :func:`contract`, which maps argument names to a :class:`Constraint`. From that
one declaration come

- the **checks**: the decorated callable checks every declared argument (positional, keyword
  or part of ``**kwargs``) before its body runs, and raises one line that names the argument,
  the value received and what is expected: :class:`~varshift._validate.ArgumentTypeError` (a
  ``TypeError`` that is also a ``ValueError``) for the wrong kind of object, ``ValueError``
  for the right kind with a wrong value;
- the **contract table** of ``docs/api.md`` (:func:`contract_table`);
- the **bad-input tests**: every constraint lists values that violate it
  (:meth:`Constraint.violations`), and one parametrised test calls every declared callable
  with each of them.

The module is framework-neutral: it imports numpy only; a constraint on a framework object
(:class:`Instance`) names the class lazily, by module and attribute.

Example::

    @contract(rate=Real(0, 1, closed="left", meaning="drop ratio"),
              seed=Optional(Integer(0, MAX_SEED)), inplace=Boolean())
    def f(rate, *, seed=None, inplace=False): ...

Numbers: an integer is a Python ``int`` or a numpy integer (``np.int64(10)``); a real number
is any ``numbers.Real`` (``int``, ``float``, ``fractions.Fraction``, numpy integers and
floats); ``True``/``False`` are refused wherever a number is expected. The values the
callable receives are converted: Python ``int`` for :class:`Integer`, ``float`` for a scalar
:class:`Real`, ``bool`` for :class:`Boolean`, a tuple of ``int`` for :class:`Shape`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import numbers
import os
import stat
from pathlib import Path

import numpy as np

from varshift import _validate
from varshift._validate import ArgumentTypeError

__all__ = ["Constraint", "Integer", "Real", "Boolean", "Options", "Optional", "AnyOf", "Shape",
           "InputPath", "OutputPath", "Instance", "Data", "Mapping", "Function", "Array",
           "contract", "Contract",
           "REGISTRY", "CONTRACT_MODULES", "OPTIONAL_REQUIRES", "contracts", "contract_table", "Violation"]

#: qualified name -> :class:`Contract`, filled as the modules that declare contracts import
REGISTRY: dict = {}
#: the modules whose callables declare contracts (imported by :func:`contracts`)
CONTRACT_MODULES = ("varshift.theory", "varshift.layers", "varshift.models", "varshift.demo",
                    "varshift.diagnostics", "varshift.callbacks", "varshift.nets",
                    "varshift.data.pipeline", "varshift.cli", "varshift.torch")
#: module -> the optional package it needs: :func:`contracts` leaves the module out where that
#: package is not installed (``varshift.torch`` in an environment without PyTorch)
OPTIONAL_REQUIRES = {"varshift.torch": "torch"}


class Violation:
    """A value that breaks a constraint: ``value``, the exception class it must raise
    (``ArgumentTypeError`` for a wrong kind, ``ValueError`` for a wrong value) and a label."""

    __slots__ = ("value", "error", "label")

    def __init__(self, value, error, label):
        self.value, self.error, self.label = value, error, label

    def __repr__(self):
        return f"Violation({self.label})"


def _kind(value, label=None):
    return Violation(value, ArgumentTypeError, label or f"wrong kind: {value!r}")


def _bad(value, label=None):
    return Violation(value, ValueError, label or f"wrong value: {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_))


def _is_boolean_array(value) -> bool:
    """Whether ``value`` (an array, or a list of booleans ``numpy.asarray`` reads) is boolean."""
    if isinstance(value, (str, bytes)) or value is None:
        return False
    try:
        return np.asarray(value).dtype == np.bool_
    except (TypeError, ValueError):
        return False


class Constraint:
    """One argument's contract. Subclasses implement :meth:`check`, :meth:`describe` and
    :meth:`violations`; :meth:`example` gives a valid value where one can be made alone."""

    def check(self, name: str, value):
        """Return ``value`` (converted) or raise one line naming ``name``."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is expected, for the contract table."""
        raise NotImplementedError

    def violations(self, tmp=None) -> list:
        """:class:`Violation` values that break this constraint (``tmp``: a scratch folder
        for path constraints)."""
        return []

    def example(self):
        """A valid value (``None`` where none can be made without context)."""
        return None


class Integer(Constraint):
    """An integer (Python or numpy, not bool) in ``[low, high]`` (either bound optional)."""

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    def _expected(self):
        if self.low == 1 and self.high is None:
            return "a positive integer"
        if self.low is None and self.high is None:
            return "an integer"
        if self.high is None:
            return f"an integer >= {self.low}"
        if self.low is None:
            return f"an integer <= {self.high}"
        return f"an integer in [{self.low}, {self.high}]"

    def check(self, name, value):
        if not _is_int(value):
            raise ArgumentTypeError(f"Argument `{name}` must be {self._expected()}; received "
                                    f"{name}={value!r} of type {type(value).__name__}.")
        if self.low is not None and value < self.low or \
                self.high is not None and value > self.high:
            raise ValueError(f"Argument `{name}` must be {self._expected()}; received "
                             f"{name}={value!r}.")
        return int(value)

    def describe(self):
        return self._expected()

    def violations(self, tmp=None):
        out = [_kind(2.5), _kind("3"), _kind(True), _kind(None)]
        if self.low is not None:
            out.append(_bad(self.low - 1, f"below {self.low}"))
        if self.high is not None:
            out.append(_bad(self.high + 1, f"above {self.high}"))
        return out

    def example(self):
        return self.low if self.low is not None else (self.high if self.high is not None else 0)


_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


class Real(Constraint):
    """A finite real number (``array=True``: or an array of them) in an interval.

    ``closed`` says which ends belong to the interval (``"both"``, ``"left"``, ``"right"``,
    ``"neither"``); ``None`` as a bound means unbounded. ``meaning`` is a word for the
    message (``"Keras' drop ratio"``).
    """

    def __init__(self, low=None, high=None, *, closed="both", array=False, meaning=""):
        if closed not in _BRACKETS:
            raise ValueError(f"closed must be one of {list(_BRACKETS)}; received {closed!r}")
        self.low, self.high, self.closed, self.array, self.meaning = \
            low, high, closed, array, meaning

    def _interval(self):
        left, right = _BRACKETS[self.closed]
        lo = "-inf" if self.low is None else self.low
        hi = "inf" if self.high is None else self.high
        return f"{left if self.low is not None else '('}{lo}, {hi}" \
               f"{right if self.high is not None else ')'}"

    def describe(self):
        what = "real number" + (" or array of real numbers" if self.array else "")
        where = "" if self.low is None and self.high is None else f" in {self._interval()}"
        extra = f" ({self.meaning})" if self.meaning else ""
        return f"finite {what}{where}{extra}"

    def check(self, name, value):
        if isinstance(value, (bool, np.bool_)) or (self.array and _is_boolean_array(value)):
            shown = f"{name}={value!r}" if isinstance(value, (bool, np.bool_)) else \
                _validate.describe(value)
            raise ArgumentTypeError(f"Argument `{name}` must be a real number"
                                    f"{' or an array of real numbers' if self.array else ''}, "
                                    f"not a boolean; received {shown}.")
        scalar = _is_real(value)
        if not scalar and not self.array:
            what = "missing (received None)" if value is None else \
                f"received {_validate.describe(value)}"
            raise ArgumentTypeError(f"Argument `{name}` must be a real number; {what}.")
        if scalar and not isinstance(value, (float, np.floating, int, np.integer)):
            value = float(value)  # fractions.Fraction, decimal-free numbers.Real
        low, high = (-np.inf if self.low is None else self.low,
                     np.inf if self.high is None else self.high)
        if self.low is None and self.high is None:
            arr = _validate.as_float_array(name, value)
        else:
            arr = _validate.check_in_range(name, value, low, high,
                                           low_open=self.closed in ("right", "neither"),
                                           high_open=self.closed in ("left", "neither"),
                                           meaning=self.meaning)
        if scalar:
            return float(arr) if not _is_int(value) else value
        return value

    def violations(self, tmp=None):
        out = [_kind("five"), _kind(True), _kind(None), _bad(float("nan"), "NaN"),
               _bad(float("inf"), "infinite")]
        if self.array:
            out.append(_kind([True, False], "booleans"))
        if self.low is not None:
            below = self.low if self.closed in ("right", "neither") else self.low - 1
            out.append(_bad(below, f"below the interval {self._interval()}"))
        if self.high is not None:
            above = self.high if self.closed in ("left", "neither") else self.high + 1
            out.append(_bad(above, f"above the interval {self._interval()}"))
        return out

    def example(self):
        if self.low is not None and self.high is not None:
            return (self.low + self.high) / 2
        if self.low is not None:
            return self.low + 1
        if self.high is not None:
            return self.high - 1
        return 0.0


class Boolean(Constraint):
    """``True`` or ``False`` (numpy booleans too); ``0``, ``"no"`` and ``None`` are refused."""

    def check(self, name, value):
        return _validate.check_bool(name, value)

    def describe(self):
        return "True or False"

    def violations(self, tmp=None):
        return [_kind("yes"), _kind(1), _kind(None)]

    def example(self):
        return False


class Options(Constraint):
    """One of a fixed set of values (compared with ``==``; strings must be strings)."""

    def __init__(self, *choices, removed=None):
        self.choices = tuple(choices)
        self.removed = dict(removed or {})  # former choice -> why it went

    def check(self, name, value):
        listed = ", ".join(map(repr, self.choices))
        strings = all(isinstance(c, str) for c in self.choices)
        if strings and not isinstance(value, str):
            raise ArgumentTypeError(f"Argument `{name}` must be one of {listed}; received "
                                    f"{name}={value!r} of type {type(value).__name__}.")
        try:
            known = value in self.choices
        except TypeError:  # an unhashable/uncomparable object
            known = False
        if not known:
            why = f" (removed: {self.removed[value]})" if isinstance(value, str) and \
                value in self.removed else ""
            raise ValueError(f"Argument `{name}` must be one of {listed}; received "
                             f"{name}={value!r}{why}.")
        return value

    def describe(self):
        return "one of " + ", ".join(f"`{c!r}`" for c in self.choices)

    def violations(self, tmp=None):
        out = [_bad("no-such-choice" if isinstance(self.choices[0], str) else object(),
                    "not one of the choices")]
        if all(isinstance(c, str) for c in self.choices):
            out.append(_kind(3))
        return out

    def example(self):
        return self.choices[0]


class Optional(Constraint):
    """``None`` or a value satisfying ``inner``."""

    def __init__(self, inner: Constraint):
        self.inner = inner

    def check(self, name, value):
        return None if value is None else self.inner.check(name, value)

    def describe(self):
        return f"None or {self.inner.describe()}"

    def violations(self, tmp=None):
        return [v for v in self.inner.violations(tmp) if v.value is not None]

    def example(self):
        return None


class AnyOf(Constraint):
    """A value satisfying at least one of ``inner`` (e.g. ``AnyOf(Boolean(), Integer(0))``)."""

    def __init__(self, *inner):
        self.inner = inner

    def check(self, name, value):
        errors = []
        for constraint in self.inner:
            try:
                return constraint.check(name, value)
            except (TypeError, ValueError) as err:
                errors.append(err)
        for err in errors:  # a right kind with a wrong value is the more useful answer
            if not isinstance(err, TypeError):
                raise err
        raise ArgumentTypeError(f"Argument `{name}` must be {self.describe()}; received "
                                f"{_validate.describe(value)}.")

    def describe(self):
        return " or ".join(c.describe() for c in self.inner)

    def violations(self, tmp=None):
        out = []
        for constraint in self.inner:
            for v in constraint.violations(tmp):
                try:
                    self.check("x", v.value)
                except TypeError:
                    out.append(_kind(v.value, v.label))
                except ValueError:
                    out.append(_bad(v.value, v.label))
        return out

    def example(self):
        return self.inner[0].example()


class Shape(Constraint):
    """A shape: a tuple or list of positive integers, of rank ``rank`` (an int, a tuple of
    allowed ranks, or ``None`` for any rank >= 1); ``None`` entries allowed with ``unknown``."""

    def __init__(self, rank=None, *, unknown=False, what="the shape of one sample"):
        self.rank = (rank,) if isinstance(rank, int) else rank
        self.unknown, self.what = unknown, what

    def _expected(self):
        ranks = "" if self.rank is None else \
            f" of {' or '.join(map(str, self.rank))} positive integers"
        return f"{self.what}, a tuple{ranks or ' of positive integers'}"

    def check(self, name, value):
        if not isinstance(value, (tuple, list)) or not value or not all(
                _is_int(d) or (self.unknown and d is None) for d in value):
            raise ArgumentTypeError(f"Argument `{name}` must be {self._expected()}; received "
                                    f"{_validate.describe(value)}.")
        if self.rank is not None and len(value) not in self.rank:
            raise ValueError(f"Argument `{name}` must be {self._expected()}; received "
                             f"{name}={tuple(value)!r} of rank {len(value)}.")
        for i, d in enumerate(value):
            if d is not None and d < 1:
                raise ValueError(f"Argument `{name}` must be {self._expected()}; received "
                                 f"{name}={tuple(value)!r} ({name}[{i}]={d!r}).")
        return tuple(None if d is None else int(d) for d in value)

    def describe(self):
        return self._expected()

    def violations(self, tmp=None):
        rank = 3 if self.rank is None else self.rank[0]
        out = [_kind("5"), _kind((2.5,) * rank, "a float entry"), _kind(()),
               _bad((0,) + (4,) * (rank - 1), "a zero entry")]
        if self.rank is not None:
            wrong = max(self.rank) + 1
            out.append(_bad((4,) * wrong, f"rank {wrong}"))
        return out

    def example(self):
        return (4,) * (1 if self.rank is None else self.rank[0])


def _path_kind(path):
    """``"missing"``, ``"dir"``, ``"file"`` or ``"special"`` (FIFO, device, socket)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "special"


class InputPath(Constraint):
    """An existing path to read: ``kind="file"`` (a regular file: not a folder, FIFO or
    device) or ``"dir"``; ``suffixes`` restricts the file name's ending."""

    def __init__(self, kind="file", *, suffixes=None, what=None):
        self.kind, self.suffixes = kind, tuple(suffixes or ())
        self.what = what or ("file" if kind == "file" else "folder")

    def check(self, name, value):
        if value is None or not isinstance(value, (str, os.PathLike)) or str(value) == "":
            what = "missing" if value in (None, "") else f"received {_validate.describe(value)}"
            raise ArgumentTypeError(f"Argument `{name}` must be a path to an existing "
                                    f"{self.what}; {what}.")
        shown = os.fspath(value)
        if len(os.path.basename(shown)) > 255 or len(shown) > 4096:
            raise ValueError(f"Argument `{name}` must be a path to an existing {self.what}; "
                             f"received a name of {len(os.path.basename(shown))} characters "
                             "(at most 255 per name).")
        kind = _path_kind(shown)
        expected = "file" if self.kind == "file" else "dir"
        if kind != expected:
            why = {"missing": "does not exist", "dir": "is a folder, not a file",
                   "file": "is a file, not a folder",
                   "special": "is not a regular file (a FIFO, device or socket)"}.get(
                       kind, f"cannot be read: {kind}")
            raise ValueError(f"Argument `{name}` {shown!r} {why}; expected an existing "
                             f"{self.what}.")
        if self.suffixes and Path(shown).suffix.lower() not in self.suffixes:
            raise ValueError(f"Argument `{name}` {shown!r} must name a "
                             f"{' or '.join(self.suffixes)} file.")
        return value

    def describe(self):
        base = f"existing {'regular file' if self.kind == 'file' else 'folder'}"
        return base + (f" ({', '.join(self.suffixes)})" if self.suffixes else "")

    def violations(self, tmp=None):
        out = [_kind(3)]
        if tmp is not None:
            tmp = Path(tmp)
            out.append(_bad(str(tmp / "missing" / "nothing.npy"), "missing"))
            out.append(_bad(str(tmp / ("n" * 266)), "a 266-character name"))
            if self.kind == "file":
                out.append(_bad(str(tmp), "a folder"))
                out.append(_bad("/dev/null", "a device"))
        return out


class OutputPath(Constraint):
    """A file to write: not a folder, its folder exists and is writable (probed by creating a
    file), ``suffix`` its ending; a symbolic link is checked where it points."""

    def __init__(self, suffix=None):
        self.suffix = suffix

    def check(self, name, value):
        if isinstance(value, (str, os.PathLike)) and len(os.path.basename(os.fspath(value))) > 255:
            raise ValueError(f"Argument `{name}` must be a file path with names of at most 255 "
                             f"characters; received a name of "
                             f"{len(os.path.basename(os.fspath(value)))} characters.")
        try:
            _validate.output_path(value, name, suffix=self.suffix)
            if isinstance(value, (str, os.PathLike)) and os.path.islink(value):
                target = os.path.realpath(value)
                _validate.output_path(target, f"{name} (link {os.fspath(value)!r} points to)",
                                      suffix=self.suffix)
        except TypeError as err:
            raise ArgumentTypeError(str(err)) from None
        except OSError as err:
            raise ValueError(f"Argument `{name}` {os.fspath(value)!r} cannot be written "
                             f"({err.strerror or err}).") from None
        if _path_kind(os.fspath(value)) == "special":
            raise ValueError(f"Argument `{name}` {os.fspath(value)!r} is not a regular file "
                             "(a FIFO, device or socket); expected a file path.")
        return value

    def describe(self):
        return "file path to write" + (f" ({self.suffix})" if self.suffix else "") + \
            " in an existing, writable folder"

    def violations(self, tmp=None):
        out = [_kind(3)]
        if tmp is not None:
            tmp = Path(tmp)
            suffix = self.suffix or ".out"
            out += [_bad(str(tmp / "no" / f"such{suffix}"), "folder missing"),
                    _bad(str(tmp), "a folder"),
                    _bad(str(tmp / ("n" * 266)) + suffix, "a 266-character name")]
            if self.suffix:
                out.append(_bad(str(tmp / "out.wrong"), "wrong suffix"))
        return out


class Instance(Constraint):
    """An instance of a class named lazily (``"keras:Model"``: module, colon, attribute),
    so that declaring it imports no framework."""

    def __init__(self, *targets, what=None):
        self.targets, self.what = targets, what

    def _classes(self):
        out = []
        for target in self.targets:
            if isinstance(target, type):
                out.append(target)
                continue
            module, _, attr = target.partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            out.append(obj)
        return tuple(out)

    def check(self, name, value):
        if not isinstance(value, self._classes()):
            what = "missing (received None)" if value is None else \
                f"received {_validate.describe(value)}"
            raise ArgumentTypeError(f"Argument `{name}` must be {self.describe()}; {what}.")
        return value

    def describe(self):
        return self.what or "an instance of " + " or ".join(
            t if isinstance(t, str) else t.__name__ for t in self.targets)

    def violations(self, tmp=None):
        return [_kind("not an object of that kind"), _kind(None)]


class Function(Constraint):
    """A callable (``what`` says which calls it receives)."""

    def __init__(self, what="a callable"):
        self.what = what

    def check(self, name, value):
        if not callable(value):
            raise ArgumentTypeError(f"Argument `{name}` must be {self.what}; received "
                                    f"{_validate.describe(value)}.")
        return value

    def describe(self):
        return self.what

    def violations(self, tmp=None):
        return [_kind("not callable")]


class Array(Constraint):
    """A numeric array (anything ``numpy.asarray`` reads) of rank ``ndim`` (an int, a tuple of
    ranks, or ``None``), with at least one element along the first axis; ``what`` names it.
    ``True``/``False`` are refused; a boolean array only where ``boolean=False`` (numbers such
    as a kernel's weights, where data such as images may be boolean)."""

    def __init__(self, ndim=None, *, what="a numeric array", boolean=True):
        self.ndim = (ndim,) if isinstance(ndim, int) else ndim
        self.what, self.boolean = what, boolean

    def check(self, name, value):
        if value is None or isinstance(value, (str, bytes)):
            raise ArgumentTypeError(f"Argument `{name}` must be {self.what}; received "
                                    f"{_validate.describe(value)}.")
        if isinstance(value, (bool, np.bool_)) or (not self.boolean and _is_boolean_array(value)):
            shown = f"{name}={value!r}" if isinstance(value, (bool, np.bool_)) else \
                _validate.describe(value)
            raise ArgumentTypeError(f"Argument `{name}` must be {self.what} of numbers, not "
                                    f"booleans; received {shown}.")
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            arr = None
        if arr is None or not _validate.is_numeric_dtype(arr.dtype):
            raise ArgumentTypeError(f"Argument `{name}` must be {self.what} of numbers; received "
                                    f"{_validate.describe(value if arr is None else arr)}.")
        if self.ndim is not None and arr.ndim not in self.ndim:
            raise ValueError(f"Argument `{name}` must be {self.what} "
                             f"({' or '.join(map(str, self.ndim))}-D); received an array of "
                             f"shape {arr.shape}.")
        if arr.ndim == 0 or len(arr) == 0:
            raise ValueError(f"Argument `{name}` must hold at least one sample; received an "
                             f"array of shape {arr.shape}.")
        return value

    def describe(self):
        rank = "" if self.ndim is None else f" ({' or '.join(map(str, self.ndim))}-D)"
        return f"{self.what}{rank}, numeric{'' if self.boolean else ' (not boolean)'}, not empty"

    def violations(self, tmp=None):
        rank = 2 if self.ndim is None else self.ndim[0]
        out = [_kind("images"), _kind(None), _kind(True, "a boolean"),
               _kind(np.full((2,) * rank, "a"), "strings"),
               _bad(np.zeros((0,) + (2,) * (rank - 1)), "empty")]
        if not self.boolean:
            out.append(_kind(np.ones((2,) * rank, bool), "booleans"))
        if self.ndim is not None:
            out.append(_bad(np.zeros((2,) * (max(self.ndim) + 1)), "one axis too many"))
        return out


class Mapping(Constraint):
    """A ``dict`` (with ``keys``: only those keys)."""

    def __init__(self, keys=None):
        self.keys = None if keys is None else tuple(keys)

    def check(self, name, value):
        if not isinstance(value, dict):
            raise ArgumentTypeError(f"Argument `{name}` must be a dict; received "
                                    f"{_validate.describe(value)}.")
        if self.keys is not None:
            unknown = sorted(map(str, set(value) - set(self.keys)))
            if unknown:
                raise ValueError(f"Argument `{name}` has unknown key(s) {', '.join(unknown)}; "
                                 f"expected keys among {', '.join(self.keys)}.")
        return value

    def describe(self):
        return "a dict" + (f" with keys among {', '.join(self.keys)}" if self.keys else "")

    def violations(self, tmp=None):
        out = [_kind([1, 2])]
        if self.keys is not None:
            out.append(_bad({"no_such_key": 1}, "unknown key"))
        return out


class Data(Constraint):
    """Model inputs (:func:`varshift._validate.data_like`): a numeric array (or list/dict of
    arrays, ``(x, y)``), a ``tf.data.Dataset`` or a ``keras.utils.PyDataset``. Checked here
    alone (kind, dtype, at least one sample); against the model's input shape, and for NaN
    and infinity as the batches stream, by the callable itself."""

    def check(self, name, value):
        try:
            _validate.data_like(value, None, name)
        except TypeError as err:
            raise ArgumentTypeError(str(err)) from None
        return value

    def describe(self):
        return ("numeric array (or list/dict of arrays, `(x, y)`), tf.data.Dataset or "
                "PyDataset; finite; at least one sample; samples of the model's input shape")

    def violations(self, tmp=None):
        return [_kind("not data"), _kind(None), _kind(np.array([["a"] * 5] * 4), "strings"),
                _bad(np.zeros((0, 5), "float32"), "empty"),
                _bad(np.full((4, 5), np.nan, "float32"), "NaN (found while streaming)")]


# ----------------------------------------------------------------------------- declaration

class Contract:
    """The declaration of one callable: its qualified name, the constraints by argument, and
    ``cli`` (``True``: arguments shown as ``--option-name``; a dict: those labels, by argument)."""

    __slots__ = ("qualname", "params", "cli", "signature", "func")

    def __init__(self, qualname, params, cli, signature, func):
        self.qualname, self.params, self.cli = qualname, params, cli
        self.signature, self.func = signature, func

    def label(self, name):
        if isinstance(self.cli, dict) and name in self.cli:
            return self.cli[name]
        return "--" + name.replace("_", "-") if self.cli else name

    def check(self, arguments: dict) -> dict:
        """Check (and convert) the declared entries of ``arguments`` (name -> value)."""
        for name, constraint in self.params.items():
            if name in arguments:
                arguments[name] = constraint.check(self.label(name), arguments[name])
        return arguments


def contract(*, cli=False, **params):
    """Decorator: declare the constraints of a function's (or a class's ``__init__``'s)
    arguments; the decorated callable checks them before its body runs.

    Arguments missing from the call keep their defaults, which are not checked. An argument
    collected by ``**kwargs`` is checked when present. ``cli=True`` (click commands) names the
    arguments as their options (``--batch-size``) and leaves the arguments unconverted.
    """

    def decorate(obj):
        target = obj.__init__ if inspect.isclass(obj) else obj
        signature = inspect.signature(target)
        var_kw = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        unknown = set(params) - set(signature.parameters)
        if unknown and not var_kw:
            raise TypeError(f"contract for {obj.__qualname__} names unknown argument(s) "
                            f"{sorted(unknown)}")
        qualname = f"{obj.__module__}.{obj.__qualname__}"
        declared = Contract(qualname, dict(params), cli, signature, obj)

        @functools.wraps(target)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            given = dict(bound.arguments)
            extra = {}
            for pname, p in signature.parameters.items():
                if p.kind is p.VAR_KEYWORD and pname in given:
                    extra = given.pop(pname)
            values = declared.check({**given, **extra})
            if not cli:
                for key in given:
                    bound.arguments[key] = values[key]
                for key in extra:
                    bound.arguments[next(n for n, p in signature.parameters.items()
                                         if p.kind is p.VAR_KEYWORD)][key] = values[key]
            return target(*bound.args, **bound.kwargs)

        declared.func = checked
        checked.__signature__ = signature  # for tools that do not follow __wrapped__ (Keras)
        checked.__contract__ = declared
        REGISTRY[qualname] = declared
        if inspect.isclass(obj):
            obj.__init__ = checked
            obj.__contract__ = declared
            return obj
        return checked

    return decorate


def contracts() -> dict:
    """Every declared :class:`Contract` (the modules of :data:`CONTRACT_MODULES` imported).

    A module of :data:`OPTIONAL_REQUIRES` whose optional package is not installed is left out
    (with its declarations); any other failure to import is raised.
    """
    for name in CONTRACT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            needs = OPTIONAL_REQUIRES.get(name)
            if needs is None or (err.name or "").partition(".")[0] != needs:
                raise
            for qualname in [q for q in REGISTRY if q.startswith(name + ".")]:
                del REGISTRY[qualname]  # declared by a submodule imported before the failure
    return dict(REGISTRY)


def _public_name(qualname):
    short = {"varshift.diagnostics.shift.": "varshift.", "varshift.diagnostics.audit.":
             "varshift.", "varshift.diagnostics.recalibrate.": "varshift.",
             "varshift.diagnostics.correct.": "varshift.", "varshift.callbacks.": "varshift.",
             "varshift.layers.": "varshift.", "varshift.data.pipeline.": "varshift.data.",
             "varshift.nets._blocks.": "varshift.nets.",
             "varshift.torch.audit.": "varshift.torch.", "varshift.torch.shift.":
             "varshift.torch.", "varshift.torch.recalibrate.": "varshift.torch.",
             "varshift.cli.": "varshift "}
    for prefix, public in short.items():
        if qualname.startswith(prefix):
            name = qualname[len(prefix):].removesuffix(".__init__")
            return public + (name.replace("_command", "") if public == "varshift " else name)
    return qualname


def contract_table() -> str:
    """The contract table of ``docs/api.md``, in Markdown: one row per declared argument."""
    lines = ["| callable | argument | expected |", "|---|---|---|"]
    for qualname, declared in sorted(contracts().items(),
                                     key=lambda kv: (bool(kv[1].cli), _public_name(kv[0]))):
        name = _public_name(qualname)
        for arg, constraint in declared.params.items():
            text = constraint.describe().replace("|", "\\|")
            lines.append(f"| `{name}` | `{declared.label(arg)}` | {text} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ constraints used often

#: Keras' drop ratio, a scalar or an array (the paper's retain probability is 1 - rate)
RATE = Real(0.0, 1.0, closed="left", array=True, meaning="Keras' drop ratio")
#: Uout's noise half-width
BETA = Real(0.0, 1.0, array=True, meaning="Uout's noise half-width")
class _Variance(Real):
    """A variance: finite and >= 0 (scalar or array); the message says "a variance"."""

    def __init__(self):
        super().__init__(0.0, None, array=True, meaning="a variance")

    def check(self, name, value):
        if not isinstance(value, (bool, np.bool_)):
            _validate.check_var(value, name)
        return super().check(name, value)


#: a variance (finite, >= 0), scalar or array
VARIANCE = _Variance()
#: any finite real number or array of them
FINITE = Real(array=True)
#: a count >= 1
COUNT = Integer(1)
#: a seed that may reach ``keras.utils.set_random_seed`` (32 bits), or None
SEED = Optional(Integer(0, _validate.MAX_SEED))
#: a Keras model (named lazily)
MODEL = Instance("keras:Model", what="a Keras model (keras.Model)")
#: one drop ratio (a model's layer takes one number)
RATE_SCALAR = Real(0.0, 1.0, closed="left", meaning="Keras' drop ratio")
#: one Uout half-width
BETA_SCALAR = Real(0.0, 1.0, meaning="Uout's noise half-width")
#: a seed that only feeds numpy's generators or a Keras SeedGenerator (any size), or None
ANY_SEED = Optional(Integer(0))
