"""Train the paper's CIFAR networks with the reference recipes; one run feeds every artefact.

The package in parts:

- :class:`Recipe` (``varshift.recipes``, below the networks) and :func:`recipe_for`
  (:mod:`varshift.nets`: each network's ``"paper"`` and ``"cpu"`` recipes are written in its
  :data:`varshift.nets.NETWORKS` entry);
- ``varshift.train.optim``: :class:`CoupledSGD` (PyTorch's SGD with coupled L2) and
  :func:`compile_model`;
- ``varshift.train.config``: :class:`RunConfig`, everything that defines a run;
- ``varshift.train.folder``: ``RunFolder``, a run's record, progress and checkpoint;
- ``varshift.train.trainer``: :func:`run` as named steps (prepare the data, build or
  resume, train the epochs with checkpoints, final evaluation, the evaluation hooks);
- ``varshift.train.evaluation``: evaluation hooks, what they see (:class:`EvaluationContext`)
  and their helpers (:func:`frozen_state`, :func:`reseed_noise`);
- :func:`derive_seed` (:mod:`varshift.seeds`): every seed a run derives from its own.

Importing this package does not import Keras or any backend; :func:`run`, :class:`CoupledSGD`,
:func:`compile_model` load it on first use.
"""

from __future__ import annotations

import importlib

from varshift._io import atomic_write_json
from varshift.recipes import Recipe
from varshift.seeds import derive_seed
from varshift.train.config import RunConfig
from varshift.train.evaluation import EvaluationContext, frozen_state, reseed_noise

__all__ = ["Recipe", "RunConfig", "RECIPES", "CPU_RECIPES", "recipe_for", "recipes", "run",
           "CoupledSGD", "compile_model", "derive_seed", "atomic_write_json",
           "EvaluationContext", "frozen_state", "reseed_noise"]

_LAZY = {"run": "varshift.train.trainer",
         "CoupledSGD": "varshift.train.optim", "compile_model": "varshift.train.optim",
         # the recipe look-ups read the network registry (imported on first use)
         "recipe_for": "varshift.nets.registry", "recipes": "varshift.nets.registry"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "RECIPES":  # derived views of the network registry
        return __getattr__("recipes")("paper")
    if name == "CPU_RECIPES":
        return __getattr__("recipes")("cpu")
    raise AttributeError(f"module 'varshift.train' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
