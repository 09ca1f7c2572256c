"""Arguments nobody checked before, and the cases that follow the same rules.

Every public function, class and command checks its arguments before any work and answers in
one line naming the argument, the value and what is expected; the command line exits 2 with
no traceback; the user's model and files are unchanged on failure. Where the input is valid
the result is checked against real values (the one data contract: a nested list, an
``(x, y)`` tuple and bfloat16 data give the numbers a float32 array gives).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs_tensorflow, to_numpy

import varshift
from varshift import theory
from varshift.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text.strip(), text
    return text


def names_argument_and_value(err, name, value):
    """The message names the argument (Keras style: `name`) and shows the value received."""
    text = one_line(err)
    assert f"`{name}`" in text, text
    assert repr(value) in text or str(value) in text, text
    return text


def weights(model):
    return [to_numpy(w).copy() for w in model.weights]


def assert_unchanged(before, model):
    for a, b in zip(before, weights(model), strict=True):
        np.testing.assert_array_equal(a, b)


def run_varshift(args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr, result.exception


def assert_cli_error(code, stderr, exception, match=None):
    assert code == 2, (code, stderr, exception)
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    lines = [line for line in stderr.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    if match is not None:
        assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def model():
    from varshift.models import dropout_bn_model

    varshift.load_keras().utils.set_random_seed(3)
    m = dropout_bn_model(5, 0.5, seed=1)
    m.layers[-1].moving_mean.assign(np.full(5, 5.0, "float32"))
    m.layers[-1].moving_variance.assign(np.full(5, 12.0, "float32"))
    return m


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(5.0, 2.0, (96, 5)).astype("float32")


# ------------------------------------------------------------------ counts, seeds, booleans


# ------------------------------------------------------------- max_samples / batch_size


# ------------------------------------------------------------------- one data contract

def test_one_data_contract_gives_the_same_numbers(model, x):
    """A nested list, (x, y), (x, y, w) and bfloat16 data: accepted by every entry point,
    with the numbers of the float32 array (bfloat16: of the data rounded to bfloat16)."""
    import ml_dtypes

    from varshift.models import bn_model, converged_bn_statistics

    bn_only = bn_model(5)  # no noise: converged statistics are a function of the data alone
    name = bn_only.layers[-1].name
    rounded = x.astype(ml_dtypes.bfloat16)
    forms = {"list": (x.tolist(), x), "(x, y)": ((x, x[:, :1]), x),
             "(x, y, w)": ((x, x, np.ones(len(x))), x),
             "bfloat16": (rounded, rounded.astype("float32"))}
    for label, (given, same_as) in forms.items():
        ratio = varshift.measure_shift(model, given)["real_var"].to_numpy()
        np.testing.assert_allclose(ratio, varshift.measure_shift(model, same_as)["real_var"],
                                   rtol=1e-6, err_msg=label)
        fixed = varshift.recalibrate_bn(model, given)
        ref = varshift.recalibrate_bn(model, same_as)
        np.testing.assert_allclose(fixed.layers[-1].moving_variance.numpy(),
                                   ref.layers[-1].moving_variance.numpy(), rtol=1e-6)
        fixed = varshift.recalibrate_bn(model, given, mode="sequential")
        ref = varshift.recalibrate_bn(model, same_as, mode="sequential")
        np.testing.assert_allclose(fixed.layers[-1].moving_variance.numpy(),
                                   ref.layers[-1].moving_variance.numpy(), rtol=1e-6)
        got = converged_bn_statistics(bn_only, given, seed=0)
        want = converged_bn_statistics(bn_only, same_as, seed=0)
        np.testing.assert_allclose(got[name][1], want[name][1], rtol=1e-5, err_msg=label)
    # and the real value: the pooled variance of the data (inference mode, dropout off)
    assert varshift.measure_shift(model, x.tolist())["real_var"].iloc[0] == pytest.approx(
        x.astype("float64").var(axis=0).mean(), rel=1e-5)


def test_data_is_recognised_without_importing_tensorflow_on_another_backend():
    """A nested list is data and an object is refused in one line; on a backend other than
    TensorFlow, recognising data (a ``tf.data.Dataset`` among the kinds) imports no TensorFlow."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import varshift
from varshift.models import dropout_bn_model
model = dropout_bn_model(2, 0.5, seed=0)
print(len(varshift.measure_shift(model, [[1.0, 2.0], [3.0, 4.0]])))
try:
    varshift.measure_shift(model, object())
