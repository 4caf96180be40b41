"""Randomized generalized LU low-rank approximation (arXiv 1910.00223).

``A ~ (A V) (U^T A V)^+ (U^T A)`` with a right sketch ``V`` (n x r) and a left sketch ``U``
(n x l, l = 2r), drawn from a Gaussian ensemble or as an SRHT (subsampled randomized
Hadamard transform: random signs, a normalized Walsh-Hadamard transform, r sampled columns).
The pseudo-inverse is applied through a QR factorization of the small l x r core.

Test matrix: ``A = X diag(s) Y^T`` (n x n, Haar-random X, Y) with singular values
``s_i = 10^(-DECADES (i-1)/k)``, target rank ``k = max(2, n/8)``, sketch rank ``r = k + k/4 + 2``.
Self-check: ``||A - A_hat||_F / ||A - A_k||_F`` where ``A_k`` is the truncated SVD (the
optimum of rank k, known from ``s``); a precision whose rounding error exceeds the spectrum's
tail at rank k fails it.
"""

from __future__ import annotations

import math

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Kernel, Region, real_dtype
from hpcprof.apps.linalg import Arith, Round, qr_flops
from hpcprof.results.records import Precision

DECADES = 3.0
SKETCHES = ("gaussian", "srht")


def ranks(n: int) -> tuple[int, int, int]:
    """(target rank k, right sketch width r, left sketch width l) for order n."""
    k = max(2, n // 8)
    r = min(n, k + k // 4 + 2)
    return k, r, min(n, 2 * r)


def test_matrix(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(A, singular values) of the float64 test matrix of order n."""
    rng = np.random.default_rng(seed)
    k, _, _ = ranks(n)
    s = 10.0 ** (-DECADES * np.arange(n) / k)
    x, _ = np.linalg.qr(rng.standard_normal((n, n)))
    y, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (x * s) @ y.T, s


def fwht(x: np.ndarray, ar: Arith) -> np.ndarray:
    """Normalized Walsh-Hadamard transform of each row (length a power of two); each
    butterfly stage is rounded."""
    rows, length = x.shape
    h = 1
    while h < length:
        y = x.reshape(rows, length // (2 * h), 2, h)
        x = ar.r(np.concatenate([y[:, :, :1] + y[:, :, 1:], y[:, :, :1] - y[:, :, 1:]], axis=2))
        x = x.reshape(rows, length)
        h *= 2
    return ar.r(x / math.sqrt(length))


class Sketch:
    """A right sketch ``A -> A S`` (S: n x width), Gaussian or SRHT, drawn from ``rng``."""

    def __init__(self, kind: str, n: int, width: int, rng: np.random.Generator, ar: Arith) -> None:
        if kind not in SKETCHES:
            raise ValueError(f"sketch {kind!r}: must be one of {', '.join(SKETCHES)}")
        self.kind, self.n, self.ar = kind, n, ar
        self.pad = 1 << max(0, (n - 1).bit_length())
        if kind == "gaussian":
            self.matrix = ar.r(rng.standard_normal((n, width)) / math.sqrt(width))
        else:
            self.signs = rng.choice(np.array([-1.0, 1.0]), size=n)
            self.cols = np.sort(rng.choice(self.pad, size=width, replace=False))
            self.scale = math.sqrt(self.pad / width)

    def apply(self, a: np.ndarray) -> np.ndarray:
        """``a S`` for ``a`` with n columns."""
        if self.kind == "gaussian":
            return self.ar.mm(a, self.matrix)
        padded = np.zeros((a.shape[0], self.pad), dtype=self.ar.dtype)
        padded[:, : self.n] = a * self.signs
        return self.ar.r(fwht(padded, self.ar)[:, self.cols] * self.scale)


def generalized_lu(a: np.ndarray, sketch: str, ar: Arith, seed: int = 1) -> np.ndarray:
    """The rank-r approximation ``(A V)(U^T A V)^+ (U^T A)`` of a square ``a``."""
    n = a.shape[0]
    _, r, w = ranks(n)
    rng = np.random.default_rng(seed)
    right = Sketch(sketch, n, r, rng, ar)
    left = Sketch(sketch, n, w, rng, ar)
    av = right.apply(a)  # n x r
    uta = left.apply(a.T).T  # l x n
    core = left.apply(av.T).T  # l x r = U^T A V
    q, rr = ar.qr(core)
    x = ar.solve_triangular(rr, ar.mm(q.T, uta), lower=False)  # r x n
    return ar.mm(av, x)


def optimum(s: np.ndarray) -> float:
    """``||A - A_k||_F`` of the truncated SVD at the target rank."""
    k, _, _ = ranks(s.size)
    return float(np.sqrt(np.sum(s[k:] ** 2)))


def _kernel(sketch: str) -> Kernel:
    def kernel(n: int, precision: Precision, region: Region) -> float:
        a64, s = test_matrix(n)
        ar = Arith(np.dtype(real_dtype(precision)))
        a = ar.r(a64)
        with region:
            approx = generalized_lu(a, sketch, ar)
        return float(np.linalg.norm(a64 - approx.astype(np.float64)) / optimum(s))

    kernel.__doc__ = f"Generalized LU with a {sketch} sketch; error relative to the optimum."
    return kernel


def emulated(n: int, rnd: Round) -> float:
    """Gaussian generalized LU with every operation rounded by ``rnd``; returns
    ``||A_hat - A_hat64||_F / ||A||_F`` against float64 arithmetic on the same rounded A."""
    a64, _ = test_matrix(n)
    a = rnd(a64)
    got = generalized_lu(a, "gaussian", Arith(rnd=rnd))
    ref = generalized_lu(a, "gaussian", Arith(np.float64))
    return float(np.linalg.norm(got - ref) / np.linalg.norm(a))


def flops(n: int, sketch: str = "gaussian") -> float:
    """FLOPs of :func:`generalized_lu` at order n."""
    _, r, w = ranks(n)
    if sketch == "gaussian":
        sketching = 2.0 * n * n * r + 2.0 * n * n * w + 2.0 * n * w * r
    else:
        pad = 1 << max(0, (n - 1).bit_length())
        stages = max(1, pad.bit_length() - 1)
        sketching = (2 * n + r) * (pad * stages + 2.0 * pad)  # butterflies, signs, scaling
    return sketching + qr_flops(w, r) + 2.0 * w * r * n + r * r * n + 2.0 * n * r * n


def _bytes(n: int, itemsize: int) -> float:
    _, r, w = ranks(n)
    return (2.0 * n * n + 2.0 * n * (r + w)) * itemsize  # A read twice, sketches, A_hat out


def _info(sketch: str) -> AppInfo:
    suffix = "" if sketch == "gaussian" else f"-{sketch}"
    return AppInfo(
        name=f"glu{suffix}",
        summary=f"randomized generalized LU low-rank approximation, {sketch} sketch (NumPy)",
        kind=AppKind.NUMPY,
        size_doc="matrix order n (target rank n/8)",
        default_size=1024,
        small_size=64,
        flops=lambda n: flops(n, sketch),
        bytes_moved=_bytes,
        tolerance=(2.0, 2.0),
        kernel=_kernel(sketch),
    )


APPS = tuple(_info(s) for s in SKETCHES)
