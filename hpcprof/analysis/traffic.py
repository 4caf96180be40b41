"""Measured memory traffic against the communication lower bound (:mod:`hpcprof.analysis.bound`).

An app runs under ``valgrind --tool=callgrind --cache-sim=yes --simulate-wb=yes`` with the
last-level cache set to M words (8-way, 64-byte lines; D1 an eighth of it), and only its
measured region collected: the C apps' kernel function (``--toggle-collect``), the Python
kernels' ``with region:`` block (a region that issues callgrind's toggle client request
through ``hpcprof_toggle`` of the region shim ``hp_marker.c``, the library the callgrind
backend loads) of a second run of the kernel in the same process, so that one-time set-up
(torch's first operator calls) is not counted. Traffic between the LL cache and memory:

    (DLmr + DLmw + DLdmr + DLdmw) x line / itemsize

(read and write misses fetch a line; misses that evict a dirty line write one back). The
cache is warm when the region starts (the app has just written its inputs) and dirty lines
still cached at the end are not counted, so the bound holds as ``measured >= bound - 2M``;
compare at sizes whose data is well beyond M. :func:`measure_likwid` measures LIKWID's
MEM/L3/L2 data volumes on real caches instead.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from hpcprof.analysis.bound import Array, LoopNest, lower_bound
from hpcprof.analysis.nests import nest_info
from hpcprof.apps import APPS
from hpcprof.apps.base import AppKind
from hpcprof.errors import BackendError, UnknownNameError
from hpcprof.results.records import Precision
from precision.common.files import atomic_save_figure
from precision.common.markdown import markdown_table

LINE = 64
ASSOC = 8


@dataclass(frozen=True, kw_only=True)
class Target:
    """An app whose measured region is one loop nest of :mod:`hpcprof.analysis.nests`.

    Args:
        app: built-in app name.
        nest: the nest at an app size.
        note: how the nest stands for the app (shown with the results).
    """

    app: str
    nest: Callable[[int], LoopNest]
    note: str


def _matmul(n: int) -> LoopNest:
    return nest_info("matmul").build({"i": n, "j": n, "k": n})


def _md(cells: int) -> LoopNest:
    from hpcprof.apps import md

    atoms = 4 * cells**3
    # one all-pairs force evaluation per step plus the initial one, each on new positions;
    # d runs over the 3 coordinates (r^2 sums over d, the force is accumulated per d)
    arrays = (
        Array(name="F", indices=("t", "i", "d"), output=True),
        Array(name="Xi", indices=("t", "i", "d"), storage="X"),
        Array(name="Xj", indices=("t", "j", "d"), storage="X"),
    )
    loops = (("t", md.STEPS + 1), ("i", atoms), ("j", atoms), ("d", 3))
    return LoopNest(name="nbody", loops=loops, arrays=arrays, summary="md force evaluations")


def _fc(n: int) -> LoopNest:
    return nest_info("fc").build({"b": n, "o": n, "i": n})


def _conv(batch: int) -> LoopNest:
    return nest_info("conv3x3").build({"b": batch})


TARGETS: Mapping[str, Target] = MappingProxyType({
    t.app: t
    for t in (
        Target(app="gemm-c", nest=_matmul, note="matmul, i-k-j loops"),
        Target(app="gemm", nest=_matmul, note="matmul, NumPy BLAS (1 thread)"),
        Target(app="md", nest=_md, note="n-body, one nest per force evaluation"),
        Target(app="gemm-train", nest=_fc,
               note="fc: bound of one of the three products (valid for all three)"),
        Target(app="conv2d-train", nest=_conv,
               note="conv3x3: bound of one of the three convolutions"),
    )
})  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TrafficPoint:
    """Measured and bound traffic of one app, size and fast-memory size."""

    app: str
    nest: str
    size: int
    memory: int  # M, words
    precision: str
    measured_words: float
    bound_words: float
    tiled_words: int
    tile: tuple[tuple[str, int], ...]
    source: str = "callgrind"  # what measured it: callgrind, or likwid and its group

    @property
    def ratio(self) -> float:
        """Measured over the lower bound (``measured >= bound - 2M``: warm start, no flush)."""
        return self.measured_words / self.bound_words


def cache_args(memory: int, itemsize: int) -> list[str]:
    """valgrind cache options giving an LL of ``memory`` words.

    Raises:
        ValueError: the size does not give a power-of-two number of sets of at least 8.
    """
    size = memory * itemsize
    sets = size // (ASSOC * LINE)
    if sets < 8 or sets & (sets - 1) or sets * ASSOC * LINE != size:
        raise ValueError(
            f"memory {memory} words: must be a power of two of at least {8 * ASSOC * LINE // itemsize} words"
        )
    d1 = min(32768, size // 8)
    return [f"--LL={size},{ASSOC},{LINE}", f"--D1={d1},{ASSOC},{LINE}", "--I1=32768,8,64"]


def parse_totals(text: str) -> dict[str, int]:
    """Event totals of a callgrind profile (``events:`` names, ``summary:``/``totals:``).

    Raises:
        BackendError: no events or totals line.
    """
    names: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("events:"):
            names = line.split(":", 1)[1].split()
        elif line.startswith(("summary:", "totals:")) and names is not None:
            values = [int(v) for v in line.split(":", 1)[1].split()]
            return dict(zip(names, values + [0] * (len(names) - len(values)), strict=True))
    raise BackendError("callgrind profile has no events/summary lines (cache simulation off?)")


def words_moved(totals: Mapping[str, int], itemsize: int, line: int = LINE) -> float:
    """Words between the simulated LL cache and memory.

    Raises:
        BackendError: the profile lacks the LL miss or write-back events.
    """
    keys = ("DLmr", "DLmw", "DLdmr", "DLdmw")
    missing = [k for k in keys if k not in totals]
    if missing:
        raise BackendError(
            f"callgrind profile lacks {', '.join(missing)} (need --cache-sim=yes --simulate-wb=yes)"
        )
    return sum(totals[k] for k in keys) * line / itemsize


def toggle_library() -> Path:
    """The region shim (``hp_marker.c``, cached build) with a working ``hpcprof_toggle``.

    Raises:
        BackendError: no C compiler or the build failed, or the shim was built without
            valgrind's callgrind.h (its toggle would do nothing).
    """
    import ctypes

    from hpcprof.errors import BuildError
    from hpcprof.run.build import build_marker

    try:
        lib = build_marker()
    except BuildError as exc:
        raise BackendError(f"cannot build the callgrind region shim: {exc}") from None
    if not ctypes.CDLL(str(lib)).hpcprof_toggle_available():
        raise BackendError(
            "valgrind's callgrind.h is missing: no callgrind toggle for Python kernels"
        )
    return lib


_DRIVER = """
import ctypes, sys
from hpcprof.apps import APPS
from hpcprof.apps.base import Region
from hpcprof.results.records import Precision
lib = ctypes.CDLL(sys.argv[1])
class Toggled(Region):
    def __enter__(self):
        lib.hpcprof_toggle()
        return super().__enter__()
    def __exit__(self, *exc):
        super().__exit__(*exc)
        lib.hpcprof_toggle()
