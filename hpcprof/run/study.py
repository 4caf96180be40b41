"""One ``hpcprof run`` end to end: host, backend, tasks, runs, stored results."""

from __future__ import annotations

from pathlib import Path

from hpcprof.apps.external import load_suite
from hpcprof.backends import select_backend
from hpcprof.results.store import new_run_id, write_run
from hpcprof.run.config import RunConfig
from hpcprof.run.host import collect_host
from hpcprof.run.runner import Progress, run_tasks
from hpcprof.run.tasks import builtin_tasks, suite_tasks


def run_study(config: RunConfig, progress: Progress | None = None) -> Path:
    """Run everything ``config`` names and store it; returns the run directory.

    Raises:
        UnknownNameError: an app or backend name is unknown.
        SuiteError: the suite file is malformed.
        BackendError: the requested backend does not work here.
    """
    tasks = builtin_tasks(config)  # validates app names before anything runs
    if config.suite is not None:
        tasks += suite_tasks(load_suite(config.suite), config)
    host = collect_host()
    backend = select_backend(config.backend, host)
    measurements = run_tasks(tasks, backend, config, progress)
    saved = {**config.to_json(), "backend_used": backend.name, "passes": list(backend.passes())}
    return write_run(Path(config.out_dir), new_run_id(), measurements, saved, host)
