"""The software and hardware that a run's bits depend on, recorded next to its results.

Training on the CPU is bit-reproducible for a given software stack and CPU vector ISA: the
same command gives the same ``metrics.csv``. What changes the bits is recorded here: the
torch build, the vector ISA torch's kernels dispatch to (``AVX512``, ``AVX2``, ...), the BLAS
and its version, the intra-op threads per worker, the GPU, and the environment variables
that select code paths. ``environment.json`` holds the record of the first call and, when a
run is resumed under a different one, each differing record too.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from precision.common.files import atomic_write_text

ENVIRONMENT_SCHEMA = 1

#: Variables that select numerical code paths in torch, its BLAS or this package.
VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "PRECISION_KERNEL",
    "TORCHINDUCTOR_CACHE_DIR",
    "NVIDIA_TF32_OVERRIDE",
    "CUBLAS_WORKSPACE_CONFIG",
)


@dataclass(frozen=True)
class NumericEnvironment:
    """What a run's results depend on, beyond its configuration.

    Attributes:
        torch: torch version.
        numpy: NumPy version.
        python: Python version.
        cpu: the processor's model name.
        cpu_capability: the vector ISA torch's CPU kernels use (``AVX512``, ``AVX2``, ...).
        blas: the BLAS torch calls, with its version (e.g. ``MKL 2024.2``).
        threads_per_worker: intra-op threads of each worker process.
        device: ``cpu``, or the GPU's name.
        variables: the set ones among :data:`VARIABLES`, as ``NAME=value``.
    """

    torch: str
    numpy: str
    python: str
    cpu: str
    cpu_capability: str
    blas: str
    threads_per_worker: int
    device: str
    variables: tuple[str, ...]

    @classmethod
    def capture(cls, threads_per_worker: int, device_type: str) -> NumericEnvironment:
        """The environment of this process, for workers with ``threads_per_worker``
        threads computing on ``device_type`` (``cpu`` or ``cuda``)."""
        device = "cpu"
        if device_type == "cuda" and torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
        return cls(
            torch=torch.__version__,
            numpy=np.__version__,
            python=platform.python_version(),
            cpu=_cpu_model(),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
            blas=_blas(torch.__config__.show()),
            threads_per_worker=threads_per_worker,
            device=device,
            variables=tuple(f"{k}={os.environ[k]}" for k in VARIABLES if k in os.environ),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variables"] = list(self.variables)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericEnvironment:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs["variables"] = tuple(kwargs.get("variables", ()))
        return cls(**kwargs)

    def differences(self, other: NumericEnvironment) -> list[str]:
        """``field: mine -> other's`` for every field that differs."""
        out = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out.append(f"{f.name}: {_show(a)} -> {_show(b)}")
        return out

    def describe(self) -> str:
        """One line for a report."""
        where = self.device if self.device != "cpu" else f"{self.cpu} ({self.cpu_capability})"
        line = (
            f"torch {self.torch}, {self.blas}, {where}, "
            f"{self.threads_per_worker} thread(s) per worker"
        )
        return line + (f", {' '.join(self.variables)}" if self.variables else "")


def _show(v: object) -> str:
    if isinstance(v, tuple):
        return " ".join(v) or "(none)"
    return str(v)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _blas(config: str) -> str:
    """``MKL <version>``, or the build's ``BLAS_INFO``, from ``torch.__config__.show()``."""
    mkl = re.search(r"Math Kernel Library Version ([0-9][0-9.]*)", config)
    if mkl:
        return f"MKL {mkl.group(1).rstrip('.')}"
    info = re.search(r"BLAS_INFO=([^,\s]+)", config)
    return info.group(1) if info else "unknown"


def record_environment(path: Path, env: NumericEnvironment) -> list[str]:
    """Write ``env`` to ``path`` (``environment.json``), keeping what is there.

    A new file holds ``env`` alone. When the file exists (a resumed run) and ``env``
    differs from its first record, ``env`` is appended to its ``resumed_under`` list.

    Returns:
        The differences from the first record (empty when the same or new).
    """
    path = Path(path)
    if not path.exists():
        doc: dict[str, Any] = {"schema": ENVIRONMENT_SCHEMA, "first": env.to_dict()}
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
        return []
    doc = json.loads(path.read_text())
    first = NumericEnvironment.from_dict(doc["first"])
    diff = first.differences(env)
    if diff:
        later = doc.setdefault("resumed_under", [])
        if env.to_dict() not in later:
            later.append(env.to_dict())
            atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return diff


def load_environment(path: Path) -> tuple[NumericEnvironment | None, int]:
    """The first record of ``environment.json`` and how many different ones followed it
    (None, 0 for a run directory written before environments were recorded)."""
    path = Path(path)
    if not path.exists():
        return None, 0
    doc = json.loads(path.read_text())
    return NumericEnvironment.from_dict(doc["first"]), len(doc.get("resumed_under", []))
