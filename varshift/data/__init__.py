"""Data sets and the paper's input pipeline, offline first.

- :func:`load_cifar` (CIFAR-10/100, the paper's data), :func:`load_fashion_mnist` (70,000
  real 28x28 images for CPU-scale runs), :func:`load_digits` (scikit-learn's 1,797 bundled
  8x8 digits, no download) and :func:`synthetic` (generated, learnable images for tests and
  benchmarks) all return ``(x_train, y_train), (x_test, y_test)``: uint8 NHWC images and int64
  labels.
- :func:`load` returns the same plus an ``info`` dict naming the source, which every result
  record of :mod:`varshift.train` carries.
- :func:`take_subset` / :func:`subset_indices` (``load(..., subset=...)``) keep a fixed,
  seeded, class-stratified part of any data set: the one subset mechanism of the package.
- :func:`make_dataset` is the training pipeline: per-channel normalisation, 4-pixel zero
  pad + random crop + horizontal flip, deterministic under a seed (a prefetched ``tf.data``
  pipeline on TensorFlow, a ``keras.utils.PyDataset`` of numpy batches on JAX and PyTorch).

Importing this package does not import Keras or any backend.
"""

from __future__ import annotations

import os

import numpy as np

from varshift._validate import check_choice, check_finite_positive, check_positive_int, check_seed
from varshift.data.cifar import load_cifar
from varshift.data.digits import load_digits
from varshift.data.fashion_mnist import load_fashion_mnist
from varshift.data.pipeline import channel_stats, make_dataset
from varshift.data.subset import check_subset, subset_indices, take_subset
from varshift.seeds import rng as _rng

__all__ = ["load", "load_cifar", "load_fashion_mnist", "load_digits", "synthetic",
           "make_dataset", "channel_stats", "subset_indices", "take_subset", "DATASETS",
           "DEFAULT_AUGMENT"]

DATASETS = ("cifar10", "cifar100", "fashion_mnist", "digits", "synthetic")
# pad-and-crop + flip by default only where the paper's recipe uses it
DEFAULT_AUGMENT = {"cifar10": True, "cifar100": True, "fashion_mnist": False, "digits": False,
                   "synthetic": False}


def synthetic(n_train=1024, n_test=256, shape=(32, 32, 3), num_classes=10, seed=0, noise=48.0):
    """Generated, learnable uint8 images: one random template per class plus Gaussian noise.

    Args:
        n_train, n_test: number of images.
        shape: ``(H, W, C)``.
        num_classes: number of classes (templates).
        seed: integer; same seed, same images.
        noise: standard deviation of the pixel noise (0..255 scale).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``.
    """
    n_train = check_positive_int("n_train", n_train)
    n_test = check_positive_int("n_test", n_test)
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError("Argument `shape` must be (H, W, C), three positive integers; "
                         f"received shape={shape!r}.")
    shape = tuple(check_positive_int(f"shape[{i}]", d) for i, d in enumerate(shape))
    num_classes = check_positive_int("num_classes", num_classes)
    seed = check_seed(seed, allow_none=False)
    noise = check_finite_positive("noise", noise, allow_zero=True)
    rng = _rng(seed, "synthetic")
    templates = rng.uniform(32, 224, size=(num_classes, *shape))

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        x = templates[y] + rng.normal(0.0, noise, size=(n, *shape))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    return draw(n_train), draw(n_test)


def load(name, data_dir=None, seed=0, *, subset=None, **kwargs):
    """Load a data set by name and say where it came from.

    Args:
        name: one of :data:`DATASETS`: ``"cifar10"``, ``"cifar100"``, ``"fashion_mnist"``,
            ``"digits"``, ``"synthetic"``.
        data_dir: folder searched first (CIFAR, Fashion-MNIST).
        seed: split seed (``digits``) or generator seed (``synthetic``); ignored otherwise.
        subset: ``{"n_train": N, "n_test": M}`` keeps a class-stratified subset
            (:func:`take_subset`: selection seed 0 whatever ``seed`` is; with
            ``"train_draw": "per_seed"`` the training images are drawn with ``seed``, and
            ``"test_exclude"`` leaves out an earlier subset's test images); ``None`` keeps all.
        **kwargs: passed on (``test_fraction`` for digits; sizes for synthetic).

    Returns:
        ``((x_train, y_train), (x_test, y_test), info)`` with ``info`` a JSON-ready dict
        ``{name, source, n_train, n_test, shape, num_classes}`` (plus ``subset``, the
        selection and the full sizes, when ``subset`` is given).

    Example:

    >>> train, test, info = load("digits")
    >>> info["source"], info["shape"], info["num_classes"]
    ('sklearn bundled', [8, 8, 1], 10)
    """
    check_choice("name", name, DATASETS)
    check_seed(seed, allow_none=False)
    if data_dir is not None and (not isinstance(data_dir, (str, os.PathLike)) or
                                 str(data_dir) == ""):
        raise TypeError(f"Argument `data_dir` must be a folder path or None; received "
                        f"data_dir={data_dir!r}.")
    check_subset(subset)
    if name in ("cifar10", "cifar100"):
        train, test, source = load_cifar(name, data_dir, return_source=True, **kwargs)
        num_classes = 10 if name == "cifar10" else 100
    elif name == "fashion_mnist":
        train, test, source = load_fashion_mnist(data_dir, return_source=True, **kwargs)
        num_classes = 10
    elif name == "digits":
        train, test = load_digits(seed=seed, **kwargs)
        source, num_classes = "sklearn bundled", 10
    elif name == "synthetic":
        train, test = synthetic(seed=seed, **kwargs)
        source = f"generated (varshift.data.synthetic, seed {seed})"
        num_classes = int(kwargs.get("num_classes", 10))
    else:
        raise ValueError(
            f"Argument `name` must be one of {', '.join(map(repr, DATASETS))}; "
            f"received name={name!r}."
        )
    note = None
    if subset is not None:
        train, test, note = take_subset(train, test, subset, seed=0, run_seed=seed)
    info = {
        "name": name,
        "source": str(source),
        "n_train": len(train[0]),
        "n_test": len(test[0]),
        "shape": [int(s) for s in train[0].shape[1:]],
        "num_classes": num_classes,
    }
    if note is not None:
        info["subset"] = note
    return train, test, info