except TypeError as err:
    print("one line" if "\\n" not in str(err) else "several lines")
print(varshift.load_keras().backend.backend() == "tensorflow", "tensorflow" in sys.modules)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    count, one, line, is_tensorflow, imported = res.stdout.split()
    assert (count, one, line) == ("1", "one", "line"), res.stdout + res.stderr
    assert imported == is_tensorflow, res.stdout + res.stderr


@needs_tensorflow
def test_a_tf_dataset_and_a_pydataset_are_still_data(model, x):
    import tensorflow as tf

    keras = varshift.load_keras()

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[32 * i:32 * (i + 1)]

    want = varshift.measure_shift(model, x)["real_var"].to_numpy()
    for data in (tf.data.Dataset.from_tensor_slices(x).batch(32), Batches()):
        np.testing.assert_allclose(varshift.measure_shift(model, data)["real_var"], want,
                                   rtol=1e-6)


def test_a_subclassed_model_given_the_wrong_shape_answers_one_line(keras):
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.dense = keras.layers.Dense(3)
            self.bn = keras.layers.BatchNormalization()

        def call(self, x, training=None):
            return self.bn(self.dense(x), training=training)

    net = Net()
    net(np.ones((2, 4), "float32"))
    before = weights(net)
    bad = np.ones((8, 5), "float32")
    for call in (lambda: varshift.measure_shift(net, bad),
                 lambda: varshift.recalibrate_bn(net, bad, inplace=True)):
        with pytest.raises(ValueError, match=r"`data` has samples of shape \(5,\).*\(4,\)") as err:
            call()
        one_line(err)
    assert_unchanged(before, net)
    # without a recorded build shape the model is called on one sample: the Keras cause, on
    # one line, without the "Exception encountered" frame and the argument dump
    net._build_shapes_dict = None
    with pytest.raises(ValueError, match="calling it on one sample fails") as err:
        varshift.measure_shift(net, bad)
    text = one_line(err)
    assert "expected axis -1 of input shape to have value 4" in text
    assert "Arguments received" not in text and "\x1b[" not in text
    assert len(varshift.measure_shift(net, np.ones((8, 4), "float32"))) == 1


# --------------------------------------------------------------------------- RecalibrateBN


def test_recalibrate_callback_checks_against_the_model_before_any_epoch(keras, x):
    from varshift.callbacks import RecalibrateBN
    from varshift.models import dropout_bn_model, dropout_model

    epochs = []
    counter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    cases = [(dropout_bn_model(5, 0.5), np.ones((8, 3), "float32"), r"samples of shape \(3,\)"),
             (dropout_model(5, 0.5), x, "no BatchNormalization")]
    for m, data, pattern in cases:
        before = weights(m)
        with pytest.raises(ValueError, match=f"RecalibrateBN: .*{pattern}") as err:
            m.fit(x, x, epochs=3, verbose=0, callbacks=[counter, RecalibrateBN(data)])
        one_line(err)
        assert epochs == [] and m.optimizer.iterations.numpy() == 0  # not one step
        assert_unchanged(before, m)


def test_recalibrate_callback_takes_x_y_and_recalibrates(keras, x):
    from varshift.callbacks import RecalibrateBN
    from varshift.models import dropout_bn_model

    m = dropout_bn_model(5, 0.5, seed=0)
    cb = RecalibrateBN((x, x), max_samples=64)
    m.fit(x, x, epochs=1, verbose=0, callbacks=[cb])
    assert cb.count == 1
    # one_pass with noise off: the moving variance is the first 64 samples' biased variance
    np.testing.assert_allclose(m.layers[-1].moving_variance.numpy(),
                               x[:64].astype("float64").var(axis=0), rtol=1e-5)


# ------------------------------------------------------------------------- train.RunConfig

BASE = {"net": "preresnet", "size": "small", "data": "synthetic", "recipe": "cpu",
        "epochs": 1, "data_kwargs": {"n_train": 32, "n_test": 16}}


