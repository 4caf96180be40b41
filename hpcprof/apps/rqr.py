"""Generalized randomized rank-revealing QR of a product of matrices and inverses
(arXiv 1909.06524; the generalized RURV of Ballard, Demmel and Dumitriu).

``P = A_1^{m_1} ... A_k^{m_k}`` (``m_i = +1 or -1``) is factored as ``U R_1^{m_1} ... R_k^{m_k} V``
without forming any product or inverse: a Haar-random V and a QR (or, for an inverse last
factor, a QL of its transpose) of the last factor, then one QR (``m_i = +1``) or RQ
(``m_i = -1``) per remaining factor, right to left. ``U`` is the rank-revealing orthogonal
factor; the diagonal of the (unformed) triangular product is the product of the factors'
diagonals raised to ``m_i``.

Test product: ``P = A_1 A_2^{-1} A_3`` (n x n) whose singular values drop by ``GAP`` after
the first ``r = n/4``, each factor alone only by ``GAP^(1/3)``. Self-check, as one number that
passes at 1: the larger of ``||U^T U - I||_F / ORTH_TOL`` and the revealing factor
``f = ||R_22||_2 / sigma_{r+1}(P)`` over ``REVEAL_TOL n`` (``R_22 = U_tail^T P V^T``; a
rank-revealing factorization keeps f within a low-degree polynomial of n, randomized URV
about n). A precision whose rounding error is not far below ``GAP`` fails it.
"""

from __future__ import annotations

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, real_dtype
from hpcprof.apps.linalg import Arith, Round, orthogonality, qr_flops
from hpcprof.results.records import Precision

GAP = 1e-6
ORTH_TOL = 1e-4
REVEAL_TOL = 4.0
POWERS = (1, -1, 1)


