"""App records and the registry of built-in apps.

An app is data: a frozen :class:`AppInfo` naming its entry point (a Python kernel run in a
child process, or a shipped C source), its problem-size parameter and its analytic FLOP and
byte models. Variants (the C build of GEMM, say) are further records, not subclasses.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from enum import Enum
from types import TracebackType
from typing import Any

from hpcprof.results.records import Precision

PROTOCOL_PREFIX = "hpcprof:"
"""Built-in programs print one line ``hpcprof: check_error=<e> kernel_s=<t>`` on stdout."""
RANK_PREFIX = "hpcprof-rank:"
"""Each rank of a distributed kernel also prints ``hpcprof-rank: rank=<r> <count>=<n> ...``."""

BUILTIN_PRECISIONS: tuple[Precision, ...] = (Precision.FLOAT64, Precision.FLOAT32)


class AppKind(Enum):
    """How an app is run."""

    NUMPY = "numpy"  # Python kernel on NumPy, run as ``python -m hpcprof.apps``
    TORCH = "torch"  # Python kernel on torch (training kernels)
    C = "c"  # shipped C source, compiled on first use
    EXTERNAL = "external"  # command from a suite file


class Device(Enum):
    """Where a Python kernel computes."""

    CPU = "cpu"
    CUDA = "cuda"  # torch on a CUDA device, timed with CUDA events


class Region(AbstractContextManager["Region"]):
    """Times the measured part of a Python kernel; opens a LIKWID marker region if asked,
    and marks the region for callgrind if asked.

    The runner sets ``HPCPROF_LIKWID_MARKER=1`` when the likwid backend runs in marker mode;
    ``pylikwid`` is then imported lazily, here and not at import time. Under the callgrind
    backend, ``callgrind`` is the loaded ``hp_marker`` library (ctypes): its calls are the
    innermost ones, so that only the kernel's own instructions are counted.
    """

    def __init__(
        self, name: str = "hpcprof_kernel", marker: object | None = None,
        callgrind: object | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.seconds: float | None = None
        self.rank_counts: dict[str, int] = {}  # a distributed kernel's own counts, this rank
        self._marker = marker
        self._callgrind = callgrind
        self._t0 = 0.0

    def __enter__(self) -> Region:
        if self._marker is not None:
            self._marker.markerstartregion(self.name)  # type: ignore[attr-defined]
        self._t0 = time.perf_counter()
        if self._callgrind is not None:
            self._callgrind.hpcprof_enter()  # type: ignore[attr-defined]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._callgrind is not None:
            self._callgrind.hpcprof_leave()  # type: ignore[attr-defined]
        self.seconds = time.perf_counter() - self._t0
        if self._marker is not None:
            self._marker.markerstopregion(self.name)  # type: ignore[attr-defined]


Kernel = Callable[[int, Precision, Region], float]
"""A Python kernel: (size, precision, region) -> self-check error. It builds its inputs,
runs the measured work inside ``with region:``, then checks the answer."""


@dataclass(frozen=True, kw_only=True)
class AppInfo:
    """One built-in app.

    Args:
        name: registry name (``gemm``, ``gemm-c``).
        summary: one line for ``hpcprof list``.
        kind: entry-point kind.
        size_doc: what the size parameter means.
        default_size: size for ``hpcprof run`` (the whole suite finishes in minutes).
        small_size: size for tests and the callgrind backend.
        flops: analytic FLOPs of the measured region as a function of size.
        bytes_moved: compulsory memory traffic model as a function of (size, itemsize).
        tolerance: largest acceptable self-check error, float64 and float32.
        kernel: the Python kernel (NUMPY/TORCH kinds).
        c_source: C source file under ``hpcprof/apps/c`` (C kind).
        c_args: command-line arguments of the C program for a size.
        region: function holding the measured work; counting backends restrict to it.
        device: where the kernel computes; CUDA apps run only when named explicitly.
    """

    name: str
    summary: str
    kind: AppKind
    size_doc: str
    default_size: int
    small_size: int
    flops: Callable[[int], float]
    bytes_moved: Callable[[int, int], float]
    tolerance: tuple[float, float]
    kernel: Kernel | None = None
    c_source: str | None = None
    c_args: Callable[[int], tuple[str, ...]] | None = None
    region: str | None = None
    device: Device = Device.CPU

    @property
    def runs_on(self) -> str:
        """What runs the kernel, for listings: ``numpy``, ``torch``, ``torch/cuda``, ``c``."""
        return self.kind.value + ("" if self.device is Device.CPU else f"/{self.device.value}")

    @property
    def default_run(self) -> bool:
        """Part of a run that names no apps (CUDA apps must be asked for)."""
        return self.device is Device.CPU

    def __post_init__(self) -> None:
        if self.kind is AppKind.C and (self.c_source is None or self.c_args is None):
            raise ValueError(f"app {self.name}: C apps need c_source and c_args")
        if self.kind in (AppKind.NUMPY, AppKind.TORCH) and self.kernel is None:
            raise ValueError(f"app {self.name}: Python apps need a kernel")
        if self.small_size <= 0 or self.default_size <= 0:
            raise ValueError(f"app {self.name}: sizes must be positive")

    def tolerance_for(self, precision: Precision) -> float:
        """Largest acceptable self-check error at ``precision``."""
        return self.tolerance[0] if precision is Precision.FLOAT64 else self.tolerance[1]

    def python_command(self, size: int, precision: Precision) -> list[str]:
        """Command line that runs the Python kernel in a fresh interpreter."""
        return [sys.executable, "-m", "hpcprof.apps", self.name, str(size), precision.value]


def c_twin(
    info: AppInfo, *, c_source: str, c_args: Callable[[int], tuple[str, ...]], **changes: Any
) -> AppInfo:
    """The C build of a Python app: a variant record, not a copy.

    It keeps the app's size meaning, FLOP and byte models and tolerance; it is called
    ``<name>-c``, says "(C)" where the summary said "(NumPy)", and runs ``c_source``
    with the measured function ``hpcprof_kernel``.

    Args:
        info: the Python app.
        c_source: C source file under ``hpcprof/apps/c``.
        c_args: command-line arguments of the C program for a size.
        **changes: further fields that differ (sizes, summary, flops).

    Returns:
        The C app record.
    """
    fields: dict[str, Any] = {
        "name": f"{info.name}-c",
        "summary": info.summary.replace("(NumPy)", "(C)"),
        "kind": AppKind.C,
        "kernel": None,
        "region": "hpcprof_kernel",
    }
    return replace(info, **{**fields, **changes}, c_source=c_source, c_args=c_args)


def parse_protocol(stdout: str) -> dict[str, float]:
    """Read ``key=value`` pairs from the ``hpcprof:`` lines a built-in program prints."""
    values: dict[str, float] = {}
    for line in stdout.splitlines():
        if not line.startswith(PROTOCOL_PREFIX):
            continue
        for token in line[len(PROTOCOL_PREFIX) :].split():
            key, sep, raw = token.partition("=")
            if not sep:
                continue
            try:
                values[key] = float(raw)
            except ValueError:
                continue
    return values


def parse_rank_lines(stdout: str) -> dict[int, dict[str, float]]:
    """Per-rank ``key=value`` counts of the ``hpcprof-rank:`` lines, keyed by ``rank``."""
    ranks: dict[int, dict[str, float]] = {}
    for line in stdout.splitlines():
        if line.startswith(RANK_PREFIX):
            pairs = dict(t.partition("=")[::2] for t in line[len(RANK_PREFIX) :].split())
            with contextlib.suppress(KeyError, ValueError):
                ranks[int(pairs.pop("rank"))] = {k: float(v) for k, v in pairs.items()}
    return ranks


def real_dtype(precision: Precision) -> str:
    """NumPy/torch dtype name of a built-in precision."""
    if precision not in BUILTIN_PRECISIONS:
        raise ValueError(f"precision {precision.value}: built-in apps run float64 or float32")
    return precision.value
