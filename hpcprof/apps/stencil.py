"""7-point Jacobi stencil on an n^3 grid: 7 FLOPs per interior point per sweep."""

from __future__ import annotations

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, c_twin, real_dtype
from hpcprof.results.records import Precision

SWEEPS = 10


def jacobi(u: np.ndarray, f: np.ndarray, sweeps: int) -> np.ndarray:
    """``sweeps`` Jacobi sweeps of v = (sum of 6 neighbours + f) / 6; boundary held fixed."""
    u = u.copy()  # never write into the caller's array: it feeds the reference
    v = u.copy()
    sixth = u.dtype.type(1.0 / 6.0)
    for _ in range(sweeps):
        inner = v[1:-1, 1:-1, 1:-1]
        np.add(u[:-2, 1:-1, 1:-1], u[2:, 1:-1, 1:-1], out=inner)
        inner += u[1:-1, :-2, 1:-1]
        inner += u[1:-1, 2:, 1:-1]
        inner += u[1:-1, 1:-1, :-2]
        inner += u[1:-1, 1:-1, 2:]
        inner += f[1:-1, 1:-1, 1:-1]
        inner *= sixth
        u, v = v, u
    return u


def stencil_kernel(n: int, precision: Precision, region: Region) -> float:
    """Run the sweeps at ``precision``; return max relative error vs the float64 sweeps."""
    dtype = np.dtype(real_dtype(precision))
    rng = np.random.default_rng(0)
    u0 = rng.random((n, n, n)).astype(dtype)
    f = (rng.random((n, n, n)) * 0.1).astype(dtype)
    with region:
        u = jacobi(u0, f, SWEEPS)
    ref = jacobi(u0.astype(np.float64), f.astype(np.float64), SWEEPS)
    return float(np.max(np.abs(u - ref)) / np.max(np.abs(ref)))


def _flops(n: int) -> float:
    return 7.0 * max(n - 2, 0) ** 3 * SWEEPS


def _bytes(n: int, itemsize: int) -> float:
    # u read, f read, v written once per sweep (neighbours come from cache).
    return 3.0 * n**3 * itemsize * SWEEPS


_NUMPY = AppInfo(
    name="stencil",
    summary="7-point Jacobi stencil, 10 sweeps (NumPy)",
    kind=AppKind.NUMPY,
    size_doc="grid points per side n (n^3 grid)",
    default_size=128,
    small_size=16,
    flops=_flops,
    bytes_moved=_bytes,
    tolerance=(1e-14, 1e-5),
    kernel=stencil_kernel,
)
APPS = (_NUMPY, c_twin(_NUMPY, c_source="stencil.c", c_args=lambda n: (str(n), str(SWEEPS))))
