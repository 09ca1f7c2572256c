"""Quick's regime (network sizes, training-set size, batch, epochs), chosen on a validation split.

:mod:`reproduce.recipe_selection` chose quick's recipe for fixed networks and data; this
search chooses what is trained: the sizes of the two networks (the paper's architectures,
bottleneck PreResNet and WRN, widths and depths free), how many training images, the batch
size (learning rate and warm-up scaled to it) and the epochs, for **accuracy per CPU-second
near convergence** of the no-dropout networks. The test images are never read: every run
holds out :data:`VALIDATION` class-stratified images of its Fashion-MNIST *training* subset
(``RunConfig(validation=...)``) and is scored on them.

**A run** is one no-dropout (or, for the chosen candidates, dropout-(a) 0.5) network of
:data:`SIZES` trained with seed 0 on ``n_train`` images for ``epochs`` epochs at
``batch_size``, learning rate ``LR_PER_32 * batch_size / 32`` (linear scaling; 0.05 at batch
32, quick's rate), SGD momentum 0.9 and the network's CPU weight decay, a cosine schedule after
a linear warm-up of ``epochs / 8`` epochs (quick's half epoch of 4: the same schedule shape at
every length, so a run 4x longer is the same recipe stretched). CPU cost is
``time.process_time`` of this process around ``varshift.train.run`` (one thread, one
training process at a time, so a loaded machine changes wall time but not CPU time).

**A design** is a no-dropout run whose 4x-longer twin (same network, images, batch; 4x the
epochs) was also run. It meets the **convergence target** when its training error in
inference mode (all its training images) is at most :data:`FIT_ERROR` % and its validation
error is at most :data:`GAP_PP` pp above its twin's.

**A quick plan** pairs a PreResNet design with a WRN design on the same ``n_train``. Its cost
(:func:`plan_core_seconds`): :data:`SEEDS` seeds x :data:`PRIMARY_SETTINGS` primary settings
per network, plus :data:`SECONDARY_SHARE` more for secondary runs; each run's training
CPU-seconds are the design's (its image-passes times the network's CPU-seconds per
image-pass, :func:`cpu_per_pass`), times the cost of the noise layers for the four noisy
settings (:data:`NOISE_COST`), divided by ``1 - OUTSIDE_TRAINING`` (at most 15% of a run
outside training, the faster trainer's goal). It fits when that is at most
:data:`BUDGET_CORE_S` core-seconds (2 cores x 30 min less set-up, theory targets and report).

**The rule** (:func:`select`, fixed before the runs): among the plans that fit the budget and
whose two designs meet the convergence target, the lowest mean validation error of the two
networks (ties: the cheaper). If none meets the target, the fitting plan with the smallest
shortfall (the larger over its two networks of ``max(0, train error - 5) + max(0, gap - 2)``,
in pp), then the lowest error; the CSV's summary says by how much it falls short.

The grid was run in stages (:data:`ORDER`), each stage's list written before its runs and
after the rows of the stages before it: quick's small networks first, then refinements.

**Result** (the CSV, 39 runs). Fitting the training images takes epochs, not image-passes:
WRN small fits in 20-30 epochs (4.1% at 1,000 x 20, 0.0% at 600 x 30), PreResNet needs about
40 (d11w8: 12.3% at 1,000 x 20, 6.7% at 600 x 30, 0.5-0.8% at 40); at 10 epochs every network
has 15-20% training error and is 1.5-6.3 pp above its twin. Within the budget the images must
therefore be few: the rule selects **600 images, PreResNet d11w8 (bottleneck, depth 11,
width 8) for 40 epochs and WRN small (WRN-10-2 at base 8) for 30, batch 32, lr 0.05, cosine
after a warm-up of epochs / 8**: both meet the target (training errors 0.8% and 0.0%,
validation 24.8% and 23.2%, each at most its twin's), estimated 3,009 core-seconds (about 29
min from a bare clone). WRN for 20 epochs instead meets it too (2.8%, 1.1 pp above its twin)
at 0.2 pp more validation error and about 26 min; 700 images (40 and 20 epochs) meet it at
about 29 min with 0.4 pp more (single-seed differences of this size are noise). Dropout-(a)
0.5 on the selected designs: validation 34.0% and 75.7%.
Batch 16 did not fit faster than 32 (PreResNet d11w8 at 2,000 x 10: 17.1% training error
against 16.3%). The same networks on 1,000 images (40 and 20 epochs, 21.6% mean validation
error) need about 40 min, on 2,000 about 76 min (PreResNet's twin there unrun).

Run (resumable: a CSV row per finished run, finished runs are skipped; an interrupted run
starts again, so that its CPU-seconds are a whole run's)::

    nice -n 10 python -m reproduce.regime_selection [--out results/regime_selection] [--stage 1]

It writes ``reproduce/data/regime_selection.csv`` (one row per run) and prints progress, then
the design table and the selected plan.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

__all__ = ["SIZES", "ORDER", "VALIDATION", "run_key", "config_for", "run_one", "designs",
           "plans", "cpu_per_pass", "plan_core_seconds", "wall_minutes", "confirm_plan", "select", "main",
           "CSV_PATH"]

CSV_PATH = Path(__file__).parent / "data" / "regime_selection.csv"
#: held-out training images every run is scored on (class-stratified, selection seed 0, drawn
#: from the run's own ``n_train + VALIDATION`` training subset; the test images are unread)
VALIDATION = 2000
SEED = 0
#: learning rate at batch 32 (quick's); other batches scale it linearly
LR_PER_32 = 0.05
#: warm-up as a share of the run (quick's 0.5 of 4 epochs)
WARMUP_SHARE = 1 / 8
#: the convergence target: training error (inference mode) at most FIT_ERROR %, validation
#: error at most GAP_PP pp above the 4x-longer twin's
FIT_ERROR, GAP_PP, LONGER = 5.0, 2.0, 4
#: quick's confirmatory plan: seeds x primary settings per network (no dropout, dropout-(a) and
#: (b) 0.5, one dropout after all BN 0.5, Uout (b) 0.5), plus a share of secondary runs
SEEDS, PRIMARY_SETTINGS, SECONDARY_SHARE = 10, 5, 0.1
#: the CPU cost of a noisy run over a no-dropout one (dropout masks: about 11% of a training
#: step in a profile of the small networks). The dropout-(a) runs of this search measure it too
#: (:func:`noise_cost`), within the 10-20% scatter of CPU time on a loaded machine
NOISE_COST = 1.1
#: share of a run's time outside the training passes (evaluation, Adjust BN, Fig. 6) allowed by
#: the faster trainer's goal
OUTSIDE_TRAINING = 0.15
#: core-seconds for quick's runs: 2 cores x (30 min - 2 min set-up - 2 min theory and report)
BUDGET_CORE_S = 2 * (30 - 2 - 2) * 60

#: network -> size name -> size keywords of ``varshift.nets.build`` (the paper's architectures)
SIZES = {
    "preresnet": {
        "small": {"depth": 20, "width": 8},   # quick's: bottleneck, 2 blocks/stage, 19 BN
        "d11w8": {"depth": 11, "width": 8},   # bottleneck, 1 block/stage, 10 BN
    },
    "wrn": {
        "small": {"depth": 10, "widen_factor": 2, "width": 8},  # quick's WRN-10-2 at base 8
        "10-1": {"depth": 10, "widen_factor": 1, "width": 8},   # half as wide
    },
}

#: the runs, (net, size, n_train, batch_size, epochs, placement, rate), stage by stage; each
#: stage was written before its runs, from the rows of the stages before it
ORDER = {
    # quick's small networks near the budget's epochs at 1,000 and 2,000 images, with their
    # twins; the stage's plan went on with PreResNet at 2,000 x 5 and 20 and batch 16 at
    # 1,000 x 10 and 40: dropped, unrun, once these six showed that 10,000 image-passes are
    # far from fitting (training errors 16-21%, 3-7.5 pp above the twins) while 40,000 fit
    1: [("wrn", "small", 1000, 32, 10, "none", 0.0), ("wrn", "small", 1000, 32, 40, "none", 0.0),
        ("preresnet", "small", 1000, 32, 10, "none", 0.0),
        ("preresnet", "small", 1000, 32, 40, "none", 0.0),
        ("wrn", "small", 2000, 32, 5, "none", 0.0), ("wrn", "small", 2000, 32, 20, "none", 0.0)],
}
# 2,000 images beat 1,000 at the same image-passes (WRN, 40,000: 14.7% against 20.5%): the
# cheaper sizes at 2,000 images x 10 epochs and at 1,000 x 20, with their twins. The stage's
# plan went on with WRN-10-1 at 1,000 x 20 and 2,000 x 20, WRN small at 2,000 x 10 and batch 16
# at 2,000 x 10: dropped, unrun, for stage 3, when the shared machine gave this search about
# a quarter of a core and WRN-10-1 proved less accurate per CPU-second than WRN small
ORDER[2] = [
    ("wrn", "10-1", 2000, 32, 10, "none", 0.0), ("wrn", "10-1", 2000, 32, 40, "none", 0.0),
    ("preresnet", "d11w8", 2000, 32, 10, "none", 0.0),
    ("preresnet", "d11w8", 2000, 32, 40, "none", 0.0),
    ("preresnet", "d11w8", 1000, 32, 20, "none", 0.0),
    ("preresnet", "d11w8", 1000, 32, 80, "none", 0.0),
]
# the plan closest to the budget (1,000 images x 20 epochs) completed with WRN small, and the
# dropout-(a) 0.5 runs of it and of WRN small 2,000 x 20 (which fits its images). The stage's
# list went on with batch 16 at 2,000 x 10, WRN small 2,000 x 20's twin and PreResNet d11w8
# 2,000 x 40 with dropout-(a): moved, unrun, to stage 4 behind its more decisive runs
ORDER[3] = [
    ("wrn", "small", 1000, 32, 20, "none", 0.0), ("wrn", "small", 1000, 32, 80, "none", 0.0),
    ("preresnet", "d11w8", 1000, 32, 20, "a", 0.5), ("wrn", "small", 1000, 32, 20, "a", 0.5),
    ("wrn", "small", 2000, 32, 20, "a", 0.5),
]
# WRN small fits 1,000 images in 20 epochs (4.1%), PreResNet d11w8 does not (12.3%): PreResNet
# d11w8 at 2,000 x 20 (between 16.3% at 10 epochs and 0.1% at 40), quick's deeper PreResNet at
# 1,000 x 20, and WRN small 2,000 x 20's twin. The stage's list went on with the twins of the
# two PreResNet runs, their dropout-(a) runs and batch 16: dropped, unrun, once neither
# PreResNet fitted its images in 20 epochs (7.2% and 9.9%)
ORDER[4] = [
    ("preresnet", "d11w8", 2000, 32, 20, "none", 0.0),
    ("preresnet", "small", 1000, 32, 20, "none", 0.0),
    ("wrn", "small", 2000, 32, 80, "none", 0.0),
]
# PreResNet fits in 40 epochs (0.0-0.1%): the cheapest, d11w8 at 1,000 x 40, its twin and its
# dropout-(a) run complete a plan that meets the target; then batch 16 against 32
ORDER[5] = [
    ("preresnet", "d11w8", 1000, 32, 40, "none", 0.0),
    ("preresnet", "d11w8", 1000, 32, 160, "none", 0.0),
    ("preresnet", "d11w8", 1000, 32, 40, "a", 0.5),
    ("preresnet", "d11w8", 2000, 16, 10, "none", 0.0),
]
# PreResNet fits in 40 epochs but not in 20, and 40 epochs of 1,000 images with WRN's 20 is
# over the budget: fewer images for 30 epochs, 600 x 30 for both networks (18,000 image-passes
# each, within the budget), with their twins (run before stage 5's batch-16 run)
ORDER[6] = [
    ("preresnet", "d11w8", 600, 32, 30, "none", 0.0), ("wrn", "small", 600, 32, 30, "none", 0.0),
    ("preresnet", "d11w8", 600, 32, 120, "none", 0.0),
    ("wrn", "small", 600, 32, 120, "none", 0.0),
]
# at 600 images WRN small fits in 30 epochs (0.0%) and PreResNet d11w8 does not (6.7%; it fit
# 1,000 images in 40): each network its own epochs on the same 600 images, PreResNet 40 and
# WRN 20, with their twins and dropout-(a) runs
ORDER[7] = [
    ("preresnet", "d11w8", 600, 32, 40, "none", 0.0), ("wrn", "small", 600, 32, 20, "none", 0.0),
    ("preresnet", "d11w8", 600, 32, 160, "none", 0.0), ("wrn", "small", 600, 32, 80, "none", 0.0),
    ("preresnet", "d11w8", 600, 32, 40, "a", 0.5), ("wrn", "small", 600, 32, 20, "a", 0.5),
]
# the selected plan's WRN (600 x 30) with dropout-(a) 0.5
ORDER[8] = [("wrn", "small", 600, 32, 30, "a", 0.5)]
# the most images the budget holds for PreResNet 40 and WRN 20 epochs: 700, with the twins
ORDER[9] = [
    ("preresnet", "d11w8", 700, 32, 40, "none", 0.0), ("wrn", "small", 700, 32, 20, "none", 0.0),
    ("preresnet", "d11w8", 700, 32, 160, "none", 0.0), ("wrn", "small", 700, 32, 80, "none", 0.0),
]

COLUMNS = ("run", "stage", "net", "size", "size_keywords", "params", "n_train", "n_validation",
           "epochs", "batch_size", "lr", "warmup_epochs", "placement", "rate", "seed",
           "validation_error", "train_error_inference", "train_acc_train_mode", "cpu_s",
           "wall_s", "train_wall_s")


def run_key(net, size, n_train, batch_size, epochs, placement="none", rate=0.0):
    """The run's name in the CSV and its trainer folder's."""
    return f"{net}-{size}-n{n_train}-b{batch_size}-e{epochs}-{placement}{float(rate):g}"


def recipe(net, batch_size, epochs):
    """Recipe overrides of the ``cpu`` recipe: cosine, warm-up ``epochs / 8``, lr scaled."""
    return {"epochs": int(epochs), "batch_size": int(batch_size),
            "lr": LR_PER_32 * batch_size / 32, "schedule": "cosine",
            "warmup_epochs": epochs * WARMUP_SHARE, "lr_drops": []}


def config_for(net, size, n_train, batch_size, epochs, placement="none", rate=0.0, *,
               seed=SEED, data="fashion_mnist"):
    """The trainer config of one run: ``n_train`` images trained, :data:`VALIDATION` held out
    and scored; training error on all ``n_train`` images; no Adjust BN, no per-epoch passes."""
    return {"net": net, "size": dict(SIZES[net][size]), "placement": placement,
            "rate": float(rate), "data": data, "recipe": "cpu",
            "overrides": recipe(net, batch_size, epochs), "seed": seed,
            "subset": {"n_train": n_train + VALIDATION, "n_test": 1},
            "validation": VALIDATION, "epoch_eval": False,
            "train_eval_samples": None, "stats_samples": 256, "threads": 1}


def run_one(spec, out_root, *, stage=0, data_dir=None, data="fashion_mnist"):
    """Train one run of ``spec`` (a tuple of :data:`ORDER`); return its CSV row."""
    from varshift import nets, train

    net, size, n_train, batch_size, epochs, placement, rate = spec
    cfg = {**config_for(*spec, data=data), "data_dir": data_dir}
    folder = os.path.join(out_root, run_key(*spec))
    cpu0, wall0 = time.process_time(), time.time()
    # a run starts afresh (an interrupted one too): its CPU-seconds must be the whole run's
    rec = train.run(cfg, out_dir=folder, progress=False, resume=False, checkpoint_seconds=1e9)
    cpu, wall = time.process_time() - cpu0, time.time() - wall0
    assert rec["data"]["validation"]["n_validation"] == VALIDATION  # the test set is not used
    r = rec["config"]["recipe_resolved"]
    model = nets.build(net, 10, input_shape=tuple(rec["data"]["shape"]), **SIZES[net][size])
    return {"run": run_key(*spec), "stage": stage, "net": net, "size": size,
            "size_keywords": " ".join(f"{k}={v}" for k, v in SIZES[net][size].items()),
            "params": nets.trainable_params(model), "n_train": rec["data"]["n_train"],
            "n_validation": rec["data"]["n_test"], "epochs": r["epochs"],
            "batch_size": r["batch_size"], "lr": r["lr"], "warmup_epochs": r["warmup_epochs"],
            "placement": placement, "rate": rate, "seed": rec["seed"],
            "validation_error": round(rec["final"]["test_error"], 3),
            "train_error_inference": round(rec["final"]["train_error_inference"], 3),
            "train_acc_train_mode": round(100 * rec["history"][-1]["train_acc_train_mode"], 3),
            "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "train_wall_s": round(sum(h["seconds"] for h in rec["history"]), 2)}


# ----------------------------------------------------------------------------- the analysis
def _f(row, key):
    return float(row[key])


def noise_cost(rows):
    """Measured CPU cost of a dropout-(a) run over its no-dropout twin (mean ratio), or
    :data:`NOISE_COST` where no such pair was run."""
    base = {_design_key(r): r for r in rows if r["placement"] == "none"}
    ratios = [_f(r, "cpu_s") / _f(base[_design_key(r)], "cpu_s") for r in rows
              if r["placement"] != "none" and _design_key(r) in base]
    return sum(ratios) / len(ratios) if ratios else NOISE_COST


def cpu_per_pass(rows, net, size, batch_size):
    """CPU-seconds per training image-pass of one network size and batch: the least-squares
    slope of the no-dropout runs' CPU-seconds over their image-passes (``n_train x epochs``;
    the intercept is the run's time outside training). Runs on a loaded machine vary by
    10-20% in CPU time; the slope pools them."""
    pts = [(int(r["n_train"]) * int(r["epochs"]), _f(r, "cpu_s")) for r in rows
           if r["placement"] == "none" and r["net"] == net and r["size"] == size
           and int(r["batch_size"]) == int(batch_size)]
    if len(pts) < 2:
        raise ValueError(f"{net} {size} batch {batch_size}: fewer than two runs to fit.")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return max(sum((x - mx) * (y - my) for x, y in pts) / sxx, 0.0) if sxx else 0.0


def _design_key(row, epochs=None):
    return (row["net"], row["size"], int(row["n_train"]), int(row["batch_size"]),
            int(row["epochs"]) if epochs is None else int(epochs))


def designs(rows):
    """One dict per no-dropout run with a 4x-longer twin: its errors, the twin's validation
    error, the gap, training CPU-seconds (:func:`cpu_per_pass` times its image-passes), the
    rest of its CPU-seconds, whether it meets the convergence target, its shortfall (pp) and
    its dropout-(a) twin's validation error and training-mode accuracy, if run."""
    base = {_design_key(r): r for r in rows if r["placement"] == "none"}
    out = []
    for key, r in base.items():
        twin = base.get(_design_key(r, int(r["epochs"]) * LONGER))
        if twin is None:
            continue
        e = int(r["epochs"])
        train_cpu = cpu_per_pass(rows, r["net"], r["size"], key[3]) * key[2] * e
        gap = _f(r, "validation_error") - _f(twin, "validation_error")
        fit = _f(r, "train_error_inference")
        shortfall = max(0.0, fit - FIT_ERROR) + max(0.0, gap - GAP_PP)
        dropout = [d for d in rows if d["placement"] == "a" and _design_key(d) == key]
        out.append({"run": r["run"], "net": r["net"], "size": r["size"],
                    "size_keywords": r["size_keywords"], "n_train": key[2],
                    "batch_size": key[3], "epochs": e, "lr": _f(r, "lr"),
                    "warmup_epochs": _f(r, "warmup_epochs"),
                    "validation_error": _f(r, "validation_error"),
                    "train_error_inference": fit,
                    "validation_error_4x": _f(twin, "validation_error"), "gap": gap,
                    "cpu_s": _f(r, "cpu_s"), "train_cpu_s": train_cpu,
                    "overhead_cpu_s": _f(r, "cpu_s") - train_cpu,
                    "meets": fit <= FIT_ERROR and gap <= GAP_PP, "shortfall": shortfall,
                    "a_validation_error": _f(dropout[0], "validation_error") if dropout else None,
                    "a_train_acc_train_mode":
                        _f(dropout[0], "train_acc_train_mode") if dropout else None})
    return out


