"""correct_direct: Eq. 7 inverted on the stored statistics (case a only), and its limits."""

import numpy as np
import pytest
from conftest import to_numpy

import varshift
from varshift import theory

BATCH = 32


def test_case_a_restores_the_variance_per_channel(case_a_model):
    rate = 0.5
    model, x = case_a_model(rate, batch_size=BATCH)
    bn = model.get_layer("bn")
    mean, var = to_numpy(bn.moving_mean), to_numpy(bn.moving_variance)
    ratio_before = varshift.measure_shift(model, x)["ratio"][0]

    df = varshift.correct_direct(model)
    assert df[["bn_layer", "noise_layers", "action"]].values.tolist() == [
        ["bn", "dropout", "corrected"]]
    assert df["rate"][0] == pytest.approx(rate)
    restored = to_numpy(bn.moving_variance)
    np.testing.assert_allclose(restored, theory.restore_moving_variance(mean, var, rate),
                               rtol=1e-6)
    assert df["moving_var_before"][0] == pytest.approx(var.mean())
    assert df["moving_var_after"][0] == pytest.approx(restored.mean())
    # Keras stored (m-1)/m of Eq. 7's variance, so the inverse lands a little below v = 4
    expected = theory.restore_moving_variance(
        5.0, theory.keras_expected_moving_variance(theory.dropout_train_variance(5, 4, rate),
                                                   BATCH), rate)
    assert restored.mean() == pytest.approx(float(expected), rel=0.03)
    ratio_after = varshift.measure_shift(model, x)["ratio"][0]
    assert ratio_before > 7.0 and ratio_after < 1.2  # shift ~8x reduced to the Keras bias
    # the moving mean and gamma/beta are not touched
    np.testing.assert_array_equal(to_numpy(bn.moving_mean), mean)


def test_dry_run_changes_nothing(case_a_model):
    model, _ = case_a_model(0.2, features=8, n=512, batch_size=BATCH)
    var = to_numpy(model.get_layer("bn").moving_variance).copy()
    df = varshift.correct_direct(model, inplace=False)
    assert df["action"].tolist() == ["would correct"]
    np.testing.assert_array_equal(to_numpy(model.get_layer("bn").moving_variance), var)
    assert df["moving_var_after"][0] < df["moving_var_before"][0]


def test_uout_uses_the_rate_of_equal_noise_variance(keras):
    from varshift.layers import Uout

    inputs = keras.Input((4,))
    h = keras.layers.BatchNormalization(name="bn")(Uout(0.5, name="u")(inputs))
    model = keras.Model(inputs, h)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 3.0, "float32"))
    bn.moving_variance.assign(np.full(4, float(theory.uout_train_variance(3.0, 2.0, 0.5)),
                                      "float32"))
    df = varshift.correct_direct(model)
    assert df["rate"][0] == pytest.approx(float(theory.uout_matched_rate(0.5)))
    np.testing.assert_allclose(to_numpy(bn.moving_variance), 2.0, rtol=1e-5)


def test_other_cases_are_skipped_with_a_reason(keras):
    from varshift.models import dropout_dense_bn_model

    layers = keras.layers
    model = dropout_dense_bn_model(6, 4, 0.5)
    df = varshift.correct_direct(model)
    assert df["action"].tolist() == ["skipped"] and "case b" in df["reason"][0]

    inputs = keras.Input((4,))
    a = layers.BatchNormalization(name="bn_noise")(layers.GaussianNoise(0.1)(inputs))
    b = layers.Dropout(0.5)(inputs)
    b = layers.BatchNormalization(name="bn_tanh")(layers.Activation("tanh")(b))
    c = layers.Dropout(0.5, name="d_relu")(inputs)
    c = layers.BatchNormalization(name="bn_relu")(layers.ReLU()(c))
    model = keras.Model(inputs, [a, b, c])
    var = {n: to_numpy(model.get_layer(n).moving_variance).copy()
           for n in ("bn_noise", "bn_tanh")}
    df = varshift.correct_direct(model).set_index("bn_layer")
    assert df.loc["bn_noise", "action"] == "skipped"
    assert "not multiplicative" in df.loc["bn_noise", "reason"]
    assert df.loc["bn_tanh", "action"] == "skipped" and "activation" in df.loc["bn_tanh", "reason"]
    assert df.loc["bn_relu", "action"] == "corrected"  # relu(a x / p) = a relu(x) / p
    for name, before in var.items():
        np.testing.assert_array_equal(to_numpy(model.get_layer(name).moving_variance), before)


def test_with_the_batch_size_it_matches_recalibration_but_not_gamma_beta(case_a_model):
    """With Keras' (m-1)/m bias removed, the restored variance is what recalibration measures;
    gamma and beta, learned under the shift, are left as they are by both."""
    model, x = case_a_model(0.5, features=16, n=4096, batch_size=BATCH)
    bn = model.get_layer("bn")
    bn.gamma.assign(np.full(16, 1.7, "float32"))
    bn.beta.assign(np.full(16, -0.4, "float32"))
    gamma, beta = to_numpy(bn.gamma).copy(), to_numpy(bn.beta).copy()
    measured = to_numpy(varshift.recalibrate_bn(model, x).get_layer("bn").moving_variance)
    seed_formula = varshift.correct_direct(model, inplace=False)["moving_var_after"][0]
    df = varshift.correct_direct(model, batch_size=BATCH)
    restored = to_numpy(bn.moving_variance)
    assert restored.mean() == pytest.approx(measured.mean(), rel=0.03)
    assert restored.mean() == pytest.approx(4.0, rel=0.03)
    assert seed_formula < 0.92 * measured.mean()  # without it the bias is amplified
    assert df["moving_var_after"][0] == pytest.approx(restored.mean())
    np.testing.assert_array_equal(to_numpy(bn.gamma), gamma)
    np.testing.assert_array_equal(to_numpy(bn.beta), beta)


def test_batch_size_on_a_conv_bn_counts_every_position(keras):
    """Keras' biased batch variance on a conv BN averages B*H*W values per channel."""
    inputs = keras.Input((4, 5, 3))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(
        keras.layers.Dropout(0.5, name="drop")(inputs)))
    bn = model.get_layer("bn")
    mean, var = np.array([5.0, 1.0, -2.0]), np.array([33.0, 3.0, 12.0])
    bn.moving_mean.assign(mean.astype("float32"))
    bn.moving_variance.assign(var.astype("float32"))
    df = varshift.correct_direct(model, batch_size=8)
    m = 8 * 4 * 5
    assert df["values_per_channel"][0] == m
    expected = 0.5 * (mean**2 + var * m / (m - 1)) - mean**2
    np.testing.assert_allclose(to_numpy(bn.moving_variance), expected, rtol=1e-6)
    # with m = 8 (the batch size alone) the first channel would be over-corrected by ~20%
    wrong = 0.5 * (mean**2 + var * 8 / 7) - mean**2
    assert abs(wrong[0] / expected[0] - 1) > 0.15
