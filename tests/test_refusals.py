"""Cases the declared contracts alone cannot answer: each gives its one line or the right result.

Grouped by kind: statistics written into BN layers (never zero, negative or not finite),
what the diagnostics measure, data that the model cannot take, the callback, training runs,
the input pipeline, and the command line (exit 2, one line, nothing written).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs_tensorflow, to_numpy

import varshift
from varshift import theory


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text.strip(), text
    return text


def moving(layer):
    return to_numpy(layer.moving_mean).copy(), to_numpy(layer.moving_variance).copy()


def case_a(mean=5.0, var=11.0, rate=0.5, n=5):
    from varshift.models import dropout_bn_model

    m = dropout_bn_model(n, rate, seed=0)
    m.layers[-1].moving_mean.assign(np.full(n, mean, "float32"))
    m.layers[-1].moving_variance.assign(np.full(n, var, "float32"))
    return m


# ---------------------------------------------------------------- statistics written into BN

@pytest.mark.parametrize("mode", ["one_pass", "sequential"])
def test_recalibrating_on_constant_data_never_writes_a_zero_variance(mode):
    from varshift.diagnostics.recalibrate import ConstantInputWarning

    m = case_a()
    x = np.full((64, 5), 3.0, "float32")
    with pytest.warns(ConstantInputWarning, match=r"'bn' \(5 of 5 channels\)"):
        fixed = varshift.recalibrate_bn(m, x, mode=mode)
    mean, var = moving(fixed.layers[-1])
    np.testing.assert_array_equal(var, 11.0)  # stored values kept, not 0
    np.testing.assert_array_equal(mean, 5.0)


def test_one_constant_channel_keeps_its_statistics_and_the_others_are_measured(rng):
    from varshift.diagnostics.recalibrate import ConstantInputWarning

    m = case_a()
    x = rng.normal(2.0, 3.0, (256, 5)).astype("float32")
    x[:, 2] = 7.0
    with pytest.warns(ConstantInputWarning, match=r"'bn' \(1 of 5 channels\)"):
        fixed = varshift.recalibrate_bn(m, x, inplace=True)
    assert fixed is m
    mean, var = moving(m.layers[-1])
    expected = x.astype("float64").var(axis=0)
    np.testing.assert_allclose(np.delete(var, 2), np.delete(expected, 2), rtol=1e-5)
    assert var[2] == 11.0 and mean[2] == 5.0


def test_assign_statistics_refuses_what_may_not_be_stored():
    from varshift.bnstats import assign_statistics

    m = case_a()
    bn = m.layers[-1]
    for mean, var in ((np.zeros(5), np.zeros(5)), (np.zeros(5), -np.ones(5)),
                      (np.zeros(5), np.full(5, np.inf)), (np.full(5, np.nan), np.ones(5)),
                      (np.zeros(5), np.full(5, 1e300))):  # overflows float32
        with pytest.raises(ValueError, match="'bn': refusing to store") as err:
            assign_statistics([bn], [(mean, var)])
        one_line(err)
    np.testing.assert_array_equal(moving(bn)[1], 11.0)


def test_correct_direct_twice_skips_the_second_time_with_its_reason():
    m = case_a(mean=5.0, var=11.0, rate=0.2)
    first = varshift.correct_direct(m)
    assert first["action"].tolist() == ["corrected"]
    after_one = moving(m.layers[-1])[1]
    np.testing.assert_allclose(after_one, 0.8 * (25 + 11) - 25, rtol=1e-6)  # 3.8
    second = varshift.correct_direct(m)
    assert second["action"].tolist() == ["skipped"]
    assert "Eq. 7 cannot hold" in second["reason"].iloc[0]
    np.testing.assert_array_equal(moving(m.layers[-1])[1], after_one)  # not 0


def test_correct_direct_where_eq7_cannot_hold_writes_nothing():
    m = case_a(mean=5.0, var=1.0, rate=0.5)  # 0.5 (25 + 1) - 25 < 0
    df = varshift.correct_direct(m)
    assert df["action"].tolist() == ["skipped"] and "<= 0" in df["reason"].iloc[0]
    np.testing.assert_array_equal(moving(m.layers[-1])[1], 1.0)


@needs_tensorflow  # a TimeDistributed wrapper is read by tracing it (TensorFlow only)
def test_time_distributed_bn_is_one_row_corrected_at_the_layers_rate(keras):
    inputs = keras.Input((5, 4))
    bn = keras.layers.BatchNormalization(name="bn")
    out = keras.layers.TimeDistributed(bn)(keras.layers.Dropout(0.5)(inputs))
    m = keras.Model(inputs, out)
    bn.moving_variance.assign(np.ones(4, "float32"))
    pairs = varshift.audit(m)
    assert len(pairs) == 1 and pairs["shared"].iloc[0] is None
    df = varshift.correct_direct(m)
    assert df["rate"].tolist() == [0.5] and df["action"].tolist() == ["corrected"]
    np.testing.assert_allclose(moving(bn)[1], 0.5)  # p (0 + 1) - 0, not 1/32


# -------------------------------------------------------------------------- the diagnostics

def test_measure_shift_of_infinite_moving_variance_is_one_line():
    m = case_a(var=np.inf)
    with pytest.raises(ValueError, match=r"'bn' stores statistics.*inf") as err:
        varshift.measure_shift(m, np.ones((8, 5), "float32"))
    one_line(err)


def test_measure_shift_reads_a_stored_zero_variance_and_refuses_a_negative_one():
    """A channel that was constant in training stores variance 0: measured against, not refused
    (only what varshift writes must be > 0); a negative stored variance is one line."""
    m = case_a()
    var = np.full(5, 11.0, "float32")
    var[2] = 0.0
    m.layers[-1].moving_variance.assign(var)
    x = np.random.default_rng(0).normal(5.0, 2.0, (64, 5)).astype("float32")
    df = varshift.measure_shift(m, x, per_channel=True)
    np.testing.assert_array_equal(df["moving_var_channels"][0], var)
    assert df["moving_var"][0] == pytest.approx(44.0 / 5)
    var[2] = -1.0
    m.layers[-1].moving_variance.assign(var)
    with pytest.raises(ValueError, match=r"'bn' stores statistics.*>= 0.*channel 2") as err:
        varshift.measure_shift(m, x)
    one_line(err)


@needs_tensorflow
def test_an_infinite_dataset_needs_max_samples():
    import tensorflow as tf

    from varshift.callbacks import RecalibrateBN

    m = case_a()
    endless = tf.data.Dataset.from_tensor_slices(np.ones((8, 5), "float32")).batch(4).repeat()
    for call in (lambda: varshift.measure_shift(m, endless),
                 lambda: varshift.recalibrate_bn(m, endless),
                 lambda: RecalibrateBN(endless)):
        with pytest.raises(ValueError, match="infinite.*max_samples") as err:
            call()
        one_line(err)
    # with max_samples it is read up to there
    df = varshift.measure_shift(m, endless, max_samples=16)
    assert df["count"].tolist() == [16]


def test_inputs_of_different_lengths_are_one_line(keras):
    a, b = keras.Input((3,)), keras.Input((3,))
    h = keras.layers.Dropout(0.5)(keras.layers.Add()([a, b]))
    m = keras.Model([a, b], keras.layers.BatchNormalization()(h))
    with pytest.raises(ValueError, match=r"different lengths \(data\[0\]: 10, data\[1\]: 7") as err:
        varshift.measure_shift(m, [np.ones((10, 3), "float32"), np.ones((7, 3), "float32")])
    one_line(err)


def test_finite_data_beyond_float32_is_named_as_such():
    m = case_a()
    x = np.ones((10, 5))
    x[4, 1] = 1e300
    with pytest.raises(ValueError, match=r"finite but overflows float32.*data\[4, 1\]=1e\+300"):
        varshift.measure_shift(m, x)
    # float64 data within float32's range is measured as usual
    assert np.isfinite(varshift.measure_shift(m, np.ones((10, 5)) * 1e15)["moving_var"]).all()


def test_numbers_of_every_kind_where_numbers_are_taken():
    from varshift import nets
    from varshift.models import dropout_bn_model

    assert theory.shift_ratio(0.0, 1.0, Fraction(1, 5)) == pytest.approx(0.8)
    assert theory.shift_ratio(0.0, 1.0, np.float32(0.5)) == pytest.approx(0.5)
    with pytest.raises(TypeError, match="`rate`.*boolean"):
        theory.shift_ratio(0.0, 1.0, True)
    m = dropout_bn_model(np.int64(5), np.float32(0.5))
    assert varshift.audit(m)["case"].tolist() == ["a"]
    net = nets.build("wrn", num_classes=np.int64(3), placement="a", rate=np.float32(0.2),
                     input_shape=(np.int64(8), 8, np.int32(1)), **nets.SMALL_SIZES["wrn"])
    assert net.output_shape == (None, 3) and net.input_shape == (None, 8, 8, 1)
    assert all(type(size) is int for size in net.input_shape[1:])


def test_nets_build_arguments():
    from varshift import nets

    for kwargs, pattern in (({"input_shape": (8, 8)}, "`input_shape`.*rank 2"),
                            ({"widen_factor": 0}, "`widen_factor`"),
                            ({"input_shape": (0, 8, 1)}, r"`input_shape`.*input_shape\[0\]=0"),
                            ({"seed": -1}, "`seed`"), ({"bn_momentum": 2.0}, "`bn_momentum`"),
                            ({"bn_epsilon": -1.0}, "`bn_epsilon`")):
        with pytest.raises(ValueError, match=pattern) as err:
            nets.build("wrn", **kwargs)
        one_line(err)


# ------------------------------------------------------------------------------ the callback

def test_the_callback_refuses_nan_data_before_the_first_epoch(keras):
    from varshift.callbacks import RecalibrateBN
    from varshift.models import dropout_bn_model

    x = np.random.default_rng(0).normal(5.0, 2.0, (64, 5)).astype("float32")
    bad = x.copy()
    bad[9, 3] = np.nan
    with pytest.raises(ValueError, match=r"`data` must be finite.*\(9, 3\)") as err:
        RecalibrateBN(bad)
    one_line(err)
    # a list that becomes NaN only later is caught in on_train_begin, before any step
    holder = [x.copy()]
    cb = RecalibrateBN(holder[0])
    holder[0][0, 0] = np.nan
    m = dropout_bn_model(5, 0.5)
    with pytest.raises(ValueError, match="RecalibrateBN: .*finite"):
        m.fit(x, x, epochs=2, verbose=0, callbacks=[cb])
    assert m.optimizer.iterations.numpy() == 0


# ---------------------------------------------------------------------------- training runs

BASE = {"net": "preresnet", "size": "small", "data": "synthetic", "recipe": "cpu",
        "epochs": 1, "data_kwargs": {"n_train": 32, "n_test": 16}}


@pytest.mark.parametrize(("change", "pattern"), [
    ({"data_kwargs": {"n_train": -1}}, r"`data_kwargs\['n_train'\]`"),
    ({"data_kwargs": {"colour": 1}}, "`data_kwargs` has key 'colour'"),
    ({"size": {"depth": 7}}, "`size` of net 'preresnet'.*`depth`"),
    ({"size": {"widen": 2}}, "unknown size keyword 'widen'"),
    ({"size": {"width": 0}}, "`width`"),
    ({"validation": 10**6}, "`validation` must be smaller than the 32 training images"),
    ({"threads": np.int64(0)}, "`threads`"),
])
def test_run_refuses_before_making_its_folder(tmp_path, change, pattern):
    from varshift import train

    out = tmp_path / "run"
    with pytest.raises(ValueError, match=pattern) as err:
        train.run({**BASE, **change}, out_dir=out, progress=False)
    one_line(err)
    assert not out.exists()


def test_run_accepts_numpy_threads():
    from varshift.train import RunConfig

    RunConfig.from_any({**BASE, "threads": np.int64(2)}).resolved()


def test_diverged_weights_are_blamed_not_a_bn_layer(keras):
    from varshift.bnstats import collect_moments
    from varshift.models import dropout_dense_bn_model

    m = dropout_dense_bn_model(4, 3, 0.0)
    m.get_layer("dense").kernel.assign(np.full((4, 3), 1e30, "float32"))
    with pytest.raises(ValueError, match="training diverged; lower the learning rate") as err:
        collect_moments(m, np.full((8, 4), 1e10, "float32"))
    one_line(err)
    m.get_layer("dense").kernel.assign(np.full((4, 3), np.nan, "float32"))
    with pytest.raises(ValueError, match="NaN or infinite.*'dense/kernel'"):
        collect_moments(m, np.ones((8, 4), "float32"))


# ------------------------------------------------------------------------- the input pipeline

@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"std": [0]}, "`std` must be in"), ({"std": [-1]}, "`std` must be in"),
    ({"mean": [np.nan]}, "`mean` must be finite"),
    ({"mean": [0.1, 0.2, 0.3]}, "`mean` must hold 1 value for the 1-channel images"),
    ({"batch_size": 8, "drop_remainder": True}, "`batch_size` must be <= the number of images"),
])
def test_make_dataset_statistics_and_sizes(kwargs, pattern):
    from varshift.data import make_dataset

    x, y = np.zeros((4, 2, 2, 1), "uint8"), np.zeros(4, "int64")
    with pytest.raises(ValueError, match=pattern) as err:
        make_dataset(x, y, **{"batch_size": 2, "training": False, **kwargs})
    one_line(err)


def test_make_dataset_images_on_the_0_255_scale():
    from varshift.data import make_dataset

    y = np.zeros(4, "int64")
    with pytest.raises(ValueError, match="already in \\[0, 1\\]"):
        make_dataset(np.full((4, 2, 2, 1), 0.5), y, batch_size=2, training=False)
    with pytest.raises(ValueError, match="pixel values in \\[0, 255\\]"):
        make_dataset(np.full((4, 2, 2, 1), -5), y, batch_size=2, training=False)
    with pytest.raises(TypeError, match="`x` must be NHWC images of numbers"):
        make_dataset(np.array([["a"] * 4] * 4), y, batch_size=2, training=False)
    # float images on the 0..255 scale give the uint8 images' numbers
    u8 = np.random.default_rng(0).integers(0, 256, (4, 2, 2, 1)).astype("uint8")
    stats = {"mean": [0.5], "std": [0.25], "batch_size": 4, "training": False}
    a = next(iter(make_dataset(u8, None, **stats)))
    b = next(iter(make_dataset(u8.astype("float32"), None, **stats)))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(a), (u8 / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- command line

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from numpy.lib import format as npy

    from varshift.models import dropout_bn_model

    d = tmp_path_factory.mktemp("refusals")
    dropout_bn_model(5, 0.5, seed=0).save(d / "m.keras")
    np.save(d / "x.npy", np.random.default_rng(0).normal(5.0, 2.0, (64, 5)).astype("float32"))
    np.save(d / "constant.npy", np.full((64, 5), 2.0, "float32"))
    import zipfile

    with zipfile.ZipFile(d / "text.npz", "w") as z:
        z.writestr("x.txt", "1 2 3")
    with open(d / "huge.npy", "wb") as fh:
        npy.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False,
                                        "shape": (9_999_999_999, 5)})
        fh.write(b"\0" * 80)
    os.mkfifo(d / "fifo")
    return d


def run(args, env=None):
    from varshift.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    return result


def assert_one_line(result, *words):
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("data", "words"), [
    ("m.keras", ("zip archive but not a .npz", ".keras model")),
    ("text.npz", ("not .npy arrays", "x.txt")),
    ("huge.npy", ("header declares", "9999999999", "80 bytes follow")),
    ("fifo", ("--data", "not a regular file")),
    ("/dev/zero", ("--data", "not a regular file")),
])
def test_audit_data_files_that_are_not_arrays(files, data, words):
    path = data if data.startswith("/") else files / data
    result = run(["audit", files / "m.keras", "--data", path, "--recalibrate",
                  files / "out.keras"])
    assert_one_line(result, *words)
    assert result.stdout == "" and not (files / "out.keras").exists()


@pytest.mark.parametrize("model", ["fifo", "/dev/null"])
def test_a_model_that_is_not_a_regular_file(files, model):
    path = model if model.startswith("/") else files / model
    line = assert_one_line(run(["audit", path]), "MODEL.keras", "not a regular file")
    assert "does not exist" not in line


def test_a_long_recalibrate_name_names_the_option(files):
    out = files / ("n" * 260 + ".keras")
    assert_one_line(run(["audit", files / "m.keras", "--data", files / "x.npy",
                         "--recalibrate", out]), "--recalibrate", "266 characters")


@pytest.mark.parametrize("args", [
    ["theory", "--rate", "0.2", "--rate", "0.5"],
    ["audit", "{m}", "--data", "{x}", "--data", "{x}"],
    ["audit", "{m}", "--data", "{x}", "--batch-size=8", "--batch-size", "4"],
])
def test_an_option_given_twice_is_refused(files, args):
    args = [a.format(m=files / "m.keras", x=files / "x.npy") for a in args]
    option = next(a for a in args[1:] if a.startswith("--") and args.count(a) > 1
                  or a.startswith("--batch-size"))
    assert_one_line(run(args), option.split("=")[0], "2 times")


def test_mode_without_recalibrate_is_refused(files):
    assert_one_line(run(["audit", files / "m.keras", "--data", files / "x.npy", "--mode",
                         "sequential"]), "--mode", "--recalibrate")


@pytest.mark.parametrize("backend", ["torch", "jax", "numpy", "nonsense"])
def test_a_backend_without_its_package_is_one_line(files, backend):
    import importlib.util

    package = {"numpy": "jax", "nonsense": "nonsense"}.get(backend, backend)
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    code = ("import sys; sys.path.insert(0, {root!r}); from varshift.cli import main; "
            "main(['audit', {m!r}])").format(root=str(Path(__file__).resolve().parents[1]),
                                             m=str(files / "m.keras"))
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "KERAS_BACKEND": backend}, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and f"KERAS_BACKEND={backend}" in res.stderr


def test_recalibrating_on_constant_data_prints_no_nan_and_keeps_the_statistics(files, tmp_path):
    out = tmp_path / "fixed.keras"
    result = run(["audit", files / "m.keras", "--data", files / "constant.npy",
                  "--recalibrate", out])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "max ratio now nan" not in result.stdout.lower()
    assert "received constant input" in result.stdout
    assert "max ratio now undefined (every BN layer's input is constant" in result.stdout
    fixed = varshift.load_keras().models.load_model(out, compile=False)
    assert (moving(fixed.layers[-1])[1] > 0).all()
