"""The ``varshift`` command line and the lazy import of TensorFlow."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from varshift import theory
from varshift.cli import cli


def test_import_does_not_load_tensorflow():
    code = "import varshift, sys; varshift.theory.shift_ratio(0, 1, 0.5); " \
           "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; " \
           "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_m_varshift_help():
    out = subprocess.run([sys.executable, "-m", "varshift", "--help"], capture_output=True,
                         text=True, check=True)
    assert "theory" in out.stdout and "demo" in out.stdout


def _ratios(output):
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] in {"(a)", "GaussianDropout(rate=0.2)", "(b)", "Uout(beta=0.5)"}:
            rows[parts[0]] = float(parts[-1]) if parts[0] != "(b)" else float(parts[6])
    return rows


def test_theory_prints_every_case():
    result = CliRunner().invoke(cli, ["theory", "--rate", "0.2", "--mean", "5", "--var", "4",
                                      "--rho", "0.5", "--d-cos2", "10", "--beta", "0.5"])
    assert result.exit_code == 0, result.output
    rows = _ratios(result.output)
    assert rows["(a)"] == pytest.approx(theory.shift_ratio(5, 4, 0.2), abs=1e-6)
    assert rows["GaussianDropout(rate=0.2)"] == pytest.approx(
        theory.gaussian_dropout_shift_ratio(5, 4, 0.2), abs=1e-6)
    assert rows["(b)"] == pytest.approx(theory.shift_ratio_linear(5, 4, 0.2, 0.5, 10), abs=1e-6)
    assert rows["Uout(beta=0.5)"] == pytest.approx(theory.uout_shift_ratio(5, 4, 0.5), abs=1e-6)
    assert "11.25" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["theory", "--rate", "1.5"], "`--rate` must be in [0.0, 1.0)"),
        (["theory", "--mean", "1"], "give --rate"),
        (["theory", "--rate", "0.2", "--rho", "0.5"], "needs both --rho and --d-cos2"),
        (["theory", "--beta", "2"], "`--beta` must be in [0.0, 1.0]"),
        (["theory", "--rate", "0.2", "--var", "-1"], "`--var` must be a variance"),
        (["demo", "--rate", "1.0"], "`--rate`"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_demo_json(keras):
    result = CliRunner().invoke(cli, ["demo", "--epochs", "3", "--json"])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["rate"] == 0.2 and numbers["epochs"] == 3
    assert numbers["eq7_train_var"] == pytest.approx(
        theory.dropout_train_variance(numbers["data_mean"], numbers["data_var"], 0.2), rel=0.01)


def test_demo_text_shows_the_no_bn_control(keras):
    result = CliRunner().invoke(cli, ["demo", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "no-BN control: Dropout -> Dense(1)" in result.output
    assert "Undoing (m-1)/m first gives" in result.output
