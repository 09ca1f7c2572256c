"""The converged reference of the pilot (quick's first design): how far its networks are from
convergence.

For each network the pilot trained (PreResNet and WRN; DenseNet-BC until quick dropped it
to fit its budget, its row kept), at their small sizes, the no-dropout
network is trained once (seed 0) on quick's 4,000 Fashion-MNIST training images with the
recipe quick uses, for :data:`EPOCHS` epochs (7.5 times quick's 4; WRN, the cheapest, 50), and
scored on quick's 4,000 test images and, in inference mode, on all its 4,000 training images. The numbers are
committed as ``reproduce/data/converged_reference.csv``; the report prints each network's quick
baseline beside them. This is a reference, not a choice: nothing is selected on it.

Run (resumable: each network's trainer folder under ``OUT`` keeps its checkpoint; a finished
network is read back from its record)::

    nice -n 10 python -m reproduce.converged [--net wrn] [--out results/converged] [--epochs 30]

Cost: about 30 epochs x 4,000 images per network, 3-7 CPU-minutes per network on one thread
(``RUN_COST`` in :mod:`reproduce.cost`).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

__all__ = ["PROFILE", "EPOCHS", "NETWORKS", "COLUMNS", "config_for", "run_one", "main", "CSV_PATH"]

#: the profile whose networks, images and recipe the reference trains longer
PROFILE = "pilot"
#: the networks with a reference: the pilot's (PreResNet, WRN) and DenseNet-BC
NETWORKS = ("preresnet", "wrn", "densenet_bc")
#: 7.5 times quick's 4 epochs (WRN, the cheapest, was run for 50: ``--epochs 50``)
EPOCHS = 30
CSV_PATH = Path(__file__).parent / "data" / "converged_reference.csv"
COLUMNS = ("net", "data", "n_train", "n_test", "epochs", "batch_size", "schedule", "lr",
           "warmup_epochs", "seed", "test_error", "train_error_inference", "wall_s",
           "measured_on")


def config_for(net, epochs=EPOCHS):
    """The trainer config of ``net``'s reference: the pilot's data, size and recipe, ``epochs``."""
    from reproduce.profiles import get_profile

    quick = get_profile(PROFILE)
    overrides = {**quick.recipe, "epochs": int(epochs)}  # the warm-up keeps its length
    return {"net": net, "size": "small", "placement": "none", "rate": 0.0,
            "data": quick.data[0], "recipe": quick.recipe_kind, "overrides": overrides,
            "seed": 0, "subset": dict(quick.subset), "epoch_eval": False,
            "train_eval_samples": None, "stats_samples": quick.eval_samples}


def run_one(net, out_root, epochs=EPOCHS, data_dir=None, threads=1):
    """Train (or resume, or read back) ``net``'s reference; return its CSV row."""
    import varshift

    varshift.load_keras()  # TensorFlow imported quietly, then configured
    import tensorflow as t

    try:
        t.config.threading.set_intra_op_parallelism_threads(threads)
        t.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised
        pass
    from varshift import train

    cfg = {**config_for(net, epochs), "data_dir": data_dir}
    started = time.time()
    rec = train.run(cfg, out_dir=os.path.join(out_root, net), progress=True,
                    checkpoint_seconds=120.0)
    recipe = rec["config"]["recipe_resolved"]
    return {"net": net, "data": rec["data"]["name"], "n_train": rec["data"]["n_train"],
            "n_test": rec["data"]["n_test"], "epochs": recipe["epochs"],
            "batch_size": recipe["batch_size"], "schedule": recipe["schedule"],
            "lr": recipe["lr"], "warmup_epochs": recipe["warmup_epochs"], "seed": rec["seed"],
            "test_error": round(rec["final"]["test_error"], 3),
            "train_error_inference": round(rec["final"]["train_error_inference"], 3),
            "wall_s": round(rec["wall_time"] if rec.get("wall_time") else time.time() - started),
            "measured_on": time.strftime("%Y-%m-%d", time.gmtime()) + " "
                           + f"{os.cpu_count()}-core CPU, 1 thread, TF "
                           + rec["versions"]["tensorflow"]}


def write_rows(rows, path=CSV_PATH):
    """Merge ``rows`` into the CSV at ``path`` (one row per network, in :data:`NETWORKS` order)."""
    old = {}
    if Path(path).is_file():
        with open(path, newline="") as fh:
            old = {r["net"]: r for r in csv.DictReader(fh)}
    old.update({r["net"]: r for r in rows})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for net in sorted(old, key=lambda n: NETWORKS.index(n) if n in NETWORKS else 99):
            w.writerow({k: old[net].get(k, "") for k in COLUMNS})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", action="append", choices=NETWORKS,
                        help="network(s) to run (default: all three)")
    parser.add_argument("--out", default="results/converged", help="trainer folders")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--csv", default=str(CSV_PATH))
    args = parser.parse_args(argv)
    for net in args.net or NETWORKS:
        row = run_one(net, args.out, args.epochs, args.data_dir)
        write_rows([row], args.csv)
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
