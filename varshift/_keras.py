"""Lazy, quiet access to Keras 3 and to its backend.

``import varshift`` must stay fast and must not import any backend: the formulas in
:mod:`varshift.theory` are pure numpy. Modules that need Keras call :func:`keras` the first
time they need it.

varshift respects the user's ``KERAS_BACKEND`` (``tensorflow``, ``jax`` or ``torch``), as Keras
does. When it is unset, Keras' own default (TensorFlow) is used if TensorFlow is installed;
otherwise, with JAX installed, varshift asks for it explicitly in a one-line error rather than
guessing (set ``KERAS_BACKEND=jax``). TensorFlow is imported only when the backend is
TensorFlow (:func:`tf`), or on request to read a ``tf.data.Dataset`` (:func:`tf_if_present`).
The first import of TensorFlow prints absl/oneDNN start-up lines on file descriptor 2 that
``TF_CPP_MIN_LOG_LEVEL`` does not remove, so that descriptor is silenced only for the duration
of that first import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

__all__ = ["keras", "tf", "tf_if_present", "backend", "is_backend", "backend_versions",
           "quiet_stderr", "to_numpy"]


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


def _installed(name: str) -> bool:
    return name in sys.modules or importlib.util.find_spec(name) is not None


def _chosen_backend() -> str:
    """The backend Keras will use: ``KERAS_BACKEND``, else Keras' default (tensorflow)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    if not _installed("tensorflow") and _installed("jax"):
        raise RuntimeError(
            "KERAS_BACKEND is not set and TensorFlow (Keras' default backend) is not installed; "
            "set KERAS_BACKEND=jax (installed here) or install TensorFlow.")
    return "tensorflow"


def _import_tensorflow():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


def keras():
    """Return the ``keras`` (Keras 3) module on the user's backend, imported quietly."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    name = _chosen_backend()
    os.environ.setdefault("KERAS_BACKEND", name)
    if name == "tensorflow":
        _import_tensorflow()
    import keras as _keras  # noqa: PLC0415

    return _keras


def backend() -> str:
    """The Keras backend in use (``"tensorflow"``, ``"jax"``, ``"torch"``, ``"numpy"``)."""
    return keras().backend.backend()


def is_backend(name: str) -> bool:
    """Whether the Keras backend in use is ``name``."""
    return backend() == name


def tf():
    """Return the ``tensorflow`` module; only on the TensorFlow backend (else ``ImportError``,
    so that code which treats TensorFlow as optional catches it as a missing module)."""
    if not is_backend("tensorflow"):
        raise ImportError(f"This needs TensorFlow, but the Keras backend is {backend()!r}.")
    return _import_tensorflow()


def tf_if_present():
    """``tensorflow`` if it is already imported or the backend is TensorFlow, else ``None``.

    Used to recognise ``tf.data.Dataset`` inputs without importing TensorFlow on another
    backend (a user who built a ``tf.data`` pipeline has imported TensorFlow already).
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    return _import_tensorflow() if is_backend("tensorflow") else None


def backend_versions() -> dict:
    """``{"backend": name, name: version, "gpus": [device names]}`` of the backend in use."""
    name = backend()
    if name == "tensorflow":
        t = tf()
        return {"backend": name, "tensorflow": t.__version__,
                "gpus": [d.name for d in t.config.list_physical_devices("GPU")]}
    if name == "jax":
        import jax  # noqa: PLC0415

        return {"backend": name, "jax": jax.__version__,
                "gpus": [str(d) for d in jax.devices() if d.platform == "gpu"]}
    if name == "torch":
        import torch  # noqa: PLC0415

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return {"backend": name, "torch": torch.__version__, "gpus": gpus}
    return {"backend": name, "gpus": []}


def to_numpy(x):
    """Convert a Keras variable or tensor to a numpy array (no numpy-2 ``__array__`` warning)."""
    return keras().ops.convert_to_numpy(x)
