"""varshift: the dropout/batch-normalization variance shift, explained, measured and fixed.

Reference implementation of Li, Chen, Hu, Yang, "Understanding the Disharmony between Dropout
and Batch Normalization by Variance Shift" (CVPR 2019, arXiv:1801.05134).

``import varshift`` is fast and imports no Keras backend: :mod:`varshift.theory` is pure
numpy, and every Keras-based name below is loaded the first time it is used.
"""

from __future__ import annotations

import importlib

from varshift import theory

__version__ = "0.1.0"

# public name -> module that defines it; loaded on first attribute access (PEP 562)
_LAZY_ATTRS = {
    "Uout": "varshift.layers",
    "audit": "varshift.diagnostics",
    "measure_shift": "varshift.diagnostics",
    "recalibrate_bn": "varshift.diagnostics",
    "correct_direct": "varshift.diagnostics",
    "converged_bn_statistics": "varshift.models",
    "RecalibrateBN": "varshift.callbacks",
}
_LAZY_MODULES = {"layers", "models", "diagnostics", "nets", "data", "train", "demo", "cli",
                 "bnstats", "callbacks", "files"}

__all__ = [  # grouped: eager names, lazy names, lazy modules
    "theory", "__version__", "load_keras",
    "Uout", "audit", "measure_shift", "recalibrate_bn", "correct_direct", "converged_bn_statistics",
    "RecalibrateBN",
    "layers", "models", "diagnostics", "nets", "data", "train", "demo", "cli", "bnstats",
    "callbacks", "files",
]


def load_keras():
    """The ``keras`` module on the user's backend (``KERAS_BACKEND``; TensorFlow's start-up
    lines on stderr silenced): what varshift itself uses, imported on the first call."""
    from varshift._keras import keras

    return keras()


def __getattr__(name):
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"varshift.{name}")
    else:
        raise AttributeError(f"module 'varshift' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
