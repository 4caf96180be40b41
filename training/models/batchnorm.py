"""Batch-normalization variants for data-parallel training and a converter between them.

* ``PLAIN``: :class:`torch.nn.BatchNorm2d`; statistics of each worker's local batch.
* ``SYNC``: :class:`DistributedBatchNorm2d`; statistics of the global batch, all-reduced over
  the default (or a given) process group. Unlike :class:`torch.nn.SyncBatchNorm` it also runs on
  CPU tensors with the gloo backend.
* ``GHOST``: :class:`GhostBatchNorm2d`; statistics of virtual sub-batches of a fixed size
  (Hoffer, Hubara, Soudry 2017, "Train longer, generalize better", arXiv:1705.08741), which
  keeps the noise of small-batch normalization when the per-worker batch grows.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class BatchNormMode(Enum):
    """How batch-norm layers compute their training-mode statistics."""

    PLAIN = "plain"
    SYNC = "sync"
    GHOST = "ghost"


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum).

    Every rank's output is the sum of all ranks' inputs, so the gradient of the total loss
    with respect to one rank's input is the sum of all ranks' output gradients: the backward
    pass is another all-reduce (the same rule SyncBatchNorm applies to its statistics).
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def _world_size(group: Any) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return int(dist.get_world_size(group))


def _running_factor(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """Count one batch and return the running-average factor, as ``nn.BatchNorm2d`` does."""
    if bn.num_batches_tracked is None:
        return 0.0 if bn.momentum is None else float(bn.momentum)
    bn.num_batches_tracked.add_(1)
    if bn.momentum is None:  # cumulative moving average
        return 1.0 / float(bn.num_batches_tracked)
    return float(bn.momentum)


class DistributedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batches of all workers.

    When ``torch.distributed`` is initialized with more than one rank in ``process_group``,
    the training-mode forward pass computes per-channel mean and variance of the global batch
    in two all-reduces: first the sum and element count (giving the mean), then the sum of
    squared deviations from that mean. The second pass costs one more small message but avoids
    the cancellation of ``E[x^2] - E[x]^2``, which loses all digits of the variance in float32
    when ``|mean| >> std`` -- exactly the regime a precision study must not distort. Gradients
    flow through both all-reduces (:class:`_AllReduceSum`). Otherwise (one process, eval mode)
    it behaves exactly like :class:`torch.nn.BatchNorm2d`.

    Statistics are accumulated in at least float32 and the output is cast back to the input
    dtype, as cuDNN does for half-precision inputs.

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance.
        momentum: running-average factor; None for a cumulative average.
        affine: learn a per-channel scale and shift.
        track_running_stats: keep running mean and variance for eval mode.
        process_group: group to reduce over; None means the default group.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype
        )
        self.process_group = process_group

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats or _world_size(self.process_group) <= 1:
            return super().forward(input)
        self._check_input_dim(input)
        stat_dtype = torch.promote_types(input.dtype, torch.float32)
        x = input.to(stat_dtype)
        channels = x.shape[1]
        local_count = torch.full(
            (1,), x.numel() // max(channels, 1), dtype=stat_dtype, device=x.device
        )
        packed = _AllReduceSum.apply(
            torch.cat([x.sum(dim=(0, 2, 3)), local_count]), self.process_group
        )
        total = float(packed[-1].detach())
        if total <= 1.0:
            raise ValueError(
                f"DistributedBatchNorm2d: {int(total)} value(s) per channel in the global batch; "
                "need more than 1 in training mode"
            )
        mean = packed[:channels] / total
        centered = x - mean.view(1, -1, 1, 1)
        sq_sum = _AllReduceSum.apply((centered * centered).sum(dim=(0, 2, 3)), self.process_group)
        var = sq_sum / total
        out = centered * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.to(stat_dtype).view(1, -1, 1, 1)
            out = out + self.bias.to(stat_dtype).view(1, -1, 1, 1)
        run_mean, run_var = self.running_mean, self.running_var
        if (
            self.training
            and self.track_running_stats
            and run_mean is not None
            and run_var is not None
        ):
            factor = _running_factor(self)
            with torch.no_grad():
                # Running variance is unbiased, as in nn.BatchNorm2d.
                unbiased = var.detach() * (total / (total - 1.0))
                run_mean.lerp_(mean.detach().to(run_mean.dtype), factor)
                run_var.lerp_(unbiased.to(run_var.dtype), factor)
        return out.to(input.dtype)


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalizes each virtual sub-batch of ``ghost_batch_size`` separately.

    In training mode the batch is split along dimension 0 into chunks of
    ``ghost_batch_size`` (the last may be smaller); each chunk is normalized with its own
    statistics and updates the running statistics as if it were a separate batch. With
    ``ghost_batch_size`` >= batch size this is exactly :class:`torch.nn.BatchNorm2d`.

    Args:
        num_features: number of channels ``C``.
        ghost_batch_size: examples per virtual batch (Hoffer et al. 2017 use 128).
        eps, momentum, affine, track_running_stats: as in :class:`torch.nn.BatchNorm2d`.

    Raises:
        ValueError: if ``ghost_batch_size`` is not positive.
    """

    def __init__(
        self,
        num_features: int,
        ghost_batch_size: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if ghost_batch_size <= 0:
            raise ValueError(f"ghost_batch_size={ghost_batch_size}: must be positive")
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype
        )
        self.ghost_batch_size = ghost_batch_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_batch_size={self.ghost_batch_size}"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(input)
        self._check_input_dim(input)
        outputs = []
        for chunk in input.split(self.ghost_batch_size, dim=0):
            factor = _running_factor(self) if self.track_running_stats else 0.0
            outputs.append(
                F.batch_norm(
                    chunk,
                    self.running_mean,
                    self.running_var,
                    self.weight,
                    self.bias,
                    training=True,
                    momentum=factor,
                    eps=self.eps,
                )
            )
        return torch.cat(outputs, dim=0)