@pytest.mark.parametrize(("change", "name"), [
    ({"epochs": 0}, "epochs"), ({"epochs": -1}, "epochs"), ({"epochs": 1.5}, "epochs"),
    ({"lr": float("nan")}, "lr"), ({"lr": -0.1}, "lr"), ({"momentum": 1.0}, "momentum"),
    ({"batch_size": 0}, "batch_size"), ({"weight_decay": float("inf")}, "weight_decay"),
    ({"lr_drops": [-1]}, "lr_drops[0]"),
    ({"seed": -1}, "seed"), ({"seed": "a"}, "seed"), ({"seed": 2**33}, "seed"),
    ({"size": "huge"}, "size"), ({"train_eval_samples": -1}, "train_eval_samples"),
    ({"stats_samples": 0}, "stats_samples"), ({"eval_batch_size": 0}, "eval_batch_size"),
    ({"data": "imagenet"}, "data"), ({"recipe": "gpu"}, "recipe"),
    ({"evaluations": [1]}, "evaluations"), ({"save_model": 1}, "save_model"),
    ({"augment": "yes"}, "augment"), ({"deterministic": "no"}, "deterministic"),
    ({"epoch_eval": None}, "epoch_eval"), ({"data_kwargs": [1]}, "data_kwargs"),
    ({"data_dir": 3}, "data_dir"),
])
def test_run_config_fields(tmp_path, change, name):
    from varshift import train

    with pytest.raises((TypeError, ValueError)) as err:
        train.run({**BASE, **change}, out_dir=tmp_path / "run", progress=False)
    text = one_line(err)
    assert f"`{name}`" in text, text
    value = next(iter(change.values()))
    assert repr(value if name != "lr_drops[0]" else -1) in text or str(value) in text, text
    assert not (tmp_path / "run").exists()  # before any work: no folder made


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_run_out_dir(tmp_path, kind):
    from varshift import train

    target = tmp_path / "a_file"
    target.write_text("the user's file")
    out = target if kind == "file" else Path("/proc/varshift-run")
    with pytest.raises(ValueError, match="`out_dir`") as err:
        train.run(BASE, out_dir=out, progress=False)
    assert str(out) in one_line(err)
    assert target.read_text() == "the user's file"


# ------------------------------------------------------------------------------ data loaders

@pytest.mark.parametrize(("kwargs", "name", "value"), [
    ({"n_train": -1}, "n_train", -1), ({"n_train": 0}, "n_train", 0),
    ({"n_train": 2.7}, "n_train", 2.7), ({"n_test": "5"}, "n_test", "5"),
    ({"noise": float("nan")}, "noise", "nan"), ({"noise": -1.0}, "noise", -1.0),
    ({"num_classes": 0}, "num_classes", 0), ({"seed": -1}, "seed", -1),
    ({"seed": "a"}, "seed", "a"), ({"shape": (32, 32)}, "shape", (32, 32)),
    ({"shape": (8, 0, 3)}, "shape[1]", 0),
])
def test_synthetic_and_load(kwargs, name, value):
    from varshift import data

    for call in (lambda: data.synthetic(**kwargs),
                 lambda: data.load("synthetic", **{"seed": 0, **kwargs})):
        with pytest.raises((TypeError, ValueError), match=f"`{re_escape(name)}`") as err:
            call()
        assert str(value) in one_line(err)


def test_synthetic_with_valid_arguments_is_what_it_says():
    from varshift import data

    (x, y), (xt, yt) = data.synthetic(n_train=50, n_test=20, shape=(4, 4, 1), num_classes=3,
                                      seed=np.int64(2), noise=0.0)
    assert x.shape == (50, 4, 4, 1) and xt.shape == (20, 4, 4, 1) and set(y) <= {0, 1, 2}
    # no noise: every image of a class is its template
    for c in range(3):
        assert len({img.tobytes() for img in x[y == c]}) == 1


@pytest.mark.parametrize(("call", "name"), [
    (lambda d: d.load("digits", seed=-2), "seed"),
    (lambda d: d.load("digits", data_dir=5), "data_dir"),
    (lambda d: d.load("digits", subset={"n_train": 0}), "subset"),
    (lambda d: d.load_digits(seed="x"), "seed"),
    (lambda d: d.subset_indices(np.arange(10), 0), "k"),
    (lambda d: d.subset_indices(np.arange(10), 3, seed=-1), "seed"),
    (lambda d: d.subset_indices(np.arange(10), 3, stratified="no"), "stratified"),
    (lambda d: d.make_dataset(np.zeros((4, 2, 2, 1), "uint8"), None, batch_size=2,
                              training="no"), "training"),
    (lambda d: d.make_dataset(np.zeros((4, 2, 2, 1), "uint8"), None, batch_size=2,
                              training=False, seed=-1), "seed"),
])
def test_other_data_functions(call, name):
    from varshift import data

    with pytest.raises((TypeError, ValueError), match=f"`{re_escape(name)}`") as err:
        call(data)
    one_line(err)


