"""RecalibrateBN: "Adjust BN" inside fit, touching nothing but the moving statistics."""

import numpy as np
import pytest
from conftest import to_numpy

import varshift


def _model(keras):
    layers = keras.layers
    inputs = keras.Input((6,))
    x = layers.Dense(8, activation="relu", name="dense1")(inputs)
    x = layers.Dropout(0.5, seed=1, name="drop1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Dense(8, activation="relu", name="dense2")(x)
    x = layers.Dropout(0.5, seed=2, name="drop2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    model = keras.Model(inputs, layers.Dense(1, name="head")(x))
    model.compile(optimizer="adam", loss="mse")
    return model


def _snapshot(model):
    return {v.path: to_numpy(v).copy() for v in model.weights}


def _recorder(keras, store):
    class Snapshot(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            store["weights"] = _snapshot(self.model)
            store["optimizer"] = [to_numpy(v).copy() for v in self.model.optimizer.variables]

    return Snapshot()


def test_recalibrate_bn_in_fit_changes_only_moving_statistics(keras, rng):
    x = rng.normal(1.0, 2.0, (512, 6)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = _model(keras)
    store = {}
    callback = varshift.RecalibrateBN(x)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0,
              callbacks=[_recorder(keras, store), callback])
    assert callback.count == 1
    after = _snapshot(model)
    moving = [k for k in after if "moving_" in k]
    assert len(moving) == 4
    for key, value in store["weights"].items():
        if key in moving:
            assert not np.array_equal(value, after[key]), key  # recalibrated
        else:
            np.testing.assert_array_equal(value, after[key], err_msg=key)  # bit-identical
    for before, now in zip(store["optimizer"], model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(before, to_numpy(now))
    # and the result is recalibrate_bn's: no shift left on the data it was given
    assert varshift.measure_shift(model, x)["ratio"].max() <= 1.05


def test_epoch_end_recalibrates_every_epoch(keras, rng):
    x = rng.normal(0.0, 1.0, (256, 6)).astype("float32")
    model = _model(keras)
    callback = varshift.RecalibrateBN(x, on="epoch_end", max_samples=128)
    model.fit(x, x[:, :1], epochs=3, batch_size=64, verbose=0, callbacks=[callback])
    assert callback.count == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "simultaneous"}, "`mode`.*one_pass"),
    ({"on": "batch_end"}, "`on`.*train_end"),
])
def test_bad_arguments(keras, kwargs, message):
    with pytest.raises(ValueError, match=message):
        varshift.RecalibrateBN(np.zeros((4, 6), "float32"), **kwargs)
