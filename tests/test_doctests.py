"""The examples in the public API's docstrings run and print what they show (doctest).

Every module of ``varshift/`` that holds an example is listed here, so a new example is run
(a module with ``>>>`` lines that is not listed fails the last test); examples that need a
Keras backend run on the backend of the session, those of :mod:`varshift.torch` where PyTorch
is installed.
"""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: modules whose examples need no Keras backend
PURE = ("varshift._inputs", "varshift._routes", "varshift.noise", "varshift.seeds",
        "varshift.theory", "varshift.data", "varshift.data.digits", "varshift.data.subset",
        "varshift.files")
#: modules whose examples build or run Keras models
KERAS = ("varshift.nets", "varshift.nets._blocks", "varshift.layers", "varshift.callbacks",
         "varshift.train.optim",
         "varshift.diagnostics.audit", "varshift.diagnostics.correct",
         "varshift.diagnostics.recalibrate", "varshift.diagnostics.shift")
#: modules whose examples use PyTorch models
TORCH = ("varshift.torch.audit", "varshift.torch.recalibrate", "varshift.torch.shift")
#: modules whose only examples are marked ``+SKIP``: they need downloaded data or a training run
SKIPPED = ("varshift.data.cifar", "varshift.data.fashion_mnist", "varshift.data.pipeline",
           "varshift.train.trainer")


def run_examples(name):
    """``(failed, attempted)`` of the examples in module ``name``'s docstrings."""
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.append)
    failed, attempted = runner.summarize(verbose=False)
    return failed, attempted, "".join(report)


def _check(name):
    failed, attempted, report = run_examples(name)
    assert attempted > 0, f"{name} has no example that runs"
    assert failed == 0, f"{failed} of {attempted} examples of {name} fail:\n{report}"


@pytest.mark.parametrize("name", PURE)
def test_examples_without_a_backend(name):
    _check(name)


@pytest.mark.parametrize("name", KERAS)
def test_examples_of_keras_models(keras, name):
    _check(name)


@pytest.mark.parametrize("name", TORCH)
def test_examples_of_pytorch_models(name):
    pytest.importorskip("torch")
    _check(name)


def test_a_wrong_example_is_a_failure():
    """The runner reports a wrong output (so the tests above can fail)."""
    test = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner()
    runner.run(test, out=lambda text: None)
    assert runner.summarize(verbose=False) == (1, 1)


def test_every_module_with_examples_is_listed():
    with_examples = set()
    for path in (ROOT / "varshift").rglob("*.py"):
        if ">>> " in path.read_text(encoding="utf-8"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            with_examples.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert with_examples == set(PURE + KERAS + TORCH + SKIPPED)