kernel, args = APPS[sys.argv[2]].kernel, (int(sys.argv[3]), Precision(sys.argv[4]))
kernel(*args, Region())  # warm-up, not collected: lazy library set-up stays out
kernel(*args, Toggled())
"""


def _command(app: str, size: int, precision: Precision) -> tuple[list[str], list[str]]:
    """(valgrind options, program command) restricting collection to the measured region."""
    from hpcprof.run.build import build

    info = APPS[app]
    if info.kind is AppKind.C:
        assert info.c_source is not None and info.c_args is not None and info.region is not None
        binary = build(info.c_source, precision)
        return [f"--toggle-collect={info.region}"], [str(binary), *info.c_args(size)]
    lib = toggle_library()
    cmd = [sys.executable, "-c", _DRIVER, str(lib), app, str(size), precision.value]
    return ["--collect-atstart=no"], cmd


_LIKWID_DRIVER = """
import sys, pylikwid
from hpcprof.apps import APPS
from hpcprof.apps.base import Region
from hpcprof.results.records import Precision
kernel, args = APPS[sys.argv[1]].kernel, (int(sys.argv[2]), Precision(sys.argv[3]))
kernel(*args, Region())  # warm-up outside the marker region
pylikwid.markerinit()
pylikwid.markerthreadinit()
kernel(*args, Region(marker=pylikwid))
pylikwid.markerclose()
"""


def _target(app: str) -> Target:
    """Raises:
    UnknownNameError: the app has no matching loop nest."""
    if app not in TARGETS:
        raise UnknownNameError(
            f"app {app!r} has no loop nest to bound (have: {', '.join(TARGETS)})"
        )
    return TARGETS[app]


def _child_env() -> dict[str, str]:
    """One BLAS/OpenMP thread, and this checkout importable in the measured child."""
    root = str(Path(__file__).resolve().parents[2])  # the directory holding hpcprof/
    return {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}  # fmt: skip


def measure_likwid(app: str, size: int, group: str = "MEM",
                   precision: Precision = Precision.FLOAT64, timeout_s: float = 900.0) -> TrafficPoint:  # fmt: skip
    """Run ``app`` at ``size`` under ``likwid-perfctr -g group`` (MEM, L3 or L2) on CPU 0
    and hold its data volume against the bound for M = the size of the cache below that
    traffic (the last level for MEM, L2 for L3, L1d for L2), in words of ``precision``.

    Python kernels are measured in the ``hpcprof_kernel`` marker region (pylikwid) of a
    second run; the C apps have no markers: their whole program is counted (wrapper mode).

    Raises:
        UnknownNameError: the app has no matching loop nest.
        BackendError: likwid-perfctr, its counters, pylikwid (Python kernels) or the cache
            size is missing, or the run failed.
    """
    from hpcprof.backends.likwid import FAST_LEVEL, cache_bytes, check_group, measure_traffic
    from hpcprof.run.build import build

    target = _target(app)
    check_group(group)
    itemsize = 8 if precision is Precision.FLOAT64 else 4
    info = APPS[app]
    marker = info.kind is not AppKind.C
    if info.kind is AppKind.C:
        assert info.c_source is not None and info.c_args is not None
        cmd = [str(build(info.c_source, precision)), *info.c_args(size)]
    else:
        if importlib.util.find_spec("pylikwid") is None:
            raise BackendError(
                f"{app}: likwid traffic of a Python kernel needs pylikwid (marker regions)"
            )
        cmd = [sys.executable, "-c", _LIKWID_DRIVER, app, str(size), precision.value]
    memory = cache_bytes(FAST_LEVEL[group]) // itemsize
    bytes_ = measure_traffic(cmd, group, marker=marker, env=_child_env(), timeout_s=timeout_s)
    words = bytes_ / itemsize
    nest = target.nest(size)
    bound = lower_bound(nest, memory)
    return TrafficPoint(
        app=app, nest=nest.name, size=size, memory=memory, precision=precision.value,
        measured_words=words, bound_words=bound.words, tiled_words=bound.tiled_words,
        tile=bound.tile, source=f"likwid {group}",
    )  # fmt: skip


def check_request(app: str, memory: int, precision: Precision = Precision.FLOAT64) -> None:
    """Fail early on a measurement that cannot be made.

    Raises:
        UnknownNameError: the app has no matching loop nest.
        ValueError: a memory size the cache simulation cannot take.
    """
    _target(app)
    cache_args(memory, 8 if precision is Precision.FLOAT64 else 4)


def measure(app: str, size: int, memory: int, precision: Precision = Precision.FLOAT64,
            timeout_s: float = 900.0) -> TrafficPoint:  # fmt: skip
    """Run ``app`` at ``size`` under the cache simulation with an LL of ``memory`` words.

    Raises:
        UnknownNameError: the app has no matching loop nest.
        ValueError: a memory size the cache simulation cannot take.
        BackendError: valgrind missing or the run failed.
    """
    check_request(app, memory, precision)
    itemsize = 8 if precision is Precision.FLOAT64 else 4
    nest = TARGETS[app].nest(size)
    bound = lower_bound(nest, memory)
    with tempfile.TemporaryDirectory(prefix="hpcprof-traffic-") as tmp:
        scratch = Path(tmp)
        opts, cmd = _command(app, size, precision)
        out = scratch / "callgrind.out"
        args = ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--simulate-wb=yes",
                *cache_args(memory, itemsize), *opts, f"--callgrind-out-file={out}", *cmd]  # fmt: skip
        env = {**os.environ, **_child_env()}
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
            )
        except FileNotFoundError:
            raise BackendError("valgrind not installed") from None
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"{app} size {size} under callgrind: over {timeout_s:.0f} s"
            ) from None
        if proc.returncode != 0 or not out.exists():
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])
            raise BackendError(f"{app} size {size} under callgrind failed: {tail}")
        measured = words_moved(
            parse_totals(out.read_text(encoding="utf-8", errors="replace")), itemsize
        )
    return TrafficPoint(
        app=app, nest=nest.name, size=size, memory=memory, precision=precision.value,
        measured_words=measured, bound_words=bound.words, tiled_words=bound.tiled_words,
        tile=bound.tile,
    )  # fmt: skip


_SOURCE_NOTES = {
    "callgrind": "- callgrind: the region starts warm and ends unflushed: measured >= bound - 2M",
    "likwid": "- likwid: M is the hardware cache below the traffic; C apps count the whole program",
}


def markdown(points: Sequence[TrafficPoint]) -> str:
    """Table of measured traffic, bound and ratio per app, size and M."""
    rows = [("app", "nest", "size", "M (words)", "measured words", "lower bound",
             "measured / bound", "tiling's words", "tile", "measured by")]  # fmt: skip
    for p in points:
        tile = " ".join(f"{n}={b}" for n, b in p.tile)
        rows.append((p.app, p.nest, str(p.size), str(p.memory), f"{p.measured_words:.4g}",
                     f"{p.bound_words:.4g}", f"{p.ratio:.2f}", f"{p.tiled_words:.4g}", tile,
                     p.source))  # fmt: skip
    notes = sorted({f"- {p.app}: {TARGETS[p.app].note}" for p in points})
    sources = {p.source.split()[0] for p in points}
    notes += [_SOURCE_NOTES[s] for s in sorted(sources)]
    return markdown_table(rows) + "\n".join(["", *notes]) + "\n"


def plot(points: Sequence[TrafficPoint], path: Path) -> None:
    """Measured / bound per app against size, one line per (app, M); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in sorted({(p.app, p.memory) for p in points}):
        sel = sorted((p for p in points if (p.app, p.memory) == key), key=lambda p: p.size)
        sizes, ratios = [p.size for p in sel], [p.ratio for p in sel]
        ax.plot(sizes, ratios, marker="o", label=f"{key[0]}, M={key[1]}")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("app size")
    ax.set_ylabel("measured words / lower bound")
    ax.set_title(f"traffic over the bound ({', '.join(sorted({p.source for p in points}))})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100, tight=False)
    plt.close(fig)
