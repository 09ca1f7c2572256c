"""Argument checks shared by the public API.

Every error names the argument, shows the value received and says what was expected, in the
style of Keras' own layers (``ValueError: Invalid value received for argument `rate`...``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_float_array", "check_rate", "check_beta", "check_var", "check_in_range"]


def _show(value) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(value.item() if hasattr(value, "item") else value)
    text = np.array2string(arr, threshold=8, precision=6)
    return f"{text} (array of shape {arr.shape})"


def as_float_array(name: str, value) -> np.ndarray:
    """Convert ``value`` to a float64 array; reject non-numeric and non-finite input."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"Argument `{name}` must be a real number or an array of real numbers; "
            f"received {name}={value!r} of type {type(value).__name__}."
        ) from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"Argument `{name}` must be finite (no NaN or infinity); received {name}={_show(value)}."
        )
    return arr


def check_in_range(name, value, low, high, *, low_open=False, high_open=False, meaning=""):
    """Validate that every element of ``value`` lies in the interval given; return the array."""
    arr = as_float_array(name, value)
    too_low = arr <= low if low_open else arr < low
    too_high = arr >= high if high_open else arr > high
    if np.any(too_low) or np.any(too_high):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        extra = f" ({meaning})" if meaning else ""
        raise ValueError(
            f"Argument `{name}` must be in {interval}{extra}; received {name}={_show(value)}."
        )
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
    if np.any(arr < 0):
        raise ValueError(
            f"Argument `{name}` must be a variance (>= 0); received {name}={_show(value)}."
        )
    return arr


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """An integer count such as a batch size or a width."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}; received {name}={value!r}."
        )
    return int(value)
