"""Wall and CPU time only: the runner measures both for every backend, so this adds nothing.

Every FP count from this backend is missing (None), never 0.
"""

from __future__ import annotations

from hpcprof.backends.base import Availability, Backend, Job
from hpcprof.results.records import Sample


class TimerBackend(Backend):
    """Runs the command unchanged."""

    name = "timer"
    summary = "wall and CPU time only (works everywhere)"

    def available(self) -> Availability:
        return Availability(ok=True, detail="always available")

    def collect(self, job: Job, stdout: str, stderr: str) -> tuple[Sample, ...]:
        return ()
