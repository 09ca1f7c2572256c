"""The run configuration: everything that defines a run, and nothing that does not change it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from varshift import _validate
from varshift._io import to_jsonable
from varshift.contracts import Integer, Real, Shape
from varshift.recipes import RECIPE_KINDS, Recipe

__all__ = ["RunConfig", "FIELD_CHECKS", "check_fields", "check_out_dir", "BACKENDS",
           "thread_environment", "parse_xla_flags", "merge_xla_flags"]

#: the Keras backends a run can train on
BACKENDS = ("tensorflow", "jax", "torch")


def _check_threads(name, threads):
    """``None`` or a positive int (a RunConfig field check, :data:`FIELD_CHECKS`)."""
    if threads is not None:
        _validate.check_positive_int(name, threads)


def _check_backend(name, backend):
    """``None`` or one of :data:`BACKENDS` (a RunConfig field check, :data:`FIELD_CHECKS`)."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"Argument `{name}` must be one of {list(BACKENDS)} or None; "
                         f"received {name}={backend!r}.")


def parse_xla_flags(text, name="XLA_FLAGS"):
    """``{flag: value}`` of an ``XLA_FLAGS`` string (``--flag=value`` or ``--flag``: ``"true"``).

    XLA reads a value that does not start with ``--`` as a file of flags and stops at a later
    token without ``--``, so such a token is refused here rather than silently dropping the
    flags after it.
    """
    flags = {}
    for token in (text or "").split():
        if not token.startswith("--") or token == "--":
            raise ValueError(f"{name} must hold flags written --name=value; received the "
                             f"token {token!r} in {text!r} (XLA would ignore the flags after it).")
        key, _, value = token[2:].partition("=")
        flags[key] = value if _ else "true"
    return flags


def merge_xla_flags(text, flags):
    """``text`` (an ``XLA_FLAGS`` value, :func:`parse_xla_flags`) with ``flags`` set (they win),
    written as ``--name=value`` tokens."""
    merged = {**parse_xla_flags(text), **flags}
    return " ".join(f"--{key}={value}" for key, value in merged.items())


def thread_environment(threads, backend, xla_flags=None):
    """Environment variables that fix ``threads`` CPU threads of ``backend``'s kernels.

    They act only when set before the backend starts (a fresh worker process sets them
    before anything imports Keras); :func:`varshift.train.run` also sets the thread pools
    through the backend's API where it still can. ``{}`` for ``threads=None``. On JAX the
    XLA CPU client's thread pool is sized by ``PJRT_NPROC`` (``NPROC`` for older jaxlib) and
    Eigen's own threading by ``--xla_cpu_multi_thread_eigen``, merged into ``xla_flags`` (the
    user's ``XLA_FLAGS``; :func:`merge_xla_flags`).
    """
    if threads is None:
        return {}
    n = str(int(threads))
    env = {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}
    if backend in (None, "tensorflow"):
        env.update(TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS=n)
    if backend in (None, "jax"):
        env.update(PJRT_NPROC=n, NPROC=n, XLA_FLAGS=merge_xla_flags(
            xla_flags, {"xla_cpu_multi_thread_eigen": "false" if threads == 1 else "true"}))
    return env


