"""Fashion-MNIST (70,000 real 28x28 grey images, 10 classes) for CPU-scale runs, offline first.

Where :func:`load_fashion_mnist` looks, in order:

1. ``data_dir`` (if given), holding the four original files.
2. Keras' dataset cache, ``$KERAS_HOME/datasets/fashion-mnist`` (or ``~/.keras/...``).
3. ``/usr/share/datasets/fashion-mnist/``, where the Debian/Ubuntu package
   ``dataset-fashion-mnist`` installs them (``apt-get install dataset-fashion-mnist``).
4. ``keras.datasets.fashion_mnist.load_data()`` when the machine is online.

The four files are the original gzip'ed IDX files: ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.
IDX: big-endian header, magic ``0x00000803`` (uint8, 3 dims) for images and ``0x00000801``
for labels, then one big-endian int32 per dimension, then the raw uint8 values.
"""

from __future__ import annotations

import gzip
import math
import os
import socket

import numpy as np

from varshift.data._checks import check_labels, check_pair, check_splits
from varshift.data.cifar import keras_cache_dir

__all__ = ["load_fashion_mnist", "find_fashion_mnist", "read_idx", "FASHION_FILES", "DEBIAN_DIR"]

FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


def read_idx(path) -> np.ndarray:
    """Read a (gzip'ed) IDX file of unsigned bytes into an array of its stated shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = raw[3]
    dims = tuple(int(v) for v in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = math.prod(dims)
    if len(raw) - offset != expected:
        raise ValueError(
            f"{path}: header says shape {dims} ({expected} values) but holds {len(raw) - offset}."
        )
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims).copy()


def _roots(data_dir):
    roots = [] if data_dir is None else [os.path.expanduser(os.fspath(data_dir))]
    return [*roots, os.path.join(keras_cache_dir(), "fashion-mnist"), DEBIAN_DIR]


def find_fashion_mnist(data_dir=None):
    """The first folder holding all four Fashion-MNIST files, or ``None``."""
    for root in _roots(data_dir):
        if all(os.path.isfile(os.path.join(root, f)) for f in FASHION_FILES.values()):
            return root
    return None


def _online(host="storage.googleapis.com", port=443, timeout=3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_fashion_mnist(data_dir=None, *, download=True, return_source=False):
    """Load Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)``, offline first.

    Args:
        data_dir: optional folder holding the four original ``.gz`` files.
        download: download through ``keras.datasets`` when nothing is found and online.
        return_source: also return the folder read (or the download origin).

    Returns:
        uint8 images ``(60000, 28, 28, 1)`` / ``(10000, 28, 28, 1)`` and int64 labels.

    Raises:
        FileNotFoundError: absent and offline; the message names both remedies.
        ValueError: a file that is not what the original holds (labels outside 0..9, image
            and label counts that differ, test images of another shape than the training
            images, a truncated file), in one line naming the file.

    Example:

    >>> (x, y), (xt, yt) = load_fashion_mnist()  # doctest: +SKIP
    >>> x.shape
    (60000, 28, 28, 1)
    """
    root = find_fashion_mnist(data_dir)
    if root is not None:
        paths = {k: os.path.join(root, f) for k, f in FASHION_FILES.items()}
        arrays = {k: read_idx(path) for k, path in paths.items()}
        for k in ("x_train", "x_test"):
            if arrays[k].ndim != 3:
                raise ValueError(f"{paths[k]}: holds an array of shape {arrays[k].shape}; "
                                 "expected images (N, height, width).")
        x, y, xt, yt = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        y = check_labels(paths["y_train"], y, 10)
        yt = check_labels(paths["y_test"], yt, 10)
        check_pair(f"{paths['x_train']} and {paths['y_train']}", x, y)
        check_pair(f"{paths['x_test']} and {paths['y_test']}", xt, yt)
        check_splits(paths["x_train"], paths["x_test"], x, xt)
        source = root
    elif download and _online():
        from varshift._keras import keras

        (x, y), (xt, yt) = keras().datasets.fashion_mnist.load_data()
        source = f"keras.datasets.fashion_mnist download ({_ORIGIN})"
    else:
        raise FileNotFoundError(
            "fashion_mnist not found offline: run `apt-get install dataset-fashion-mnist` "
            f"(installs the 4 files in {DEBIAN_DIR}/), or put {', '.join(FASHION_FILES.values())} "
            f"in {os.path.join(keras_cache_dir(), 'fashion-mnist')} or a folder given as "
            "--data-dir DIR / data_dir=DIR, or run once online to download."
        )
    x, xt = x.reshape(*x.shape[:3], 1), xt.reshape(*xt.shape[:3], 1)
    out = ((x, y.astype(np.int64)), (xt, yt.astype(np.int64)))
    return (*out, source) if return_source else out
