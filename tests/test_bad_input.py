"""Bad input never gets through (the "Input contract" of docs/api.md): what the declared
contracts alone cannot say.

Every declared argument constraint is tried automatically by ``tests/test_contracts.py``. Here:
data checked against the model and while it streams (shape, NaN, infinity), the user's model
and files left unchanged on failure, output destinations, files that are not what their name
says, messages that locate the bad element, and the command line end to end (exit code 2, one
line, no traceback).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import to_numpy

import varshift
from varshift import theory
from varshift.cli import cli

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ helpers

def one_line(err) -> str:
    text = str(err.value if hasattr(err, "value") else err)
    assert "\n" not in text.strip(), text
    return text


def run_varshift(args):
    """``varshift ARGS`` in-process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr, result.exception


def run_reproduce(args, capsys):
    from reproduce.__main__ import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_cli_error(code, stderr, *, exception=None, match=None):
    assert code == 2, (code, stderr, exception)
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if "%|" not in line]  # a progress bar, if one started
    assert len(lines) == 1, stderr
    if match is not None:
        assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def model():
    """Input(5) -> Dropout(0.2) -> BN, with moving statistics that are not the initial ones."""
    from varshift.models import dropout_bn_model

    varshift.load_keras().utils.set_random_seed(7)
    m = dropout_bn_model(5, 0.2, seed=1)
    bn = m.layers[-1]
    bn.moving_mean.assign(np.full(5, 5.0, "float32"))
    bn.moving_variance.assign(np.full(5, 11.0, "float32"))
    return m


def bn_state(m):
    return [to_numpy(w).copy() for w in m.weights]


@pytest.fixture
def x(rng):
    return rng.normal(5.0, 2.0, (64, 5)).astype("float32")


@pytest.fixture(scope="module")
def files(tmp_path_factory, model):
    """A saved model and data files, good and bad, for the command line."""
    d = tmp_path_factory.mktemp("bad-input")
    model.save(d / "m.keras")
    good = np.random.default_rng(0).normal(5.0, 2.0, (64, 5)).astype("float32")
    np.save(d / "x.npy", good)
    nan = good.copy()
    nan[3, 2] = np.nan
    np.save(d / "nan.npy", nan)
    inf = good.copy()
    inf[7, 1] = np.inf
    np.save(d / "inf.npy", inf)
    np.save(d / "strings.npy", np.array([["a"] * 5] * 4))
    np.save(d / "shape.npy", good[:, :4])
    np.save(d / "empty.npy", np.zeros((0, 5), "float32"))
    (d / "text.npy").write_text("1 2 3\n")
    (d / "text.keras").write_text("not a model\n")
    (d / "truncated.keras").write_bytes(b"PK\x03\x04 a zip archive cut short")
    (d / "folder.keras").mkdir()
    return d


# ------------------------------------------- bad data on the command line: one line, exit 2

def test_nan_data_is_rejected_by_the_cli_and_nothing_is_written(files):
    out = files / "fixed_nan.keras"
    code, stdout, stderr, exc = run_varshift(["audit", files / "m.keras", "--data",
                                              files / "nan.npy", "--recalibrate", out])
    line = assert_cli_error(code, stderr, exception=exc, match="NaN")
    assert "index (3, 2)" in line and "1 NaN/inf" in line
    assert stdout == "" and not out.exists()  # checked before the audit table, nothing written


@pytest.mark.parametrize("where", ["nan", "inf"])
def test_measure_shift_rejects_non_finite_data(model, x, where):
    x[10, 3] = np.nan if where == "nan" else np.inf
    with pytest.raises(ValueError, match="`data`") as err:
        varshift.measure_shift(model, x)
    assert "1" in one_line(err) and "10" in str(err.value)  # how many, first index