@dataclass
class RunConfig:
    """Everything that defines a run (and nothing that does not change its result).

    Args:
        net: network name (a key of :data:`varshift.nets.NETWORKS`).
        size: size keywords for :func:`varshift.nets.build`; ``{}`` is the paper's size and
            the string ``"small"`` the network's small size (:data:`varshift.nets.SMALL_SIZES`).
        placement, noise: noise layers (see :func:`varshift.nets.build`).
        rate: drop ratio of the dropout kinds (``dropout``, ``gaussian_dropout``).
        beta: Uout's :math:`\\beta` (``noise="uout"``); the parameter the noise kind does not
            have stays 0 (:data:`varshift.noise.NOISES` names each kind's parameter).
        data: data set name (:data:`varshift.data.DATASETS`); ``data_dir`` is searched first.
        recipe: ``"paper"`` or ``"cpu"``; ``overrides`` changes recipe fields (``epochs``,
            ``batch_size``, ``lr``, ``momentum``, ``lr_drops``, ``drop_factor``,
            ``weight_decay``, ``schedule``, ``warmup_epochs``).
        seed: integer seed of weights, noise, data order and augmentation.
        augment: pad-and-crop + flip; ``None`` uses the data set's default
            (:data:`varshift.data.DEFAULT_AUGMENT`: on for CIFAR only).
        train_eval_samples: size of the fixed training subset (first images of a seeded
            permutation, un-augmented) on which inference-mode training accuracy is measured
            every epoch; ``None`` uses the whole training set.
        stats_samples: training images (same seeded subset, augmented as in training) used for
            the final ``measure_shift`` (and offered to the evaluation hooks as
            ``EvaluationContext.training_sample``); ``None`` uses all of them.
        save_model: save the final model as ``out_dir/model.keras``.
        mixed_precision: train under the ``mixed_float16`` policy (GPU).
        deterministic: call ``tf.config.experimental.enable_op_determinism()`` (process-wide);
            ``None`` (default) does so on CPU-only machines and not where a GPU is visible
            (deterministic GPU kernels can be slow or missing). The record's
            ``deterministic`` says what was used.
        eval_batch_size: batch size of the evaluation passes.
        data_kwargs: extra keywords for :func:`varshift.data.load`.
        subset: ``{"n_train": N, "n_test": M}``: train and test on a class-stratified subset
            (:func:`varshift.data.take_subset`) of any data set, by default the same images for
            every seed; ``"train_draw": "per_seed"`` draws the training images with the run's
            seed, ``"test_exclude": {"n_test": 4000, "seed": 0}`` leaves out the test images
            that subset holds before the test images are drawn (``n_test`` ``None``: all the
            rest). ``None`` uses all. The record's ``data["subset"]`` says so.
        epoch_eval: after every epoch, measure the accuracy of the fixed training subset in
            inference mode and in training mode (noise on, BN on batch statistics, moving
            statistics left untouched). ``False`` skips it (cheaper; history rows then hold the
            training pass's own numbers). The test set is evaluated once, after training.
        threads: CPU threads of the backend's kernels (TensorFlow's intra- and inter-op
            thread pools, XLA's CPU threads on JAX, ``torch.set_num_threads``). Part of the
            config because the order of floating-point reductions, hence the numbers, can
            depend on it; it is never taken from the machine (default 1: the same numbers on
            any machine). ``None`` leaves the backend's own default (machine-dependent).
        backend: the Keras backend the run trains on (``"tensorflow"``, ``"jax"``,
            ``"torch"``); ``None`` (default) uses the process's ``KERAS_BACKEND``. Numbers
            differ between backends, so the reproduction records it in every run's config.
        validation: hold out this many training images (class-stratified, the same for every
            seed) and evaluate on them instead of the test set, which is then not used: for
            choosing a recipe or budget. ``None``: train on all and evaluate on the test set.
        evaluations: the run's evaluation hooks, ``{name: parameters}`` (a JSON-ready dict
            each): measurements added to the record's ``final`` block at the end of the run,
            in the order of their names. :func:`varshift.train.run` receives the callables
            (``evaluations={name: hook}``) for exactly these names; see
            :class:`~varshift.train.EvaluationContext`. ``{}``: none.
    """

    net: str = "preresnet"
    size: dict | str = field(default_factory=dict)
    placement: str = "none"
    noise: str = "dropout"
    rate: float = 0.0
    beta: float = 0.0
    data: str = "cifar10"
    data_dir: str | None = None
    recipe: str = "paper"
    overrides: dict = field(default_factory=dict)
    seed: int = 0
    augment: bool | None = None
    train_eval_samples: int | None = 10000
    stats_samples: int | None = 10000
    save_model: bool = False
    mixed_precision: bool = False
    deterministic: bool | None = None
    eval_batch_size: int = 500
    data_kwargs: dict = field(default_factory=dict)
    subset: dict | None = None
    epoch_eval: bool = True
    threads: int | None = 1
    backend: str | None = None
    validation: int | None = None
    evaluations: dict = field(default_factory=dict)

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

    @property
    def noise_value(self) -> float:
        """Value of the noise kind's parameter (``beta`` for Uout, ``rate`` otherwise)."""
        from varshift.nets._blocks import resolve_noise

        return resolve_noise(self.noise, self.rate, self.beta)[1]

    def resolved(self):
        """``(size dict, Recipe, augment)`` after applying defaults and overrides."""
        from varshift import nets
        from varshift.data import DEFAULT_AUGMENT
        from varshift.data.subset import check_subset
        from varshift.nets._blocks import resolve_noise

        if self.net not in nets.NETWORKS:
            raise ValueError(
                f"Argument `net` must be one of {nets.NAMES}; received net={self.net!r}.")
        resolve_noise(self.noise, self.rate, self.beta)  # checks noise, rate and beta
        check_subset(self.subset)
        check_fields(self)
        _check_data_kwargs(self)
        size = dict(nets.SMALL_SIZES[self.net]) if self.size == "small" else dict(self.size)
        try:  # before any folder is made: the network's size keywords and its depth rule
            nets.check_size(self.net, size)
        except (TypeError, ValueError) as err:
            text = str(err)
            raise type(err)(f"Argument `size` of net {self.net!r}: {text[:1].lower()}"
                            f"{text[1:]}") from None
        recipe = nets.recipe_for(self.net, self.recipe, **self.overrides)
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


# ------------------------------------------------------------------------------- validation

def _optional(check):
    return lambda name, value: None if value is None else check(name, value)


