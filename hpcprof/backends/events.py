"""Which hardware events count FP64 and FP32 operations, and how many per event.

Intel's ``FP_ARITH_INST_RETIRED.*`` events count instructions per vector width, and count
FMA instructions twice, so FLOPs = count x elements per instruction (scalar 1, 128-bit
packed double 2, 256-bit 4, 512-bit 8; single precision twice that). Sandy/Ivy Bridge name
the same counts ``FP_COMP_OPS_EXE_*`` / ``SIMD_FP_256_*`` (no FMA there).

Knights Landing/Mill count SIMD uops without the element type, and AMD Zen 2-4 count all FP
operations in one event (``RETIRED_SSE_AVX_FLOPS_ALL`` / ``fp_ret_sse_avx_ops.all``); on
those CPUs FP64 and FP32 cannot be told apart by counters.
"""

from __future__ import annotations

from enum import Enum

from hpcprof.results.records import HostInfo, Precision

_WIDTHS = {"SCALAR": 1, "128B_PACKED": 2, "256B_PACKED": 4, "512B_PACKED": 8}

FP_EVENT_WEIGHTS: dict[str, tuple[Precision, int]] = {
    **{f"FP_ARITH_INST_RETIRED_{w}_DOUBLE": (Precision.FLOAT64, n) for w, n in _WIDTHS.items()},
    **{
        f"FP_ARITH_INST_RETIRED_{w}_SINGLE": (Precision.FLOAT32, n if n == 1 else 2 * n)
        for w, n in _WIDTHS.items()
    },
    "FP_COMP_OPS_EXE_SSE_FP_SCALAR_DOUBLE": (Precision.FLOAT64, 1),
    "FP_COMP_OPS_EXE_SSE_SCALAR_DOUBLE": (Precision.FLOAT64, 1),
    "FP_COMP_OPS_EXE_SSE_FP_PACKED_DOUBLE": (Precision.FLOAT64, 2),
    "SIMD_FP_256_PACKED_DOUBLE": (Precision.FLOAT64, 4),
    "FP_COMP_OPS_EXE_SSE_FP_SCALAR_SINGLE": (Precision.FLOAT32, 1),
    "FP_COMP_OPS_EXE_SSE_SCALAR_SINGLE": (Precision.FLOAT32, 1),
    "FP_COMP_OPS_EXE_SSE_FP_PACKED_SINGLE": (Precision.FLOAT32, 4),
    "FP_COMP_OPS_EXE_SSE_PACKED_SINGLE": (Precision.FLOAT32, 4),
    "SIMD_FP_256_PACKED_SINGLE": (Precision.FLOAT32, 8),
}
"""Normalized event name -> (precision, FLOPs per count)."""

COMBINED_FP_EVENTS = frozenset({"RETIRED_SSE_AVX_FLOPS_ALL", "FP_RET_SSE_AVX_OPS_ALL"})
"""Events that count FP operations of every width together (AMD Zen 2-4)."""

PERF_INTEL_EVENTS = tuple(
    f"fp_arith_inst_retired.{w.lower()}_{p}"
    for p in ("double", "single")
    for w in ("SCALAR", "128B_PACKED", "256B_PACKED", "512B_PACKED")
)
PERF_AMD_EVENTS = ("fp_ret_sse_avx_ops.all",)

# Intel family 6 model numbers of Xeon Phi: Knights Landing 0x57, Knights Mill 0x85.
_XEON_PHI_MODELS = frozenset({0x57, 0x85})


class Separability(Enum):
    """Can the counters of this CPU tell FP64 from FP32?"""

    SEPARABLE = "separable"
    NOT_SEPARABLE = "not_separable"
    UNKNOWN = "unknown"  # no known FP events


def normalize_event(name: str) -> str:
    """``fp_arith_inst_retired.scalar_double:u`` -> ``FP_ARITH_INST_RETIRED_SCALAR_DOUBLE``."""
    base = name.strip()
    if "/" in base:  # hybrid PMU prefix: cpu_core/event/
        parts = [p for p in base.split("/") if p]
        base = parts[1] if len(parts) > 1 else parts[0]
    base = base.split(":")[0]
    return base.replace(".", "_").replace("-", "_").upper()


def separability_from_text(cpu_text: str) -> Separability:
    """Classify from a CPU description (LIKWID's ``CPU type`` line or a model name)."""
    text = cpu_text.lower()
    if "knights landing" in text or "knights mill" in text or "xeon phi" in text:
        return Separability.NOT_SEPARABLE
    if any(z in text for z in ("zen2", "zen 2", "zen3", "zen 3", "zen4", "zen 4", "k17", "k19")):
        return Separability.NOT_SEPARABLE
    if "intel" in text:
        return Separability.SEPARABLE
    return Separability.UNKNOWN


def separability(host: HostInfo) -> Separability:
    """Classify the host from its vendor, family and model (``/proc/cpuinfo``)."""
    vendor = host.cpu_vendor
    if vendor == "GenuineIntel":
        if host.cpu_family == 6 and host.cpu_model_number in _XEON_PHI_MODELS:
            return Separability.NOT_SEPARABLE
        return Separability.SEPARABLE
    if vendor in ("AuthenticAMD", "HygonGenuine"):
        # family 0x17 (Zen 1/2), 0x19 (Zen 3/4); Zen 1's split events are not used here.
        return (
            Separability.NOT_SEPARABLE
            if host.cpu_family in (0x17, 0x19, 0x1A)
            else (Separability.UNKNOWN)
        )
    return separability_from_text(host.cpu_model)
