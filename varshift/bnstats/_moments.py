r"""Per-channel moments of BN layers' inputs over one pass of the data.

:func:`collect_moments` runs the compiled pass (:mod:`varshift.bnstats._runners`) on every batch
(:mod:`varshift.bnstats._batches`) and pools, per BN layer and channel, the per-batch sums in
float64 (Chan et al.'s parallel combination, :func:`chan_combine`); :func:`check_moments`
refuses moments that are not finite or rest on a single value per channel.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import numpy as np

from varshift._graph import bn_layers
from varshift._keras import to_numpy
from varshift.bnstats._batches import capped, chain, check_input_shapes, iter_batches
from varshift.bnstats._forward import reseeded, values_per_channel
from varshift.bnstats._runners import pass_for

__all__ = ["chan_combine", "LayerMoments", "collect_moments", "check_moments"]

log = logging.getLogger("varshift.bnstats")


def chan_combine(acc, n_b, mean_b, m2_b):
    r"""Chan et al.'s parallel combination of two ``(count, mean, M2)`` summaries (float64).

    With :math:`\delta = \bar x_b - \bar x_a`: :math:`n = n_a + n_b`,
    :math:`\bar x = \bar x_a + \delta\,n_b/n`, :math:`M_2 = M_{2,a} + M_{2,b}
    + \delta^2 n_a n_b / n`. ``acc`` may be ``None`` (nothing accumulated yet).
    """
    if acc is None:
        return n_b, mean_b, m2_b
    n_a, mean_a, m2_a = acc
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta**2 * (n_a * n_b / n)


class LayerMoments:
    """What :func:`collect_moments` measured for one BN layer (per-channel float64 arrays).

    ``layer`` (the BatchNormalization layer); ``count`` (values per channel pooled over the
    pass: samples x positions x calls); ``mean`` and ``var`` (exact pooled mean and biased,
    divide-by-count, variance); ``batch_mean`` and ``batch_var`` (average over batches and
    calls of each batch's mean and biased variance: what Keras' moving averages converge
    to); ``n_batches`` (how many batch statistics were averaged); ``input_shape`` (the
    layer's input shape in the first batch).
    """

    __slots__ = ("layer", "count", "mean", "var", "batch_mean", "batch_var", "n_batches",
                 "input_shape", "_acc", "_sums")

    def __init__(self, layer):
        self.layer = layer
        self._acc = None
        self._sums = None
        self.n_batches = 0
        self.input_shape = None

    def add(self, n, mean, m2):
        self._acc = chan_combine(self._acc, n, mean, m2)
        batch = (mean, m2 / n)
        self._sums = batch if self._sums is None else tuple(
            s + b for s, b in zip(self._sums, batch, strict=True))
        self.n_batches += 1

    def finish(self):
        self.count, self.mean, m2 = self._acc
        self.var = m2 / self.count  # biased: divide by the count, as Keras
        self.batch_mean, self.batch_var = (s / self.n_batches for s in self._sums)
        return self



def _progress_bar(progress, total, desc):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, disable=not progress,
                leave=False)



def collect_moments(model, data, *, layers=None, bn="moving", noise=False, batch_size=256,
                    max_samples=None, seed=None, progress=False, on_batch=None,
                    desc="measuring BN inputs"):
    """Per-channel moments of BN layers' inputs over one pass of ``data``; nothing is modified.

    Args:
        model: a Keras model (Sequential, Functional, nested or with custom layers).
        data: see :func:`iter_batches`.
        layers: the BN layers to return (default: all of them; all are measured anyway).
        bn: ``"moving"`` (BN layers use their stored statistics: inference) or ``"batch"``
            (every BN layer normalises with the batch at hand: training-mode BN, without any
            update of the moving averages). A batch that gives some BN layer fewer than 2
            values per channel cannot be normalised: it is skipped, with a warning.
        noise: ``False`` forces every noise layer off, ``True`` on (masks drawn as in
            ``fit``); everything else runs in inference mode.
        batch_size: batch size for numpy input.
        max_samples: read at most this many samples (``None``: all).
        seed: with ``noise=True``, seed of the noise layers' masks (``None``: their own).
        progress: show a tqdm bar on stderr.
        on_batch: optional callable ``on_batch(done, total)`` after each batch.
        desc: the bar's label.

    Returns:
        ``list`` of :class:`LayerMoments` in call order (graph order), checked by
        :func:`check_moments`. A BN layer called several times per forward pass pools all its
        calls.

    Raises:
        ValueError: a batch holds NaN or infinity (one line naming ``data``, how many
            values, and the first sample's index in the whole data set), before anything
            is returned; the data does not fit the model; no BN layer is called; or the
            moments are not sound (:func:`check_moments`).
    """
    layers = bn_layers(model) if layers is None else list(layers)
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization layer; nothing to measure.")
    if bn not in ("moving", "batch"):
        raise ValueError(f"Argument `bn` must be 'moving' or 'batch'; received bn={bn!r}.")
    batches, total = iter_batches(model, data, batch_size)
    batches = capped(batches, max_samples)
    first = next(batches, None)
    if first is None:
        raise ValueError("Argument `data` yielded no batch; nothing to measure.")
    check_input_shapes(model, first[1])
    compiled = pass_for(model, bn, noise)
    seeds = reseeded(compiled.intercept.noise_list, seed) if (noise and seed is not None) \
        else contextlib.nullcontext()
    with seeds, compiled.intercept:
        compiled.begin()
        acc = _accumulate(compiled, chain(first, batches), total, bn == "batch",
                          (progress, on_batch, desc))
    return check_moments(_finish(acc, compiled.order, layers), model)


class _Columns:
    """Where each measured call's channels sit in a pass's output (a column of non-finite
    counts, then each call's s1 (C columns) and s2 (C columns)) and its values per row and
    channel, worked out once per traced pass."""

    def __init__(self, order):
        self.key = self.key_of(order)
        widths = [channels for _, _, channels in order]
        self.per_row = np.repeat([float(values_per_channel(layer, traced, 1))
                                  for layer, traced, _ in order], widths)
        first = 1 + 2 * (np.cumsum(widths, dtype=int) - widths)
        self.s1 = np.concatenate([np.zeros(0, int), *(np.arange(f, f + c) for f, c in
                                                      zip(first, widths, strict=True))])
        self.s2 = self.s1 + np.repeat(widths, widths).astype(int)
        self.bounds = np.cumsum([0, *widths])

    @staticmethod
    def key_of(order):
        """What the layout depends on: each call's layer, traced shape and channels."""
        return [(id(layer), traced, channels) for layer, traced, channels in order]


def _batch_parts(order, centres, sums, columns):
    r"""Per measured call ``(layer, shape, n, mean, M2)`` of one batch, pooled in float64 from
    its rows' (samples') centres and sums: each row's mean and :math:`M_2` about it, then
    :math:`M_2 = \sum_i M_{2,i} + m \sum_i (\bar x_i - \bar x)^2` over the rows, with
    :math:`m` values per row and channel; every call's channels at once."""
    rows = int(sums.shape[0])  # a trace may leave the batch dimension free
    per_row = columns.per_row
    s1 = sums[:, columns.s1].astype(np.float64)
    s2 = sums[:, columns.s2].astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite results are refused later
        row_mean = centres.astype(np.float64) + s1 / per_row
        mean = row_mean.mean(axis=0)
        m2 = (np.maximum(s2 - s1 * s1 / per_row, 0.0).sum(axis=0)
              + per_row * np.square(row_mean - mean).sum(axis=0))
    bounds = columns.bounds
    return [(layer, (rows, *traced[1:]), per_row[lo] * rows, mean[lo:hi], m2[lo:hi])
            for (layer, traced, _), lo, hi in zip(order, bounds[:-1], bounds[1:],
                                                  strict=True)]


def _accumulate(compiled, batches, total, batch_mode, show):
    progress, on_batch, desc = show
    acc, skipped, columns = {}, 0, None
    with _progress_bar(progress, total, desc) as bar:
        for done, (offset, centres, sums) in enumerate(compiled.run_all(batches), 1):
            bad = sums[:, 0]
            if bad.any():
                raise ValueError(
                    f"Argument `data` must be finite; it holds {int(bad.sum())} NaN or infinite "
                    f"value(s) in the batch starting at sample {offset}, the first in sample "
                    f"{offset + int(np.argmax(bad > 0))}.")
            if columns is None or columns.key != _Columns.key_of(compiled.order):
                columns = _Columns(compiled.order)
            parts = _batch_parts(compiled.order, centres, sums, columns)
            if batch_mode and any(n < 2 for _, _, n, _, _ in parts):
                skipped += 1  # one value per channel: BN cannot normalise this batch
            else:
                for layer, shape, n, mean, m2 in parts:
                    if id(layer) not in acc:
                        acc[id(layer)] = LayerMoments(layer)
                        acc[id(layer)].input_shape = shape
                    acc[id(layer)].add(n, mean, m2)
            bar.update(1)
            if on_batch is not None:
                on_batch(done, total)
    if skipped:
        log.warning("%d batch(es) gave a BatchNormalization layer a single value per channel "
                    "and were skipped (batch statistics need at least 2).", skipped)
    if not acc:
        raise ValueError("Every batch gives a BatchNormalization layer a single value per "
                         "channel; use batch_size >= 2 (and at least 2 samples).")
    return acc


def _finish(acc, order, layers):
    wanted = {id(layer) for layer in layers}
    result, seen = [], set()
    for layer, *_ in order:
        if id(layer) in seen or id(layer) not in acc or id(layer) not in wanted:
            continue
        seen.add(id(layer))
        result.append(acc[id(layer)].finish())
    missing = [layer.name for layer in layers if id(layer) not in seen]
    if missing:
        log.warning("BatchNormalization layer(s) %s are not called in the forward pass; "
                    "they are not measured.", ", ".join(missing))
    return result


#: a trainable weight beyond this size, with activations that overflow on finite data, is
#: taken for diverged training (healthy weights of the networks here stay below 10)
_DIVERGED = 1e3


def _weights_finite(model):
    """Non-finite weights (training diverged: a learning rate too high) are the cause to
    name, not the BN layer where the activations first overflowed."""
    if model is None:
        return
    values = [(getattr(v, "path", None) or v.name, to_numpy(v)) for v in model.weights]
    bad = [name for name, w in values if not np.isfinite(w).all()]
    if bad:
        raise ValueError(
            f"Model {model.name!r} has weights that are NaN or infinite ({len(bad)} of "
            f"{len(values)} variables, the first {bad[0]!r}): training diverged; lower the "
            "learning rate (`lr`) or check the data. No statistics were computed or written.")
    trainable = {id(v) for v in model.trainable_weights}
    sizes = [(float(np.max(np.abs(w))), name) for (name, w), v in zip(values, model.weights,
                                                                      strict=True)
             if w.size and id(v) in trainable]
    largest, where = max(sizes) if sizes else (0.0, "?")
    if largest > _DIVERGED:
        raise ValueError(
            f"Model {model.name!r}: activations overflow on finite data because its weights "
            f"are huge (|w| up to {largest:.3g}, in {where!r}): training diverged; lower the "
            "learning rate (`lr`). No statistics were computed or written.")


def check_moments(measured, model=None):
    """Raise a one-line ``ValueError`` unless every :class:`LayerMoments` is sound: finite
    mean and variance in every channel (a float16 model can overflow on finite data; with
    ``model``, non-finite weights are named as the cause: training diverged) and at least 2
    values per channel (one value has no variance). Returns ``measured``."""
    for m in measured:
        if not (np.isfinite(m.mean).all() and np.isfinite(m.var).all()):
            _weights_finite(model)
            policy = getattr(getattr(m.layer, "dtype_policy", None), "name", "?")
            raise ValueError(
                f"BatchNormalization layer {m.layer.name!r} received non-finite activations "
                f"from finite data (overflow? its dtype policy is {policy!r}); no statistics "
                "were computed or written.")
        if m.count < 2:
            raise ValueError(
                f"BatchNormalization layer {m.layer.name!r} received {int(m.count)} value per "
                "channel; a variance needs at least 2 (raise `max_samples`).")
    return measured
