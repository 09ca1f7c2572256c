"""The BN-statistics engine: exact pooled moments, batch-mode BN, noise forcing, data checks."""

import numpy as np
import pytest
from conftest import to_numpy

from varshift import bnstats, theory


def _conv_bn(keras, rate=None):
    inputs = keras.Input((4, 5, 3))
    x = inputs if rate is None else keras.layers.Dropout(rate, seed=0, name="drop")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(2, 1, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    return keras.Model(inputs, x)


def _images(rng, n=50):
    return (rng.normal(2.0, 3.0, (n, 4, 5, 3)) * np.array([1.0, 0.1, 5.0])).astype("float32")


def test_pooled_moments_are_exact_and_independent_of_batching(keras, rng):
    model = _conv_bn(keras)
    x = _images(rng)
    for batch_size in (7, 50):  # 7 does not divide 50: a short last batch
        (m1, _) = bnstats.collect_moments(model, x, batch_size=batch_size)
        assert m1.layer.name == "bn1" and m1.count == 50 * 4 * 5
        np.testing.assert_allclose(m1.mean, x.astype("float64").mean(axis=(0, 1, 2)), rtol=1e-6)
        np.testing.assert_allclose(m1.var, x.astype("float64").var(axis=(0, 1, 2)), rtol=1e-6)
    # the average of per-batch biased variances misses the variance of the batch means
    (m1, _) = bnstats.collect_moments(model, x, batch_size=10)
    per_batch = x.reshape(5, 10 * 4 * 5, 3).astype("float64")
    np.testing.assert_allclose(m1.batch_var, per_batch.var(axis=1).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(m1.batch_mean, per_batch.mean(axis=1).mean(axis=0), rtol=1e-6)
    assert (m1.batch_var < m1.var).all()


def test_moments_stay_exact_far_from_zero(keras, rng):
    """A mean far from 0 for its spread costs no precision: channel 0 of every sample, and
    channel 2 of half the samples, sit 10^3 and 50 standard deviations from 0, in the same
    batches as samples near 0."""
    model = _conv_bn(keras)
    x = rng.normal(0.0, 1.0, (50, 4, 5, 3))
    x[:, :, :, 0] += 1e3
    x[::2, :, :, 2] += 50.0 + rng.normal(0.0, 1.0, (25, 1, 1))
    x = x.astype("float32")
    x64 = x.astype("float64")
    m1 = bnstats.collect_moments(model, x, batch_size=16)[0]
    np.testing.assert_allclose(m1.mean, x64.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(m1.var, x64.var(axis=(0, 1, 2)), rtol=1e-6)
    per_batch = [x64[a:a + 16].var(axis=(0, 1, 2)) for a in range(0, 50, 16)]
    np.testing.assert_allclose(m1.batch_var, np.mean(per_batch, axis=0), rtol=1e-6)
    # normalised with the batch's exact moments, as training-mode BN is, here in float64
    # (Keras' own training-mode BN on PyTorch takes the variance as E[x^2] - E[x]^2 in
    # float32, which loses channel 0's)
    _, m2 = bnstats.collect_moments(model, x, bn="batch", batch_size=50)
    bn, conv = model.get_layer("bn1"), model.get_layer("conv")
    y = (x64 - x64.mean(axis=(0, 1, 2))) / np.sqrt(x64.var(axis=(0, 1, 2)) + bn.epsilon)
    y = y * to_numpy(bn.gamma) + to_numpy(bn.beta)
    z = y @ to_numpy(conv.kernel)[0, 0].astype("float64") + to_numpy(conv.bias)
    np.testing.assert_allclose(m2.var, z.var(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(m2.mean, z.mean(axis=(0, 1, 2)), atol=2e-4)  # eps x 10^3


def test_batch_mode_normalises_like_keras_training_and_modifies_nothing(keras, rng):
    model = _conv_bn(keras)
    x = _images(rng, 40)
    saved = bnstats.save_statistics(bnstats.bn_layers(model))
    _, m2 = bnstats.collect_moments(model, x, bn="batch", batch_size=40)
    for (m0, v0), (m1, v1) in zip(saved, bnstats.save_statistics(bnstats.bn_layers(model)),
                                  strict=True):
        np.testing.assert_array_equal(m0, m1)
        np.testing.assert_array_equal(v0, v1)
    # what Keras' own training-mode BN hands to the next layer
    hidden = keras.Model(model.inputs[0], model.get_layer("conv").output)
    reference = to_numpy(hidden(x, training=True)).astype("float64")
    bnstats.assign_statistics(bnstats.bn_layers(model), saved)  # undo Keras' EMA update
    np.testing.assert_allclose(m2.mean, reference.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m2.var, reference.var(axis=(0, 1, 2)), rtol=1e-4)


def test_noise_forced_off_and_on(keras, rng):
    model = _conv_bn(keras, rate=0.5)
    x = rng.normal(5.0, 2.0, (400, 4, 5, 3)).astype("float32")
    off = bnstats.collect_moments(model, x, noise=False)[0]
    on = bnstats.collect_moments(model, x, noise=True, seed=1)[0]
    np.testing.assert_allclose(off.var, x.astype("float64").var(axis=(0, 1, 2)), rtol=1e-6)
    eq7 = theory.dropout_train_variance(x.mean(), x.var(), 0.5)  # (c^2 + v)/p - c^2 = 33
    assert on.var.mean() == pytest.approx(float(eq7), rel=0.05)
    again = bnstats.collect_moments(model, x, noise=True, seed=1)[0]
    np.testing.assert_array_equal(on.var, again.var)  # seeded masks repeat


@pytest.mark.parametrize("features, batches", [(6, 150), (70_000, 20)],
                         ids=["small batches", "large batches"])
def test_noise_masks_advance_batch_after_batch(keras, rng, features, batches):
    """With the noise on, batch k is dropped with the k-th draw of the layer's seeds, as in
    ``fit``, however the engine groups batches into compiled calls (small ones in stacks,
    large ones alone, the next sent before the last is read): batches of 2."""
    inputs = keras.Input((features,))
    drop = keras.layers.Dropout(0.5, seed=0, name="drop")
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(drop(inputs)))
    x = rng.normal(3.0, 1.0, (2 * batches, features)).astype("float32")
    measured = bnstats.collect_moments(model, x, noise=True, seed=7, batch_size=2)[0]
    state = drop.seed_generator.state
    state.assign(np.asarray([7, 0], dtype=to_numpy(state).dtype))  # as seed=7 starts it
    dropped = [to_numpy(drop(x[i:i + 2], training=True)) for i in range(0, 2 * batches, 2)]
    expected = np.concatenate(dropped).astype("float64")
    np.testing.assert_allclose(measured.mean, expected.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(measured.var, expected.var(axis=0), rtol=1e-6)


def test_a_pass_leaves_the_threads_tensorflow_function_options_as_they_were(keras, rng):
    """The pass runs its graph without Grappler; the caller's own functions, called after it
    in the same thread, run with the options they had before."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's per-thread function options")
    from tensorflow.python.eager import context

    before = context.context().function_call_options.config_proto_serialized
    bnstats.collect_moments(_conv_bn(keras), _images(rng), bn="batch", batch_size=16)
    assert context.context().function_call_options.config_proto_serialized == before


def test_converged_statistics_count_every_position(keras, rng):
    """Keras' stored variance on a conv BN is (m-1)/m of the variance, m = B x H x W."""
    from varshift.models import converged_bn_statistics

    model = _conv_bn(keras)
    x = rng.normal(0.0, 1.0, (4096, 4, 5, 3)).astype("float32")
    _, var = converged_bn_statistics(model, x, batch_size=2)["bn1"]
    pooled = x.astype("float64").var(axis=(0, 1, 2))
    expected = theory.keras_expected_moving_variance(pooled, 2, positions=20)  # m = 40
    np.testing.assert_allclose(var, expected, rtol=2e-3)
    assert abs(var.mean() - pooled.mean() / 2) > 0.3  # m = batch (2) would say 1/2


def test_converged_statistics_on_a_nested_model(keras, rng):
    from varshift.models import converged_bn_statistics

    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, seed=0),
                              keras.layers.BatchNormalization(name="inner_bn")], name="inner")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="outer_bn")(inner(inputs)))
    x = rng.normal(5.0, 2.0, (4096, 3)).astype("float32")
    stats = converged_bn_statistics(model, x, batch_size=64, assign=True)
    assert list(stats) == ["inner_bn", "outer_bn"]
    eq7 = theory.keras_expected_moving_variance(theory.dropout_train_variance(5, 4, 0.5), 64)
    assert stats["inner_bn"][1].mean() == pytest.approx(float(eq7), rel=0.05)
    inner_bn = model.get_layer("inner").get_layer("inner_bn")
    np.testing.assert_allclose(to_numpy(inner_bn.moving_variance), stats["inner_bn"][1],
                               rtol=1e-6)


