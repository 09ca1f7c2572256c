r"""Re-estimate a PyTorch model's BatchNorm running statistics from data ("Adjust BN").

With all weights fixed, every BN module's ``running_mean`` and ``running_var`` are replaced by
the statistics of what it receives over the data, exactly pooled per channel over batch x
spatial positions, with dropout (and every other training-only behaviour) **off**:

.. math::
    \text{running\_mean} = \frac1N \sum_j x_j, \qquad
    \text{running\_var} = \frac1{N-1} \sum_j (x_j - \bar x)^2 .

The variance is stored unbiased (divide by :math:`N-1`), PyTorch's own convention for
``running_var``; :math:`N` counts every value of the channel in the pass (samples times
positions), so the difference from the population variance is :math:`1/N`.

Peers: ``torch.optim.swa_utils.update_bn`` and fvcore's ``update_bn_stats`` (PreciseBN) run the
whole model in training mode, so dropout stays **on** and they re-measure the variance shift
(``noise=True`` here reproduces ``update_bn``); ``update_bn`` also averages per-batch variances
instead of pooling them, which misses the variance of the batch means. AIMET's
``reestimate_bn_stats`` and NNCF's BN adaptation switch dropout off but average per-batch
statistics; none of them synchronises counts across data-parallel ranks.
"""

from __future__ import annotations

import copy

import torch

from varshift.contracts import COUNT, Boolean, Instance, Integer, Optional, Options, contract
from varshift.torch._core import (
    DATA,
    FORWARD_FN,
    MODEL,
    batches,
    bn_modules,
    check_model,
    forward_for,
    model_device,
    pass_modes,
)
from varshift.torch._moments import collect

__all__ = ["recalibrate_bn", "StatsHandle", "MODES"]

MODES = ("one_pass", "sequential")


@contract(model=MODEL, saved=Optional(Instance(list, what="the saved statistics, a list of "
                                               "(BN module, its buffers)")))
class StatsHandle:
    """What ``recalibrate_bn(..., inplace=True)`` returns: ``remove()`` puts back the BN
    statistics the model had before (AIMET's handle convention); also a context manager
    (``with recalibrate_bn(model, data, inplace=True): ...`` restores on exit).

    Attributes:
        model: the recalibrated model (the one passed in).
    """

    def __init__(self, model, saved):
        self.model, self._saved = model, saved

    def remove(self):
        """Restore the running statistics saved before recalibration (again: no-op)."""
        if self._saved is not None:
            _restore(self._saved)
            self._saved = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _save(bns):
    return [(bn, {k: b.detach().clone() for k, b in bn.named_buffers(recurse=False)})
            for _, bn in bns]


def _restore(saved):
    with torch.no_grad():
        for bn, state in saved:
            for key, value in state.items():
                getattr(bn, key).copy_(value)


def _write(moments):
    """Check every result, then write them all (nothing is written if one is bad)."""
    for m in moments:
        if float(m.count) < 2:
            raise ValueError(f"BatchNorm module {m.name!r} received {int(m.count)} value(s) per "
                             "channel in the pass (is it used by forward on this data?); at "
                             "least 2 are needed for a variance.")
        if not bool(torch.isfinite(m.mean).all() & torch.isfinite(m.m2).all()):
            raise ValueError(f"Argument `data` gives non-finite statistics at BatchNorm module "
                             f"{m.name!r} (NaN or infinity reached it); nothing was written.")
    with torch.no_grad():
        for m in moments:
            bn = m.module
            bn.running_mean.copy_(m.mean.reshape(bn.running_mean.shape))
            bn.running_var.copy_(m.unbiased_var.reshape(bn.running_var.shape))


def _passes(model, data, forward, options):
    """A function running one statistics pass over ``data`` with given modes."""
    def run(bns, *, bn_train, noise, stop_early=False, desc=""):
        with pass_modes(model, bn_train=bn_train, noise=noise):
            return collect(model, bns, batches(data, **options["batching"]), forward,
                           stop_early=stop_early, progress=options["progress"], desc=desc)
    return run


def _sequential(model, run):
    """Layer by layer in call order, each BN measured in eval mode behind corrected ones."""
    bns = bn_modules(model)
    first = run(bns, bn_train=False, noise=False, desc=f"BN 1/{len(bns)}")
    _write(first[:1])
    per_pass = {m.name: m.calls for m in first}
    for k, m in enumerate(first[1:], 2):
        once = per_pass[m.name] == per_pass[first[0].name] and per_pass[m.name] > 0
        (again,) = run([(m.name, m.module)], bn_train=False, noise=False, stop_early=once,
                       desc=f"BN {k}/{len(first)}")
        _write([again])


