"""Cost of ``varshift.measure_shift`` against one inference pass of the same model and data.

The target: on a conv net with about 20 BatchNormalization layers over 10,000 images,
``measure_shift`` (every BN layer's input moments, one forward pass per batch, on the
:mod:`varshift.bnstats` engine) costs at most 1.2x one ``predict`` pass (its own tracing
included in every call). This script builds such a net (random weights, 32x32x3 random
images), warms every function up once, then times, on the same batches:

- ``model.predict(x, batch_size)``;
- a compiled forward loop (``tf.function`` of ``model(x, training=False)`` over the batches);
- ``varshift.measure_shift(model, x, batch_size)``;

and prints the best of ``--repeats`` runs of each and the ratios.

    python benchmarks/measure_shift.py [--images 10000] [--blocks 20] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def conv_net(keras, blocks, seed=0):
    """``blocks`` x (Conv3x3 -> Dropout -> BN -> ReLU), widths 16/32/64, two stride-2 steps."""
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for i in range(blocks):
        stage = min(2, 3 * i // blocks)
        stride = 2 if i > 0 and 3 * i // blocks != 3 * (i - 1) // blocks else 1
        x = layers.Conv2D(16 * 2**stage, 3, strides=stride, padding="same", use_bias=False,
                          kernel_initializer=keras.initializers.HeNormal(seed + i))(x)
        x = layers.Dropout(0.2)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name=f"convnet{blocks}")


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    import varshift
    from varshift._keras import keras as load_keras
    from varshift.bnstats import bn_layers

    keras = load_keras()
    keras.utils.set_random_seed(0)
    model = conv_net(keras, args.blocks)
    x = np.random.default_rng(0).normal(size=(args.images, 32, 32, 3)).astype("float32")
    bs = args.batch_size
    n_bn = len(bn_layers(model))

    if keras.backend.backend() == "tensorflow":
        from varshift._keras import tf as load_tf

        tf = load_tf()
        forward = tf.function(lambda b: model(b, training=False), reduce_retracing=True)

        def loop():
            for s in range(0, len(x), bs):
                forward(tf.convert_to_tensor(x[s:s + bs])).numpy()
    else:  # the same loop over predict_on_batch (compiled by Keras on every backend)
        def loop():
            for s in range(0, len(x), bs):
                model.predict_on_batch(x[s:s + bs])

    def predict():
        model.predict(x, batch_size=bs, verbose=0)

    def measure():
        return varshift.measure_shift(model, x, batch_size=bs)

    for fn in (loop, predict, measure):  # warm-up: tracing and first-call costs
        fn() if fn is not measure else varshift.measure_shift(model, x[: 2 * bs], batch_size=bs)

    t_predict = best_time(predict, args.repeats)
    t_loop = best_time(loop, args.repeats)
    t_measure = best_time(measure, args.repeats)
    print(f"{model.name}: {n_bn} BN layers, {args.images} images 32x32x3, batch {bs}, "
          f"best of {args.repeats}")
    print(f"  model.predict          {t_predict:8.3f} s")
    print(f"  compiled forward loop  {t_loop:8.3f} s")
    print(f"  measure_shift          {t_measure:8.3f} s   (includes its one-time trace)")
    print(f"  ratio measure_shift / predict       {t_measure / t_predict:6.3f}  (target <= 1.2)")
    print(f"  ratio measure_shift / forward loop  {t_measure / t_loop:6.3f}")


if __name__ == "__main__":
    main()
