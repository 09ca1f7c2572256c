"""One compiled forward pass per backend: the engine's per-batch work
(:mod:`varshift.bnstats._forward`) wrapped in ``tf.function`` on TensorFlow, ``jax.jit`` over
``model.stateless_call`` on JAX, and eager calls under ``torch.no_grad()`` on PyTorch, made once
per model and configuration (:func:`pass_for`) and reused by every later pass."""

from __future__ import annotations

import contextlib

import numpy as np

from varshift._graph import bn_layers
from varshift._keras import backend as _backend
from varshift._keras import keras as _load_keras
from varshift._keras import to_numpy
from varshift.bnstats._forward import Intercept, nonfinite_per_sample
from varshift.noise import noise_layers

__all__ = ["Pass", "pass_for"]


def _tf_runner(model, step, input_shapes):
    """``tf.function`` over the eager model call, traced once per kind of batch (structure,
    dtypes and sample shapes) with the batch dimension left free: a smaller last batch, or a
    later pass over other data of the same kind, runs the same trace."""
    from varshift._keras import tf as _load_tf

    tf = _load_tf()
    traced, without_grappler, flat = {}, _without_grappler(tf), [True]

    def spec_of(a):
        return tf.TensorSpec((None, *tuple(a.shape)[1:]), tf.as_dtype(a.dtype))

    def call(fn, x):
        if flat[0] and isinstance(x, np.ndarray):
            # the concrete function's flat call: the same execution without binding its
            # structured signature, which costs as much as a small batch's pass itself
            try:
                return fn._call_flat([tf.convert_to_tensor(x)], fn.captured_inputs)
            except (AttributeError, TypeError):  # not this TensorFlow's API: the public call
                flat[0] = False
        return fn(tf.nest.map_structure(tf.convert_to_tensor, x))

    def run(x):
        # a numpy batch (the common case) is keyed without building a spec for every batch
        key = (x.shape[1:], x.dtype.str) if isinstance(x, np.ndarray) else None
        if key not in traced:
            spec = tf.nest.map_structure(spec_of, x)
            key = key or repr(spec)
            if key not in traced:  # the concrete function: no dispatch on the arguments
                traced[key] = tf.function(
                    lambda xx: step(lambda t: model(t, training=False), xx),
                    autograph=False).get_concrete_function(spec)
        with without_grappler():
            centres, sums = call(traced[key], x)
        return centres.numpy(), sums.numpy()

    return run, lambda: None


def _without_grappler(tf):
    """A context manager under which the TensorFlow functions this thread calls skip Grappler,
    TensorFlow's graph optimiser (the thread's other function options kept): the pass's graph
    runs as fast without it on CPU, and optimising it is over a third of the pass's first
    call. A no-op where TensorFlow's per-thread function options are not found."""
    try:
        from tensorflow.python.eager import context as tf_context
    except ImportError:
        return contextlib.nullcontext
    ctx = tf_context.context()
    if not hasattr(getattr(ctx, "function_call_options", None), "config_proto_serialized"):
        return contextlib.nullcontext
    made = {}  # the thread's options (serialised) -> the same without Grappler

    def options_without(current):
        config = tf.compat.v1.ConfigProto.FromString(current.config_proto_serialized)
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        return tf_context.FunctionCallOptions(executor_type=current.executor_type,
                                              config_proto=config)

    @contextlib.contextmanager
    def without():
        previous = ctx.function_call_options
        key = (previous.executor_type, previous.config_proto_serialized)
        if key not in made:
            made[key] = options_without(previous)
        ctx.function_call_options = made[key]
        try:
            yield
        finally:
            ctx.function_call_options = previous

    return without


#: JAX: consecutive small batches go through one compiled call, as many as fit this many bytes
#: of input (at their compiled size), at most ``_STACK_MAX`` (a small batch's pass can cost less
#: than its dispatch)
_STACK_BYTES = 1 << 20
_STACK_MAX = 64


def _jax_runner(model, step, input_shapes):
    """``jax.jit`` over ``model.stateless_call`` (:class:`_JaxRunner`)."""
    runner = _JaxRunner(model, step, input_shapes)
    return runner.run, runner.begin, runner.run_all


