"""Every seed derived from a user's seed, in one table.

A run has one integer seed. Each random stream that must differ from the others (the data
order of each epoch, the augmentation, each noise layer, which images a subset keeps) gets its
own seed from :func:`derive_seed` with a named *purpose*; the constants that make the streams
independent are written here and nowhere else. :func:`rng` is the numpy generator of a purpose.

========================  ============================================  ==========================
purpose                   derivation from ``seed`` (and ``index``)      used by
========================  ============================================  ==========================
``"epoch_data"``          ``seed * 100003 + index`` (index = epoch)     train: each epoch's order
                                                                        and augmentation
``"stats_data"``          ``seed * 100003 + 99991``                     train: the fixed augmented
                                                                        pass of the final
                                                                        statistics
``"noise_layer"``         ``(seed * 1000003 + index) mod (2^31 - 1)``   train: noise layer
                                                                        ``index``'s state
``"shuffle"``             ``[seed, 0x5EED]``                            data.make_dataset's order
``"augment"``             ``seed mod (2^31 - 1)``                       data.make_dataset's crops
                                                                        and flips
``"random_subset"``       ``[seed, 0xE7A1]``                            data.subset_indices
                                                                        (uniform)
``"stratified_subset"``   ``[seed, 0x5B5E7]``                           data.subset_indices
                                                                        (class-stratified)
``"synthetic"``           ``[seed, 0xDA7A]``                            data.synthetic
========================  ============================================  ==========================

Example:

>>> derive_seed(3, "epoch_data", 2)
300011
>>> int(rng(0, "shuffle").integers(10)) == int(rng(0, "shuffle").integers(10))
True
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed", "rng", "PURPOSES"]

_INT31 = 2**31 - 1

# purpose -> derivation f(seed, index): an int, or a list of ints (numpy seed entropy)
_DERIVATIONS = {
    "epoch_data": lambda seed, index: seed * 100003 + index,
    "stats_data": lambda seed, index: seed * 100003 + 99991,
    "noise_layer": lambda seed, index: (seed * 1000003 + index) % _INT31,
    "shuffle": lambda seed, index: [seed, 0x5EED],
    "augment": lambda seed, index: seed % _INT31,
    "random_subset": lambda seed, index: [seed, 0xE7A1],
    "stratified_subset": lambda seed, index: [seed, 0x5B5E7],
    "synthetic": lambda seed, index: [seed, 0xDA7A],
}
#: the purposes :func:`derive_seed` knows (their derivations: the module's table)
PURPOSES = tuple(_DERIVATIONS)


def derive_seed(seed, purpose, index=0):
    """The seed of one random stream: a function of ``(seed, purpose, index)`` alone.

    Args:
        seed: the user's integer seed.
        purpose: a key of ``varshift.seeds.PURPOSES``.
        index: the stream's number within the purpose (the epoch, the layer), 0 if unused.

    Returns:
        An int, or a list of ints accepted by ``numpy.random.default_rng``.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"Argument `purpose` must be one of {', '.join(map(repr, PURPOSES))}; "
                         f"received purpose={purpose!r}.")
    from varshift._validate import check_positive_int, check_seed

    seed = check_seed(seed, allow_none=False, maximum=None)
    index = check_positive_int("index", index, minimum=0)
    return _DERIVATIONS[purpose](seed, index)


def rng(seed, purpose, index=0) -> np.random.Generator:
    """``numpy.random.default_rng(derive_seed(seed, purpose, index))``."""
    return np.random.default_rng(derive_seed(seed, purpose, index))