def _rebuild(
    bn: nn.BatchNorm2d, mode: BatchNormMode, ghost_batch_size: int | None, process_group: Any
) -> nn.BatchNorm2d:
    common: dict[str, Any] = {
        "eps": bn.eps,
        "momentum": bn.momentum,
        "affine": bn.affine,
        "track_running_stats": bn.track_running_stats,
    }
    new: nn.BatchNorm2d
    if mode is BatchNormMode.PLAIN:
        new = nn.BatchNorm2d(bn.num_features, **common)
    elif mode is BatchNormMode.SYNC:
        new = DistributedBatchNorm2d(bn.num_features, process_group=process_group, **common)
    else:
        if ghost_batch_size is None:
            raise ValueError("BatchNormMode.GHOST needs ghost_batch_size")
        new = GhostBatchNorm2d(bn.num_features, ghost_batch_size, **common)
    # Reuse the very Parameter and buffer objects so that optimizers and DDP built before the
    # conversion keep pointing at live tensors.
    if bn.affine:
        new.weight = bn.weight
        new.bias = bn.bias
    new.running_mean = bn.running_mean
    new.running_var = bn.running_var
    new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


def convert_batchnorm(
    model: nn.Module,
    mode: BatchNormMode,
    *,
    ghost_batch_size: int | None = None,
    process_group: Any = None,
) -> nn.Module:
    """Replace every ``BatchNorm2d`` (of any of the three kinds) in ``model`` with ``mode``.

    Parameters, running statistics and the train/eval flag are carried over (the same tensor
    objects, not copies). Other normalization layers (BatchNorm1d, LayerNorm) are untouched.

    Args:
        model: the model, changed in place.
        mode: the kind of batch norm wanted.
        ghost_batch_size: virtual batch size, required for ``GHOST``.
        process_group: reduction group for ``SYNC``; None means the default group.

    Returns:
        The converted model (a new object only when ``model`` itself is a BatchNorm2d).

    Raises:
        ValueError: if ``mode`` is ``GHOST`` and ``ghost_batch_size`` is None.
    """
    if mode is BatchNormMode.GHOST and ghost_batch_size is None:
        raise ValueError("BatchNormMode.GHOST needs ghost_batch_size")
    if isinstance(model, nn.BatchNorm2d):
        return _rebuild(model, mode, ghost_batch_size, process_group)
    for name, child in model.named_children():
        converted = convert_batchnorm(
            child, mode, ghost_batch_size=ghost_batch_size, process_group=process_group
        )
        if converted is not child:
            setattr(model, name, converted)
    return model
