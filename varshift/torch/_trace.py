"""The data-flow graph of a PyTorch model's forward pass, for :func:`varshift.torch.audit`.

Two readers give the same :class:`Call` list: ``torch.fx`` symbolic tracing (the static graph,
every ``torch.nn`` module a leaf, shapes from one eval-mode run of ``example_inputs``), and,
for models fx cannot trace (data-dependent control flow, unsupported Python), a recorded
forward pass: a ``TorchFunctionMode`` sees every torch function called outside ``torch.nn``
modules, forward hooks see every ``torch.nn`` module call, and tensors are followed by
identity. Nothing in the model changes: the recorded pass runs in eval mode under
``torch.no_grad()``.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.nn import functional as F  # noqa: N812
from torch.overrides import TorchFunctionMode

from varshift.torch._core import NOISE_FUNCTIONS, is_bn, is_normalization, noise_of

__all__ = ["Call", "fx_graph", "recorded_graph"]

_WEIGHT_FUNCTIONS = {F.linear, F.conv1d, F.conv2d, F.conv3d, F.bilinear, torch.matmul, torch.mm,
                     torch.bmm, operator.matmul, torch.einsum, F.conv_transpose1d,
                     F.conv_transpose2d, F.conv_transpose3d}
_NORM_FUNCTIONS = {F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.normalize,
                   F.local_response_norm}
_POOL_FUNCTIONS = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.max_pool1d, F.max_pool2d,
                   F.max_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
                   F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
                   F.adaptive_max_pool3d, F.lp_pool1d, F.lp_pool2d, torch.mean, torch.sum,
                   torch.amax, torch.amin, "mean", "sum", "amax", "amin"}
_POOL_MODULES = (nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd,
                 nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                 nn.modules.pooling._LPPoolNd)
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}


class Call:
    """One call of the forward pass: a module, a function or an input.

    Attributes: ``name`` (qualified module name, or ``owner.function``), ``module`` (or
    ``None``), ``preds`` (indices of the calls whose outputs it reads), ``noise`` (``(kind,
    rate)`` or ``None``), ``norm`` / ``bn`` (normalisation / BN with running statistics),
    ``crossed`` (weight layers it counts as: 0, 1, or 2 for grouped-then-pointwise),
    ``role`` (``"merge"``, ``"pool"``, ``"concat"`` or ``None``), ``kernel`` (a ``(d, units)``
    weight matrix or ``None``), ``shape`` (output shape or ``None``), ``parts`` (for a
    concatenation along channels: ``[(pred, channels)]``).
    """

    __slots__ = ("name", "module", "preds", "noise", "norm", "bn", "crossed", "role", "kernel",
                 "shape", "parts")

    def __init__(self, name, module=None, preds=()):
        self.name, self.module, self.preds = name, module, list(preds)
        self.noise, self.norm, self.bn, self.crossed = None, False, False, 0
        self.role, self.kernel, self.shape, self.parts = None, None, None, None


def _kernel(weight, transposed=False):
    """``(d, units)`` of a Linear/Conv weight (``out, in/groups, *k``), else ``None``."""
    if not isinstance(weight, torch.Tensor) or weight.ndim < 2 or transposed:
        return None
    w = weight.detach().double().cpu()
    return w.reshape(w.shape[0], -1).T.numpy()


def classify_module(call, module):
    """Fill ``call``'s roles from a ``torch.nn`` module."""
    call.noise = noise_of(module)
    call.norm, call.bn = is_normalization(module), is_bn(module)
    if isinstance(module, _POOL_MODULES):
        call.role = "pool"
    elif not call.norm and call.noise is None:
        own = dict(module.named_parameters(recurse=False))
        weight = own.get("weight")
        if any(p.ndim >= 2 for p in own.values()):
            call.crossed = 1
            transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
            call.kernel = _kernel(weight, transposed)


def _noise_rate(fn, args, kwargs):
    if "p" in kwargs:
        return float(kwargs["p"])
    return float(args[1]) if len(args) > 1 and isinstance(args[1], (int, float)) else 0.5


def classify_function(call, fn, args, kwargs, n_data_inputs):
    """Fill ``call``'s roles from a torch function (or a method name) and its arguments."""
    if fn in NOISE_FUNCTIONS:
        call.noise = (NOISE_FUNCTIONS[fn], _noise_rate(fn, args, kwargs))
    elif fn in _NORM_FUNCTIONS:
        call.norm = True
    elif fn in _WEIGHT_FUNCTIONS:
        call.crossed = 1
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        if fn in (F.linear, F.conv1d, F.conv2d, F.conv3d):
            call.kernel = _kernel(weight)
    elif fn in _POOL_FUNCTIONS:
        call.role = "pool"
    elif fn in _CAT_FUNCTIONS:
        call.role = "concat"
    elif n_data_inputs >= 2:
        call.role = "merge"  # adds, multiplies, ... branches


def _cat_dim(args, kwargs):
    dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else 0))
    return dim if isinstance(dim, int) else None


def set_parts(call, part_preds, part_shapes, dim):
    """Channel slices of a concatenation along dim 1: ``[(pred, "a:b of C")]``."""
    ndim = len(call.shape) if call.shape is not None else 0
    if dim is None or ndim < 2 or dim % ndim != 1 or any(s is None for s in part_shapes):
        return
    sizes = [int(s[1]) for s in part_shapes]
    total, start, parts = sum(sizes), 0, []
    for pred, size in zip(part_preds, sizes, strict=True):
        parts.append((pred, f"{start}:{start + size} of {total}"))
        start += size
    call.parts = parts


