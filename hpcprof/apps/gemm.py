"""Dense GEMM ``C = A @ B`` on n x n matrices: 2 n^3 FLOPs."""

from __future__ import annotations

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, c_twin, real_dtype
from hpcprof.results.records import Precision


def freivalds_error(a: np.ndarray, b: np.ndarray, c: np.ndarray, seed: int = 1) -> float:
    """Relative max error of ``C x`` against ``A (B x)`` in float64 (Freivalds' test)."""
    x = np.random.default_rng(seed).random(c.shape[1]) - 0.5
    ref = a.astype(np.float64) @ (b.astype(np.float64) @ x)
    got = c.astype(np.float64) @ x
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def gemm_kernel(n: int, precision: Precision, region: Region) -> float:
    """Multiply two random n x n matrices through NumPy's BLAS."""
    dtype = np.dtype(real_dtype(precision))
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    with region:
        c = a @ b
    return freivalds_error(a, b, c)


def _flops(n: int) -> float:
    return 2.0 * n**3


def _bytes(n: int, itemsize: int) -> float:
    return 3.0 * n * n * itemsize


_NUMPY = AppInfo(
    name="gemm",
    summary="dense matrix multiply C = A @ B (NumPy BLAS)",
    kind=AppKind.NUMPY,
    size_doc="matrix order n",
    default_size=1024,
    small_size=64,
    flops=_flops,
    bytes_moved=_bytes,
    tolerance=(1e-12, 1e-4),
    kernel=gemm_kernel,
)
APPS = (
    _NUMPY,
    c_twin(
        _NUMPY,
        c_source="gemm.c",
        c_args=lambda n: (str(n),),
        summary="dense matrix multiply, i-k-j loops (C)",
        default_size=384,
        small_size=48,
    ),
)
