"""Helpers of the theory targets: Monte Carlo noise and "what Keras BN stores".

"What Keras stores" is computed with :func:`varshift.models.converged_bn_statistics`: the
exact average of the batch statistics that ``fit`` feeds into BN's moving averages (batch
size 32, training mode), which is what the moving variance converges to, without the
momentum noise of a finite ``fit``. Keras stores the *biased* batch variance, whose
expectation is (m-1)/m times the population variance; the "corrected" Keras shift multiplies
by (m-1)/m to compare with the formulas (which use population variances).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BATCH", "noise_mc", "keras_stored_variance", "chunk_variances", "fmt"]

#: the training batch size m of the Keras toy models (Keras' default)
BATCH = 32


def noise_mc(x, kind, param, rng):
    """Apply training-mode noise to ``x`` (numpy): dropout / gaussian (Keras rate) / uout (beta)."""
    if kind == "dropout":
        p = 1.0 - param  # retain probability
        return x * (rng.random(x.shape) < p) / p
    if kind == "gaussian":
        sigma = np.sqrt(param / (1.0 - param))  # Keras GaussianDropout(rate)
        return x * rng.normal(1.0, sigma, size=x.shape)
    if kind == "uout":
        return x + x * rng.uniform(-param, param, size=x.shape)  # y = x + x r
    raise ValueError(f"unknown noise {kind!r}")


def keras_stored_variance(model, x, *, seed=0):
    """Per-unit moving variance the model's single BN layer converges to under ``fit``."""
    from varshift.models import converged_bn_statistics

    stats = converged_bn_statistics(model, x, batch_size=BATCH, passes=1, seed=seed)
    (_, var), = stats.values()
    return np.asarray(var, dtype="float64")


def chunk_variances(y, chunks=20):
    """Variances of ``chunks`` equal parts of the samples ``y``: the samples of an interval."""
    return [float(part.var()) for part in np.array_split(np.asarray(y, dtype="float64"), chunks)]


def fmt(x, digits=4):
    """Format a float compactly for evidence strings."""
    return f"{float(x):.{digits}g}"
