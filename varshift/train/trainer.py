r"""One training run, in four named steps: prepare the data, build or resume the model, train
the epochs (with a checkpoint every ``checkpoint_seconds``), evaluate the final model.

A run (:func:`run`) builds a network of :mod:`varshift.nets` with a noise placement, trains it
with SGD as the recipes the paper points to (bearpaw/pytorch-classification), and returns one
JSON-ready record:

- ``history``: per epoch the training loss, the training accuracy **in training mode** (the
  running accuracy of the training pass itself, noise on, BN on batch statistics), the learning
  rate (at the epoch's first step) and the seconds of the training pass; with ``epoch_eval``
  also the accuracy of a fixed, un-augmented subset of ``train_eval_samples`` training images
  **in inference mode** and, on the same images with the same weights, **in training mode**
  (the paper's Fig. 5);
- ``final``: test error (%), the inference-mode error of the fixed training subset
  (``train_error_inference``), the per-BN-layer shift (:func:`varshift.measure_shift`, on
  ``stats_samples`` training images augmented as in training) and whatever the run's
  evaluation hooks add (:class:`~varshift.train.EvaluationContext`: ``RunConfig.evaluations`` names
  them, :func:`run` receives them);
- ``config``, ``data`` (name, source, sizes), ``versions``, ``wall_time``, ``seed``.

**Reproducibility.** ``keras.utils.set_random_seed(seed)``, seeded noise layers, a data order
and augmentation that are functions of ``(seed, epoch)`` alone (:func:`varshift.seeds.derive_seed`),
and (``deterministic=True``) ``tf.config.experimental.enable_op_determinism()``: the same
config gives the same record on the same machine. With ``out_dir`` a checkpoint (model +
optimiser state, including the step count that drives the ``"cosine"`` schedule) and the
history are written atomically after an epoch once ``checkpoint_seconds`` (60) have passed
since the last (:class:`varshift.train.folder.RunFolder`), so an interrupted run resumes at its
last checkpointed epoch and continues exactly as if it had not been interrupted, while a short
run writes no checkpoint at all.
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

from varshift._io import to_jsonable
from varshift._keras import keras as _load_keras
from varshift.seeds import derive_seed
from varshift.train.config import RunConfig, check_out_dir
from varshift.train.evaluation import (
    EvaluationContext,
    check_hooks,
    frozen_state,
    reseed_noise,
    training_mode_predictor,
)
from varshift.train.folder import RunFolder
from varshift.train.optim import compile_model

keras = _load_keras()  # this module is imported on demand only (not by `import varshift`)

__all__ = ["run"]


@dataclass
class _Data:
    """The training and test arrays of a run, their info and the normalisation statistics."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict
    mean: np.ndarray
    std: np.ndarray
    augment: bool


@dataclass
class _State:
    """The model being trained and what it has done so far."""

    model: object
    history: list
    prior_wall: float
    predict_train: object = None  # the compiled training-mode forward pass (epoch_eval)


