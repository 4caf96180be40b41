"""The training loop of one arm, and the study that runs every arm on the same workers.

:func:`train_arm` reads top to bottom: :func:`setup_arm` builds model, optimizer, schedule and
gradient reduction and restores a checkpoint if there is one; then each epoch runs
:func:`train_step` per batch (forward, backward, average gradients over the workers in
float32 or a low-precision format, agree on whether the loss is finite, step), evaluates on
the distributed test split and checkpoints. Arms run one after another in the same processes, so process start-up and the
quantization kernel's first-call compilation are paid once per worker, not once per arm.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from precision.collectives import all_reduce_gradients
from training.arm import ArmTraining, setup_arm
from training.config import ArmSpec, RunConfig
from training.data import (
    LoadedDataset,
    Split,
    iterate_batches,
    load_dataset,
)
from training.distributed import (
    WorkerContext,
    is_primary_process,
    launch,
    resolve_device,
    threads_per_worker,
)
from training.environment import NumericEnvironment, record_environment
from training.evaluate import all_sum, evaluate, sync_buffers
from training.losses import label_smoothing_cross_entropy
from training.preflight import preflight
from training.records import (
    ArmRecord,
    ArmStatus,
    EpochRecord,
    RunPaths,
    StepRecord,
    load_checkpoint,
)


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


def train_step(
    t: ArmTraining, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int
) -> StepRecord:
    """One optimizer step, on every rank together.

    Forward, backward, average the gradients over the workers (in float32 or a low-precision
    format), agree on the batch's loss, and step unless the loss is Inf or NaN on any rank.

    Returns:
        The step's record; a non-finite ``train_loss`` means the arm diverged (every rank
        sees the same value, and the optimizer did not step).
    """
    lr = t.lr(epoch, step)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    t0 = time.perf_counter()
    logits = t.model(x)
    loss = label_smoothing_cross_entropy(logits, y, t.cfg.label_smoothing)
    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    report = all_reduce_gradients(t.model, t.comm)
    # One small all-reduce gives the global batch's loss and accuracy and makes every rank
    # agree on divergence: a NaN or Inf on any rank poisons the sum.
    loss_sum, correct = all_sum(
        [float(loss.detach()) * len(y), float((logits.argmax(1) == y).sum())], t.ctx.device
    )
    if math.isfinite(loss_sum):
        t.optimizer.step()
    if t.ctx.device.type == "cuda":
        torch.cuda.synchronize(t.ctx.device)
    n = len(y) * t.ctx.world_size
    return StepRecord(
        epoch=epoch,
        step=step,
        lr=lr,
        train_loss=loss_sum / n,
        train_acc=correct / n,
        flushed=report.underflow,
        overflow=report.overflow,
        step_time_s=time.perf_counter() - t0,
        batch_size=n,
    )


def train_epoch(t: ArmTraining, data: LoadedDataset, epoch: int) -> list[StepRecord]:
    """Every step of ``epoch`` in this rank's shuffled order; stops after a diverged step."""
    t.model.train()
    t.casts.start_epoch(epoch)
    order = t.shard.indices(len(data.train), epoch)
    out: list[StepRecord] = []
    batches = iterate_batches(data.train, t.local_batch(epoch), indices=order, drop_last=True)
    for i, (x, y) in enumerate(batches):
        out.append(train_step(t, x, y, epoch, t.first_step(epoch) + i))
        if not math.isfinite(out[-1].train_loss):
            break
    return out


def evaluate_epoch(
    t: ArmTraining, data: LoadedDataset, epoch: int, steps: list[StepRecord], epoch_time: float
) -> EpochRecord:
    """Synchronize batch-norm buffers, evaluate on the distributed test split, summarize."""
    sync_buffers(t.model, t.ctx.world_size)
    test_loss, test_acc = evaluate(t.model, data.test, t.ctx)
    flushed = [s.flushed for s in steps]
    return EpochRecord(
        epoch=epoch,
        step=t.first_step(epoch + 1),
        train_loss=sum(s.train_loss for s in steps) / len(steps),
        test_loss=test_loss,
        test_acc=test_acc,
        flushed=None
        if None in flushed
        else sum(f for f in flushed if f is not None) / len(flushed),
        epoch_time_s=epoch_time,
        batch_size=t.batches.size(epoch),
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

    A finished or diverged arm found in ``paths`` is returned as is; a partial one continues
    from its checkpoint. Each epoch ends with an evaluation and a checkpoint (rank 0 writes).

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
    ckpt = load_checkpoint(paths.checkpoint(arm.name))
    done = None if ckpt is None else ArmRecord.from_dict(ckpt["record"])
    if done is not None and done.status is not ArmStatus.PARTIAL:
        emit(Progress(arm.name, done.epochs_done, cfg.epochs, "skip"))
        return done
    t = setup_arm(cfg, arm, data, ctx, ckpt)
    emit(Progress(arm.name, len(t.epochs), cfg.epochs, "start"))
    status, first_epoch = ArmStatus.FINISHED, len(t.epochs)
    for epoch in range(first_epoch, cfg.epochs):
        if stop_after_epochs is not None and epoch - first_epoch >= stop_after_epochs:
            status = ArmStatus.PARTIAL
            break
        epoch_start = time.perf_counter()
        steps = train_epoch(t, data, epoch)
        t.steps.extend(steps)
        if not math.isfinite(steps[-1].train_loss):
            status = ArmStatus.DIVERGED
            break
        t.epochs.append(evaluate_epoch(t, data, epoch, steps, time.perf_counter() - epoch_start))
        t.checkpoint(paths, ArmStatus.FINISHED if epoch + 1 == cfg.epochs else ArmStatus.PARTIAL)
        median = statistics.median_high(s.step_time_s for s in t.steps)
        emit(Progress(arm.name, epoch + 1, cfg.epochs, "epoch", t.epochs[-1], median))
    if status is not ArmStatus.FINISHED:  # a finished arm was saved with its last epoch
        t.checkpoint(paths, status)
    emit(Progress(arm.name, len(t.epochs), cfg.epochs, status.value))
    return t.record(status)


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
