"""Where independent training runs execute: in this process, or as a Slurm job array.

``sweep`` cells and ``bits-needed`` points are independent one-arm studies. An executor
trains a list of them and returns, in order, each one's records or a :class:`Failure`.
Every run writes into its own run directory as it trains (checkpoints and records, both
atomic), so results gather there as jobs finish and a resubmitted job resumes from its
last epoch. A run with several workers spawns them inside its job on that node.

Slurm goes through submitit (optional extra ``slurm``), imported lazily: a failed or
preempted task is resubmitted once, then reported as failed.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from training.config import RunConfig
from training.distributed import launch
from training.loop import StudyPayload, study_worker
from training.preflight import preflight
from training.records import ArmRecord

Job = tuple[RunConfig, Path]


class ExecutorKind(str, Enum):
    """Where runs execute."""

    LOCAL = "local"
    SLURM = "slurm"


class ExecutorError(RuntimeError):
    """The executor cannot start (submitit missing, sbatch refused the jobs)."""


@dataclass(frozen=True)
class Failure:
    """A run that failed on the cluster, twice."""

    error: str


def train_one(
    cfg: RunConfig, run_dir: Path, on_event: Callable[[Any], None] | None = None
) -> tuple[ArmRecord, ...]:
    """Train every arm of ``cfg`` into ``run_dir`` (which the caller owns; no config written).

    Finished arms are skipped and partial ones resume, so a rerun continues.

    Raises:
        WorkerError: a worker failed.
    """
    preflight(cfg)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    payload = StudyPayload(config=cfg, run_dir=str(run_dir))
    return launch(study_worker, payload, workers=cfg.workers, device=cfg.device,
                  backend=cfg.backend, timeout_s=cfg.timeout_s, on_event=on_event)  # fmt: skip


class Executor(Protocol):
    """Trains independent runs."""

    def map(self, jobs: Sequence[Job]) -> list[tuple[ArmRecord, ...] | Failure]:
        """Train ``jobs``; one outcome per job, in order."""
        ...


class LocalExecutor:
    """One run after another in this process (each spawns its own workers).

    Args:
        on_event: progress events of the runs' rank 0.
    """

    def __init__(self, on_event: Callable[[Any], None] | None = None) -> None:
        self.on_event = on_event

    def map(self, jobs: Sequence[Job]) -> list[tuple[ArmRecord, ...] | Failure]:
        """Train each job here; a failing worker raises (the run resumes on a rerun)."""
        return [train_one(cfg, run_dir, self.on_event) for cfg, run_dir in jobs]


@dataclass(frozen=True, kw_only=True)
class SlurmSettings:
    """How runs are submitted.

    Attributes:
        folder: where submitit keeps job scripts, logs and pickled results.
        partition: Slurm partition (None: the cluster's default).
        time_min: time limit of each task, minutes.
        gpus_per_task: GPUs per task (0: none requested).
        cpus_per_task: CPUs per task (None: one per worker of the run).
        extra: further ``#SBATCH`` settings as (key, value) pairs.

    Raises:
        ValueError: a non-positive limit.
    """

    folder: Path
    partition: str | None = None
    time_min: int = 60
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.time_min < 1 or self.gpus_per_task < 0:
            raise ValueError(
                f"slurm time {self.time_min} min, {self.gpus_per_task} GPUs per task: "
                "need time >= 1 and GPUs >= 0"
            )
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise ValueError(f"cpus_per_task={self.cpus_per_task}: must be >= 1")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ExecutorError(
            "--executor slurm needs submitit: pip install 'prec-study[slurm]' (submitit>=1.5)"
        ) from None
    return submitit


_POLL_S = 1.0
_RESULT_GRACE_S = 3.0


def _queued(job_ids: set[str]) -> set[str]:
    """Which of ``job_ids`` (``123_4`` for array tasks) squeue still lists."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    if out.returncode != 0:  # an unknown job id: all of them are gone
        return set()
    return set(out.stdout.split()) & job_ids


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-3:])[-300:]


