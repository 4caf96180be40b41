"""Learning-rate schedules for large-batch training, as pure functions of a frozen config.

The learning rate at (fractional) epoch ``e`` is ``warmup`` then ``decay`` of a peak rate that
follows the batch size:

* scaling: ``peak = base_lr * k`` (linear; Krizhevsky 2014, arXiv:1404.5997; Goyal et al. 2017,
  arXiv:1706.02677) or ``base_lr * sqrt(k)`` (square root; Hoffer et al. 2017,
  arXiv:1705.08741), with ``k = batch_size / base_batch_size``;
* warmup: linear from ``warmup_start_lr`` to ``peak`` over ``W`` epochs ("gradual warmup",
  Goyal et al. §2.2, which starts at ``base_lr``). Under LEGW (You et al. 2019, "Large-batch
  training for LSTM and beyond", arXiv:1901.08256) ``W = warmup_epochs * k``: the warmup
  length grows linearly with the batch-size multiple, paired with square-root scaling;
* decay after warmup over the remaining ``T - W`` epochs: polynomial
  ``end + (peak - end) (1 - p)^power`` (power 2 as in the LARS/LAMB work) or cosine
  ``end + (peak - end) (1 + cos(pi p)) / 2`` (Loshchilov & Hutter 2017, arXiv:1608.03983),
  with ``p`` the fraction of the decay phase done.

A preset (Goyal et al.'s warmup from ``base_lr``, LEGW) is an :class:`LRSchedule` with those
fields set; ``training.arm.schedule_for`` builds the one a run configuration asks for.

Batch-size control (:class:`BatchSchedule`) grows the global batch during training instead of
decaying the rate (Smith et al. 2018, arXiv:1711.00489; Mikami et al. 2018, arXiv:1811.05233);
the rate follows the batch by the same scaling rule.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch.optim.lr_scheduler import LambdaLR


class LRScaling(Enum):
    """How the peak learning rate follows the batch-size multiple ``k``."""

    NONE = "none"
    LINEAR = "linear"
    SQRT = "sqrt"

    def factor(self, k: float) -> float:
        """The multiplier for batch-size ratio ``k``."""
        if self is LRScaling.LINEAR:
            return k
        if self is LRScaling.SQRT:
            return math.sqrt(k)
        return 1.0


class WarmupRule(Enum):
    """How long warmup lasts as the batch grows."""

    FIXED = "fixed"  # warmup_epochs as given
    LEGW = "legw"  # warmup_epochs * k (You et al. 2019)


class Decay(Enum):
    """Shape of the learning rate after warmup."""

    CONSTANT = "constant"
    POLYNOMIAL = "polynomial"
    COSINE = "cosine"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True, kw_only=True)
class LRSchedule:
    """A learning-rate schedule; :meth:`lr` and :meth:`lr_at_epoch` are pure functions of it.

    Attributes:
        base_lr: learning rate tuned at ``base_batch_size``.
        base_batch_size: reference global batch size ``B0``.
        batch_size: global batch size ``B`` of this run.
        steps_per_epoch: optimizer steps per epoch at ``batch_size`` (for :meth:`lr`).
        total_epochs: training length ``T``.
        scaling: peak-rate rule.
        warmup_epochs: warmup length; under ``WarmupRule.LEGW`` the length at ``B0``.
        warmup_rule: fixed or LEGW warmup length.
        warmup_start_lr: learning rate at epoch 0 (Goyal et al. use ``base_lr``).
        decay: decay shape after warmup.
        power: exponent of polynomial decay.
        rate: exponential decay's factor per epoch (0.97 per 2.4 epochs in the EfficientNet
            recipe, arXiv:2011.00071, is about 0.987 per epoch).
        end_lr: learning rate at ``total_epochs``.
    """

    base_lr: float
    base_batch_size: int
    batch_size: int
    steps_per_epoch: int
    total_epochs: float
    scaling: LRScaling = LRScaling.LINEAR
    warmup_epochs: float = 0.0
    warmup_rule: WarmupRule = WarmupRule.FIXED
    warmup_start_lr: float = 0.0
    decay: Decay = Decay.POLYNOMIAL
    power: float = 2.0
    end_lr: float = 0.0
    rate: float = 0.97 ** (1 / 2.4)

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate={self.rate}: exponential decay needs 0 < rate <= 1")
        if self.base_batch_size <= 0 or self.batch_size <= 0 or self.steps_per_epoch <= 0:
            raise ValueError(
                f"base_batch_size={self.base_batch_size}, batch_size={self.batch_size}, "
                f"steps_per_epoch={self.steps_per_epoch}: must be positive"
            )
        if self.base_lr < 0 or self.end_lr < 0 or self.warmup_start_lr < 0:
            raise ValueError(
                f"base_lr={self.base_lr}, end_lr={self.end_lr}, "
                f"warmup_start_lr={self.warmup_start_lr}: must be >= 0"
            )
        if self.total_epochs <= 0 or self.warmup_epochs < 0 or self.power <= 0:
            raise ValueError(
                f"total_epochs={self.total_epochs}, warmup_epochs={self.warmup_epochs}, "
                f"power={self.power}: need total > 0, warmup >= 0, power > 0"
            )
        if self.warmup_length > self.total_epochs:
            raise ValueError(
                f"warmup of {self.warmup_length:g} epochs (batch multiple k={self.k:g}) "
                f"exceeds total_epochs={self.total_epochs:g}"
            )

    @property
    def k(self) -> float:
        """Batch-size multiple ``B / B0``."""
        return self.batch_size / self.base_batch_size

    @property
    def peak_lr(self) -> float:
        """Learning rate at the end of warmup: ``base_lr`` scaled by the rule."""
        return self.base_lr * self.scaling.factor(self.k)

    @property
    def warmup_length(self) -> float:
        """Warmup length in epochs after applying the warmup rule."""
        if self.warmup_rule is WarmupRule.LEGW:
            return self.warmup_epochs * self.k
        return self.warmup_epochs

    @property
    def total_steps(self) -> int:
        """Optimizer steps in the whole run (rounded up)."""
        return math.ceil(self.total_epochs * self.steps_per_epoch)

    def lr_at_epoch(self, epoch: float) -> float:
        """Learning rate at fractional ``epoch`` (clamped to ``[0, total_epochs]``)."""
        e = min(max(epoch, 0.0), self.total_epochs)
        peak, warm = self.peak_lr, self.warmup_length
        if e < warm:
            return self.warmup_start_lr + (peak - self.warmup_start_lr) * (e / warm)
        if self.decay is Decay.CONSTANT:
            return peak
        span = self.total_epochs - warm
        p = 1.0 if span <= 0 else (e - warm) / span
        if self.decay is Decay.POLYNOMIAL:
            return self.end_lr + (peak - self.end_lr) * (1.0 - p) ** self.power
        if self.decay is Decay.EXPONENTIAL:
            return max(self.end_lr, peak * self.rate ** (e - warm))
        return self.end_lr + (peak - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * p))

    def lr(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` (0-based), i.e. at epoch ``step / S``."""
        return self.lr_at_epoch(step / self.steps_per_epoch)


