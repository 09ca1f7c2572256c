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
  (``train_error_inference``), the test error after "Adjust BN" (Table 3, every variant of
  :data:`ADJUST_MODES`; ``adjust_samples`` images), the per-BN-layer shift
  (:func:`varshift.measure_shift`, Fig. 4) and
  :math:`\cos^2\theta` per weight layer (Eq. 13, Table 1) and, with ``fig6``, Fig. 6's
  outputs (:func:`fig6_outputs`);
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
from varshift.train.config import ADJUST_MODES, RunConfig, check_out_dir
from varshift.train.folder import RunFolder
from varshift.train.optim import compile_model

keras = _load_keras()  # this module is imported on demand only (not by `import varshift`)

__all__ = ["run", "cos2_table"]


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


# --------------------------------------------------------------------------------- the run
def run(config, *, out_dir=None, progress=True, resume=True, checkpoint_seconds=60.0) -> dict:
    """Train one network and return its result record (also ``out_dir/record.json``).

    Args:
        config: a :class:`RunConfig` or a dict of its fields (recipe fields such as
            ``epochs`` may be given at the top level).
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
    in this process, checked: a different thread count there raises ``RuntimeError`` rather
    than training with numbers that depend on the machine. On PyTorch ``torch.set_num_threads``;
    on JAX the count is fixed by ``XLA_FLAGS`` when the process starts
    (:func:`varshift.train.config.thread_environment`, set by ``reproduce``'s workers).
    """
    active = keras.backend.backend()
    if backend is not None and backend != active:
        raise RuntimeError(
            f"The run config asks for backend={backend!r} but Keras runs on {active!r} in this "
            f"process; set KERAS_BACKEND={backend} before Keras is imported.")
    if threads is None:
        return
    if active == "tensorflow":
        from varshift._keras import tf as _tf

        threading = _tf().config.threading
        want = (int(threads), int(threads))
        have = (threading.get_intra_op_parallelism_threads(),
                threading.get_inter_op_parallelism_threads())
        import os

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
    elif active == "torch":
        import torch

        torch.set_num_threads(int(threads))


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
            row = _one_epoch(state.model, cfg, recipe, epoch, train_ds, eval_sets,
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


def _one_epoch(model, cfg, recipe, epoch, train_ds, eval_sets, steps_per_epoch):
    """One pass over the training data, then (``epoch_eval``) the fixed training subset in
    inference and in training mode: the epoch's history row."""
    train_eval_ds, train_fixed_ds = eval_sets
    lr = recipe.lr_at(epoch, steps_per_epoch)
    if recipe.schedule == "step":
        model.optimizer.learning_rate = lr  # "cosine": the optimiser's per-step schedule
    _reseed_noise(model, cfg.seed, epoch)
    t0 = time.time()
    logs = model.fit(train_ds, epochs=1, shuffle=False, verbose=0).history
    seconds = time.time() - t0
    row = {"epoch": epoch + 1, "loss": float(logs["loss"][-1]),
           "train_acc_train_mode": float(logs["accuracy"][-1]), "lr": lr, "seconds": seconds}
    if cfg.epoch_eval:
        row["train_acc_inference_mode"] = float(model.evaluate(train_eval_ds, verbose=0)[1])
        row["train_acc_train_mode_fixed"] = _train_mode_accuracy(model, train_fixed_ds)
    if not math.isfinite(row["loss"]):
        raise FloatingPointError(
            f"training loss became {row['loss']} in epoch {epoch + 1}; lower `lr`.")
    return row


def final_evaluation(state, cfg, recipe, data, test_ds, train_eval_ds=None) -> dict:
    """Test errors (plain and after Adjust BN), the inference-mode error of the fixed training
    subset, the per-BN-layer shift, cos^2 per layer and (``fig6``) Fig. 6's outputs."""
    from varshift import data as vdata

    try:
        from varshift.diagnostics import measure_shift
    except ImportError as err:  # pragma: no cover - diagnostics ship with varshift
        raise ImportError(f"varshift.train needs varshift.diagnostics ({err}).") from None

    model = state.model

    def stats_data(n):
        # the training data "with its augmentation" (Sec. 4): one fixed, seeded augmented pass,
        # identical on every iteration, so sequential recalibration sees the same images per layer
        idx = vdata.subset_indices(data.y_train, n, cfg.seed, stratified=False)
        return idx, vdata.make_dataset(data.x_train[idx], data.y_train[idx],
                                       batch_size=cfg.eval_batch_size, training=True,
                                       augment=data.augment, mean=data.mean, std=data.std,
                                       seed=derive_seed(cfg.seed, "stats_data"))

    idx, stats_ds = stats_data(cfg.stats_samples)
    test_acc = float(model.evaluate(test_ds, verbose=0)[1])
    final = {
        "test_error": 100.0 * (1.0 - test_acc),
        **{f"test_error_adjust_{name}": None for name in ADJUST_MODES},
        "stats_samples": len(idx),
    }
    shift = measure_shift(model, stats_ds, batch_size=cfg.eval_batch_size)
    final["shift"] = shift.to_dict("records")
    if cfg.adjust:
        jdx, adjust_ds = idx, stats_ds
        if cfg.adjust_samples is not None and cfg.adjust_samples != cfg.stats_samples:
            jdx, adjust_ds = stats_data(cfg.adjust_samples)
        final["adjust_samples"] = len(jdx)
        final.update(adjusted_test_errors(model, recipe, adjust_ds, test_ds,
                                          batch_size=cfg.eval_batch_size))
    final["cos2"] = cos2_table(model)
    if train_eval_ds is not None:
        acc = float(model.evaluate(train_eval_ds, verbose=0)[1])
        final["train_error_inference"] = 100.0 * (1.0 - acc)
    if cfg.fig6:
        final["fig6"] = fig6_outputs(model, data, seed=cfg.seed)[0]
    return final


#: Adjust BN's ``sequential`` mode reads its images as one batch when there are at most this
#: many: exact, and two passes instead of one per BN layer (:func:`varshift.recalibrate_bn`);
#: more images are read ``eval_batch_size`` at a time
SEQUENTIAL_ONE_BATCH = 2048


def adjusted_test_errors(model, recipe, adjust_ds, test_ds, *, batch_size):
    """Table 3: the test error (%) after each Adjust BN of :data:`ADJUST_MODES`.

    The images of ``adjust_ds`` are read once into memory, so every mode sees the same images
    in the same order (``one_pass``: in batches of ``batch_size``; ``sequential``: as one
    batch up to :data:`SEQUENTIAL_ONE_BATCH` images). The modes are applied in turn to one
    copy of ``model``, compiled once, whose BN statistics are reset to the trained ones before
    each; ``model`` itself is not written.

    Returns:
        ``{"test_error_adjust_<mode>": error}`` for every mode.
    """
    from varshift.bnstats import assign_statistics, bn_layers, save_statistics
    from varshift.diagnostics import recalibrate_bn
    from varshift.diagnostics.recalibrate import copy_model

    x = np.concatenate([keras.ops.convert_to_numpy(batch[0]) for batch in adjust_ds])
    work = compile_model(copy_model(model), recipe)
    layers = bn_layers(work)
    trained = save_statistics(layers)
    errors = {}
    for name, kwargs in ADJUST_MODES.items():
        assign_statistics(layers, trained)
        size = len(x) if kwargs["mode"] == "sequential" and len(x) <= SEQUENTIAL_ONE_BATCH \
            else batch_size
        recalibrate_bn(work, x, batch_size=size, inplace=True, **kwargs)
        acc = work.evaluate(test_ds, verbose=0)[1]
        errors[f"test_error_adjust_{name}"] = 100.0 * (1.0 - float(acc))
    return errors


#: Fig. 6's fixed training images (the same for every seed) and the images whose logits are kept
FIG6_IMAGES, FIG6_LOGITS = 512, 16
_FIG6_DRAW = 100_000  # the epoch index of Fig. 6's noise draw (no run trains that long)


def fig6_outputs(model, data, *, seed, n_images=FIG6_IMAGES, n_logits=FIG6_LOGITS):
    """Fig. 6: predictions of fixed training images in training and in inference mode, of the
    trained network (``shifted``) and of its shift-free control.

    The images are the first ``n_images`` of a constant (seed-0) permutation of the training
    set, un-augmented and normalised as in training, scored as one batch. The control is the
    same network with BN's moving statistics re-estimated on these images with the noise off
    (``recalibrate_bn(mode="sequential")``): its inference mode has no variance shift. Both
    training-mode calls use the same seeded noise draw (:func:`_reseed_noise` of ``seed`` at
    the epoch index ``_FIG6_DRAW``, past any training epoch) and leave BN's non-trainable state as it was
    (:func:`_frozen_state`), so the calls do not contaminate each other.

    Returns:
        ``(fig6, control)``: the record's ``final["fig6"]`` dict ``{n_images, image_indices,
        labels, pred: {shifted_train, shifted_inference, control_train, control_inference},
        logits: {shifted_train, shifted_inference}}`` (logits of the first ``n_logits``
        images) and the control model.
    """
    from varshift import data as vdata
    from varshift.diagnostics import recalibrate_bn

    idx = vdata.subset_indices(data.y_train, n_images, 0, stratified=False)
    ds = vdata.make_dataset(data.x_train[idx], data.y_train[idx], batch_size=len(idx),
                            training=False, mean=data.mean, std=data.std)
    xb = keras.ops.convert_to_numpy(next(iter(ds))[0])
    control = recalibrate_bn(model, xb, mode="sequential", batch_size=len(idx))
    logits = {}
    for name, net in (("shifted", model), ("control", control)):
        with _frozen_state(net):
            _reseed_noise(net, seed, _FIG6_DRAW)  # the same dropout draw for both
            logits[f"{name}_train"] = keras.ops.convert_to_numpy(net(xb, training=True))
        logits[f"{name}_inference"] = keras.ops.convert_to_numpy(net(xb, training=False))
    fig6 = {"n_images": len(idx), "image_indices": idx.tolist(),
            "labels": data.y_train[idx].astype(int).tolist(),
            "pred": {k: np.argmax(v, axis=-1).astype(int).tolist() for k, v in logits.items()},
            "logits": {k: logits[k][:n_logits].astype(float).tolist()
                       for k in ("shifted_train", "shifted_inference")}}
    return fig6, control


# ---------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _frozen_state(model):
    """Restore ``model``'s non-trainable state (BN's moving statistics, noise seeds) on exit:
    Keras 3 BN updates its moving statistics on every ``training=True`` call."""
    saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    try:
        yield model
    finally:
        for v, value in zip(model.non_trainable_variables, saved, strict=True):
            v.assign(value)


def _train_mode_accuracy(model, dataset):
    """Accuracy of ``dataset`` in training mode (noise on, BN on batch statistics), leaving
    the model's non-trainable state (moving statistics, noise seeds) as it was."""
    right = total = 0
    with _frozen_state(model):
        for x, y in dataset:
            pred = np.argmax(keras.ops.convert_to_numpy(model(x, training=True)), axis=-1)
            right += int(np.sum(pred == np.asarray(y).reshape(-1)))
            total += len(pred)
    return right / max(total, 1)


def cos2_table(model):
    r"""Mean :math:`\cos^2\theta` (Eq. 13) and :math:`d\cos^2\theta` of every Conv/Dense layer.

    Returns:
        A list of dicts ``{layer, d, mean_cos2, mean_d_cos2}`` in layer order, with ``d`` the
        fan-in (:func:`varshift.theory.fan_in`) and the means taken over output units.
    """
    from varshift import theory
    from varshift._keras import to_numpy

    rows = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            w = to_numpy(layer.kernel)
            c = theory.cos2_theta(w)
            d = theory.fan_in(w)
            rows.append({"layer": layer.name, "d": d, "mean_cos2": float(np.nanmean(c)),
                         "mean_d_cos2": float(d * np.nanmean(c))})
    return rows


def _reseed_noise(model, seed, epoch):
    """Set every noise layer's random state to a function of ``(seed, epoch, layer)``.

    Keras keeps a layer's random state (``SeedGenerator``, ``[seed, counter]``) outside the
    saved weights; re-deriving it at the start of every epoch makes an epoch's noise
    independent of whether the run was resumed.
    """
    for i, layer in enumerate(model.layers):
        gen = getattr(layer, "seed_generator", None)
        state = getattr(gen, "state", None)
        if state is not None:
            if keras.backend.standardize_dtype(state.dtype) == "int64":  # TensorFlow
                value = np.array([derive_seed(seed, "noise_layer", i), epoch << 32], np.int64)
            else:  # uint32 states (JAX, ...): epoch << 32 would wrap to 0; the counter slot
                value = np.array([derive_seed(seed, "noise_layer", i) % 2**32, epoch], np.uint32)
            state.assign(keras.ops.cast(value, state.dtype))


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
