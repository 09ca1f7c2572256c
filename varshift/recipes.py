r"""SGD training recipes: the learning-rate schedule (step, or cosine with linear warm-up),
momentum and L2 weight decay.

Each network's ``"paper"`` recipe (bearpaw/pytorch-classification, the code the paper points
to) and ``"cpu"`` recipe (the same schedule shape, a few epochs) are written in its entry of
:data:`varshift.nets.NETWORKS`; :func:`varshift.nets.recipe_for` reads them. This module sits
below both the networks and :mod:`varshift.train` (which re-exports :class:`Recipe`) and imports
neither.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["Recipe", "RECIPE_KINDS", "SCHEDULES"]

#: the recipe kinds every network entry has
RECIPE_KINDS = ("paper", "cpu")
#: the learning-rate schedules of :class:`Recipe`
SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class Recipe:
    r"""An SGD training recipe: learning-rate schedule, momentum, L2 weight decay.

    Two schedules:

    - ``"step"`` (the paper's): epoch :math:`e` uses
      :math:`\eta_e = \eta_0 f^{\#\{t \in \text{lr\_drops} : t \le e\}}`, constant within
      the epoch;
    - ``"cosine"``: per SGD step :math:`s` of :math:`T = \text{epochs} \cdot S` (:math:`S`
      steps per epoch), a linear warm-up over the first :math:`W = \text{round}(
      \text{warmup\_epochs} \cdot S)` steps, then a half cosine to zero:
      :math:`\eta_s = \eta_0 (s + 1) / W` for :math:`s < W`, else
      :math:`\eta_s = \tfrac{1}{2} \eta_0 (1 + \cos(\pi (s - W) / (T - W)))`.
      ``lr_drops`` and ``drop_factor`` are not used.

    Args:
        epochs: number of epochs.
        batch_size: images per step.
        lr: initial learning rate :math:`\eta_0`.
        momentum: SGD momentum :math:`\mu` (PyTorch form).
        lr_drops: epochs (0-based count of finished epochs) at which the rate is multiplied by
            ``drop_factor``: epoch ``e`` uses :math:`\eta_0 \cdot f^{\#\{t \in drops : t \le e\}}`.
        drop_factor: multiplier :math:`f` at each drop.
        weight_decay: coupled L2 coefficient :math:`\lambda` (PyTorch's ``weight_decay``).
    """

    epochs: int
    batch_size: int
    lr: float = 0.1
    momentum: float = 0.9
    lr_drops: tuple = ()
    drop_factor: float = 0.1
    weight_decay: float = 1e-4
    schedule: str = "step"
    warmup_epochs: float = 0.0

    def __post_init__(self):
        """Every field checked when a recipe is made (or changed by :meth:`replace`)."""
        from varshift import _validate

        _validate.check_positive_int("epochs", self.epochs)
        _validate.check_positive_int("batch_size", self.batch_size)
        _validate.check_finite_positive("lr", self.lr)
        _validate.check_in_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _validate.check_finite_positive("drop_factor", self.drop_factor)
        _validate.check_finite_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not isinstance(self.lr_drops, (tuple, list)):
            raise _validate.ArgumentTypeError("Argument `lr_drops` must be a tuple of epochs; "
                                              f"received lr_drops={self.lr_drops!r}.")
        for i, epoch in enumerate(self.lr_drops):
            _validate.check_positive_int(f"lr_drops[{i}]", epoch, minimum=0)
        _validate.check_choice("schedule", self.schedule, SCHEDULES)
        w = self.warmup_epochs
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise _validate.ArgumentTypeError(
                "Argument `warmup_epochs` must be a finite number in [0, epochs="
                f"{self.epochs}); received warmup_epochs={w!r} of type {type(w).__name__}.")
        if not math.isfinite(w) or not 0 <= w < max(self.epochs, 1):
            raise ValueError("Argument `warmup_epochs` must be a finite number in [0, epochs="
                             f"{self.epochs}); received warmup_epochs={w!r}.")

    def lr_at(self, epoch: int, steps_per_epoch: int = 1) -> float:
        """Learning rate at the first step of (0-based) ``epoch`` (the step schedule's rate
        of the whole epoch)."""
        if self.schedule == "cosine":
            return self.lr_at_step(epoch * steps_per_epoch, steps_per_epoch)
        drops = sum(1 for t in self.lr_drops if t <= epoch)
        return float(self.lr * self.drop_factor**drops)

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """:math:`W`: the cosine schedule's warm-up steps."""
        return int(round(self.warmup_epochs * steps_per_epoch))

    def lr_at_step(self, step: int, steps_per_epoch: int) -> float:
        """Learning rate of (0-based) SGD ``step`` with ``steps_per_epoch`` steps an epoch."""
        if self.schedule == "step":
            return self.lr_at(int(step) // int(steps_per_epoch))
        warm = self.warmup_steps(steps_per_epoch)
        total = self.epochs * steps_per_epoch
        if step < warm:
            return float(self.lr * (step + 1) / warm)
        frac = min(1.0, (step - warm) / max(total - warm, 1))
        return float(0.5 * self.lr * (1.0 + math.cos(math.pi * frac)))

    def replace(self, **overrides) -> Recipe:
        """A copy with some fields changed; unknown fields raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(
                f"Unknown recipe field(s) {bad}; expected some of {sorted(names)}.")
        if "lr_drops" in overrides and isinstance(overrides["lr_drops"], (tuple, list)):
            overrides["lr_drops"] = tuple(
                int(t) if isinstance(t, float) and t.is_integer() else t
                for t in overrides["lr_drops"])
        return dataclasses.replace(self, **overrides)
