"""The profiles of the reproduction: ``smoke``, ``quick``, ``paper``, ``gpu`` and ``pilot``.

A profile fixes everything a target needs to plan its work: the data set, the networks and
their sizes, the training recipe, the grid of drop ratios and the seeds. Targets read only
the profile, so the same code produces the CI smoke test, the 30-minute CPU version and the
paper-scale GPU version.

Run budget of ``quick`` (2 CPU cores, 30 min from a bare clone):
see :data:`QUICK_BUDGET_NOTE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from varshift.nets.registry import NETWORKS as _REGISTRY

__all__ = ["Profile", "PROFILES", "get_profile", "NETWORKS", "PAPER_NAMES", "QUICK_SEEDS",
           "PILOT_NOTE", "KEY_TARGETS"]

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
        size: ``"small"`` for ``varshift.nets.SMALL_SIZES[name]``, ``"paper"`` for the
            builder's defaults (the paper's sizes), or ``{name: size keywords}`` per network.
        recipe_kind: ``"cpu"`` or ``"paper"``: the base recipe of ``varshift.train``.
        recipe: overrides of the training recipe (``epochs``, ``batch_size``, ``lr``,
            ``lr_drops``, ...).
        net_recipe: ``{name: overrides}``: a network's own overrides, applied after ``recipe``
            (quick trains each network for the epochs it needs to fit its images).
        subset: ``{"n_train": N, "n_test": M}``: train and test on a fixed, class-stratified
            subset of the data set (``varshift.data.take_subset``), or ``None`` for all of it.
        eval_samples: training images of the per-epoch inference-mode accuracy (Fig. 5) and
            of the final shift measurement / BN adjustment (``None``: all).
        adjust_samples: training images that Table 3's Adjust BN reads (``None``: as
            ``eval_samples``), at ``eval_batch_size`` a batch.
        eval_batch_size: batch size of the evaluation passes (test error, shift, Adjust BN).
        seeds: default number of seeds for the key settings (``--seeds`` overrides).
        first_seed: the first seed (the seeds are ``first_seed .. first_seed + seeds - 1``,
            part of every run's key): a confirmatory profile starts at seeds never run before.
        config_layout: ``"evaluations"``: the end-of-run work is named by the run config's
            ``evaluations`` (:mod:`reproduce.evaluations`); ``"fields"``: by the fields
            ``adjust``, ``adjust_samples`` and ``fig6``, the layout of records written before
            the evaluation hooks existed (the pilot's published records keep their keys).
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
        budget_note: how the profile's time budget was planned; its figures in braces (the
            plan's runs and minutes) are computed by ``reproduce.cost.budget_note``.
        threads: CPU threads of every run's kernels (``RunConfig.threads``, part of each
            run's key): fixed here, never taken from the machine, so the numbers are the same
            on any number of cores and any ``--jobs``.
        backend: the Keras backend of the runs (``RunConfig.backend``; ``run --backend``
            overrides); ``None``: TensorFlow.
    """

    name: str
    description: str
    data: tuple = ("digits",)
    networks: tuple = NETWORKS
    size: str = "small"
    recipe_kind: str = "cpu"
    recipe: dict = field(default_factory=dict)
    net_recipe: dict = field(default_factory=dict)
    subset: dict | None = None
    eval_samples: int | None = None
    adjust_samples: int | None = None
    eval_batch_size: int = 500
    seeds: int = 1
    first_seed: int = 0
    config_layout: str = "evaluations"
    fig4_rates: tuple = (0.0, 0.1, 0.3, 0.5, 0.7)
    seeded: tuple | None = (("a", 0.5),)
    table4_rates: tuple = (0.1, 0.2, 0.3, 0.5)
    table6_betas: tuple = (0.1, 0.2, 0.3, 0.5)
    table_networks: tuple = NETWORKS
    mc_samples: int = 200_000
    keras_samples: int = 20_000
    jobs: int = 1
    budget_note: str = ""
    threads: int = 1
    backend: str | None = None

    def with_seeds(self, k):
        """A copy with ``k`` seeds (the ``--seeds`` option)."""
        return replace(self, seeds=int(k))

    def seed_list(self):
        """The seeds ``first_seed .. first_seed + seeds - 1``."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def seeds_for(self, placement, rate):
        """The seeds of one setting: all for the baseline and :attr:`seeded`, else the first."""
        if placement == "none" or float(rate) == 0.0 or self.seeded is None \
                or (placement, float(rate)) in self.seeded:
            return self.seed_list()
        return self.seed_list()[:1]


#: wall-seconds of the theory targets (eq8, eq14, eq15) and of building every target's report
#: at quick: measured 78 s after the last run on a 2-core x86-64 CPU (the theory targets, Table 1's
#: networks built at initialisation, every figure and the report); rounded up
QUICK_FIXED_S = 120.0


QUICK_BUDGET_NOTE = (
    "quick: two small networks (PreResNet and WRN of varshift.nets.SMALL_SIZES; DenseNet-BC "
    "and ResNeXt are left to the gpu and paper profiles: with DenseNet-BC, 5 seeds and 4 "
    "epochs quick measured 37 min, over its 30-min budget) trained for 4 epochs at batch 32 "
    "(500 SGD steps) with a cosine learning-rate schedule after a half-epoch linear warm-up, "
    "the recipe chosen on a validation split of the training images "
    "(reproduce/data/recipe_selection.csv, python -m reproduce.recipe_selection; the test "
    "images are read once, for the verdicts), on a fixed class-stratified subset of "
    "Fashion-MNIST (4,000 training images; 4,000 test images so that the test error's binomial "
    "noise, about 0.6 pp, is small beside the effects the claims compare); 5 seeds for every "
    "setting a claim compares (no dropout, dropout-(a) and -(b) 0.5, Tables 4 and 6 at 0.5 on "
    "WRN, the cheaper network): with 5 paired seeds the 95% interval is +-1.24 standard "
    "deviations of the paired difference (3 seeds: +-2.5). Per-epoch evaluation only for the "
    "runs Fig. 5 reads (no dropout, dropout-(a) 0.5); Adjust BN only for Table 3's runs, "
    "reading 1,024 training images (one_pass at batch 256, 4 batches, so one_pass and "
    "sequential differ); Fig. 6's outputs only on PreResNet's dropout-(a) 0.5 runs; a "
    "checkpoint at most once a minute. These networks are not converged: "
    "reproduce/data/converged_reference.csv (python -m reproduce.converged) gives each "
    "no-dropout network trained 7.5-12.5 times longer on the same images. {{runs}} runs; "
    "estimate from the per-run wall times in RUN_COST (cost.cpu_plan_minutes): about "
    "{{minutes:.0f}} min on a 2-core machine as 2 single-threaded processes, of which about "
    "{fixed:.0f} min theory targets and report building; installing the environment adds 1-2 "
    "min."
)

#: the ``gpu`` profile's network sizes: the paper's architectures (bottleneck PreResNet,
#: WRN, ResNeXt-29's grouped bottlenecks, DenseNet-BC), shrunk until the cost model
#: (``reproduce.cost.H200``) fits the key runs in about 8 minutes of one H200
GPU_SIZES = {
    "preresnet": {"depth": 38},  # bottleneck, 4 blocks per stage, width 16: 37 BN layers
    "resnext29": {"depth": 29, "cardinality": 4, "base_width": 8, "widen_factor": 2,
                  "stem_width": 32},  # ResNeXt-29 4x8d, 3 blocks per stage: 31 BN layers
    "wrn": {"depth": 16, "widen_factor": 2},  # WRN-16-2 at base 16: 13 BN layers
    "densenet_bc": {"depth": 40, "growth_rate": 12},  # DenseNet-BC-40, k = 12: 39 BN layers
}
GPU_EPOCHS = 5
#: the targets of the key runs (no dropout, dropout-(a) and -(b) 0.5 of every network): what a
#: GPU session trains first (``reproduce.bundle``'s run.sh) and what the ``gpu`` budget names
KEY_TARGETS = ("fig5", "table3")
#: the ``gpu`` profile's budget; its figures in braces (the plan's runs and the estimates of
#: ``reproduce.cost.gpu_plan_minutes``) are filled in by ``reproduce.cost.budget_note``
GPU_BUDGET_NOTE = (
    f"gpu: all of Fashion-MNIST (60,000 training / 10,000 test images, 28x28) for the four "
    f"networks at a mid size (reproduce.profiles.GPU_SIZES: PreResNet-38, ResNeXt-29 4x8d, "
    f"WRN-16-2, DenseNet-BC-40), the paper's recipes (SGD, batch 128, 64 for DenseNet) for "
    f"{GPU_EPOCHS} epochs with quick's cosine schedule and half an epoch of warm-up "
    f"(about 2,350 SGD steps "
    f"at batch 128, 19x quick's training images), 5 seeds for every setting. The key runs (no dropout, "
    f"dropout-(a) and -(b) 0.5 of every network: {{key_runs}} runs, `run fig5 table3`) are "
    f"estimated at {{key_minutes:.1f}} min on one H200 with 8 worker processes, the whole "
    f"plan ({{runs}} runs) at {{gpu_minutes:.0f}} min, resumable across sessions in priority "
    f"order. ESTIMATES from reproduce.cost.H200 (FLOPs, memory traffic and kernel launches "
    f"counted per network): nothing was timed on an H200. The paper's sizes at 28x28 "
    f"would cost {{paper_ratio:.0f}}x as much per epoch (estimated s per epoch: "
    f"{{paper_epoch_seconds}})."
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
        description="small PreResNet and WRN on Fashion-MNIST, 5 seeds for every compared "
                    "setting (CPU, under 30 min on 2 cores from a bare clone)",
        data=("fashion_mnist",),
        networks=("preresnet", "wrn"),
        size="small",
        recipe_kind="cpu",
        recipe={"epochs": 4, "batch_size": 32, "schedule": "cosine", "warmup_epochs": 0.5,
                "lr_drops": []},
        subset={"n_train": 4000, "n_test": 4000},
        eval_samples=500,
        adjust_samples=1024,
        eval_batch_size=256,
        seeds=5,
        fig4_rates=(0.0, 0.5),
        seeded=None,
        table4_rates=(0.5,),
        table6_betas=(0.5,),
        table_networks=("wrn",),
        mc_samples=400_000,
        keras_samples=40_000,
        jobs=2,
        budget_note="",  # filled below from the measured costs
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
        budget_note="paper: the paper's full setup; meant for GPUs, not for a CPU.",
        threads=4,  # the host side of a GPU run (4 CPUs per GPU, as SlurmOptions asks for)
    ),
}

#: ``gpu``: the paper's grid (5 seeds for every setting, its drop ratios, Tables 4 and 6 on every
#: network) at a scale one H200 trains (GPU_BUDGET_NOTE)
PROFILES["gpu"] = replace(
    PROFILES["paper"], name="gpu",
    description="the four networks at mid size on all of Fashion-MNIST (60,000 / 10,000), "
                f"{GPU_EPOCHS} epochs, 5 seeds (one H200: the key runs in about 8 min, the rest "
                "resumable; `python -m reproduce bundle`)",
    data=("fashion_mnist",), size=GPU_SIZES,
    recipe={"epochs": GPU_EPOCHS, "schedule": "cosine", "warmup_epochs": 0.5, "lr_drops": []},
    eval_samples=2000, mc_samples=400_000, keras_samples=40_000, jobs=8,
    budget_note=GPU_BUDGET_NOTE,
    threads=2,  # 8 workers on the 16 CPU cores of the bundle's target machine
    backend="jax",  # the bundle's target machine has JAX, not TensorFlow
)

#: the pilot: ``quick`` as it was first run and published (seeds 0-4, the same 4,000 test
#: images for every run); its records (``docs/results/pilot``) are exploratory for good, and its
#: primary effects and spreads are the input of the power analysis (``reproduce.power``)
PILOT_NOTE = (
    "pilot (exploratory): the first design of quick, run and published before the claims were "
    "fixed; its seeds (0-4), networks and 4,000 test images were read while the claims and "
    "margins were written, so its verdicts are exploratory whatever they say. "
    + QUICK_BUDGET_NOTE.format(fixed=QUICK_FIXED_S / 60.0))
PROFILES["pilot"] = replace(
    PROFILES["quick"], name="pilot",
    description="the exploratory pilot: quick's first design (PreResNet and WRN, seeds 0-4, "
                "Tables 4 and 6 on WRN only, 4,000 test images); published records, never "
                "confirmatory",
    budget_note=PILOT_NOTE, config_layout="fields",
    backend="tensorflow")  # its records were trained on TensorFlow, whatever KERAS_BACKEND says

#: seeds of the confirmatory quick profile: the most that any primary claim needs for 80% power
#: at the pilot's effect and spread (``python -m reproduce power``)
QUICK_SEEDS = 10
#: the confirmatory quick's first seed: no run of the pilot (seeds 0-4) or of any earlier
#: design used seeds from here on
QUICK_FIRST_SEED = 100
#: the confirmatory quick's data: a training subset drawn with each run's own seed (so data
#: sampling is inside the interval) and test images the pilot never read (its 4,000, drawn with
#: selection seed 0, are excluded; the 6,000 others are all used)
QUICK_SUBSET = {"n_train": 600, "n_test": 6000, "train_draw": "per_seed",
                "test_exclude": {"n_test": 4000, "seed": 0}}
#: the confirmatory quick's networks and epochs, from ``python -m reproduce.regime_selection``
#: (validation images): its rule chose PreResNet d11w8 for 40 epochs and WRN for 30; under
#: ``reproduce.cost.RUN_COST`` that plan needs about 29 min with Tables 4 and 6 on WRN, so WRN trains 20,
#: its cheapest design that also meets the convergence target (2.8% training error, 1.1 pp above
#: its 4x-longer twin)
#: training images of the per-epoch evaluation (both modes, every epoch) and the shift measurement
QUICK_EVAL_SAMPLES = 128
QUICK_SIZES = {"preresnet": {"depth": 11, "width": 8},
               "wrn": {"depth": 10, "widen_factor": 2, "width": 8}}
QUICK_NET_RECIPE = {"preresnet": {"epochs": 40, "warmup_epochs": 5.0},
                    "wrn": {"epochs": 20, "warmup_epochs": 2.5}}
QUICK_NOTE = (
    "quick (confirmatory): the claims, margins and this design were fixed in a commit before "
    "its runs; {seeds} seeds from seed {first} on (never run before; the number of seeds is "
    "the most any primary claim needs for 80% power at the pilot's effect and spread, "
    "`python -m reproduce power`), a training subset of {n_train:,} images drawn with each "
    "run's own seed (data sampling is inside the interval), and Fashion-MNIST's {n_test:,} test "
    "images that the pilot never read (its 4,000 excluded). Two small networks, a bottleneck "
    "PreResNet of depth 11 and width 8 trained 40 epochs and WRN-10-2 at width 8 trained 20 "
    "epochs, at batch 32 with a cosine schedule after a warm-up of an eighth of the epochs: the "
    "choice of python -m reproduce.regime_selection on validation images "
    "(reproduce/data/regime_selection.csv), where both no-dropout networks fit their training "
    "images (training error 0.8% and 2.8%) and are within 2 pp of the same networks trained "
    "4x longer; no dropout and dropout-(a) and -(b) 0.5 on both networks, Tables 4 and 6 at "
    "0.5 on WRN only (both networks would take about 34 min), every seed; the per-epoch "
    "evaluation and the shift measurement read {eval_samples} training images, Adjust BN all "
    "{n_train:,}. "
    "{{runs}} runs; estimate from the per-run wall times in RUN_COST (cost.cpu_plan_minutes): "
    "about {{minutes:.0f}} min on a 2-core machine as 2 single-threaded processes, of which "
    "about {fixed:.0f} min theory targets and report building.")
PROFILES["quick"] = replace(
    PROFILES["quick"],
    description=f"confirmatory: small PreResNet and WRN on Fashion-MNIST, {QUICK_SEEDS} fresh "
                "seeds for every compared setting, unread test images (CPU, 2 cores)",
    seeds=QUICK_SEEDS, first_seed=QUICK_FIRST_SEED, subset=dict(QUICK_SUBSET),
    size=QUICK_SIZES, net_recipe=QUICK_NET_RECIPE, eval_samples=QUICK_EVAL_SAMPLES,
    adjust_samples=QUICK_SUBSET["n_train"], table_networks=("wrn",),
    budget_note=QUICK_NOTE.format(seeds=QUICK_SEEDS, first=QUICK_FIRST_SEED,
                                  eval_samples=QUICK_EVAL_SAMPLES,
                                  n_train=QUICK_SUBSET["n_train"],
                                  n_test=QUICK_SUBSET["n_test"], fixed=QUICK_FIXED_S / 60.0))


def get_profile(name):
    """The profile called ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}"
        ) from None
