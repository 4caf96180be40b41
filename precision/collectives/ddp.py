"""DDP communication hook: the low-precision all-reduce inside DistributedDataParallel.

No ``from __future__ import annotations`` here: DDP's ``register_comm_hook`` checks the
hook's annotations against ``dist.GradBucket`` and ``Future[Tensor]`` objects, not strings.
"""

import torch
import torch.distributed as dist

from precision.collectives.core import reduce_flat
from precision.collectives.state import LowPrecisionState


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
    3. Quantize to ``state.fmt`` with ``state.rounding``, in place, each segment scaled by
       ``2**shift``: a long segment of a float format is rounded to the format with its
       bias raised by the shift (:func:`precision.aps.shifted_format`: the same bits
       without the two multiplies), short ones are multiplied.
    4. Sum over workers as ``state.reduction`` says (carrier all-reduce with a final
       rounding, or a sum rounded after each addition in rank, ring or 2D-torus order).
    5. Undo the multiplied shifts and the loss scale (exact for powers of two) and divide by
       the world size: like DDP's default hook, the result is the AVERAGE gradient.
    6. Record a :class:`ReduceReport` per bucket; when the last bucket of the step is done,
       they become ``state.last_reports`` and ``state.step`` advances.

    The work runs synchronously inside the hook (the returned future is already complete),
    so communication does not overlap the rest of backward. With ``state.fmt`` None it is a
    plain float32 all-reduce.

    Example::

        state = LowPrecisionState(fmt=from_bits(4), aps=True,
                                  reduction=Reduction.RING)
        ddp = DistributedDataParallel(model)
        ddp.register_comm_hook(state, lowp_allreduce_hook)

    Args:
        state: settings and runtime cache (:class:`LowPrecisionState`).
        bucket: the DDP gradient bucket.

    Returns:
        A completed future holding the averaged bucket, in the buffer's dtype.

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
    out, report = reduce_flat(buf, sizes, state, bucket=bucket.index())
    state._pending.append(report)
    if bucket.is_last():
        state.last_reports = sorted(state._pending, key=lambda r: r.bucket)
        state._pending = []
        state.step += 1
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(out.to(buf.dtype).view_as(buf))
    return fut
