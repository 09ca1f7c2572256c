"""The declared argument contracts (``varshift.contracts``), tried automatically.

For every declared function, class and command, and every constraint of every argument, the
constraint's own violating values are passed (all other arguments valid): the call raises
before any work, on one line that names the argument, with ``TypeError`` for the wrong kind
of object and ``ValueError`` (not ``TypeError``) for the right kind with a wrong value; a
command exits 2 with one line and no traceback. Declarations are checked against the
signatures (every argument declared, every default valid) and the docs' table.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from varshift import contracts as C

ROOT = Path(__file__).resolve().parents[1]
DECLARED = C.contracts()

#: arguments that are deliberately not declared: pass-through objects with no contract of
#: their own (a Keras initializer, base-layer keywords)
UNDECLARED = {"kernel_initializer", "kwargs", "self", "size"}


def _python_contracts():
    return {q: c for q, c in DECLARED.items() if not c.cli}


def _cli_contracts():
    return {q: c for q, c in DECLARED.items() if c.cli}


# ------------------------------------------------------------------------ the declarations

@pytest.mark.parametrize("qualname", sorted(DECLARED))
def test_every_argument_is_declared_and_every_default_is_valid(qualname):
    declared = DECLARED[qualname]
    params = declared.signature.parameters
    missing = [n for n, p in params.items() if n not in declared.params
               and n not in UNDECLARED and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert missing == [], f"{qualname}: declare {missing}"
    for name, constraint in declared.params.items():
        if name in params and params[name].default is not inspect.Parameter.empty:
            constraint.check(declared.label(name), params[name].default)


def test_the_public_api_is_declared():
    import varshift
    from varshift import models, nets, theory
    from varshift.data import pipeline
    from varshift.demo import run_demo

    public = [getattr(varshift, n) for n in ("audit", "measure_shift", "recalibrate_bn",
                                             "correct_direct", "converged_bn_statistics",
                                             "Uout", "RecalibrateBN")]
    public += [getattr(theory, n) for n in theory.__all__]
    public += [getattr(models, n) for n in models.__all__]
    public += [nets.build, nets.small, pipeline.make_dataset, run_demo]
    undeclared = [obj.__qualname__ for obj in public if not hasattr(obj, "__contract__")
                  and not hasattr(getattr(obj, "__init__", None), "__contract__")]
    assert undeclared == []
    commands = {c.qualname.rsplit(".", 1)[-1] for c in _cli_contracts().values()}
    assert commands == {"theory_command", "demo_command", "audit_command"}


def test_the_docs_table_is_generated_from_the_declarations():
    table = C.contract_table()
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == sum(len(c.params) for c in DECLARED.values())
    assert "| `varshift.theory.shift_ratio` | `rate` | finite real number or array of real " \
           "numbers in [0.0, 1.0) (Keras' drop ratio) |" in rows
    assert "| `varshift audit` | `--recalibrate` |" in table
    assert "{varshift-contracts}" in (ROOT / "docs" / "api.md").read_text()


def test_the_torch_api_is_declared_and_in_the_table():
    pytest.importorskip("torch")
    import varshift.torch as vt

    undeclared = [n for n in vt.__all__ if not hasattr(getattr(vt, n), "__contract__")
                  and not hasattr(getattr(getattr(vt, n), "__init__", None), "__contract__")]
    assert undeclared == []
    table = C.contract_table()
    assert "| `varshift.torch.measure_shift` | `model` | a PyTorch model (torch.nn.Module)" in table
    assert "| `varshift.torch.recalibrate_bn` | `mode` | one of `'one_pass'`, `'sequential'` |" \
        in table.splitlines()
    assert "| `varshift.torch.audit` | `example_inputs` |" in table


def test_a_module_whose_optional_package_is_missing_is_left_out(monkeypatch):
    import sys

    names = [m for m in sys.modules if m == "varshift.torch" or m.startswith("varshift.torch.")]
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch: ModuleNotFoundError
    monkeypatch.setattr(C, "REGISTRY", {q: c for q, c in C.REGISTRY.items()
                                        if not q.startswith("varshift.torch.")})
    found = C.contracts()
    assert "varshift.diagnostics.shift.measure_shift" in found
    assert not any(q.startswith("varshift.torch.") for q in found)
    assert "varshift.torch" in C.CONTRACT_MODULES
    # a missing package that is not the module's optional one is an error
    monkeypatch.setitem(C.OPTIONAL_REQUIRES, "varshift.torch", "another_package")
    with pytest.raises(ModuleNotFoundError, match="torch"):
        C.contracts()


# --------------------------------------------------------------------- valid base arguments

@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """A valid value for every required argument, by (callable, argument) or constraint."""
    from varshift.models import dropout_bn_model

    model = dropout_bn_model(5, 0.5, seed=1)
    x = np.random.default_rng(0).normal(5.0, 2.0, (32, 5)).astype("float32")
    d = tmp_path_factory.mktemp("contracts")
    model.save(d / "m.keras")
    np.save(d / "x.npy", x)
    out = {"model": model, "x": x, "dir": d,
           "images": np.zeros((4, 2, 2, 1), "uint8"), "labels": np.zeros(4, "int64")}
    if any(q.startswith("varshift.torch.") for q in DECLARED):
        import torch
        from torch import nn

        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.BatchNorm1d(8)).eval()
        out["torch"] = {"model": net, "data": torch.from_numpy(x),
                        "example_inputs": torch.from_numpy(x[:4])}
        out["torch_state"] = {k: v.clone() for k, v in net.state_dict().items()}
    return out


def _valid(declared, name, bases):
    """A valid value of the required argument ``name`` of ``declared``."""
    if declared.qualname.startswith("varshift.torch.") and name in bases["torch"]:
        return bases["torch"][name]
    constraint = declared.params[name]
    if isinstance(constraint, C.Instance) and "keras:Model" in constraint.targets:
        return bases["model"]
    if isinstance(constraint, C.Data):
        return bases["x"]
    if isinstance(constraint, C.Array) and constraint.ndim == (4,):
        return bases["images"]
    if isinstance(constraint, C.Array):
        return np.ones((3, 2))
    return constraint.example()


def _call(declared, bases, name, value):
    params = declared.signature.parameters
    kwargs = {}
    for pname, p in params.items():
        if p.default is inspect.Parameter.empty and pname in declared.params:
            kwargs[pname] = _valid(declared, pname, bases)
    if declared.qualname.endswith("make_dataset"):
        kwargs.update(y=bases["labels"], batch_size=2, training=False)
    kwargs[name] = value
    kwargs.pop("self", None)
    return _callable(declared)(**kwargs)


def _callable(declared):
    """The declared function, or the class whose ``__init__`` was declared."""
    import importlib

    func = declared.func
    if not func.__qualname__.endswith(".__init__"):
        return func
    obj = importlib.import_module(func.__module__)
    for part in func.__qualname__.split(".")[:-1]:
        obj = getattr(obj, part)
    return obj


def _python_cases():
    tmp = Path("/tmp/varshift-contract-violations")  # paths named, never created
    return [pytest.param(q, n, v, id=f"{q.removeprefix('varshift.')}-{n}-{v.label}")
            for q, c in sorted(_python_contracts().items()) for n, k in c.params.items()
            for v in k.violations(tmp)]


def _one_line(text):
    assert "\n" not in text.strip(), text
    return text


@pytest.mark.parametrize(("qualname", "name", "violation"), _python_cases())
def test_every_declared_constraint_refuses_its_violations(bases, qualname, name, violation):
    declared = DECLARED[qualname]
    with pytest.raises((TypeError, ValueError)) as err:
        _call(declared, bases, name, violation.value)
    text = _one_line(str(err.value))
    assert f"`{name}`" in text, text
    if qualname.startswith("varshift.torch."):  # the model is untouched, and its mode too
        net = bases["torch"]["model"]
        assert not net.training
        assert all(v.equal(bases["torch_state"][k]) for k, v in net.state_dict().items())
    if violation.error is C.ArgumentTypeError:
        assert isinstance(err.value, TypeError), (type(err.value), text)
    else:
        assert not isinstance(err.value, TypeError), (type(err.value), text)
    value = violation.value
    if isinstance(value, (int, float, str)) and not isinstance(value, bool) and len(str(value)) < 40:
        assert repr(value) in text or str(value) in text or f"{value:g}" in text \
            if not isinstance(value, str) else repr(value) in text or value in text, text


# ------------------------------------------------------------------------------ commands

def _argv(declared, bases, name, value):
    d = bases["dir"]
    base = {"theory_command": ["theory", "--rate", "0.2"], "demo_command": ["demo"],
            "audit_command": ["audit", str(d / "m.keras"), "--data", str(d / "x.npy")]}
    argv = list(base[declared.qualname.rsplit(".", 1)[-1]])
    label = declared.label(name)
    if label == "MODEL.keras":
        argv[1] = str(value)
        return argv, label
    if label in argv:
        i = argv.index(label)
        del argv[i:i + 2]
    if name == "mode":  # --mode applies to --recalibrate
        argv += ["--recalibrate", str(d / "out.keras")]
    return [*argv, label, str(value)], label


def _cli_cases():
    tmp = Path("/tmp/varshift-contract-violations")
    return [pytest.param(q, n, v, id=f"{q.rsplit('.', 1)[-1]}-{n}-{v.label}")
            for q, c in sorted(_cli_contracts().items()) for n, k in c.params.items()
            if not isinstance(k, C.Boolean)  # a flag takes no value
            for v in k.violations(tmp) if v.value is not None
            and not (isinstance(v.value, str) and _numeric(k))]  # "3" is a number on a command line


def _numeric(constraint):
    inner = constraint.inner if isinstance(constraint, C.Optional) else constraint
    return isinstance(inner, (C.Integer, C.Real))


@pytest.mark.parametrize(("qualname", "name", "violation"), _cli_cases())
def test_every_declared_option_refuses_its_violations(bases, qualname, name, violation):
    from varshift.cli import cli

    declared = DECLARED[qualname]
    argv, label = _argv(declared, bases, name, violation.value)
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, (argv, result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert label in lines[0], lines[0]
    assert result.stdout == ""
    assert not (bases["dir"] / "out.keras").exists()


# -------------------------------------------------------------------- the mechanism itself

def test_numbers_numpy_scalars_fractions_and_booleans():
    from fractions import Fraction

    assert C.Integer(1).check("n", np.int64(10)) == 10
    assert type(C.Integer(1).check("n", np.int64(10))) is int
    assert C.Real(0.0, 1.0).check("rate", Fraction(1, 5)) == 0.2
    assert C.Real(0.0, 1.0).check("rate", np.float32(0.25)) == 0.25
    for value in (True, np.bool_(False)):
        with pytest.raises(TypeError, match="`rate`"):
            C.Real(0.0, 1.0).check("rate", value)
        with pytest.raises(TypeError, match="`n`"):
            C.Integer(1).check("n", value)
    # open and closed ends
    assert C.Real(0.0, 1.0, closed="both").check("r", 1.0) == 1.0
    for closed, value in (("left", 1.0), ("right", 0.0), ("neither", 0.0)):
        with pytest.raises(ValueError, match=r"`r` must be in [\[(]0\.0, 1\.0[)\]]"):
            C.Real(0.0, 1.0, closed=closed).check("r", value)


def test_a_declared_call_converts_what_the_body_receives():
    seen = {}

    @C.contract(n=C.Integer(1), rate=C.Real(0.0, 1.0), shape=C.Shape(2))
    def f(n, rate, shape=(1, 1), **extra):
        seen.update(n=n, rate=rate, shape=shape, extra=extra)

    from fractions import Fraction

    f(np.int32(3), Fraction(1, 4), shape=[np.int64(2), 3])
    assert seen["n"] == 3 and type(seen["n"]) is int and seen["rate"] == 0.25
    assert seen["shape"] == (2, 3)
    with pytest.raises(ValueError, match=r"`shape`.*rank 3"):
        f(1, 0.5, shape=(1, 2, 3))
    del C.REGISTRY[f.__contract__.qualname]


def test_path_kinds(tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, words in ((fifo, "not a regular file"), ("/dev/null", "not a regular file"),
                        (tmp_path, "is a folder"), (tmp_path / "no.npy", "does not exist"),
                        (tmp_path / ("n" * 266), "266 characters")):
        with pytest.raises(ValueError, match="`--data`") as err:
            C.InputPath("file").check("--data", str(path))
        assert words in str(err.value)
    good = tmp_path / "x.npy"
    good.write_bytes(b"x")
    assert C.InputPath("file").check("--data", str(good)) == str(good)
