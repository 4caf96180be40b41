"""Roofline analysis and cross-machine time predictions for measured runs.

Model (stated in every report, see :data:`MODEL`): a run does ``W64``, ``W32`` and ``W16``
floating-point operations and moves ``Q`` bytes to and from main memory. On a machine with
peaks ``P64``, ``P32``, ``P16`` (FLOP/s) and bandwidth ``BW`` (bytes/s) it takes

    T = max(W64 / P64 + W32 / P32 + W16 / P16,  Q / BW)

i.e. the widths share the floating-point units and compute overlaps perfectly with memory
traffic. Its roofline is ``min(P, I * BW)`` at arithmetic intensity ``I = W / Q``; a run is
memory bound when the second term of ``T`` is the larger. Without a vector FP16 unit, FP16
work runs at the FP32 rate (converted). Tensor/matrix peaks are used only when asked for,
since they change the arithmetic (TF32 rounds float32 inputs to 10 mantissa bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from hpcprof.machines.model import Machine, MemoryKind, Peak
from hpcprof.results.report import SummaryRow

MODEL = (
    "T = max(W64/P64 + W32/P32 + W16/P16, Q/BW): FLOPs of each width at that width's peak, "
    "overlapped with the bytes Q at the memory bandwidth BW; roofline min(P, I*BW)"
)


class Width(Enum):
    """Width of counted floating-point work."""

    FP64 = "fp64"
    FP32 = "fp32"
    FP16 = "fp16"


class Bound(Enum):
    """Which roof limits a run on a machine."""

    MEMORY = "memory"
    COMPUTE = "compute"


_VECTOR = {Width.FP64: Peak.FP64, Width.FP32: Peak.FP32, Width.FP16: Peak.FP16}
# Special units a width may use when asked for (``matrix=True``): tensor/matrix units, and
# the instructions a code must be written for (Knights Mill 4FMAPS, AVX512_BF16 dot products).
_SPECIAL = {
    Width.FP64: (Peak.FP64_MATRIX,),
    Width.FP32: (Peak.TF32_MATRIX, Peak.FP32_4FMAPS),
    Width.FP16: (Peak.FP16_MATRIX, Peak.BF16_DOT),
}


@dataclass(frozen=True, kw_only=True)
class Work:
    """What a run did: FLOPs per width and bytes moved (all >= 0)."""

    fp64_flop: float = 0.0
    fp32_flop: float = 0.0
    fp16_flop: float = 0.0
    bytes_moved: float

    def __post_init__(self) -> None:
        for name in ("fp64_flop", "fp32_flop", "fp16_flop", "bytes_moved"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0")

    def flops(self, width: Width) -> float:
        return {Width.FP64: self.fp64_flop, Width.FP32: self.fp32_flop}.get(width, self.fp16_flop)

    @property
    def total_flop(self) -> float:
        return self.fp64_flop + self.fp32_flop + self.fp16_flop

    @property
    def intensity(self) -> float | None:
        """FLOP per byte, or None when no bytes move."""
        return self.total_flop / self.bytes_moved if self.bytes_moved > 0 else None

    @property
    def dominant(self) -> Width:
        """The width with the most FLOPs (FP64 on ties)."""
        return max(Width, key=lambda w: (self.flops(w), w is Width.FP64))


def ceiling(machine: Machine, width: Width, *, matrix: bool = False) -> float | None:
    """Peak GFLOP/s of ``machine`` for ``width`` work, or None when unknown.

    Args:
        machine: the machine model.
        width: the width of the work.
        matrix: also allow tensor/matrix units and special instructions (Knights Mill
            AVX512_4FMAPS, AVX512_BF16 dot products); the largest peak is used.

    Returns:
        GFLOP/s; FP16 falls back to the FP32 peak on machines without FP16 units.
    """
    vector = machine.peak(_VECTOR[width])
    if width is Width.FP16 and vector is None:
        vector = machine.peak(Peak.FP32)
    best = vector
    for special in _SPECIAL[width] if matrix else ():
        if (m := machine.peak(special)) is not None:
            best = m if best is None else max(best, m)
    return best


def attainable(
    machine: Machine,
    width: Width,
    intensity: float,
    *,
    memory: MemoryKind | None = None,
    matrix: bool = False,
) -> float | None:
    """Roofline ``min(peak, intensity * bandwidth)`` in GFLOP/s (None if the peak is unknown)."""
    peak = ceiling(machine, width, matrix=matrix)
    if peak is None:
        return None
    return min(peak, intensity * machine.memory(memory).bandwidth_gbs)


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """Predicted time of one run on one machine (seconds) and its limiting roof."""

    machine: str
    compute_s: float | None
    memory_s: float
    seconds: float | None
    bound: Bound | None


def predict(
    work: Work, machine: Machine, *, memory: MemoryKind | None = None, matrix: bool = False
) -> Prediction:
    """Time of ``work`` on ``machine`` under :data:`MODEL`.

    Returns:
        The prediction; ``seconds`` and ``bound`` are None when the machine lacks a peak
        for a width the work uses.
    """
    memory_s = work.bytes_moved / (machine.memory(memory).bandwidth_gbs * 1e9)
    compute_s: float | None = 0.0
    for width in Width:
        flops = work.flops(width)
        if flops == 0:
            continue
        peak = ceiling(machine, width, matrix=matrix)
        if peak is None or compute_s is None:
            compute_s = None
            continue
        compute_s += flops / (peak * 1e9)
    if compute_s is None:
        return Prediction(
            machine=machine.name, compute_s=None, memory_s=memory_s, seconds=None, bound=None
        )
    bound = Bound.MEMORY if memory_s >= compute_s else Bound.COMPUTE
    return Prediction(
        machine=machine.name,
        compute_s=compute_s,
        memory_s=memory_s,
        seconds=max(compute_s, memory_s),
        bound=bound,
    )


def time_ratio(
    work: Work,
    base: Machine,
    other: Machine,
    *,
    memory: MemoryKind | None = None,
    matrix: bool = False,
) -> float | None:
    """Predicted ``T(other) / T(base)``: above 1 means ``other`` is slower."""
    a = predict(work, base, memory=_mem(base, memory), matrix=matrix)
    b = predict(work, other, memory=_mem(other, memory), matrix=matrix)
    if a.seconds is None or b.seconds is None or a.seconds == 0:
        return None
    return b.seconds / a.seconds


def why_no_work(row: SummaryRow) -> str | None:
    """Why a summary row has no :class:`Work` (a width or the bytes missing), or None."""
    missing = []
    if row.fp64_gflop is None or row.fp32_gflop is None or row.total_gflop is None:
        missing.append(f"FLOPs per width unknown ({row.flop_note or row.flop_source})")
    if row.gbytes is None:
        missing.append("no bytes (no byte model, and the backend measured none)")
    return "; ".join(missing) if missing else None


def work_of(row: SummaryRow) -> Work | None:
    """The :class:`Work` of a summary row, or None when a width or the bytes are unknown.

    A missing width is never taken as 0: with FP32 not counted, the FP64 count alone would
    make every run look FP64-bound (see :func:`why_no_work` for the reason).
    """
    if why_no_work(row) is not None or row.gbytes is None:
        return None
    return Work(
        fp64_flop=(row.fp64_gflop or 0.0) * 1e9,
        fp32_flop=(row.fp32_gflop or 0.0) * 1e9,
        fp16_flop=(row.fp16_gflop or 0.0) * 1e9,
        bytes_moved=row.gbytes * 1e9,
    )


@dataclass(frozen=True, kw_only=True)
class CompareRow:
    """One app and precision of a run, on one machine."""

    app: str
    precision: str
    intensity: float | None
    machine: str
    attainable_gflops: float | None
    bound: Bound | None
    predicted_s: float | None
    ratio: float | None  # predicted time / predicted time on the first machine
    measured_gflops: float | None  # on the measuring host
    host_fraction: float | None  # measured / host roofline, when the host was measured
    flop_source: str = "missing"  # provenance, as in SummaryRow
    bytes_source: str = "missing"


@dataclass(frozen=True, kw_only=True)
class Skipped:
    """A summary row :func:`compare` could not place, and why."""

    app: str
    precision: str
    reason: str


def skipped(rows: Sequence[SummaryRow]) -> list[Skipped]:
    """The rows :func:`compare` leaves out (no work model), each with its reason."""
    out = []
    for row in rows:
        if (reason := why_no_work(row)) is not None:
            out.append(Skipped(app=row.app, precision=row.precision, reason=reason))
    return out


def compare(
    rows: Sequence[SummaryRow],
    machines: Sequence[Machine],
    *,
    host: Machine | None = None,
    memory: MemoryKind | None = None,
    matrix: bool = False,
) -> list[CompareRow]:
    """Roofline placement and predictions of every summary row on every machine.

    Args:
        rows: summary rows of a run (:func:`hpcprof.results.report.summarize`).
        machines: machines to compare; ratios are relative to the first.
        host: the measuring host with measured ceilings, for the fraction of its roofline
            each run achieved (None: not reported).
        memory: memory kind to use where a machine has it (default: each one's first).
        matrix: allow tensor/matrix peaks.

    Raises:
        ValueError: no machines given.
    """
    if not machines:
        raise ValueError("compare: name at least one machine")
    out: list[CompareRow] = []
    for row in rows:
        work = work_of(row)
        if work is None:
            continue
        fraction = None
        intensity = work.intensity
        if host is not None and row.gflops is not None and intensity is not None:
            roof = attainable(host, work.dominant, intensity, matrix=matrix)
            fraction = row.gflops / roof if roof else None
        base = predict(work, machines[0], memory=_mem(machines[0], memory), matrix=matrix)
        out.extend(
            _compare_row(row, work, m, base.seconds, fraction, memory=memory, matrix=matrix)
            for m in machines
        )
    return out


def _compare_row(
    row: SummaryRow,
    work: Work,
    machine: Machine,
    base_seconds: float | None,
    host_fraction: float | None,
    *,
    memory: MemoryKind | None,
    matrix: bool,
) -> CompareRow:
    """One (summary row, machine) line of :func:`compare`."""
    intensity = work.intensity
    pred = predict(work, machine, memory=_mem(machine, memory), matrix=matrix)
    roof = (
        None
        if intensity is None
        else attainable(
            machine, work.dominant, intensity, memory=_mem(machine, memory), matrix=matrix
        )
    )
    ratio = pred.seconds / base_seconds if pred.seconds is not None and base_seconds else None
    return CompareRow(
        app=row.app,
        precision=row.precision,
        intensity=intensity,
        machine=machine.name,
        attainable_gflops=roof,
        bound=pred.bound,
        predicted_s=pred.seconds,
        ratio=ratio,
        measured_gflops=row.gflops,
        host_fraction=host_fraction,
        flop_source=row.flop_source,
        bytes_source=row.bytes_source,
    )


def _mem(machine: Machine, memory: MemoryKind | None) -> MemoryKind | None:
    """``memory`` where the machine has that kind, else None (its default)."""
    return memory if any(m.kind is memory for m in machine.memories) else None
