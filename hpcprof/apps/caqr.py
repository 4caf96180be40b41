"""Communication-avoiding QR of a tall-skinny matrix: TSQR over a reduction tree
(arXiv 1805.05278).

The m x n matrix is split into ``BLOCKS`` row blocks, one per (virtual) rank. Each rank
factors its block; then the R factors are combined up a tree whose nodes have ``arity``
children: a node stacks its children's R factors and factors them again. Arity 2 is the
binary tree (``log2 p`` rounds, no rank handles more than ``log2 p`` triangles); arity p is
the flat tree (one round and one larger QR, fewer FLOPs in all, but the root receives
``p - 1`` triangles): the shape trades rounds on the critical path for the busiest rank's
words and messages. Q is formed explicitly by pushing the tree's Q factors back down.

The ranks run in one process over the blocks; :func:`traffic` counts the words and messages
each rank would send and receive (R triangles up, n x n blocks of Q down). Started as several
ranks (``hpcprof run --launcher torch.distributed --ranks P``, or ``mpirun``), the kernel
runs the tree across the ranks instead (:mod:`hpcprof.apps.caqr_dist`, one row block per
rank, gloo), and each rank reports the words and messages it really moved. Self-check:
``max(||A - QR||_F / ||A||_F, ||Q^T Q - I||_F)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Kernel, Region, real_dtype
from hpcprof.apps.linalg import Arith, Round, orthogonality, qr_flops
from hpcprof.results.records import Precision

COLUMNS = 16
BLOCKS = 8


def levels(p: int, arity: int) -> list[list[list[int]]]:
    """The tree: per level, the groups of surviving ranks combined (first rank of a group
    keeps the result).

    Raises:
        ValueError: p < 1 or arity < 2.
    """
    if p < 1 or arity < 2:
        raise ValueError(f"p={p}, arity={arity}: need p >= 1 and arity >= 2")
    alive = list(range(p))
    tree = []
    while len(alive) > 1:
        groups = [alive[i : i + arity] for i in range(0, len(alive), arity)]
        tree.append(groups)
        alive = [g[0] for g in groups]
    return tree


@dataclass(frozen=True, kw_only=True)
class RankTraffic:
    """Words and messages one rank sends and receives in TSQR with explicit Q."""

    rank: int
    words_sent: int
    words_received: int
    messages_sent: int
    messages_received: int


def traffic(p: int, n: int, arity: int) -> tuple[RankTraffic, ...]:
    """Per-rank communication of TSQR: each non-leader of a group sends its R triangle
    (n(n+1)/2 words) to the leader, and later receives its n x n block of Q (n^2 words)."""
    tri, square = n * (n + 1) // 2, n * n
    sent = [0] * p
    recv = [0] * p
    msent = [0] * p
    mrecv = [0] * p
    for groups in levels(p, arity):
        for group in groups:
            leader, others = group[0], group[1:]
            for rank in others:
                sent[rank] += tri
                recv[leader] += tri
                sent[leader] += square
                recv[rank] += square
                msent[rank] += 1
                mrecv[leader] += 1
                msent[leader] += 1
                mrecv[rank] += 1
    return tuple(
        RankTraffic(rank=r, words_sent=sent[r], words_received=recv[r],
                    messages_sent=msent[r], messages_received=mrecv[r])
        for r in range(p)
    )  # fmt: skip


def tsqr(a: np.ndarray, p: int, arity: int, ar: Arith) -> tuple[np.ndarray, np.ndarray]:
    """``A = Q R`` by TSQR over p row blocks with a tree of the given arity."""
    m, n = a.shape
    bounds = np.linspace(0, m, p + 1).astype(int)
    if np.min(np.diff(bounds)) < n:
        raise ValueError(f"m={m}, p={p}: every block needs at least n={n} rows")
    leaf_q: list[np.ndarray] = []
    r_of: dict[int, np.ndarray] = {}
    for rank in range(p):
        q, r = ar.qr(a[bounds[rank] : bounds[rank + 1]])
        leaf_q.append(q)
        r_of[rank] = r
    node_q: list[dict[int, np.ndarray]] = []
    tree = levels(p, arity)
    for groups in tree:
        qs = {}
        for group in groups:
            q, r = ar.qr(np.vstack([r_of[rank] for rank in group]))
            qs[group[0]] = q
            r_of[group[0]] = r
        node_q.append(qs)
    # Q down the tree: each rank's n x n block of the product of the levels above it.
    block = {0: np.eye(n, dtype=ar.dtype)}
    for groups, qs in zip(reversed(tree), reversed(node_q), strict=True):
        for group in groups:
            mine = ar.mm(qs[group[0]], block[group[0]])
            for i, rank in enumerate(group):
                block[rank] = mine[i * n : (i + 1) * n]
    q = np.vstack([ar.mm(leaf_q[rank], block[rank]) for rank in range(p)])
    return q, r_of[0]


def check(a: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
    """``max(||A - QR||_F / ||A||_F, ||Q^T Q - I||_F)`` in float64."""
    a64 = a.astype(np.float64)
    resid = np.linalg.norm(a64 - q.astype(np.float64) @ r.astype(np.float64))
    return max(float(resid / np.linalg.norm(a64)), orthogonality(q))


def test_matrix(m: int, seed: int = 0) -> np.ndarray:
    """Tall m x COLUMNS matrix with condition number about 1e4."""
    rng = np.random.default_rng(seed)
    scale = np.logspace(0, -4, COLUMNS)
    return rng.standard_normal((m, COLUMNS)) * scale


def _kernel(arity: int) -> Kernel:
    def kernel(size: int, precision: Precision, region: Region) -> float:
        from hpcprof.apps import caqr_dist

        ar = Arith(np.dtype(real_dtype(precision)))
        a = ar.r(test_matrix(size))
        if caqr_dist.rank_world() is not None:
            return caqr_dist.factor_across_ranks(a, arity, region)
        with region:
            q, r = tsqr(a, BLOCKS, arity, ar)
        return check(a, q, r)

    kernel.__doc__ = f"TSQR, tree arity {arity}; residual and orthogonality."
    return kernel


def emulated(size: int, rnd: Round) -> float:
    """Binary-tree TSQR with every operation rounded; the self-check error. Sizes below
    BLOCKS * COLUMNS rows use that many (every block needs a square R)."""
    a = rnd(test_matrix(max(size, BLOCKS * COLUMNS)))
    q, r = tsqr(a, BLOCKS, 2, Arith(rnd=rnd))
    return check(a, q, r)


def flops(size: int, arity: int) -> float:
    """FLOPs of :func:`tsqr`: leaf and tree QRs with Q formed, and the Q products."""
    n, p = COLUMNS, BLOCKS
    block = size / p
    total = p * (qr_flops(block, n) + 2.0 * block * n * n)
    for groups in levels(p, arity):
        for group in groups:
            total += qr_flops(len(group) * n, n) + 2.0 * len(group) * n**3
    return total


def _info(arity: int, name: str, shape: str) -> AppInfo:
    return AppInfo(
        name=name,
        summary=f"TSQR (communication-avoiding QR), {BLOCKS} blocks, {shape} tree (NumPy)",
        kind=AppKind.NUMPY,
        size_doc=f"rows m (m x {COLUMNS}, at least {BLOCKS * COLUMNS})",
        default_size=1 << 17,
        small_size=1024,
        flops=lambda s: flops(s, arity),
        bytes_moved=lambda s, itemsize: 3.0 * s * COLUMNS * itemsize,
        tolerance=(1e-13, 1e-5),
        kernel=_kernel(arity),
    )


APPS = (_info(2, "caqr", "binary"), _info(BLOCKS, "caqr-flat", "flat"))


def critical_path(p: int, n: int, arity: int) -> tuple[int, int]:
    """(words, messages) of the busiest rank: the latency/bandwidth trade of the shape."""
    per_rank = traffic(p, n, arity)
    words = max(t.words_sent + t.words_received for t in per_rank)
    msgs = max(t.messages_sent + t.messages_received for t in per_rank)
    return words, msgs
