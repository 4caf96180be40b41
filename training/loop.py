"""The training loop of one arm, and the study that runs every arm on the same workers.

:func:`train_arm` reads top to bottom: build model, optimizer, schedule and gradient reducer;
restore a checkpoint if there is one; then for each epoch, for each batch: forward, backward,
average gradients over the workers (in float32 or a low-precision format), agree on whether
the loss is finite, step; at the end of each epoch evaluate on the distributed test split and
checkpoint. Arms run one after another in the same processes, so process start-up and the
quantization kernel's first-call compilation are paid once per worker, not once per arm.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.checkpoint import restore_rng, save_arm_checkpoint
from training.config import ArmSpec, RunConfig
from training.data import (
    LoadedDataset,
    ShardSpec,
    Split,
    iterate_batches,
    load_dataset,
    num_batches,
)
from training.distributed import (
    WorkerContext,
    is_primary_process,
    kill_hook,
    launch,
    resolve_device,
    threads_per_worker,
)
from training.environment import NumericEnvironment, record_environment
from training.evaluate import EVAL_BATCH, all_sum, evaluate, sync_buffers  # noqa: F401
from training.losses import label_smoothing_cross_entropy
from training.models import build_model
from training.optim import build_optimizer, param_groups
from training.preflight import preflight
from training.records import (
    ArmRecord,
    ArmStatus,
    EpochRecord,
    RunPaths,
    StepRecord,
    load_checkpoint,
)
from training.reducer import GradientReducer
from training.roles import RoleCasts
from training.schedules import Decay, LRScaling, LRSchedule, WarmupRule


@dataclass(frozen=True)
class Progress:
    """A progress event from rank 0 (picklable; relayed to the caller's ``on_event``).

    Attributes:
        arm: arm name.
        epoch: epochs done (0 when the arm starts).
        epochs: epochs planned.
        status: ``start``, ``epoch``, ``skip`` (already done) or an :class:`ArmStatus` value.
        record: the epoch just finished, when there is one.
        step_time_s: median step time so far.
    """

    arm: str
    epoch: int
    epochs: int
    status: str
    record: EpochRecord | None = None
    step_time_s: float | None = None


@dataclass(frozen=True)
class StudyPayload:
    """What every worker needs to run the study."""

    config: RunConfig
    run_dir: str
    stop_after_epochs: int | None = None


def schedule_for(cfg: RunConfig, arm: ArmSpec, steps_per_epoch: int) -> LRSchedule:
    """Warmup then ``cfg.decay`` (cosine by default); linear LR scaling, or LEGW (You et al.
    2019) when asked.

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
        decay=Decay(cfg.decay),
    )


def _record(
    arm: ArmSpec, status: ArmStatus, steps: list[StepRecord], epochs: list[EpochRecord], method: str
) -> ArmRecord:
    return ArmRecord(
        arm=arm.name,
        status=status,
        epochs_done=len(epochs),
        steps=tuple(steps),
        epochs=tuple(epochs),
        method=method,
    )


