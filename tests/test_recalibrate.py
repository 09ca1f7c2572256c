"""recalibrate_bn (the paper's "Adjust BN") and audit on a small trained conv net."""

import numpy as np
import pytest
from conftest import to_numpy

import varshift
from varshift.bnstats import bn_layers


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
    keras = varshift.load_keras()
    keras.utils.set_random_seed(0)
    x, y = _images(512, seed=0)
    model = _conv_net(keras)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    return model, x, y


def _stats(model):
    return [(to_numpy(bn.moving_mean).copy(), to_numpy(bn.moving_variance).copy())
            for bn in bn_layers(model)]


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
    # dropout 0.5 after ReLU: a large shift at the first BN, a clear one behind it (how large
    # deeper depends on the training trajectory, which differs between backends)
    assert before["ratio"][0] > 1.5 and (before["ratio"] > 1.03).all()
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


def test_one_pass_removes_the_shift_and_matches_sequential(trained):
    model, x, y = trained
    saved = _stats(model)
    one = varshift.recalibrate_bn(model, x)  # mode="one_pass", noise off
    seq = varshift.recalibrate_bn(model, x, mode="sequential")
    for (m0, v0), (m1, v1) in zip(saved, _stats(model), strict=True):  # original untouched
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(v0, v1)
    after = varshift.measure_shift(one, x)
    assert after["ratio"].max() <= 1.05, after["ratio"].tolist()
    # the first BN layer has no BN upstream: one_pass and sequential agree to rounding
    (m_one, v_one), (m_seq, v_seq) = _stats(one)[0], _stats(seq)[0]
    np.testing.assert_allclose(v_one, v_seq, rtol=1e-5)
    np.testing.assert_allclose(m_one, m_seq, rtol=1e-5, atol=1e-6)
    p_one = one.predict(x, batch_size=256, verbose=0)
    p_seq = seq.predict(x, batch_size=256, verbose=0)
    assert np.sqrt(np.mean((p_one - p_seq) ** 2) / np.mean(p_seq**2)) < 0.02


