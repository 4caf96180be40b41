"""How many mantissa bits does an app need? Sweep emulated formats, find the fewest that pass.

For each app with an emulated version (:mod:`hpcprof.analysis.emulate`) the sweep reruns it with
every format ``e11m{m}`` (11 exponent bits like float64, ``m`` stored mantissa bits) for
``m`` in a range (default 20..52), plus float32 and bfloat16, and records the self-check
error. The bits needed at a tolerance are the smallest ``m`` such that every swept
``m' >= m`` keeps the error within the tolerance: error is not strictly monotone in ``m``,
and a lucky narrow format should not hide a failing wider one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpcprof.analysis.emulate import EmulationInfo, emulation
from hpcprof.results.report import format_cell
from precision.common.files import atomic_save_figure
from precision.common.markdown import markdown_table

if TYPE_CHECKING:  # the precision package imports torch: load it only when sweeping
    from precision.formats import FloatFormat

DEFAULT_TOLERANCE = 1e-8
"""Default largest self-check error (relative residual or relative error vs float64)."""

MANTISSA_RANGE = (20, 52)
EXTRA_FORMATS = ("float32", "bfloat16")


@dataclass(frozen=True, kw_only=True)
class BitsPoint:
    """Self-check error of one app in one emulated format."""

    app: str
    size: int
    format: str
    exponent_bits: int
    mantissa_bits: int
    error: float  # NaN when the run produced NaN/inf


@dataclass(frozen=True, kw_only=True)
class BitsResult:
    """Bits needed by one app at one tolerance."""

    app: str
    size: int
    tolerance: float
    bits: int | None  # None: even the widest swept format fails
    float32_ok: bool | None  # None: not swept
    bfloat16_ok: bool | None
    rounding: str


def formats_for(
    mantissa_bits: Sequence[int], extra: Sequence[str] = EXTRA_FORMATS
) -> list[FloatFormat]:
    """Formats of a sweep: ``e11m{m}`` for each ``m``, then the named extras.

    Raises:
        ValueError: a mantissa width outside 1..52, or an extra name that is not a
            floating-point format.
    """
    from precision.formats import FloatFormat
    from precision.registry import parse

    for m in mantissa_bits:
        if not 1 <= m <= 52:
            raise ValueError(f"mantissa bits {m}: must be 1..52 (float64 carries the values)")
    fmts = [FloatFormat(exponent_bits=11, mantissa_bits=m) for m in mantissa_bits]
    for name in extra:
        fmt = parse(name)
        if not isinstance(fmt, FloatFormat):
            raise ValueError(f"format {name!r}: not a floating-point format")
        fmts.append(fmt)
    return fmts


def sweep(
    app: str,
    *,
    size: int | None = None,
    mantissa_bits: Sequence[int] = tuple(range(MANTISSA_RANGE[0], MANTISSA_RANGE[1] + 1)),
    extra: Sequence[str] = EXTRA_FORMATS,
    progress: Callable[[str], None] | None = None,
) -> list[BitsPoint]:
    """Run ``app`` once per format and return the self-check errors.

    Args:
        app: an app with an emulated version (``cg``, ``gemm``, ``stencil``, ``triad``).
        size: problem size (default: the emulation's small size).
        mantissa_bits: stored mantissa widths of the 11-exponent-bit formats.
        extra: further format names (float32, bfloat16).
        progress: called with a label before each run.

    Raises:
        UnknownNameError: the app has no emulated version.
        ValueError: a size below 2 or a mantissa width outside 1..52.
    """
    from precision.quantize import quantize
    from precision.rounding import RoundingMode

    info: EmulationInfo = emulation(app)
    n = info.size if size is None else size
    if n < 2:
        raise ValueError(f"size {n}: must be >= 2")
    points = []
    for fmt in formats_for(mantissa_bits, extra):
        if progress is not None:
            progress(f"{app} {fmt}")

        def rnd(x: np.ndarray, fmt: FloatFormat = fmt) -> np.ndarray:
            return quantize(x, fmt, RoundingMode.NEAREST_EVEN)

        with np.errstate(all="ignore"):
            err = info.kernel(n, rnd)
        points.append(
            BitsPoint(
                app=app,
                size=n,
                format=_name(fmt),
                exponent_bits=fmt.exponent_bits,
                mantissa_bits=fmt.mantissa_bits,
                error=err if math.isfinite(err) else math.nan,
            )
        )
    return points


def _name(fmt: FloatFormat) -> str:
    from precision.registry import canonical_name

    try:
        return canonical_name(fmt)
    except (KeyError, ValueError):
        return str(fmt)


def _passes(error: float, tolerance: float) -> bool:
    return not math.isnan(error) and error <= tolerance


def needed_bits(points: Sequence[BitsPoint], tolerance: float) -> int | None:
    """Fewest mantissa bits (11-exponent-bit formats) such that every wider swept format
    keeps the error within ``tolerance``; None if the widest fails.

    Raises:
        ValueError: tolerance not positive.
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance={tolerance}: must be > 0")
    wide = sorted((p for p in points if p.exponent_bits == 11), key=lambda p: -p.mantissa_bits)
    bits = None
    for p in wide:
        if not _passes(p.error, tolerance):
            break
        bits = p.mantissa_bits
    return bits


def result(points: Sequence[BitsPoint], tolerance: float) -> BitsResult:
    """Summarize one app's sweep at ``tolerance``."""
    app = points[0].app
    by_name = {p.format: p for p in points}

    def ok(name: str) -> bool | None:
        return _passes(by_name[name].error, tolerance) if name in by_name else None

    return BitsResult(
        app=app,
        size=points[0].size,
        tolerance=tolerance,
        bits=needed_bits(points, tolerance),
        float32_ok=ok("float32"),
        bfloat16_ok=ok("bfloat16"),
        rounding=emulation(app).rounding,
    )


def markdown(results: Sequence[BitsResult], points: Sequence[BitsPoint]) -> str:
    """Table of bits needed per app, then the errors per format."""
    yes = {True: "yes", False: "no", None: "n/a"}
    needed = [("app", "size", "tolerance", "mantissa bits needed (e11)", "float32 passes",
               "bfloat16 passes", "emulation rounds")]  # fmt: skip
    for r in results:
        bits = "> 52 (none passes)" if r.bits is None else str(r.bits)
        needed.append((r.app, str(r.size), f"{r.tolerance:.0e}", bits, yes[r.float32_ok],
                       yes[r.bfloat16_ok], r.rounding))  # fmt: skip
    apps = list(dict.fromkeys(p.app for p in points))
    fmts = list(dict.fromkeys(p.format for p in points))
    errors = {(p.app, p.format): p.error for p in points}
    per_format = [("format", *apps)]
    per_format += [(f, *(format_cell(errors.get((a, f)), ".2e") for a in apps)) for f in fmts]
    return markdown_table(needed) + "\n" + markdown_table(per_format)


def plot(points: Sequence[BitsPoint], tolerance: float, path: Path) -> None:
    """Error vs mantissa bits per app (log scale), with the tolerance line (atomic PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    for app in dict.fromkeys(p.app for p in points):
        mine = sorted(
            (p for p in points if p.app == app and p.exponent_bits == 11),
            key=lambda p: p.mantissa_bits,
        )
        line = ax.plot(
            [p.mantissa_bits for p in mine],
            [max(p.error, 1e-18) for p in mine],
            marker=".",
            label=app,
        )
        for p in points:
            if p.app == app and p.exponent_bits != 11:
                ax.scatter(
                    p.mantissa_bits, max(p.error, 1e-18), marker="x", color=line[0].get_color()
                )
    ax.axhline(tolerance, color="grey", ls=":", label=f"tolerance {tolerance:.0e}")
    ax.set_yscale("log")
    ax.set_xlabel("stored mantissa bits (x: float32 e8m23, bfloat16 e8m7)")
    ax.set_ylabel("self-check error")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100, tight=False)
    plt.close(fig)
