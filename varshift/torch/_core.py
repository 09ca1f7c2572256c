r"""What :mod:`varshift.torch` shares: which modules are BN and noise, the argument checks, the
batches, and the modes a pass runs in.

PyTorch's BatchNorm stores the exponential moving average of the **unbiased** batch variance
(:math:`\frac{1}{m-1}\sum_j (x_j-\bar x)^2` over the :math:`m` values one channel receives per
batch: batch x spatial positions), so its ``running_var`` estimates the population variance
itself, without Keras' factor :math:`\frac{m-1}{m}`.
"""

from __future__ import annotations

import contextlib
import numbers

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.nn.modules.batchnorm import _BatchNorm

from varshift import _validate
from varshift._validate import ArgumentTypeError
from varshift.contracts import Constraint, Function, Instance, Optional, Violation

__all__ = ["bn_modules", "noise_of", "is_bn", "is_normalization", "check_model", "check_data",
           "check_example_inputs", "MODEL", "DATA", "EXAMPLE_INPUTS", "FORWARD_FN", "batches",
           "pass_modes", "forward_for", "default_forward",
           "model_device", "unwrap", "NOISE_MODULES", "NOISE_FUNCTIONS"]

#: dropout-family modules -> the varshift noise kind (:data:`varshift.noise.NOISES`)
NOISE_MODULES = {
    nn.Dropout: "dropout", nn.Dropout1d: "spatial_dropout", nn.Dropout2d: "spatial_dropout",
    nn.Dropout3d: "spatial_dropout", nn.AlphaDropout: "alpha_dropout",
    nn.FeatureAlphaDropout: "alpha_dropout",
}
#: their functional forms (``F.dropout(x, p, training=self.training)`` in a ``forward``)
NOISE_FUNCTIONS = {
    F.dropout: "dropout", F.dropout1d: "spatial_dropout", F.dropout2d: "spatial_dropout",
    F.dropout3d: "spatial_dropout", F.alpha_dropout: "alpha_dropout",
    F.feature_alpha_dropout: "alpha_dropout", torch.dropout: "dropout",
    torch.alpha_dropout: "alpha_dropout", torch.feature_alpha_dropout: "alpha_dropout",
}
_NORMALIZATION = (_BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
                  nn.LocalResponseNorm)


def is_bn(module) -> bool:
    """A BatchNorm module that stores running statistics (``BatchNorm1d/2d/3d``, their lazy
    forms, ``SyncBatchNorm``; ``track_running_stats=False`` normalises with the batch at
    inference too, so it has no stored statistics to shift)."""
    return isinstance(module, _BatchNorm) and module.running_var is not None


def is_normalization(module) -> bool:
    """Any normalisation module (BN, LayerNorm, GroupNorm, InstanceNorm, ...)."""
    return isinstance(module, _NORMALIZATION)


def noise_of(module):
    """``(kind, rate)`` of a dropout-family module, else ``None``."""
    for cls in type(module).__mro__:
        if cls in NOISE_MODULES:
            return NOISE_MODULES[cls], float(module.p)
    return None


def unwrap(model):
    """The module inside ``DataParallel`` / ``DistributedDataParallel`` (which sync buffers by
    themselves at every call), else ``model``."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, wrappers) else model


def bn_modules(model):
    """``[(qualified name, module)]`` of every BN module with running statistics."""
    return [(name or type(m).__name__, m) for name, m in model.named_modules() if is_bn(m)]


def model_device(model):
    """``(device, floating dtype, channels_last)`` of the model's first parameter or buffer."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            last = t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last) \
                and not t.is_contiguous()
            return t.device, t.dtype, last
    return torch.device("cpu"), torch.get_default_dtype(), False


# ---------------------------------------------------------------------------------- checks

def check_model(model, name="model"):
    """What the declaration (:data:`MODEL`) cannot say of an ``nn.Module``: its lazy modules are
    initialised and it has at least one BN module with running statistics; returned unwrapped."""
    model = unwrap(model)
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        raise ValueError(f"Argument `{name}` ({type(model).__name__}) has uninitialised lazy "
                         "modules; call it once on a batch before diagnosing it.")
    if not bn_modules(model):
        raise ValueError(f"Argument `{name}`: model {type(model).__name__} has no BatchNorm "
                         "module with running statistics; there is no variance shift to audit, "
                         "measure or correct.")
    return model


