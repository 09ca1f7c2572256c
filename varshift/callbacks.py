r"""Keras callbacks: :class:`RecalibrateBN`, "Adjust BN" inside ``model.fit``.

Importing this module imports Keras and its backend (TensorFlow, JAX or PyTorch; quietly).
"""

from __future__ import annotations

from varshift._keras import keras as _load_keras
from varshift.contracts import COUNT, AnyOf, Boolean, Data, Integer, Optional, Options, contract
from varshift.diagnostics.recalibrate import MODES

keras = _load_keras()

__all__ = ["RecalibrateBN"]

_WHEN = ("train_end", "epoch_end")


class RecalibrateBN(keras.callbacks.Callback):
    r"""Re-estimate the BN moving statistics of the model being trained, at the end of training.

    Calls :func:`varshift.recalibrate_bn` on ``self.model`` in place: with the default
    ``mode="one_pass"`` one pass over ``data`` with every BN layer normalising with the batch
    at hand and every noise layer off, after which each channel's moving mean and variance
    are the exact pooled mean and biased variance

    .. math::
        \mu_c = \frac1N\sum_j x_{j,c}, \qquad \sigma_c^2 = \frac1N\sum_j (x_{j,c}-\mu_c)^2

    of everything that reached it. This removes the variance shift that dropout (or any
    multiplicative noise) in front of BN leaves in the stored statistics, and it re-aligns BN
    statistics with the weights after weight averaging (``keras.callbacks.SwapEMAWeights``,
    SWA), where the moving averages were accumulated under other weights. It is the Keras
    counterpart of PyTorch's ``update_bn``, fvcore's ``update_bn_stats`` (PreciseBN) and
    AIMET's ``reestimate_bn_stats``, with the noise layers off.

    Only ``moving_mean`` and ``moving_variance`` change; weights and optimizer state do not.
    Place it after callbacks that change the weights at the same moment (e.g. an EMA swap).

    Args:
        data: the inputs to measure on: numpy array (``(x, y)`` accepted), ``tf.data.Dataset``
            or ``keras.utils.PyDataset``; typically (a few thousand samples of) the training
            data without shuffling.
        mode: ``"one_pass"`` or ``"sequential"`` (see :func:`varshift.recalibrate_bn`).
        on: ``"train_end"`` (once, after the last epoch) or ``"epoch_end"`` (after every epoch,
            so that per-epoch validation already sees the recalibrated statistics; training
            then continues from them).
        max_samples: read at most this many samples per recalibration; the estimate's
            relative error shrinks as :math:`1/\sqrt{\text{max\_samples}}`.
        batch_size: batch size for numpy input.
        verbose: print one line per recalibration.

    Raises:
        TypeError, ValueError: one line naming the argument, the value and what is expected:
            in ``__init__`` for the arguments themselves (``data`` of the wrong kind, ``None``,
            ``max_samples=-1``, ``batch_size=0``, an endless dataset without ``max_samples``,
            ...), and in ``on_train_begin``, before the first epoch, for a model without
            BatchNormalization, data that does not fit it, or in-memory data holding NaN or
            infinity (a dataset is checked as it streams, at the first recalibration).

    Example:
        >>> import numpy as np
        >>> from varshift.models import dropout_bn_model
        >>> x = np.random.default_rng(0).normal(5, 2, (256, 5)).astype("float32")
        >>> model = dropout_bn_model(5, 0.5)
        >>> _ = model.fit(x, x, epochs=1, verbose=0, callbacks=[RecalibrateBN(x)])

        After ``fit``, BN stores the statistics of its input with Dropout off: here ``x``
        itself (biased variance).

        >>> bn = model.get_layer("bn")
        >>> bool(np.allclose(keras.ops.convert_to_numpy(bn.moving_variance), x.var(axis=0),
        ...                  rtol=1e-5))
        True
    """

    @contract(data=Data(), mode=Options(*MODES), on=Options(*_WHEN), max_samples=Optional(COUNT),
              batch_size=COUNT, verbose=AnyOf(Boolean(), Integer(0)))
    def __init__(self, data, *, mode="one_pass", on="train_end", max_samples=None,
                 batch_size=256, verbose=0):
        super().__init__()
        from varshift import _validate

        # everything is checked here, and against the model in on_train_begin: a bad argument
        # must not surface after the epochs have run (weights changed, History lost)
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.verbose = int(verbose)
        _validate.bounded_stream(data, max_samples, "data")
        _validate.finite_data(_validate.data_like(data, None, "data"), "data")
        self.data = data
        self.mode = mode
        self.on = on
        self.count = 0  # recalibrations done

    def on_train_begin(self, logs=None):
        """Check the model being trained and the data against it, before the first epoch."""
        from varshift import _validate

        try:
            _validate.keras_model(self.model, "model")
            _validate.finite_data(_validate.data_like(self.data, self.model, "data"), "data")
        except (TypeError, ValueError) as err:
            raise type(err)(f"RecalibrateBN: {err}") from None

    def _recalibrate(self, when):
        from varshift.diagnostics.recalibrate import recalibrate_bn

        recalibrate_bn(self.model, self.data, mode=self.mode, max_samples=self.max_samples,
                       inplace=True, batch_size=self.batch_size)
        self.count += 1
        if self.verbose:
            print(f"RecalibrateBN: BN statistics re-estimated ({self.mode}) at {when}.")

    def on_epoch_end(self, epoch, logs=None):
        if self.on == "epoch_end":
            self._recalibrate(f"the end of epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        if self.on == "train_end":
            self._recalibrate("the end of training")
