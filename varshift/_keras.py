"""Lazy, quiet access to TensorFlow/Keras.

``import varshift`` must stay fast and must not import TensorFlow: the formulas in
:mod:`varshift.theory` are pure numpy. Modules that need Keras call :func:`keras` (or
:func:`tf`) the first time they need it. The first import of TensorFlow prints absl/oneDNN
start-up lines on file descriptor 2 that ``TF_CPP_MIN_LOG_LEVEL`` does not remove, so that
descriptor is silenced only for the duration of that first import.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["keras", "tf", "quiet_stderr"]


@contextlib.contextmanager
def quiet_stderr():
    """Redirect file descriptor 2 to ``/dev/null`` while the block runs.

    Python's ``sys.stderr`` is flushed first so nothing already written is lost. If the
    descriptor cannot be duplicated (an unusual embedding), the block runs unchanged.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_tensorflow():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with quiet_stderr():
        import tensorflow  # noqa: PLC0415  (lazy on purpose)

        # The CUDA build of TensorFlow reports "failed call to cuInit" on a machine without a
        # GPU when the devices are first listed, after the import: list them here, silenced.
        tensorflow.config.list_physical_devices()
    try:  # absl's "WARNING: All log messages before absl::InitializeLog()" and friends
        import absl.logging  # noqa: PLC0415

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


def tf():
    """Return the ``tensorflow`` module, importing it quietly on first use."""
    return _import_tensorflow()


def keras():
    """Return the ``keras`` (Keras 3) module, importing TensorFlow quietly on first use."""
    _import_tensorflow()
    import keras as _keras  # noqa: PLC0415

    return _keras


def to_numpy(x):
    """Convert a Keras variable or tensor to a numpy array (no numpy-2 ``__array__`` warning)."""
    return keras().ops.convert_to_numpy(x)
