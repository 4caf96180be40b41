"""Typed, immutable, schema-versioned results of a study and the files that hold them.

A run directory looks like::

    <run-dir>/
      config.json              RunConfig (read back by --resume)
      environment.json         software, CPU ISA, BLAS, threads the bits depend on
      records/<arm>.json       ArmRecord: status, every step and epoch record (atomic)
      checkpoints/<arm>.pt     weights, optimizer, RNG states, records (atomic, per epoch)
      metrics.csv              tidy table of all step and epoch records (report)
      summary.csv, summary.md  one row per arm (report)
      accuracy.png             test accuracy per epoch (report)

Records are frozen dataclasses; they become pandas DataFrames only in :mod:`training.report`.
Missing values are None, never 0.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from precision.common.files import atomic_write, atomic_write_text

RECORD_SCHEMA = 1


class RecordError(ValueError):
    """A record file is missing, unreadable or of another schema."""


class ArmStatus(str, Enum):
    """Where an arm stands."""

    PARTIAL = "partial"  # stopped (interrupted or --stop-after-epochs) with a checkpoint
    FINISHED = "finished"  # all epochs trained
    DIVERGED = "diverged"  # a non-finite loss ended the arm


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One optimizer step (averaged over all workers).

    Attributes:
        epoch: 0-based epoch.
        step: 0-based global step of the arm.
        lr: learning rate used.
        train_loss: mean training loss of the global batch (may be NaN on divergence).
        train_acc: accuracy of the global batch.
        flushed: fraction of gradient elements the low-precision format flushed to zero
            (None for the float32 baseline or when the reduction does not measure it).
        overflow: fraction that overflowed (None when not measured).
        step_time_s: wall time of forward, backward, reduction and update on rank 0.
        batch_size: global batch size of the epoch (it grows under batch-size control; None
            in records written before it was recorded: the arm's batch size).
    """

    epoch: int
    step: int
    lr: float
    train_loss: float
    train_acc: float
    flushed: float | None
    overflow: float | None
    step_time_s: float
    batch_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """Evaluation at the end of one epoch.

    Attributes:
        epoch: 0-based epoch just finished.
        step: global steps done so far.
        train_loss: mean training loss over the epoch's steps.
        test_loss: mean test loss.
        test_acc: test accuracy.
        flushed: mean flushed fraction over the epoch's steps (None if not measured).
        epoch_time_s: wall time of the epoch's training steps.
        batch_size: global batch size of the epoch (None in older records, as in
            :class:`StepRecord`).
    """

    epoch: int
    step: int
    train_loss: float
    test_loss: float
    test_acc: float
    flushed: float | None
    epoch_time_s: float
    batch_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class ArmRecord:
    """Everything recorded for one arm.

    Attributes:
        arm: the arm's name (its settings are in ``config.json``).
        status: partial, finished or diverged.
        epochs_done: epochs completed.
        steps: per-step records.
        epochs: per-epoch records.
        method: how gradients were communicated (e.g. ``float32 all-reduce``,
            ``e3m0 carrier APS nearest``).
        schema: record layout version.
    """

    arm: str
    status: ArmStatus
    epochs_done: int
    steps: tuple[StepRecord, ...]
    epochs: tuple[EpochRecord, ...]
    method: str
    schema: int = RECORD_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        """Primitive containers only (JSON and ``torch.load(weights_only=True)`` safe)."""
        d = dataclasses.asdict(self)
        d["status"] = self.status.value
        d["steps"] = [dataclasses.asdict(s) for s in self.steps]
        d["epochs"] = [dataclasses.asdict(e) for e in self.epochs]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArmRecord:
        """Inverse of :meth:`to_dict`.

        Raises:
            RecordError: on another schema or missing fields.
        """
        if d.get("schema") != RECORD_SCHEMA:
            raise RecordError(
                f"record schema {d.get('schema')}: this version reads {RECORD_SCHEMA}"
            )
        try:
            return cls(
                arm=d["arm"],
                status=ArmStatus(d["status"]),
                epochs_done=int(d["epochs_done"]),
                steps=tuple(StepRecord(**s) for s in d["steps"]),
                epochs=tuple(EpochRecord(**e) for e in d["epochs"]),
                method=d["method"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"malformed arm record: {exc}") from None


# ---- run directory ---------------------------------------------------------------------


@dataclass(frozen=True)
class RunPaths:
    """File layout of one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    def record(self, arm: str) -> Path:
        return self.root / "records" / f"{arm}.json"

    def checkpoint(self, arm: str) -> Path:
        return self.root / "checkpoints" / f"{arm}.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def plot(self) -> Path:
        return self.root / "accuracy.png"


def save_arm_record(paths: RunPaths, record: ArmRecord) -> None:
    """Write ``records/<arm>.json`` atomically."""
    text = json.dumps(record.to_dict(), indent=1, allow_nan=True)
    atomic_write_text(paths.record(record.arm), text + "\n")


def load_arm_record(paths: RunPaths, arm: str) -> ArmRecord | None:
    """Read ``records/<arm>.json``; None when the arm has not recorded anything yet.

    Raises:
        RecordError: if the file exists but cannot be read.
    """
    path = paths.record(arm)
    if not path.exists():
        return None
    try:
        return ArmRecord.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc})") from None


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` a checkpoint atomically (tensors and primitive containers only)."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """Load a checkpoint with ``weights_only=True``; None when there is none.

    Raises:
        RecordError: if the file cannot be unpickled safely.
    """
    if not Path(path).exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RecordError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("schema") != RECORD_SCHEMA:
        raise RecordError(f"{path}: not a checkpoint of schema {RECORD_SCHEMA}")
    return payload