def train_arm(
    cfg: RunConfig,
    arm: ArmSpec,
    data: LoadedDataset,
    ctx: WorkerContext,
    paths: RunPaths,
    *,
    stop_after_epochs: int | None = None,
    emit: Callable[[Any], None] = lambda _e: None,
) -> ArmRecord:
    """Train one arm on every rank (call it on all ranks together).

    Args:
        cfg: the study's shared settings.
        arm: what this arm varies.
        data: the dataset, already on ``ctx.device``.
        ctx: this worker's place in the group.
        paths: run directory (rank 0 writes records and checkpoints there).
        stop_after_epochs: train at most this many epochs in this call, then stop with a
            resumable checkpoint (status ``partial``).
        emit: progress callback (rank 0 only).

    Returns:
        The arm's record (also written to ``records/<arm>.json`` by rank 0).

    Raises:
        ValueError: if the batch is larger than a worker's shard of the training split.
        RecordError: if an existing checkpoint cannot be read.
    """
    # -- resume: a finished or diverged arm is returned as is, a partial one continues
    ckpt = load_checkpoint(paths.checkpoint(arm.name))
    restored = None if ckpt is None else ArmRecord.from_dict(ckpt["record"])
    if restored is not None and restored.status is not ArmStatus.PARTIAL:
        emit(Progress(arm.name, restored.epochs_done, cfg.epochs, "skip"))
        return restored

    # -- setup: identical on every rank (same seed, same initialization)
    torch.manual_seed(arm.seed)
    sample_shape = data.input_shape
    model = build_model(
        cfg.model,
        in_channels=sample_shape[0],
        num_classes=data.num_classes,
        image_size=sample_shape[1],
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
    local_batch = arm.batch_size // ctx.world_size
    steps_per_epoch = num_batches(shard.num_samples(len(data.train)), local_batch, drop_last=True)
    if steps_per_epoch == 0:
        raise ValueError(
            f"arm {arm.name}: batch size {arm.batch_size} exceeds the {len(data.train)} "
            "training examples"
        )
    schedule = schedule_for(cfg, arm, steps_per_epoch)
    reducer = GradientReducer(
        arm.float_format,
        rounding=cfg.rounding,
        aps=arm.aps,
        reduction=cfg.reduction,
        headroom=cfg.headroom,
        seed=arm.seed,
        loss_scale=cfg.loss_scale,
    )
    method = "; ".join(m for m in (reducer.method, casts.method) if m)
    steps: list[StepRecord] = [] if restored is None else list(restored.steps)
    epochs: list[EpochRecord] = [] if restored is None else list(restored.epochs)
    if ckpt is not None:  # bit-exact continuation: weights, optimizer and RNG states
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng(ckpt["rng"][ctx.rank], reducer)

    emit(Progress(arm.name, len(epochs), cfg.epochs, "start"))

    status = ArmStatus.FINISHED
    first_epoch = len(epochs)
    for epoch in range(first_epoch, cfg.epochs):
        if stop_after_epochs is not None and epoch - first_epoch >= stop_after_epochs:
            status = ArmStatus.PARTIAL
            break
        model.train()
        casts.start_epoch(epoch)
        order = shard.indices(len(data.train), epoch)
        epoch_start = time.perf_counter()
        epoch_steps: list[StepRecord] = []
        for i, (x, y) in enumerate(
            iterate_batches(data.train, local_batch, indices=order, drop_last=True)
        ):
            step = epoch * steps_per_epoch + i
            kill_hook(ctx.rank, step)
            lr = schedule.lr(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            logits = model(x)
            loss = label_smoothing_cross_entropy(logits, y, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats = reducer.reduce(model)
            # One small all-reduce gives the global batch's loss and accuracy and makes
            # every rank agree on divergence: a NaN or Inf on any rank poisons the sum.
            loss_sum, correct = all_sum(
                [float(loss.detach()) * len(y), float((logits.argmax(1) == y).sum())], ctx.device
            )
            n = len(y) * ctx.world_size
            if not math.isfinite(loss_sum):
                status = ArmStatus.DIVERGED
            else:
                optimizer.step()
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            epoch_steps.append(
                StepRecord(
                    epoch=epoch,
                    step=step,
                    lr=lr,
                    train_loss=loss_sum / n,
                    train_acc=correct / n,
                    flushed=stats.flushed,
                    overflow=stats.overflow,
                    step_time_s=time.perf_counter() - t0,
                )
            )
            if status is ArmStatus.DIVERGED:
                break
        steps.extend(epoch_steps)
        if status is ArmStatus.DIVERGED:
            break

        # -- end of epoch: evaluate, record, checkpoint (rank 0 writes, all ranks agree)
        epoch_time = time.perf_counter() - epoch_start
        sync_buffers(model, ctx.world_size)
        test_loss, test_acc = evaluate(model, data.test, ctx)
        flushed = [s.flushed for s in epoch_steps]
        epochs.append(
            EpochRecord(
                epoch=epoch,
                step=(epoch + 1) * steps_per_epoch,
                train_loss=sum(s.train_loss for s in epoch_steps) / len(epoch_steps),
                test_loss=test_loss,
                test_acc=test_acc,
                flushed=None
                if None in flushed
                else sum(f for f in flushed if f is not None) / len(flushed),
                epoch_time_s=epoch_time,
            )
        )
        done = epoch + 1 == cfg.epochs
        save_arm_checkpoint(
            ctx,
            paths,
            arm,
            model,
            optimizer,
            reducer,
            _record(
                arm,
                ArmStatus.FINISHED if done else ArmStatus.PARTIAL,
                steps,
                epochs,
                method,
            ),
        )
        times = sorted(s.step_time_s for s in steps)
        emit(Progress(arm.name, epoch + 1, cfg.epochs, "epoch", epochs[-1], times[len(times) // 2]))

    record = _record(arm, status, steps, epochs, method)
    if status is not ArmStatus.FINISHED:  # a finished arm was saved with its last epoch
        save_arm_checkpoint(ctx, paths, arm, model, optimizer, reducer, record)
    emit(Progress(arm.name, len(epochs), cfg.epochs, status.value))
    return record


def _to_device(data: LoadedDataset, device: torch.device) -> LoadedDataset:
    if device.type == "cpu":
        return data
    return LoadedDataset(
        name=data.name,
        train=Split(inputs=data.train.inputs.to(device), targets=data.train.targets.to(device)),
        test=Split(inputs=data.test.inputs.to(device), targets=data.test.targets.to(device)),
        num_classes=data.num_classes,
        source=data.source,
    )


def study_worker(
    ctx: WorkerContext, payload: StudyPayload, emit: Callable[[Any], None]
) -> tuple[ArmRecord, ...]:
    """Worker entry point: load the data once, then train every arm in order.

    Returns:
        One record per arm (the same on every rank).
    """
    cfg = payload.config
    # Under torchrun every process named its own run directory (time stamps may differ by a
    # second): all ranks use rank 0's, where the config was saved.
    run_dir = [payload.run_dir]
    dist.broadcast_object_list(run_dir, src=0)
    data = _to_device(load_dataset(cfg.dataset, cfg.data_dir), ctx.device)
    paths = RunPaths(Path(run_dir[0]))
    out = []
    for arm in cfg.arms:
        out.append(
            train_arm(
                cfg,
                arm,
                data,
                ctx,
                paths,
                stop_after_epochs=payload.stop_after_epochs,
                emit=emit if ctx.primary else (lambda _e: None),
            )
        )
    return tuple(out)


def run_study(
    cfg: RunConfig,
    run_dir: Path,
    *,
    stop_after_epochs: int | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> tuple[ArmRecord, ...]:
    """Train every arm of ``cfg`` with ``cfg.workers`` processes, writing into ``run_dir``.

    Arms already finished in ``run_dir`` are skipped and partial ones resume from their
    checkpoints, so calling this again on the same directory continues an interrupted run.

    Args:
        cfg: the study; saved to ``run_dir/config.json``.
        run_dir: output directory (created).
        stop_after_epochs: train each arm at most this many epochs in this call.
        on_event: receives :class:`Progress` events from rank 0.

    Returns:
        One record per arm.

    Raises:
        WorkerError: if a worker raised or died.
        UnknownNameError, DatasetError: see :func:`preflight`.
        ValueError: on an impossible device/backend combination.
    """
    preflight(cfg)
    paths = RunPaths(Path(run_dir))
    if is_primary_process():
        paths.root.mkdir(parents=True, exist_ok=True)
        cfg.save(paths.config)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", cfg.workers))
        env = NumericEnvironment.capture(threads_per_worker(local), resolve_device(cfg.device))
        record_environment(paths.environment, env)
    payload = StudyPayload(config=cfg, run_dir=str(paths.root), stop_after_epochs=stop_after_epochs)
    return launch(
        study_worker,
        payload,
        workers=cfg.workers,
        device=cfg.device,
        backend=cfg.backend,
        timeout_s=cfg.timeout_s,
        on_event=on_event,
    )
