"""Fixed subsets of a data set: one mechanism for every data set and every caller.

:func:`subset_indices` picks ``k`` of ``n`` items from a seeded permutation, either uniformly or
class-stratified (the same share of every class, the remainder to the first classes).
:func:`take_subset` applies it to a ``(train, test)`` pair; :func:`varshift.data.load` does so
with its ``subset`` argument, which is how :class:`varshift.train.RunConfig` ``subset`` and the
reproduction's CPU profiles train on part of Fashion-MNIST or CIFAR. The indices are sorted, so
a subset keeps the data set's order.
"""

from __future__ import annotations

import numpy as np

from varshift.seeds import rng

__all__ = ["subset_indices", "take_subset", "check_subset"]


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


def check_subset(subset):
    """``subset`` as ``{"n_train": int | None, "n_test": int | None}``, or ``None``."""
    if subset is None:
        return None
    if not isinstance(subset, dict) or not set(subset) <= {"n_train", "n_test"}:
        raise ValueError("Argument `subset` must be None or a dict with keys 'n_train' and/or "
                         f"'n_test'; received subset={subset!r}.")
    for key, value in subset.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"Argument `subset` must hold positive integers; received "
                             f"subset[{key!r}]={value!r}.")
    return {"n_train": subset.get("n_train"), "n_test": subset.get("n_test")}


def take_subset(train, test, subset, seed=0):
    """A fixed class-stratified subset of ``(x_train, y_train), (x_test, y_test)``.

    Args:
        train, test: ``(x, y)`` pairs.
        subset: ``{"n_train": N, "n_test": M}`` (either may be missing or ``None``: all).
        seed: selection seed; the same for every run, so runs differ only in their own seed.

    Returns:
        ``(train, test, note)``: the subsets and a JSON-ready description for ``info``.
    """
    from varshift._validate import check_seed

    subset = check_subset(subset)
    seed = check_seed(seed, allow_none=False, maximum=None)
    (x, y), (xt, yt) = train, test
    i = subset_indices(y, subset["n_train"], seed)
    j = subset_indices(yt, subset["n_test"], seed)
    note = {"n_train": len(i), "n_test": len(j), "of_n_train": len(y), "of_n_test": len(yt),
            "selection": f"class-stratified, selection seed {int(seed)}"}
    return (x[i], y[i]), (xt[j], yt[j]), note