def plan_core_seconds(train_cpu_s, noise=NOISE_COST, overhead_s=None):
    """Core-seconds of quick's confirmatory runs for designs whose no-dropout runs train in
    ``train_cpu_s`` CPU-seconds each (one per network): each run's training times the noise
    layers' cost, over ``1 - OUTSIDE_TRAINING``; or, with ``overhead_s`` (one per network),
    plus that many CPU-seconds a run instead."""
    per_setting = (1 + (PRIMARY_SETTINGS - 1) * noise) / PRIMARY_SETTINGS
    if overhead_s is None:
        per_seed = PRIMARY_SETTINGS * sum(train_cpu_s) * per_setting / (1 - OUTSIDE_TRAINING)
    else:
        per_seed = PRIMARY_SETTINGS * (sum(train_cpu_s) * per_setting + sum(overhead_s))
    return SEEDS * per_seed * (1 + SECONDARY_SHARE)


def plans(rows):
    """Every (PreResNet design, WRN design) pair on the same ``n_train``, with its cost,
    whether it fits :data:`BUDGET_CORE_S`, meets the target, its shortfall and mean error."""
    ds = designs(rows)
    noise = NOISE_COST
    out = []
    for p in (d for d in ds if d["net"] == "preresnet"):
        for w in (d for d in ds if d["net"] == "wrn" and d["n_train"] == p["n_train"]):
            core_s = plan_core_seconds((p["train_cpu_s"], w["train_cpu_s"]), noise)
            measured = plan_core_seconds((p["train_cpu_s"], w["train_cpu_s"]), noise,
                                         (p["overhead_cpu_s"], w["overhead_cpu_s"]))
            out.append({"preresnet": p["run"], "wrn": w["run"], "n_train": p["n_train"],
                        "core_s": core_s, "core_s_search_overhead": measured,
                        "fits": core_s <= BUDGET_CORE_S,
                        "meets": p["meets"] and w["meets"],
                        "shortfall": max(p["shortfall"], w["shortfall"]),
                        "validation_error": (p["validation_error"] + w["validation_error"]) / 2})
    return out