# --------------------------------------------------------------------------------- the run
def run(config, *, evaluations=None, out_dir=None, progress=True, resume=True,
        checkpoint_seconds=60.0) -> dict:
    """Train one network and return its result record (also ``out_dir/record.json``).

    Args:
        config: a :class:`RunConfig` or a dict of its fields (recipe fields such as
            ``epochs`` may be given at the top level).
        evaluations: ``{name: hook(model, context) -> dict}`` for exactly the hooks
            ``config.evaluations`` names (:class:`~varshift.train.EvaluationContext`); each hook's items
            are added to ``final``. Checked before any work.
        out_dir: folder for ``checkpoint_{epoch}.keras`` + ``progress.json`` (after every
            epoch; only the latest checkpoint is kept, and removed once the record is written),
            ``record.json`` (at the end) and, with ``save_model``, ``model.keras``.
        progress: show a tqdm bar over epochs on stderr.
        resume: continue from ``out_dir``'s checkpoint (or return its finished record) when it
            holds the same config; ``False`` starts afresh and overwrites.
        checkpoint_seconds: write the checkpoint after an epoch only once at least this many
            seconds have passed since the last one (or the start); ``0`` checkpoints every
            epoch. An interrupt loses at most about this much training; it never changes the
            result (a resumed run continues exactly).

    Returns:
        The record: ``{config, data, history, final, versions, wall_time, seed}``; errors in %.

    Example:

    >>> rec = run({"net": "preresnet", "size": "small", "data": "digits", "recipe": "cpu",
    ...            "epochs": 2, "placement": "a", "rate": 0.5})  # doctest: +SKIP
    >>> rec["final"]["test_error"]  # doctest: +SKIP
    """
    cfg = RunConfig.from_any(config)
    size, recipe, augment = cfg.resolved()
    hooks = check_hooks(list(cfg.evaluations), evaluations)
    check_out_dir(out_dir)
    started = time.time()
    folder = None if out_dir is None else RunFolder(out_dir, cfg.to_dict())
    done = folder.start(resume) if folder is not None else None
    if done is not None:
        return done

    apply_threads(cfg.threads, cfg.backend)
    data = prepare_data(cfg, augment)
    deterministic = _seed_and_determinism(cfg)
    steps = math.ceil(len(data.x_train) / recipe.batch_size)
    state = build_or_resume(cfg, size, recipe, data.info, folder if resume else None,
                            steps_per_epoch=steps)
    train_eval_ds, train_fixed_ds, test_ds = _eval_datasets(cfg, recipe, data)
    train_epochs(state, cfg, recipe, data, (train_eval_ds, train_fixed_ds), folder=folder,
                 started=started, progress=progress, checkpoint_seconds=checkpoint_seconds)
    final = final_evaluation(state, cfg, recipe, data, test_ds, train_eval_ds)
    final = apply_hooks(hooks, state.model, EvaluationContext(
        cfg, recipe, {}, data.x_train, data.y_train, data.x_test, data.y_test, data.mean,
        data.std, data.augment, data.info, test_ds), final)
    record = to_jsonable({
        "config": cfg.to_dict(), "data": data.info, "history": state.history, "final": final,
        "versions": _versions(), "wall_time": state.prior_wall + time.time() - started,
        "seed": cfg.seed, "deterministic": bool(deterministic)})
    if folder is not None:
        folder.finish(record, state.model if cfg.save_model else None)
    return record


# ------------------------------------------------------------------------------ the steps
def prepare_data(cfg, augment) -> _Data:
    """Load the data set (its subset, if any) and its per-channel statistics."""
    from varshift import data as vdata

    (x_train, y_train), (x_test, y_test), info = vdata.load(
        cfg.data, cfg.data_dir, seed=cfg.seed, subset=cfg.subset, **cfg.data_kwargs)
    if cfg.validation:  # hold out training images as the evaluation set; the test set is unread
        held = vdata.subset_indices(y_train, cfg.validation, 0)
        rest = np.setdiff1d(np.arange(len(y_train)), held)
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[rest], y_train[rest]
        info = {**info, "n_train": len(rest), "n_test": len(held),
                "validation": {"n_validation": len(held), "of_n_train": len(rest) + len(held),
                               "selection": "class-stratified, selection seed 0, from the "
                                            "training images; test images not used"}}
    mean, std = vdata.channel_stats(x_train)
    return _Data(x_train, y_train, x_test, y_test, info, mean, std, augment)