@contract(model=MODEL, data=DATA, mode=Options(*MODES), noise=Boolean(),
          max_samples=Optional(COUNT), inplace=Boolean(), batch_size=COUNT, progress=Boolean(),
          seed=Integer(0, 2**64 - 1), forward_fn=FORWARD_FN)
def recalibrate_bn(model, data, *, mode="one_pass", noise=False, max_samples=None,
                   inplace=False, batch_size=256, progress=False, seed=0, forward_fn=None):
    r"""Re-estimate every BN module's running mean and variance from data ("Adjust BN").

    Per BN module and channel, the stored statistics become the mean and the unbiased variance
    of every value :math:`x_j` the channel receives over ``data`` (samples times spatial
    positions), pooled exactly across batches (and across ranks, see below):

    .. math::
        \text{running\_mean} = \frac1N \sum_j x_j, \qquad
        \text{running\_var} = \frac1{N-1} \sum_j (x_j - \bar x)^2 .

    ``mode="one_pass"``: one pass with the model in eval mode (every dropout off, also
    functional ``F.dropout(x, training=self.training)``) and only the BN modules in training
    mode, normalising with the statistics of the batch at hand while :math:`x_j` is collected.
    ``"sequential"``: the whole model in eval mode, BN modules one at a time in call order,
    each measured behind the already corrected upstream ones (one pass per BN module, each
    stopped right after the module measured when it is called once per forward); afterwards
    :func:`varshift.torch.measure_shift` on the same data reads ratio 1 everywhere.

    Runs under ``torch.no_grad()``, on the model's device and floating dtype, 4-D inputs
    converted to channels-last memory when the model's weights are. ``DataParallel`` and
    ``DistributedDataParallel`` wrappers are looked through. When ``torch.distributed`` is
    initialised, the per-channel counts, sums and sums of squared deviations are all-reduced,
    so every rank stores the statistics of the data of all ranks (each rank passes its shard;
    every rank must call this function). Only the running statistics change;
    ``num_batches_tracked``, the weights and every module's mode are kept.

    Args:
        model: a ``torch.nn.Module`` with BatchNorm modules (``BatchNorm1d/2d/3d``, lazy BN
            after its first call, ``SyncBatchNorm``; those built with
            ``track_running_stats=False`` store nothing and are skipped).
        data: a tensor or numpy array of samples (batched by ``batch_size``), an ``(x, y)``
            tuple of them (labels dropped), or a re-iterable of batches (a ``DataLoader``):
            use the training data with its augmentation. NaN or infinity in the default forward's
            input is a ``ValueError`` before anything is written.
        mode: ``"one_pass"`` or ``"sequential"``.
        noise: ``one_pass`` only: the whole model in training mode, dropout **on**, as
            ``torch.optim.swa_utils.update_bn`` does. It re-measures the training-time
            variance, so the shift remains; it exists to compare with the peers.
        max_samples: read at most this many samples of ``data`` (``None``: all).
        inplace: write into ``model`` itself and return a :class:`StatsHandle` whose
            ``remove()`` restores the old statistics; by default a ``copy.deepcopy`` of the
            model is recalibrated and returned.
        batch_size: the batch size for tensor data (``one_pass``: the batch BN normalises with).
        progress: show a progress bar on stderr.
        seed: with ``noise=True``, the seed of the dropout masks (drawn in a forked RNG, so the
            global torch RNG state is unchanged).
        forward_fn: ``forward_fn(model, batch)`` runs the model on one batch, for batches
            that are dicts or other structures (AIMET's convention); by default
            ``model(x)`` with ``x`` the batch or its first element, moved to the model's
            device and dtype.

    Returns:
        The recalibrated copy (``inplace=False``) or a :class:`StatsHandle` on ``model``.
        If anything fails part-way (bad data, an interrupt), ``model`` is left as it was.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))
        >>> fixed = recalibrate_bn(net, torch.randn(100, 4))
        >>> bool(torch.equal(net[2].running_var, torch.ones(8)))  # the original is untouched
        True
    """
    net = check_model(model)
    options = {"batching": {"batch_size": batch_size, "max_samples": max_samples},
               "progress": progress}
    if noise and mode != "one_pass":
        raise ValueError(f"Argument `noise` applies to mode='one_pass' only; received "
                         f"noise={noise!r} with mode={mode!r}.")

    target = net if inplace else copy.deepcopy(net)
    bns = bn_modules(target)
    saved = _save(bns)
    run = _passes(target, data, forward_fn or forward_for(target), options)
    try:
        if mode == "one_pass":
            device = model_device(target)[0]
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                _write(run(bns, bn_train=True, noise=noise, desc="recalibrating BN"))
        else:
            _sequential(target, run)
    except BaseException:
        _restore(saved)
        raise
    return StatsHandle(target, saved) if inplace else target
