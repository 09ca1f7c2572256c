"""Data loading through the real code paths (generated files in the official formats)."""

import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from varshift import data
from varshift.data import cifar, fashion_mnist


def _cifar_blob(x_nhwc, labels, label_key):
    """One batch file in the official CIFAR python format (pickled dict, (N, 3072) uint8)."""
    flat = x_nhwc.transpose(0, 3, 1, 2).reshape(len(x_nhwc), 3072)  # R plane, G plane, B plane
    d = {b"batch_label": b"testing batch", b"data": flat, label_key: list(map(int, labels)),
         b"filenames": [b"f%d.png" % i for i in range(len(labels))]}
    return pickle.dumps(d, protocol=2)


def _write_cifar(root, name, rng, n_per_file=6, as_archive=True):
    spec = cifar.CIFAR_FILES[name]
    files, truth = {}, {"train": ([], []), "test": ([], [])}
    for split in ("train", "test"):
        for f in spec[split]:
            x = rng.integers(0, 256, size=(n_per_file, 32, 32, 3), dtype=np.uint8)
            y = rng.integers(0, spec["classes"], size=n_per_file)
            files[f] = _cifar_blob(x, y, spec["label_key"])
            truth[split][0].append(x)
            truth[split][1].append(y)
    if as_archive:
        path = os.path.join(root, spec["archive"])
        with tarfile.open(path, "w:gz") as tar:
            for f, blob in files.items():
                info = tarfile.TarInfo(f"{spec['folder']}/{f}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        folder = os.path.join(root, spec["folder"])
        os.makedirs(folder)
        for f, blob in files.items():
            with open(os.path.join(folder, f), "wb") as fh:
                fh.write(blob)
    return [(np.concatenate(truth[s][0]), np.concatenate(truth[s][1])) for s in ("train", "test")]


@pytest.mark.parametrize(("name", "as_archive"), [("cifar10", True), ("cifar100", False)])
def test_load_cifar_reads_the_official_python_format(tmp_path, rng, name, as_archive):
    (x, y), (xt, yt) = _write_cifar(str(tmp_path), name, rng, as_archive=as_archive)
    (lx, ly), (lxt, lyt) = data.load_cifar(name, data_dir=tmp_path, download=False)
    assert lx.dtype == np.uint8 and lx.shape == (len(x), 32, 32, 3)
    np.testing.assert_array_equal(lx, x)
    np.testing.assert_array_equal(ly, y)
    np.testing.assert_array_equal(lxt, xt)
    np.testing.assert_array_equal(lyt, yt)
    # the channel-first planes are transposed, not reshaped: pixel (0, 1) of image 0, channel G
    blob = pickle.loads(_cifar_blob(x[:1], y[:1], b"labels"), encoding="bytes")[b"data"]
    assert lx[0, 0, 1, 1] == blob[0, 1024 + 1]
    _, _, info = data.load(name, data_dir=str(tmp_path))
    assert info["n_train"] == len(x) and info["n_test"] == len(xt)
    assert info["num_classes"] == (10 if name == "cifar10" else 100)
    assert info["source"].startswith(str(tmp_path))


def test_load_cifar_uses_keras_cache_layout(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    target = tmp_path / "kh" / "datasets" / "cifar-10-batches-py-target"
    target.mkdir(parents=True)
    (x, _), _ = _write_cifar(str(target), "cifar10", rng, as_archive=False)
    (lx, _), _, source = data.load_cifar("cifar10", download=False, return_source=True)
    np.testing.assert_array_equal(lx, x)
    assert "cifar-10-batches-py-target" in source


def test_load_cifar_offline_and_absent_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as err:
        data.load_cifar("cifar100", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "cifar-100-python.tar.gz" in msg and str(tmp_path) in msg and "--data-dir" in msg


def _idx_gz(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}i", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_load_fashion_mnist_reads_idx_gz_files(tmp_path, rng):
    arrays = {
        "x_train": rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=7).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=3).astype(np.uint8),
    }
    for key, fname in fashion_mnist.FASHION_FILES.items():
        _idx_gz(os.path.join(tmp_path, fname), arrays[key])
    (x, y), (xt, yt) = data.load_fashion_mnist(data_dir=tmp_path, download=False)
    assert x.shape == (7, 28, 28, 1) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(y, arrays["y_train"])
    np.testing.assert_array_equal(xt[..., 0], arrays["x_test"])
    np.testing.assert_array_equal(yt, arrays["y_test"])
    # a truncated file is rejected with its path
    _idx_gz(os.path.join(tmp_path, "bad.gz"), arrays["y_test"])
    with gzip.open(os.path.join(tmp_path, "bad.gz"), "rb") as fh:
        raw = fh.read()
    with gzip.open(os.path.join(tmp_path, "bad.gz"), "wb") as fh:
        fh.write(raw[:-1])
    with pytest.raises(ValueError, match="bad.gz"):
        fashion_mnist.read_idx(os.path.join(tmp_path, "bad.gz"))


def test_fashion_mnist_absent_names_both_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", str(tmp_path / "nodeb"))
    with pytest.raises(FileNotFoundError) as err:
        data.load_fashion_mnist(download=False)
    msg = str(err.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "data_dir" in msg and "online" in msg


def test_load_digits_is_uint8_nhwc_stratified_and_seeded():
    (x, y), (xt, yt) = data.load_digits(seed=3, test_fraction=0.2)
    assert x.shape[1:] == (8, 8, 1) and x.dtype == np.uint8
    assert len(x) + len(xt) == 1797 and x.max() == 255
    # stratified: every class keeps about 20 % in the test split
    for c in range(10):
        frac = (yt == c).sum() / ((y == c).sum() + (yt == c).sum())
        assert abs(frac - 0.2) < 0.01
    (x2, _), _ = data.load_digits(seed=3, test_fraction=0.2)
    (x3, _), _ = data.load_digits(seed=4, test_fraction=0.2)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, x3)
    _, _, info = data.load("digits")
    assert info == {"name": "digits", "source": "sklearn bundled", "n_train": info["n_train"],
                    "n_test": 1797 - info["n_train"], "shape": [8, 8, 1], "num_classes": 10}


def test_make_dataset_normalises_augments_and_is_deterministic(keras, rng):
    x = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    y = np.arange(40)  # unique labels: image ids
    mean, std = data.channel_stats(x)
    np.testing.assert_allclose(mean, (x / 255.0).reshape(-1, 3).mean(0), rtol=1e-5)

    def collect(**kw):
        ds = data.make_dataset(x, y, batch_size=16, mean=mean, std=std, **kw)
        xs, ys = zip(*[(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
                       for a, b in ds], strict=True)
        return np.concatenate(xs), np.concatenate(ys)

    # evaluation: same order, exact normalisation
    ex, ey = collect(training=False)
    np.testing.assert_array_equal(ey, y)
    np.testing.assert_allclose(ex, (x / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    # training: shuffled, augmented, same seed -> same stream, other seed -> other stream
    a, ay = collect(training=True, seed=7)
    b, by = collect(training=True, seed=7)
    c, _ = collect(training=True, seed=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ay, by)
    assert not np.array_equal(a, c)
    assert sorted(ay.tolist()) == sorted(y.tolist()) and not np.array_equal(ay, y)
    # every augmented image is a 4-pixel zero-padded 32x32 crop of its source, maybe flipped;
    # the labels are the image ids here, so the source is ex[label]
    pad_value = (0.0 - mean) / std  # a black (zero) pixel after normalisation
    shifted = flipped_count = 0
    for img, label in zip(a, ay, strict=True):
        padded = np.broadcast_to(pad_value, (40, 40, 3)).copy()
        padded[4:36, 4:36] = ex[label]
        hits = [(dy, dx, flip) for flip in (False, True) for dy in range(9) for dx in range(9)
                if np.allclose(padded[dy:dy + 32, dx:dx + 32], img[:, ::-1] if flip else img,
                               atol=1e-5)]
        assert hits, label
        shifted += (hits[0][0], hits[0][1]) != (4, 4)
        flipped_count += hits[0][2]
    assert shifted > len(a) // 2 and 0 < flipped_count < len(a)
    # no augmentation: a permutation of the evaluation images
    na, _ = collect(training=True, augment=False, seed=7)
    assert sorted(map(bytes, np.round(na, 4))) == sorted(map(bytes, np.round(ex, 4)))
