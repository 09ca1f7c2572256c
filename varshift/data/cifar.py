"""CIFAR-10 / CIFAR-100 from the official python-format archive, offline first.

Where :func:`load_cifar` looks, in order:

1. ``data_dir`` (if given): the extracted folder (``cifar-10-batches-py`` /
   ``cifar-100-python``), ``data_dir`` being that folder itself, or the official archive
   ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` (read in place, not extracted).
2. Keras' dataset cache, ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``: the same folder or
   archive, also inside Keras 3's ``cifar-10-batches-py-target`` / ``cifar-100-python-target``.
3. ``keras.datasets.cifar10/cifar100.load_data()`` when www.cs.toronto.edu is reachable.

Absent and offline: one ``FileNotFoundError`` line naming the file, where to put it and the
``--data-dir`` option.

The python format: pickled dicts (``encoding="bytes"``) with ``b"data"``, a ``(N, 3072)``
uint8 array, row-major channel planes (R 1024, G 1024, B 1024, each 32x32), and
``b"labels"`` (CIFAR-10, files ``data_batch_1..5`` and ``test_batch``) or
``b"fine_labels"`` (CIFAR-100, files ``train`` and ``test``).
"""

from __future__ import annotations

import os
import pickle
import socket
import tarfile

import numpy as np

__all__ = ["load_cifar", "find_cifar", "keras_cache_dir", "CIFAR_FILES"]

CIFAR_FILES = {
    "cifar10": {
        "archive": "cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "keras_target": "cifar-10-batches-py-target",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": b"labels",
        "classes": 10,
    },
    "cifar100": {
        "archive": "cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "keras_target": "cifar-100-python-target",
        "train": ["train"],
        "test": ["test"],
        "label_key": b"fine_labels",
        "classes": 100,
    },
}
_ORIGIN = "https://www.cs.toronto.edu/~kriz/"


def keras_cache_dir() -> str:
    """Keras' dataset cache: ``$KERAS_HOME/datasets``, else ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def _spec(name):
    if name not in CIFAR_FILES:
        raise ValueError(
            f"Argument `name` must be 'cifar10' or 'cifar100'; received name={name!r}."
        )
    return CIFAR_FILES[name]


def _candidates(spec, root):
    """Folders and archives under ``root`` that may hold the data set, in preference order."""
    return [
        os.path.join(root, spec["folder"]),
        root if os.path.basename(os.path.normpath(root)) == spec["folder"] else None,
        os.path.join(root, spec["keras_target"], spec["folder"]),
        os.path.join(root, spec["archive"]),
        os.path.join(root, spec["keras_target"] + ".tar.gz"),
    ]


def _complete(spec, path):
    if path is None:
        return False
    if os.path.isdir(path):
        return all(os.path.isfile(os.path.join(path, f)) for f in spec["train"] + spec["test"])
    return os.path.isfile(path) and tarfile.is_tarfile(path)


def find_cifar(name="cifar10", data_dir=None):
    """Path of the first complete CIFAR folder or archive found offline, or ``None``."""
    spec = _spec(name)
    roots = ([os.fspath(data_dir)] if data_dir is not None else []) + [keras_cache_dir()]
    for root in roots:
        for path in _candidates(spec, root):
            if _complete(spec, path):
                return path
    return None


def _decode(blob, label_key):
    d = pickle.loads(blob, encoding="bytes")
    data = np.asarray(d[b"data"], dtype=np.uint8)
    # (N, 3072) = N x (3 planes x 32 x 32), channel-first -> NHWC
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    y = np.asarray(d[label_key], dtype=np.int64)
    return x, y


def _read_parts(spec, path):
    """Yield ``(split, x, y)`` for every batch file, from a folder or a tar.gz archive."""
    if os.path.isdir(path):
        for split in ("train", "test"):
            for f in spec[split]:
                with open(os.path.join(path, f), "rb") as fh:
                    yield (split, *_decode(fh.read(), spec["label_key"]))
        return
    with tarfile.open(path, "r:*") as tar:
        members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
        for split in ("train", "test"):
            for f in spec[split]:
                if f not in members:
                    raise FileNotFoundError(
                        f"CIFAR archive {path} has no member {f!r}; expected the official "
                        f"{spec['archive']} (members {spec['train'] + spec['test']})."
                    )
                yield (split, *_decode(tar.extractfile(members[f]).read(), spec["label_key"]))


def _read(spec, path):
    parts = {"train": ([], []), "test": ([], [])}
    for split, x, y in _read_parts(spec, path):
        parts[split][0].append(x)
        parts[split][1].append(y)
    return tuple(
        (np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys))
        for xs, ys in (parts["train"], parts["test"])
    )


def _online(host="www.cs.toronto.edu", port=443, timeout=3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_cifar(name="cifar10", data_dir=None, *, download=True, return_source=False):
    """Load CIFAR-10 or CIFAR-100 (fine labels) like ``keras.datasets``, offline first.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        data_dir: optional folder holding the official archive or its extracted folder.
        download: if ``True`` and nothing is found offline, download through
            ``keras.datasets`` when the machine is online.
        return_source: also return the path (or ``"keras.datasets download"``) read.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 images ``(N, 32, 32, 3)`` and int64
        labels ``(N,)``; with ``return_source``, a third element, the source.

    Raises:
        FileNotFoundError: offline and absent, with one line saying which file to put where.

    Example:

    >>> (x, y), (xt, yt) = load_cifar("cifar10", data_dir="~/data")  # doctest: +SKIP
    >>> x.shape, x.dtype
    ((50000, 32, 32, 3), dtype('uint8'))
    """
    spec = _spec(name)
    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    path = find_cifar(name, data_dir)
    if path is not None:
        (x, y), (xt, yt) = _read(spec, path)
        source = path
    elif download and _online():
        from varshift._keras import keras

        module = getattr(keras().datasets, name)
        (x, y), (xt, yt) = module.load_data()
        y, yt = y.reshape(-1).astype(np.int64), yt.reshape(-1).astype(np.int64)
        source = f"keras.datasets.{name} download ({_ORIGIN}{spec['archive']})"
    else:
        where = keras_cache_dir() if data_dir is None else f"{data_dir} or {keras_cache_dir()}"
        raise FileNotFoundError(
            f"{name} not found offline: put {spec['archive']} (from {_ORIGIN}{spec['archive']}) "
            f"or its extracted folder {spec['folder']}/ in {where}, "
            "or pass --data-dir DIR / data_dir=DIR pointing to the folder that holds it."
        )
    out = ((x, y), (xt, yt))
    return (*out, source) if return_source else out
