"""Converged references: how far a profile's networks are from convergence, and whether its
effects are effects of training too briefly.

**quick** (:func:`quick_specs`). For each network quick trains, the runs of its primary
settings (no dropout and dropout-(a) 0.5 on every network; dropout 0.5 after the last BN and
Uout in position b at beta 0.5 on the table networks, as Tables 4 and 6 run them) are trained
again for :data:`FACTOR` times quick's epochs (the warm-up stretched with them: the same
schedule shape), on the first :data:`QUICK_SEEDS` of quick's seeds, so each seed's training
draw, initialisation and test images are quick's own. Nothing but the epochs changes; the
Adjust BN and Fig. 6 evaluations are left out and the training error in inference mode is
scored on all the run's training images. The rows, with quick's own test error of the same
run beside each, are committed as ``reproduce/data/converged_quick.csv``; the quick report
prints them. The references read quick's test images after quick's verdicts were fixed; they
are descriptive and choose nothing.

**pilot** (:func:`config_for`). For each network the pilot trained (PreResNet and WRN;
DenseNet-BC until quick dropped it to fit its budget, its row kept), at their small sizes, the
no-dropout network is trained once (seed 0) on the pilot's 4,000 Fashion-MNIST training images
with the pilot's recipe, for :data:`EPOCHS` epochs (7.5 times the pilot's 4; WRN, the
cheapest, 50), scored on the pilot's 4,000 test images and, in inference mode, on all 4,000
training images: ``reproduce/data/converged_reference.csv``.

Run (resumable: finished runs are read back from their records)::

    nice -n 10 python -m reproduce.converged --profile quick --jobs 2 [--out results/converged-quick]
        [--quick-out results/quick]
    nice -n 10 python -m reproduce.converged --profile pilot [--net wrn] [--epochs 30]

Cost of quick's references: 3 seeds x (2 + 4) runs, each 4 x quick's epochs on 600 images;
about 1,400 CPU-seconds (``reproduce/data/regime_selection.csv``: 111 s for PreResNet d11w8 at
160 epochs, 49 s for WRN at 80).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

__all__ = ["PROFILE", "EPOCHS", "NETWORKS", "COLUMNS", "config_for", "run_one", "main", "CSV_PATH",
           "FACTOR", "QUICK_SEEDS", "QUICK_CSV", "QUICK_COLUMNS", "quick_settings", "quick_specs",
           "quick_rows", "read_quick"]

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


#: quick's references train this many times quick's epochs (the convergence target's twin)
FACTOR = 4
#: the references use quick's first 3 seeds: a mean with a spread, at about 1,400 CPU-seconds
#: (5 seeds would take about 2,300)
QUICK_SEEDS = 3
QUICK_CSV = Path(__file__).parent / "data" / "converged_quick.csv"
QUICK_COLUMNS = ("net", "placement", "noise", "value", "seed", "epochs", "quick_epochs",
                 "n_train", "n_test", "test_error", "quick_test_error",
                 "train_error_inference", "key", "quick_key")


def quick_settings(profile):
    """``[(net, placement, noise, value)]``: quick's primary settings, where quick runs them."""
    out = []
    for net in profile.networks:
        out += [(net, "none", "dropout", 0.0), (net, "a", "dropout", 0.5)]
        if net in profile.table_networks:
            out += [(net, "after_bn", "dropout", 0.5), (net, "b", "uout", 0.5)]
    return out


def _longer(spec, profile):
    """``spec``'s run for :data:`FACTOR` times its epochs (warm-up stretched), without the
    end-of-run artefacts, its training error scored on all its training images."""
    import copy

    from reproduce.evaluations import evaluations_config
    from reproduce.plan import RunSpec, run_key

    cfg = copy.deepcopy(spec.config)
    o = cfg["overrides"]
    cfg["overrides"] = {**o, "epochs": FACTOR * int(o["epochs"]),
                        "warmup_epochs": FACTOR * float(o["warmup_epochs"])}
    cfg.update(epoch_eval=False, train_eval_samples=int(profile.subset["n_train"]),
               evaluations=evaluations_config())
    return RunSpec(config=cfg, key=run_key(cfg))


