"""Quick's recipe, chosen on a validation split of its training images (the test set unread).

Quick trains on 4,000 Fashion-MNIST training images. Here those 4,000 are split into 3,200 for
training and 800 (class-stratified, the same for every run: ``RunConfig(validation=800)``) for
validation, and the candidate recipes of :data:`CANDIDATES` are compared on the validation
error. The rule, fixed before the runs: **the candidate with the lowest mean validation error
over the cells of** :data:`CELLS` (one seed each) **among those whose CPU cost fits quick's
budget** (``fits_budget``) is quick's recipe. Test images are never evaluated.

The cells are the no-dropout PreResNet and WRN: how well the recipe trains the networks. The
batch-64 candidate repeats, on validation images, the choice of batch 32 that was once made
on test images.

Run (resumable: finished rows are kept in the CSV, an unfinished run resumes from its folder)::

    nice -n 10 python -m reproduce.recipe_selection [--out results/recipe_selection]

It writes ``reproduce/data/recipe_selection.csv`` (one row per candidate and cell, then one
``mean`` row per candidate) and prints progress. 10 runs of 20-45 CPU-s each.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

__all__ = ["CANDIDATES", "CELLS", "VALIDATION", "N_TRAIN", "run_one", "select", "main",
           "CSV_PATH"]

N_TRAIN, VALIDATION = 4000, 800
CSV_PATH = Path(__file__).parent / "data" / "recipe_selection.csv"
#: candidate -> (recipe overrides of the cpu recipe, whether it fits quick's budget). The cost
#: of training is proportional to the epochs (about the same at batch 32 and 64). Quick's
#: budget (``reproduce.profiles``: two networks, 5 seeds) holds 4 epochs, estimated 23.5 min;
#: a fifth epoch adds 4.3 min (27.8, plus 1-2 min of set-up), which the day-to-day variation
#: of about 15% of a shared 2-core CPU would take past 30 min, so the 5-epoch candidates are shown for what
#: a fifth epoch would buy, not chosen.
CANDIDATES = {
    "b32_cosine_e4": ({"epochs": 4, "batch_size": 32, "lr": 0.05, "schedule": "cosine",
                       "warmup_epochs": 0.5, "lr_drops": []}, True),
    "old_b32_step": ({"epochs": 4, "batch_size": 32, "lr": 0.05, "schedule": "step",
                      "lr_drops": [2, 3]}, True),
    "old_b64_step": ({"epochs": 4, "batch_size": 64, "lr": 0.05, "schedule": "step",
                      "lr_drops": [2, 3]}, True),
    "b32_cosine_e5": ({"epochs": 5, "batch_size": 32, "lr": 0.05, "schedule": "cosine",
                       "warmup_epochs": 0.5, "lr_drops": []}, False),
    "b32_step_e5": ({"epochs": 5, "batch_size": 32, "lr": 0.05, "schedule": "step",
                     "lr_drops": [3, 4]}, False),
}
#: (net, placement, rate), most informative first. A third cell, PreResNet with dropout-(b)
#: 0.5, was planned and dropped before its runs started: the shared machine (load 14 on 2
#: cores) could not run it before the deadline
CELLS = (("preresnet", "none", 0.0), ("wrn", "none", 0.0))
#: the order of the runs, the decisive comparison first (an interrupted selection has it)
ORDER = (("b32_cosine_e4", 0), ("old_b32_step", 0), ("b32_cosine_e4", 1), ("old_b32_step", 1),
         ("old_b64_step", 0), ("old_b64_step", 1), ("b32_cosine_e5", 0), ("b32_step_e5", 0),
         ("b32_cosine_e5", 1), ("b32_step_e5", 1))
SEED = 0
COLUMNS = ("candidate", "net", "placement", "rate", "seed", "epochs", "batch_size", "lr",
           "schedule", "warmup_epochs", "lr_drops", "n_train", "n_validation",
           "validation_error", "train_error_inference", "fits_budget", "selected")


def config_for(candidate, net, placement, rate, seed=SEED):
    """The trainer config of one run: quick's data and small size, 3,200 + 800 images."""
    overrides, _ = CANDIDATES[candidate]
    return {"net": net, "size": "small", "placement": placement, "rate": rate,
            "data": "fashion_mnist", "recipe": "cpu", "overrides": dict(overrides),
            "seed": seed, "subset": {"n_train": N_TRAIN, "n_test": 1},
            "validation": VALIDATION, "epoch_eval": False,
            "train_eval_samples": 500, "stats_samples": 500}


