"""Diagnose and repair the dropout/BatchNorm variance shift of any PyTorch ``nn.Module``.

The same three jobs, names, arguments and result tables as the Keras API
(:func:`varshift.audit`, :func:`varshift.measure_shift`, :func:`varshift.recalibrate_bn`):

- :func:`audit` (static, from ``torch.fx`` or a recorded forward pass): which dropout modules
  or ``F.dropout`` calls feed which BatchNorm modules, and through what (cases a, b, ...);
- :func:`measure_shift` (data): per BN module, the stored ``running_var`` against the
  variance of its input in eval mode (both unbiased, PyTorch's convention);
- :func:`recalibrate_bn` (data): exact pooled re-estimation of the running statistics with
  dropout off, on a copy or in place with an undo handle, all-reduced across
  ``torch.distributed`` ranks.

``import varshift`` never imports torch; importing this subpackage does (and not Keras).
"""

from varshift.torch.audit import audit
from varshift.torch.recalibrate import StatsHandle, recalibrate_bn
from varshift.torch.shift import measure_shift

__all__ = ["audit", "measure_shift", "recalibrate_bn", "StatsHandle"]