def _check_array(name, a):
    """A numeric torch tensor or numpy array with at least one sample; returned as a tensor."""
    if not isinstance(a, torch.Tensor):
        arr = np.asarray(a) if isinstance(a, np.ndarray) else None
        if arr is None or not _validate.is_numeric_dtype(arr.dtype):
            raise ArgumentTypeError(f"Argument `{name}` must hold numbers (a tensor or numpy array of a "
                            f"bool, int or float dtype); received {_validate.describe(a)}.")
        a = torch.from_numpy(np.ascontiguousarray(arr))
    if a.is_complex():
        raise ArgumentTypeError(f"Argument `{name}` must hold real numbers; received a tensor of dtype "
                        f"{a.dtype}.")
    if a.ndim == 0 or a.shape[0] == 0:
        raise ValueError(f"Argument `{name}` must hold at least one sample (a non-empty first "
                         f"axis); received a tensor of shape {tuple(a.shape)}.")
    return a


def check_data(data, name="data"):
    """The data in one form: a tensor (to be cut into batches) or an iterable of batches.

    Accepted: a ``torch.Tensor`` or numpy array of samples (first axis), a tuple ``(x, y)`` or
    ``(x, y, w)`` of such (labels dropped), or any re-iterable of batches (a ``DataLoader``, a
    list of tensors, of ``(x, y)`` tuples, or, for a ``forward_fn``, of anything).
    """
    if data is None or isinstance(data, (str, bytes, numbers.Number, dict)):
        what = "missing (received None)" if data is None else \
            f"received {_validate.describe(data)}"
        raise ArgumentTypeError(f"Argument `{name}` must be a tensor or numpy array of samples, "
                                f"an (x, y) tuple of them, or an iterable of batches (a DataLoader); {what}.")
    if isinstance(data, tuple) and 1 <= len(data) <= 3 and \
            isinstance(data[0], (torch.Tensor, np.ndarray)):
        data = data[0]
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return _check_array(name, data)
    if isinstance(data, (list, tuple)) and not data:
        raise ValueError(f"Argument `{name}` must hold at least one batch; received an empty "
                         f"{type(data).__name__}.")
    if not hasattr(data, "__iter__") or iter(data) is data:
        raise ArgumentTypeError(f"Argument `{name}` must be re-iterable (a DataLoader or a list "
                                "of batches; a generator can be read only once, pass "
                                f"list(generator)); received {_validate.describe(data)}.")
    return data


def check_example_inputs(example_inputs, name="example_inputs"):
    """One batch of a model's positional inputs: a tensor, or a non-empty tuple or list of
    inputs of which at least one is a tensor; returned as a tuple."""
    items = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not items or not any(isinstance(t, torch.Tensor) for t in items):
        raise ArgumentTypeError(f"Argument `{name}` must be a tensor or a tuple of the model's "
                                "positional inputs (one batch); received "
                                f"{_validate.describe(example_inputs)}.")
    return tuple(items)


class _Data(Constraint):
    """Data for a PyTorch model (:func:`check_data`), converted to one form: a tensor of
    samples or a re-iterable of batches. Checked here alone (kind, dtype, at least one
    sample); NaN and infinity as the batches stream, by the callable itself."""

    def check(self, name, value):
        return check_data(value, name)

    def describe(self):
        return ("tensor or numpy array of samples, an `(x, y)` tuple of them, or a re-iterable "
                "of batches (DataLoader); numeric, finite, at least one sample")

    def violations(self, tmp=None):
        kind, bad = ArgumentTypeError, ValueError
        return [Violation("not data", kind, "wrong kind: 'not data'"),
                Violation(None, kind, "wrong kind: None"),
                Violation(np.array([["a"] * 5] * 4), kind, "strings"),
                Violation((i for i in range(3)), kind, "a generator (read once)"),
                Violation(np.zeros((0, 5), "float32"), bad, "empty"),
                Violation([], bad, "no batch"),
                Violation(np.full((4, 5), np.nan, "float32"), bad, "NaN (found while streaming)")]


class _ExampleInputs(Constraint):
    """One batch of the model's positional inputs (:func:`check_example_inputs`); whether it
    fits the model is found by running it."""

    def check(self, name, value):
        return check_example_inputs(value, name)

    def describe(self):
        return ("tensor or tuple of the model's positional inputs (one batch, at least one "
                "tensor); fits the model")

    def violations(self, tmp=None):
        kind = ArgumentTypeError
        return [Violation("x", kind, "wrong kind: 'x'"), Violation(None, kind, "wrong kind: None"),
                Violation((), kind, "empty tuple"), Violation((1, 2), kind, "no tensor")]


