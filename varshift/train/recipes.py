r"""SGD training recipes: the step learning-rate schedule, momentum and L2 weight decay.

Each network's ``"paper"`` recipe (bearpaw/pytorch-classification, the code the paper points
to) and ``"cpu"`` recipe (the same schedule shape, a few epochs) are written in its entry of
:data:`varshift.nets.NETWORKS`; :func:`varshift.nets.recipe_for` reads them (this module
sits below the networks, so it does not import them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Recipe", "RECIPE_KINDS"]  # recipe_for/recipes: varshift.nets (they read NETWORKS)

#: the recipe kinds every network entry has
RECIPE_KINDS = ("paper", "cpu")


@dataclass(frozen=True)
class Recipe:
    """An SGD training recipe: step learning-rate schedule, momentum, L2 weight decay.

    Args:
        epochs: number of epochs.
        batch_size: images per step.
        lr: initial learning rate :math:`\\eta_0`.
        momentum: SGD momentum :math:`\\mu` (PyTorch form).
        lr_drops: epochs (0-based count of finished epochs) at which the rate is multiplied by
            ``drop_factor``: epoch ``e`` uses :math:`\\eta_0 \\cdot f^{\\#\\{t \\in drops : t \\le e\\}}`.
        drop_factor: multiplier :math:`f` at each drop.
        weight_decay: coupled L2 coefficient :math:`\\lambda` (PyTorch's ``weight_decay``).
    """

    epochs: int
    batch_size: int
    lr: float = 0.1
    momentum: float = 0.9
    lr_drops: tuple = ()
    drop_factor: float = 0.1
    weight_decay: float = 1e-4

    def lr_at(self, epoch: int) -> float:
        """Learning rate of (0-based) ``epoch``."""
        drops = sum(1 for t in self.lr_drops if t <= epoch)
        return float(self.lr * self.drop_factor**drops)

    def replace(self, **overrides) -> Recipe:
        """A copy with some fields changed; unknown fields raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(
                f"Unknown recipe field(s) {bad}; expected some of {sorted(names)}.")
        if "lr_drops" in overrides:
            overrides["lr_drops"] = tuple(int(t) for t in overrides["lr_drops"])
        return dataclasses.replace(self, **overrides)
