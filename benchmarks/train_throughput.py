"""Training throughput of varshift's trainer against plain Keras ``fit`` and the fastest paths,
in one run.

Every path trains the same network (``varshift.nets``, small size, dropout-(a)) on the same
arrays (generated images of quick's shape, 28x28x1) at the same batch size, with one CPU
thread, each in a fresh process (so backends and thread pools do not meet):

- ``trainer``: ``varshift.train.run``'s epoch loop (``trainer.train_epochs``: each epoch's data
  pipeline, training pass and, with ``--epoch-eval``, the per-epoch evaluation passes Fig. 5's
  runs make), after a warm-up (tracing) epoch;
- ``fit``: plain ``model.fit`` on the normalised float32 arrays (``shuffle=True``), after a
  warm-up epoch;
- ``fit-jax`` / ``fit-torch``: the same on Keras' JAX / PyTorch backend (``--python-jax``,
  ``--python-torch``: an interpreter that has that backend; default: this one, where it does);
- ``jax-step``: a hand-written ``jax.jit`` step over ``model.stateless_call`` with PyTorch's SGD
  (momentum, coupled L2), batches fed from numpy.

Printed: images/s (wall; and per CPU-second, which a shared machine's load distorts less) per
path and network, the best of ``--rounds`` rounds (paths alternate within a round), the ratio
trainer / fit on the same backend (target >= 0.9), and every path against the fastest.

    python benchmarks/train_throughput.py [--nets preresnet wrn] [--batch-size 32]
        [--n-train 4000] [--epochs 2] [--rounds 2] [--epoch-eval]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

SHAPE = (28, 28, 1)
#: path -> Keras backend it runs on
PATHS = {"trainer": "tensorflow", "fit": "tensorflow", "fit-jax": "jax", "fit-torch": "torch",
         "jax-step": "jax"}


# ------------------------------------------------------------------------------- the workers
def _data(args):
    from varshift import data as vdata

    (x, y), _, info = vdata.load("synthetic", seed=0, n_train=args.n_train, n_test=64,
                                 shape=SHAPE)
    return x, y, info


def _model(args, info):
    from varshift import nets, train

    model = nets.build(args.net, info["num_classes"], "a", "dropout", args.rate,
                       input_shape=tuple(info["shape"]), seed=0, **nets.SMALL_SIZES[args.net])
    recipe = train.recipe_for(args.net, "cpu", batch_size=args.batch_size, lr_drops=())
    return model, recipe


def _normalised(x, y):
    from varshift import data as vdata

    mean, std = vdata.channel_stats(x)
    xf = ((x.astype("float32") / 255.0 - mean.reshape(1, 1, 1, -1)) / std.reshape(1, 1, 1, -1))
    return xf.astype("float32"), y.astype("int32")


def _clock():
    return time.perf_counter(), time.process_time()


def _worker_trainer(args):
    import math

    from varshift.train import RunConfig, trainer

    cfg = RunConfig.from_any({
        "net": args.net, "size": "small", "data": "synthetic",
        "data_kwargs": {"n_train": args.n_train, "n_test": 64, "shape": list(SHAPE)},
        "recipe": "cpu", "batch_size": args.batch_size, "lr_drops": [], "placement": "a",
        "rate": args.rate, "augment": False, "seed": 0, "epoch_eval": args.epoch_eval,
        "train_eval_samples": 500, "stats_samples": 64, "epochs": 1 + args.epochs})
    size, recipe, augment = cfg.resolved()
    trainer.apply_threads(cfg.threads, cfg.backend)
    data = trainer.prepare_data(cfg, augment)
    steps = math.ceil(len(data.x_train) / recipe.batch_size)
    state = trainer.build_or_resume(cfg, size, recipe, data.info, steps_per_epoch=steps)
    eval_sets = trainer._eval_datasets(cfg, recipe, data)[:2]

    def epochs_until(n):  # the trainer's epoch loop (data, training, per-epoch evaluation)
        trainer.train_epochs(state, cfg, recipe.replace(epochs=n), data, eval_sets,
                             folder=None, started=time.time(), progress=False)

    epochs_until(1)  # tracing
    start = _clock()
    epochs_until(1 + args.epochs)
    return [e - s for e, s in zip(_clock(), start, strict=True)]


def _worker_fit(args):
    from varshift import train

    x, y, info = _data(args)
    xf, yi = _normalised(x, y)
    model, recipe = _model(args, info)
    train.compile_model(model, recipe)
    model.fit(xf, yi, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
    start = _clock()
    model.fit(xf, yi, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0)
    return [e - s for e, s in zip(_clock(), start, strict=True)]


def _worker_jax_step(args):
    import jax
    import jax.numpy as jnp
    import numpy as np

    x, y, info = _data(args)
    xf, yi = _normalised(x, y)
    model, recipe = _model(args, info)
    model(xf[:2])  # build
    lr, mu, wd = recipe.lr, recipe.momentum, recipe.weight_decay

    def loss_fn(tv, ntv, xb, yb):
        logits, ntv = model.stateless_call(tv, ntv, xb, training=True)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1)), ntv

    @jax.jit
    def step(tv, ntv, buf, xb, yb):
        (_, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, xb, yb)
        grads = [g + wd * w for g, w in zip(grads, tv, strict=True)]  # coupled L2
        buf = [mu * b + g for b, g in zip(buf, grads, strict=True)]
        return [w - lr * b for w, b in zip(tv, buf, strict=True)], ntv, buf

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    buf = [jnp.zeros_like(w) for w in tv]
    rng = np.random.default_rng(0)

    def epoch(state):
        order = rng.permutation(len(xf))
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            state = step(*state, xf[idx], yi[idx])
        jax.block_until_ready(state[0])
        return state

    state = epoch((tv, ntv, buf))  # tracing (and the last, smaller batch's)
    start = _clock()
    for _ in range(args.epochs):
        state = epoch(state)
    return [e - s for e, s in zip(_clock(), start, strict=True)]


WORKERS = {"trainer": _worker_trainer, "fit": _worker_fit, "fit-jax": _worker_fit,
           "fit-torch": _worker_fit, "jax-step": _worker_jax_step}


# ------------------------------------------------------------------------------- the driver
def _interpreter(args, backend):
    """The Python that runs ``backend``'s paths, or ``None`` where none has it."""
    given = {"jax": args.python_jax, "torch": args.python_torch}.get(backend)
    if given:
        return given
    return sys.executable if importlib.util.find_spec(backend) is not None else None