def test_data_sources_agree_and_max_samples_caps(keras, rng):
    tf = pytest.importorskip("tensorflow")
    model = _conv_bn(keras)
    x = _images(rng, 30)
    y = np.zeros(30)

    class Seq(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10]

    reference = bnstats.collect_moments(model, x)[0].var
    for data in (tf.data.Dataset.from_tensor_slices((x, y)),  # unbatched, with labels
                 tf.data.Dataset.from_tensor_slices(x).batch(4), Seq(), (x, y)):
        np.testing.assert_allclose(bnstats.collect_moments(model, data)[0].var, reference,
                                   rtol=1e-6)
    capped = bnstats.collect_moments(model, x, batch_size=8, max_samples=12)[0]
    assert capped.count == 12 * 20
    np.testing.assert_allclose(capped.var, x[:12].astype("float64").var(axis=(0, 1, 2)),
                               rtol=1e-6)


def test_non_finite_values_are_named_in_one_line(keras, rng):
    tf = pytest.importorskip("tensorflow")
    model = _conv_bn(keras)
    x = _images(rng, 30)
    x[13, 1, 1, 0] = np.nan
    x[14, 0, 0, 2] = -np.inf
    x[29] = np.inf
    pattern = r"^Argument `data` must be finite; it holds 2 NaN or infinite value\(s\) in the " \
              r"batch starting at sample 12, the first in sample 13\.$"
    with pytest.raises(ValueError, match=pattern):
        bnstats.collect_moments(model, x, batch_size=6)
    with pytest.raises(ValueError, match="starting at sample 12, the first in sample 13"):
        bnstats.collect_moments(model, tf.data.Dataset.from_tensor_slices(x).batch(6))
    # a cap before the bad samples reads only good data
    assert bnstats.collect_moments(model, x, batch_size=6, max_samples=12)[0].count == 240