def run_one(candidate, net, placement, rate, out_root, seed=SEED, data_dir=None):
    """Train one candidate on one cell; return its CSV row (validation error, %)."""
    from varshift import train

    cfg = {**config_for(candidate, net, placement, rate, seed), "data_dir": data_dir}
    folder = os.path.join(out_root, f"{candidate}-{net}-{placement}-{rate:g}-{seed}")
    rec = train.run(cfg, out_dir=folder, progress=False)
    assert rec["data"]["validation"]["n_validation"] == VALIDATION  # test set not used
    r = rec["config"]["recipe_resolved"]
    return {"candidate": candidate, "net": net, "placement": placement, "rate": rate,
            "seed": seed, "epochs": r["epochs"], "batch_size": r["batch_size"], "lr": r["lr"],
            "schedule": r["schedule"], "warmup_epochs": r["warmup_epochs"],
            "lr_drops": " ".join(map(str, r["lr_drops"])), "n_train": rec["data"]["n_train"],
            "n_validation": rec["data"]["n_test"],
            "validation_error": round(rec["final"]["test_error"], 3),
            "train_error_inference": round(rec["final"]["train_error_inference"], 3),
            "fits_budget": CANDIDATES[candidate][1], "selected": ""}


def select(rows):
    """The rule: lowest mean validation error over every cell, among the complete candidates
    that fit the budget. Returns ``(name or None, {candidate: mean})``."""
    means = {}
    for cand in CANDIDATES:
        errs = [float(r["validation_error"]) for r in rows
                if r["candidate"] == cand and r["net"] != "mean"]
        if len(errs) == len(CELLS):
            means[cand] = sum(errs) / len(errs)
    fits = {c: m for c, m in means.items() if CANDIDATES[c][1]}
    return (min(fits, key=fits.get) if fits else None), means


def _read(path):
    if not Path(path).is_file():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["net"] != "mean"]


def _write(rows, path):
    best, means = select(rows)
    out = [{**r, "fits_budget": CANDIDATES[r["candidate"]][1], "selected": ""} for r in rows]
    for cand, mean in means.items():
        o = CANDIDATES[cand][0]
        out.append({"candidate": cand, "net": "mean", "placement": "", "rate": "",
                    "seed": SEED, "epochs": o["epochs"], "batch_size": o["batch_size"],
                    "lr": o["lr"], "schedule": o["schedule"],
                    "warmup_epochs": o.get("warmup_epochs", 0.0),
                    "lr_drops": " ".join(map(str, o["lr_drops"])), "n_train": N_TRAIN - VALIDATION,
                    "n_validation": VALIDATION, "validation_error": round(mean, 3),
                    "train_error_inference": "", "fits_budget": CANDIDATES[cand][1],
                    "selected": cand == best})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(out)
    return best, means


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/recipe_selection", help="trainer folders")
    parser.add_argument("--csv", default=str(CSV_PATH))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    rows = _read(args.csv)
    done = {(r["candidate"], r["net"], r["placement"], float(r["rate"])) for r in rows}
    todo = [(c, *CELLS[i]) for c, i in ORDER if (c, *CELLS[i]) not in done]
    for i, (cand, net, placement, rate) in enumerate(todo, 1):
        row = run_one(cand, net, placement, rate, args.out, data_dir=args.data_dir)
        rows.append(row)
        _write(rows, args.csv)
        print(f"[{i}/{len(todo)}] {cand} {net} {placement} {rate:g}: validation error "
              f"{row['validation_error']:.2f}%", flush=True)
    best, means = _write(rows, args.csv)
    for cand, mean in means.items():
        print(f"{cand:22s} mean validation error {mean:6.2f}%{'  <- selected' if cand == best else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