def _run_path(args, path, net, python):
    from varshift.train.config import thread_environment

    backend = PATHS[path]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
           **thread_environment(1, backend, xla_flags=os.environ.get("XLA_FLAGS"))}
    cmd = [python, os.path.abspath(__file__), "--worker", path, "--nets", net,
           "--batch-size", str(args.batch_size), "--n-train", str(args.n_train),
           "--epochs", str(args.epochs), "--rate", str(args.rate)]
    if args.epoch_eval:
        cmd.append("--epoch-eval")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(f"  {path} on {net} failed: {res.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    wall, cpu = json.loads(res.stdout.strip().splitlines()[-1])
    n = args.n_train * args.epochs
    return n / wall, n / cpu


def _report(args, best):
    print(f"\nimages/s, best of {args.rounds} rounds (batch {args.batch_size}, {args.n_train} "
          f"images {SHAPE}, {args.epochs} timed epochs, one thread; wall | per CPU-second)")
    for net, paths in best.items():
        print(f"{net}:")
        fastest = max(w for w, _ in paths.values())
        for path, (wall, cpu) in paths.items():
            print(f"  {path:10s} {wall:8.1f} | {cpu:8.1f}   {wall / fastest:5.2f}x the fastest")
        if "trainer" in paths and "fit" in paths:
            (tw, tc), (fw, fc) = paths["trainer"], paths["fit"]
            loop = "whole loop incl. per-epoch evaluation" if args.epoch_eval else "whole loop"
            print(f"  trainer ({loop}) / plain fit, TensorFlow: {tw / fw:.3f} wall, "
                  f"{tc / fc:.3f} CPU  (target >= 0.9)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["preresnet", "wrn"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after a warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.5)
    parser.add_argument("--epoch-eval", action="store_true",
                        help="the trainer's per-epoch evaluation (Fig. 5's runs)")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--python-jax", help="interpreter with Keras on JAX")
    parser.add_argument("--python-torch", help="interpreter with Keras on PyTorch")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.net = args.nets[0]
        print(json.dumps(WORKERS[args.worker](args)))
        return
    pythons = {p: _interpreter(args, PATHS[p]) for p in args.paths}
    for path, python in pythons.items():
        if python is None:
            print(f"skipped {path}: no interpreter with Keras' {PATHS[path]} backend "
                  f"(--python-{PATHS[path]})")
    best = {net: {} for net in args.nets}
    for r in range(args.rounds):
        for net in args.nets:
            for path, python in pythons.items():
                if python is None:
                    continue
                got = _run_path(args, path, net, python)
                if got is None:
                    continue
                print(f"  round {r + 1}: {net:10s} {path:10s} {got[0]:8.1f} img/s wall, "
                      f"{got[1]:8.1f} per CPU-s", flush=True)
                old = best[net].get(path, (0.0, 0.0))
                best[net][path] = (max(old[0], got[0]), max(old[1], got[1]))
    _report(args, best)


if __name__ == "__main__":
    main()
