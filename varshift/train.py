r"""Train the paper's CIFAR networks with the reference recipes; one run feeds every artefact.

A run (:func:`run`) builds a network of :mod:`varshift.nets` with a noise placement, trains it
with SGD as the recipes the paper points to (bearpaw/pytorch-classification), and returns one
JSON-ready record:

- ``history``: per epoch the training loss, the training accuracy **in training mode** (the
  running accuracy of the training pass itself, noise on, BN on batch statistics), the
  training-data accuracy **in inference mode** (a separate evaluation pass over a fixed,
  un-augmented subset of ``train_eval_samples`` training images: the paper's Fig. 5), the test
  accuracy, the learning rate and the seconds of the training pass;
- ``final``: test error (%), the test error after "Adjust BN" (Table 3, both
  :func:`varshift.recalibrate_bn` modes), the per-BN-layer shift (:func:`varshift.measure_shift`,
  Fig. 4) and :math:`\cos^2\theta` per weight layer (Eq. 13, Table 1);
- ``config``, ``data`` (name, source, sizes), ``versions``, ``wall_time``, ``seed``.

**Optimiser.** :class:`CoupledSGD` is PyTorch's ``SGD(momentum, weight_decay)`` exactly:
:math:`g \leftarrow g + \lambda w`, :math:`b \leftarrow \mu b + g`, :math:`w \leftarrow w - \eta b`,
with the L2 term on *every* trainable variable (kernels, biases, BN's gamma and beta), as in the
reference code. Keras' own ``SGD(weight_decay=...)`` is decoupled and would be about
:math:`1/(1-\mu) = 10` times weaker at momentum 0.9.

**Reproducibility.** ``keras.utils.set_random_seed(seed)``, seeded noise layers, a data order
and augmentation that are functions of ``(seed, epoch)`` alone, and (``deterministic=True``)
``tf.config.experimental.enable_op_determinism()``: the same config gives the same record on
the same machine. With ``out_dir`` a checkpoint (model + optimiser state) and the history are
written atomically after every epoch, so an interrupted run resumes at its last finished epoch
and continues exactly as if it had not been interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from varshift._io import atomic_path, atomic_write_json, to_jsonable
from varshift._keras import keras as _load_keras

keras = _load_keras()  # this module is imported on demand only (not by `import varshift`)

__all__ = ["Recipe", "RunConfig", "RECIPES", "CPU_RECIPES", "recipe_for", "run", "CoupledSGD",
           "cos2_table", "compile_model", "atomic_write_json"]


# ---------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """An SGD training recipe: step learning-rate schedule, momentum, L2 weight decay.

    Args:
        epochs: number of epochs.
        batch_size: images per step.
        lr: initial learning rate :math:`\\eta_0`.
        momentum: SGD momentum :math:`\\mu` (PyTorch form).
        lr_drops: epochs (0-based count of finished epochs) at which the rate is multiplied by
            ``drop_factor``: epoch ``e`` uses :math:`\\eta_0 \\cdot f^{\\#\\{t \\in drops : t \\le e\\}}`.
        drop_factor: multiplier :math:`f` at each drop.
        weight_decay: coupled L2 coefficient :math:`\\lambda` (PyTorch's ``weight_decay``).
    """

    epochs: int
    batch_size: int
    lr: float = 0.1
    momentum: float = 0.9
    lr_drops: tuple = ()
    drop_factor: float = 0.1
    weight_decay: float = 1e-4

    def lr_at(self, epoch: int) -> float:
        """Learning rate of (0-based) ``epoch``."""
        drops = sum(1 for t in self.lr_drops if t <= epoch)
        return float(self.lr * self.drop_factor**drops)

    def replace(self, **overrides) -> Recipe:
        """A copy with some fields changed; unknown fields raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(
                f"Unknown recipe field(s) {bad}; expected some of {sorted(names)}.")
        if "lr_drops" in overrides:
            overrides["lr_drops"] = tuple(int(t) for t in overrides["lr_drops"])
        return dataclasses.replace(self, **overrides)


# bearpaw/pytorch-classification defaults, as the paper's reference page lists them
RECIPES = {
    "preresnet": Recipe(164, 128, 0.1, 0.9, (81, 122), 0.1, 1e-4),
    "resnext29": Recipe(300, 128, 0.1, 0.9, (150, 225), 0.1, 5e-4),
    "wrn": Recipe(200, 128, 0.1, 0.9, (60, 120, 160), 0.2, 5e-4),
    "densenet_bc": Recipe(300, 64, 0.1, 0.9, (150, 225), 0.1, 1e-4),
}

# small CPU recipes: the same schedule shape (drops at 1/2 and 3/4), few epochs, small batches
CPU_RECIPES = {
    "preresnet": Recipe(12, 64, 0.05, 0.9, (6, 9), 0.1, 1e-4),
    "resnext29": Recipe(12, 64, 0.05, 0.9, (6, 9), 0.1, 5e-4),
    "wrn": Recipe(12, 64, 0.05, 0.9, (6, 9), 0.2, 5e-4),
    "densenet_bc": Recipe(12, 64, 0.05, 0.9, (6, 9), 0.1, 1e-4),
}


def recipe_for(net: str, kind: str = "paper", **overrides) -> Recipe:
    """The ``"paper"`` (:data:`RECIPES`) or ``"cpu"`` (:data:`CPU_RECIPES`) recipe of ``net``."""
    table = {"paper": RECIPES, "cpu": CPU_RECIPES}
    if kind not in table:
        raise ValueError(f"Argument `recipe` must be 'paper' or 'cpu'; received recipe={kind!r}.")
    if net not in table[kind]:
        raise ValueError(
            f"Argument `net` must be one of {sorted(table[kind])}; received net={net!r}.")
    return table[kind][net].replace(**overrides)


# ---------------------------------------------------------------------------------- config
@dataclass
class RunConfig:
    """Everything that defines a run (and nothing that does not change its result).

    Args:
        net: network name (:data:`varshift.nets.NAMES`).
        size: size keywords for :func:`varshift.nets.build`; ``{}`` is the paper's size and
            the string ``"small"`` :data:`varshift.nets.SMALL_SIZES` ``[net]``.
        placement, noise, rate: noise layers (see :func:`varshift.nets.build`).
        data: data set name (:data:`varshift.data.DATASETS`); ``data_dir`` is searched first.
        recipe: ``"paper"`` or ``"cpu"``; ``overrides`` changes recipe fields (``epochs``,
            ``batch_size``, ``lr``, ``momentum``, ``lr_drops``, ``drop_factor``,
            ``weight_decay``).
        seed: integer seed of weights, noise, data order and augmentation.
        augment: pad-and-crop + flip; ``None`` uses the data set's default
            (:data:`varshift.data.DEFAULT_AUGMENT`: on for CIFAR only).
        train_eval_samples: size of the fixed training subset (first images of a seeded
            permutation, un-augmented) on which inference-mode training accuracy is measured
            every epoch; ``None`` uses the whole training set.
        stats_samples: training images (same seeded subset, augmented as in training) used for
            the final ``measure_shift`` and ``recalibrate_bn``; ``None`` uses all of them.
        adjust: compute the Table 3 "Adjust BN" test errors (:data:`ADJUST_MODES`: sequential,
            one_pass, and one_pass with the noise on).
        save_model: save the final model as ``out_dir/model.keras``.
        mixed_precision: train under the ``mixed_float16`` policy (GPU).
        deterministic: call ``tf.config.experimental.enable_op_determinism()`` (process-wide);
            ``None`` (default) does so on CPU-only machines and not where a GPU is visible
            (deterministic GPU kernels can be slow or missing). The record's
            ``deterministic`` says what was used.
        eval_batch_size: batch size of the evaluation passes.
        data_kwargs: extra keywords for :func:`varshift.data.load`.
        train_subset: train on a fixed seeded subset of this many training images (CPU-scale
            runs on Fashion-MNIST or CIFAR); ``None`` uses all. The record's ``data`` says so.
        epoch_eval: after every epoch, measure the accuracy of the fixed training subset in
            inference mode and in training mode (noise on, BN on batch statistics, moving
            statistics left untouched). ``False`` skips it (cheaper; history rows then hold the
            training pass's own numbers). The test set is evaluated once, after training.
    """

    net: str = "preresnet"
    size: dict | str = field(default_factory=dict)
    placement: str = "none"
    noise: str = "dropout"
    rate: float = 0.0
    data: str = "cifar10"
    data_dir: str | None = None
    recipe: str = "paper"
    overrides: dict = field(default_factory=dict)
    seed: int = 0
    augment: bool | None = None
    train_eval_samples: int | None = 10000
    stats_samples: int | None = 10000
    adjust: bool = True
    save_model: bool = False
    mixed_precision: bool = False
    deterministic: bool | None = None
    eval_batch_size: int = 500
    data_kwargs: dict = field(default_factory=dict)
    train_subset: int | None = None
    epoch_eval: bool = True

    @classmethod
    def from_any(cls, config) -> RunConfig:
        """A ``RunConfig`` from itself or a dict; recipe fields may also sit at the top level."""
        if isinstance(config, cls):
            return dataclasses.replace(config)
        if not isinstance(config, dict):
            raise TypeError(
                "Argument `config` must be a RunConfig or a dict; "
                f"received an object of type {type(config).__name__}.")
        config = dict(config)
        names = {f.name for f in dataclasses.fields(cls)}
        recipe_names = {f.name for f in dataclasses.fields(Recipe)}
        overrides = dict(config.pop("overrides", None) or {})
        overrides.update(config.pop("recipe_overrides", None) or {})
        for key in list(config):
            if key in recipe_names and key not in names:
                overrides[key] = config.pop(key)
        bad = sorted(set(config) - names)
        if bad:
            raise ValueError(
                f"Unknown run config key(s) {bad}; expected some of {sorted(names | recipe_names)}.")
        return cls(**config, overrides=overrides)

    def resolved(self):
        """``(size dict, Recipe, augment)`` after applying defaults and overrides."""
        from varshift import nets
        from varshift.data import DEFAULT_AUGMENT

        if self.net not in nets.NAMES:
            raise ValueError(
                f"Argument `net` must be one of {nets.NAMES}; received net={self.net!r}.")
        size = dict(nets.SMALL_SIZES[self.net]) if self.size == "small" else dict(self.size)
        recipe = recipe_for(self.net, self.recipe, **self.overrides)
        augment = DEFAULT_AUGMENT.get(self.data, False) if self.augment is None else self.augment
        return size, recipe, bool(augment)

    def to_dict(self) -> dict:
        size, recipe, augment = self.resolved()
        d = dataclasses.asdict(self)
        d["size"] = size
        d["augment"] = augment
        d["recipe_resolved"] = dataclasses.asdict(recipe)
        d["recipe_resolved"]["lr_drops"] = list(recipe.lr_drops)
        return to_jsonable(d)


# ------------------------------------------------------------------------------- optimiser
@keras.saving.register_keras_serializable(package="varshift")
class CoupledSGD(keras.optimizers.SGD):
    r"""SGD with momentum and coupled L2 weight decay, exactly as PyTorch's ``SGD``.

    .. math::
        g_t = \nabla L(w_t) + \lambda w_t,\quad b_t = \mu b_{t-1} + g_t,\quad
        w_{t+1} = w_t - \eta_t b_t.

    Keras' ``SGD`` keeps :math:`m_t = \mu m_{t-1} - \eta_t g_t` instead, which differs from the
    PyTorch form right after a learning-rate drop; and its ``weight_decay`` is decoupled.

    Args:
        learning_rate: :math:`\eta`.
        momentum: :math:`\mu` (0.9 in the recipes).
        l2: :math:`\lambda`, applied to every trainable variable (PyTorch's ``weight_decay``).
        **kwargs: other ``keras.optimizers.SGD`` arguments.

    Example:

    >>> opt = CoupledSGD(learning_rate=0.1, momentum=0.9, l2=5e-4)
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, l2=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.l2:
            g = ops.add(g, ops.multiply(ops.cast(self.l2, variable.dtype), variable))  # + lambda w
        if self.momentum != 0:
            b = self.momentums[self._get_variable_index(variable)]
            self.assign(b, ops.add(ops.multiply(b, ops.cast(self.momentum, b.dtype)), g))
            g = b  # b_t = mu b_{t-1} + g_t
        self.assign_sub(variable, ops.multiply(g, lr))  # w -= eta b_t

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


def compile_model(model, recipe: Recipe, *, lr=None):
    """Compile ``model`` with :class:`CoupledSGD`, sparse cross-entropy on logits, accuracy."""
    opt = CoupledSGD(learning_rate=recipe.lr if lr is None else lr,
                             momentum=recipe.momentum, l2=recipe.weight_decay)
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


# ---------------------------------------------------------------------------------- helpers
def _atomic_save_model(model, path):
    with atomic_path(path) as tmp:
        model.save(tmp)


def _versions():
    from varshift import __version__
    from varshift._keras import keras, tf

    t = tf()
    gpus = [d.name for d in t.config.list_physical_devices("GPU")]
    return {"varshift": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "tensorflow": t.__version__, "keras": keras().__version__,
            "platform": platform.platform(), "gpus": gpus}


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


def _subset(n, k, seed):
    """The first ``k`` indices of a seeded permutation of ``range(n)`` (sorted), or all."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([int(seed), 0xE7A1]).permutation(n)[:k])


@contextlib.contextmanager
def _policy(mixed):
    old = keras.mixed_precision.global_policy().name
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)


