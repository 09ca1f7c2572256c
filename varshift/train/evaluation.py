r"""Evaluation hooks: measurements a caller adds to the end of a run, and what they are given.

:func:`varshift.train.run` trains, then evaluates what every run reports (test error, the
inference-mode error of a fixed training subset, the per-BN-layer shift). Anything else that
is measured on the trained network (a paper's table, a figure's raw outputs) is an
**evaluation hook**, supplied by the caller:

.. code-block:: python

    def flips(model, context):
        x = context.training_sample(256)[1]
        ...
        return {"flips": 0.12}

    train.run({**config, "evaluations": {"flips": {"images": 256}}},
              evaluations={"flips": flips})

A hook is a callable ``hook(model, context) -> dict`` whose items are added to the record's
``final`` block. Its name and its parameters (a JSON-ready dict) are part of the run's
configuration (``RunConfig.evaluations``), so a record, a resumed run and a cache key always
say which measurements were made and with which settings; the callables themselves are passed
to :func:`~varshift.train.run` and must be given for exactly the names the configuration
lists. Hooks run in the order of their names, after the trainer's own evaluation; a hook must
leave ``model`` as it found it (:func:`frozen_state` helps) and may not overwrite a field of
``final``.

The :class:`EvaluationContext` gives a hook the run's configuration, recipe and data, the
hook's own parameters, the seeded training sample the shift was measured on, the test error of
any model, and one compiled copy of the trained model shared by the hooks of a run
(:meth:`EvaluationContext.work_copy`), so that hooks which re-estimate BN statistics do not
each copy, compile and trace the network again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from varshift.seeds import derive_seed

__all__ = ["EvaluationContext", "frozen_state", "reseed_noise", "check_hooks",
           "training_mode_predictor"]


def check_hooks(names, evaluations):
    """``evaluations`` as a dict of callables, given for exactly the hook ``names`` of a run's
    configuration (``RunConfig.evaluations``); one line naming what is missing or extra."""
    evaluations = {} if evaluations is None else evaluations
    if not isinstance(evaluations, dict):
        raise TypeError("Argument `evaluations` must be a dict {name: callable(model, context) "
                        "-> dict} or None; received an object of type "
                        f"{type(evaluations).__name__}.")
    missing = [n for n in names if n not in evaluations]
    extra = sorted(set(evaluations) - set(names))
    if missing or extra:
        raise ValueError(
            f"Argument `evaluations` must give a callable for every hook the run config names "
            f"({list(names)}) and no other; missing {missing}, not in the config {extra}.")
    for name in names:
        if not callable(evaluations[name]):
            raise TypeError(f"Argument `evaluations[{name!r}]` must be callable(model, context) "
                            f"-> dict; received {evaluations[name]!r}.")
    return {name: evaluations[name] for name in sorted(names)}


@dataclass
class EvaluationContext:
    """What an evaluation hook sees besides the trained model.

    Args:
        config: the run's :class:`~varshift.train.RunConfig`.
        recipe: its resolved :class:`~varshift.train.Recipe`.
        params: this hook's parameters (``config.evaluations[name]``).
        x_train, y_train: the training images (uint8, NHWC) and labels the run trained on.
        x_test, y_test: the evaluation set (the test set, or the validation images when
            ``config.validation`` is set).
        mean, std: the per-channel normalisation statistics of the training images.
        augment: whether training augmented the images.
        info: the data set's description (the record's ``data``).
        test_dataset: the evaluation set, normalised, in batches of ``config.eval_batch_size``.
    """

    config: object
    recipe: object
    params: dict
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    augment: bool
    info: dict
    test_dataset: object
    _shared: dict = field(default_factory=dict, repr=False)

    @property
    def seed(self) -> int:
        """The run's seed."""
        return int(self.config.seed)

    def for_hook(self, params):
        """The same context with another hook's ``params`` (the work copy stays shared)."""
        import dataclasses

        return dataclasses.replace(self, params=dict(params))

    def training_sample(self, n):
        """``(indices, dataset)``: ``n`` training images (``None``: all), the first of a
        permutation seeded by the run's seed, augmented as in training by one fixed seeded
        draw (the same images in the same order on every iteration), normalised, in batches
        of ``eval_batch_size``: the sample the trainer measures the shift on when ``n`` is
        ``config.stats_samples``."""
        from varshift import data as vdata

        idx = vdata.subset_indices(self.y_train, n, self.seed, stratified=False)
        return idx, vdata.make_dataset(
            self.x_train[idx], self.y_train[idx], batch_size=self.config.eval_batch_size,
            training=True, augment=self.augment, mean=self.mean, std=self.std,
            seed=derive_seed(self.seed, "stats_data"))

    def images(self, indices):
        """The training images at ``indices``, un-augmented and normalised as in training, as
        one float32 array."""
        from varshift import data as vdata
        from varshift._keras import keras

        indices = np.asarray(indices)
        ds = vdata.make_dataset(self.x_train[indices], self.y_train[indices],
                                batch_size=len(indices), training=False, mean=self.mean,
                                std=self.std)
        return keras().ops.convert_to_numpy(next(iter(ds))[0])

    def test_error(self, model) -> float:
        """Test error (%) of ``model`` on :attr:`test_dataset` (``model`` compiled with an
        accuracy metric, as the trainer's model and :meth:`work_copy` are)."""
        return 100.0 * (1.0 - float(model.evaluate(self.test_dataset, verbose=0)[1]))

    def work_copy(self, model):
        """A compiled copy of ``model`` holding ``model``'s current weights and statistics.

        Made once per run and shared by its hooks (its compiled passes and evaluation
        function are reused); every call resets it to ``model``'s values, so a hook gets the
        same copy it would get from a fresh clone. Do not keep it across calls.
        """
        from varshift.diagnostics.recalibrate import copy_model
        from varshift.train.optim import compile_model

        work = self._shared.get("work")
        if work is None:
            work = compile_model(copy_model(model), self.recipe)
            self._shared["work"] = work
        else:
            work.set_weights(model.get_weights())
        return work


