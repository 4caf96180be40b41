"""Describe the measuring host as a :class:`~hpcprof.machines.model.Machine` with measured ceilings.

Peaks come from the built-in GEMM kernel (NumPy BLAS, float64 and float32) and the bandwidth
from the triad kernel, each the best of a few runs in this process. Measuring takes seconds
and happens only when asked for (``hpcprof compare --measure-host``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcprof.apps import APPS
from hpcprof.apps.base import Region
from hpcprof.machines.model import Machine, MachineKind, Memory, MemoryKind, Peak
from hpcprof.results.records import Precision
from hpcprof.run.host import collect_host


@dataclass(frozen=True, kw_only=True)
class PeakProbe:
    """Sizes and repetitions of the host measurement."""

    gemm_size: int = 768
    triad_size: int = 4_000_000
    repeats: int = 3

    def __post_init__(self) -> None:
        if min(self.gemm_size, self.triad_size, self.repeats) < 1:
            raise ValueError("gemm_size, triad_size and repeats must be >= 1")


def _best_rate(app: str, size: int, precision: Precision, repeats: int, *, flops: bool) -> float:
    """Best FLOP/s (or bytes/s) of ``repeats`` runs of a built-in kernel, in giga-units."""
    info = APPS[app]
    if info.kernel is None:  # pragma: no cover - the apps used here are Python kernels
        raise ValueError(f"{app}: not a Python kernel")
    amount = info.flops(size) if flops else info.bytes_moved(size, precision.itemsize or 8)
    best = 0.0
    for _ in range(repeats):
        region = Region()
        info.kernel(size, precision, region)
        if region.seconds:
            best = max(best, amount / region.seconds / 1e9)
    return best


def measure_host(probe: PeakProbe | None = None) -> Machine:
    """Run the GEMM and triad kernels here and return this host as a machine model.

    Args:
        probe: sizes and repetitions (defaults: GEMM n=768, triad 4M elements, best of 3).

    Returns:
        A machine named ``host`` with measured FP64/FP32 peaks and one ``measured`` memory.
    """
    probe = probe or PeakProbe()
    host = collect_host()
    fp64 = _best_rate("gemm", probe.gemm_size, Precision.FLOAT64, probe.repeats, flops=True)
    fp32 = _best_rate("gemm", probe.gemm_size, Precision.FLOAT32, probe.repeats, flops=True)
    bw = _best_rate("triad", probe.triad_size, Precision.FLOAT64, probe.repeats, flops=False)
    return Machine(
        name="host",
        label=f"{host.cpu_model} ({host.hostname}, {len(host.allowed_cpus)} CPUs allowed)",
        kind=MachineKind.CPU,
        cores=host.logical_cpus,
        clock_ghz=None,
        peaks=((Peak.FP64, fp64), (Peak.FP32, fp32)),
        memories=(Memory(kind=MemoryKind.MEASURED, bandwidth_gbs=bw),),
        source=(
            f"measured on {host.hostname}: gemm n={probe.gemm_size} (NumPy BLAS), "
            f"triad n={probe.triad_size}, best of {probe.repeats}"
        ),
    )