def _haar(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def test_product(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Factors of ``A_1 A_2^{-1} A_3`` and the singular values of the product (float64)."""
    rng = np.random.default_rng(seed)
    rank = max(1, n // 4)
    q = [_haar(rng, n) for _ in range(4)]
    step = GAP ** (1.0 / 3.0)
    d = [np.where(np.arange(n) < rank, 1.0, step) * rng.uniform(1.0, 2.0, n) for _ in range(3)]
    a1 = (q[0] * d[0]) @ q[1].T
    a2 = (q[2] / d[1]) @ q[1].T  # A_2^{-1} = Q_1 diag(d_1) Q_2^T
    a3 = (q[2] * d[2]) @ q[3].T
    return [a1, a2, a3], np.sort(d[0] * d[1] * d[2])[::-1]


def _flip(x: np.ndarray) -> np.ndarray:
    return x[::-1, ::-1]


def rq(x: np.ndarray, ar: Arith) -> tuple[np.ndarray, np.ndarray]:
    """``x = R W`` with R upper triangular, W orthogonal (through a QR of ``(J x)^T``)."""
    q1, r1 = ar.qr(np.ascontiguousarray(x[::-1, :].T))
    return _flip(r1.T), q1.T[::-1, :]


def ql(x: np.ndarray, ar: Arith) -> tuple[np.ndarray, np.ndarray]:
    """``x = Q L`` with Q orthogonal, L lower triangular (through a QR of ``x J``)."""
    q1, r1 = ar.qr(np.ascontiguousarray(x[:, ::-1]))
    return q1[:, ::-1], _flip(r1)


def grurv(
    factors: list[np.ndarray], powers: tuple[int, ...], ar: Arith, seed: int = 1
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Generalized RURV: ``(U, [R_1..R_k])`` with ``prod A_i^{m_i} = U prod R_i^{m_i} V``."""
    n = factors[-1].shape[0]
    v = ar.r(_haar(np.random.default_rng(seed), n))
    rs: list[np.ndarray] = [np.empty(0)] * len(factors)
    last = factors[-1]
    if powers[-1] == 1:
        u, rs[-1] = ar.qr(ar.mm(last, v.T))  # A_k V^T = U R_k
    else:
        u, low = ql(ar.mm(last.T, v.T), ar)  # A_k^T V^T = U L: A_k^{-1} = U L^{-T} V
        rs[-1] = low.T
    for i in range(len(factors) - 2, -1, -1):
        if powers[i] == 1:
            u, rs[i] = ar.qr(ar.mm(factors[i], u))  # A_i U_next = U_i R_i
        else:
            rs[i], w = rq(ar.mm(u.T, factors[i]), ar)  # U_next^T A_i = R_i W
            u = w.T  # A_i^{-1} = W^T R_i^{-1} U_next^T
    return u, rs


def revealed_diagonal(rs: list[np.ndarray], powers: tuple[int, ...]) -> np.ndarray:
    """Diagonal of ``R_1^{m_1} ... R_k^{m_k}`` (triangular, so the diagonals multiply)."""
    diag = np.ones(rs[0].shape[0])
    for r, m in zip(rs, powers, strict=True):
        diag = diag * np.abs(np.diag(r).astype(np.float64)) ** m
    return diag


def revealing_factor(factors: list[np.ndarray], u: np.ndarray, sigma: np.ndarray) -> float:
    """``||U_tail^T P||_2 / sigma_{r+1}(P)`` in float64, applying P^T factor by factor."""
    n = u.shape[0]
    y = u[:, max(1, n // 4) :].astype(np.float64)
    for a, m in zip(factors, POWERS, strict=True):
        y = a.T @ y if m == 1 else np.linalg.solve(a.T, y)
    return float(np.linalg.norm(y, 2) / sigma[max(1, n // 4)])


def rqr_kernel(n: int, precision: Precision, region: Region) -> float:
    """Factor the test product; return the self-check (passes at <= 1)."""
    factors, sigma = test_product(n)
    ar = Arith(np.dtype(real_dtype(precision)))
    low = [ar.r(a) for a in factors]
    with region:
        u, _ = grurv(low, POWERS, ar)
    return check(factors, sigma, u)


def check(factors: list[np.ndarray], sigma: np.ndarray, u: np.ndarray) -> float:
    """``max(||U^T U - I||_F / ORTH_TOL, f / (REVEAL_TOL n))``: at most 1 when U is
    orthogonal and reveals the rank."""
    n = u.shape[0]
    f = revealing_factor(factors, u, sigma)
    return max(orthogonality(u) / ORTH_TOL, f / (REVEAL_TOL * n))


def emulated(n: int, rnd: Round) -> float:
    """GRURV with every operation rounded; returns the larger of ``||U^T U - I||_F`` and
    the sine of the largest angle between the revealed leading subspace and float64's."""
    factors, _ = test_product(n)
    low = [rnd(a) for a in factors]
    u, _ = grurv(low, POWERS, Arith(rnd=rnd))
    u64, _ = grurv(low, POWERS, Arith(np.float64))
    lead = max(1, n // 4)
    angle = float(np.linalg.norm(u[:, lead:].T @ u64[:, :lead], 2))
    return max(orthogonality(u), angle)


def flops(n: int) -> float:
    """FLOPs of :func:`grurv` on three n x n factors: three products and three QRs."""
    return len(POWERS) * (2.0 * n**3 + qr_flops(n, n))


APPS = (
    AppInfo(
        name="rqr",
        summary="generalized randomized rank-revealing QR of A1 A2^-1 A3, unformed (NumPy)",
        kind=AppKind.NUMPY,
        size_doc="matrix order n (rank n/4, then a 1e-6 gap)",
        default_size=512,
        small_size=48,
        flops=flops,
        bytes_moved=lambda n, itemsize: (len(POWERS) * 3.0 + 1.0) * n * n * itemsize,
        tolerance=(1.0, 1.0),
        kernel=rqr_kernel,
    ),
)
