r"""The seed notebook's toy models, and BatchNormalization statistics without ``fit``.

The seed notebook trains ``Input(n) -> Dropout(rate) -> BatchNormalization`` on
:math:`x \sim N(5, 2^2)` for 50-100 epochs only so that BN's moving averages converge.
:func:`converged_bn_statistics` computes what those averages converge to directly: it runs
the model in training mode over the data in batches of the training batch size and averages
each BN layer's batch statistics exactly, with no gradient step.

Importing this module imports Keras and its backend (TensorFlow, JAX or PyTorch; quietly).
"""

from __future__ import annotations

import numpy as np

from varshift import _validate
from varshift._keras import keras as _load_keras
from varshift._validate import check_positive_int, check_rate
from varshift.bnstats import assign_statistics, collect_moments
from varshift.contracts import (
    COUNT,
    FINITE,
    MODEL,
    RATE_SCALAR,
    SEED,
    Boolean,
    Data,
    Function,
    Optional,
    Real,
    contract,
)

keras = _load_keras()

__all__ = [
    "dropout_model",
    "bn_model",
    "dropout_bn_model",
    "dropout_dense_bn_model",
    "converged_bn_statistics",
    "seed_data",
]


@contract(n_samples=COUNT, n=COUNT, mean=FINITE, std=Real(0.0, None), seed=SEED)
def seed_data(n_samples=10_000, n=5, mean=5.0, std=2.0, seed=0):
    """The seed notebook's data: ``n_samples`` x ``n`` draws of :math:`N(\\text{mean}, \\text{std}^2)`."""
    check_positive_int("n_samples", n_samples)
    check_positive_int("n", n)
    _validate.as_float_array("mean", mean)
    _validate.check_finite_positive("std", std, allow_zero=True)
    _validate.check_seed(seed)
    rng = np.random.default_rng(seed)
    return rng.normal(mean, std, size=(n_samples, n)).astype("float32")


def _compiled(model, compile):
    if compile:
        model.compile(loss="mse", optimizer="adam")  # as in the seed notebook
    return model


@contract(n=COUNT, rate=RATE_SCALAR, seed=SEED, compile=Boolean())
def dropout_model(n, rate, *, seed=None, compile=True):
    """``Input(n) -> Dropout(rate)``: inverted dropout alone (the seed's first cells).

    Args:
        n: number of features.
        rate: Keras' drop ratio in [0, 1).
        seed: seed of the dropout masks.
        compile: compile with MSE loss and Adam, as the seed notebook does.
    """
    n = check_positive_int("n", n)
    check_rate(rate)
    inputs = keras.Input(shape=(n,), name="x")
    outputs = keras.layers.Dropout(rate, seed=seed, name="dropout")(inputs)
    return _compiled(keras.Model(inputs, outputs, name="dropout_model"), compile)


@contract(n=COUNT, compile=Boolean())
def bn_model(n, *, compile=True):
    """``Input(n) -> BatchNormalization``: BN alone, the seed's control model."""
    n = check_positive_int("n", n)
    inputs = keras.Input(shape=(n,), name="x")
    outputs = keras.layers.BatchNormalization(name="bn")(inputs)
    return _compiled(keras.Model(inputs, outputs, name="bn_model"), compile)


@contract(n=COUNT, rate=RATE_SCALAR, seed=SEED, compile=Boolean())
def dropout_bn_model(n, rate, *, seed=None, compile=True):
    """``Input(n) -> Dropout(rate) -> BatchNormalization``: the paper's case (a).

    The BN layer's stored moving variance converges to Eq. 7's training variance (times Keras'
    :math:`(m-1)/m`, see :func:`varshift.theory.keras_expected_moving_variance`) while at
    inference it sees the input's own variance.
    """
    n = check_positive_int("n", n)
    check_rate(rate)
    inputs = keras.Input(shape=(n,), name="x")
    x = keras.layers.Dropout(rate, seed=seed, name="dropout")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    return _compiled(keras.Model(inputs, outputs, name="dropout_bn_model"), compile)


