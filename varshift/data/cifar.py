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

The files are data, never code: each batch is read with an unpickler that builds only what the
official files hold (dicts, lists, ints, bytes and integer numpy arrays, rebuilt from their raw
bytes without numpy's own unpickling) and refuses any other global, naming the file; nothing in
a crafted file runs. Images must be integers 0..255 in ``(N, 3072)``, one label per image in
``0..classes-1``, the same image shape in both splits (:mod:`varshift.data._checks`). The MD5 of
the official archive (or, for an extracted folder, of each batch file) is compared with the one
the data set's authors publish; files that differ are still read as data, and the source then
says they are not the official ones.

The python format: pickled dicts (``encoding="bytes"``) with ``b"data"``, a ``(N, 3072)``
uint8 array, row-major channel planes (R 1024, G 1024, B 1024, each 32x32), and
``b"labels"`` (CIFAR-10, files ``data_batch_1..5`` and ``test_batch``) or
``b"fine_labels"`` (CIFAR-100, files ``train`` and ``test``).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import socket
import tarfile

import numpy as np

from varshift.data._checks import check_labels, check_pair, check_pixels, check_splits

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


#: MD5 of the official archives and of their batch files, as published by the data set's
#: authors (https://www.cs.toronto.edu/~kriz/cifar.html) and used by torchvision
OFFICIAL_MD5 = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar10": {"data_batch_1": "c99cafc152244af753f735de768cd75f",
                "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
                "data_batch_4": "634d18415352ddfa80567beed471001a",
                "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
                "test_batch": "40351d587109b95175f43aff81a1287e"},
    "cifar100": {"train": "16019d7e3df5f24257cddd939b257f8d",
                 "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
}
#: the largest batch file read (the official ones are 31 MB and 155 MB)
MAX_BATCH_BYTES = 1 << 30
_INT_CODES = {"u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8"}


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a batch file: the class argument of ``_reconstruct``."""


class _DtypeStub:
    """``numpy.dtype(code, align, copy)`` of a batch file, kept as text: an integer dtype is
    built from it after unpickling (numpy's own ``__setstate__`` never sees the file)."""

    def __init__(self, code, align=False, copy=True):
        self.code = code.decode("ascii", "replace") if isinstance(code, bytes) else code
        self.order = "|"

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        self.order = order.decode("ascii", "replace") if isinstance(order, bytes) else order

    def dtype(self, where):
        if (not isinstance(self.code, str) or self.code not in _INT_CODES
                or not isinstance(self.order, str) or self.order not in ("<", ">", "|", "=")):
            raise ValueError(f"{where}: holds an array of dtype {self.code!r}; expected integers "
                             "(uint8 in the official files).")
        return np.dtype(("=" if self.order == "|" else self.order) + self.code)


class _ArrayStub:
    """``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)`` and the state its
    ``__setstate__`` receives, turned into an array by :meth:`array` (checked sizes only)."""

    def __init__(self, cls=None, shape=None, typecode=None):
        self.ok = cls is _NdarrayClass
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def array(self, where):
        state = self.state
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (self.ok and isinstance(state, tuple) and len(state) == 4):
            raise ValueError(f"{where}: holds a malformed numpy array; expected the official "
                             "CIFAR python format.")
        shape, dtype, fortran, raw = state
        if isinstance(dtype, _DtypeStub):
            dt = dtype.dtype(where)  # an integer dtype, or refused with the dtype's name
        if (not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape)
                or not isinstance(dtype, _DtypeStub) or not isinstance(raw, bytes)):
            raise ValueError(f"{where}: holds a malformed numpy array; expected the official "
                             "CIFAR python format.")
        if math.prod(shape) * dt.itemsize != len(raw):
            raise ValueError(f"{where}: an array of shape {shape} holds {len(raw)} bytes; "
                             f"expected {math.prod(shape) * dt.itemsize}.")
        return np.frombuffer(raw, dt).reshape(shape, order="F" if fortran else "C")


