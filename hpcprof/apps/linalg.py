"""Dense kernels shared by the randomized and communication-avoiding linear-algebra apps.

One :class:`Arith` runs every operation either natively in a NumPy dtype (LAPACK/BLAS through
NumPy and SciPy, float64 or float32) or emulated: values carried in float64 and rounded by
``rnd`` (one :func:`precision.quantize.quantize` call) after each core operation, so each app
writes its algorithm once for ``hpcprof run`` and ``hpcprof bits-needed``. In the emulated
mode a matrix product rounds its result once, a Householder QR rounds after each reflector
is formed and applied, a Cholesky factorization after each column, a triangular solve after
each row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg

Round = Callable[[np.ndarray], np.ndarray]


class Arith:
    """Arithmetic of one run: native in ``dtype``, or float64 rounded by ``rnd``.

    Args:
        dtype: NumPy dtype of the native mode (ignored when ``rnd`` is given).
        rnd: rounding function of the emulated mode.
    """

    def __init__(self, dtype: np.dtype | type = np.float64, rnd: Round | None = None) -> None:
        self.rnd = rnd
        self.dtype = np.dtype(np.float64 if rnd is not None else dtype)

    @property
    def emulated(self) -> bool:
        """True when every operation is rounded by ``rnd``."""
        return self.rnd is not None

    def r(self, x: np.ndarray) -> np.ndarray:
        """Cast (native) or round (emulated) an array."""
        x = np.asarray(x, dtype=self.dtype)
        return self.rnd(x) if self.rnd is not None else x

    def mm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Rounded matrix product."""
        return self.r(a @ b)

    def qr(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Thin QR ``a = Q R`` (m >= n): LAPACK natively, Householder when emulated."""
        if self.rnd is None:
            # scipy's LAPACK wrappers keep float32 in float32 (sgeqrf); numpy.linalg computes
            # every real input in float64 and casts back, which callgrind counts as FP64.
            q, r = scipy.linalg.qr(a, mode="economic")
            return q, r
        return _householder_qr(a, self.rnd)

    def cholesky(self, a: np.ndarray) -> np.ndarray:
        """Lower Cholesky factor of a symmetric positive definite matrix."""
        if self.rnd is None:
            return np.asarray(scipy.linalg.cholesky(a, lower=True))  # (see qr: not numpy's)
        rnd = self.rnd
        n = a.shape[0]
        low = np.zeros_like(a)
        for j in range(n):
            d = rnd(np.array([a[j, j] - low[j, :j] @ low[j, :j]]))[0]
            low[j, j] = rnd(np.array([np.sqrt(d)]))[0]
            col = a[j + 1 :, j] - low[j + 1 :, :j] @ low[j, :j]
            low[j + 1 :, j] = rnd(rnd(col) / low[j, j])
        return low

    def solve_triangular(self, t: np.ndarray, b: np.ndarray, *, lower: bool) -> np.ndarray:
        """Solve ``t x = b`` for triangular ``t`` (b a vector or a matrix)."""
        if self.rnd is None:
            return np.asarray(scipy.linalg.solve_triangular(t, b, lower=lower))
        rnd = self.rnd
        n = t.shape[0]
        x = np.zeros_like(b, dtype=np.float64)
        order = range(n) if lower else range(n - 1, -1, -1)
        for i in order:
            acc = b[i] - t[i, :] @ x  # unsolved entries of x are still zero
            x[i] = rnd(np.atleast_1d(rnd(np.atleast_1d(acc)) / t[i, i])).reshape(np.shape(b[i]))
        return x


def _householder_qr(a: np.ndarray, rnd: Round) -> tuple[np.ndarray, np.ndarray]:
    """Householder QR with every reflector and every updated panel rounded."""
    m, n = a.shape
    r = rnd(np.array(a, dtype=np.float64))
    vs: list[np.ndarray] = []
    for j in range(n):
        x = r[j:, j]
        norm = np.sqrt(rnd(np.array([x @ x]))[0])
        v = x.copy()
        v[0] += norm if x[0] >= 0 else -norm
        v = rnd(v)
        vv = rnd(np.array([v @ v]))[0]
        if vv == 0.0:
            vs.append(np.zeros_like(v))
            continue
        v = rnd(v * np.sqrt(2.0 / vv))
        r[j:, j:] = rnd(r[j:, j:] - np.outer(v, rnd(v @ r[j:, j:])))
        vs.append(v)
    q = np.eye(m, n)
    for j in range(n - 1, -1, -1):
        v = vs[j]
        q[j:, :] = rnd(q[j:, :] - np.outer(v, rnd(v @ q[j:, :])))
    return q, np.triu(r[:n, :])


def qr_flops(m: float, n: float) -> float:
    """FLOPs of a thin Householder QR of an m x n matrix with Q formed explicitly."""
    n = min(m, n)
    return 2.0 * (2.0 * m * n * n - 2.0 * n**3 / 3.0)


def orthogonality(q: np.ndarray) -> float:
    """``||Q^T Q - I||_F`` in float64."""
    q64 = q.astype(np.float64)
    return float(np.linalg.norm(q64.T @ q64 - np.eye(q.shape[1])))
