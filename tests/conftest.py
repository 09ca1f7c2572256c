"""Test configuration: quiet TensorFlow, temporary Keras/matplotlib homes, seeded randomness."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="varshift-pytest-")
os.environ.setdefault("KERAS_HOME", os.path.join(_TMP, "keras"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_TMP, "mpl"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded numpy generator: the same numbers on every run."""
    return np.random.default_rng(12345)


@pytest.fixture
def keras():
    """Keras, imported quietly, with the global seeds fixed for the test."""
    from varshift._keras import keras as load

    k = load()
    k.utils.set_random_seed(1234)
    return k