def _latin1(text, encoding="utf-8"):
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol 2 (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed for latin-1 text only")
    return text.encode("latin-1")


#: the only globals a CIFAR batch file may name: numpy array reconstruction (read into the
#: stubs above) and Python 3's protocol-2 bytes; dicts, lists, ints and bytes need none
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, ints, bytes and integer arrays."""

    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a CIFAR batch holds only arrays, lists, "
                "ints and bytes")
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id: a CIFAR batch has none")


def _unpickle(blob, where):
    try:
        obj = _BatchUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as err:  # anything a file that is not a batch can raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{where}: not a CIFAR batch in the official python format "
                         f"({reason}); nothing in it was run.") from None
    return obj


def _array(value, where):
    return value.array(where) if isinstance(value, _ArrayStub) else value


def _decode(blob, label_key, where, num_classes):
    """``(x, y)`` of one batch file: NHWC uint8 images and int64 labels, all checked."""
    d = _unpickle(blob, where)
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(map(repr, d)) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{where}: holds {keys}; expected a dict with b'data' and "
                         f"{label_key!r} (the official CIFAR python format).")
    data = _array(d[b"data"], where)
    try:
        data = np.asarray(data)
    except (TypeError, ValueError):
        data = np.asarray([], dtype=object)
    if data.dtype == object or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{where}: data has shape {data.shape} ({data.dtype}); expected "
                         "(N, 3072) integers 0..255 (N images of 3 x 32 x 32).")
    data = check_pixels(where, data)
    labels = _array(d[label_key], where)
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError):
        labels = np.asarray([], dtype=object)
    y = check_labels(f"{where}: {label_key.decode()}", labels, num_classes)
    check_pair(where, data, y)
    # (N, 3072) = N x (3 planes x 32 x 32), channel-first -> NHWC
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y


def _md5(blob):
    return hashlib.md5(blob, usedforsecurity=False).hexdigest()


def _file_md5(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_blob(fh, size, where):
    if size > MAX_BATCH_BYTES:
        raise ValueError(f"{where}: {size} bytes; a CIFAR batch file has at most "
                         f"{MAX_BATCH_BYTES} (the official ones: 31 MB, 155 MB).")
    return fh.read()


def _read_parts(spec, path, name):
    """Yield ``(split, file, x, y, md5)`` for every batch file, from a folder or a tar.gz."""
    if os.path.isdir(path):
        for split in ("train", "test"):
            for f in spec[split]:
                where = os.path.join(path, f)
                with open(where, "rb") as fh:
                    blob = _read_blob(fh, os.fstat(fh.fileno()).st_size, where)
                yield (split, where, *_decode(blob, spec["label_key"], where, spec["classes"]),
                       _md5(blob))
        return
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"{path}: not a readable tar.gz archive ({err}).") from None
    with tar:
        try:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(f"{path}: a damaged tar.gz archive ({err}).") from None
        for split in ("train", "test"):
            for f in spec[split]:
                if f not in members:
                    raise FileNotFoundError(
                        f"CIFAR archive {path} has no member {f!r}; expected the official "
                        f"{spec['archive']} (members {spec['train'] + spec['test']})."
                    )
                where = f"{path}:{members[f].name}"
                try:
                    blob = _read_blob(tar.extractfile(members[f]), members[f].size, where)
                except (tarfile.TarError, OSError, EOFError) as err:
                    raise ValueError(f"{where}: cannot be read from the archive ({err}).") \
                        from None
                yield (split, where, *_decode(blob, spec["label_key"], where, spec["classes"]),
                       _md5(blob))


def _read(spec, path, name):
    """The two splits of ``path`` and whether every batch file is the official one (MD5)."""
    parts = {"train": ([], [], []), "test": ([], [], [])}
    official = True
    for split, where, x, y, md5 in _read_parts(spec, path, name):
        parts[split][0].append(x)
        parts[split][1].append(y)
        parts[split][2].append(where)
        official &= OFFICIAL_MD5[name].get(os.path.basename(where.split(":")[-1])) == md5
    (x, y), (xt, yt) = (
        (np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys))
        for xs, ys, _ in (parts["train"], parts["test"])
    )
    check_splits(parts["train"][2][0], parts["test"][2][0], x, xt)
    return ((x, y), (xt, yt)), official


def _source(spec, path, official):
    """``path``, marked where its files are not the official ones (checked by MD5)."""
    if os.path.isfile(path) and os.path.basename(path) == spec["archive"]:
        if _file_md5(path) == OFFICIAL_MD5[spec["archive"]]:
            return f"{path} (official archive, MD5 verified)"
    if official:
        return f"{path} (official batch files, MD5 verified)"
    return (f"{path} (not the official {spec['archive']}: its MD5 differs from the published "
            "one; read as data only)")


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
        ValueError: a file that is not a CIFAR batch of the official format (a refused
            global, a wrong size, pixels outside 0..255, labels outside the classes, images
            and labels of different counts, splits of different image shapes), in one line
            naming the file.

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
        ((x, y), (xt, yt)), official = _read(spec, path, name)
        source = _source(spec, path, official)
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