def apply_threads(threads, backend=None):
    """Fix the CPU threads of the Keras backend's kernels (``RunConfig.threads``) before any op.

    ``backend`` (``RunConfig.backend``), if given, must be the backend Keras runs on here. On
    TensorFlow the intra- and inter-op pools are set, or, where TensorFlow has already started
    in this process, checked; on JAX the variables of
    :func:`varshift.train.config.thread_environment` (``PJRT_NPROC``, the Eigen flag in
    ``XLA_FLAGS``) are set, or, where JAX's CPU backend has already started, checked. A
    different thread count there raises ``RuntimeError`` rather than training with numbers
    that depend on the machine. On PyTorch ``torch.set_num_threads``.
    """
    active = keras.backend.backend()
    if backend is not None and backend != active:
        raise RuntimeError(
            f"The run config asks for backend={backend!r} but Keras runs on {active!r} in this "
            f"process; set KERAS_BACKEND={backend} before Keras is imported.")
    if threads is None:
        return
    if active == "tensorflow":
        _tf_threads(int(threads))
    elif active == "jax":
        _jax_threads(int(threads))
    elif active == "torch":
        import torch

        torch.set_num_threads(int(threads))


def _tf_threads(threads):
    import os

    from varshift._keras import tf as _tf

    threading = _tf().config.threading
    want = (threads, threads)
    have = (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads())
    from_env = (int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0),
                int(os.environ.get("TF_NUM_INTEROP_THREADS") or 0))
    if have == want or (have == (0, 0) and from_env == want):
        return
    try:
        threading.set_intra_op_parallelism_threads(want[0])
        threading.set_inter_op_parallelism_threads(want[1])
    except RuntimeError:
        raise RuntimeError(
            f"threads={threads} cannot be applied: TensorFlow already runs in this process "
            f"with {have[0]} intra-op / {have[1]} inter-op threads (0: one per core); "
            "train in a fresh process or set TF_NUM_INTRAOP_THREADS and "
            "TF_NUM_INTEROP_THREADS before TensorFlow starts.") from None


def _jax_threads(threads):
    import os

    from varshift.train.config import parse_xla_flags, thread_environment

    want = thread_environment(threads, "jax", xla_flags=os.environ.get("XLA_FLAGS"))
    eigen = parse_xla_flags(want["XLA_FLAGS"])["xla_cpu_multi_thread_eigen"]
    have = (os.environ.get("PJRT_NPROC"),
            parse_xla_flags(os.environ.get("XLA_FLAGS")).get("xla_cpu_multi_thread_eigen"))
    if have == (want["PJRT_NPROC"], eigen):
        return
    if _jax_started():
        raise RuntimeError(
            f"threads={threads} cannot be applied: JAX's CPU backend already runs in this "
            f"process with PJRT_NPROC={have[0]!r} and xla_cpu_multi_thread_eigen={have[1]!r}; "
            f"train in a fresh process or set PJRT_NPROC={threads} and XLA_FLAGS="
            f"{want['XLA_FLAGS']!r} before JAX starts.")
    os.environ.update({k: want[k] for k in ("PJRT_NPROC", "NPROC", "XLA_FLAGS")})


def _jax_started():
    """Whether JAX has created its backends (then its thread pools are fixed); ``True`` when
    this JAX cannot say."""
    try:
        from jax._src import xla_bridge  # noqa: PLC0415

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return True


def _seed_and_determinism(cfg):
    keras.utils.set_random_seed(cfg.seed)
    deterministic = cfg.deterministic
    if keras.backend.backend() != "tensorflow":  # JAX/XLA on CPU is deterministic as is
        from varshift._keras import jax_compilation_cache

        jax_compilation_cache()  # the runs of one network compile the same programs
        return bool(deterministic) if deterministic is not None else _no_gpu()
    from varshift._keras import tf as _tf

    tf = _tf()
    if deterministic is None:
        deterministic = not tf.config.list_physical_devices("GPU")
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return deterministic


def _no_gpu():
    if keras.backend.backend() == "torch":
        import torch  # noqa: PLC0415  (the torch backend)

        return not torch.cuda.is_available()
    if keras.backend.backend() != "jax":
        return True
    import jax  # noqa: PLC0415  (the JAX backend)

    return not [d for d in jax.devices() if d.platform == "gpu"]


