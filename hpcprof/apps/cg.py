"""HPCG-like conjugate gradient on the 27-point stencil operator (diag 26, off-diag -1).

The NumPy version applies the operator matrix-free on a zero-padded grid as
``A x = 27 x - (sum of the 27 shifted copies)``: 28 FLOPs per point. The C version loops
over the stored-coefficient form: 2 FLOPs per nonzero, ``nnz = (3n-2)^3``.
"""

from __future__ import annotations

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, c_twin, real_dtype
from hpcprof.results.records import Precision

ITERATIONS = 50


def apply_operator(xp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = A x`` for the padded ``xp`` (shape (n+2)^3, zero halo); returns ``out``."""
    n = out.shape[0]
    np.copyto(out, xp[0:n, 0:n, 0:n])
    for di in range(3):
        for dj in range(3):
            for dk in range(3):
                if di or dj or dk:
                    out += xp[di : di + n, dj : dj + n, dk : dk + n]
    centre = xp[1:-1, 1:-1, 1:-1] * xp.dtype.type(27)
    np.subtract(centre, out, out=out)
    return out


def conjugate_gradient(b: np.ndarray, iterations: int) -> np.ndarray:
    """Unpreconditioned CG from x = 0 for a fixed number of iterations."""
    n = b.shape[0]
    dtype = b.dtype
    x = np.zeros_like(b)
    r = b.copy()
    padded = np.zeros((n + 2,) * 3, dtype=dtype)
    p = padded[1:-1, 1:-1, 1:-1]
    np.copyto(p, r)
    ap = np.empty_like(b)
    tmp = np.empty_like(b)
    rr = np.dot(r.ravel(), r.ravel())
    for _ in range(iterations):
        apply_operator(padded, ap)
        alpha = rr / np.dot(p.ravel(), ap.ravel())
        np.multiply(p, alpha, out=tmp)
        x += tmp
        np.multiply(ap, alpha, out=tmp)
        r -= tmp
        rr_new = np.dot(r.ravel(), r.ravel())
        beta = rr_new / rr
        rr = rr_new
        p *= beta
        p += r
    return x


def relative_residual(b: np.ndarray, x: np.ndarray) -> float:
    """``||b - A x|| / ||b||`` in float64."""
    n = b.shape[0]
    padded = np.zeros((n + 2,) * 3)
    padded[1:-1, 1:-1, 1:-1] = x
    ax = apply_operator(padded, np.empty((n, n, n)))
    b64 = b.astype(np.float64)
    return float(np.linalg.norm(b64 - ax) / np.linalg.norm(b64))


def cg_kernel(n: int, precision: Precision, region: Region) -> float:
    """Solve ``A x = A 1`` with CG; return the true relative residual."""
    dtype = np.dtype(real_dtype(precision))
    padded = np.zeros((n + 2,) * 3, dtype=dtype)
    padded[1:-1, 1:-1, 1:-1] = 1
    b = apply_operator(padded, np.empty((n, n, n), dtype=dtype))
    with region:
        x = conjugate_gradient(b, ITERATIONS)
    return relative_residual(b, x)


def _numpy_flops(n: int) -> float:
    points = float(n**3)
    return 2 * points + ITERATIONS * (38 * points + 2)


def _c_flops(n: int) -> float:
    points = float(n**3)
    nnz = float((3 * n - 2) ** 3)
    return 2 * points + ITERATIONS * (2 * nnz + 10 * points + 2)


def _bytes(n: int, itemsize: int) -> float:
    # per iteration: operator reads p, writes Ap; 5 vector sweeps of 2-3 arrays (~13 words)
    return ITERATIONS * 15.0 * n**3 * itemsize


_NUMPY = AppInfo(
    name="cg",
    summary="HPCG-like CG, 27-point stencil, 50 iterations (NumPy)",
    kind=AppKind.NUMPY,
    size_doc="grid points per side n (n^3 unknowns)",
    default_size=32,
    small_size=12,
    flops=_numpy_flops,
    bytes_moved=_bytes,
    tolerance=(1e-3, 1e-3),
    kernel=cg_kernel,
)
APPS = (
    _NUMPY,
    c_twin(
        _NUMPY,
        c_source="cg.c",
        c_args=lambda n: (str(n), str(ITERATIONS)),
        default_size=48,
        small_size=10,
        flops=_c_flops,
    ),
)
