"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes): no download.

The images hold 0..16 grey levels; :func:`load_digits` rescales them to uint8 0..255
(``round(v * 255 / 16)``) so every data set enters the pipeline in the same form.
"""

from __future__ import annotations

import numpy as np

__all__ = ["load_digits"]


def load_digits(seed=0, test_fraction=0.25):
    """The digits as ``(x_train, y_train), (x_test, y_test)``, split by a seeded stratified draw.

    Args:
        seed: integer seed of the split; the same seed gives the same split.
        test_fraction: fraction of every class held out as the test set, in (0, 1).

    Returns:
        uint8 images ``(N, 8, 8, 1)`` in 0..255 and int64 labels.

    Example:

    >>> (x, y), (xt, yt) = load_digits(seed=0)
    >>> x.shape[1:], x.dtype, len(x) + len(xt)
    ((8, 8, 1), dtype('uint8'), 1797)
    """
    from varshift._validate import check_in_range, check_seed

    seed = check_seed(seed, allow_none=False, maximum=None)
    check_in_range("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError:  # pragma: no cover - scikit-learn is in the `data` extra
        raise ImportError(
            "load_digits needs scikit-learn: pip install 'varshift[data]'"
        ) from None
    bunch = sk_load()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):  # stratified: the same fraction of every class
        idx = np.flatnonzero(labels == c)
        k = int(round(len(idx) * test_fraction))
        test[rng.choice(idx, size=k, replace=False)] = True
    train = ~test
    return (images[train], labels[train]), (images[test], labels[test])