# -------------------------------------------------------------------------------------- fx

class _Tracer(fx.Tracer):
    """fx's tracer, with every BN, dropout and normalisation module a leaf too."""

    def is_leaf_module(self, m, qualname):
        return super().is_leaf_module(m, qualname) or is_normalization(m) or \
            noise_of(m) is not None


def _owner(node):
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack), "") if stack else ""


def fx_graph(model, example_inputs):
    """``[Call]`` from ``torch.fx`` (traced in training mode, so ``F.dropout(x,
    training=self.training)`` is seen as dropout); shapes from one eval-mode run."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.train()
        tracer = _Tracer()
        graph = tracer.trace(model)
    finally:
        for m, mode in modes.items():
            m.training = mode
    gm = fx.GraphModule(tracer.root, graph)
    return gm, _fx_calls(gm, graph)


def fx_shapes(gm, calls, nodes, example_inputs):
    """Propagate shapes through ``gm`` (one eval-mode run) into ``calls``."""
    from torch.fx.passes.shape_prop import ShapeProp

    modes = {m: m.training for m in gm.modules()}
    try:
        gm.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(*example_inputs)
    finally:
        for m, mode in modes.items():
            m.training = mode
    for node, index in nodes.items():
        meta = node.meta.get("tensor_meta")
        calls[index].shape = tuple(meta.shape) if hasattr(meta, "shape") else None
    for node, index in nodes.items():
        if calls[index].role == "concat" and node.args and isinstance(node.args[0], (list, tuple)):
            parts = [p for p in node.args[0] if isinstance(p, fx.Node) and p in nodes]
            set_parts(calls[index], [nodes[p] for p in parts],
                      [calls[nodes[p]].shape for p in parts], _cat_dim(node.args, node.kwargs))


def _fx_calls(gm, graph):
    calls, index = [], {}
    for node in graph.nodes:
        if node.op in ("get_attr", "output"):
            continue
        preds = [index[n] for n in node.all_input_nodes if n in index]
        if node.op == "placeholder":
            call = Call(f"input {node.name}")
        elif node.op == "call_module":
            module = gm.get_submodule(node.target)
            call = Call(node.target, module, preds)
            classify_module(call, module)
        else:
            fn = node.target
            args = [gm.get_parameter(a.target) if isinstance(a, fx.Node) and a.op == "get_attr"
                    else a for a in node.args]
            owner = _owner(node)
            call = Call(f"{owner}.{node.name}" if owner else node.name, None, preds)
            classify_function(call, fn, args, node.kwargs, len(set(preds)))
        index[node] = len(calls)
        calls.append(call)
    return calls, index


# -------------------------------------------------------------------------- recorded pass

def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


class _Recorder(TorchFunctionMode):
    """Records torch functions called outside leaf modules, and leaf module calls."""

    def __init__(self):
        super().__init__()
        self.calls, self.producer, self.keep, self.depth, self.owners = [], {}, [], 0, [""]
        self.counts = {}

    def add(self, call, inputs, output):
        call.preds = list(dict.fromkeys(self.producer[id(t)] for t in inputs
                                        if id(t) in self.producer))
        outs = _tensors(output)
        call.shape = tuple(outs[0].shape) if outs else None
        self.keep.extend([*inputs, *outs])
        for t in outs:
            self.producer[id(t)] = len(self.calls)
        self.calls.append(call)
        return call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth == 0 and _tensors(out):
            inputs = [t for t in _tensors((args, kwargs)) if not isinstance(t, nn.Parameter)]
            base = getattr(func, "__name__", "op")
            k = self.counts[(self.owners[-1], base)] = self.counts.get((self.owners[-1], base), -1) + 1
            name = base if k == 0 else f"{base}_{k}"
            call = self.add(Call(f"{self.owners[-1]}.{name}".lstrip(".")), inputs, out)
            classify_function(call, func, args, kwargs, len(set(call.preds)))
            if call.role == "concat":
                parts = [t for t in (args[0] if args else kwargs.get("tensors", []))]
                set_parts(call, [self.producer.get(id(t)) for t in parts],
                          [tuple(t.shape) for t in parts], _cat_dim(args, kwargs))
        return out


def _is_leaf(module):
    if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    return not list(module.children()) or module.__module__.startswith("torch.nn") or \
        is_normalization(module) or noise_of(module) is not None


def _hooks(model, rec):
    names = {m: n for n, m in model.named_modules()}
    handles = []
    for m, name in names.items():
        if _is_leaf(m) and m is not model:
            def pre(mod, args, name=name):
                rec.depth += 1

            def post(mod, args, out, name=name):
                rec.depth -= 1
                if rec.depth == 0:
                    call = rec.add(Call(name, mod), _tensors(args), out)
                    classify_module(call, mod)
        else:
            def pre(mod, args, name=name):
                if rec.depth == 0:
                    rec.owners.append(name)

            def post(mod, args, out, name=name):
                if rec.depth == 0 and rec.owners[-1] == name:
                    rec.owners.pop()
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    return handles


def recorded_graph(model, example_inputs):
    """``[Call]`` from one eval-mode forward pass on ``example_inputs`` (nothing changes)."""
    rec = _Recorder()
    for i, t in enumerate(example_inputs):
        rec.add(Call(f"input {i}"), [], t)
    handles = _hooks(model, rec)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), rec:
            model(*example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return rec.calls
