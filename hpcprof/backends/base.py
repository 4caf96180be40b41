"""Counter backend interface and registry.

A backend is small: :meth:`Backend.available` says whether it works on this machine (and
why not), :meth:`Backend.wrap` turns an app's command into the measured command, and
:meth:`Backend.collect` reads the tool's output into :class:`~hpcprof.results.records.Sample`
records. The parsing itself lives in pure module-level functions tested on captured output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcprof.results.records import HostInfo, Sample


@dataclass(frozen=True, kw_only=True)
class Availability:
    """Whether a backend works here; ``detail`` is the reason when not, a version when it does."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Job:
    """What a backend needs to wrap one process run and read its output.

    Args:
        scratch: empty directory owned by this run (tool output files go here).
        pass_name: which pass of :meth:`Backend.passes` this run is.
        region: function holding the measured work (C apps), or None for the whole process.
        python_kernel: the command runs a built-in Python kernel (marker regions possible).
        cpus: CPUs the run is pinned to, or None.
        threads: CPUs the app keeps busy (MPI ranks x OpenMP threads); a backend that
            pins the app itself (likwid-perfctr ``-C``) pins it to this many.
    """

    scratch: Path
    pass_name: str = ""
    region: str | None = None
    python_kernel: bool = False
    cpus: tuple[int, ...] | None = None
    threads: int = 1


class Backend(ABC):
    """A way to measure a process. Subclasses set ``name`` and ``summary``."""

    name: str = ""
    summary: str = ""

    def __init__(self, host: HostInfo) -> None:
        self.host = host

    @abstractmethod
    def available(self) -> Availability:
        """Probe the machine (runs tools; never at import or construction)."""

    def passes(self) -> tuple[str, ...]:
        """Separate runs needed per measurement (e.g. one per LIKWID group)."""
        return ("",)

    def wrap(self, cmd: Sequence[str], job: Job) -> list[str]:
        """The command to run instead of ``cmd``."""
        return list(cmd)

    def environment(self, job: Job) -> dict[str, str]:
        """Variables to add to the child's environment."""
        return {}

    @abstractmethod
    def collect(self, job: Job, stdout: str, stderr: str) -> tuple[Sample, ...]:
        """Samples of one finished run (reads files under ``job.scratch``).

        Raises:
            BackendError: the tool's output is missing or unreadable.
        """


@dataclass(frozen=True, kw_only=True)
class BackendInfo:
    """Registry entry: name, one-line summary, factory, place in automatic selection."""

    name: str
    summary: str
    factory: Callable[[HostInfo], Backend]
    auto_rank: int | None  # lower is preferred; None: never chosen automatically


def tool_output(cmd: Sequence[str], timeout: float = 30.0) -> tuple[int, str, str] | None:
    """Run a probe command; (returncode, stdout, stderr), or None when it cannot start."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.returncode, proc.stdout, proc.stderr
