"""measure_shift: the paper's per-layer statistic, against theory, numpy and Keras' storage."""

import numpy as np
import pytest
from conftest import to_numpy

import varshift
from varshift import theory

BATCH = 32  # the "training" batch size m of converged_bn_statistics


def test_case_a_against_eq7_and_the_data(case_a_model):
    rate = 0.5
    model, x = case_a_model(rate, batch_size=BATCH)
    df = varshift.measure_shift(model, x)
    assert list(df["bn_layer"]) == ["bn"] and list(df["index"]) == [1]
    row = df.iloc[0]
    # what BN stored in training mode: Eq. 7's variance, biased batch estimate as Keras stores
    expected_moving = theory.keras_expected_moving_variance(
        theory.dropout_train_variance(5.0, 4.0, rate), BATCH)
    assert row["moving_var"] == pytest.approx(float(expected_moving), rel=0.03)
    # what BN sees at inference: the data's own variance, exactly (biased, divide by N)
    assert row["real_var"] == pytest.approx(4.0, rel=0.03)
    assert row["real_var"] == pytest.approx(x.astype("float64").var(axis=0).mean(), rel=1e-6)
    assert row["real_mean"] == pytest.approx(x.astype("float64").mean(axis=0).mean(), rel=1e-7)
    assert row["moving_mean"] == pytest.approx(
        to_numpy(model.layers[-1].moving_mean).mean(), rel=1e-6)
    assert row["ratio"] == pytest.approx(row["moving_var"] / row["real_var"], rel=1e-12)
    assert row["shift"] == pytest.approx(
        float(theory.shift_ratio(5.0, 4.0, rate)) * BATCH / (BATCH - 1), rel=0.03)
    assert row["count"] == len(x) and row["channels"] == x.shape[1]