def build_or_resume(cfg, size, recipe, info, folder=None, *, steps_per_epoch=None) -> _State:
    """The model from ``folder``'s last checkpoint, or a freshly built and compiled one
    (``steps_per_epoch``: for the recipe's per-step ``"cosine"`` schedule)."""
    from varshift import nets

    saved = folder.progress() if folder is not None else None
    if saved is not None:
        import varshift.layers  # noqa: F401  (registers Uout for loading)

        checkpoint, history, prior_wall = saved
        with _policy(cfg.mixed_precision):
            model = keras.saving.load_model(checkpoint, compile=True)
        return _State(model, history, prior_wall)
    with _policy(cfg.mixed_precision):
        model = nets.build(cfg.net, info["num_classes"], cfg.placement, cfg.noise, cfg.rate,
                           beta=cfg.beta, input_shape=tuple(info["shape"]), seed=cfg.seed,
                           **size)
        compile_model(model, recipe, steps_per_epoch=steps_per_epoch)
    return _State(model, [], 0.0)


def _eval_datasets(cfg, recipe, data):
    """The fixed training subset (for inference mode, and batched as in training for training
    mode: BN's batch statistics) and the test set, all un-augmented."""
    from varshift import data as vdata

    idx = vdata.subset_indices(data.y_train, cfg.train_eval_samples, cfg.seed, stratified=False)
    common = {"batch_size": cfg.eval_batch_size, "training": False, "mean": data.mean,
              "std": data.std}
    fixed = {**common, "batch_size": recipe.batch_size}
    return (vdata.make_dataset(data.x_train[idx], data.y_train[idx], **common),
            vdata.make_dataset(data.x_train[idx], data.y_train[idx], **fixed),
            vdata.make_dataset(data.x_test, data.y_test, **common))


def train_epochs(state, cfg, recipe, data, eval_sets, *, folder, started, progress,
                 checkpoint_seconds=0.0):
    """Train from ``len(state.history)`` to ``recipe.epochs``; checkpoint after an epoch once
    ``checkpoint_seconds`` have passed since the last checkpoint (or the start)."""
    from varshift import data as vdata

    bar = _progress_bar(cfg, recipe, len(state.history)) if progress else None
    last_checkpoint = time.time()
    try:
        for epoch in range(len(state.history), recipe.epochs):
            train_ds = vdata.make_dataset(
                data.x_train, data.y_train, batch_size=recipe.batch_size, training=True,
                augment=data.augment, mean=data.mean, std=data.std,
                seed=derive_seed(cfg.seed, "epoch_data", epoch))
            if cfg.epoch_eval and state.predict_train is None:
                state.predict_train = training_mode_predictor(state.model)
            row = _one_epoch(state, cfg, recipe, epoch, train_ds, eval_sets,
                             math.ceil(len(data.x_train) / recipe.batch_size))
            state.history.append(row)
            if folder is not None and time.time() - last_checkpoint >= checkpoint_seconds:
                folder.save_epoch(state.model, state.history,
                                  state.prior_wall + time.time() - started)
                last_checkpoint = time.time()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc_train_mode']:.3f}")
    finally:
        if bar is not None:
            bar.close()


def _one_epoch(state, cfg, recipe, epoch, train_ds, eval_sets, steps_per_epoch):
    """One pass over the training data, then (``epoch_eval``) the fixed training subset in
    inference and in training mode: the epoch's history row."""
    model = state.model
    train_eval_ds, train_fixed_ds = eval_sets
    lr = recipe.lr_at(epoch, steps_per_epoch)
    if recipe.schedule == "step":
        model.optimizer.learning_rate = lr  # "cosine": the optimiser's per-step schedule
    reseed_noise(model, cfg.seed, epoch)
    t0 = time.time()
    logs = model.fit(train_ds, epochs=1, shuffle=False, verbose=0).history
    seconds = time.time() - t0
    row = {"epoch": epoch + 1, "loss": float(logs["loss"][-1]),
           "train_acc_train_mode": float(logs["accuracy"][-1]), "lr": lr, "seconds": seconds}
    if cfg.epoch_eval:
        row["train_acc_inference_mode"] = float(model.evaluate(train_eval_ds, verbose=0)[1])
        row["train_acc_train_mode_fixed"] = _train_mode_accuracy(model, train_fixed_ds,
                                                                 state.predict_train)
    if not math.isfinite(row["loss"]):
        raise FloatingPointError(
            f"training loss became {row['loss']} in epoch {epoch + 1}; lower `lr`.")
    return row