def wall_minutes(core_s):
    """Estimated wall minutes of a quick-like profile on 2 cores from a bare clone: its runs'
    core-seconds on two single-threaded workers, plus set-up, theory targets and report."""
    return core_s / 2 / 60 + (30 - BUDGET_CORE_S / 120)


def confirm_plan(rows):
    """The cheapest plan whose two designs meet the convergence target, whatever its cost
    (a longer "confirm" profile), or ``None``."""
    meeting = [p for p in plans(rows) if p["meets"]]
    return min(meeting, key=lambda p: p["core_s"]) if meeting else None


def select(rows):
    """The rule (module docstring): ``(plan dict or None, every plan)``."""
    every = plans(rows)
    fits = [p for p in every if p["fits"]]
    if not fits:
        return None, every
    meeting = [p for p in fits if p["meets"]]
    if meeting:
        return min(meeting, key=lambda p: (p["validation_error"], p["core_s"])), every
    return min(fits, key=lambda p: (p["shortfall"], p["validation_error"], p["core_s"])), every


# ----------------------------------------------------------------------------------- the CSV
def read_rows(path):
    """The CSV's rows (``[]`` if it does not exist)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_rows(rows, path):
    """Write ``rows`` atomically (a temporary file, then a rename)."""
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def summary(rows):
    """The design table and the selected plan, as text."""
    lines = [f"{'design':40s} {'val%':>6s} {'train%':>6s} {'4x val%':>7s} {'gap':>5s} "
             f"{'trainCPU':>8s} {'runCPU':>7s} meets  (a) val%  (a) train-mode acc%"]
    for d in sorted(designs(rows), key=lambda d: (d["net"], d["n_train"], d["run"])):
        a = "" if d["a_validation_error"] is None else \
            f"{d['a_validation_error']:7.2f}  {d['a_train_acc_train_mode']:6.2f}"
        lines.append(f"{d['run']:40s} {d['validation_error']:6.2f} "
                     f"{d['train_error_inference']:6.2f} {d['validation_error_4x']:7.2f} "
                     f"{d['gap']:5.2f} {d['train_cpu_s']:8.1f} {d['cpu_s']:7.1f} "
                     f"{'yes' if d['meets'] else 'no ':5s}  {a}")
    best, every = select(rows)
    lines.append(f"noise-layer cost factor {NOISE_COST:.2f} (measured in these runs: "
                 f"{noise_cost(rows):.2f}); budget {BUDGET_CORE_S} "
                 f"core-s for {SEEDS} seeds x {PRIMARY_SETTINGS} settings x 2 networks "
                 f"(+{SECONDARY_SHARE:.0%})")
    for p in sorted(every, key=lambda p: p["core_s"]):
        mark = "  <- selected" if p is best else ""
        target = "meets the target" if p["meets"] else f"short by {p['shortfall']:.2f} pp"
        lines.append(f"plan {p['preresnet']} + {p['wrn']}: {p['core_s']:.0f} core-s "
                     f"(about {wall_minutes(p['core_s']):.0f} min from a bare clone on 2 cores; "
                     f"with this search's per-run overhead "
                     f"{wall_minutes(p['core_s_search_overhead']):.0f}), mean val "
                     f"{p['validation_error']:.2f}%, {'fits' if p['fits'] else 'over budget'}, "
                     f"{target}{mark}")
    confirm = confirm_plan(rows)
    if confirm is None:
        lines.append("no plan meets the convergence target")
    else:
        lines.append(f"cheapest plan meeting the target: {confirm['preresnet']} + "
                     f"{confirm['wrn']}, {confirm['core_s']:.0f} core-s, about "
                     f"{wall_minutes(confirm['core_s']):.0f} min from a bare clone on 2 cores")
    return "\n".join(lines)


def main(argv=None, *, run=run_one):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/regime_selection", help="trainer folders")
    parser.add_argument("--csv", default=str(CSV_PATH))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--stage", type=int, action="append", choices=sorted(ORDER),
                        help="run only these stages (default: all)")
    parser.add_argument("--summary", action="store_true", help="print the table, run nothing")
    args = parser.parse_args(argv)
    rows = read_rows(args.csv)
    if not args.summary:
        from varshift.train.config import thread_environment

        for key, value in thread_environment(1, "tensorflow").items():
            os.environ.setdefault(key, value)  # before TensorFlow starts: one thread
        done = {r["run"] for r in rows}
        todo = [(stage, spec) for stage in sorted(args.stage or ORDER) for spec in ORDER[stage]
                if run_key(*spec) not in done]
        started = time.time()
        for i, (stage, spec) in enumerate(todo, 1):
            row = run(spec, args.out, stage=stage, data_dir=args.data_dir)
            rows.append(row)
            write_rows(rows, args.csv)
            print(f"[{i}/{len(todo)}, {(time.time() - started) / 60:.1f} min] {row['run']}: "
                  f"validation {float(row['validation_error']):.2f}%, training (inference) "
                  f"{float(row['train_error_inference']):.2f}%, {float(row['cpu_s']):.1f} CPU-s",
                  flush=True)
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
