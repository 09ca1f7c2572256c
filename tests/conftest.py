"""Test configuration: quiet TensorFlow, temporary Keras/matplotlib homes, seeded randomness."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="varshift-pytest-")
os.environ.setdefault("KERAS_HOME", os.path.join(_TMP, "keras"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_TMP, "mpl"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# one CPU thread per kernel pool, as RunConfig.threads (default 1) asks of varshift.train.run:
# set before TensorFlow starts, so every test that trains in this process can honour it
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("PJRT_NPROC", "1")  # JAX: the XLA CPU client's thread pool
os.environ.setdefault("NPROC", "1")
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(
        [*os.environ.get("XLA_FLAGS", "").split(), "--xla_cpu_multi_thread_eigen=false"])

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded numpy generator: the same numbers on every run."""
    return np.random.default_rng(12345)


@pytest.fixture
def keras():
    """Keras, imported quietly, with the global seeds fixed for the test."""
    import varshift

    k = varshift.load_keras()
    k.utils.set_random_seed(1234)
    return k


@pytest.fixture
def case_a_model(keras):
    """Factory: a Dropout(rate) -> BN model on N(5, 2^2) with converged BN statistics.

    ``case_a_model(rate, features=64, n=8192, seed=0, batch_size=32) -> (model, x)``; the
    statistics are what ``fit`` at that batch size converges to
    (:func:`varshift.models.converged_bn_statistics`, assigned into the model).
    """
    from varshift.models import converged_bn_statistics, dropout_bn_model, seed_data

    def make(rate, features=64, n=8192, seed=0, batch_size=32):
        x = seed_data(n, features, seed=seed)
        model = dropout_bn_model(features, rate, seed=seed)
        converged_bn_statistics(model, x, batch_size=batch_size, seed=seed, assign=True)
        return model, x

    return make


def to_numpy(x):
    """A Keras tensor or variable as a numpy array (``keras.ops.convert_to_numpy``)."""
    import varshift

    return varshift.load_keras().ops.convert_to_numpy(x)


def _tensorflow_backend() -> bool:
    import importlib.util

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return backend == "tensorflow" and importlib.util.find_spec("tensorflow") is not None


#: for tests of TensorFlow-only behaviour (tf.data, TensorFlow's thread pools and build info)
needs_tensorflow = pytest.mark.skipif(not _tensorflow_backend(),
                                      reason="TensorFlow-only behaviour; the backend is not "
                                             "TensorFlow or TensorFlow is not installed")
