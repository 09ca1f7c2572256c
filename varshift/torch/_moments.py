r"""Exact pooled per-channel moments of what BN modules receive, over a pass of data.

A forward pre-hook on each BN module reads its input :math:`x` of shape ``(N, C, *spatial)``
and, per channel, the count :math:`m = N \prod \text{spatial}`, the mean and the sum of squared
deviations of the batch (``torch.var_mean``, in float32 or the model's float64). Batches are
merged in float64 with Chan et al.'s parallel update of (count, mean, :math:`M_2`), so the
result is the mean and variance of *all* values the channel received, whatever the batching.

**Data-parallel.** When ``torch.distributed`` is initialised, the per-rank results are merged
across ranks with two all-reduces of sums: counts and :math:`\sum x = m\bar x` first, which
give the global mean :math:`\mu`, then :math:`M_2 + m(\bar x - \mu)^2` (exact, no cancellation).
Every rank then holds the statistics of the data of all ranks.
"""

from __future__ import annotations

import torch

__all__ = ["Moments", "collect"]


class Moments:
    """Pooled moments of one BN module's input: ``count`` values per channel, ``mean`` and
    ``m2`` (sum of squared deviations) per channel in float64, ``calls`` per pass."""

    __slots__ = ("name", "module", "count", "mean", "m2", "calls")

    def __init__(self, name, module):
        buf = module.running_mean
        dtype = torch.float32 if buf.device.type == "mps" else torch.float64
        self.name, self.module, self.calls = name, module, 0
        self.count = torch.zeros((), dtype=dtype, device=buf.device)
        self.mean = torch.zeros(buf.shape, dtype=dtype, device=buf.device)
        self.m2 = torch.zeros(buf.shape, dtype=dtype, device=buf.device)

    def add(self, x):
        """Merge one batch of the module's input (Chan et al.)."""
        x = x.detach()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        dims = [0, *range(2, x.ndim)]
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        self.merge(_values_per_channel(x), mean, var * _values_per_channel(x))

    def merge(self, n, mean, m2):
        """Merge a batch's ``n`` values per channel, their mean and :math:`M_2`."""
        mean, m2 = mean.detach().to(self.mean.dtype), m2.detach().to(self.mean.dtype)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.count = total

    @property
    def biased_var(self):
        """:math:`M_2 / m`: the population variance (divide by the count)."""
        return self.m2 / self.count

    @property
    def unbiased_var(self):
        """:math:`M_2 / (m-1)`: what PyTorch's BN stores (the unbiased estimate)."""
        return self.m2 / (self.count - 1)


def _values_per_channel(x):
    return x.numel() // max(x.shape[1], 1) if x.ndim > 1 else x.numel()


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the hook to end a forward pass early once the one module measured ran."""


def _all_reduce(moments):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or not moments:
        return
    sizes = [m.mean.numel() for m in moments]
    first = torch.cat([torch.stack([m.count for m in moments]),
                       *[m.mean * m.count for m in moments]])
    dist.all_reduce(first)
    counts, sums = first[:len(moments)], first[len(moments):].split(sizes)
    means = [s / c if c > 0 else torch.zeros_like(s) for s, c in zip(sums, counts, strict=True)]
    second = torch.cat([m.m2 + m.count * (m.mean - mu) ** 2
                        for m, mu in zip(moments, means, strict=True)])
    dist.all_reduce(second)
    for m, c, mu, m2 in zip(moments, counts, means, second.split(sizes), strict=True):
        m.count, m.mean, m.m2 = c, mu, m2


def _hook(moment, order, stop):
    """A forward pre-hook: the moments of the module's input, computed here."""
    def hook(module, args):
        moment.add(args[0])
        _called(moment, order, stop)
    return hook


def _batch_hook(moment, order, stop):
    """A forward hook for a BN module in training mode with ``momentum=1``: its running
    statistics are then exactly the batch mean and unbiased batch variance it just computed
    (so the input is not read twice)."""
    def hook(module, args, output):
        n = _values_per_channel(args[0])
        moment.merge(n, module.running_mean, module.running_var * (n - 1))
        _called(moment, order, stop)
    return hook


def _called(moment, order, stop):
    moment.calls += 1
    if moment not in order:
        order.append(moment)
    if stop:
        raise _Stop


def _register(module, moment, order, stop):
    """The cheapest exact hook: BN's own batch statistics when it computes them (plain BN in
    training mode, set up by :func:`varshift.torch._core.pass_modes`), else the input's."""
    from torch.nn import SyncBatchNorm

    if module.training and module.momentum == 1.0 and not isinstance(module, SyncBatchNorm):
        return module.register_forward_hook(_batch_hook(moment, order, stop))
    return module.register_forward_pre_hook(_hook(moment, order, stop))


def _one_line(err):
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def collect(model, bns, batch_iter, forward, *, stop_early=False, progress=False, desc=""):
    """Run ``forward(model, batch)`` over ``batch_iter`` with hooks on ``bns`` (``[(name,
    module)]``) and return their :class:`Moments` in the order the modules were first called
    (modules never called last, with count 0), all-reduced across ranks when
    ``torch.distributed`` is initialised. ``stop_early``: end each forward pass right after
    the (single, called-once) module measured. The caller sets the modes."""
    from tqdm.auto import tqdm

    moments = [Moments(name, bn) for name, bn in bns]
    order = []
    handles = [_register(bn, m, order, stop_early) for m, (_, bn) in zip(moments, bns, strict=True)]
    try:
        for k, batch in enumerate(tqdm(batch_iter, desc=desc, disable=not progress,
                                       leave=False)):
            try:
                forward(model, batch)
            except _Stop:
                pass
            except (ValueError, TypeError) as err:
                if str(err).startswith("Argument `"):
                    raise
                raise ValueError(f"Argument `data` does not fit model {type(model).__name__}: "
                                 f"the forward pass on batch {k} fails: {_one_line(err)}") from err
            except (RuntimeError, IndexError, KeyError, AttributeError) as err:
                raise ValueError(f"Argument `data` does not fit model {type(model).__name__}: "
                                 f"the forward pass on batch {k} fails: {_one_line(err)}") from err
    finally:
        for h in handles:
            h.remove()
    _all_reduce(moments)
    return order + [m for m in moments if m not in order]
