"""Training throughput of varshift.train's loop against a plain ``model.fit``, in one run.

Both train the same network (same size, same CoupledSGD, same compiled loss/metric) on the same
data through the same ``tf.data`` pipeline. ``varshift.train.run`` calls ``fit`` once per epoch
(to set the learning rate, reseed the noise and checkpoint) and adds evaluation passes; the plain
baseline is a single ``model.fit(ds, epochs=E)``. The first epoch of each (tracing) is excluded.

The two are run in alternating rounds (``--rounds``) because a shared machine's speed drifts;
printed are the best images/s of each over the rounds, the ratio of the bests, and the median
of the per-round ratios (target >= 0.9), plus varshift's whole-loop images/s including its
checkpoints (at most one every ``--checkpoint-seconds``, the trainer's default 60) and, with
``--epoch-eval``, the per-epoch evaluation passes that only Fig. 5's runs make (extra work a
plain fit does not do).

    python benchmarks/train_throughput.py [--net preresnet] [--epochs 3] [--n-train 2048]
        [--epoch-eval] [--checkpoint-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default="preresnet")
    parser.add_argument("--size", default="small", help="'small' or 'paper'")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (+1 warm-up)")
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--placement", default="a")
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--augment", action="store_true", help="pad-crop-flip augmentation")
    parser.add_argument("--epoch-eval", action="store_true",
                        help="per-epoch evaluation passes (as Fig. 5's runs)")
    parser.add_argument("--checkpoint-seconds", type=float, default=60.0,
                        help="the trainer's checkpoint interval (0: every epoch, as before)")
    parser.add_argument("--schedule", default="step", choices=("step", "cosine"))
    args = parser.parse_args(argv)

    from varshift import data as vdata
    from varshift import nets, train

    size = {} if args.size == "paper" else dict(nets.SMALL_SIZES[args.net])
    epochs = args.epochs + 1
    data_kwargs = {"n_train": args.n_train, "n_test": 512}
    config = {"net": args.net, "size": size, "data": "synthetic", "data_kwargs": data_kwargs,
              "recipe": "cpu", "epochs": epochs, "batch_size": args.batch_size, "lr_drops": [],
              "placement": args.placement, "rate": args.rate, "augment": args.augment,
              "train_eval_samples": 1024, "stats_samples": 512, "adjust": False, "seed": 0,
              "epoch_eval": args.epoch_eval, "schedule": args.schedule}

    (x, y), _, info = vdata.load("synthetic", seed=0, **data_kwargs)
    mean, std = vdata.channel_stats(x)
    recipe = train.recipe_for(args.net, "cpu", batch_size=args.batch_size)

    def varshift_round():
        # checkpointing into a temporary folder, as a real run does
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            rec = train.run(config, out_dir=out, progress=False, resume=False,
                            checkpoint_seconds=args.checkpoint_seconds)
            whole = time.perf_counter() - t0
        timed = rec["history"][1:]
        n = args.n_train * len(timed)
        return n / sum(h["seconds"] for h in timed), n / (whole - rec["history"][0]["seconds"])

    def plain_round():
        model = nets.build(args.net, info["num_classes"], args.placement, "dropout", args.rate,
                           input_shape=tuple(info["shape"]), seed=0, **size)
        train.compile_model(model, recipe)
        ds = vdata.make_dataset(x, y, batch_size=args.batch_size, training=True,
                                augment=args.augment, mean=mean, std=std, seed=0)
        model.fit(ds, epochs=1, shuffle=False, verbose=0)  # warm-up (tracing)
        t0 = time.perf_counter()
        model.fit(ds, epochs=args.epochs, shuffle=False, verbose=0)
        return args.n_train * args.epochs / (time.perf_counter() - t0), model

    vs, loop, plain, ratios = [], [], [], []
    for _ in range(args.rounds):
        a, b = varshift_round()
        c, model = plain_round()
        vs.append(a)
        loop.append(b)
        plain.append(c)
        ratios.append(a / c)
        print(f"  round: varshift {a:8.1f}  plain {c:8.1f}  ratio {a / c:.3f}", flush=True)
    import numpy as np

    print(f"network: {args.net} ({args.size}), {nets.trainable_params(model):,} parameters, "
          f"{args.n_train} images {tuple(info['shape'])}, batch {args.batch_size}, "
          f"{args.epochs} timed epochs")
    print(f"plain model.fit          : {max(plain):9.1f} images/s (best of {args.rounds})")
    print(f"varshift.train (training): {max(vs):9.1f} images/s (best of {args.rounds})")
    print(f"ratio of bests           : {max(vs) / max(plain):9.3f}  (target >= 0.9)")
    print(f"median per-round ratio   : {float(np.median(ratios)):9.3f}")
    extra = "per-epoch evaluation and " if args.epoch_eval else ""
    print(f"varshift.train whole loop incl. {extra}checkpoints "
          f"(every >= {args.checkpoint_seconds:g} s): "
          f"{max(loop):9.1f} images/s (ratio to plain {max(loop) / max(plain):.3f})")


if __name__ == "__main__":
    main()
