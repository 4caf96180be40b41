"""Checkpoints of one arm: every rank's RNG state gathered, rank 0 writes.

A checkpoint holds the model, the optimizer, each rank's RNG states (with the gradient
all-reduce's step counter) and the arm's record, so a resumed arm continues bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from precision.collectives import LowPrecisionState
from training.config import ArmSpec
from training.distributed import WorkerContext
from training.records import RECORD_SCHEMA, ArmRecord, RunPaths, save_arm_record, save_checkpoint


def _rng_state(comm: LowPrecisionState) -> dict[str, Any]:
    # ``step`` keys stochastic rounding of the gradient all-reduce: restored for an exact resume.
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "step": int(comm.step)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any], comm: LowPrecisionState) -> None:
    """Restore this rank's RNG states and the all-reduce's step counter from a checkpoint."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    comm.step = int(state["step"])


def save_arm_checkpoint(
    ctx: WorkerContext,
    paths: RunPaths,
    arm: ArmSpec,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    comm: LowPrecisionState,
    record: ArmRecord,
) -> None:
    """Gather every rank's RNG state; rank 0 writes the checkpoint, then the record."""
    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, _rng_state(comm))
    if ctx.primary:
        payload = {
            "schema": RECORD_SCHEMA,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "rng": states,
            "record": record.to_dict(),
        }
        save_checkpoint(paths.checkpoint(arm.name), payload)
        save_arm_record(paths, record)
    dist.barrier()