def test_values_per_channel(keras):
    model = _conv_bn(keras)
    bn = model.get_layer("bn1")
    assert bnstats.values_per_channel(bn, (None, 4, 5, 3), 32) == 32 * 20
    dense = keras.layers.BatchNormalization()
    dense.build((None, 6))
    assert bnstats.values_per_channel(dense, (None, 6), 32) == 32


def test_force_noise_switches_dropout_whatever_the_call_says(keras, rng):
    inputs = keras.Input((200,))
    model = keras.Model(inputs, keras.layers.Dropout(0.5, seed=0)(inputs))
    x = np.ones((4, 200), "float32")
    with bnstats.force_noise(model, True):
        on = to_numpy(model(x, training=False))
    assert set(np.unique(on)) == {0.0, 2.0}
    with bnstats.force_noise(model, False):
        np.testing.assert_array_equal(to_numpy(model(x, training=True)), x)
    assert "call" not in model.layers[-1].__dict__  # restored


@pytest.mark.parametrize("case", ["channels last", "channels first", "dense", "tiny epsilon",
                                  "no scale or centre"])
def test_batch_mode_normalises_as_keras_training_mode(keras, rng, case):
    """Every way the engine normalises with a batch's moments (one fused kernel where the
    backend has one, the element-wise formula elsewhere) gives Keras' own training-mode BN
    output, as the next BN layer measures it."""
    kwargs = {"channels first": {"axis": 1}, "tiny epsilon": {"epsilon": 1e-6},
              "no scale or centre": {"scale": False, "center": False}}.get(case, {})
    shape = (6,) if case == "dense" else (3, 4, 5)
    axis = kwargs.get("axis", -1)  # of the batch: 1 is the first axis of a sample
    channels = shape[axis - 1] if axis > 0 else shape[axis]
    inputs = keras.Input(shape)
    bn = keras.layers.BatchNormalization(name="bn1", **kwargs)
    outputs = keras.layers.BatchNormalization(name="bn2", axis=axis)(bn(inputs))
    model = keras.Model(inputs, outputs)
    if bn.scale:
        bn.gamma.assign(rng.uniform(0.5, 2.0, channels).astype("float32"))
    if bn.center:
        bn.beta.assign(rng.normal(0.0, 1.0, channels).astype("float32"))
    scales = np.linspace(0.5, 4.0, channels).reshape([-1 if i == axis % (len(shape) + 1) else 1
                                                      for i in range(len(shape) + 1)])
    x = (rng.normal(2.0, 3.0, (32, *shape)) * scales).astype("float32")
    _, measured = bnstats.collect_moments(model, x, bn="batch", batch_size=32)
    out = to_numpy(bn(x, training=True)).astype("float64")  # Keras' training-mode output
    axes = tuple(i for i in range(out.ndim) if i != axis % out.ndim)
    np.testing.assert_allclose(measured.mean, out.mean(axis=axes), atol=1e-5)
    np.testing.assert_allclose(measured.var, out.var(axis=axes), rtol=1e-4)


def test_batch_mode_with_a_short_last_batch_uses_each_batch_alone(keras, rng):
    """Batches of 15, 15 and 10 samples: each is normalised with its own moments, as Keras'
    training-mode BN would do for it alone."""
    model = _conv_bn(keras)
    x = _images(rng, 40)
    saved = bnstats.save_statistics(bnstats.bn_layers(model))
    _, m2 = bnstats.collect_moments(model, x, bn="batch", batch_size=15)
    hidden = keras.Model(model.inputs[0], model.get_layer("conv").output)
    parts = [to_numpy(hidden(x[a:a + 15], training=True)).astype("float64")
             for a in (0, 15, 30)]
    bnstats.assign_statistics(bnstats.bn_layers(model), saved)  # undo Keras' EMA update
    assert m2.n_batches == 3 and m2.count == 40 * 4 * 5
    np.testing.assert_allclose(m2.batch_var, np.mean([p.var(axis=(0, 1, 2)) for p in parts],
                                                      axis=0), rtol=1e-4)
    np.testing.assert_allclose(m2.var, np.concatenate(parts).var(axis=(0, 1, 2)), rtol=1e-4)