@contextlib.contextmanager
def frozen_state(model):
    """Restore ``model``'s non-trainable state (BN's moving statistics, noise seeds) on exit:
    Keras 3 BN updates its moving statistics on every ``training=True`` call."""
    from varshift._keras import keras

    ops = keras().ops
    saved = [ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    try:
        yield model
    finally:
        for v, value in zip(model.non_trainable_variables, saved, strict=True):
            v.assign(value)


def reseed_noise(model, seed, draw):
    """Set every noise layer's random state to a function of ``(seed, draw, layer)``.

    Keras keeps a layer's random state (``SeedGenerator``, ``[seed, counter]``) outside the
    saved weights; the trainer re-derives it at the start of every epoch (``draw`` = the
    epoch index), so an epoch's noise does not depend on whether the run was resumed. A
    hook that needs one reproducible noise draw uses a ``draw`` past any training epoch.
    """
    from varshift._keras import keras as _load
    from varshift._validate import check_positive_int, check_seed

    seed = check_seed(seed, "seed", allow_none=False, maximum=None)
    draw = check_positive_int("draw", draw, minimum=0)
    keras = _load()
    for i, layer in enumerate(model.layers):
        gen = getattr(layer, "seed_generator", None)
        state = getattr(gen, "state", None)
        if state is not None:
            if keras.backend.standardize_dtype(state.dtype) == "int64":  # TensorFlow
                value = np.array([derive_seed(seed, "noise_layer", i), draw << 32], np.int64)
            else:  # uint32 states (JAX, ...): draw << 32 would wrap to 0; the counter slot
                value = np.array([derive_seed(seed, "noise_layer", i) % 2**32, draw], np.uint32)
            state.assign(keras.ops.cast(value, state.dtype))


def training_mode_predictor(model):
    """A compiled ``x -> predicted class`` of ``model`` in training mode (noise on, BN on
    the batch's statistics), made once and called per batch.

    Consecutive calls draw consecutive noise masks, as eager calls would. On TensorFlow a
    ``tf.function`` (one trace for any batch size), which updates the model's non-trainable
    state as an eager call does (wrap the calls in :func:`frozen_state`); on JAX ``jax.jit``
    over ``model.stateless_call``, which carries the noise state from call to call without
    writing the model; eager calls elsewhere.
    """
    from varshift._keras import keras as _load

    keras = _load()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from varshift._keras import tf as _tf

        tf = _tf()
        shape = [None, *model.inputs[0].shape[1:]] if getattr(model, "inputs", None) else None
        signature = None if shape is None else [tf.TensorSpec(shape, tf.float32)]
        fn = tf.function(lambda x: tf.argmax(model(x, training=True), axis=-1),
                         input_signature=signature, autograph=False, reduce_retracing=True)
        return lambda x: fn(x).numpy()
    if backend == "jax":
        import jax

        def pure(trainable, non_trainable, x):
            out, non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                      training=True)
            return keras.ops.argmax(out, axis=-1), non_trainable

        jitted = jax.jit(pure)
        state = {}

        def run(x):
            if "ntv" not in state:
                state["tv"] = [v.value for v in model.trainable_variables]
                state["ntv"] = [v.value for v in model.non_trainable_variables]
            pred, state["ntv"] = jitted(state["tv"], state["ntv"], x)
            return np.asarray(pred)

        run.reset = state.clear  # read the model's variables afresh at the next call
        return run
    return lambda x: keras.ops.convert_to_numpy(keras.ops.argmax(model(x, training=True),
                                                                 axis=-1))