def re_escape(text):
    import re

    return re.escape(text)


# ---------------------------------------------------------------------------------- theory

def test_shift_ratio_of_a_huge_mean_is_about_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert theory.shift_ratio(1e200, 1.0, 0.2) == 0.0
        assert theory.gaussian_dropout_shift_ratio(1e200, 1.0, 0.2) == 0.0
        assert theory.uout_shift_ratio(1e200, 1.0, 0.5) == 0.0
        assert theory.dropout_train_variance(1e200, 1.0, 0.2) == np.inf
        assert theory.restore_moving_variance(1e200, 1.0, 0.2) == 0.0
        # rate 0: no noise, no shift, whatever the mean (no 0 * inf)
        assert theory.shift_ratio(1e200, 1.0, 0.0) == 1.0
        assert theory.dropout_train_variance(1e200, 1.0, 0.0) == 1.0
        # where the true value is representable, it is the value: p v / (v + (1-p) c^2)
        p, v, c = 0.8, 3.0, 1e100
        assert theory.shift_ratio(c, v, 0.2) == pytest.approx(p * v / (v + (1 - p) * c * c),
                                                              rel=1e-14)
        assert theory.shift_ratio(c, v, 0.2) == pytest.approx(1.2e-199, rel=1e-12)


def test_theory_command_with_a_huge_mean_prints_no_nan():
    code, out, err, exc = run_varshift(["theory", "--mean", "1e200", "--rate", "0.2",
                                        "--beta", "0.5", "--rho", "0.3", "--d-cos2", "4"])
    assert code == 0, (err, exc)
    assert "nan" not in out.lower()
    ratios = [float(line.split()[-1]) for line in out.splitlines()[2:] if "Eq. 14" not in line]
    assert ratios == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------- correct_direct

def _monte_carlo(kind, n=2_000_000):
    """x ~ N(0.5, 1), factor m of the noise kind (rate 0.5 / beta 1), then ReLU: the stored
    (training) mean and variance of relu(x m) and the true inference variance of relu(x)."""
    r = np.random.default_rng(0)
    x = r.normal(0.5, 1.0, n)
    m = {"gaussian_dropout": lambda: r.normal(1.0, 1.0, n),
         "dropout": lambda: (r.random(n) < 0.5) / 0.5,
         "uout": lambda: 1.0 + r.uniform(-1.0, 1.0, n)}[kind]()
    z = np.maximum(x * m, 0.0)
    return z.mean(), z.var(), np.maximum(x, 0.0).var()


def _noise_relu_bn(keras, kind, relu=None):
    from varshift.layers import Uout

    layer = {"gaussian_dropout": lambda: keras.layers.GaussianDropout(0.5),
             "dropout": lambda: keras.layers.Dropout(0.5),
             "uout": lambda: Uout(1.0)}[kind]()
    inputs = keras.Input((1,))
    h = (relu or keras.layers.ReLU())(layer(inputs))
    return keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(h))


def test_gaussian_dropout_before_relu_is_not_corrected(keras):
    """Numpy Monte Carlo: the closed form would give 0.41 for a true 0.55; refused."""
    mean, stored, true = _monte_carlo("gaussian_dropout")
    closed_form = theory.restore_moving_variance(mean, stored, 0.5)
    assert true == pytest.approx(0.554, abs=0.005) and closed_form == pytest.approx(0.41, abs=0.01)
    m = _noise_relu_bn(keras, "gaussian_dropout")
    bn = m.get_layer("bn")
    bn.moving_mean.assign([mean])
    bn.moving_variance.assign([stored])
    df = varshift.correct_direct(m)
    assert df["action"].tolist() == ["skipped"] and np.isnan(df["rate"].iloc[0])
    reason = df["reason"].iloc[0]
    assert "gaussian_dropout" in reason and "re_lu" in reason and "15.9%" in reason
    assert "no closed form" in reason
    assert bn.moving_variance.numpy()[0] == pytest.approx(stored, rel=1e-6)  # untouched


