"""Converged BatchNormalization statistics: ``fit`` for 50 epochs vs ``converged_bn_statistics``.

The seed notebook trains ``Input(5) -> Dropout(0.2) -> BatchNormalization`` on N(5, 2^2) for
50-100 epochs only to let BN's moving averages converge. ``varshift.models.converged_bn_statistics``
computes the value they converge to with one training-mode pass and no gradient step (on the
:mod:`varshift.bnstats` engine; target: at least 100x faster than 50 epochs of ``fit``). This script
runs both on the same data in one process and prints the numbers, the difference and the speed-up.

    python benchmarks/bn_statistics.py [--epochs 50] [--features 5]

The moving average is itself random (momentum 0.99 averages roughly the last 200 batches), so its
per-feature values scatter by a few percent around their expectation; the script prints that
scatter (standard deviation of the stored value over the last 10 epochs) next to the difference.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from varshift import theory
    from varshift._keras import keras as load_keras
    from varshift._keras import to_numpy
    from varshift.models import converged_bn_statistics, dropout_bn_model, seed_data

    keras = load_keras()
    keras.utils.set_random_seed(args.seed)
    x = seed_data(10_000, args.features, seed=args.seed)
    batch = 32

    # --- baseline: the seed notebook's way, fit until the moving averages converge -------------
    model = dropout_bn_model(args.features, args.rate, seed=args.seed)
    history = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            history.append(to_numpy(model.get_layer("bn").moving_variance).astype("float64"))

    t0 = time.perf_counter()
    model.fit(x, x, epochs=args.epochs, batch_size=batch, verbose=0, callbacks=[Record()])
    t_fit = time.perf_counter() - t0
    fit_mean = to_numpy(model.get_layer("bn").moving_mean).astype("float64")
    fit_var = history[-1]
    ema_scatter = np.std(np.stack(history[-10:]), axis=0)

    # --- varshift: one training-mode pass, exact averages ---------------------------------------
    fresh = dropout_bn_model(args.features, args.rate, seed=args.seed + 1)
    t0 = time.perf_counter()
    direct_mean, direct_var = converged_bn_statistics(fresh, x, batch_size=batch, seed=args.seed)["bn"]
    t_direct = time.perf_counter() - t0

    c, v = x.mean(0).astype("float64"), x.var(0).astype("float64")
    expected = theory.keras_expected_moving_variance(theory.dropout_train_variance(c, v, args.rate),
                                                     batch)
    rel = np.abs(direct_var / fit_var - 1)
    np.set_printoptions(precision=4, suppress=True)
    print(f"Dropout(rate={args.rate}) -> BN, {len(x)} x {args.features} samples of N(5, 2^2), "
          f"batch {batch}")
    print(f"  moving variance after fit ({args.epochs} epochs): {fit_var}")
    print(f"  converged_bn_statistics (1 pass)          : {direct_var}")
    print(f"  expected Keras value, Eq. 7 x (m-1)/m     : {expected}")
    print(f"  fit's own scatter over its last 10 epochs : {ema_scatter}")
    print(f"  moving mean: fit {fit_mean.mean():.4f}, direct {direct_mean.mean():.4f}")
    print(f"  relative difference per feature: {rel}  (max {rel.max():.2%}, "
          f"feature mean {abs(direct_var.mean() / fit_var.mean() - 1):.2%})")
    print(f"  wall time: fit {t_fit:.2f} s, direct {t_direct:.3f} s, "
          f"speed-up {t_fit / t_direct:.1f}x")
    ok = abs(direct_var.mean() / fit_var.mean() - 1) <= 0.02 and t_fit / t_direct >= 100
    print("  PASS" if ok else "  FAIL", "(criterion: feature-mean within 2%, speed-up >= 100x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
