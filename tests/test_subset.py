"""Subsets of a data set: the default fixed draw, per-seed training draws, and test images
kept apart from an earlier subset's (a confirmatory run's test images were never read)."""

import numpy as np
import pytest

from varshift import data as vdata
from varshift.data import subset_indices, take_subset


def _arrays(n, classes=10, seed=0):
    """Images that carry their own index (so sets of images can be compared) and labels."""
    y = np.random.default_rng(seed).integers(0, classes, n)
    x = np.arange(n, dtype=np.int64).view(np.uint8).reshape(n, 2, 2, 2)
    return x, y


def _ids(x):
    return set(x.reshape(len(x), -1).view(np.int64).ravel().tolist())


PILOT = {"n_train": 4000, "n_test": 4000}


def test_the_default_draw_is_the_fixed_one_whatever_the_run_seed():
    train, test = _arrays(6000), _arrays(10000, seed=1)
    (x0, y0), (xt0, _), note0 = take_subset(train, test, PILOT)
    for run_seed in (0, 7):
        (x, _), (xt, _), note = take_subset(train, test, PILOT, run_seed=run_seed)
        assert _ids(x) == _ids(x0) and _ids(xt) == _ids(xt0) and note == note0
    # what it always was: the class-stratified selection with seed 0
    assert _ids(x0) == _ids(train[0][subset_indices(train[1], 4000, 0)])
    assert note0 == {"n_train": 4000, "n_test": 4000, "of_n_train": 6000, "of_n_test": 10000,
                     "selection": "class-stratified, selection seed 0"}
    assert np.bincount(y0).min() == 400  # stratified


def test_per_seed_training_draws_differ_across_seeds_and_repeat_for_a_seed():
    train, test = _arrays(6000), _arrays(10000, seed=1)
    spec = {**PILOT, "train_draw": "per_seed"}
    draws = {s: take_subset(train, test, spec, run_seed=s) for s in (0, 1, 2)}
    ids = {s: _ids(d[0][0]) for s, d in draws.items()}
    assert ids[0] != ids[1] != ids[2] and ids[0] != ids[2]
    assert _ids(take_subset(train, test, spec, run_seed=1)[0][0]) == ids[1]
    assert all(np.bincount(d[0][1]).min() == 400 for d in draws.values())
    # the test images stay the same for every seed: runs are paired on them
    assert len({frozenset(_ids(d[1][0])) for d in draws.values()}) == 1
    assert draws[2][2]["train_draw"] == "per_seed" and "seed 2" in draws[2][2]["selection"]


def test_test_exclude_leaves_out_the_pilots_test_images():
    train, test = _arrays(6000), _arrays(10000, seed=1)
    pilot = _ids(take_subset(train, test, PILOT)[1][0])
    confirm = {"n_train": 4000, "n_test": None, "train_draw": "per_seed",
               "test_exclude": {"n_test": 4000, "seed": 0}}
    (_, _), (xt, yt), note = take_subset(train, test, confirm, run_seed=3)
    assert not _ids(xt) & pilot  # disjoint
    assert _ids(xt) | pilot == _ids(test[0])  # n_test None: all the rest
    assert (note["n_test"], note["n_excluded"]) == (6000, 4000)
    (_, _), (xs, ys), _ = take_subset(train, test, {**confirm, "n_test": 2000})
    assert len(xs) == 2000 and not _ids(xs) & pilot and np.bincount(ys).min() == 200


def test_load_and_the_trainer_draw_per_seed():
    from varshift.train import RunConfig
    from varshift.train.trainer import prepare_data

    spec = {"n_train": 600, "train_draw": "per_seed"}
    a = vdata.load("synthetic", seed=0, subset=spec)
    assert a[2]["subset"]["train_draw"] == "per_seed"
    pytest.importorskip("keras")
    d = {s: prepare_data(RunConfig(data="digits", seed=s, subset=spec), False) for s in (0, 1)}
    assert {im.tobytes() for im in d[0].x_train} != {im.tobytes() for im in d[1].x_train}
    assert len(d[0].x_train) == 600


@pytest.mark.parametrize("subset, message", [
    ({"n_train": 10, "train_draw": "each"}, r"train_draw.*'each'"),
    ({"test_exclude": {"n_test": 10}}, r"test_exclude.*\{'n_test': 10\}"),
    ({"test_exclude": {"n_test": 0, "seed": 0}}, r"test_exclude.n_test.*0"),
    ({"test_exclude": {"n_test": 5, "seed": -1}}, r"seed.*-1"),
    ({"n_draw": 5}, r"n_draw"),
])
def test_bad_subsets_are_named(subset, message):
    with pytest.raises(ValueError, match=message):
        vdata.check_subset(subset)


def test_numpy_integers_are_counts_and_bools_are_not():
    from varshift.data.subset import check_subset

    got = check_subset({"n_train": np.int64(100), "n_test": np.int32(50),
                        "test_exclude": {"n_test": np.int64(4), "seed": np.int64(0)}})
    assert got["n_train"] == 100 and type(got["n_train"]) is int
    assert got["test_exclude"] == {"n_test": 4, "seed": 0}
    for bad in (True, np.float64(3.0), 0):
        with pytest.raises(ValueError, match="n_train"):
            check_subset({"n_train": bad})
