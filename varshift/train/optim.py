r"""The optimiser of the recipes: PyTorch's ``SGD(momentum, weight_decay)`` in Keras.

:class:`CoupledSGD` is PyTorch's ``SGD(momentum, weight_decay)`` exactly:
:math:`g \leftarrow g + \lambda w`, :math:`b \leftarrow \mu b + g`, :math:`w \leftarrow w - \eta b`,
with the L2 term on *every* trainable variable (kernels, biases, BN's gamma and beta), as in the
reference code. Keras' own ``SGD(weight_decay=...)`` is decoupled and would be about
:math:`1/(1-\mu) = 10` times weaker at momentum 0.9.
"""

from __future__ import annotations

from varshift._keras import keras as _load_keras
from varshift.train.recipes import Recipe

keras = _load_keras()  # this module is imported on demand only (not by `import varshift`)

__all__ = ["CoupledSGD", "compile_model"]


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


def compile_model(model, recipe: Recipe, *, lr=None):
    """Compile ``model`` with :class:`CoupledSGD`, sparse cross-entropy on logits, accuracy."""
    opt = CoupledSGD(learning_rate=recipe.lr if lr is None else lr,
                     momentum=recipe.momentum, l2=recipe.weight_decay)
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model
