r"""Keras layers introduced by the paper: :class:`Uout` (Sec. 5).

Importing this module imports Keras and the backend ``KERAS_BACKEND`` names (TensorFlow, JAX
or PyTorch; quietly, see :mod:`varshift._keras`).
"""

from __future__ import annotations

from varshift._keras import keras as _load_keras
from varshift.contracts import ANY_SEED, BETA_SCALAR, contract

keras = _load_keras()

__all__ = ["Uout"]


@keras.saving.register_keras_serializable(package="varshift")
class Uout(keras.layers.Layer):
    r"""Uniform multiplicative noise, the paper's "Uout" (Sec. 5, Eq. 15).

    During training every element is perturbed independently,

    .. math::
        y = x + x\,r, \qquad r \sim U(-\beta, \beta),

    so :math:`E[y] = E[x]` and the training variance is :math:`v + \frac{\beta^2}{3}(c^2+v)`
    (:func:`varshift.theory.uout_train_variance`). At inference the layer is the identity. The
    variance shift in front of BatchNormalization is :math:`3v / (3v + \beta^2(c^2+v))`, i.e.
    :math:`3/(3+\beta^2)` for zero-mean input, much closer to 1 than Bernoulli dropout's
    :math:`p`.

    Args:
        beta: float in [0, 1], the half-width of the uniform noise.
        seed: optional integer, for a reproducible sequence of noise draws.

    Raises:
        TypeError: ``beta`` is not a real number (a string, ``None``, an array).
        ValueError: ``beta`` is outside [0, 1] or not finite.
        **kwargs: base layer keyword arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: input tensor of any shape.
        training: Python boolean; noise is added only when ``True``.

    Example:

    >>> layer = Uout(beta=0.1, seed=0)
    >>> x = keras.ops.ones((2, 3))
    >>> bool(keras.ops.all(layer(x, training=False) == x))
    True
    """

    @contract(beta=BETA_SCALAR, seed=ANY_SEED)
    def __init__(self, beta, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs, training=False):
        if training and self.beta > 0:
            r = keras.random.uniform(
                keras.ops.shape(inputs),
                minval=-self.beta,
                maxval=self.beta,
                dtype=inputs.dtype,
                seed=self.seed_generator,
            )
            return inputs + inputs * r  # y = x + x r, r ~ U(-beta, beta)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"beta": self.beta, "seed": self.seed})
        return config
