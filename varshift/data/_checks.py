"""What every data file read from disk must hold, checked before its arrays are used.

A data file is data, never trusted: images are integers 0..255 of one shape, one label per
image, labels are class indices ``0..num_classes-1``, and the test images have the training
images' shape. Each check raises one ``ValueError`` line naming the file (or argument), the
value found and what was expected; nothing is converted silently (``-5`` is refused, never
wrapped to ``251``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_pixels", "check_labels", "check_pair", "check_splits"]


def _first_bad(mask):
    return int(np.flatnonzero(np.ravel(mask))[0])


def check_pixels(where, values):
    """``values`` (array-like) as uint8 pixels; ``ValueError`` unless integers in 0..255."""
    arr = np.asarray(values)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{where}: pixel values must be integers 0..255; received an array "
                         f"of dtype {arr.dtype}.")
    if arr.size:
        bad = (arr < 0) | (arr > 255)
        if bad.any():
            i = _first_bad(bad)
            raise ValueError(f"{where}: pixel value {int(np.ravel(arr)[i])} at flat index {i} "
                             "is out of range; expected integers 0..255.")
    return arr.astype(np.uint8)


def check_labels(where, labels, num_classes):
    """``labels`` as a 1-D int64 array; ``ValueError`` unless integers in ``0..num_classes-1``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{where}: labels must be one integer per image; received an array of "
                         f"shape {arr.shape}.")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integers 0..{num_classes - 1}; received "
                         f"values of dtype {arr.dtype}.")
    arr = arr.astype(np.int64) if arr.size else np.zeros(0, np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        i = _first_bad(bad)
        raise ValueError(f"{where}: label {int(arr[i])} at index {i} is out of range; expected "
                         f"integers 0..{num_classes - 1} ({num_classes} classes).")
    return arr


def check_pair(where, x, y):
    """``ValueError`` unless there is one label per image and at least one image."""
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} images but {len(y)} labels; expected one label "
                         "per image.")
    if len(x) == 0:
        raise ValueError(f"{where}: holds no images; expected at least one.")


def check_splits(where_train, where_test, x, xt):
    """``ValueError`` unless the test images have the training images' shape."""
    if tuple(x.shape[1:]) != tuple(xt.shape[1:]):
        shape = "x".join(map(str, xt.shape[1:]))
        expected = "x".join(map(str, x.shape[1:]))
        raise ValueError(f"{where_test}: test images are {shape} but the training images "
                         f"({where_train}) are {expected}; expected the same shape.")