#: a PyTorch model (named lazily); that it has BN modules is checked by :func:`check_model`
MODEL = Instance("torch.nn:Module", what="a PyTorch model (torch.nn.Module) with BatchNorm modules")
#: what :func:`varshift.torch.measure_shift` and :func:`varshift.torch.recalibrate_bn` read
DATA = _Data()
#: what :func:`varshift.torch.audit` runs the model on
EXAMPLE_INPUTS = _ExampleInputs()
#: ``forward_fn(model, batch)`` or ``None``
FORWARD_FN = Optional(Function("a callable forward_fn(model, batch)"))


# --------------------------------------------------------------------------------- batches

def _first_tensor(batch):
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch:
        return _first_tensor(batch[0])
    if isinstance(batch, dict) and batch:
        return _first_tensor(next(iter(batch.values())))
    return None


def _cut(batch, n):
    """The first ``n`` samples of every tensor in ``batch``."""
    if isinstance(batch, torch.Tensor):
        return batch[:n]
    if isinstance(batch, (list, tuple)):
        return type(batch)(_cut(b, n) for b in batch) if not hasattr(batch, "_fields") else \
            type(batch)(*(_cut(b, n) for b in batch))
    if isinstance(batch, dict):
        return {k: _cut(v, n) for k, v in batch.items()}
    return batch


def batches(data, *, batch_size=256, max_samples=None):
    """Yield the batches of checked ``data`` (:func:`check_data`), at most ``max_samples``
    samples in all (the last batch cut; counted on the first tensor of each batch)."""
    if isinstance(data, torch.Tensor):
        stop = data.shape[0] if max_samples is None else min(max_samples, data.shape[0])
        for start in range(0, stop, batch_size):
            yield data[start:min(start + batch_size, stop)]
        return
    seen = 0
    for item in data:
        batch = item
        if max_samples is not None:
            first = _first_tensor(item)
            size = first.shape[0] if first is not None and first.ndim else 1
            if seen + size > max_samples:
                batch = _cut(item, max_samples - seen)
            seen += size
        yield batch
        if max_samples is not None and seen >= max_samples:
            return


def default_forward(model, batch, *, device, dtype, channels_last, name="data"):
    """``model(x)`` for a batch ``x`` or ``(x, y, ...)``, ``x`` moved to the model's device and
    dtype (and channels-last memory for 4-D input when the model's weights are); a NaN or
    infinity in ``x`` is a ``ValueError``."""
    x = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Argument `{name}` yields batches of {type(batch).__name__}; the default "
                        "forward takes a tensor or an (x, y) tuple: pass "
                        "forward_fn=lambda model, batch: model(...) for other batches.")
    if x.is_floating_point() or x.dtype == torch.bool:
        x = x.to(device=device, dtype=dtype)
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            index = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(f"Argument `{name}` must be finite (no NaN or infinity); a batch "
                             f"holds {int(bad.sum())} non-finite value(s), the first at "
                             f"batch index {index}.")
    else:
        x = x.to(device=device)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return model(x)


def forward_for(model):
    """The default ``forward_fn`` for ``model``: :func:`default_forward` on its device/dtype."""
    device, dtype, last = model_device(model)

    def forward(m, batch):
        return default_forward(m, batch, device=device, dtype=dtype, channels_last=last)
    return forward


# ----------------------------------------------------------------------------------- modes

@contextlib.contextmanager
def pass_modes(model, *, bn_train, noise):
    """Set the modes of a statistics pass, restore every module's mode and BN buffers after.

    ``noise=True``: the whole model in training mode (as ``torch.optim.swa_utils.update_bn``),
    dropout on. ``noise=False``: the whole model in eval mode (functional dropout that follows
    ``self.training`` is off too), then the BN modules in training mode if ``bn_train``. BN
    modules in training mode get ``momentum=1``, so their running statistics are those of the
    last batch (read by :mod:`varshift.torch._moments`); all is restored afterwards.
    """
    modes = {m: m.training for m in model.modules()}
    saved = {m: {k: b.detach().clone() for k, b in m.named_buffers(recurse=False)
                 if b is not None} for _, m in bn_modules(model)}
    momenta = {m: m.momentum for m in saved}
    try:
        model.train(noise)
        if not noise:
            for _, bn in bn_modules(model):
                bn.train(bn_train)
        for bn in saved:
            if bn.training:  # running statistics := those of the batch at hand
                bn.reset_running_stats()
                bn.momentum = 1.0
        with torch.no_grad():
            yield
    finally:
        for bn, momentum in momenta.items():
            bn.momentum = momentum
        with torch.no_grad():
            for bn, state in saved.items():
                for key, value in state.items():
                    getattr(bn, key).copy_(value)
        for m, mode in modes.items():
            m.training = mode
