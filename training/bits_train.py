"""Training a point of a bits-needed search: the run it is, and where it lives.

A search's run directory is named after a hash of the training settings it shares with
every point (as a sweep's is), so rerunning the same command finds the points already
trained. Each point trains as a one-arm study in ``<run-dir>/trained/<point-key>/``, a
normal run directory (``prec-study report`` reads it), through an executor: in this
process, or as one task of a Slurm job array.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from training.bits_points import Point, PointResult, PointStatus
from training.config import ArmSpec, RunConfig
from training.executor import Executor, Failure
from training.records import ArmStatus
from training.roles import Role, RoleCast


def search_dir(output_dir: Path, shared: RunConfig) -> Path:
    """``<output_dir>/bits-<hash of the shared settings and the arm's training settings>``."""
    arm = shared.arms[0]
    key = {**shared.shared(), "batch_size": arm.batch_size, "optimizer": arm.optimizer,
           "lr": arm.lr}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return Path(output_dir) / f"bits-{digest}"


def point_config(shared: RunConfig, point: Point) -> RunConfig:
    """The one-arm study that trains ``point``.

    ``shared.arms[0]`` supplies batch size, optimizer and learning rate; the point supplies
    the seed and the formats. grad-comm's rounding is the study's ``rounding``.
    """
    template = shared.arms[0]
    fmt, aps, rounding = None, False, shared.rounding
    casts = []
    for s in point.settings:
        if s.role is Role.GRAD_COMM:
            fmt, aps, rounding = s.fmt, s.aps, s.rounding
        else:
            casts.append(RoleCast(role=s.role, fmt=s.fmt, rounding=s.rounding))
    arm = dataclasses.replace(
        template, name=point.key, fmt=fmt, aps=aps, seed=point.seed, casts=tuple(casts)
    )
    return dataclasses.replace(shared, arms=(arm,), rounding=rounding)


def _result(records: object) -> PointResult:
    if isinstance(records, Failure):
        return PointResult(status=PointStatus.FAILED, accuracy=None, detail=records.error)
    assert isinstance(records, tuple)
    (rec,) = records
    if rec.status is ArmStatus.DIVERGED:
        return PointResult(status=PointStatus.DIVERGED, accuracy=None)
    last = rec.epochs[-1]
    return PointResult(status=PointStatus.FINISHED, accuracy=last.test_acc, loss=last.test_loss)


class TrainingEvaluator:
    """Trains points with the shared settings of a search.

    Args:
        shared: the study settings; its first arm gives batch size, optimizer and lr.
        root: the search's run directory.
        executor: where the points train.
    """

    def __init__(self, shared: RunConfig, root: Path, executor: Executor) -> None:
        self.shared, self.root, self.executor = shared, Path(root), executor

    def point_dir(self, point: Point) -> Path:
        return self.root / "trained" / point.key

    def __call__(self, point: Point) -> PointResult:
        return self.many([point])[0]

    def many(self, points: Sequence[Point]) -> list[PointResult]:
        """Train independent points (one job each under Slurm).

        Raises:
            WorkerError: a local point's worker failed (Slurm records it as failed instead).
        """
        jobs = [(point_config(self.shared, p), self.point_dir(p)) for p in points]
        for cfg, run_dir in jobs:
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(run_dir / "config.json")
        return [_result(r) for r in self.executor.map(jobs)]


def arm_template(batch_size: int, optimizer: str, lr: float, seed: int = 0) -> ArmSpec:
    """The float32 arm whose training settings every point copies."""
    return ArmSpec(name="float32", fmt=None, aps=False, batch_size=batch_size,
                   optimizer=optimizer, lr=lr, seed=seed)  # fmt: skip