@contract(d=COUNT, units=COUNT, rate=RATE_SCALAR, seed=SEED, compile=Boolean())
def dropout_dense_bn_model(d, units, rate, *, seed=None, kernel_initializer=None, compile=True):
    """``Input(d) -> Dropout(rate) -> Dense(units, no bias) -> BatchNormalization``: case (b).

    The Dense layer mixes the ``d`` dropped inputs; Eq. 14 predicts the shift from the inputs'
    correlation :math:`\\rho` and the kernel's :math:`d\\cos^2\\theta`.

    Args:
        d: fan-in, the number of input features.
        units: width of the Dense layer.
        rate: Keras' drop ratio in [0, 1).
        seed: seed of the dropout masks and of the default kernel initializer.
        kernel_initializer: Keras initializer for the Dense kernel (Glorot uniform by default).
        compile: compile with MSE loss and Adam.
    """
    d = check_positive_int("d", d)
    units = check_positive_int("units", units)
    check_rate(rate)
    if kernel_initializer is None:
        kernel_initializer = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input(shape=(d,), name="x")
    x = keras.layers.Dropout(rate, seed=seed, name="dropout")(inputs)
    x = keras.layers.Dense(units, use_bias=False, kernel_initializer=kernel_initializer,
                           name="dense")(x)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    return _compiled(keras.Model(inputs, outputs, name="dropout_dense_bn_model"), compile)


@contract(model=MODEL, x=Data(), batch_size=COUNT, passes=COUNT, seed=SEED, assign=Boolean(),
          progress=Optional(Function("a callable progress(done, total)")))
def converged_bn_statistics(model, x, *, batch_size=32, passes=1, seed=0, assign=False,
                            progress=None):
    r"""What every BN layer's moving mean/variance converges to under ``fit``, without ``fit``.

    ``fit`` updates :math:`\text{moving} \leftarrow \mu\,\text{moving} + (1-\mu)\,s_t` with
    the batch statistic :math:`s_t` (mean, and *biased* variance in Keras 3). Once the initial
    value has decayed, the expected stored value is :math:`E[s_t]`, the average of the batch
    statistic over batches of the training batch size drawn in training mode (dropout on, BN
    normalising with batch statistics). This function computes that average exactly over
    ``passes`` shuffled passes of ``x``: one forward pass per batch for all BN layers at once
    (:func:`varshift.bnstats.collect_moments` with BN on batch statistics and noise layers
    on), no gradient step and no exponential smoothing (so no momentum noise either). Nested
    models and custom layers holding BN layers are handled; the stored statistics are never
    touched while measuring.

    The weights are held at their current values, as if ``fit`` ran with learning rate 0.
    BN layers directly behind the input and noise layers (the seed's models) do not depend on
    any weight; for deeper layers the result is that of the current weights.

    Args:
        model: a built Keras model containing BatchNormalization layers.
        x: numpy array of inputs, as passed to ``fit``.
        batch_size: the training batch size :math:`m` (the biased variance depends on it).
        passes: number of shuffled passes (epochs) to average over.
        seed: seed of the shuffling and of the noise layers' masks (their seed generators
            restart from seeds drawn from it, and are restored afterwards): the same seed gives
            the same numbers.
        assign: also write the results into the layers' ``moving_mean``/``moving_variance``.
        progress: optional callable ``progress(done, total)`` called after each batch.

    Returns:
        ``{layer_name: (moving_mean, moving_variance)}``, per-channel numpy arrays, in graph
        order. The model's stored statistics are left unchanged unless ``assign=True``.
    """
    x = _validate.model_and_data(model, x, data_name="x", batch_size=batch_size, passes=passes,
                                 seed=seed)
    _validate.finite_data(x, "x")
    batch_size = check_positive_int("batch_size", batch_size)
    passes = check_positive_int("passes", passes)
    assign = _validate.check_bool("assign", assign)
    _validate.check_seed(seed)
    x = np.asarray(x)
    rng = np.random.default_rng(seed)
    per_batch = -(-len(x) // batch_size)
    total = passes * per_batch
    sums = {}  # id(layer) -> [layer, sum of batch means, sum of batch variances, batches]
    for k in range(passes):
        tick = None if progress is None else (
            lambda done, _, k=k: progress(k * per_batch + done, total))
        order = rng.permutation(len(x))
        for m in collect_moments(model, x[order], bn="batch", noise=True, batch_size=batch_size,
                                 on_batch=tick, seed=int(rng.integers(2**31 - 1))):
            entry = sums.setdefault(id(m.layer), [m.layer, 0.0, 0.0, 0])
            entry[1] = entry[1] + m.batch_mean * m.n_batches
            entry[2] = entry[2] + m.batch_var * m.n_batches
            entry[3] += m.n_batches
    result = {layer.name: (mean / n, var / n) for layer, mean, var, n in sums.values()}
    if assign:
        layers = [entry[0] for entry in sums.values()]
        assign_statistics(layers, [result[bn.name] for bn in layers])
    return result
