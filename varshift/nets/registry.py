"""The network registry: one entry per network, every fact about it written once.

An entry (:class:`Network`) names the builder function and holds the paper's name, the paper's
size (Table 2), a small CPU size, the paper's training recipe and a CPU recipe: facts about the
network, nothing about how a reproduction shows or schedules it. :func:`varshift.nets.build`,
:mod:`varshift.train` and the reproduction all read :data:`NETWORKS`.

Adding a network: write ``varshift/nets/<name>.py`` with a builder
``f(num_classes, placement, noise, rate, *, input_shape, seed, <size keywords>, name,
**builder_kwargs)`` that places its noise layers with :class:`varshift.nets.Builder`,
and add its :class:`Network` line below (see ``docs/developers.md``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from varshift.recipes import RECIPE_KINDS, Recipe

__all__ = ["Network", "NETWORKS"]


@dataclass(frozen=True)
class Network:
    """One network of :mod:`varshift.nets`.

    Args:
        name: the name :func:`varshift.nets.build` takes.
        builder: ``"module:function"`` of the builder (imported on first use).
        paper_name: the name in the paper's tables.
        paper_size: the builder's size keywords at the paper's size (Table 2).
        small_size: size keywords of a tiny variant for CPU runs and tests.
        paper_recipe: the paper's (bearpaw's) training recipe.
        cpu_recipe: a few-epoch CPU recipe with the same schedule shape.
    """

    name: str
    builder: str
    paper_name: str
    paper_size: dict = field(hash=False)
    small_size: dict = field(hash=False)
    paper_recipe: Recipe
    cpu_recipe: Recipe

    def builder_function(self):
        """The builder function (imports its module)."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)


# Recipe(epochs, batch_size, lr, momentum, lr_drops, drop_factor, weight_decay).
# Paper recipes: bearpaw/pytorch-classification defaults, as the paper's reference page lists
# them. CPU recipes: the same schedule shape (drops at 1/2 and 3/4), few epochs, small batches.
# Costs: CPU-seconds per small-network run measured for the quick profile (WRN about 22,
# PreResNet about 45, DenseNet-BC about 50, ResNeXt about 90), relative to WRN.
NETWORKS = {n.name: n for n in (
    Network(
        "preresnet", "varshift.nets.preresnet:preresnet", "PreResNet",
        paper_size={"depth": 164},
        small_size={"depth": 20, "width": 8},  # bottleneck, 2 blocks per stage, 19 BN layers
        paper_recipe=Recipe(164, 128, 0.1, 0.9, (81, 122), 0.1, 1e-4),
        cpu_recipe=Recipe(12, 64, 0.05, 0.9, (6, 9), 0.1, 1e-4)),
    Network(
        "resnext29", "varshift.nets.resnext:resnext29", "ResNeXt",
        paper_size={"depth": 29, "cardinality": 8, "base_width": 64, "widen_factor": 4},
        small_size={"depth": 11, "cardinality": 2, "base_width": 4, "widen_factor": 2,
                    "stem_width": 16},  # 1 block per stage, 13 BN layers
        paper_recipe=Recipe(300, 128, 0.1, 0.9, (150, 225), 0.1, 5e-4),
        cpu_recipe=Recipe(12, 64, 0.05, 0.9, (6, 9), 0.1, 5e-4)),
    Network(
        "wrn", "varshift.nets.wrn:wrn", "WRN",
        paper_size={"depth": 28, "widen_factor": 10},
        small_size={"depth": 10, "widen_factor": 2, "width": 8},  # WRN-10-2 at base 8, 7 BN
        paper_recipe=Recipe(200, 128, 0.1, 0.9, (60, 120, 160), 0.2, 5e-4),
        cpu_recipe=Recipe(12, 64, 0.05, 0.9, (6, 9), 0.2, 5e-4)),
    Network(
        "densenet_bc", "varshift.nets.densenet:densenet_bc", "DenseNet",
        paper_size={"depth": 100, "growth_rate": 12},
        small_size={"depth": 16, "growth_rate": 8},  # 2 layers per stage, 15 BN layers
        paper_recipe=Recipe(300, 64, 0.1, 0.9, (150, 225), 0.1, 1e-4),
        cpu_recipe=Recipe(12, 64, 0.05, 0.9, (6, 9), 0.1, 1e-4)),
)}


def recipes(kind="paper") -> dict:
    """``{network name: Recipe}`` of one recipe kind (``"paper"`` or ``"cpu"``)."""
    _check_kind(kind)
    return {name: getattr(net, f"{kind}_recipe") for name, net in NETWORKS.items()}


def _check_kind(kind):
    if kind not in RECIPE_KINDS:
        raise ValueError(f"Argument `kind` must be one of {', '.join(map(repr, RECIPE_KINDS))}; "
                         f"received kind={kind!r}.")


def recipe_for(net: str, kind: str = "paper", **overrides) -> Recipe:
    """The ``"paper"`` or ``"cpu"`` recipe of network ``net``, with ``overrides`` applied."""
    _check_kind(kind)
    if net not in NETWORKS:
        raise ValueError(
            f"Argument `net` must be one of {sorted(NETWORKS)}; received net={net!r}.")
    return getattr(NETWORKS[net], f"{kind}_recipe").replace(**overrides)
