r"""The optimiser of the recipes: PyTorch's ``SGD(momentum, weight_decay)`` in Keras.

:class:`CoupledSGD` is PyTorch's ``SGD(momentum, weight_decay)`` exactly:
:math:`g \leftarrow g + \lambda w`, :math:`b \leftarrow \mu b + g`, :math:`w \leftarrow w - \eta b`,
with the L2 term on *every* trainable variable (kernels, biases, BN's gamma and beta), as in the
reference code. Keras' own ``SGD(weight_decay=...)`` is decoupled and would be about
:math:`1/(1-\mu) = 10` times weaker at momentum 0.9.
"""

from __future__ import annotations

import math

from varshift._keras import keras as _load_keras
from varshift.recipes import Recipe

keras = _load_keras()  # this module is imported on demand only (not by `import varshift`)

__all__ = ["CoupledSGD", "WarmupCosine", "compile_model"]


@keras.saving.register_keras_serializable(package="varshift")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    r"""Linear warm-up, then a half cosine to zero: the ``"cosine"`` schedule of a Recipe.

    .. math::
        \eta_s = \eta_0 \frac{s + 1}{W} \ (s < W), \qquad
        \eta_s = \tfrac{1}{2}\eta_0 \left(1 + \cos\frac{\pi (s - W)}{T - W}\right)
        \ (s \ge W),

    with :math:`s` the optimiser's step count (saved with it, so a resumed run continues the
    schedule exactly). :meth:`varshift.train.Recipe.lr_at_step` is the same formula in Python.

    Args:
        lr: peak rate :math:`\eta_0`.
        warmup_steps: :math:`W` (0: no warm-up).
        total_steps: :math:`T`.

    Example:

    >>> sched = WarmupCosine(0.1, warmup_steps=10, total_steps=100)
    >>> [round(float(sched(step)), 6) for step in (0, 9, 55, 99)]  # float32 rates
    [0.01, 0.1, 0.05, 3e-05]
    """

    def __init__(self, lr, warmup_steps, total_steps):
        self.lr = float(lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        ops = keras.ops
        s = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        frac = ops.minimum(1.0, (s - self.warmup_steps) / float(max(
            self.total_steps - self.warmup_steps, 1)))
        cosine = 0.5 * self.lr * (1.0 + ops.cos(math.pi * frac))
        if self.warmup_steps <= 0:
            return cosine
        return ops.where(s < self.warmup_steps, self.lr * (s + 1.0) / warm, cosine)

    def get_config(self):
        return {"lr": self.lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


@keras.saving.register_keras_serializable(package="varshift")
class CoupledSGD(keras.optimizers.SGD):
    r"""SGD with momentum and coupled L2 weight decay, exactly as PyTorch's ``SGD``.

    .. math::
        g_t = \nabla L(w_t) + \lambda w_t,\quad b_t = \mu b_{t-1} + g_t,\quad
        w_{t+1} = w_t - \eta_t b_t.

    Keras' ``SGD`` keeps :math:`m_t = \mu m_{t-1} - \eta_t g_t` instead, which differs from the
    PyTorch form right after a learning-rate drop; and its ``weight_decay`` is decoupled.

    Args:
        learning_rate: :math:`\eta`.
        momentum: :math:`\mu` (0.9 in the recipes).
        l2: :math:`\lambda`, applied to every trainable variable (PyTorch's ``weight_decay``).
        **kwargs: other ``keras.optimizers.SGD`` arguments.

    Example:

    >>> opt = CoupledSGD(learning_rate=0.1, momentum=0.9, l2=5e-4)
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, l2=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.l2:
            g = ops.add(g, ops.multiply(ops.cast(self.l2, variable.dtype), variable))  # + lambda w
        if self.momentum != 0:
            b = self.momentums[self._get_variable_index(variable)]
            self.assign(b, ops.add(ops.multiply(b, ops.cast(self.momentum, b.dtype)), g))
            g = b  # b_t = mu b_{t-1} + g_t
        self.assign_sub(variable, ops.multiply(g, lr))  # w -= eta b_t

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


def compile_model(model, recipe: Recipe, *, lr=None, steps_per_epoch=None):
    """Compile ``model`` with :class:`CoupledSGD`, sparse cross-entropy on logits, accuracy.

    With ``recipe.schedule == "cosine"`` and ``steps_per_epoch`` given (and no ``lr``), the
    optimiser's rate is the per-step ``WarmupCosine`` schedule; otherwise it is the
    constant ``lr`` (default ``recipe.lr``), which the trainer sets per epoch for ``"step"``.
    """
    rate = recipe.lr if lr is None else lr
    if recipe.schedule == "cosine" and steps_per_epoch and lr is None:
        rate = WarmupCosine(recipe.lr, recipe.warmup_steps(steps_per_epoch),
                            recipe.epochs * int(steps_per_epoch))
    opt = CoupledSGD(learning_rate=rate, momentum=recipe.momentum, l2=recipe.weight_decay)
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model
