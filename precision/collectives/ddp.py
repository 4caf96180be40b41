"""DDP communication hook: the low-precision all-reduce inside DistributedDataParallel.

No ``from __future__ import annotations`` here: DDP's ``register_comm_hook`` checks the
hook's annotations against ``dist.GradBucket`` and ``Future[Tensor]`` objects, not strings.
"""

import functools
import threading

import torch
import torch.distributed as dist

from precision.collectives.pipeline import Reduced, reduce_flat_async
from precision.collectives.state import LowPrecisionState

_RECORD_LOCK = threading.Lock()


def lowp_allreduce_hook(
    state: LowPrecisionState, bucket: dist.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """Average a DDP gradient bucket over the group in an emulated low-precision format.

    Algorithm, for the bucket's flat buffer (each parameter's gradient is one segment, one
    APS layer):

    1. Multiply by ``state.loss_scale`` (the global-loss-scaling baseline; 1 by default).
    2. With ``state.aps``: compute each segment's ``ceil(log2(max|g|)) + headroom`` locally,
       take the MAX over workers in one all-reduce (skipped while ``reuse_shifts`` lets the
       last shifts stand); the shift of a segment is ``fmt.emax - E``.
    3. Quantize to ``state.fmt`` with ``state.rounding`` into a buffer kept per bucket, each
       segment scaled by ``2**shift``: a long segment of a float format is rounded to the
       format with its bias raised by the shift (:func:`precision.aps.shifted_format`: the
       same bits without the two multiplies), short ones are multiplied.
    4. Sum over workers as ``state.reduction`` says (carrier all-reduce with a final
       rounding, or a sum rounded after each addition in rank, ring or 2D-torus order).
    5. Undo the multiplied shifts and the loss scale (exact for powers of two) and divide by
       the world size: like DDP's default hook, the result is the AVERAGE gradient.
    6. Record a :class:`ReduceReport` per bucket (its counts tallied by the roundings of
       steps 3-4); when every bucket of the step is done, they become
       ``state.last_reports`` and ``state.step`` advances.

    Steps 1-3 run in the hook; the carrier all-reduce of step 4 is started asynchronously
    and steps 4 (the final rounding) to 6 run in the returned future's callback, so the sum
    travels while backward computes the next buckets, as with DDP's default hook. Ordered
    reductions and ``measure_error`` run synchronously (the future is already complete).
    With ``state.fmt`` None it is a plain float32 all-reduce.

    Example::

        state = LowPrecisionState(fmt=from_bits(4), aps=True,
                                  reduction=Reduction.RING)
        ddp = DistributedDataParallel(model)
        ddp.register_comm_hook(state, lowp_allreduce_hook)

    Args:
        state: settings and runtime cache (:class:`LowPrecisionState`).
        bucket: the DDP gradient bucket.

    Returns:
        A future of the averaged bucket, in the buffer's dtype.

    Raises:
        RuntimeError: the bucket's gradients do not tile its buffer.
        NonFiniteGradientError: with ``NonFinitePolicy.RAISE``, a gradient held Inf/NaN.
    """
    buf = bucket.buffer()
    sizes = [g.numel() for g in bucket.gradients()]
    if sum(sizes) != buf.numel():
        raise RuntimeError(
            f"DDP bucket {bucket.index()}: gradients hold {sum(sizes)} elements but the "
            f"buffer holds {buf.numel()}; cannot split it into per-parameter segments"
        )
    if bucket.is_last():
        state._expected_buckets = bucket.index() + 1
    fut = reduce_flat_async(buf, sizes, state, bucket.index())
    return fut.then(functools.partial(_record, state, buf))


def _record(
    state: LowPrecisionState, buf: torch.Tensor, fut: torch.futures.Future[Reduced]
) -> torch.Tensor:
    """Step 6 for one bucket; gives the average back in ``buf``'s dtype and shape."""
    out, report = fut.value()
    with _RECORD_LOCK:  # callbacks of different buckets may run on different threads
        state._pending.append(report)
        if len(state._pending) == state._expected_buckets:
            state.last_reports = sorted(state._pending, key=lambda r: r.bucket)
            state._pending = []
            state._expected_buckets = -1
            state.step += 1
    return out.to(buf.dtype).view_as(buf)
