"""varshift.layers.Uout: noise statistics, inference identity, seeding and serialisation."""

import numpy as np
import pytest

from varshift import theory


@pytest.fixture
def Uout(keras):
    from varshift.layers import Uout

    return Uout


@pytest.mark.parametrize(("c", "v", "beta"), [(0.0, 1.0, 0.5), (5.0, 4.0, 0.3), (1.0, 2.0, 1.0)])
def test_training_variance_matches_formula(keras, Uout, rng, c, v, beta):
    x = rng.normal(c, np.sqrt(v), 1_000_000).astype("float32")
    y = keras.ops.convert_to_numpy(Uout(beta, seed=3)(x, training=True)).astype("float64")
    xs = x.astype("float64")
    assert y.mean() == pytest.approx(xs.mean(), abs=0.01 * max(1.0, abs(c)))
    assert y.var() == pytest.approx(theory.uout_train_variance(xs.mean(), xs.var(), beta), rel=0.01)
    # the noise is r = y/x - 1 ~ U(-beta, beta), one draw per element
    r = y / xs - 1.0
    assert r.min() >= -beta - 1e-5 and r.max() <= beta + 1e-5
    assert r.var() == pytest.approx(beta**2 / 3, rel=0.01)


def test_identity_at_inference(keras, Uout, rng):
    x = rng.normal(size=(8, 4, 4, 3)).astype("float32")
    layer = Uout(0.7)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)


def test_same_seed_same_noise(keras, Uout):
    x = np.ones((64, 16), dtype="float32")
    a = keras.ops.convert_to_numpy(Uout(0.4, seed=11)(x, training=True))
    b = keras.ops.convert_to_numpy(Uout(0.4, seed=11)(x, training=True))
    c = keras.ops.convert_to_numpy(Uout(0.4, seed=12)(x, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_saved_model_with_uout_loads_back(keras, Uout, tmp_path, rng):
    inputs = keras.Input((6,))
    x = Uout(0.25, seed=5, name="uout")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "uout.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.get_layer("uout")
    assert isinstance(layer, Uout)
    assert layer.beta == 0.25 and layer.seed == 5
    data = rng.normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(data)),
                               keras.ops.convert_to_numpy(model(data)), rtol=1e-6)
    assert Uout.from_config(layer.get_config()).beta == 0.25


@pytest.mark.parametrize("beta", [-0.1, 1.5, "0.2", None])
def test_bad_beta(Uout, beta):
    with pytest.raises((ValueError, TypeError), match=r"`beta`"):
        Uout(beta)


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_keras_gaussian_dropout_variance_matches_formula(keras, rng, rate):
    c, v = 2.0, 1.0
    x = rng.normal(c, np.sqrt(v), 1_000_000).astype("float32")
    layer = keras.layers.GaussianDropout(rate, seed=7)
    y = keras.ops.convert_to_numpy(layer(x, training=True)).astype("float64")
    xs = x.astype("float64")
    assert xs.var() / y.var() == pytest.approx(
        theory.gaussian_dropout_shift_ratio(xs.mean(), xs.var(), rate), rel=0.01)
