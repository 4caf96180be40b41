"""Low-precision gradient all-reduce on real torch.distributed process groups.

Gradients are quantized with :func:`precision.quantize.quantize` (the one rounding core,
into a wire buffer kept across steps per bucket) and summed in an emulated format,
optionally scaled per layer by Auto-Precision-Scaling (:mod:`precision.aps`). Entry points:

* :func:`all_reduce_gradients` averages ``.grad`` in place after ``backward()``;
* :func:`reduce_flat` averages one flat tensor of layers laid back to back;
* :func:`lowp_allreduce_hook` is a DDP communication hook doing the same per bucket, its
  carrier all-reduce asynchronous.

Each returns a :class:`ReduceReport`; its counts of underflow, overflow and saturation are
tallied inside the rounding passes (see ``LowPrecisionState.telemetry``).
:func:`reference_reduce` reproduces :func:`all_reduce_gradients` in one process, bit for
bit, for tests. The modules: :mod:`.pipeline` (the steps of one reduction), :mod:`.ordered`
(rounding plans and summation orders, pure), :mod:`.comm` (the torch.distributed calls),
:mod:`.telemetry` and :mod:`.report` (what is measured and reported), :mod:`.state`
(settings and records). Process groups should be created with an explicit timeout
(:func:`init_process_group_with_timeout`); torch's default of 30 minutes turns a dead worker
into a half-hour hang.
"""

from precision.aps import NonFiniteGradientError
from precision.collectives.comm import init_process_group_with_timeout
from precision.collectives.ddp import lowp_allreduce_hook
from precision.collectives.pipeline import all_reduce_gradients, reduce_flat
from precision.collectives.reference import reference_reduce
from precision.collectives.state import (
    LayerStats,
    LowPrecisionState,
    NonFinitePolicy,
    ReduceReport,
    Reduction,
)

__all__ = [
    "LayerStats",
    "LowPrecisionState",
    "NonFiniteGradientError",
    "NonFinitePolicy",
    "ReduceReport",
    "Reduction",
    "all_reduce_gradients",
    "init_process_group_with_timeout",
    "lowp_allreduce_hook",
    "reduce_flat",
    "reference_reduce",
]