# --------------------------------------------------------------------------------- the run
def run(config, *, out_dir=None, progress=True, resume=True) -> dict:
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

    Returns:
        The record: ``{config, data, history, final, versions, wall_time, seed}``; errors in %.

    Example:

    >>> rec = run({"net": "preresnet", "size": "small", "data": "digits", "recipe": "cpu",
    ...            "epochs": 2, "placement": "a", "rate": 0.5})  # doctest: +SKIP
    >>> rec["final"]["test_error"]  # doctest: +SKIP
    """
    from varshift import data as vdata
    from varshift import nets
    from varshift._keras import tf as _tf

    tf = _tf()
    cfg = RunConfig.from_any(config)
    size, recipe, augment = cfg.resolved()
    cfg_dict = cfg.to_dict()
    started = time.time()

    paths = None
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        paths = {k: os.path.join(out_dir, f) for k, f in (
            ("record", "record.json"), ("progress", "progress.json"),
            ("model", "model.keras"))}
        if resume and os.path.isfile(paths["record"]):
            with open(paths["record"]) as fh:
                done = json.load(fh)
            _same_config(done.get("config"), cfg_dict, out_dir)
            return done
        if not resume:  # start afresh: forget an earlier run's record and progress
            for key in ("record", "progress"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(paths[key])

    (x_train, y_train), (x_test, y_test), info = vdata.load(
        cfg.data, cfg.data_dir, seed=cfg.seed, **cfg.data_kwargs)
    if cfg.train_subset is not None and cfg.train_subset < len(x_train):
        keep = _subset(len(x_train), cfg.train_subset, cfg.seed + 7919)
        x_train, y_train = x_train[keep], y_train[keep]
        info = {**info, "n_train": len(keep), "train_subset": len(keep)}
    mean, std = vdata.channel_stats(x_train)

    keras.utils.set_random_seed(cfg.seed)
    deterministic = cfg.deterministic
    if deterministic is None:
        deterministic = not tf.config.list_physical_devices("GPU")
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    history, prior_wall, start_epoch, model = [], 0.0, 0, None
    state = None
    if paths and resume and os.path.isfile(paths["progress"]):
        with open(paths["progress"]) as fh:
            state = json.load(fh)
        _same_config(state.get("config"), cfg_dict, out_dir)
        if not os.path.isfile(os.path.join(out_dir, state.get("checkpoint", ""))):
            state = None  # checkpoint gone: start afresh
    if state is not None:
        import varshift.layers  # noqa: F401  (registers Uout for loading)

        with _policy(cfg.mixed_precision):
            model = keras.saving.load_model(os.path.join(out_dir, state["checkpoint"]),
                                            compile=True)
        history = state["history"]
        prior_wall = float(state.get("wall_time", 0.0))
        start_epoch = len(history)
    if model is None:
        with _policy(cfg.mixed_precision):
            model = nets.build(cfg.net, info["num_classes"], cfg.placement, cfg.noise, cfg.rate,
                               input_shape=tuple(info["shape"]), seed=cfg.seed, **size)
            compile_model(model, recipe)

    def train_ds(epoch):
        return vdata.make_dataset(x_train, y_train, batch_size=recipe.batch_size, training=True,
                                  augment=augment, mean=mean, std=std,
                                  seed=cfg.seed * 100003 + epoch)

    eval_idx = _subset(len(x_train), cfg.train_eval_samples, cfg.seed)
    train_eval_ds = vdata.make_dataset(x_train[eval_idx], y_train[eval_idx],
                                       batch_size=cfg.eval_batch_size, training=False,
                                       mean=mean, std=std)
    test_ds = vdata.make_dataset(x_test, y_test, batch_size=cfg.eval_batch_size, training=False,
                                 mean=mean, std=std)
    # the same fixed images in training mode, batched as in training (BN's batch statistics)
    train_fixed_ds = vdata.make_dataset(x_train[eval_idx], y_train[eval_idx],
                                        batch_size=recipe.batch_size, training=False,
                                        mean=mean, std=std)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=recipe.epochs, initial=start_epoch, file=sys.stderr, leave=False,
                   desc=f"{cfg.net} {cfg.placement} {cfg.noise} {cfg.rate:g}", unit="epoch")
    try:
        for epoch in range(start_epoch, recipe.epochs):
            lr = recipe.lr_at(epoch)
            model.optimizer.learning_rate = lr
            _reseed_noise(model, cfg.seed, epoch)
            t0 = time.time()
            logs = model.fit(train_ds(epoch), epochs=1, shuffle=False, verbose=0).history
            seconds = time.time() - t0
            row = {"epoch": epoch + 1, "loss": float(logs["loss"][-1]),
                   "train_acc_train_mode": float(logs["accuracy"][-1]), "lr": lr,
                   "seconds": seconds}
            if cfg.epoch_eval:
                row["train_acc_inference_mode"] = float(model.evaluate(train_eval_ds, verbose=0)[1])
                row["train_acc_train_mode_fixed"] = _train_mode_accuracy(model, train_fixed_ds)
            if not math.isfinite(row["loss"]):
                raise FloatingPointError(
                    f"training loss became {row['loss']} in epoch {epoch + 1}; lower `lr`.")
            history.append(row)
            if paths:
                # the checkpoint of epoch k is checkpoint_k.keras; progress.json names the one
                # that matches its history, so an interrupt between the two writes is harmless
                ckpt = f"checkpoint_{epoch + 1}.keras"
                _atomic_save_model(model, os.path.join(out_dir, ckpt))
                atomic_write_json(paths["progress"], {
                    "config": cfg_dict, "history": history, "checkpoint": ckpt,
                    "wall_time": prior_wall + time.time() - started})
                if epoch > 0:
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(out_dir, f"checkpoint_{epoch}.keras"))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc_train_mode']:.3f}")
    finally:
        if bar is not None:
            bar.close()

    final = _final(model, cfg, history, x_train, y_train, test_ds, mean, std, augment, recipe)
    record = {"config": cfg_dict, "data": info, "history": history, "final": final,
              "versions": _versions(), "wall_time": prior_wall + time.time() - started,
              "seed": cfg.seed, "deterministic": bool(deterministic)}
    record = to_jsonable(record)
    if paths:
        if cfg.save_model:
            _atomic_save_model(model, paths["model"])
        atomic_write_json(paths["record"], record)
        # the record (and model.keras) now hold the result; drop the last training checkpoint
        for name in os.listdir(out_dir):
            if name.startswith("checkpoint_") and name.endswith(".keras"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(out_dir, name))
    return record


def _train_mode_accuracy(model, dataset):
    """Accuracy of ``dataset`` in training mode (noise on, BN on batch statistics), leaving
    the model's non-trainable state (moving statistics, noise seeds) as it was."""
    saved = [v.numpy() for v in model.non_trainable_variables]
    right = total = 0
    for x, y in dataset:
        pred = np.argmax(keras.ops.convert_to_numpy(model(x, training=True)), axis=-1)
        right += int(np.sum(pred == np.asarray(y).reshape(-1)))
        total += len(pred)
    for v, value in zip(model.non_trainable_variables, saved, strict=True):
        v.assign(value)
    return right / max(total, 1)


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
            value = np.array([(int(seed) * 1000003 + i) % (2**31 - 1), epoch << 32],
                             dtype=np.int64)
            state.assign(keras.ops.cast(value, state.dtype))


