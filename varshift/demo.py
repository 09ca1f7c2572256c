r"""The seed notebook's experiment, end to end, as one function.

Data :math:`x \sim N(5, 2^2)` with ``n`` features; a BatchNormalization-only control model and a
``Dropout(rate) -> BatchNormalization`` model are trained to reproduce their input (MSE, Adam),
exactly the notebook's set-up. The demo then compares the moving variance the dropout model
stored with Eq. 7, shows that at inference BN sees the data's own variance, applies the seed's
"restore" (the inverse of Eq. 7) and shows why it is not enough: :math:`\gamma` and
:math:`\beta` were learned under the shifted variance.

A third model is the control the toy needs: ``Dropout(rate) -> Dense(1)`` with no BN at all
(one weight and one bias shared by the features, applied to each feature), trained on the same
task. Trained with dropout, the best affine map of the dropped input is the regression
:math:`c + \Delta\,(x - c)`, with or without BN, so this model answers what the
``Dropout -> BN`` model answers for an input of ones: in this toy the distance from 1 is
dropout's own shrinkage. The BN model splits the same factor :math:`\Delta` in two:
:math:`\gamma/\sqrt{v} = \sqrt{\Delta}` learned, and :math:`\sqrt{v/V} = \sqrt{\Delta}`
the variance shift (BN divides by the training variance :math:`V` instead of :math:`v`), which
is the part the restore removes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from varshift._validate import MAX_SEED
from varshift.contracts import COUNT, RATE_SCALAR, Function, Integer, Optional, Real, contract

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """Numbers of one demo run (each a mean over the ``n`` features unless named per feature).

    ``restored_var`` is the seed's restore of the stored moving variance, which ignores that
    Keras stores :math:`(m-1)/m` of the training variance (so it comes out low);
    ``restored_var_unbiased`` applies the restore to ``moving_var * m / (m-1)``. ``no_bn_*``
    describe the ``Dropout -> Dense(1)`` control without BN.
    """

    rate: float
    n_samples: int
    n_features: int
    batch_size: int
    epochs: int
    seed: int
    data_mean: float
    data_var: float
    eq7_train_var: float
    keras_expected_var: float
    stored_moving_var: float
    inference_input_var: float
    eq8_shift: float
    measured_shift: float
    restored_var: float
    gamma: float
    beta: float
    pred_ones_bn_only: float
    pred_ones_dropout_bn: float
    pred_ones_restored: float
    mse_bn_only: float
    mse_dropout_bn: float
    mse_restored: float
    restored_var_unbiased: float
    no_bn_slope: float
    no_bn_intercept: float
    pred_ones_no_bn: float
    mse_no_bn: float

    def as_dict(self):
        return asdict(self)


def _dropout_dense_model(keras, n, rate, seed):
    """``Dropout(rate) -> Dense(1)`` per feature, no BN: one weight and one bias for all features."""
    inputs = keras.Input(shape=(n,), name="x")
    h = keras.layers.Dropout(rate, seed=seed, name="dropout")(inputs)
    h = keras.layers.Reshape((n, 1))(h)
    h = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                           name="dense")(h)
    return keras.Model(inputs, keras.layers.Reshape((n,))(h), name="dropout_dense_model")


def _predict(model, x, to_numpy):
    """``(mean prediction for an input of ones, inference-mode MSE on x)``."""
    ones = np.ones((1, x.shape[1]), dtype="float32")
    pred = float(to_numpy(model(ones, training=False)).mean())
    return pred, float(np.mean((to_numpy(model(x, training=False)) - x) ** 2))


def _train_three(keras, x, rate, seed, epochs, batch_size, learning_rate, steps, progress):
    """Train, in this order, BN alone, ``Dropout -> BN`` and ``Dropout -> Dense(1)`` on ``x``."""
    from varshift import models  # noqa: PLC0415

    n = x.shape[1]
    done = [0]

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            done[0] += 1
            if progress is not None:
                progress(done[0], 3 * epochs)

    def train(model, optimizer=None):
        model.compile(loss="mse", optimizer=optimizer or keras.optimizers.Adam(learning_rate))
        model.fit(x, x, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True,
                  callbacks=[_Progress()])
        return model

    control = train(models.bn_model(n, compile=False))
    model = train(models.dropout_bn_model(n, rate, seed=seed, compile=False))
    # Without BN the input is not centred, so the slope and the bias are strongly coupled and a
    # constant step size stalls along that valley; a decaying rate reaches the optimum.
    schedule = keras.optimizers.schedules.CosineDecay(10 * learning_rate / 3, steps)
    no_bn = train(_dropout_dense_model(keras, n, rate, seed), keras.optimizers.Adam(schedule))
    return control, model, no_bn


@contract(rate=RATE_SCALAR, n=COUNT, n_samples=COUNT, epochs=COUNT, batch_size=Integer(2),
          learning_rate=Real(0.0, None, closed="neither"), seed=Integer(0, MAX_SEED),
          progress=Optional(Function("a callable progress(done, total)")))
def run_demo(rate=0.2, *, n=5, n_samples=10_000, epochs=15, batch_size=32, learning_rate=3e-3,
             seed=0, progress=None):
    """Run the seed notebook's Dropout -> BN experiment and return its numbers.

    Three models are trained on the same data: BN alone (control), ``Dropout -> BN`` (the
    seed's model) and ``Dropout -> Dense(1)`` without BN (the control that separates dropout's
    own shrinkage from the variance shift).

    Args:
        rate: Keras' drop ratio of the Dropout layer (the seed uses 0.2).
        n: number of features (the seed's 5).
        n_samples: number of samples of :math:`N(5, 2^2)`.
        epochs: training epochs. The seed runs 50-100 with Adam's default learning rate; 15
            epochs at ``learning_rate=3e-3`` reach the same :math:`\\gamma`, :math:`\\beta` and
            moving statistics in a few seconds.
        batch_size: training batch size :math:`m` (Keras stores :math:`(m-1)/m` of the variance).
        learning_rate: Adam's learning rate.
        seed: seeds the data, the dropout masks and the weights' initialisation.
        progress: optional callable ``progress(done, total)`` called after each epoch of the
            three trainings (``total = 3 * epochs``).

    Returns:
        A :class:`DemoResult`.
    """
    from varshift import models, theory  # noqa: PLC0415  (TensorFlow loads here)
    from varshift._keras import keras as _keras  # noqa: PLC0415
    from varshift._keras import to_numpy  # noqa: PLC0415
    keras = _keras()
    keras.utils.set_random_seed(seed)
    x = models.seed_data(n_samples, n, seed=seed)
    steps = epochs * int(np.ceil(n_samples / batch_size))
    control, model, no_bn = _train_three(keras, x, rate, seed, epochs, batch_size, learning_rate,
                                         steps, progress)
    bn = model.get_layer("bn")
    gamma, beta, moving_mean, moving_var = (to_numpy(w) for w in bn.weights)
    slope, intercept = (float(to_numpy(w).mean()) for w in no_bn.get_layer("dense").weights)

    c, v = x.mean(axis=0).astype("float64"), x.var(axis=0).astype("float64")
    eq7 = theory.dropout_train_variance(c, v, rate)
    expected = theory.keras_expected_moving_variance(eq7, batch_size, steps=steps)
    pred_control, mse_control = _predict(control, x, to_numpy)
    pred_dropout, mse_dropout = _predict(model, x, to_numpy)
    pred_no_bn, mse_no_bn = _predict(no_bn, x, to_numpy)
    unbiased = theory.restore_moving_variance(moving_mean, moving_var * batch_size / (batch_size - 1), rate)
    restored = theory.restore_moving_variance(moving_mean, moving_var, rate)
    from varshift.bnstats import assign_statistics  # noqa: PLC0415  (refuses a variance <= 0)

    assign_statistics([bn], [(moving_mean, restored)])
    pred_restored, mse_restored = _predict(model, x, to_numpy)

    return DemoResult(
        rate=float(rate), n_samples=n_samples, n_features=n, batch_size=batch_size,
        epochs=epochs, seed=seed, data_mean=float(c.mean()), data_var=float(v.mean()),
        eq7_train_var=float(eq7.mean()), keras_expected_var=float(np.mean(expected)),
        stored_moving_var=float(moving_var.mean()), inference_input_var=float(v.mean()),
        eq8_shift=float(np.mean(theory.shift_ratio(c, v, rate))),
        measured_shift=float(np.mean(v / moving_var)),
        restored_var=float(restored.mean()), gamma=float(gamma.mean()), beta=float(beta.mean()),
        pred_ones_bn_only=pred_control, pred_ones_dropout_bn=pred_dropout,
        pred_ones_restored=pred_restored, mse_bn_only=mse_control,
        mse_dropout_bn=mse_dropout, mse_restored=mse_restored,
        restored_var_unbiased=float(unbiased.mean()), no_bn_slope=slope, no_bn_intercept=intercept,
        pred_ones_no_bn=pred_no_bn, mse_no_bn=mse_no_bn,
    )