@pytest.mark.parametrize("kind", ["dropout", "uout"])
def test_non_negative_factors_before_relu_are_corrected_to_the_true_variance(keras, kind):
    mean, stored, true = _monte_carlo(kind)
    m = _noise_relu_bn(keras, kind)
    bn = m.get_layer("bn")
    bn.moving_mean.assign([mean])
    bn.moving_variance.assign([stored])
    df = varshift.correct_direct(m)
    assert df["action"].tolist() == ["corrected"], df["reason"].tolist()
    assert bn.moving_variance.numpy()[0] == pytest.approx(true, rel=0.01)


@pytest.mark.parametrize("relu", ["capped", "threshold", "tanh"])
def test_relus_that_are_not_homogeneous_block_the_correction(keras, relu):
    layer = {"capped": lambda: keras.layers.ReLU(max_value=6.0),
             "threshold": lambda: keras.layers.ReLU(threshold=0.5),
             "tanh": lambda: keras.layers.Activation("tanh")}[relu]()
    m = _noise_relu_bn(keras, "dropout", layer)
    before = weights(m)
    df = varshift.correct_direct(m)
    assert df["action"].tolist() == ["skipped"]
    assert "change Eq. 7" in df["reason"].iloc[0]
    assert_unchanged(before, m)


def test_shared_bn_layer_is_reported_and_left_untouched(keras):
    from varshift.bnstats import shared_bn_layers

    inputs = keras.Input((4,))
    bn = keras.layers.BatchNormalization(name="shared_bn")
    a = bn(keras.layers.Dropout(0.5)(inputs))
    b = bn(keras.layers.Dense(4)(inputs))
    m = keras.Model(inputs, keras.layers.Add()([a, b]))
    bn.moving_mean.assign(np.full(4, 2.0, "float32"))
    bn.moving_variance.assign(np.full(4, 9.0, "float32"))
    assert shared_bn_layers(m) == {"shared_bn"}
    before = weights(m)
    df = varshift.correct_direct(m)
    assert df["action"].tolist() == ["skipped"]
    assert "shared BN layer" in df["reason"].iloc[0]
    assert_unchanged(before, m)
    # the same model without sharing is corrected (the reason was the sharing)
    inputs = keras.Input((4,))
    single = keras.Model(inputs, keras.layers.BatchNormalization()(
        keras.layers.Dropout(0.5)(inputs)))
    assert shared_bn_layers(single) == set()
    assert varshift.correct_direct(single)["action"].tolist() == ["corrected"]


# ------------------------------------------------------------------------------ command line

