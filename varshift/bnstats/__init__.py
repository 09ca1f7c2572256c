r"""The BatchNormalization-statistics engine: everything that computes or writes BN statistics.

One engine serves :func:`varshift.measure_shift`, :func:`varshift.recalibrate_bn`,
:func:`varshift.correct_direct`, :func:`varshift.models.converged_bn_statistics` and the
:class:`varshift.callbacks.RecalibrateBN` callback (in the spirit of fvcore's
``precise_bn.py``):

- **finding layers** (:mod:`varshift._graph`, :mod:`varshift.noise`, re-exported here):
  :func:`bn_layers` (every BatchNormalization layer reachable from a model: nested models and
  custom layers included) and :func:`noise_kind` / :func:`noise_layers`;
- **data** (``_batches``): :func:`iter_batches` walks a numpy array, a ``tf.data.Dataset``
  (where TensorFlow is installed) or a ``keras.utils.PyDataset`` batch by batch under the data
  contract of ``varshift._validate.data_like`` (one unpacking and one shape check,
  ``varshift._inputs``; :func:`check_input_shapes`) and, while the batch is in the forward
  pass anyway, checks that every value is finite;
- **the forward pass** (``_forward``, ``_runners``): BN layers' calls intercepted to record
  their inputs' per-sample sums, noise layers forced on or off (:func:`force_noise`,
  :func:`reseeded`), compiled once per model and backend;
- **moments** (``_moments``): :func:`collect_moments` runs the model once per batch and records, for every BN
  layer, per channel the count, the exact pooled mean and biased variance (Chan et al.'s
  parallel combination, :func:`chan_combine`) and the average of the per-batch mean and
  biased variance. BN layers use either their stored statistics (``bn="moving"``: inference)
  or the statistics of the batch at hand (``bn="batch"``: what ``fit`` does), and noise layers
  are forced off or on (``noise=``), independently of each other. :func:`check_moments`
  refuses moments that are not finite or rest on a single value per channel;
- **writing** (``_statistics``): :func:`save_statistics` / :func:`assign_statistics`, which
  refuses any mean that is not finite and any variance that is zero, negative or not finite
  (:func:`sound_statistics` keeps the stored values in such channels instead).

Backends. The per-batch work is written with ``keras.ops`` (with TensorFlow's and JAX's own
reductions where those are faster) and runs on every Keras backend,
compiled once per model and configuration by a small wrapper per backend (``tf.function`` on
TensorFlow, run without Grappler, which does not speed this graph up on CPU but costs its first
call time; ``jax.jit`` over ``model.stateless_call`` on JAX, where a short last batch is padded
and masked so that one compilation serves every batch; eager calls under ``torch.no_grad()`` on
PyTorch) and reused by later calls. BN inputs of one shape share one traced body of the
per-sample sums. Inside the pass everything is
float32 and per sample (sums over a sample's positions); the sums are combined across the batch
and across batches in float64 on the host (numpy), so JAX's default float32 costs nothing.

Nothing here modifies a model while it measures: BN layers in batch mode normalise with the
batch statistics computed by the engine itself, so Keras never updates a moving average.

Pooling versus averaging. For a channel that receives the values :math:`x_1..x_N` of a pass
(every sample, and every spatial position of a convolution), split in batches :math:`b` of
:math:`n_b` values with means :math:`\bar x_b` and biased variances :math:`s_b^2`,

.. math::
    \bar x = \frac1N \sum_b n_b \bar x_b, \qquad
    \sigma^2 = \frac1N \sum_b n_b \left(s_b^2 + (\bar x_b - \bar x)^2\right),

the pooled variance, includes the variance of the batch means; the plain average of
:math:`s_b^2` does not (it is what Keras' moving average converges to, :math:`\frac{m-1}{m}`
times :math:`\sigma^2` with :math:`m` values per channel and batch).
"""

from __future__ import annotations

from varshift._graph import bn_layers, is_bn, shared_bn_layers, time_distributed_layers
from varshift.bnstats._batches import check_input_shapes, iter_batches
from varshift.bnstats._forward import force_noise, reduce_axes, reseeded, values_per_channel
from varshift.bnstats._moments import LayerMoments, chan_combine, check_moments, collect_moments
from varshift.bnstats._statistics import (
    assign_statistics,
    restore_statistics,
    save_statistics,
    sound_statistics,
    unsound_channels,
)
from varshift.noise import noise_kind, noise_layers

__all__ = [
    "is_bn", "bn_layers", "shared_bn_layers", "noise_kind", "noise_layers", "reduce_axes",
    "values_per_channel", "check_input_shapes", "iter_batches", "chan_combine",
    "LayerMoments", "collect_moments", "check_moments", "save_statistics",
    "assign_statistics", "sound_statistics", "unsound_channels", "restore_statistics",
    "time_distributed_layers", "force_noise", "reseeded",
]
