"""Built-in apps with their arithmetic emulated in a narrower floating-point format.

Each emulated kernel takes a size and a rounding function ``rnd`` (one call of
:func:`precision.quantize.quantize` with a fixed format) and returns the app's self-check
error. Values are carried in float64 and ``rnd`` is applied to the inputs and to the result of
every core operation, so the error is that of an app whose arithmetic rounds to the format
(one rounding per operation, like an FMA). How each app rounds is recorded in its
:class:`EmulationInfo` (``rounding``) and printed with the results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpcprof.apps import caqr, cg, gemm, glu, krr, rqr, stencil
from hpcprof.errors import UnknownNameError
from precision.common.registry import Registry

Round = Callable[[np.ndarray], np.ndarray]
"""Rounds every element of a float64 array to the emulated format (returns float64)."""

DOT_BLOCK = 64  # elements per partial sum of an emulated dot product
GEMM_BLOCK = 8  # k-extent of one rounded partial-product block in the emulated GEMM


def _scalar(rnd: Round, value: float) -> float:
    return float(rnd(np.array([value], dtype=np.float64))[0])


def tree_sum(values: np.ndarray, rnd: Round) -> np.ndarray:
    """Sum along axis 0 pairwise, rounding every partial sum (log2 levels of rounding)."""
    level = rnd(values)
    while level.shape[0] > 1:
        if level.shape[0] % 2:
            level = np.concatenate([level, np.zeros_like(level[:1])])
        level = rnd(level[0::2] + level[1::2])
    return level[0]


def dot(x: np.ndarray, y: np.ndarray, rnd: Round) -> float:
    """Emulated dot product: products summed in blocks of DOT_BLOCK, each block sum rounded,
    then the block sums added pairwise with rounding."""
    prod = (x.ravel() * y.ravel()).astype(np.float64)
    pad = (-prod.size) % DOT_BLOCK
    blocks = np.concatenate([prod, np.zeros(pad)]).reshape(-1, DOT_BLOCK).sum(axis=1)
    return float(tree_sum(blocks, rnd))


def cg_emulated(n: int, rnd: Round) -> float:
    """CG of :mod:`hpcprof.apps.cg` (50 iterations) rounding after every matvec, dot product,
    scalar division and axpy; returns the true relative residual in float64. Stops early
    only when the rounded residual is exactly zero."""
    padded = np.zeros((n + 2,) * 3)
    padded[1:-1, 1:-1, 1:-1] = 1.0
    b = rnd(cg.apply_operator(padded, np.empty((n, n, n))))
    x = np.zeros_like(b)
    r = b.copy()
    pad_p = np.zeros((n + 2,) * 3)
    p = pad_p[1:-1, 1:-1, 1:-1]
    p[...] = r
    ap = np.empty_like(b)
    rr = dot(r, r, rnd)
    for _ in range(cg.ITERATIONS):
        ap = rnd(cg.apply_operator(pad_p, ap))
        alpha = _scalar(rnd, rr / dot(p, ap, rnd))
        x = rnd(x + alpha * p)
        r = rnd(r - alpha * ap)
        rr_new = dot(r, r, rnd)
        if rr_new == 0.0:  # converged exactly; a further step would divide by zero
            break
        beta = _scalar(rnd, rr_new / rr)
        rr = rr_new
        p[...] = rnd(r + beta * p)
    return cg.relative_residual(b, x)


def gemm_emulated(n: int, rnd: Round) -> float:
    """``C = A @ B`` accumulated over k in blocks of GEMM_BLOCK: each block's partial product
    is rounded, and so is the running sum after adding each block. Returns Freivalds' error
    against float64 arithmetic on the same (rounded) inputs."""
    rng = np.random.default_rng(0)
    a = rnd(rng.random((n, n)))
    b = rnd(rng.random((n, n)))
    starts = range(0, n, GEMM_BLOCK)
    partial = rnd(np.stack([a[:, k : k + GEMM_BLOCK] @ b[k : k + GEMM_BLOCK, :] for k in starts]))
    c = partial[0]
    for block in partial[1:]:
        c = rnd(c + block)
    return gemm.freivalds_error(a, b, c)


def stencil_emulated(n: int, rnd: Round) -> float:
    """Jacobi sweeps of :mod:`hpcprof.apps.stencil` with each sweep's result rounded; returns
    the max relative error against float64 sweeps on the same (rounded) inputs."""
    rng = np.random.default_rng(0)
    u0 = rnd(rng.random((n, n, n)))
    f = rnd(rng.random((n, n, n)) * 0.1)
    u = u0
    for _ in range(stencil.SWEEPS):
        u = rnd(stencil.jacobi(u, f, 1))
    ref = stencil.jacobi(u0, f, stencil.SWEEPS)
    return float(np.max(np.abs(u - ref)) / np.max(np.abs(ref)))


def triad_emulated(n: int, rnd: Round) -> float:
    """``a = b + s*c`` with the result rounded once (fused); returns the max relative error
    against float64 on the same (rounded) inputs. Every sweep computes the same values, so
    one sweep stands for all."""
    rng = np.random.default_rng(0)
    b = rnd(rng.random(n))
    c = rnd(rng.random(n))
    s = _scalar(rnd, 3.0 / 7.0)
    ref = b + s * c
    a = rnd(ref)
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


@dataclass(frozen=True, kw_only=True)
class EmulationInfo:
    """An app that can run with emulated arithmetic.

    Args:
        app: the built-in app it emulates.
        kernel: (size, rnd) -> self-check error.
        size: default problem size (small: every format of a sweep reruns the app).
        rounding: where the emulation rounds, for the report.
    """

    app: str
    kernel: Callable[[int, Round], float]
    size: int
    rounding: str

    @property
    def name(self) -> str:
        """Registry name: the app's."""
        return self.app


_TABLE: tuple[tuple[str, Callable[[int, Round], float], int, str], ...] = (
    # (app, kernel, default size, where it rounds)
    (
        "cg",
        cg_emulated,
        8,
        "after every matvec, dot product (blocks of 64, pairwise), alpha/beta division and axpy",
    ),
    ("gemm", gemm_emulated, 48, "inputs; each k-block (8) partial product and the running sum"),
    ("stencil", stencil_emulated, 16, "inputs; each sweep's result"),
    ("triad", triad_emulated, 20_000, "inputs; the result (one fused rounding)"),
    ("glu", glu.emulated, 48, "inputs, sketches; each product, Householder step, solve row"),
    ("rqr", rqr.emulated, 32, "inputs; each product and Householder step"),
    ("caqr", caqr.emulated, 128, "inputs; each Householder step and Q product"),
    ("krr", krr.emulated, 256, "inputs; each kernel-matrix step, Cholesky column, solve row"),
)

EMULATIONS: Registry[EmulationInfo] = Registry(
    "emulated app",
    (EmulationInfo(app=a, kernel=k, size=n, rounding=r) for a, k, n, r in _TABLE),
    error=UnknownNameError,
)
"""The emulated apps by app name."""


def emulation(app: str) -> EmulationInfo:
    """The emulation of ``app``.

    Raises:
        UnknownNameError: the app has no emulated version.
    """
    return EMULATIONS[app]