def test_sequential_on_one_batch_equals_the_layer_by_layer_passes(trained, monkeypatch):
    """All data in one batch: the one-pass shortcut stores what one pass per BN layer stores."""
    import varshift.diagnostics.recalibrate as recal

    model, x, _ = trained
    calls = []
    real = recal.collect_moments
    monkeypatch.setattr(recal, "collect_moments",
                        lambda *a, **k: calls.append(k["bn"]) or real(*a, **k))
    layered = varshift.recalibrate_bn(model, x, mode="sequential", batch_size=128)  # 4 batches
    assert calls == ["moving"] * len(bn_layers(model))
    calls.clear()
    single = varshift.recalibrate_bn(model, x, mode="sequential", batch_size=len(x))
    assert calls == ["batch"]
    for (m0, v0), (m1, v1) in zip(_stats(layered), _stats(single), strict=True):
        np.testing.assert_allclose(m1, m0, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(v1, v0, rtol=1e-4)
    np.testing.assert_allclose(varshift.measure_shift(single, x)["ratio"], 1.0, atol=1e-3)
    # not the trained statistics: the shortcut wrote every layer
    pairs = zip(_stats(model), _stats(single), strict=True)
    assert all(not np.allclose(v1, v0) for (_, v0), (_, v1) in pairs)


def test_one_pass_with_noise_keeps_the_shift(trained):
    model, x, _ = trained
    noisy = varshift.recalibrate_bn(model, x, noise=True, seed=3)
    shift = varshift.measure_shift(noisy, x).set_index("bn_layer")
    # bn1 and bn3 sit right behind Dropout(0.5) after a ReLU: Eq. 8 gives a ratio >= 2
    assert shift.loc["bn1", "ratio"] >= 2 and shift.loc["bn3", "ratio"] >= 2, shift["ratio"]


def test_simultaneous_mode_is_gone(trained):
    model, x, _ = trained
    with pytest.raises(ValueError, match=r"one_pass.*sequential.*simultaneous"):
        varshift.recalibrate_bn(model, x, mode="simultaneous")


def test_non_finite_data_leaves_the_model_untouched(trained):
    model, x, _ = trained
    bad = x.copy()
    bad[300, 2, 3, 1] = np.nan
    bad[301] = np.inf
    saved = _stats(model)
    for mode in ("one_pass", "sequential"):
        with pytest.raises(ValueError, match=r"`data`.*769 NaN or infinite.*256.*sample 300"):
            varshift.recalibrate_bn(model, bad, mode=mode, inplace=True)
        for (m0, v0), (m1, v1) in zip(saved, _stats(model), strict=True):
            np.testing.assert_array_equal(m0, m1)
            np.testing.assert_array_equal(v0, v1)


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
        varshift.recalibrate_bn(model, data, mode="sequential", inplace=True)
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


def test_copy_of_a_trained_model_is_compiled_alike_and_trains_on_its_own(keras, rng):
    from varshift.models import dropout_bn_model

    model = dropout_bn_model(4, 0.5, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse",
                  metrics=["mae"])
    x = rng.normal(2.0, 3.0, (256, 4)).astype("float32")
    model.fit(x, x, epochs=1, batch_size=64, verbose=0)
    before = [to_numpy(w).copy() for w in model.weights]

    copy = varshift.recalibrate_bn(model, x)
    assert copy is not model and copy.compiled
    assert type(copy.optimizer) is type(model.optimizer)
    assert copy.optimizer.get_config() == model.optimizer.get_config()
    assert copy.get_compile_config()["loss"] == model.get_compile_config()["loss"]
    np.testing.assert_allclose(to_numpy(copy.layers[-1].moving_variance), x.var(axis=0),
                               rtol=1e-5)
    # the copy trains (its optimizer state starts afresh) and the original stays as it was
    copy.fit(x, x, epochs=1, batch_size=64, verbose=0)
    assert int(to_numpy(copy.optimizer.iterations)) == 4
    for w0, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(w0, to_numpy(w))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "layerwise"}, "`mode`"),
    ({"mode": "sequential", "noise": True}, "`noise`"),
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
    fixed = varshift.recalibrate_bn(model, x, mode="sequential", batch_size=128)
    after = varshift.measure_shift(fixed, x)
    assert after["path"].tolist() == ["first_bn", "sub/sub_bn", "last_bn"]
    np.testing.assert_allclose(after["ratio"], 1.0, atol=1e-3)
    assert (varshift.measure_shift(model, x)["ratio"] > 1.5).all()  # the original kept its own