class _JaxRunner:
    """``jax.jit`` over ``model.stateless_call``: the variables are arguments (read afresh at
    the start of each pass) and the non-trainable ones (noise layers' seed states) are carried
    from batch to batch, so masks advance as in ``fit``; the model is not written.

    Compiled once per kind of batch at the largest batch size met: a smaller batch (the short
    last batch of a pass) is padded with zeros to that size, and a mask of its samples keeps
    the padding out of every BN statistic (``_forward._sample_sums``) and out of the per-sample
    centres and sums returned. Not where a BN layer sees another batch size than the model's
    input (``TimeDistributed``): such batches are compiled at their own size.

    Small batches go through in stacks, as many as fit ``_STACK_BYTES`` of input (at least 2,
    at most ``_STACK_MAX``): one compiled call runs ``jax.lax.scan`` over the stack, the same
    work batch after batch. A stack is filled up to its size with batches of padding only,
    which measure nothing and leave the seed states as they are."""

    def __init__(self, model, step, input_shapes):
        import jax

        self.model, self.step, self.input_shapes = model, step, input_shapes
        self.state, self.sizes, self._ntv = {}, {}, {}
        self.jitted, self.jitted_stack = jax.jit(self._pure), jax.jit(self._pure_stack)

    def _pure(self, trainable, non_trainable, x, mask):
        def forward(xx):
            _, self._ntv["ntv"] = self.model.stateless_call(trainable, non_trainable, xx,
                                                             training=False)

        centres, sums = self.step(forward, x, mask)
        return centres, sums, self._ntv["ntv"]

    def _pure_stack(self, trainable, non_trainable, xs, masks):
        import jax

        def body(carry, batch):
            centres, sums, ntv = self._pure(trainable, carry, *batch)
            data = jax.numpy.any(batch[1] > 0)  # a batch of padding only keeps the states
            return jax.tree_util.tree_map(lambda a, b: jax.numpy.where(data, a, b), ntv,
                                          carry), (centres, sums)

        ntv, (centres, sums) = jax.lax.scan(body, non_trainable, (xs, masks))
        return centres, sums, ntv

    def begin(self):
        self.state["tv"] = [v.value for v in self.model.trainable_variables]
        self.state["ntv"] = [v.value for v in self.model.non_trainable_variables]

    @staticmethod
    def _kind(x):
        """``(leaves, kind, samples)`` of batch ``x``: its kind is its structure's sample shapes
        and dtypes."""
        import jax

        leaves = jax.tree_util.tree_leaves(x)
        kind = tuple((tuple(a.shape[1:]), str(a.dtype)) for a in leaves)
        return leaves, kind, int(leaves[0].shape[0])

    def _pads_to(self, size):
        """Whether a short batch may be padded to ``size`` rows: every BN layer traced so far
        sees the model's batch (not ``TimeDistributed``'s samples x steps)."""
        return all(shape[0] == size for shape in self.input_shapes())

    def _padded(self, x):
        """``(x padded to its kind's compiled size, mask, samples)``."""
        import jax

        _, kind, n = self._kind(x)
        size = self.sizes.get(kind, 0)
        if n > size:
            self.sizes[kind] = size = n
        elif n < size and not self._pads_to(size):
            size = n
        if n < size:
            x = jax.tree_util.tree_map(
                lambda a: np.concatenate([a, np.zeros((size - n, *a.shape[1:]), a.dtype)]), x)
        return x, (np.arange(size) < n).astype("float32"), n

    def _dispatch(self, x):
        """``(centres, sums, samples)`` of batch ``x``, its outputs not yet read (JAX computes
        them while Python goes on)."""
        x, mask, n = self._padded(x)
        centres, sums, self.state["ntv"] = self.jitted(self.state["tv"], self.state["ntv"],
                                                       _sharded(x), mask)
        return centres, sums, n

    def run(self, x):
        centres, sums, n = self._dispatch(x)
        return np.asarray(centres)[:n], np.asarray(sums)[:n]

    def _run_stack(self, stack, depth):
        """``(offset, centres, sums)`` of each batch of ``stack`` (``(offset, batch)`` pairs
        of one kind and compiled size), from one compiled call over ``depth`` batches."""
        import jax

        xs, masks, ns = zip(*(self._padded(x) for _, x in stack), strict=True)
        fill = depth - len(stack)
        xs = jax.tree_util.tree_map(
            lambda *a: np.stack([*a, *[np.zeros_like(a[0])] * fill]), *xs)
        masks = np.stack([*masks, *[np.zeros_like(masks[0])] * fill])
        centres, sums, self.state["ntv"] = self.jitted_stack(
            self.state["tv"], self.state["ntv"], xs, masks)
        centres, sums = np.asarray(centres), np.asarray(sums)
        return [(offset, centres[i, :n], sums[i, :n])
                for i, ((offset, _), n) in enumerate(zip(stack, ns, strict=True))]

    def _stack_key(self, x):
        """``(kind, depth)`` of the stacks batch ``x`` may join, or ``None``."""
        leaves, kind, n = self._kind(x)
        if (_load_keras().distribution.distribution() is not None
                or not all(isinstance(a, np.ndarray) for a in leaves)):
            return None
        size = self.sizes.setdefault(kind, n)
        if n > size or (n < size and not (self.input_shapes() and self._pads_to(size))):
            return None  # a larger batch, or a short one not known to pad: on its own
        depth = min(_STACK_MAX, _STACK_BYTES // max(1, size * sum(
            a.itemsize * int(np.prod(a.shape[1:])) for a in leaves)))
        return (kind, depth) if depth >= 2 else None

    def run_all(self, batches):
        """``(offset, centres, sums)`` of each ``(offset, batch)``, in order, small batches in
        stacks; a batch run alone is read only once the next one is on its way, so the host's
        work on one batch overlaps the computation of the next."""
        stack, key, pending = [], None, []

        def read():
            offset, centres, sums, n = pending.pop()
            return offset, np.asarray(centres)[:n], np.asarray(sums)[:n]

        for offset, x in batches:
            k = self._stack_key(x)
            if stack and (k != key or len(stack) == key[1]):
                yield from self._run_stack(stack, key[1])
                stack = []
            if k is None:
                dispatched = (offset, *self._dispatch(x))
                if pending:
                    yield read()
                pending.append(dispatched)
            else:
                if pending:
                    yield read()
                stack.append((offset, x))
                key = k
        if pending:
            yield read()
        if stack:
            yield from self._run_stack(stack, key[1])