@pytest.fixture(scope="module")
def files(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("bad-input-more")
    model.save(d / "m.keras")
    np.save(d / "x.npy", np.random.default_rng(0).normal(5.0, 2.0, (64, 5)).astype("float32"))
    return d


def test_audit_key_without_data_exits_2(files):
    code, stdout, stderr, exc = run_varshift(["audit", files / "m.keras", "--key", "x"])
    assert_cli_error(code, stderr, exc, match="--key 'x'")
    assert stdout == ""


def test_recalibrate_onto_a_symlink_writes_its_target(files, tmp_path):
    target = tmp_path / "real" / "fixed.keras"
    target.parent.mkdir()
    target.write_bytes(b"old model")
    link = tmp_path / "link.keras"
    link.symlink_to(target)
    code, stdout, stderr, exc = run_varshift(["audit", files / "m.keras", "--data",
                                              files / "x.npy", "--recalibrate", link])
    assert code == 0, (stderr, exc)
    assert link.is_symlink() and os.readlink(link) == str(target)  # still a link
    assert target.read_bytes()[:2] == b"PK"  # the target now holds the recalibrated model
    assert sorted(p.name for p in target.parent.iterdir()) == ["fixed.keras"]  # no temp left
    fixed = varshift.load_keras().models.load_model(link, compile=False)
    np.testing.assert_allclose(fixed.layers[-1].moving_variance.numpy(),
                               np.load(files / "x.npy").astype("float64").var(axis=0),
                               rtol=1e-5)


def test_recalibrate_onto_a_symlink_to_a_bad_place_is_refused(files, tmp_path):
    link = tmp_path / "link.keras"
    link.symlink_to(tmp_path / "no" / "such" / "fixed.keras")
    code, stdout, stderr, exc = run_varshift(["audit", files / "m.keras", "--data",
                                              files / "x.npy", "--recalibrate", link])
    assert_cli_error(code, stderr, exc, match="points to")
    assert link.is_symlink() and not (tmp_path / "no").exists() and stdout == ""


def test_demo_huge_seed_end_to_end_no_traceback():
    res = subprocess.run([sys.executable, "-m", "varshift", "demo", "--seed",
                          "99999999999999999999"], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


# ------------------------------------------------- the sweep: cases not listed, same rules

def _public_callables():
    """Every public function and class of varshift.__all__, varshift.train, varshift.data and
    varshift.callbacks (modules themselves excluded)."""
    import varshift.callbacks
    import varshift.data
    import varshift.train

    found = {}
    for mod in (varshift, varshift.train, varshift.data, varshift.callbacks):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found[f"{mod.__name__}.{name}"] = obj
    return found


#: parameter name -> bad values every public callable taking it must refuse, naming it
SWEPT = {"seed": [-1, "a"], "batch_size": [0, 2.5], "max_samples": [0, "100"],
         "passes": [0], "n_train": [0], "num_classes": [0], "epochs": [0]}


def _sweep_cases():
    """(callable name, a call with every other argument valid)."""
    from varshift import data, models

    x = np.random.default_rng(0).normal(5.0, 2.0, (32, 5)).astype("float32")
    m = models.dropout_bn_model(5, 0.5)
    return {
        "varshift.measure_shift": lambda **kw: varshift.measure_shift(m, x, **kw),
        "varshift.recalibrate_bn": lambda **kw: varshift.recalibrate_bn(m, x, **kw),
        "varshift.correct_direct": lambda **kw: varshift.correct_direct(m, **kw),
        "varshift.converged_bn_statistics":
            lambda **kw: varshift.converged_bn_statistics(m, x, **kw),
        "varshift.RecalibrateBN": lambda **kw: varshift.RecalibrateBN(x, **kw),
        "varshift.train.run": lambda **kw: varshift.train.run({**BASE, **kw}, progress=False),
        "varshift.train.RunConfig": lambda **kw: varshift.train.RunConfig.from_any(
            {**BASE, **kw}).resolved(),
        "varshift.Uout": lambda **kw: varshift.Uout(0.5, **kw),
        "varshift.train.Recipe": lambda **kw: varshift.train.Recipe(**{
            "epochs": 2, "batch_size": 8, **kw}),
        "varshift.train.derive_seed": lambda **kw: varshift.train.derive_seed(
            purpose="shuffle", **kw),
        "varshift.train.reseed_noise": lambda **kw: varshift.train.reseed_noise(m, draw=0, **kw),
        "varshift.callbacks.RecalibrateBN": lambda **kw: varshift.RecalibrateBN(x, **kw),
        "varshift.data.synthetic": data.synthetic,
        "varshift.data.load": lambda **kw: data.load("synthetic", **kw),
        "varshift.data.load_digits": data.load_digits,
        "varshift.data.subset_indices": lambda **kw: data.subset_indices(np.arange(9), 3, **kw),
        "varshift.data.take_subset": lambda **kw: data.take_subset(
            (x, np.arange(32) % 2), (x, np.arange(32) % 2), {"n_train": 4}, **kw),
        "varshift.data.make_dataset": lambda **kw: data.make_dataset(
            np.zeros((4, 2, 2, 1), "uint8"), None, **{"batch_size": 2, "training": False, **kw}),
    }


def _swept_parameters():
    out = []
    for qual, obj in _public_callables().items():
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        names = set(params)
        if qual.endswith("RunConfig"):
            names |= {"epochs", "batch_size"}  # recipe fields given to a RunConfig
        out += [(qual, p) for p in sorted(names & set(SWEPT))]
    return out


def test_the_sweep_covers_every_public_callable_with_a_swept_parameter():
    cases = _sweep_cases()
    missing = sorted({qual for qual, _ in _swept_parameters()} - set(cases))
    assert missing == [], f"add a sweep case for {missing}"


@pytest.mark.parametrize(("qual", "param"), _swept_parameters())
def test_sweep_public_callables(qual, param):
    call = _sweep_cases()[qual]
    for value in SWEPT[param]:
        with pytest.raises((TypeError, ValueError)) as err:
            call(**{param: value})
        text = one_line(err)
        assert f"`{param}`" in text and repr(value) in text, (qual, param, value, text)