def _check_size(name, value):
    if isinstance(value, str) and value == "small":
        return
    if not isinstance(value, dict):
        raise _validate.ArgumentTypeError(f"Argument `{name}` must be a dict of size keywords "
                                          f"or 'small'; received {name}={value!r}.")


#: what each data set's loader takes in ``data_kwargs`` (checked before any folder is made)
_DATA_KWARGS = {"synthetic": {"n_train": Integer(1), "n_test": Integer(1),
                              "shape": Shape(3, what="the shape of one image (H, W, C)"),
                              "num_classes": Integer(1), "noise": Real(0.0, None)},
                "digits": {"test_fraction": Real(0.0, 1.0, closed="neither")}}


def _check_data_kwargs(config):
    """``data_kwargs`` names only what the data set's loader takes, with valid values; a
    ``validation`` hold-out leaves training images."""
    kwargs = config.data_kwargs
    allowed = _DATA_KWARGS.get(config.data, {})
    for key, value in kwargs.items():
        if key not in allowed:
            raise ValueError(f"Argument `data_kwargs` has key {key!r}, which data "
                             f"{config.data!r} does not take; expected some of "
                             f"{sorted(allowed) or 'none'}.")
        allowed[key].check(f"data_kwargs[{key!r}]", value)
    n_train = (config.subset or {}).get("n_train") or \
        (kwargs.get("n_train", 1024) if config.data == "synthetic" else
         _TRAIN_SIZES.get(config.data))
    if config.validation is not None and n_train is not None and config.validation >= n_train:
        raise ValueError(f"Argument `validation` must be smaller than the {n_train} training "
                         f"images of data {config.data!r} (the rest trains); received "
                         f"validation={config.validation!r}.")


#: training images of the data sets whose size is fixed
_TRAIN_SIZES = {"cifar10": 50000, "cifar100": 50000, "fashion_mnist": 60000}


def _check_dict(name, value):
    if not isinstance(value, dict):
        raise _validate.ArgumentTypeError(f"Argument `{name}` must be a dict; received "
                                          f"{name}={value!r} of type {type(value).__name__}.")


def _check_data(name, value):
    from varshift.data import DATASETS

    _validate.check_choice(name, value, DATASETS)


def _check_path(name, value):
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise _validate.ArgumentTypeError(f"Argument `{name}` must be a folder path or None; "
                                          f"received {name}={value!r}.")


def _check_evaluations(name, value):
    """``{hook name: parameters}``: non-empty string names, JSON-ready dicts of parameters."""
    import json

    _check_dict(name, value)
    for hook, params in value.items():
        if not isinstance(hook, str) or not hook:
            raise ValueError(f"Argument `{name}` must map hook names (non-empty strings) to "
                             f"parameter dicts; received the key {hook!r}.")
        if not isinstance(params, dict):
            raise TypeError(f"Argument `{name}[{hook!r}]` must be a dict of parameters; "
                            f"received {params!r} of type {type(params).__name__}.")
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Argument `{name}[{hook!r}]` must be JSON-ready (it is part of "
                             f"the run's configuration); received {params!r} ({err}).") from None


def _check_recipe_kind(name, value):
    _validate.check_choice(name, value, RECIPE_KINDS)


#: RunConfig field -> check(name, value); a field added to RunConfig gets its check here
FIELD_CHECKS = {
    "size": _check_size,
    "data": _check_data,
    "data_dir": _optional(_check_path),
    "recipe": _check_recipe_kind,
    "overrides": _check_dict,
    "seed": lambda name, value: _validate.check_seed(value, name, allow_none=False),
    "augment": _optional(_validate.check_bool),
    "train_eval_samples": _optional(_validate.check_positive_int),
    "stats_samples": _optional(_validate.check_positive_int),
    "save_model": _validate.check_bool,
    "mixed_precision": _validate.check_bool,
    "deterministic": _optional(_validate.check_bool),
    "eval_batch_size": _validate.check_positive_int,
    "data_kwargs": _check_dict,
    "epoch_eval": _validate.check_bool,
    "validation": _optional(_validate.check_positive_int),
    "evaluations": _check_evaluations,
    "threads": _check_threads,
    "backend": _check_backend,
}


def check_fields(config):
    """Check every field of a :class:`RunConfig` that has a check in :data:`FIELD_CHECKS`:
    one line naming the field, the value and what is expected, before any work."""
    for name, check in FIELD_CHECKS.items():
        if hasattr(config, name):
            check(name, getattr(config, name))
    return config


def check_out_dir(out_dir):
    """``run``'s ``out_dir``: ``None``, or a folder that exists or can be created, writable;
    an existing file is refused. Returns it unchanged."""
    if out_dir is None:
        return None
    _check_path("out_dir", out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"Argument `out_dir` {os.fspath(out_dir)!r} is an existing file; "
                         "expected a folder (created if missing).")
    _validate.output_folder(out_dir, "out_dir")
    return out_dir