def lr_lambda(schedule: LRSchedule) -> Callable[[int], float]:
    """Multiplier of ``peak_lr`` at each step, in the form ``LambdaLR`` expects.

    Raises:
        ValueError: if the peak learning rate is zero (no multiplier reproduces it).
    """
    peak = schedule.peak_lr
    if peak <= 0:
        raise ValueError("peak_lr=0: LambdaLR multiplies the peak, so it must be positive")
    return lambda step: schedule.lr(step) / peak


def as_lambda_lr(optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> LambdaLR:
    """Drive ``optimizer`` with ``schedule`` through ``torch.optim.lr_scheduler.LambdaLR``.

    Every group's base learning rate is set to ``schedule.peak_lr``; after construction the
    groups hold ``schedule.lr(0)`` and each ``scheduler.step()`` advances one optimizer step.

    Returns:
        The scheduler.

    Raises:
        ValueError: if the peak learning rate is zero.
    """
    factor = lr_lambda(schedule)
    for group in optimizer.param_groups:
        group["lr"] = schedule.peak_lr
        group["initial_lr"] = schedule.peak_lr
    return LambdaLR(optimizer, factor)


@dataclass(frozen=True, kw_only=True)
class BatchSchedule:
    """Global batch size per epoch: ``initial * factor**n`` after ``n`` milestones, capped.

    Attributes:
        initial: global batch size at epoch 0 (the arm's batch size).
        milestones: epochs at whose start the batch is multiplied (increasing, >= 1).
        factor: growth at each milestone (>= 2).
        maximum: cap on the global batch size (None: none).

    Raises:
        ValueError: on a non-positive ``initial``, a ``factor`` below 2, milestones out of
            order, a ``maximum`` below ``initial``, or a factor or maximum without milestones.
    """

    initial: int
    milestones: tuple[int, ...] = ()
    factor: int = 2
    maximum: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(self.milestones))
        m = self.milestones
        if self.initial < 1 or self.factor < 2:
            raise ValueError(f"batch size {self.initial}, factor {self.factor}: need >= 1, >= 2")
        if list(m) != sorted(set(m)) or (m and m[0] < 1):
            raise ValueError(f"batch milestones {list(m)}: must be increasing epochs >= 1")
        if self.maximum is not None and self.maximum < self.initial:
            raise ValueError(f"max batch size {self.maximum}: below the batch size {self.initial}")
        if not m and (self.factor != 2 or self.maximum is not None):
            raise ValueError(
                f"batch factor {self.factor}, max batch size {self.maximum}: "
                "do nothing without batch milestones"
            )

    def size(self, epoch: int) -> int:
        """Global batch size during ``epoch``."""
        size = self.initial * self.factor ** bisect.bisect_right(self.milestones, epoch)
        return size if self.maximum is None else min(size, self.maximum)

    def lr_factor(self, epoch: int, scaling: LRScaling) -> float:
        """Learning-rate multiplier in ``epoch``: ``scaling.factor(size(epoch) / initial)``."""
        return scaling.factor(self.size(epoch) / self.initial)

    def check(self, *, epochs: int, workers: int) -> None:
        """Check the schedule against a run of ``epochs`` epochs on ``workers`` workers.

        Raises:
            ValueError: if a milestone is not before the last epoch, or a batch size of the
                run is not divisible by ``workers``.
        """
        if self.milestones and self.milestones[-1] >= epochs:
            raise ValueError(f"batch milestones {list(self.milestones)}: must be < epochs={epochs}")
        for epoch in (0, *self.milestones):
            if self.size(epoch) % workers:
                grown = f" (from epoch {epoch})" if epoch else ""
                raise ValueError(
                    f"batch size {self.size(epoch)}{grown} is not divisible by {workers} workers"
                )