def _deep_residual(keras, blocks=10, width=8, seed=0):
    """``blocks`` pre-activation residual blocks, each ReLU -> Dropout(0.5) -> BN -> conv."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(width, 3, padding="same", name="stem")(inputs)
    for i in range(blocks):
        y = layers.ReLU(name=f"relu{i}")(x)
        y = layers.Dropout(0.5, seed=seed + i, name=f"drop{i}")(y)
        y = layers.BatchNormalization(name=f"bn{i}")(y)
        y = layers.Conv2D(width, 3, padding="same", name=f"conv{i}")(y)
        x = layers.Add(name=f"add{i}")([x, y])
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(x))
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="deep_residual")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.slow
def test_one_pass_on_a_deep_residual_net(keras):
    keras.utils.set_random_seed(0)
    x, y = _images(768, seed=1)
    x = x[:, ::2, ::2, :]  # 8x8
    model = _deep_residual(keras, blocks=10)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert varshift.measure_shift(model, x)["ratio"].max() > 2  # the shift to remove

    one = varshift.recalibrate_bn(model, x)
    seq = varshift.recalibrate_bn(model, x, mode="sequential")
    noisy = varshift.recalibrate_bn(model, x, noise=True, seed=0)
    assert varshift.measure_shift(one, x)["ratio"].max() <= 1.05
    p_one = one.predict(x, batch_size=256, verbose=0)
    p_seq = seq.predict(x, batch_size=256, verbose=0)
    assert np.sqrt(np.mean((p_one - p_seq) ** 2) / np.mean(p_seq**2)) < 0.02
    # every BN sits right behind a Dropout(0.5): with the noise on, Eq. 8's shift stays
    assert varshift.measure_shift(noisy, x)["ratio"].min() >= 2


def test_unsound_moments_are_refused_and_nothing_is_written(keras):
    from varshift.models import dropout_bn_model, seed_data

    model = dropout_bn_model(5, 0.5, seed=0)
    x = seed_data(300)
    saved = _stats(model)
    with pytest.raises(ValueError, match="single value per channel"):
        varshift.recalibrate_bn(model, x, max_samples=1, inplace=True)
    with pytest.raises(ValueError, match="1 value per channel"):
        varshift.recalibrate_bn(model, x, max_samples=1, mode="sequential", inplace=True)
    with pytest.raises(ValueError, match="single value per channel"):
        varshift.recalibrate_bn(model, x, batch_size=1, inplace=True)
    for (m0, v0), (m1, v1) in zip(saved, _stats(model), strict=True):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(v0, v1)
    # a trailing batch of one sample is skipped, the rest is used
    fixed = varshift.recalibrate_bn(model, x[:257], batch_size=256)
    assert np.all(_stats(fixed)[0][1] > 1.0)
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="`noise` must be True or False"):
            varshift.recalibrate_bn(model, x, noise=bad)
        with pytest.raises(TypeError, match="`inplace` must be True or False"):
            varshift.recalibrate_bn(model, x, inplace=bad)
        with pytest.raises(TypeError, match="`per_channel` must be True or False"):
            varshift.measure_shift(model, x, per_channel=bad)
        with pytest.raises(TypeError, match="`assign` must be True or False"):
            from varshift.models import converged_bn_statistics

            converged_bn_statistics(model, x, assign=bad)
    assert _stats(model)[0][1].tolist() == saved[0][1].tolist()


@pytest.mark.filterwarnings("error::RuntimeWarning")  # one clear error, no stray numpy warning
def test_float16_overflow_writes_nothing(keras):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((4,))
        h = keras.layers.Dense(4, kernel_initializer="ones", name="big")(inputs)
        model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(h))
    finally:
        keras.config.set_dtype_policy("float32")
    x = np.full((64, 4), 30000.0, "float32")  # finite float32, 4 x 30000 overflows float16
    saved = _stats(model)
    with pytest.raises(ValueError, match="non-finite activations"):
        varshift.recalibrate_bn(model, x, inplace=True)
    with pytest.raises(ValueError, match="non-finite activations"):
        varshift.measure_shift(model, x)
    assert _stats(model)[0][1].tolist() == saved[0][1].tolist()


def test_the_copy_keeps_every_layers_dtype_policy(keras, rng):
    """A copy made while the global policy is mixed has every layer's policy of the original
    (the input layer's comes from the global one), and ends as the original recalibrated in
    place."""
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((6,))
        h = keras.layers.Dropout(0.5, seed=0)(keras.layers.Dense(8, name="dense")(inputs))
        model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(h))
        x = rng.normal(1.0, 2.0, (320, 6)).astype("float32")
        copy = varshift.recalibrate_bn(model, x, batch_size=32)  # ten batches
    finally:
        keras.config.set_dtype_policy("float32")
    assert ([layer.dtype_policy.name for layer in copy.layers]
            == [layer.dtype_policy.name for layer in model.layers])
    varshift.recalibrate_bn(model, x, batch_size=32, inplace=True)
    np.testing.assert_array_equal(to_numpy(copy(x[:64])), to_numpy(model(x[:64])))


def test_converged_statistics_repeat_under_a_seed(keras):
    from varshift.models import converged_bn_statistics, dropout_bn_model, seed_data

    model, x = dropout_bn_model(5, 0.5), seed_data(600)  # noise layer without its own seed
    a = converged_bn_statistics(model, x, seed=3)
    b = converged_bn_statistics(model, x, seed=3)
    c = converged_bn_statistics(model, x, seed=4)
    np.testing.assert_array_equal(a["bn"][1], b["bn"][1])
    assert not np.array_equal(a["bn"][1], c["bn"][1])
