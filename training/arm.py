"""What one arm trains with: model, optimizer, casts, schedule and gradient reduction.

:func:`setup_arm` builds them identically on every rank (same seed, same initialization) and
restores a checkpoint when there is one, so :mod:`training.loop` only runs the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from precision.collectives import LowPrecisionState
from training.checkpoint import restore_rng, save_arm_checkpoint
from training.config import ArmSpec, RunConfig
from training.data import LoadedDataset, ShardSpec, num_batches
from training.distributed import WorkerContext
from training.models import build_model
from training.optim import build_optimizer, param_groups
from training.records import ArmRecord, ArmStatus, EpochRecord, RunPaths, StepRecord
from training.roles import RoleCasts
from training.schedules import BatchSchedule, LRScaling, LRSchedule, WarmupRule


def schedule_for(cfg: RunConfig, arm: ArmSpec, steps_per_epoch: int) -> LRSchedule:
    """Warmup then ``cfg.decay`` (cosine by default); linear LR scaling, or LEGW (You et al.
    2019) when asked. Under batch-size control this is the shape at the initial batch size
    (``steps_per_epoch`` of epoch 0); :meth:`ArmTraining.lr` scales it as the batch grows.

    Raises:
        ValueError: if the (LEGW-scaled) warmup exceeds the run.
    """
    return LRSchedule(
        base_lr=arm.lr,
        base_batch_size=cfg.base_batch_size,
        batch_size=arm.batch_size,
        steps_per_epoch=steps_per_epoch,
        total_epochs=cfg.epochs,
        scaling=LRScaling.SQRT if cfg.legw else LRScaling.LINEAR,
        warmup_epochs=cfg.warmup_epochs,
        warmup_rule=WarmupRule.LEGW if cfg.legw else WarmupRule.FIXED,
        decay=cfg.decay,
    )


@dataclass
class ArmTraining:
    """What one arm trains with on this rank, built by :func:`setup_arm` (the same on every
    rank: same seed, same initialization), and the records gathered so far.

    Attributes:
        cfg: the study's shared settings.
        arm: what this arm varies.
        ctx: this worker's place in the group.
        model: the model, on ``ctx.device``.
        optimizer: its optimizer (wrapped by ``casts``).
        casts: the low-precision casts of the other tensor roles.
        comm: settings of the gradient all-reduce; its step counter keys stochastic rounding
            and is checkpointed with the RNG states.
        shard: this rank's part of the training split.
        batches: global batch size per epoch (constant without batch-size control).
        epoch_steps: optimizer steps in each epoch of the run.
        schedule: the learning-rate schedule at the initial batch size.
        method: what produced the arm's numbers (reduction and casts).
        steps: step records so far (restored ones first).
        epochs: epoch records so far.
    """

    cfg: RunConfig
    arm: ArmSpec
    ctx: WorkerContext
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    casts: RoleCasts
    comm: LowPrecisionState
    shard: ShardSpec
    batches: BatchSchedule
    epoch_steps: tuple[int, ...]
    schedule: LRSchedule
    method: str
    steps: list[StepRecord]
    epochs: list[EpochRecord]

    def local_batch(self, epoch: int) -> int:
        """Per-worker batch size in ``epoch``."""
        return self.batches.size(epoch) // self.ctx.world_size

    def first_step(self, epoch: int) -> int:
        """Global index of ``epoch``'s first step (steps done before it, over all epochs)."""
        return sum(self.epoch_steps[:epoch])

    def lr(self, epoch: int, step: int) -> float:
        """Learning rate of global step ``step`` in ``epoch``.

        The schedule's warmup/decay shape at the fractional epoch ``epoch + i / S`` (step
        ``i`` of the epoch's ``S``), times ``scaling.factor(B(epoch) / B(0))``: a doubled
        batch doubles the rate under linear scaling, sqrt(2) under LEGW (Smith et al. 2018).
        """
        steps = self.epoch_steps[epoch]
        # (epoch * S + i) / S is step / S when every epoch has S steps: the same bits as
        # LRSchedule.lr(step) without batch-size control.
        at = (epoch * steps + step - self.first_step(epoch)) / steps
        return self.schedule.lr_at_epoch(at) * self.batches.lr_factor(epoch, self.schedule.scaling)

    def record(self, status: ArmStatus) -> ArmRecord:
        """The arm's record with ``status`` and the steps and epochs so far."""
        return ArmRecord(
            arm=self.arm.name,
            status=status,
            epochs_done=len(self.epochs),
            steps=tuple(self.steps),
            epochs=tuple(self.epochs),
            method=self.method,
        )

    def checkpoint(self, paths: RunPaths, status: ArmStatus) -> None:
        """Save weights, optimizer, RNG states and the record (call on all ranks)."""
        save_arm_checkpoint(
            self.ctx, paths, self.arm, self.model, self.optimizer, self.comm, self.record(status)
        )


