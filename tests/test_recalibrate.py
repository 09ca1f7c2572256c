"""recalibrate_bn (the paper's "Adjust BN") and audit on a small trained conv net."""

import numpy as np
import pytest

import varshift
from varshift._graph import all_bn_layers
from varshift._keras import to_numpy


def _images(n, seed):
    """Three classes of 16x16x3 noise images; class k has a brighter k-th channel in a corner."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0.0, 1.0, (n, 16, 16, 3)).astype("float32")
    for k in range(3):
        x[y == k, :8, :8, k] += 0.6
    return x, y


def _conv_net(keras, rate=0.5, seed=0):
    """Three blocks with noise before BN: Dropout (a), Uout -> conv (b), Dropout (a)."""
    from varshift.layers import Uout

    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Dropout(rate, seed=seed, name="drop1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = Uout(0.5, seed=seed, name="uout2")(x)
    x = layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.Conv2D(16, 3, padding="same", name="conv3")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Dropout(rate, seed=seed + 1, name="drop3")(x)
    x = layers.BatchNormalization(name="bn3")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="convnet")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def trained():
    from varshift._keras import keras as load

    keras = load()
    keras.utils.set_random_seed(0)
    x, y = _images(512, seed=0)
    model = _conv_net(keras)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model, x, y


def _stats(model):
    return [(to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy())
            for bn in all_bn_layers(model)]


def _accuracy(model, x, y):
    probs = model.predict(x, batch_size=256, verbose=0)  # inference mode
    return float(np.mean(np.argmax(probs, axis=1) == y))


def test_audit_finds_every_pair_of_the_conv_net(trained):
    model, _, _ = trained
    df = varshift.audit(model)
    assert df[["bn_layer", "noise_layer", "noise_kind", "case"]].values.tolist() == [
        ["bn1", "drop1", "dropout", "a"],
        ["bn2", "uout2", "uout", "b"],
        ["bn3", "drop3", "dropout", "a"],
    ]
    kernel = to_numpy(model.get_layer("conv2").kernel)
    row = df.iloc[1]
    assert row["d"] == 3 * 3 * 8 and row["param"] == "beta" and row["param_value"] == 0.5
    assert row["mean_cos2"] == pytest.approx(np.mean(varshift.theory.cos2_theta(kernel)), rel=1e-9)


def test_sequential_recalibration_removes_the_shift_and_helps(trained):
    model, x, y = trained
    before = varshift.measure_shift(model, x)
    assert (before["ratio"] > 1.5).all()  # dropout 0.5 after ReLU: a large shift everywhere
    saved = _stats(model)
    fixed = varshift.recalibrate_bn(model, x, mode="sequential")
    assert fixed is not model
    for (m0, v0), (m1, v1) in zip(saved, _stats(model), strict=True):  # original untouched
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(v0, v1)
    after = varshift.measure_shift(fixed, x)
    np.testing.assert_allclose(after["ratio"], 1.0, atol=1e-3)
    np.testing.assert_allclose(after["mean_shift_std"], 0.0, atol=1e-3)
    # the first BN layer sees the same input before and after: its new statistics are
    # exactly what measure_shift reported on the original model
    assert after["moving_var"][0] == pytest.approx(before["real_var"][0], rel=1e-5)
    acc_before, acc_after = _accuracy(model, x, y), _accuracy(fixed, x, y)
    assert acc_after > acc_before, (acc_before, acc_after)


def test_simultaneous_uses_one_pass_of_old_statistics(trained):
    model, x, _ = trained
    before = varshift.measure_shift(model, x, per_channel=True)
    fixed = varshift.recalibrate_bn(model, x, mode="simultaneous")
    stats = _stats(fixed)
    for (mean, var), (_, row) in zip(stats, before.iterrows(), strict=True):
        np.testing.assert_allclose(mean, row["real_mean_channels"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, row["real_var_channels"], rtol=1e-5)
    after = varshift.measure_shift(fixed, x)
    assert after["ratio"][0] == pytest.approx(1.0, abs=1e-3)
    # later layers were measured behind uncorrected earlier layers: not exact
    assert after["ratio"][1:].max() > 1.01




def test_failure_part_way_leaves_the_model_untouched(trained, keras):
    model, x, _ = trained

    class Failing(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __len__(self):
            return 4

        def __getitem__(self, i):
            self.calls += 1
            if self.calls > 6:  # the first pass (4 batches) and part of the second succeed
                raise RuntimeError("disk on fire")
            return x[i * 64:(i + 1) * 64]

    saved = _stats(model)
    data = Failing()
    with pytest.raises(RuntimeError, match="disk on fire"):
        varshift.recalibrate_bn(model, data, inplace=True)
    assert data.calls > 4  # it did fail part-way, after the first layer was written
    for (m0, v0), (m1, v1) in zip(saved, _stats(model), strict=True):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(v0, v1)


def test_inplace_returns_the_model_itself(keras, rng):
    from varshift.models import dropout_bn_model

    model = dropout_bn_model(4, 0.5, seed=0)
    x = rng.normal(2.0, 3.0, (300, 4)).astype("float32")
    assert varshift.recalibrate_bn(model, x, inplace=True) is model
    np.testing.assert_allclose(to_numpy(model.layers[-1].moving_variance), x.var(axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(to_numpy(model.layers[-1].moving_mean), x.mean(axis=0),
                               rtol=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "layerwise"}, "`mode`"),
    ({"inplace": "yes"}, "`inplace`"),
])
def test_bad_arguments(keras, kwargs, message):
    from varshift.models import dropout_bn_model

    with pytest.raises(ValueError, match=message):
        varshift.recalibrate_bn(dropout_bn_model(3, 0.5), np.ones((4, 3), "float32"), **kwargs)


def test_model_without_bn_is_a_clear_error(keras):
    from varshift.models import dropout_model

    with pytest.raises(ValueError, match="no BatchNormalization"):
        varshift.recalibrate_bn(dropout_model(3, 0.5), np.ones((4, 3), "float32"))


def test_nested_model_copy_is_recalibrated_layer_by_layer(keras, rng):
    from varshift.layers import Uout

    layers = keras.layers
    sub = keras.Sequential([keras.Input((6,)), Uout(0.5, seed=1), layers.Dense(6),
                            layers.BatchNormalization(name="sub_bn")], name="sub")
    inputs = keras.Input((6,))
    h = layers.BatchNormalization(name="first_bn")(layers.Dropout(0.5, seed=1)(inputs))
    h = layers.BatchNormalization(name="last_bn")(layers.Dense(4)(sub(h)))
    model = keras.Model(inputs, h)
    x = rng.normal(3.0, 2.0, (400, 6)).astype("float32")
    fixed = varshift.recalibrate_bn(model, x, batch_size=128)
    after = varshift.measure_shift(fixed, x)
    assert after["path"].tolist() == ["first_bn", "sub/sub_bn", "last_bn"]
    np.testing.assert_allclose(after["ratio"], 1.0, atol=1e-3)
    assert (varshift.measure_shift(model, x)["ratio"] > 1.5).all()  # the original kept its own
