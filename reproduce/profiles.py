"""The three profiles of the reproduction: ``smoke``, ``quick`` and ``paper``.

A profile fixes everything a target needs to plan its work: the data set, the networks and
their sizes, the training recipe, the grid of drop ratios and the seeds. Targets read only
the profile, so the same code produces the CI smoke test, the 30-minute CPU version and the
paper-scale GPU version.

Run budget of ``quick`` (2 shared CPU cores, < 30 min): see :data:`QUICK_BUDGET_NOTE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from varshift.nets.registry import NETWORKS as _REGISTRY

__all__ = ["Profile", "PROFILES", "get_profile", "NETWORKS", "PAPER_NAMES"]

#: the networks of ``varshift.nets.NETWORKS``, in the paper's order
NETWORKS = tuple(_REGISTRY)
#: network name -> the name the paper's tables use (from ``varshift.nets.NETWORKS``)
PAPER_NAMES = {name: net.paper_name for name, net in _REGISTRY.items()}


@dataclass(frozen=True)
class Profile:
    """Everything that differs between ``smoke``, ``quick`` and ``paper``.

    Attributes:
        name: profile name.
        description: one line for ``list`` and the report.
        data: data set names for ``varshift.data.load`` (the first is the main one).
        networks: networks trained by the training targets.
        size: ``"small"`` for ``varshift.nets.SMALL_SIZES[name]`` or ``"paper"`` for the
            builder's defaults (the paper's sizes).
        recipe_kind: ``"cpu"`` or ``"paper"``: the base recipe of ``varshift.train``.
        recipe: overrides of the training recipe (``epochs``, ``batch_size``, ``lr``,
            ``lr_drops``, ...).
        subset: ``{"n_train": N, "n_test": M}``: train and test on a fixed, class-stratified
            subset of the data set (``varshift.data.take_subset``), or ``None`` for all of it.
        eval_samples: training images of the per-epoch inference-mode accuracy (Fig. 5) and
            of the final shift measurement / BN adjustment (``None``: all).
        seeds: default number of seeds for the key settings (``--seeds`` overrides).
        fig4_rates: drop ratios of Fig. 4 (0 is the shared no-dropout baseline).
        seeded: ``(placement, rate)`` settings trained with every seed besides the no-dropout
            baseline (always every seed); the others use the first seed only. ``None``: every
            setting gets every seed.
        table4_rates: drop ratios of the single dropout after all BN (Table 4).
        table6_betas: Uout's beta in position b (Table 6).
        table_networks: networks of Tables 4 and 6 (the costliest grids).
        mc_samples: Monte Carlo samples of the theory targets.
        keras_samples: samples streamed through the Keras models of the theory targets.
        jobs: default number of parallel training processes (``--jobs`` overrides); tiny
            networks use 2 cores better as 2 single-threaded processes than as one.
        budget_note: how the profile's time budget was planned.
    """

    name: str
    description: str
    data: tuple = ("digits",)
    networks: tuple = NETWORKS
    size: str = "small"
    recipe_kind: str = "cpu"
    recipe: dict = field(default_factory=dict)
    subset: dict | None = None
    eval_samples: int | None = None
    seeds: int = 1
    fig4_rates: tuple = (0.0, 0.1, 0.3, 0.5, 0.7)
    seeded: tuple | None = (("a", 0.5),)
    table4_rates: tuple = (0.1, 0.2, 0.3, 0.5)
    table6_betas: tuple = (0.1, 0.2, 0.3, 0.5)
    table_networks: tuple = NETWORKS
    mc_samples: int = 200_000
    keras_samples: int = 20_000
    jobs: int = 1
    budget_note: str = ""

    def with_seeds(self, k):
        """A copy with ``k`` seeds (the ``--seeds`` option)."""
        return replace(self, seeds=int(k))

    def seed_list(self):
        """The seeds ``0 .. seeds-1``."""
        return list(range(self.seeds))

    def seeds_for(self, placement, rate):
        """The seeds of one setting: all for the baseline and :attr:`seeded`, else the first."""
        if placement == "none" or float(rate) == 0.0 or self.seeded is None \
                or (placement, float(rate)) in self.seeded:
            return self.seed_list()
        return self.seed_list()[:1]


QUICK_BUDGET_NOTE = (
    "quick: small networks (varshift.nets.SMALL_SIZES) trained for 4 epochs on a fixed "
    "class-stratified subset of Fashion-MNIST (4,000 training, 2,000 test images); 3 seeds for "
    "the settings whose errors the verdicts compare (no dropout, dropout-(a) 0.5), one seed "
    "for the other drop ratios, for dropout-(b) and for Tables 4 and 6 (PreResNet and WRN, "
    "two strengths each). 60 runs x 4 epochs x 4,000 images. Measured at 5,000 images, one "
    "thread: about 22 CPU-seconds per WRN run, 45-50 for PreResNet and DenseNet, 90 for "
    "ResNeXt (grouped convolutions are slow on CPU), training about 60% of it; about 2,700 "
    "CPU-seconds in all at 4,000 images, i.e. about 23 minutes as 2 parallel single-threaded "
    "processes on 2 unshared cores."
)

PROFILES = {
    "smoke": Profile(
        name="smoke",
        description="every target end to end, tiny networks, scikit-learn digits, 1 seed "
                    "(< 3 min on 2 cores; CI)",
        data=("digits",),
        networks=NETWORKS,
        size="small",
        recipe_kind="cpu",
        recipe={"epochs": 1, "batch_size": 64, "lr_drops": []},
        seeds=1,
        fig4_rates=(0.0, 0.5),
        table4_rates=(0.5,),
        table6_betas=(0.5,),
        table_networks=("preresnet",),
        mc_samples=20_000,
        keras_samples=4_096,
        jobs=2,
        budget_note="smoke: tests the plumbing, not the paper; numbers are meaningless.",
    ),
    "quick": Profile(
        name="quick",
        description="small versions of the four networks on Fashion-MNIST, 3 seeds for the "
                    "key settings (CPU, < 30 min on 2 cores)",
        data=("fashion_mnist",),
        networks=NETWORKS,
        size="small",
        recipe_kind="cpu",
        recipe={"epochs": 4, "batch_size": 64, "lr_drops": [2, 3]},
        subset={"n_train": 4000, "n_test": 2000},
        eval_samples=1000,
        seeds=3,
        fig4_rates=(0.0, 0.1, 0.3, 0.5, 0.7),
        seeded=(("a", 0.5),),
        table4_rates=(0.2, 0.5),
        table6_betas=(0.2, 0.5),
        table_networks=("preresnet", "wrn"),
        mc_samples=200_000,
        keras_samples=20_000,
        jobs=2,
        budget_note=QUICK_BUDGET_NOTE,
    ),
    "paper": Profile(
        name="paper",
        description="the paper's networks and recipes on CIFAR-10 and CIFAR-100, 5 seeds "
                    "(GPUs; days of compute)",
        data=("cifar10", "cifar100"),
        networks=NETWORKS,
        size="paper",
        recipe_kind="paper",
        recipe={},
        eval_samples=10000,
        seeds=5,
        fig4_rates=(0.0, 0.1, 0.3, 0.5, 0.7),
        seeded=None,
        table4_rates=(0.1, 0.2, 0.3, 0.5),
        table6_betas=(0.1, 0.2, 0.3, 0.5),
        table_networks=NETWORKS,
        mc_samples=1_000_000,
        keras_samples=100_000,
        budget_note="paper: the paper's full setup; meant for GPUs, not run on this machine.",
    ),
}


def get_profile(name):
    """The profile called ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}"
        ) from None
