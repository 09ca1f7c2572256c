"""Data files are data: a crafted file never runs code, and a malformed one is named in one line.

Every malicious file here, if it were unpickled with ``pickle.load``, would create a marker file;
each test checks that the marker does not exist and that the error names the file.
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import subprocess
import tarfile

import numpy as np
import pytest

from varshift import data
from varshift.data import cifar, fashion_mnist

SPEC10 = cifar.CIFAR_FILES["cifar10"]


# ---------------------------------------------------------------------------------- writers
def _batch(n=4, label_key=b"labels", labels=None, flat=None, rng=None, extra=None):
    rng = rng or np.random.default_rng(0)
    if flat is None:
        flat = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = list(range(n)) if labels is None else labels
    return {b"batch_label": b"testing batch", b"data": flat, label_key: labels,
            b"filenames": [b"f%d.png" % i for i in range(len(labels))], **(extra or {})}


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2's ``str`` (BINSTRING), as the official files were written."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _py2_blob(obj):
    """``obj`` pickled as in the official archive: protocol 2, Python 2 strings and numpy 1's
    ``numpy.core.multiarray._reconstruct``."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _folder(root, blobs, spec=SPEC10):
    """The extracted folder with ``blobs[name]`` (default: a valid batch) for every file."""
    folder = root / spec["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(spec["train"] + spec["test"]):
        blob = blobs.get(f) or pickle.dumps(_batch(rng=np.random.default_rng(i)), protocol=2)
        (folder / f).write_bytes(blob)
    return folder


def _archive(path, blobs, spec=SPEC10):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for i, f in enumerate(spec["train"] + spec["test"]):
            blob = blobs.get(f) or pickle.dumps(_batch(rng=np.random.default_rng(i)), protocol=2)
            info = tarfile.TarInfo(f"{spec['folder']}/{f}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


# ------------------------------------------------------------------------- malicious pickles
class _Call:
    """Unpickling this calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _attacks(marker):
    """Pickles that, if unpickled, create ``marker``: each a different way to run code."""
    touch = f"touch {marker}"
    return {
        "os.system": pickle.dumps(_Call(os.system, touch), protocol=2),
        "builtins.exec": pickle.dumps(_Call(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
                                      protocol=2),
        "subprocess.call": pickle.dumps(_Call(subprocess.call, ["touch", str(marker)]), protocol=2),
        "subprocess.Popen": pickle.dumps(_Call(subprocess.Popen, ["touch", str(marker)]),
                                         protocol=4),
        # the payload hidden in a batch that is otherwise valid: loading must not "succeed"
        "valid batch with payload": pickle.dumps(
            _batch(extra={b"batch_label": _Call(os.system, touch)}), protocol=2),
        "python-2 layout with payload": _py2_blob(_batch(extra={b"x": _Call(os.system, touch)})),
    }


ATTACKS = list(_attacks("m"))


def _one_line(err):
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("kind", ATTACKS)
def test_a_malicious_batch_file_runs_nothing_and_is_named(kind, tmp_path):
    marker = tmp_path / "pwned"
    folder = _folder(tmp_path / "d", {"data_batch_1": _attacks(marker)[kind]})
    with pytest.raises(ValueError) as err:
        data.load("cifar10", data_dir=tmp_path / "d")
    assert not marker.exists()
    text = _one_line(err)
    assert str(folder / "data_batch_1") in text and "refused" in text


@pytest.mark.parametrize("kind", ATTACKS)
def test_a_malicious_archive_runs_nothing_and_is_named(kind, tmp_path):
    marker = tmp_path / "pwned"
    archive = _archive(tmp_path / "d" / SPEC10["archive"], {"test_batch": _attacks(marker)[kind]})
    with pytest.raises(ValueError) as err:
        data.load_cifar("cifar10", data_dir=tmp_path / "d", download=False)
    assert not marker.exists()
    text = _one_line(err)
    assert str(archive) in text and "test_batch" in text


@pytest.mark.parametrize("kind", ["os.system", "valid batch with payload"])
def test_a_malicious_archive_in_the_keras_cache_runs_nothing(kind, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    archive = _archive(tmp_path / "kh" / "datasets" / SPEC10["archive"],
                       {"data_batch_3": _attacks(marker)[kind]})
    with pytest.raises(ValueError) as err:
        data.load("cifar10")  # no data_dir: the cache is searched
    assert not marker.exists()
    assert str(archive) in _one_line(err)


def test_reproduce_run_on_a_malicious_data_dir_runs_nothing(tmp_path, capsys):
    from reproduce.__main__ import main

    marker = tmp_path / "pwned"
    _archive(tmp_path / "d" / SPEC10["archive"], {"data_batch_1": _attacks(marker)["os.system"]})
    code = main(["run", "--profile", "paper", "--data-dir", str(tmp_path / "d"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not marker.exists()
    assert len(err) == 1 and "data_batch_1" in err[0] and "refused" in err[0]
    assert not (tmp_path / "out" / "runs").exists()


def test_an_object_array_is_refused_without_building_it(tmp_path):
    flat = np.empty((4, 3072), dtype=object)
    flat[:] = 7
    _folder(tmp_path, {"data_batch_2": pickle.dumps(_batch(flat=flat), protocol=2)})
    with pytest.raises(ValueError, match=r"data_batch_2.*dtype 'O8'.*expected integers"):
        data.load_cifar("cifar10", data_dir=tmp_path, download=False)


def test_the_official_python_2_layout_is_read(tmp_path):
    rng = np.random.default_rng(1)
    batches = {f: _batch(rng=rng) for f in SPEC10["train"] + SPEC10["test"]}
    _folder(tmp_path, {f: _py2_blob(b) for f, b in batches.items()})
    (x, y), (xt, yt) = data.load_cifar("cifar10", data_dir=tmp_path, download=False)
    first = batches["data_batch_1"]
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and xt.shape == (4, 32, 32, 3)
    # pixel (row 0, column 1), green plane: index 1024 + 1 of the flat row
    assert x[0, 0, 1, 1] == first[b"data"][0, 1024 + 1]
    np.testing.assert_array_equal(y[:4], first[b"labels"])


def test_the_source_says_whether_the_files_are_the_official_ones(tmp_path, monkeypatch):
    archive = _archive(tmp_path / SPEC10["archive"], {})
    _, _, source = data.load_cifar("cifar10", data_dir=tmp_path, download=False,
                                   return_source=True)
    assert source.startswith(str(archive)) and "not the official" in source
    digest = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    monkeypatch.setitem(cifar.OFFICIAL_MD5, SPEC10["archive"], digest)
    _, _, source = data.load_cifar("cifar10", data_dir=tmp_path, download=False,
                                   return_source=True)
    assert source == f"{archive} (official archive, MD5 verified)"


# ------------------------------------------------------------------ malformed CIFAR content
def _bad(case):
    if case == "wrong size":
        return _batch(flat=np.zeros((4, 3000), np.uint8)), [r"\(4, 3000\)", r"\(N, 3072\)"]
    if case == "label out of range":
        return _batch(labels=[0, 1, 57, 2]), ["label 57", "0..9"]
    if case == "10 images, 4 labels":
        return (_batch(flat=np.zeros((10, 3072), np.uint8), labels=[0, 1, 2, 3]),
                ["10 images but 4 labels"])
    if case == "negative pixel":
        flat = np.zeros((4, 3072), np.int16)
        flat[1, 5] = -5
        return _batch(flat=flat), ["pixel value -5", "0..255"]
    if case == "pixel above 255":
        return _batch(flat=[[300] * 3072] * 4), ["pixel value 300", "0..255"]
    if case == "float pixels":
        return _batch(flat=np.full((4, 3072), 0.5)), ["dtype 'f8'", "integers"]
    if case == "not a dict":
        return [1, 2, 3], ["expected a dict"]
    if case == "no labels":
        d = _batch()
        del d[b"labels"]
        return d, ["expected a dict with b'data' and b'labels'"]
    raise AssertionError(case)


BAD = ["wrong size", "label out of range", "10 images, 4 labels", "negative pixel",
       "pixel above 255", "float pixels", "not a dict", "no labels"]


@pytest.mark.parametrize("case", BAD)
def test_malformed_cifar_content_is_one_line_naming_the_file(case, tmp_path):
    batch, needles = _bad(case)
    folder = _folder(tmp_path, {"data_batch_4": pickle.dumps(batch, protocol=2)})
    with pytest.raises(ValueError) as err:
        data.load_cifar("cifar10", data_dir=tmp_path, download=False)
    text = _one_line(err)
    assert str(folder / "data_batch_4") in text
    for needle in needles:
        assert re.search(needle, text), (needle, text)


def test_a_torn_batch_file_is_named(tmp_path):
    blob = pickle.dumps(_batch(), protocol=2)
    folder = _folder(tmp_path, {"test_batch": blob[: len(blob) // 2]})
    with pytest.raises(ValueError) as err:
        data.load_cifar("cifar10", data_dir=tmp_path, download=False)
    assert str(folder / "test_batch") in _one_line(err)


def test_cifar100_labels_are_checked_against_100_classes(tmp_path):
    spec = cifar.CIFAR_FILES["cifar100"]
    good = _batch(label_key=b"fine_labels", labels=[0, 99, 5, 6])
    _folder(tmp_path / "ok", {"train": pickle.dumps(good, protocol=2),
                              "test": pickle.dumps(good, protocol=2)}, spec)
    (_, y), _ = data.load_cifar("cifar100", data_dir=tmp_path / "ok", download=False)
    assert y.tolist() == [0, 99, 5, 6]
    bad = _batch(label_key=b"fine_labels", labels=[0, 100, 5, 6])
    _folder(tmp_path / "bad", {"train": pickle.dumps(good, protocol=2),
                               "test": pickle.dumps(bad, protocol=2)}, spec)
    with pytest.raises(ValueError, match=r"cifar-100-python/test.*label 100.*0\.\.99"):
        data.load_cifar("cifar100", data_dir=tmp_path / "bad", download=False)


# ------------------------------------------------------------------ malformed Fashion-MNIST
def _idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i",
                                                                         *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def _fashion(root, **override):
    rng = np.random.default_rng(2)
    arrays = {"x_train": rng.integers(0, 256, (6, 28, 28)), "y_train": np.arange(6) % 10,
              "x_test": rng.integers(0, 256, (3, 28, 28)), "y_test": np.arange(3)}
    arrays.update(override)
    for key, name in fashion_mnist.FASHION_FILES.items():
        _idx(root / name, np.asarray(arrays[key]))


@pytest.mark.parametrize(("override", "file", "needles"), [
    ({"y_train": np.array([0, 1, 200, 3, 4, 5])}, "train-labels", ["label 200", "0..9"]),
    ({"x_test": np.zeros((3, 7, 7))}, "t10k-images", ["7x7", "28x28", "same shape"]),
    ({"y_test": np.array([0, 1])}, "t10k-labels", ["3 images but 2 labels"]),
    ({"x_train": np.zeros((6, 784))}, "train-images", ["(6, 784)", "(N, height, width)"]),
], ids=["label 200", "7x7 test images", "3 images 2 labels", "flat images"])
def test_malformed_fashion_mnist_is_one_line_naming_the_file(override, file, needles, tmp_path):
    _fashion(tmp_path, **override)
    with pytest.raises(ValueError) as err:
        data.load_fashion_mnist(data_dir=tmp_path, download=False)
    text = _one_line(err)
    assert str(tmp_path / file) in text
    for needle in needles:
        assert needle in text, (needle, text)