def test_large_mean_small_variance_is_exact(keras, rng):
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
    x = rng.normal(5.0, 0.01, (700, 6, 6, 4)).astype("float32")
    df = varshift.measure_shift(model, x, batch_size=64, per_channel=True)
    x64 = x.astype("float64")
    np.testing.assert_allclose(df["real_var_channels"][0], x64.var(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(df["real_mean_channels"][0], x64.mean(axis=(0, 1, 2)), rtol=1e-8)
    assert df["count"][0] == 700 * 36


def test_every_data_kind_gives_the_same_numbers(keras, rng):
    tf = pytest.importorskip("tensorflow")
    from varshift.models import dropout_bn_model

    model = dropout_bn_model(5, 0.2, seed=0)
    x = rng.normal(5.0, 2.0, (333, 5)).astype("float32")
    y = rng.normal(size=(333, 1)).astype("float32")

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[i * 100:(i + 1) * 100], y[i * 100:(i + 1) * 100]

    reference = varshift.measure_shift(model, x, batch_size=50)
    variants = [
        x.astype("float64"),
        (x, y),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(64),
        tf.data.Dataset.from_tensor_slices((x, y, y)).batch(64),
        tf.data.Dataset.from_tensor_slices(x),  # unbatched: batched by measure_shift
        Batches(),
    ]
    for data in variants:
        df = varshift.measure_shift(model, data, batch_size=50)
        assert df["count"][0] == 333
        for col in ("real_mean", "real_var", "moving_var", "ratio"):
            assert df[col][0] == pytest.approx(reference[col][0], rel=1e-6), (type(data), col)


def test_case_b_matches_eq14_with_measured_rho_and_cos2(keras):
    from varshift.models import converged_bn_statistics, dropout_dense_bn_model

    rng = np.random.default_rng(3)
    d, units, rate, n = 16, 32, 0.5, 8192
    # x_i = 2 + z + e_i: one shared factor, so every pair has correlation 1/2
    shared = rng.normal(0.0, 1.0, (n, 1))
    x = (2.0 + shared + rng.normal(0.0, 1.0, (n, d))).astype("float32")
    model = dropout_dense_bn_model(
        d, units, rate, seed=3,
        kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=3))
    converged_bn_statistics(model, x, batch_size=BATCH, seed=3, assign=True)

    pairs = varshift.audit(model)
    assert pairs[["case", "d"]].values.tolist() == [["b", d]]
    kernel = to_numpy(model.get_layer("dense").kernel)
    cos2 = float(np.mean(theory.cos2_theta(kernel)))
    assert pairs["mean_cos2"][0] == pytest.approx(cos2, rel=1e-9)

    corr = np.corrcoef(x, rowvar=False)
    rho = corr[~np.eye(d, dtype=bool)].mean()
    assert rho == pytest.approx(0.5, abs=0.03)
    c, v = float(x.mean()), float(x.var(axis=0).mean())
    predicted = float(theory.shift_ratio_linear(c, v, rate, rho, d * cos2))

    df = varshift.measure_shift(model, x)
    measured = df["shift"][0] * (BATCH - 1) / BATCH  # Keras stored (m-1)/m of Var_train
    assert measured == pytest.approx(predicted, rel=0.05)
    assert df["ratio"][0] == pytest.approx(1.0 / df["shift"][0], rel=1e-12)
    # and it is not case (a)'s value: the mixing matters here
    assert abs(measured - float(theory.shift_ratio(c, v, rate))) > 0.1


def test_nested_models_and_layers_that_contain_layers(keras, rng):
    layers = keras.layers

    class Block(layers.Layer):
        """A custom layer holding a Dense and a BN layer, with raw ops between them."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(6, name="inner_dense")
            self.bn = layers.BatchNormalization(name="inner_bn")

        def call(self, x, training=None):
            return self.bn(self.dense(x) * 2.0 + 1.0, training=training)

    sub = keras.Sequential([keras.Input((6,)), layers.Dropout(0.5), layers.BatchNormalization(
        name="sub_bn")], name="sub")
    inputs = keras.Input((6,))
    h = sub(inputs)
    h = Block(name="block")(h)
    outputs = layers.BatchNormalization(name="top_bn")(h)
    model = keras.Model(inputs, outputs)
    x = rng.normal(3.0, 2.0, (256, 6)).astype("float32")

    df = varshift.measure_shift(model, x, per_channel=True)
    assert df["path"].tolist() == ["sub/sub_bn", "block/inner_bn", "top_bn"]
    assert df["index"].tolist() == [1, 2, 3]
    # reference: compute each BN layer's input by hand, in inference mode
    h1 = x.astype("float64")
    np.testing.assert_allclose(df["real_var_channels"][0], h1.var(axis=0), rtol=1e-5)
    block = model.get_layer("block")
    z = to_numpy(sub(x, training=False))
    h2 = to_numpy(block.dense(z)) * 2.0 + 1.0
    np.testing.assert_allclose(df["real_var_channels"][1], h2.var(axis=0), rtol=1e-4)
    h3 = to_numpy(block(z, training=False))
    np.testing.assert_allclose(df["real_mean_channels"][2], h3.mean(axis=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("data", "message"), [
    (np.ones((10, 4), "float32"), r"samples of shape \(4,\).*expects samples of shape \(5,\)"),
    (np.ones((10, 5, 2), "float32"), "samples of shape"),
    (np.ones((0, 5), "float32"), "empty"),
    ("not data", "`data` must be"),
])
def test_bad_data_is_a_clear_error(keras, data, message):
    from varshift.models import dropout_bn_model

    with pytest.raises((ValueError, TypeError), match=message):
        varshift.measure_shift(dropout_bn_model(5, 0.2), data)


def test_model_without_bn_is_a_clear_error(keras):
    from varshift.models import dropout_model

    with pytest.raises(ValueError, match="no BatchNormalization"):
        varshift.measure_shift(dropout_model(5, 0.2), np.ones((4, 5), "float32"))


def test_subclassed_model_without_inputs(keras, rng):
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.drop = keras.layers.Dropout(0.5)
            self.bn = keras.layers.BatchNormalization()

        def call(self, x, training=None):
            return self.bn(self.drop(x, training=training), training=training)

    model = Net()
    x = rng.normal(5.0, 2.0, (300, 4)).astype("float32")
    model(x[:2])
    df = varshift.measure_shift(model, x)
    np.testing.assert_allclose(df["real_var"][0], x.astype("float64").var(axis=0).mean(),
                               rtol=1e-6)
    assert df["moving_var"][0] == pytest.approx(1.0)  # never trained: Keras' initial value
    if keras.backend.backend() == "tensorflow":
        with pytest.raises(ValueError, match="input_shape"):
            varshift.audit(model)
        assert varshift.audit(model, input_shape=(4,))["case"].tolist() == ["a"]
    else:  # no Keras graph to read, and only TensorFlow traces a subclassed call
        with pytest.raises(ValueError, match="subclassed.*KERAS_BACKEND=tensorflow"):
            varshift.audit(model)
    with pytest.raises(TypeError, match="inplace=True"):
        varshift.recalibrate_bn(model, x)  # an unregistered class cannot be copied
    assert varshift.recalibrate_bn(model, x, inplace=True) is model
    np.testing.assert_allclose(varshift.measure_shift(model, x)["ratio"], 1.0, atol=1e-6)


_CROSS = r'''
import sys, json, numpy as np
import varshift
keras = varshift.load_keras()
layers = keras.layers
inputs = keras.Input((8, 8, 3))
h = layers.Conv2D(6, 3, padding="same", name="c1")(inputs)
h = layers.Dropout(0.4, seed=1, name="d1")(layers.ReLU()(h))
h = layers.BatchNormalization(name="bn1")(h)
h = layers.Conv2D(5, 3, padding="same", name="c2")(h)
h = layers.BatchNormalization(name="bn2")(layers.Dropout(0.3, seed=2, name="d2")(h))
out = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(h))
model = keras.Model(inputs, out)
x = np.random.default_rng(0).normal(1.0, 2.0, (600, 8, 8, 3)).astype("float32")
path = sys.argv[2]
if sys.argv[1] == "train":
    keras.utils.set_random_seed(0)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, np.zeros((600, 3)), epochs=2, batch_size=32, verbose=0)
    np.savez(path, *model.get_weights())
else:
    with np.load(path) as f:
        model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
df = varshift.measure_shift(model, x, batch_size=100)
print("RESULT " + json.dumps(df[["real_var", "real_mean", "moving_var", "ratio"]].values.tolist()))
'''


def test_tensorflow_and_jax_measure_the_same_weights_alike(tmp_path):
    import importlib.util
    import json
    import os
    import subprocess
    import sys

    if not (importlib.util.find_spec("tensorflow") and importlib.util.find_spec("jax")):
        pytest.skip("needs both TensorFlow and JAX installed")
    weights = str(tmp_path / "w.npz")

    def run(backend, step):
        env = {**os.environ, "KERAS_BACKEND": backend}
        out = subprocess.run([sys.executable, "-c", _CROSS, step, weights], env=env,
                             capture_output=True, text=True, check=True).stdout
        return np.array(json.loads(out.split("RESULT ")[-1]))

    on_tf = run("tensorflow", "train")  # trained on TensorFlow, measured there
    on_jax = run("jax", "measure")  # the same weights measured on JAX
    assert on_tf.shape == (2, 4) and np.all(on_tf[:, 3] > 1.05)  # a real shift to measure
    np.testing.assert_allclose(on_jax, on_tf, rtol=1e-4)
