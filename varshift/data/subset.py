"""Fixed subsets of a data set: one mechanism for every data set and every caller.

:func:`subset_indices` picks ``k`` of ``n`` items from a seeded permutation, either uniformly or
class-stratified (the same share of every class, the remainder to the first classes).
:func:`take_subset` applies it to a ``(train, test)`` pair; :func:`varshift.data.load` does so
with its ``subset`` argument, which is how :class:`varshift.train.RunConfig` ``subset`` and the
reproduction's CPU profiles train on part of Fashion-MNIST or CIFAR. The indices are sorted, so
a subset keeps the data set's order. By default the training images are the same for every
run (selection seed 0); ``train_draw="per_seed"`` draws them with the run's seed, and
``test_exclude`` leaves out the test images an earlier subset read (a confirmatory run's test
images were never read before).
"""

from __future__ import annotations

import numpy as np

from varshift.seeds import rng

__all__ = ["subset_indices", "take_subset", "check_subset", "TRAIN_DRAWS"]


def subset_indices(y, k, seed=0, *, stratified=True):
    """Sorted indices of ``k`` of the ``len(y)`` items, a function of ``seed`` alone.

    Args:
        y: labels (for ``stratified``) or any sequence of the items' length.
        k: how many to keep; ``None`` or ``k >= len(y)`` keeps all.
        seed: selection seed (purpose ``"stratified_subset"`` or ``"random_subset"`` of
            :func:`varshift.seeds.derive_seed`).
        stratified: take ``k // C`` of each of the ``C`` classes (one more for the first
            ``k % C``); otherwise the first ``k`` of a uniform permutation.

    Returns:
        An int64 array of sorted indices.

    Example:

    >>> y = np.array([0, 1] * 50)
    >>> np.bincount(y[subset_indices(y, 4)]).tolist()
    [2, 2]
    """
    from varshift._validate import check_bool, check_positive_int, check_seed

    if k is not None:
        check_positive_int("k", k)
    seed = check_seed(seed, allow_none=False, maximum=None)
    check_bool("stratified", stratified)
    n = len(y)
    if k is None or k >= n:
        return np.arange(n)
    if not stratified:
        return np.sort(rng(seed, "random_subset").permutation(n)[:k])
    y = np.asarray(y)
    order = rng(seed, "stratified_subset").permutation(n)
    classes = np.unique(y)
    take = []
    for i, c in enumerate(classes):
        per_class = k // len(classes) + (1 if i < k % len(classes) else 0)
        take.extend(order[y[order] == c][:per_class].tolist())
    return np.sort(np.asarray(take, dtype=np.int64))


#: how a subset's training images are drawn: with the selection seed (the same images for
#: every run) or with the run's own seed (a new class-stratified draw per seed)
TRAIN_DRAWS = ("fixed", "per_seed")


def _check_count(key, value):
    """``value`` as an ``int`` (numpy integers accepted), or ``None``."""
    if value is not None and (isinstance(value, (bool, np.bool_))
                              or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"Argument `subset` must hold positive integers; received "
                         f"subset[{key!r}]={value!r}.")
    return None if value is None else int(value)


def check_subset(subset):
    """``subset`` with every key filled in, or ``None``.

    Keys: ``n_train``, ``n_test`` (positive int or ``None``: all), ``train_draw`` (one of
    :data:`TRAIN_DRAWS`, default ``"fixed"``) and ``test_exclude`` (``None`` or
    ``{"n_test": M, "seed": s}``: the test images that a subset ``{"n_test": M}`` drawn with
    selection seed ``s`` holds, left out before the test subset is drawn).
    """
    if subset is None:
        return None
    keys = {"n_train", "n_test", "train_draw", "test_exclude"}
    if not isinstance(subset, dict) or not set(subset) <= keys:
        raise ValueError("Argument `subset` must be None or a dict with some of the keys "
                         f"{sorted(keys)}; received subset={subset!r}.")
    counts = {key: _check_count(key, subset.get(key)) for key in ("n_train", "n_test")}
    draw = subset.get("train_draw", "fixed")
    if draw not in TRAIN_DRAWS:
        raise ValueError(f"Argument `subset['train_draw']` must be one of {list(TRAIN_DRAWS)}; "
                         f"received {draw!r}.")
    exclude = subset.get("test_exclude")
    if exclude is not None:
        if not isinstance(exclude, dict) or set(exclude) != {"n_test", "seed"}:
            raise ValueError("Argument `subset['test_exclude']` must be None or a dict "
                             f"{{'n_test': M, 'seed': s}}; received {exclude!r}.")
        n_excluded = _check_count("test_exclude.n_test", exclude["n_test"])
        seed = exclude["seed"]
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
                or seed < 0:
            raise ValueError("Argument `subset['test_exclude']['seed']` must be an integer "
                             f">= 0; received {seed!r}.")
        exclude = {"n_test": n_excluded, "seed": int(seed)}
    return {**counts, "train_draw": draw, "test_exclude": exclude}


def take_subset(train, test, subset, seed=0, *, run_seed=None):
    """A class-stratified subset of ``(x_train, y_train), (x_test, y_test)``.

    Args:
        train, test: ``(x, y)`` pairs.
        subset: ``{"n_train": N, "n_test": M, "train_draw": ..., "test_exclude": ...}``
            (``check_subset``; missing keys take their defaults).
        seed: selection seed of the test images, and of the training images unless
            ``train_draw="per_seed"``; the same for every run, so runs differ only in their
            own seed.
        run_seed: the run's seed, which draws the training images when
            ``train_draw="per_seed"`` (``None``: ``seed``).

    Returns:
        ``(train, test, note)``: the subsets and a JSON-ready description for ``info``.

    Example:

    >>> y = np.repeat(np.arange(2), 50)
    >>> x = np.zeros((100, 1, 1, 1), np.uint8)
    >>> pilot = {"n_test": 40, "seed": 0}
    >>> _, (xt, yt), note = take_subset((x, y), (x, y), {"n_test": None, "test_exclude": pilot})
    >>> note["n_test"], note["n_excluded"]
    (60, 40)
    """
    from varshift._validate import check_seed

    subset = check_subset(subset)
    seed = check_seed(seed, allow_none=False, maximum=None)
    if run_seed is not None:
        run_seed = check_seed(run_seed, "run_seed", allow_none=False, maximum=None)
    draw_seed = seed if subset["train_draw"] == "fixed" or run_seed is None else run_seed
    (x, y), (xt, yt) = train, test
    i = subset_indices(y, subset["n_train"], draw_seed)
    exclude = subset["test_exclude"]
    left = np.arange(len(yt))
    if exclude is not None:
        left = np.setdiff1d(left, subset_indices(yt, exclude["n_test"], exclude["seed"]))
    j = left[subset_indices(yt[left], subset["n_test"], seed)]
    note = {"n_train": len(i), "n_test": len(j), "of_n_train": len(y), "of_n_test": len(yt),
            "selection": f"class-stratified, selection seed {int(seed)}"}
    if subset["train_draw"] == "per_seed":
        note["selection"] = (f"class-stratified; training images drawn with the run's seed "
                             f"{int(draw_seed)}, test images with selection seed {int(seed)}")
        note["train_draw"] = "per_seed"
    if exclude is not None:
        note["test_exclude"] = dict(exclude)
        note["n_excluded"] = len(yt) - len(left)
    return (x[i], y[i]), (xt[j], yt[j]), note