class SlurmExecutor:
    """Runs as one Slurm job array; failed or preempted tasks are resubmitted once.

    Args:
        settings: partition, limits and the submitit folder.
        on_done: called with (finished, total) as tasks finish.
    """

    def __init__(
        self, settings: SlurmSettings, on_done: Callable[[int, int], None] | None = None
    ) -> None:
        self.settings = settings
        self.on_done = on_done
        self.job_ids: list[str] = []

    def _executor(self, jobs: Sequence[Job]) -> Any:
        submitit = _submitit()
        s = self.settings
        ex = submitit.AutoExecutor(folder=s.folder, cluster="slurm")
        params: dict[str, Any] = {
            "timeout_min": s.time_min,
            "cpus_per_task": s.cpus_per_task or max(cfg.workers for cfg, _ in jobs),
            "name": "prec-study",
        }
        if s.partition is not None:
            params["slurm_partition"] = s.partition
        if s.gpus_per_task:
            params["slurm_gpus_per_task"] = s.gpus_per_task
        if s.extra:
            params["slurm_additional_parameters"] = dict(s.extra)
        ex.update_parameters(**params)
        return ex

    def _submit(self, ex: Any, jobs: Sequence[Job]) -> list[Any]:
        try:
            handles = ex.map_array(train_one, [j[0] for j in jobs], [j[1] for j in jobs])
        except Exception as exc:  # submitit raises plain exceptions for sbatch failures
            raise ExecutorError(f"sbatch failed: {' '.join(str(exc).split())[:300]}") from exc
        self.job_ids += [str(h.job_id) for h in handles]
        return list(handles)

    def _wait(self, handles: Sequence[Any]) -> list[str | None]:
        """Wait until every task wrote its result or left the queue without one.

        Polls ``squeue`` and the result files rather than submitit's state, which needs
        Slurm accounting (``sacct``) to see a task that died. Returns, per task, None when
        a result is there to read, else the tail of its error log.
        """
        left = dict(enumerate(handles))
        errors: list[str | None] = [None] * len(handles)
        gone_since: dict[int, float] = {}
        while left:
            queued = _queued({str(h.job_id) for h in left.values()})
            for k, h in list(left.items()):
                if h.paths.result_pickle.exists():
                    del left[k]
                elif str(h.job_id) not in queued:
                    # out of the queue: allow the shared filesystem a moment to show the file
                    first = gone_since.setdefault(k, time.monotonic())
                    if time.monotonic() - first > _RESULT_GRACE_S:
                        errors[k] = "task ended without a result: " + _tail(h.paths.stderr)
                        del left[k]
            if left:
                time.sleep(_POLL_S)
        return errors

    def map(self, jobs: Sequence[Job]) -> list[tuple[ArmRecord, ...] | Failure]:
        """Submit every job as one array, wait, resubmit the failures once.

        Raises:
            ExecutorError: submitit is missing or sbatch refused the array.
        """
        if not jobs:
            return []
        ex = self._executor(jobs)
        out: list[tuple[ArmRecord, ...] | Failure | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        done = 0
        for attempt in (1, 2):
            handles = self._submit(ex, [jobs[i] for i in pending])
            failed = []
            for i, handle, error in zip(pending, handles, self._wait(handles), strict=True):
                if error is None:
                    try:
                        out[i] = handle.result()
                    except Exception as exc:  # the task's own exception, re-raised
                        error = " ".join(str(exc).split())[-300:]
                if error is not None:
                    out[i] = Failure(f"job {handle.job_id} (attempt {attempt}): {error}")
                    failed.append(i)
                    continue
                done += 1
                if self.on_done is not None:
                    self.on_done(done, len(jobs))
            pending = failed
            if not pending:
                break
        return [o if o is not None else Failure("not run") for o in out]
