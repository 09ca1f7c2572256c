"""The engine's speed on each Keras backend, TensorFlow and JAX side by side (ratios in one run).

For each backend installed (each measured in its own process, ``KERAS_BACKEND`` set there):

- ``recalibrate_bn`` one_pass / one warm ``predict`` over the same 10,000 images of a trained
  pre-activation residual net (Dropout before each BN), first call (tracing and the model copy
  included; goal <= 2) and a repeated call (the engine's compiled pass is cached per model;
  goal <= 1.3); also with ``inplace=True``, which makes no copy of the model;
- ``measure_shift`` / ``predict``, first call (goal <= 2) and repeated call (goal <= 1.2);
- each ratio in wall seconds and in CPU seconds of the process (less sensitive to other
  processes on a shared machine);
- ``converged_bn_statistics`` vs 50 epochs of ``fit`` on the seed notebook's model
  (Input(5) -> Dropout(0.2) -> BN, 10,000 samples, batch 32), first call (compilation
  included) and repeated call (goal >= 100x);
- trainer throughput: images/s of one ``fit`` epoch (after a warm-up epoch) of the small
  pre-activation ResNet on 28x28 inputs, batch 64.

    python benchmarks/backends.py [--images 10000] [--blocks 10] [--backends tensorflow,jax]
                                  [--engine-only]

On a shared machine other processes compete for the cores: compare the ratios, which are
taken within one process, more than the absolute seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def timed_cpu(fn):
    """``(wall seconds, CPU seconds of this process)`` of one call of ``fn``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _engine(keras, args):
    from recalibrate import residual_net

    import varshift

    keras.utils.set_random_seed(0)
    gen = np.random.default_rng(0)
    x = gen.normal(size=(args.images, 28, 28, 1)).astype("float32")
    y = gen.integers(0, 10, args.images)
    model = residual_net(keras, args.blocks, 0.3)
    model.fit(x[:2000], y[:2000], epochs=1, batch_size=128, verbose=0)
    bs = 256
    model.predict(x[:bs], batch_size=bs, verbose=0)  # warm-up of predict only
    runs = [timed_cpu(lambda: model.predict(x, batch_size=bs, verbose=0)) for _ in range(3)]
    out = {"predict_s": min(w for w, _ in runs), "predict_cpu_s": min(c for _, c in runs)}
    for name, fn in (
            ("one_pass", lambda: varshift.recalibrate_bn(model, x, batch_size=bs)),
            ("measure_shift", lambda: varshift.measure_shift(model, x, batch_size=bs)),
            ("one_pass_inplace",
             lambda: varshift.recalibrate_bn(model, x, batch_size=bs, inplace=True))):
        out[f"{name}_first_s"], out[f"{name}_first_cpu_s"] = timed_cpu(fn)
        again = [timed_cpu(fn) for _ in range(3)]
        out[f"{name}_again_s"] = min(w for w, _ in again)
        out[f"{name}_again_cpu_s"] = min(c for _, c in again)
    return out


def _converged(keras):
    from varshift.models import converged_bn_statistics, dropout_bn_model, seed_data

    keras.utils.set_random_seed(0)
    x = seed_data(10_000, 5, seed=0)
    model = dropout_bn_model(5, 0.2, seed=0)
    _, t_fit = timed(lambda: model.fit(x, x, epochs=50, batch_size=32, verbose=0))
    fit_var = keras.ops.convert_to_numpy(model.get_layer("bn").moving_variance)
    fresh = dropout_bn_model(5, 0.2, seed=1)
    result, t_first = timed(lambda: converged_bn_statistics(fresh, x, batch_size=32, seed=0))
    _, t_again = timed(lambda: converged_bn_statistics(fresh, x, batch_size=32, seed=0))
    return {"fit50_s": t_fit, "converged_first_s": t_first, "converged_again_s": t_again,
            "converged_vs_fit_rel": float(abs(result["bn"][1].mean() / fit_var.mean() - 1))}


def _throughput(keras):
    from varshift import nets

    keras.utils.set_random_seed(0)
    gen = np.random.default_rng(0)
    x = gen.normal(size=(2048, 28, 28, 1)).astype("float32")
    y = gen.integers(0, 10, 2048)
    model = nets.small("preresnet", placement="a", rate=0.5, input_shape=(28, 28, 1), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # compilation
    _, seconds = timed(lambda: model.fit(x, y, epochs=1, batch_size=64, verbose=0))
    return {"train_images_per_s": len(x) / seconds}


def child(args):
    sys.path.insert(0, str(HERE))
    from varshift._keras import keras as load_keras

    keras = load_keras()
    out = {"backend": keras.backend.backend()}
    out.update(_engine(keras, args))
    if not args.engine_only:
        out.update(_converged(keras))
        out.update(_throughput(keras))
    print("RESULT " + json.dumps(out), flush=True)


def _installed(backend):
    return importlib.util.find_spec("tensorflow" if backend == "tensorflow" else backend)


def _row(label, values, fmt):
    return f"  {label:44s}" + "".join(f"{fmt.format(v) if v is not None else '-':>14s}"
                                      for v in values)


def report(results):
    names = [r["backend"] for r in results]
    print(f"{'':46s}" + "".join(f"{n:>14s}" for n in names))

    def col(fn):
        return [fn(r) for r in results]

    print(_row("predict, 10k images (s)", col(lambda r: r["predict_s"]), "{:.2f}"))
    print(_row("predict, 10k images (CPU s)", col(lambda r: r["predict_cpu_s"]), "{:.2f}"))
    for name, goal in (("one_pass", "1.3"), ("measure_shift", "1.2"),
                       ("one_pass_inplace", "1.3")):
        for call, key, limit in (("first call", "first", "2"), ("repeated call", "again", goal)):
            print(_row(f"{name} / predict, {call} (goal <= {limit})",
                       col(lambda r, n=name, k=key: r[f"{n}_{k}_s"] / r["predict_s"]), "{:.3f}"))
            print(_row("  same, CPU seconds",
                       col(lambda r, n=name, k=key: r[f"{n}_{k}_cpu_s"] / r["predict_cpu_s"]),
                       "{:.3f}"))
    if "fit50_s" not in results[0]:
        return
    print(_row("50 epochs of fit (s)", col(lambda r: r["fit50_s"]), "{:.1f}"))
    for call, key, goal in (("first call", "first", ""),
                            ("repeated call", "again", " (goal >= 100x)")):
        print(_row(f"converged_bn_statistics, {call} (s)",
                   col(lambda r, k=key: r[f"converged_{k}_s"]), "{:.3f}"))
        print(_row(f"  speed-up vs fit{goal}",
                   col(lambda r, k=key: r["fit50_s"] / r[f"converged_{k}_s"]), "{:.0f}x"))
    print(_row("|converged / fit - 1| of the variance", col(lambda r: r["converged_vs_fit_rel"]),
               "{:.2%}"))
    print(_row("trainer throughput (images/s)", col(lambda r: r["train_images_per_s"]), "{:.0f}"))
    fastest = max(results, key=lambda r: r["train_images_per_s"])["backend"]
    print(f"  faster trainer here: {fastest}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--engine-only", action="store_true",
                        help="measure recalibrate_bn and measure_shift only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    results = []
    for backend in args.backends.split(","):
        if not _installed(backend):
            print(f"{backend}: not installed, skipped")
            continue
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, __file__, "--child", "--images", str(args.images),
                   "--blocks", str(args.blocks), *(["--engine-only"] if args.engine_only else [])]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}")
            continue
        results.append(json.loads(lines[-1][len("RESULT "):]))
    if results:
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