def gradient_reduction(cfg: RunConfig, arm: ArmSpec) -> tuple[LowPrecisionState, str]:
    """The all-reduce of ``arm``'s gradients and the method string its records carry.

    The float32 baseline goes through the same call with ``fmt=None`` (one plain all-reduce
    of the flattened gradients), so both arms pay the same flattening and copying.
    """
    fmt = arm.float_format
    state = LowPrecisionState(
        fmt=fmt,
        rounding=cfg.rounding,
        aps=arm.aps and fmt is not None,
        headroom=cfg.headroom,
        reduction=cfg.reduction,
        seed=arm.seed,
        loss_scale=cfg.loss_scale if fmt is not None else 1.0,
    )
    if fmt is None:
        return state, "precision.collectives float32 all-reduce"
    method = (
        f"precision.collectives {fmt} {cfg.reduction.value} {'APS' if arm.aps else 'no-APS'} "
        f"{state.rounding.value}"
    )
    if cfg.loss_scale != 1.0:
        method += f" loss-scale {cfg.loss_scale:g}"
    return state, method


def _epoch_steps(
    arm: ArmSpec, batches: BatchSchedule, shard: ShardSpec, examples: int, epochs: int
) -> tuple[int, ...]:
    """Optimizer steps in each epoch; every batch of the run must fit a worker's shard."""
    out = []
    for epoch in range(epochs):
        size = batches.size(epoch)
        steps = num_batches(shard.num_samples(examples), size // shard.world_size, drop_last=True)
        if steps == 0:
            grown = f" (from epoch {epoch})" if size != arm.batch_size else ""
            raise ValueError(
                f"arm {arm.name}: batch size {size}{grown} exceeds the {examples} training examples"
            )
        out.append(steps)
    return tuple(out)


def setup_arm(
    cfg: RunConfig,
    arm: ArmSpec,
    data: LoadedDataset,
    ctx: WorkerContext,
    ckpt: dict[str, Any] | None,
) -> ArmTraining:
    """Build model, optimizer, casts, schedule and gradient reduction; restore ``ckpt``.

    Raises:
        ValueError: if the batch is larger than a worker's shard of the training split.
    """
    torch.manual_seed(arm.seed)
    channels, image_size = data.input_shape[0], data.input_shape[1]
    model = build_model(
        cfg.model,
        in_channels=channels,
        num_classes=data.num_classes,
        image_size=image_size,
        batchnorm=cfg.batchnorm,
        ghost_batch_size=cfg.ghost_batch_size,
    ).to(ctx.device)
    optimizer = build_optimizer(
        arm.optimizer,
        param_groups(model, cfg.weight_decay),
        model=model,
        lr=arm.lr,
        **cfg.optimizer_options(arm.optimizer),
    )
    casts = RoleCasts(arm.casts, seed=arm.seed, rank=ctx.rank)
    optimizer = casts.install(model, optimizer)
    shard = ShardSpec(rank=ctx.rank, world_size=ctx.world_size, seed=arm.seed, drop_last=True)
    batches = cfg.batch_schedule(arm)
    epoch_steps = _epoch_steps(arm, batches, shard, len(data.train), cfg.epochs)
    comm, method = gradient_reduction(cfg, arm)
    restored = None if ckpt is None else ArmRecord.from_dict(ckpt["record"])
    if ckpt is not None:  # bit-exact continuation: weights, optimizer and RNG states
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng(ckpt["rng"][ctx.rank], comm)
    return ArmTraining(
        cfg=cfg,
        arm=arm,
        ctx=ctx,
        model=model,
        optimizer=optimizer,
        casts=casts,
        comm=comm,
        shard=shard,
        batches=batches,
        epoch_steps=epoch_steps,
        schedule=schedule_for(cfg, arm, epoch_steps[0]),
        method="; ".join(m for m in (method, casts.method) if m),
        steps=[] if restored is None else list(restored.steps),
        epochs=[] if restored is None else list(restored.epochs),
    )
