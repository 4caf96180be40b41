"""STREAM-like triad ``a = b + s*c``: 2 FLOPs and three streamed words per element."""

from __future__ import annotations

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, c_twin, real_dtype
from hpcprof.results.records import Precision

SWEEPS = 10


def triad_kernel(n: int, precision: Precision, region: Region) -> float:
    """Run SWEEPS triads over ``n`` elements; return max relative error vs float64."""
    dtype = np.dtype(real_dtype(precision))
    rng = np.random.default_rng(0)
    b = rng.random(n).astype(dtype)
    c = rng.random(n).astype(dtype)
    a = np.empty(n, dtype=dtype)
    s = dtype.type(3.0 / 7.0)
    with region:
        for _ in range(SWEEPS):
            np.multiply(c, s, out=a)
            np.add(a, b, out=a)
    ref = b.astype(np.float64) + np.float64(s) * c.astype(np.float64)
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def _flops(n: int) -> float:
    return 2.0 * n * SWEEPS


def _bytes(n: int, itemsize: int) -> float:
    return 3.0 * n * itemsize * SWEEPS


_NUMPY = AppInfo(
    name="triad",
    summary="STREAM-like triad a = b + s*c (NumPy)",
    kind=AppKind.NUMPY,
    size_doc="vector length",
    default_size=4_000_000,
    small_size=50_000,
    flops=_flops,
    bytes_moved=_bytes,
    tolerance=(1e-14, 1e-6),
    kernel=triad_kernel,
)
APPS = (_NUMPY, c_twin(_NUMPY, c_source="triad.c", c_args=lambda n: (str(n), str(SWEEPS))))