def _sharded(x):
    """Under ``keras.distribution.DataParallel`` (or any distribution), the batch split over
    the devices by the distribution's data layout: jit then computes every BN statistic over
    the whole batch (XLA all-reduces the per-device sums), so the result is one device's. A
    batch the devices do not divide stays whole (replicated)."""
    keras = _load_keras()
    distribution = keras.distribution.distribution()
    if distribution is None:
        return x

    def put(a):
        try:
            return keras.distribution.distribute_tensor(a, distribution.get_data_layout(a.shape))
        except ValueError:
            return a
    return keras.tree.map_structure(put, x)


def _eager_runner(model, step, input_shapes):
    """Eager calls (PyTorch: under ``torch.no_grad()``; any other backend as is)."""
    keras = _load_keras()
    ops = keras.ops

    def run(x):
        context = contextlib.nullcontext()
        if _backend() == "torch":
            import torch

            context = torch.no_grad()
        with context:
            x = keras.tree.map_structure(ops.convert_to_tensor, x)
            centres, sums = step(lambda xx: model(xx, training=False), x)
        return to_numpy(centres), to_numpy(sums)

    return run, lambda: None


_RUNNERS = {"tensorflow": _tf_runner, "jax": _jax_runner}


class Pass:
    """One model's forward pass under an :class:`~varshift.bnstats._forward.Intercept`,
    compiled for the backend, made once per (model, BN mode, noise) and reused by every later
    pass (no per-call tracing)."""

    def __init__(self, model, bn_mode, noise):
        self.intercept = Intercept(model, bn_mode, noise)
        self.order = []  # (layer, input shape, channels) in call order
        runner = _RUNNERS.get(_backend(), _eager_runner)(
            model, self._step, lambda: [shape for _, shape, _ in self.order])
        self.run, self.begin = runner[:2]
        self.run_all = runner[2] if len(runner) > 2 else self._one_by_one

    def _one_by_one(self, batches):
        """``(offset, centres, sums)`` of each ``(offset, batch)``, one compiled call each."""
        for offset, x in batches:
            yield (offset, *self.run(x))

    def _step(self, forward, x, mask=None):
        """One batch through ``forward`` under the intercept; ``mask`` (``(B,)``: 1 for data,
        0 for padding) limits BN statistics to the data's samples."""
        ops = _load_keras().ops
        self.intercept.records.clear()
        self.intercept.mask = mask
        try:
            forward(x)
        finally:
            self.intercept.mask = None
        order, centres, sums = [], [], [nonfinite_per_sample(ops, x)]
        for layer, shape, (centre, s1, s2) in self.intercept.records:
            order.append((layer, shape, int(centre.shape[1])))
            centres.append(centre)
            sums += [s1, s2]
        self.order[:] = order
        return ops.concatenate(centres, axis=1), ops.concatenate(sums, axis=1)


def pass_for(model, bn_mode, noise):
    """The cached :class:`Pass` of ``model`` (kept on the model object, outside Keras'
    tracking), rebuilt if its BN or noise layers changed."""
    cache = model.__dict__.get("_varshift_passes")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_varshift_passes", cache)
    key = (_backend(), bn_mode, bool(noise), tuple(id(b) for b in bn_layers(model)),
           tuple(id(n) for n in noise_layers(model)))
    if key not in cache:
        cache[key] = Pass(model, bn_mode, noise)
    return cache[key]