def final_evaluation(state, cfg, recipe, data, test_ds, train_eval_ds=None) -> dict:
    """The test error, the per-BN-layer shift on ``stats_samples`` training images (augmented
    as in training) and the inference-mode error of the fixed training subset."""
    from varshift import data as vdata

    try:
        from varshift.diagnostics import measure_shift
    except ImportError as err:  # pragma: no cover - diagnostics ship with varshift
        raise ImportError(f"varshift.train needs varshift.diagnostics ({err}).") from None

    model = state.model
    # the training data "with its augmentation" (Sec. 4): one fixed, seeded augmented pass
    idx = vdata.subset_indices(data.y_train, cfg.stats_samples, cfg.seed, stratified=False)
    stats_ds = vdata.make_dataset(data.x_train[idx], data.y_train[idx],
                                  batch_size=cfg.eval_batch_size, training=True,
                                  augment=data.augment, mean=data.mean, std=data.std,
                                  seed=derive_seed(cfg.seed, "stats_data"))
    test_acc = float(model.evaluate(test_ds, verbose=0)[1])
    final = {"test_error": 100.0 * (1.0 - test_acc), "stats_samples": len(idx)}
    shift = measure_shift(model, stats_ds, batch_size=cfg.eval_batch_size)
    final["shift"] = shift.to_dict("records")
    if train_eval_ds is not None:
        acc = float(model.evaluate(train_eval_ds, verbose=0)[1])
        final["train_error_inference"] = 100.0 * (1.0 - acc)
    return final


def apply_hooks(hooks, model, context, final) -> dict:
    """``final`` with the items of every evaluation hook, in the config's order; a hook may
    not return anything but a dict, nor overwrite a field already there."""
    for name, hook in hooks.items():
        out = hook(model, context.for_hook(context.config.evaluations[name]))
        if not isinstance(out, dict):
            raise TypeError(f"evaluation hook {name!r} must return a dict; it returned "
                            f"{type(out).__name__}.")
        clash = sorted(set(out) & set(final))
        if clash:
            raise ValueError(f"evaluation hook {name!r} returned field(s) {clash} that the "
                             "record's final block already has.")
        final.update(out)
    return final


# ---------------------------------------------------------------------------------- helpers
def _train_mode_accuracy(model, dataset, predict=None):
    """Accuracy of ``dataset`` in training mode (noise on, BN on batch statistics), leaving
    the model's non-trainable state (moving statistics, noise seeds) as it was; ``predict``:
    a :func:`~varshift.train.evaluation.training_mode_predictor` of ``model`` (made if not
    given)."""
    predict = training_mode_predictor(model) if predict is None else predict
    if hasattr(predict, "reset"):
        predict.reset()  # the weights changed since the last pass
    right = total = 0
    with frozen_state(model):
        for x, y in dataset:
            pred = np.asarray(predict(x)).reshape(-1)
            right += int(np.sum(pred == np.asarray(y).reshape(-1)))
            total += len(pred)
    return right / max(total, 1)


def _progress_bar(cfg, recipe, initial):
    from tqdm.auto import tqdm

    return tqdm(total=recipe.epochs, initial=initial, file=sys.stderr, leave=False,
                desc=f"{cfg.net} {cfg.placement} {cfg.noise} {cfg.noise_value:g}", unit="epoch")


def _versions():
    from varshift import __version__
    from varshift._keras import backend_versions, keras

    return {"varshift": __version__, "python": platform.python_version(),
            "numpy": np.__version__, **backend_versions(), "keras": keras().__version__,
            "platform": platform.platform()}


@contextlib.contextmanager
def _policy(mixed):
    old = keras.mixed_precision.global_policy().name
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)
