"""Machine models as data: core counts, clocks, peak FLOP/s per width and memory bandwidths.

A :class:`Machine` is one frozen record; the built-in ones live in
:mod:`hpcprof.machines.data` with the datasheet each number comes from. Users add machines
from a TOML file (:func:`load_machines`); the measuring host is described on request by
:func:`host_machine`, with its ceilings measured by the built-in GEMM and triad kernels.

Machines file layout::

    [[machine]]
    name = "mybox"                     # letters, digits, '-', '_', '.'
    label = "Workstation, 16 cores"
    kind = "cpu"                       # cpu | gpu
    cores = 16                         # GPUs: streaming multiprocessors
    clock_ghz = 3.0
    source = "vendor datasheet XYZ"
    peak_gflops = { fp64 = 768.0, fp32 = 1536.0 }
    memory = [ { kind = "ddr", bandwidth_gbs = 89.6, capacity_gb = 64 } ]

``capacity_gb`` is in 1e9 bytes, as datasheets quote it (``capacity_gib``, 2**30 bytes, is
also accepted and converted).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hpcprof.errors import MachineFileError, UnknownNameError
from precision.common.registry import Registry
from precision.common.tomlfile import check_unique, load_toml, table_array


class MachineKind(Enum):
    """Processor class."""

    CPU = "cpu"
    GPU = "gpu"


class Peak(Enum):
    """Which arithmetic a peak FLOP/s figure is for."""

    FP64 = "fp64"  # vector (SIMD / CUDA-core) double precision
    FP64_MATRIX = "fp64_matrix"  # double-precision tensor cores
    FP32 = "fp32"  # vector single precision
    TF32_MATRIX = "tf32_matrix"  # tensor cores on float32 inputs rounded to TF32
    FP16 = "fp16"  # vector half-precision arithmetic
    FP16_MATRIX = "fp16_matrix"  # FP16 / BF16 tensor cores (dense)
    # Special-purpose units, used (like the matrix peaks) only when asked for:
    FP32_4FMAPS = "fp32_4fmaps"  # Knights Mill AVX512_4FMAPS (chains of 4 FMAs) float32
    BF16_DOT = "bf16_dot"  # AVX512_BF16 dot products (vdpbf16ps): bf16 in, float32 out


class MemoryKind(Enum):
    """Memory technology a bandwidth belongs to."""

    DDR = "ddr"
    MCDRAM = "mcdram"
    HBM = "hbm"
    MEASURED = "measured"  # bandwidth measured by the triad kernel on this host


@dataclass(frozen=True, kw_only=True)
class Memory:
    """One memory a machine can run from.

    Args:
        kind: technology.
        bandwidth_gbs: bandwidth, 1e9 bytes per second.
        capacity_gb: capacity in 1e9 bytes (the vendor's "GB"), or None when unknown.
    """

    kind: MemoryKind
    bandwidth_gbs: float
    capacity_gb: float | None = None

    def __post_init__(self) -> None:
        if not self.bandwidth_gbs > 0:
            raise ValueError(f"memory {self.kind.value}: bandwidth_gbs must be > 0")


@dataclass(frozen=True, kw_only=True)
class Machine:
    """One machine model. Peaks are GFLOP/s of the whole chip, bandwidths GB/s.

    Args:
        name: registry name (``knl-7250``).
        label: human-readable description.
        kind: CPU or GPU.
        cores: cores (GPUs: streaming multiprocessors).
        clock_ghz: clock the peaks were derived at.
        peaks: (Peak, GFLOP/s) pairs; widths the machine lacks are left out.
        memories: memories, the first being the default for predictions.
        source: where the numbers come from (datasheet names, or ``measured``).
    """

    name: str
    label: str
    kind: MachineKind
    cores: int | None
    clock_ghz: float | None
    peaks: tuple[tuple[Peak, float], ...]
    memories: tuple[Memory, ...]
    source: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"machine name {self.name!r}: use letters, digits, '-', '_', '.'")
        if not self.memories:
            raise ValueError(f"machine {self.name}: needs at least one memory")
        for peak, value in self.peaks:
            if not value > 0:
                raise ValueError(f"machine {self.name}: peak {peak.value} must be > 0")

    def peak(self, which: Peak) -> float | None:
        """Peak GFLOP/s for ``which``, or None when the machine has no such unit."""
        return dict(self.peaks).get(which)

    def memory(self, kind: MemoryKind | None = None) -> Memory:
        """The memory of ``kind`` (default: the first listed).

        Raises:
            ValueError: the machine has no memory of that kind.
        """
        if kind is None:
            return self.memories[0]
        for mem in self.memories:
            if mem.kind is kind:
                return mem
        have = ", ".join(m.kind.value for m in self.memories)
        raise ValueError(f"machine {self.name} has no {kind.value} memory (has: {have})")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def machine_registry(machines: Iterable[Machine]) -> Registry[Machine]:
    """A name -> Machine registry; a duplicate name raises DuplicateNameError (a ValueError),
    an unknown one :class:`~hpcprof.errors.UnknownNameError`."""
    return Registry("machine", machines, error=UnknownNameError)


_MACHINE_KEYS = ("name", "label", "kind", "cores", "clock_ghz", "source", "peak_gflops", "memory")
_MEMORY_KEYS = ("kind", "bandwidth_gbs", "capacity_gb", "capacity_gib")
_GIB_IN_GB = 2**30 / 1e9


def load_machines(path: str | os.PathLike[str]) -> tuple[Machine, ...]:
    """Read user machine models from a TOML file (layout in the module docstring).

    Raises:
        MachineFileError: the file cannot be read or a key is missing or malformed; the
            one-line message names the file, the key and what is allowed.
    """
    p = Path(path)
    data = load_toml(p, what="machines file", error=MachineFileError, allowed=("machine",))
    raw = table_array(data, "machine", p, error=MachineFileError)
    machines = tuple(_parse_machine(item, i, p) for i, item in enumerate(raw))
    check_unique((m.name for m in machines), p, "machine", error=MachineFileError)
    return machines


def _number(value: object, path: Path, key: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise MachineFileError(f"{path}: key '{key}' must be a positive number, got {value!r}")
    return float(value)


def _enum(cls: type[Enum], value: object, path: Path, key: str) -> Any:
    allowed = ", ".join(str(e.value) for e in cls)
    try:
        return cls(value)
    except ValueError:
        raise MachineFileError(f"{path}: key '{key}'={value!r}: choose from {allowed}") from None


def _capacity(mem: Mapping[str, Any], path: Path, where: str) -> float | None:
    """Capacity in GB from ``capacity_gb`` or ``capacity_gib`` (converted); not both."""
    if "capacity_gb" in mem and "capacity_gib" in mem:
        raise MachineFileError(f"{path}: {where}: give capacity_gb or capacity_gib, not both")
    if "capacity_gib" in mem:
        gib = _number(mem["capacity_gib"], path, f"{where}.capacity_gib")
        return None if gib is None else gib * _GIB_IN_GB
    return _number(mem.get("capacity_gb"), path, f"{where}.capacity_gb", optional=True)


def _parse_machine(raw: object, index: int, path: Path) -> Machine:
    where = f"machine[{index}]"
    if not isinstance(raw, dict):
        raise MachineFileError(f"{path}: {where} must be a table")
    unknown = sorted(set(raw) - set(_MACHINE_KEYS))
    if unknown:
        raise MachineFileError(
            f"{path}: {where}: unknown key {unknown[0]!r} (allowed: {', '.join(_MACHINE_KEYS)})"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise MachineFileError(f"{path}: {where}.name must be a name like 'my-node', got {name!r}")
    where = f"machine {name}"
    peaks = _parse_peaks(raw.get("peak_gflops", {}), path, where)
    memories = _parse_memories(raw.get("memory"), path, where)
    cores = raw.get("cores")
    if cores is not None and (isinstance(cores, bool) or not isinstance(cores, int) or cores < 1):
        raise MachineFileError(f"{path}: {where}: key 'cores' must be an integer >= 1")
    label, source = raw.get("label", name), raw.get("source", "user machines file")
    if not isinstance(label, str) or not isinstance(source, str):
        raise MachineFileError(f"{path}: {where}: keys 'label' and 'source' must be strings")
    return Machine(
        name=name,
        label=label,
        kind=_enum(MachineKind, raw.get("kind", "cpu"), path, f"{where}.kind"),
        cores=cores,
        clock_ghz=_number(raw.get("clock_ghz"), path, f"{where}.clock_ghz", optional=True),
        peaks=peaks,  # type: ignore[arg-type]
        memories=memories,
        source=f"{source} ({path})",
    )


def _parse_peaks(peaks_raw: object, path: Path, where: str) -> tuple[tuple[Peak, Any], ...]:
    if not isinstance(peaks_raw, dict):
        raise MachineFileError(f"{path}: {where}: key 'peak_gflops' must be a table")
    return tuple(
        (
            _enum(Peak, k, path, f"{where}.peak_gflops.{k}"),
            _number(v, path, f"{where}.peak_gflops.{k}"),
        )
        for k, v in peaks_raw.items()
    )


def _parse_memories(mem_raw: object, path: Path, where: str) -> tuple[Memory, ...]:
    if (
        not isinstance(mem_raw, list)
        or not mem_raw
        or not all(isinstance(m, dict) for m in mem_raw)
    ):
        raise MachineFileError(
            f"{path}: {where}: key 'memory' must be a non-empty list of tables "
            "like {{ kind = 'ddr', bandwidth_gbs = 100 }}"
        )
    memories = []
    for j, mem in enumerate(mem_raw):
        bad = sorted(set(mem) - set(_MEMORY_KEYS))
        if bad:
            raise MachineFileError(
                f"{path}: {where}.memory[{j}]: unknown key {bad[0]!r} "
                f"(allowed: {', '.join(_MEMORY_KEYS)})"
            )
        memories.append(
            Memory(
                kind=_enum(MemoryKind, mem.get("kind"), path, f"{where}.memory[{j}].kind"),
                bandwidth_gbs=_number(
                    mem.get("bandwidth_gbs"), path, f"{where}.memory[{j}].bandwidth_gbs"
                )
                or 0.0,
                capacity_gb=_capacity(mem, path, f"{where}.memory[{j}]"),
            )
        )
    return tuple(memories)
