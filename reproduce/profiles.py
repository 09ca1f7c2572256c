"""The three profiles of the reproduction: ``smoke``, ``quick`` and ``paper``.

A profile fixes everything a target needs to plan its work: the data set, the networks and
their sizes, the training recipe, the grid of drop ratios and the seeds. Targets read only
the profile, so the same code produces the CI smoke test, the 30-minute CPU version and the
paper-scale GPU version.

Run budget of ``quick`` (2 CPU cores; measured 37 min from a bare clone, over the 30-min goal):
see :data:`QUICK_BUDGET_NOTE`.
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
        size: ``"small"`` for ``varshift.nets.SMALL_SIZES[name]``, ``"paper"`` for the
            builder's defaults (the paper's sizes), or ``{name: size keywords}`` per network.
        recipe_kind: ``"cpu"`` or ``"paper"``: the base recipe of ``varshift.train``.
        recipe: overrides of the training recipe (``epochs``, ``batch_size``, ``lr``,
            ``lr_drops``, ...).
        subset: ``{"n_train": N, "n_test": M}``: train and test on a fixed, class-stratified
            subset of the data set (``varshift.data.take_subset``), or ``None`` for all of it.
        eval_samples: training images of the per-epoch inference-mode accuracy (Fig. 5) and
            of the final shift measurement / BN adjustment (``None``: all).
        adjust_samples: training images that Table 3's Adjust BN reads (``None``: as
            ``eval_samples``), at ``eval_batch_size`` a batch.
        eval_batch_size: batch size of the evaluation passes (test error, shift, Adjust BN).
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
    subset: dict | None = None
    eval_samples: int | None = None
    adjust_samples: int | None = None
    eval_batch_size: int = 500
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
    threads: int = 1
    backend: str | None = None

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


#: Measured cost of one training run (CPU-seconds on one thread, ``time.process_time``),
#: Fashion-MNIST 28x28, batch 64, the small networks. Measured on 2026-11-25 on this 2-core
#: machine while ~7 other jobs shared it: wall times were 5-10x the CPU times, so the CPU time
#: of the process is used instead (contention inflates it too, through shared caches, so these
#: are upper bounds for an idle machine). Per network:
#:
#: - ``train``: CPU-s per 1,000 training images per epoch: runs of 2 and 6 epochs on 2,000
#:   images (wrn 9.2 / 18.1 s, preresnet 16.1 / 32.3 s, densenet_bc 16.4 / 32.3 s), difference
#:   over 8,000 image-epochs;
#: - ``overhead``: the rest of such a run (start-up, graph tracing, final evaluation of 1,000
#:   test images, shift measurement);
#: - ``epoch_eval``: CPU-s per 1,000 images of the per-epoch evaluation passes (runs with and
#:   without it: +2.8 s wrn, +8.5 s preresnet, +7.7 s densenet_bc over 6,000 images);
#: - ``test``: CPU-s per 1,000 test images (one ``evaluate`` of 4,000 images at batch 500:
#:   wrn 1.13 s, preresnet 2.03 s);
#: - ``adjust``: Table 3's three re-estimations of BN (sequential, one_pass, one_pass with the
#:   noise) of 500 images at batch 500 and their three test evaluations (4,000 images): wrn
#:   2.7 + 1.1 + 0.9 + 3.4 s, preresnet 11.3 + 2.4 + 2.3 + 6.1 s; densenet_bc scaled from
#:   preresnet by its BN layers (15 vs 19);
#: - ``adjust_per_1000``: CPU-s of the three re-estimations per 1,000 further images read
#:   (measured 2026-12-01, 500 images at batch 500 vs 2,000 at batch 256: preresnet 18.6 vs
#:   34.9 CPU-s, wrn 4.9 vs 8.1; densenet_bc scaled from preresnet by its BN layers);
#: - ``fig6``: Fig. 6's outputs (``RunConfig.fig6``): a sequential re-estimation of BN on 512
#:   images (preresnet 14.2 CPU-s, wrn 2.9, as above) and four forward passes of them.
#:
#: ResNeXt (grouped convolutions) was measured earlier at about 2x PreResNet's cost. These
#: are batch-64 costs with a checkpoint after every epoch (0.1-0.23 CPU-s each, now written
#: once a minute at most); quick trains at batch 32, which measured 0.88x batch 64's CPU time
#: for PreResNet (37.1 vs 42.2 CPU-s for a 4-epoch run on 4,000 images), so the estimate is
#: an upper bound. The schedule (step or cosine) does not change the cost.
RUN_COST = {
    "wrn": {"train": 1.11, "overhead": 4.7, "epoch_eval": 0.46, "test": 0.28, "adjust": 8.1,
            "adjust_per_1000": 2.1, "fig6": 4.0},
    "preresnet": {"train": 2.02, "overhead": 8.0, "epoch_eval": 1.42, "test": 0.51,
                  "adjust": 22.1, "adjust_per_1000": 10.9, "fig6": 16.0},
    "densenet_bc": {"train": 1.98, "overhead": 8.5, "epoch_eval": 1.28, "test": 0.51,
                    "adjust": 18.0, "adjust_per_1000": 8.6, "fig6": 13.0},
    "resnext29": {"train": 4.0, "overhead": 16.0, "epoch_eval": 2.8, "test": 1.0,
                  "adjust": 44.0, "adjust_per_1000": 21.8, "fig6": 32.0},
}
#: CPU-seconds of the theory targets (eq8, eq14, eq15) and of building every target's report
#: at quick: the theory targets took 12 CPU-s at smoke (20,000 Monte Carlo and 4,096 Keras
#: samples), x 10-20 at quick's sample sizes; Fig. 6 (5 saved models, re-estimated BN) and
#: Table 1 (15 networks built at initialisation) add about 30
QUICK_FIXED_CPU_S = 150.0


def run_cpu_seconds(config):
    """Estimated CPU-seconds of one run of the plan (see :data:`RUN_COST`)."""
    cost = RUN_COST[config["net"]]
    epochs = config["overrides"]["epochs"]
    n_train = (config.get("subset") or {}).get("n_train", 60000)
    n_test = (config.get("subset") or {}).get("n_test", 10000)
    seconds = (cost["overhead"] + cost["train"] * n_train * epochs / 1000.0
               + cost["test"] * max(0, n_test - 1000) / 1000.0)
    if config.get("epoch_eval"):  # inference and training mode, every epoch
        seconds += cost["epoch_eval"] * 2 * epochs * (config.get("train_eval_samples") or n_train) / 1000.0
    if config.get("adjust"):
        n_adjust = config.get("adjust_samples") or config.get("stats_samples") or n_train
        seconds += cost["adjust"] + cost["adjust_per_1000"] * (min(n_adjust, n_train) - 500) / 1000.0
    if config.get("fig6"):
        seconds += cost["fig6"]
    return seconds


def estimate_minutes(profile, jobs=None):
    """Estimated wall minutes of ``python -m reproduce run`` for ``profile`` on an idle
    machine with ``jobs`` single-threaded processes (the profile's default)."""
    from reproduce.registry import TARGETS, plan

    cpu = sum(run_cpu_seconds(s.config) for s in plan(profile, TARGETS))
    return (cpu / (jobs or profile.jobs) + QUICK_FIXED_CPU_S) / 60.0


QUICK_BUDGET_NOTE = (
    "quick: three small networks (PreResNet, WRN, DenseNet-BC of varshift.nets.SMALL_SIZES; "
    "ResNeXt's grouped convolutions cost twice PreResNet's on CPU and are left to the paper "
    "profile) trained for 4 epochs at batch 32 (500 SGD steps) with a cosine learning-rate "
    "schedule after a half-epoch linear warm-up, the recipe chosen on a validation split of the "
    "training images (reproduce/data/recipe_selection.csv, python -m reproduce.recipe_selection; "
    "the test images are read once, for the verdicts), on a fixed class-stratified subset of "
    "Fashion-MNIST (4,000 training images; 4,000 test images so that the test error's binomial "
    "noise, about 0.6 pp, is small beside the effects the claims compare); 5 seeds for every "
    "setting a claim compares (no "
    "dropout, dropout-(a) and -(b) 0.5, Tables 4 and 6 at 0.5 on WRN, the cheapest network): with 5 "
    "paired seeds the 95% interval is +-1.24 standard deviations of the paired difference "
    "(3 seeds: +-2.5). Per-epoch evaluation only for the runs Fig. 5 reads (no dropout, "
    "dropout-(a) 0.5); Adjust BN only for Table 3's runs, reading 1,024 training images at "
    "batch 256 (4 batches, so one_pass and sequential differ); Fig. 6's outputs only on "
    "PreResNet's dropout-(a) 0.5 runs; a checkpoint at most once a minute. These networks are "
    "not converged: reproduce/data/converged_reference.csv (python -m reproduce.converged) "
    "gives each no-dropout network trained 7.5-12.5 times longer on the same images. "
    "{runs} runs; estimate from the measured "
    "per-run CPU times in RUN_COST (profiles.estimate_minutes): about {minutes:.0f} min on 2 "
    "idle cores as 2 single-threaded processes, of which about {fixed:.0f} min theory targets "
    "and report building."
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
#: the plan and estimates of ``gpu`` (``reproduce.cost.gpu_plan_minutes`` with 8 workers;
#: a test keeps these in step): the key runs (``run fig5 table3``) and the whole plan
GPU_KEY_RUNS, GPU_KEY_MINUTES, GPU_RUNS, GPU_MINUTES = 60, 8.1, 340, 44.0
GPU_PAPER_RATIO = 13  # estimated epoch time of the paper's sizes over GPU_SIZES' (all four)
GPU_BUDGET_NOTE = (
    f"gpu: all of Fashion-MNIST (60,000 training / 10,000 test images, 28x28) for the four "
    f"networks at a mid size (reproduce.profiles.GPU_SIZES: PreResNet-38, ResNeXt-29 4x8d, "
    f"WRN-16-2, DenseNet-BC-40), the paper's recipes (SGD, batch 128, 64 for DenseNet) for "
    f"{GPU_EPOCHS} epochs with quick's cosine schedule and half an epoch of warm-up "
    f"(about 2,350 SGD steps "
    f"at batch 128, 19x quick's training images), 5 seeds for every setting. The key runs (no dropout, "
    f"dropout-(a) and -(b) 0.5 of every network: {GPU_KEY_RUNS} runs, `run fig5 table3`) are "
    f"estimated at {GPU_KEY_MINUTES:.1f} min on one H200 with 8 worker processes, the whole "
    f"plan ({GPU_RUNS} runs) at {GPU_MINUTES:.0f} min, resumable across sessions in priority "
    f"order. ESTIMATES from reproduce.cost.H200 (FLOPs, memory traffic and kernel launches "
    f"counted per network): nothing was timed on an H200. The paper's sizes at 28x28 "
    f"would cost {GPU_PAPER_RATIO:.0f}x as much per epoch (estimated s per epoch: PreResNet-164 "
    f"6.3, ResNeXt-29 8x64d 36, WRN-28-10 31, DenseNet-BC-100 5.6)."
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
        description="small PreResNet, WRN and DenseNet-BC on Fashion-MNIST, 5 seeds for every "
                    "compared setting (CPU, about 37 min on 2 cores from a bare clone)",
        data=("fashion_mnist",),
        networks=("preresnet", "wrn", "densenet_bc"),
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
        budget_note="paper: the paper's full setup; meant for GPUs, not run on this machine.",
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
    threads=2,  # 8 workers on the GPU machine's 16 cores
    backend="jax",  # the GPU machine has JAX, not TensorFlow
)

#: the plan and estimate of ``quick`` (``estimate_minutes``; a test keeps these in step)
QUICK_RUNS, QUICK_MINUTES = 55, 24.5
PROFILES["quick"] = replace(PROFILES["quick"], budget_note=QUICK_BUDGET_NOTE.format(
    runs=QUICK_RUNS, minutes=QUICK_MINUTES, fixed=QUICK_FIXED_CPU_S / 60.0))


def get_profile(name):
    """The profile called ``name``; ``KeyError`` with the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown profile {name!r}; expected one of: {', '.join(PROFILES)}"
        ) from None
