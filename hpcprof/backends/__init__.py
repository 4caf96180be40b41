"""Counter backends and their registry; ``auto`` picks the best one that works here."""

from __future__ import annotations

from hpcprof.backends.base import Availability, Backend, BackendInfo, Job
from hpcprof.backends.callgrind import CallgrindBackend
from hpcprof.backends.likwid import LikwidBackend
from hpcprof.backends.ncu import NcuBackend
from hpcprof.backends.perf import PerfBackend
from hpcprof.backends.timer import TimerBackend
from hpcprof.errors import BackendError, UnknownNameError
from hpcprof.results.records import HostInfo
from precision.common.registry import Registry

AUTO = "auto"

BACKENDS: Registry[BackendInfo] = Registry(
    "backend",
    [
        BackendInfo(
            name="likwid", summary=LikwidBackend.summary, factory=LikwidBackend, auto_rank=0
        ),
        BackendInfo(name="perf", summary=PerfBackend.summary, factory=PerfBackend, auto_rank=1),
        # Never automatic: valgrind slows apps 20-100x; ask for it with small sizes.
        BackendInfo(
            name="callgrind",
            summary=CallgrindBackend.summary,
            factory=CallgrindBackend,
            auto_rank=None,
        ),
        BackendInfo(name="timer", summary=TimerBackend.summary, factory=TimerBackend, auto_rank=2),
        # Never automatic: it profiles CUDA kernels only; CPU apps would count nothing.
        BackendInfo(name="ncu", summary=NcuBackend.summary, factory=NcuBackend, auto_rank=None),
    ],
    error=UnknownNameError,
)


def probe_all(host: HostInfo) -> tuple[tuple[BackendInfo, Availability], ...]:
    """Every registered backend with whether it works on ``host`` and why not."""
    return tuple((info, info.factory(host).available()) for info in BACKENDS.infos())


def select_backend(name: str, host: HostInfo) -> Backend:
    """The backend called ``name``, or for ``auto`` the preferred one that works.

    Raises:
        UnknownNameError: no such backend.
        BackendError: the named backend does not work on this machine.
    """
    if name == AUTO:
        ranked = sorted(
            (i for i in BACKENDS.infos() if i.auto_rank is not None), key=lambda i: i.auto_rank or 0
        )
        for info in ranked:
            backend = info.factory(host)
            if backend.available().ok:
                return backend
        raise BackendError("no backend works on this machine")
    backend = BACKENDS[name].factory(host)
    avail = backend.available()
    if not avail.ok:
        raise BackendError(f"backend {name} does not work here: {avail.detail}")
    return backend


__all__ = [
    "AUTO",
    "BACKENDS",
    "Availability",
    "Backend",
    "BackendInfo",
    "Job",
    "probe_all",
    "select_backend",
]
