r"""The seed notebook's experiment, end to end, as one function.

Data :math:`x \sim N(5, 2^2)` with ``n`` features; a BatchNormalization-only control model and a
``Dropout(rate) -> BatchNormalization`` model are trained to reproduce their input (MSE, Adam),
exactly the notebook's set-up. The demo then compares the moving variance the dropout model
stored with Eq. 7, shows that at inference BN sees the data's own variance, applies the seed's
"restore" (the inverse of Eq. 7) and shows why it is not enough: :math:`\gamma` and
:math:`\beta` were learned under the shifted variance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """Numbers of one demo run (each a mean over the ``n`` features unless named per feature)."""

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

    def as_dict(self):
        return asdict(self)


def run_demo(rate=0.2, *, n=5, n_samples=10_000, epochs=15, batch_size=32, learning_rate=3e-3,
             seed=0, progress=None):
    """Run the seed notebook's Dropout -> BN experiment and return its numbers.

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
        progress: optional callable ``progress(done, total)`` called after each epoch of the two
            trainings (``total = 2 * epochs``).

    Returns:
        A :class:`DemoResult`.
    """
    from varshift import models, theory  # noqa: PLC0415  (TensorFlow loads here)
    from varshift._keras import keras as _keras  # noqa: PLC0415
    from varshift._keras import to_numpy  # noqa: PLC0415
    from varshift._validate import (  # noqa: PLC0415
        check_finite_positive,
        check_positive_int,
        check_rate,
        check_seed,
    )

    check_rate(rate)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    check_finite_positive("learning_rate", learning_rate)
    check_seed(seed)
    keras = _keras()
    keras.utils.set_random_seed(seed)
    x = models.seed_data(n_samples, n, seed=seed)
    done = [0]

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            done[0] += 1
            if progress is not None:
                progress(done[0], 2 * epochs)

    def train(model):
        model.compile(loss="mse", optimizer=keras.optimizers.Adam(learning_rate))
        model.fit(x, x, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True,
                  callbacks=[_Progress()])
        return model

    control = train(models.bn_model(n, compile=False))
    model = train(models.dropout_bn_model(n, rate, seed=seed, compile=False))
    bn = model.get_layer("bn")
    gamma, beta, moving_mean, moving_var = (to_numpy(w) for w in bn.weights)

    c, v = x.mean(axis=0).astype("float64"), x.var(axis=0).astype("float64")
    eq7 = theory.dropout_train_variance(c, v, rate)
    steps = epochs * int(np.ceil(n_samples / batch_size))
    expected = theory.keras_expected_moving_variance(eq7, batch_size, steps=steps)
    # Inference mode: Dropout is the identity, so BN's input is x itself.
    inference_var = v
    ones = np.ones((1, n), dtype="float32")
    pred_control = to_numpy(control(ones, training=False))[0]
    pred_dropout = to_numpy(model(ones, training=False))[0]
    mse_control = float(np.mean((to_numpy(control(x, training=False)) - x) ** 2))
    mse_dropout = float(np.mean((to_numpy(model(x, training=False)) - x) ** 2))

    restored = theory.restore_moving_variance(moving_mean, moving_var, rate)
    bn.moving_variance.assign(restored.astype("float32"))
    pred_restored = to_numpy(model(ones, training=False))[0]
    mse_restored = float(np.mean((to_numpy(model(x, training=False)) - x) ** 2))

    return DemoResult(
        rate=float(rate), n_samples=n_samples, n_features=n, batch_size=batch_size,
        epochs=epochs, seed=seed, data_mean=float(c.mean()), data_var=float(v.mean()),
        eq7_train_var=float(eq7.mean()), keras_expected_var=float(np.mean(expected)),
        stored_moving_var=float(moving_var.mean()), inference_input_var=float(inference_var.mean()),
        eq8_shift=float(np.mean(theory.shift_ratio(c, v, rate))),
        measured_shift=float(np.mean(inference_var / moving_var)),
        restored_var=float(restored.mean()), gamma=float(gamma.mean()), beta=float(beta.mean()),
        pred_ones_bn_only=float(pred_control.mean()), pred_ones_dropout_bn=float(pred_dropout.mean()),
        pred_ones_restored=float(pred_restored.mean()), mse_bn_only=mse_control,
        mse_dropout_bn=mse_dropout, mse_restored=mse_restored,
    )
