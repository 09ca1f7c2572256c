"""Diagnose and repair any Keras model's dropout/BatchNormalization variance shift.

- :func:`audit` (static): which noise layers feed which BN layers, and through what (case
  (a): directly; (b): through one Dense/Conv, with its fan-in :math:`d` and mean
  :math:`\\cos^2\\theta`; ``deeper``: through several weight layers; ``merge``/``pool``:
  through a layer that adds branches or pools, no closed form).
- :func:`measure_shift` (data): the paper's Fig. 1/4 statistic per BN layer, measured.
- :func:`recalibrate_bn` (data): Table 3's "Adjust BN", re-estimating the moving statistics
  in one pass with BN on batch statistics and noise off (default), or layer by layer in
  inference mode (exact).
- :func:`correct_direct` (no data): the seed notebook's closed-form restore of the moving
  variance for case (a) pairs; it does not fix gamma/beta, so it is a partial repair.

Importing this package does not import Keras: each function loads Keras and its backend
(TensorFlow, JAX or PyTorch) on first use.
"""

from varshift.diagnostics.audit import audit
from varshift.diagnostics.correct import correct_direct
from varshift.diagnostics.recalibrate import ConstantInputWarning, recalibrate_bn
from varshift.diagnostics.shift import measure_shift

__all__ = ["audit", "measure_shift", "recalibrate_bn", "correct_direct", "ConstantInputWarning"]
