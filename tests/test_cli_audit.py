"""``varshift audit``: tables, recalibration, and one-line errors with exit code 2."""

import numpy as np
import pytest
from click.testing import CliRunner

from varshift.cli import cli


@pytest.fixture
def saved(tmp_path, keras):
    """A saved Dropout -> Dense -> BN -> Uout -> BN model with shifted statistics, and data."""
    from varshift.layers import Uout
    from varshift.models import converged_bn_statistics

    inputs = keras.Input((8,))
    h = keras.layers.Dropout(0.5, seed=0, name="drop")(inputs)
    h = keras.layers.Dense(8, name="dense")(h)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = Uout(0.5, seed=0, name="uout")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    model = keras.Model(inputs, h, name="saved_net")
    x = np.random.default_rng(0).normal(3.0, 1.0, (512, 8)).astype("float32")
    converged_bn_statistics(model, x, batch_size=32, assign=True)
    path = tmp_path / "model.keras"
    model.save(path)
    np.savez(tmp_path / "data.npz", x=x, y=np.zeros(len(x)))
    np.save(tmp_path / "data.npy", x)
    return tmp_path, model, x


def _run(*args):
    return CliRunner().invoke(cli, ["audit", *map(str, args)])


def test_audit_only(saved):
    tmp, _, _ = saved
    result = _run(tmp / "model.keras")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("bn1" in line and "drop" in line and " b " in f" {line} " for line in lines)
    assert any("bn2" in line and "uout" in line for line in lines)
    assert "Measured shift" not in result.output


def test_measure_and_recalibrate(saved):
    import varshift
    import varshift.layers  # noqa: F401  (registers Uout, which the saved model holds)

    tmp, model, x = saved
    out = tmp / "fixed.keras"
    result = _run(tmp / "model.keras", "--data", tmp / "data.npz", "--batch-size", "100",
                  "--recalibrate", out)
    assert result.exit_code == 0, result.output
    expected = varshift.measure_shift(model, x)
    assert "Measured shift" in result.output
    for ratio in expected["ratio"]:
        assert f"{ratio:.6g}" in result.output
    fixed = varshift.load_keras().models.load_model(out, compile=False)
    np.testing.assert_allclose(varshift.measure_shift(fixed, x)["ratio"], 1.0, atol=1e-3)
    assert "max ratio now 1" in result.output
    assert not [p for p in tmp.iterdir() if p.name.startswith(".varshift-")]  # no temp left

    npy = _run(tmp / "model.keras", "--data", tmp / "data.npy")
    assert npy.exit_code == 0 and f"{expected['ratio'][0]:.6g}" in npy.output


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: ["corrupt.keras"], "cannot read model file"),
    (lambda tmp: ["missing.keras"], "does not exist"),
    (lambda tmp: ["model.keras", "--data", tmp / "data.npz", "--key", "images"], "no array 'images'"),
    (lambda tmp: ["model.keras", "--data", tmp / "wrong.npy"], "samples of shape (5,)"),
    (lambda tmp: ["model.keras", "--recalibrate", tmp / "out.keras"], "--recalibrate needs --data"),
    (lambda tmp: ["model.keras", "--data", tmp / "corrupt.keras"], "cannot read data file"),
    (lambda tmp: ["nobn.keras"], "no BatchNormalization"),
])
def test_errors_are_one_line_exit_2(saved, keras, make, message):
    from varshift.models import dropout_model

    tmp, _, _ = saved
    (tmp / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    np.save(tmp / "wrong.npy", np.ones((10, 5), "float32"))
    dropout_model(8, 0.5).save(tmp / "nobn.keras")
    args = make(tmp)
    if not str(args[0]).startswith("/"):
        args[0] = tmp / args[0]
    result = _run(*args)
    assert result.exit_code == 2, result.output
    err = result.output.strip()
    assert err.startswith("varshift: error:") and len(err.splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in result.output


def test_help_lists_audit():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "audit" in result.output
