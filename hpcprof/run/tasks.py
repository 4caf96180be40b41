"""What to run: one :class:`Task` per app, precision and size (or external-suite preset).

A task's command is built lazily, so that C builds happen inside the run, where a failing
build becomes a recorded launch error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from hpcprof.apps import APPS
from hpcprof.apps.base import AppInfo, AppKind
from hpcprof.apps.external import ExternalApp, Suite
from hpcprof.results.records import Metric, Precision, Sample
from hpcprof.run.build import build
from hpcprof.run.config import RunConfig, SizeScale


@dataclass(frozen=True, kw_only=True)
class Task:
    """One app at one precision/size or preset, ready to run."""

    app: str
    precision: Precision
    size: int | None
    preset: str | None
    command: Callable[[], list[str]]  # deferred so that C builds happen inside the run
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout_s: float = 600.0
    region: str | None = None
    python_kernel: bool = False
    analytic: tuple[Sample, ...] = ()
    tolerance: float | None = None
    fom_regex: str | None = None
    fom_unit: str = ""
    threads: int = 1  # CPUs the app keeps busy (MPI ranks x OpenMP threads)


def _size_for(info: AppInfo, config: RunConfig) -> int:
    override = dict(config.sizes).get(info.name)
    if override is not None:
        return override
    return info.small_size if config.scale is SizeScale.SMALL else info.default_size


def _c_command(source: str, args: Sequence[str], precision: Precision) -> list[str]:
    return [str(build(source, precision)), *args]


def builtin_tasks(config: RunConfig) -> list[Task]:
    """Tasks for the built-in apps of ``config`` (all of them when none are named)."""
    names = config.apps or (() if config.suite else tuple(n for n in APPS if APPS[n].default_run))
    tasks = []
    for name in names:
        info = APPS[name]
        size = _size_for(info, config)
        for prec in config.precisions:
            itemsize = prec.itemsize or 8
            analytic = (
                Sample(metric=Metric.ANALYTIC_FLOP, value=info.flops(size), backend="analytic"),
                Sample(
                    metric=Metric.ANALYTIC_BYTES,
                    value=info.bytes_moved(size, itemsize),
                    backend="analytic",
                ),
            )
            if info.kind is AppKind.C:
                c_args = info.c_args(size) if info.c_args is not None else ()
                command = partial(_c_command, info.c_source or "", c_args, prec)
            else:
                command = partial(info.python_command, size, prec)

            tasks.append(
                Task(
                    app=name,
                    precision=prec,
                    size=size,
                    preset=None,
                    command=command,
                    timeout_s=config.timeout_s,
                    region=info.region,
                    python_kernel=info.kind is not AppKind.C,
                    analytic=analytic,
                    tolerance=info.tolerance_for(prec),
                )
            )
    return tasks


def suite_tasks(suite: Suite, config: RunConfig) -> list[Task]:
    """Tasks for every app and preset of an external suite."""
    tasks = []
    for app in suite.apps:
        for preset in app.preset_names():

            def command(a: ExternalApp = app, p: str | None = preset) -> list[str]:
                return suite.command(a, p)

            tasks.append(
                Task(
                    app=app.name,
                    precision=Precision.NATIVE,
                    size=None,
                    preset=preset,
                    command=command,
                    env=suite.environment(app),
                    cwd=app.workdir,
                    timeout_s=app.timeout_s or config.timeout_s,
                    fom_regex=app.fom_regex,
                    fom_unit=app.fom_unit,
                    threads=app.mpi_ranks * (app.omp_threads or 1),
                )
            )
    return tasks