def test_recalibrate_inplace_with_nan_leaves_the_model_untouched(model, x):
    before = bn_state(model)
    x[5, 0] = np.nan
    with pytest.raises(ValueError, match="`data`"):
        varshift.recalibrate_bn(model, x, inplace=True)
    for a, b in zip(before, bn_state(model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_string_data_cli_is_one_line_exit_2_before_the_table(files):
    code, stdout, stderr, exc = run_varshift(["audit", files / "m.keras", "--data",
                                              files / "strings.npy"])
    assert_cli_error(code, stderr, exception=exc, match="dtype <U1")
    assert stdout == ""


def test_report_of_an_empty_folder_is_an_error_naming_the_run(tmp_path, capsys):
    code, _, err = run_reproduce(["report", "--profile", "smoke", "--out", tmp_path], capsys)
    line = assert_cli_error(code, err)
    assert "python -m reproduce run --profile smoke --out" in line
    assert not (tmp_path / "report.md").exists()


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_umask_permissions(tmp_path):
    from varshift.files import atomic_path, atomic_write_json, atomic_write_text

    with umask(0o022):
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        with atomic_path(tmp_path / "a.csv") as tmp:
            Path(tmp).write_text("a,b\n")
    assert [mode(tmp_path / n) for n in ("a.txt", "a.json", "a.csv")] == [0o644] * 3
    with umask(0o077):
        atomic_write_text(tmp_path / "b.txt", "x")
    assert mode(tmp_path / "b.txt") == 0o600
    os.chmod(tmp_path / "a.txt", 0o640)  # an existing file keeps its mode
    with umask(0o022):
        atomic_write_text(tmp_path / "a.txt", "y")
    assert mode(tmp_path / "a.txt") == 0o640 and (tmp_path / "a.txt").read_text() == "y"


def test_reproduce_writes_files_with_the_umask_permissions(tmp_path, capsys):
    out = tmp_path / "results"
    with umask(0o022):
        assert run_reproduce(["run", "eq8", "--profile", "smoke", "--out", out], capsys)[0] == 0
        assert run_reproduce(["report", "eq8", "--profile", "smoke", "--out", out], capsys)[0] == 0
    modes = {p.relative_to(out).as_posix(): mode(p) for p in out.rglob("*")}
    assert {"report.md", "verdicts.csv", "eq8/result.json", "eq8/table.csv"} <= set(modes)
    assert {k: m for k, m in modes.items() if m != (0o755 if (out / k).is_dir() else 0o644)} == {}


def test_recalibrate_output_replaces_an_existing_file_keeping_its_mode(files, tmp_path):
    out = tmp_path / "fixed.keras"
    out.write_text("old")
    os.chmod(out, 0o644)
    with umask(0o022):
        code, stdout, stderr, exc = run_varshift(["audit", files / "m.keras", "--data",
                                                  files / "x.npy", "--recalibrate", out])
    assert code == 0, (stderr, exc)
    assert mode(out) == 0o644 and out.read_bytes()[:2] == b"PK"
    assert not [p for p in tmp_path.iterdir() if p.name != "fixed.keras"]  # no temp file left


@pytest.mark.parametrize("dest", ["missing/out.keras", "/proc/out.keras", "folder.keras",
                                  "out.h5"])
def test_recalibrate_destination_checked_first_and_named(files, dest):
    path = dest if dest.startswith("/") else files / dest
    code, stdout, stderr, exc = run_varshift(["audit", files / "m.keras", "--data",
                                              files / "x.npy", "--recalibrate", path])
    line = assert_cli_error(code, stderr, exception=exc, match=str(path))
    assert stdout == ""  # before any work: no table, no measuring
    assert ".varshift-" not in line and ".tmp" not in line


@pytest.mark.parametrize("name", ["text.keras", "truncated.keras"])
def test_a_keras_file_that_is_not_a_model_is_not_file_not_found(files, name):
    code, _, stderr, exc = run_varshift(["audit", files / name])
    line = assert_cli_error(code, stderr, exception=exc, match="is not a Keras model")
    assert "not found" not in line.lower()


def test_a_text_file_named_npy_is_not_pickled_data(files):
    code, _, stderr, exc = run_varshift(["audit", files / "m.keras", "--data",
                                         files / "text.npy"])
    line = assert_cli_error(code, stderr, exception=exc, match="is not a .npy/.npz file")
    assert "pickled" not in line


def test_unregistered_custom_layer_cause_is_shown_in_full(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import varshift
keras = varshift.load_keras()

@keras.saving.register_keras_serializable(package="user")
class MyScale(keras.layers.Layer):
    def call(self, x):
        return 2 * x

inputs = keras.Input((3,))
keras.Model(inputs, keras.layers.BatchNormalization()(MyScale()(inputs))).save(sys.argv[1])
"""
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "custom.keras")], check=True,
                   capture_output=True)
    rc, _, stderr, exc = run_varshift(["audit", tmp_path / "custom.keras"])
    line = assert_cli_error(rc, stderr, exception=exc, match="Could not locate class 'MyScale'")
    assert line.rstrip().endswith("before trying to load them.")


def test_correct_direct_on_a_subclassed_model_does_not_ask_for_input_shape(keras):
    class Net(keras.Model):  # subclassed: no model.inputs, so no known input shape
        def __init__(self):
            super().__init__(name="net")
            self.bn = keras.layers.BatchNormalization()

        def call(self, x, training=None):
            return self.bn(keras.layers.Dropout(0.5)(x, training=training), training=training)

    net = Net()
    net(np.ones((2, 4), "float32"))
    with pytest.raises(ValueError, match="Functional or Sequential") as err:
        varshift.correct_direct(net)
    assert "pass input_shape=" not in one_line(err)


def test_theory_names_the_bad_element_of_a_large_array():
    rate = np.full(1000, 0.2)
    rate[417] = 1.5
    with pytest.raises(ValueError, match=r"rate\[417\]=1\.5, 1 of 1000 bad") as err:
        theory.shift_ratio(0.0, 1.0, rate)
    one_line(err)
    mean = np.zeros((3, 4))
    mean[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"mean\[2, 1\]=nan"):
        theory.dropout_train_variance(mean, 1.0, 0.2)


def test_theory_broadcast_error_names_the_arguments():
    with pytest.raises(ValueError, match=r"`mean`, `var`, `rate` must broadcast.*\(3,\).*\(2,\)"):
        theory.shift_ratio([0.0, 1.0, 2.0], [1.0, 2.0], 0.2)
    with pytest.raises(ValueError, match=r"`rho`"):
        theory.shift_ratio_linear(0.0, 1.0, 0.2, [0.1, 0.2], [1.0, 2.0, 3.0])


def test_theory_none_is_missing_not_non_finite():
    with pytest.raises(TypeError, match=r"`mean` is missing") as err:
        theory.shift_ratio(None, 1.0, 0.2)
    assert "finite" not in one_line(err)


def test_reproduce_without_arguments_prints_usage_not_target_required(capsys):
    code, out, err = run_reproduce([], capsys)
    assert code == 2 and "usage:" in (out + err) and "required" not in (out + err)


def test_audit_of_a_missing_file_does_not_import_tensorflow(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from varshift.cli import main
try:
    main(["audit", {str(tmp_path / "missing.keras")!r}])
except SystemExit as e:
    print(e.code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert res.stdout.split() == ["2", "False", "False"], res.stdout + res.stderr
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_cli_traceback_free_end_to_end(files):
    """One real process: string data gives one line and exit 2, no traceback."""
    res = subprocess.run([sys.executable, "-m", "varshift", "audit", str(files / "m.keras"),
                          "--data", str(files / "strings.npy")], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


# --------------------------------------------------------------- table: the public functions

NAN = np.array([[1.0, np.nan, 1.0, 1.0, 1.0]] * 4, "float32")
INF = np.array([[1.0, 1.0, np.inf, 1.0, 1.0]] * 4, "float32")
BAD_DATA = {  # kind -> (data, error type, message pattern): what needs the model or the stream
    "wrong shape": (np.ones((4, 3), "float32"), ValueError, r"samples of shape \(3,\).*\(5,\)"),
    "NaN": (NAN, ValueError, r"`(data|x)`.*(NaN|finite)"),
    "inf": (INF, ValueError, r"`(data|x)`.*(inf|finite)"),
}


def _data_functions():
    from varshift.models import converged_bn_statistics

    return {
        "measure_shift": varshift.measure_shift,
        "recalibrate_bn": varshift.recalibrate_bn,
        "recalibrate_bn(inplace)": lambda m, d: varshift.recalibrate_bn(m, d, inplace=True),
        "recalibrate_bn(sequential)": lambda m, d: varshift.recalibrate_bn(
            m, d, mode="sequential"),
        "converged_bn_statistics": converged_bn_statistics,
    }


@pytest.mark.parametrize("kind", list(BAD_DATA))
@pytest.mark.parametrize("name", ["measure_shift", "recalibrate_bn", "recalibrate_bn(inplace)",
                                  "recalibrate_bn(sequential)", "converged_bn_statistics"])
def test_table_data_functions(model, name, kind):
    data, error, pattern = BAD_DATA[kind]
    before = bn_state(model)
    with pytest.raises(error, match=pattern) as err:
        _data_functions()[name](model, data)
    one_line(err)
    for a, b in zip(before, bn_state(model), strict=True):  # the user's model is untouched
        np.testing.assert_array_equal(a, b)


def test_model_without_bn_is_one_behaviour_everywhere(x):
    from varshift.models import converged_bn_statistics, dropout_model

    m = dropout_model(5, 0.2)
    calls = [lambda: varshift.audit(m), lambda: varshift.correct_direct(m),
             lambda: varshift.measure_shift(m, x), lambda: varshift.recalibrate_bn(m, x),
             lambda: converged_bn_statistics(m, x)]
    for call in calls:
        with pytest.raises(ValueError, match="no BatchNormalization"):
            call()


def test_table_data_load_unknown_name():
    from varshift import data

    with pytest.raises(ValueError, match="`name`|cifar10"):
        data.load("imagenet")


# ------------------------------------------------------------------ table: the command line

def _cli_cases(d):
    m, x = d / "m.keras", d / "x.npy"
    return {
        # varshift theory
        "theory empty": ["theory", "--rate", ""],
        "theory None-like": ["theory", "--rate", "None"],
        "theory missing": ["theory"],
        "theory half of case b": ["theory", "--rate", "0.2", "--rho", "0.5"],
        # varshift demo (fails before training)
        # varshift audit
        "audit missing model": ["audit", d / "missing.keras"],
        "audit wrong type model": ["audit", d / "text.keras"],
        "audit model is a folder": ["audit", d / "folder.keras"],
        "audit wrong type data": ["audit", m, "--data", d / "text.npy"],
        "audit wrong shape": ["audit", m, "--data", d / "shape.npy"],
        "audit wrong dtype": ["audit", m, "--data", d / "strings.npy"],
        "audit NaN": ["audit", m, "--data", d / "nan.npy"],
        "audit inf": ["audit", m, "--data", d / "inf.npy"],
        "audit empty": ["audit", m, "--data", d / "empty.npy"],
        "audit missing data": ["audit", m, "--data", d / "missing.npy"],
        "audit recalibrate without data": ["audit", m, "--recalibrate", d / "o.keras"],
        "audit unwritable output": ["audit", m, "--data", x, "--recalibrate", "/proc/o.keras"],
        "audit missing folder": ["audit", m, "--data", x, "--recalibrate", d / "no" / "o.keras"],
        "audit output is a folder": ["audit", m, "--data", x, "--recalibrate", d / "folder.keras"],
        "audit output suffix": ["audit", m, "--data", x, "--recalibrate", d / "o.h5"],
        "audit existing output, bad data": ["audit", m, "--data", d / "nan.npy",
                                            "--recalibrate", d / "existing.keras"],
        "audit bad mode": ["audit", m, "--data", x, "--recalibrate", d / "o.keras",
                           "--mode", "layerwise"],
        "unknown command": ["nosuch"],
    }


CLI_CASES = list(_cli_cases(Path("/")))


@pytest.mark.parametrize("case", CLI_CASES)
def test_table_varshift_cli(files, case):
    existing = files / "existing.keras"
    existing.write_bytes(b"the user's file")
    os.chmod(existing, 0o640)
    args = _cli_cases(files)[case]
    code, stdout, stderr, exc = run_varshift(args)
    assert_cli_error(code, stderr, exception=exc)
    assert existing.read_bytes() == b"the user's file" and mode(existing) == 0o640
    assert not (files / "o.keras").exists() and not (files / "no").exists()


def _reproduce_cases(tmp):
    (tmp / "a_file").write_text("x")
    return {
        "list wrong profile": ["list", "--profile", "huge"],
        "list unknown target": ["list", "fig99"],
        "run wrong type": ["run", "eq8", "--jobs", "two", "--out", tmp / "r"],
        "run zero jobs": ["run", "eq8", "--jobs", "0", "--out", tmp / "r"],
        "run NaN seeds": ["run", "eq8", "--seeds", "nan", "--out", tmp / "r"],
        "run zero seeds": ["run", "eq8", "--seeds", "0", "--out", tmp / "r"],
        "run unwritable output": ["run", "eq8", "--profile", "smoke", "--out", "/proc/varshift"],
        "run output is a file": ["run", "eq8", "--profile", "smoke", "--out", tmp / "a_file"],
        "report empty": ["report", "--out", tmp / "empty"],
        "report missing folder": ["report", "--out", tmp / "nothing"],
        "report unknown option": ["report", "--outt", tmp],
    }


REPRODUCE_CASES = ["list wrong profile", "list unknown target", "run wrong type", "run zero jobs",
                   "run NaN seeds", "run zero seeds", "run unwritable output",
                   "run output is a file", "report empty", "report missing folder",
                   "report unknown option"]


@pytest.mark.parametrize("case", REPRODUCE_CASES)
def test_table_reproduce_cli(tmp_path, capsys, case):
    (tmp_path / "empty").mkdir()
    args = _reproduce_cases(tmp_path)[case]
    code, _, err = run_reproduce(args, capsys)
    assert_cli_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "empty"]
    assert not any((tmp_path / "empty").iterdir())
