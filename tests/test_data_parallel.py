"""The Keras BN-statistics engine under ``keras.distribution.DataParallel`` on JAX, with two
host devices: batches split over the devices give the statistics of one device."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="needs JAX (the tests-jax session)")

SCRIPT = textwrap.dedent("""
    import os
    import numpy as np
    import jax
    import keras
    import varshift

    assert len(jax.devices()) == 2, jax.devices()

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 6, 3))
        h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        h = keras.layers.Dropout(0.5, seed=1)(h)
        h = keras.layers.BatchNormalization(name="bn1")(h)
        h = keras.layers.Conv2D(5, 3, padding="same")(keras.layers.ReLU()(h))
        return keras.Model(inputs, keras.layers.BatchNormalization(name="bn2")(h))

    x = np.random.default_rng(0).normal(1.0, 2.0, (230, 6, 6, 3)).astype("float32")
    one = build()
    weights = one.get_weights()
    results = {}
    for name, model in (("one", one), ("dp", None)):
        if model is None:
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=jax.devices()))
            model = build()
            model.set_weights(weights)
        # batches of 50 split over the 2 devices; the last batch (30) too
        fixed = varshift.recalibrate_bn(model, x, batch_size=50)
        seq = varshift.recalibrate_bn(model, x, mode="sequential", batch_size=50)
        shift = varshift.measure_shift(model, x, batch_size=50)
        results[name] = [w for m in (fixed, seq) for w in m.get_weights()] + [
            shift["real_var"].to_numpy(), shift["count"].to_numpy()]
    for a, b in zip(results["one"], results["dp"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("equal", len(results["one"]))
""")


def test_data_parallel_on_two_host_devices_equals_one_device():
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], check=False, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[:1] == ["equal"]