def quick_specs(seeds=QUICK_SEEDS, profile_name="quick"):
    """``[(quick's spec, its reference spec)]`` of every setting and seed."""
    from reproduce.plan import run_spec
    from reproduce.profiles import get_profile

    profile = get_profile(profile_name)
    pairs = []
    for net, placement, noise, value in quick_settings(profile):
        param = "beta" if noise == "uout" else "rate"
        for seed in profile.seed_list()[:seeds]:
            spec = run_spec(profile, net, placement, noise=noise, seed=seed, **{param: value})
            pairs.append((spec, _longer(spec, profile)))
    return pairs


def quick_rows(pairs, out, quick_out=None):
    """CSV rows of the finished references in ``out`` (quick's own record from ``quick_out``
    beside each, where it is there)."""
    from reproduce.plan import noise_value
    from reproduce.store import RunStore

    store, theirs = RunStore(out), (RunStore(quick_out) if quick_out else None)
    rows = []
    for spec, ref in pairs:
        rec = store.find(ref)
        if rec is None:
            continue
        rec = rec["record"]
        mine = theirs.find(spec) if theirs is not None else None
        mine = mine["record"] if mine else None
        c = ref.config
        rows.append({
            "net": c["net"], "placement": c["placement"], "noise": c["noise"],
            "value": noise_value(c), "seed": c["seed"], "epochs": c["overrides"]["epochs"],
            "quick_epochs": spec.config["overrides"]["epochs"],
            "n_train": rec["data"]["n_train"], "n_test": rec["data"]["n_test"],
            "test_error": round(rec["final"]["test_error"], 3),
            "quick_test_error": (round(mine["final"]["test_error"], 3) if mine else ""),
            "train_error_inference": round(rec["final"]["train_error_inference"], 3),
            "key": ref.key, "quick_key": spec.key})
    return rows


def read_quick(path=QUICK_CSV):
    """The rows of ``converged_quick.csv`` (``[]`` where it is missing)."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _run_quick(args):
    from reproduce.executors import execute_plan

    pairs = quick_specs(args.seeds)
    done = [0]

    def on_done(spec, wall, cached):
        done[0] += 1
        print(f"[{done[0]}/{len(pairs)}] {spec.label}: {'cached' if cached else f'{wall:.0f} s'}",
              flush=True)

    execute_plan([ref for _, ref in pairs], args.out, data_dir=args.data_dir, jobs=args.jobs,
                 on_done=on_done)
    rows = quick_rows(pairs, args.out, args.quick_out)
    with open(args.csv or QUICK_CSV, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=QUICK_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {args.csv or QUICK_CSV}", flush=True)
    return 0


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
    parser.add_argument("--profile", choices=("quick", "pilot"), default="quick")
    parser.add_argument("--net", action="append", choices=NETWORKS,
                        help="pilot: network(s) to run (default: all three)")
    parser.add_argument("--out", default=None, help="trainer folders / run store")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="pilot: epochs")
    parser.add_argument("--seeds", type=int, default=QUICK_SEEDS, choices=range(1, 11),
                        metavar="1..10", help="quick: how many of quick's seeds")
    parser.add_argument("--jobs", type=int, default=1, choices=range(1, 65), metavar="1..64")
    parser.add_argument("--quick-out", default=None,
                        help="quick: the quick run store whose test errors go beside")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    if args.profile == "quick":
        args.out = args.out or "results/converged-quick"
        return _run_quick(args)
    for net in args.net or NETWORKS:
        row = run_one(net, args.out or "results/converged", args.epochs, args.data_dir)
        write_rows([row], args.csv or CSV_PATH)
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