def _same_config(stored, current, out_dir):
    if stored != current:
        raise ValueError(
            f"out_dir {out_dir!r} holds a run with a different config; use another out_dir or "
            "resume=False to overwrite it.")


#: Table 3's "Adjust BN" variants: record key suffix -> ``recalibrate_bn`` keywords
ADJUST_MODES = {"sequential": {"mode": "sequential"}, "one_pass": {"mode": "one_pass"},
                "one_pass_noise": {"mode": "one_pass", "noise": True}}


def _final(model, cfg, history, x_train, y_train, test_ds, mean, std, augment, recipe):
    """Test errors (plain and after Adjust BN), the per-BN-layer shift and cos^2 per layer."""
    from varshift import data as vdata

    try:
        from varshift.diagnostics import measure_shift, recalibrate_bn
    except ImportError as err:  # pragma: no cover - diagnostics ship with varshift
        raise ImportError(f"varshift.train needs varshift.diagnostics ({err}).") from None

    idx = _subset(len(x_train), cfg.stats_samples, cfg.seed)
    # the training data "with its augmentation" (Sec. 4): one fixed, seeded augmented pass,
    # identical on every iteration, so sequential recalibration sees the same images per layer
    stats_ds = vdata.make_dataset(x_train[idx], y_train[idx], batch_size=cfg.eval_batch_size,
                                  training=True, augment=augment, mean=mean, std=std,
                                  seed=cfg.seed * 100003 + 99991)
    test_acc = float(model.evaluate(test_ds, verbose=0)[1])
    final = {
        "test_error": 100.0 * (1.0 - test_acc),
        **{f"test_error_adjust_{name}": None for name in ADJUST_MODES},
        "stats_samples": len(idx),
    }
    shift = measure_shift(model, stats_ds, batch_size=cfg.eval_batch_size)
    final["shift"] = shift.to_dict("records")
    if cfg.adjust:
        for name, kwargs in ADJUST_MODES.items():
            fixed = recalibrate_bn(model, stats_ds, batch_size=cfg.eval_batch_size, **kwargs)
            compile_model(fixed, recipe)
            acc = fixed.evaluate(test_ds, verbose=0)[1]
            final[f"test_error_adjust_{name}"] = 100.0 * (1.0 - float(acc))
    final["cos2"] = cos2_table(model)
    return final
