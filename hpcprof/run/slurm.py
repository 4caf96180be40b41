"""Run a whole suite on a Slurm cluster through submitit and gather one run directory.

Each built-in app (and each app of a suite file) becomes one job, or one task of a job
array; every job runs the normal runner on its node and returns its measurements (which
name the node). The submitting process waits, then writes the run directory as
``hpcprof run`` would. submitit is an optional dependency, imported only here, lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hpcprof.apps.external import load_suite
from hpcprof.backends import select_backend
from hpcprof.errors import LaunchError
from hpcprof.results.records import Measurement, Metric, Precision, RunStatus, Sample
from hpcprof.results.store import new_run_id, write_run
from hpcprof.run.config import RunConfig
from hpcprof.run.host import collect_host
from hpcprof.run.runner import Progress, run_tasks
from hpcprof.run.tasks import builtin_tasks, suite_tasks


@dataclass(frozen=True, kw_only=True)
class SlurmConfig:
    """Where and how jobs are submitted.

    Args:
        partition: Slurm partition, or None for the cluster default.
        time_min: time limit of each job, minutes.
        cpus_per_task: CPUs per job.
        array: submit one job array instead of one job per app.
        extra: further ``#SBATCH`` settings as (key, value) pairs (``("account", "x")``).
    """

    partition: str | None = None
    time_min: int = 30
    cpus_per_task: int = 1
    array: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.time_min < 1 or self.cpus_per_task < 1:
            raise ValueError("time_min and cpus_per_task must be >= 1")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise LaunchError(
            "Slurm submission needs submitit: pip install 'prec-study[slurm]' (submitit>=1.5)"
        ) from None
    return submitit


def run_unit(config: RunConfig, app: str, from_suite: bool) -> list[Measurement]:
    """Job body, run on a compute node: measure one app of ``config`` there.

    Args:
        config: the study's configuration.
        app: the built-in app, or the suite app when ``from_suite``.
        from_suite: ``app`` names an app of ``config.suite``.
    """
    if from_suite:
        if config.suite is None:
            raise ValueError("from_suite needs config.suite")
        suite = load_suite(config.suite)
        tasks = [t for t in suite_tasks(suite, config) if t.app == app]
    else:
        tasks = builtin_tasks(replace(config, apps=(app,), suite=None))
    backend = select_backend(config.backend, collect_host())
    return run_tasks(tasks, backend, config)


def _failed(app: str, from_suite: bool, config: RunConfig, error: str) -> list[Measurement]:
    missing = Sample.missing(Metric.WALL_S, "slurm")
    precisions = (Precision.NATIVE,) if from_suite else config.precisions
    return [
        Measurement(app=app, precision=p, size=None, preset=None, repetition=0,
                    status=RunStatus.LAUNCH_ERROR, backend=config.backend,
                    stderr_tail=error[-2000:], samples=(missing,))
        for p in precisions
    ]  # fmt: skip


def _job_parameters(slurm: SlurmConfig, run_id: str) -> dict[str, Any]:
    """submitit executor parameters of the run's jobs."""
    params: dict[str, Any] = {
        "timeout_min": slurm.time_min,
        "cpus_per_task": slurm.cpus_per_task,
        "name": f"hpcprof-{run_id}",
    }
    if slurm.partition is not None:
        params["slurm_partition"] = slurm.partition
    if slurm.extra:
        params["slurm_additional_parameters"] = dict(slurm.extra)
    return params


def submit_study(config: RunConfig, slurm: SlurmConfig, progress: Progress | None = None) -> Path:
    """Submit every app of ``config`` to Slurm, wait for all jobs, store one run directory.

    A job that fails becomes LAUNCH_ERROR records for its app (with the job's error), and
    the other apps' results are kept.

    Returns:
        The run directory ``config.out_dir/<run-id>``.

    Raises:
        LaunchError: submitit is not installed, or sbatch refused the jobs.
        UnknownNameError, SuiteError: bad app names or suite file.
    """
    submitit = _submitit()
    # builtin_tasks validates the names before anything is submitted
    units = [(name, False) for name in dict.fromkeys(t.app for t in builtin_tasks(config))]
    if config.suite is not None:
        units += [(a.name, True) for a in load_suite(config.suite).apps]
    run_id = new_run_id()
    folder = Path(config.out_dir) / f".slurm-{run_id}"
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**_job_parameters(slurm, run_id))
    try:
        if slurm.array:
            jobs = executor.map_array(
                run_unit, [config] * len(units), [u[0] for u in units], [u[1] for u in units]
            )
        else:
            jobs = [executor.submit(run_unit, config, name, suite) for name, suite in units]
    except Exception as exc:  # submitit raises plain exceptions for sbatch failures
        raise LaunchError(f"sbatch failed: {' '.join(str(exc).split())[:300]}") from exc
    measurements: list[Measurement] = []
    for i, ((name, from_suite), job) in enumerate(zip(units, jobs, strict=True)):
        if progress is not None:
            progress(i, len(units), f"waiting for {name} (job {job.job_id})")
        try:
            measurements.extend(job.result())
        except Exception as exc:  # the job's own exception, re-raised by submitit
            measurements.extend(_failed(name, from_suite, config, f"job {job.job_id}: {exc}"))
    if progress is not None:
        progress(len(units), len(units), "done")
    saved = {
        **config.to_json(),
        "backend_used": config.backend,
        "slurm": {
            "jobs": {name: str(job.job_id) for (name, _), job in zip(units, jobs, strict=True)},
            "array": slurm.array,
            "partition": slurm.partition,
            "folder": str(folder),
        },
        "nodes": sorted({m.node for m in measurements if m.node}),
    }
    return write_run(Path(config.out_dir), run_id, measurements, saved, collect_host())
