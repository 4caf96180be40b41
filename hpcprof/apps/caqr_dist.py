"""TSQR of :mod:`hpcprof.apps.caqr` across torch.distributed ranks (one row block each).

Every rank factors its block; up the tree of :func:`hpcprof.apps.caqr.levels`, each
non-leader sends the upper triangle of its R (n(n+1)/2 words, one message) to its group's
leader, which stacks and refactors; down the tree each leader sends every member its n x n
block of Q. The words and messages each rank really sends and receives are counted, so
they can be held against :func:`hpcprof.apps.caqr.traffic`. :func:`tsqr_ranks` needs an
initialized process group (gloo on CPU); :func:`factor_across_ranks` is what the ``caqr``
kernels run when a launcher started several ranks (``hpcprof run --launcher
torch.distributed`` or ``mpirun``): it joins the group, factors, assembles Q and R and
self-checks them, and leaves the rank's counts on the region.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np

from hpcprof.apps.caqr import RankTraffic, check, levels

if TYPE_CHECKING:
    import torch

    from hpcprof.apps.base import Region

_RANK_ENV = (("RANK", "WORLD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
             ("PMI_RANK", "PMI_SIZE"))  # fmt: skip
"""(rank, size) variables of torch.distributed's launcher, Open MPI and MPICH/Slurm PMI."""


def rank_world() -> tuple[int, int] | None:
    """(rank, world size) when a launcher started more than one rank, else None."""
    for rank, size in _RANK_ENV:
        if rank in os.environ and size in os.environ and int(os.environ[size]) > 1:
            return int(os.environ[rank]), int(os.environ[size])
    return None


@dataclass
class Counter:
    """Words and messages this rank has sent and received."""

    words_sent: int = 0
    words_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    log: list[str] = field(default_factory=list)

    def record(self, rank: int) -> RankTraffic:
        """The counts as a :class:`~hpcprof.apps.caqr.RankTraffic`."""
        return RankTraffic(rank=rank, words_sent=self.words_sent,
                           words_received=self.words_received, messages_sent=self.messages_sent,
                           messages_received=self.messages_received)  # fmt: skip


def _send(t: torch.Tensor, dst: int, counter: Counter) -> None:
    import torch.distributed as dist

    dist.send(t.contiguous(), dst)
    counter.words_sent += t.numel()
    counter.messages_sent += 1


def _recv(shape: tuple[int, ...], src: int, dtype: torch.dtype, counter: Counter) -> torch.Tensor:
    import torch
    import torch.distributed as dist

    t = torch.empty(shape, dtype=dtype)
    dist.recv(t, src)
    counter.words_received += t.numel()
    counter.messages_received += 1
    return t


def tsqr_ranks(block: torch.Tensor, arity: int) -> tuple[torch.Tensor, torch.Tensor, Counter]:
    """(this rank's rows of Q, R (meaningful on rank 0), traffic) of the distributed TSQR.

    Raises:
        ValueError: the block has fewer rows than columns, or arity < 2.
    """
    import torch
    import torch.distributed as dist

    rank, p = dist.get_rank(), dist.get_world_size()
    m, n = block.shape
    if m < n:
        raise ValueError(f"rank {rank}: block {m} x {n} needs at least as many rows as columns")
    tree = levels(p, arity)
    counter = Counter()
    iu = torch.triu_indices(n, n)
    leaf_q, r = torch.linalg.qr(block)
    node_q: list[torch.Tensor | None] = []
    active = True
    for groups in tree:
        mine = next((g for g in groups if rank in g), None)
        q_here: torch.Tensor | None = None
        if active and mine is not None and rank != mine[0]:
            _send(r[iu[0], iu[1]], mine[0], counter)
            active = False
        elif active and mine is not None:
            stack = [r]
            for src in mine[1:]:
                packed = _recv((iu.shape[1],), src, block.dtype, counter)
                full = torch.zeros(n, n, dtype=block.dtype)
                full[iu[0], iu[1]] = packed
                stack.append(full)
            q_here, r = torch.linalg.qr(torch.cat(stack))
        node_q.append(q_here)
    piece = torch.eye(n, dtype=block.dtype)
    for groups, q_here in zip(reversed(tree), reversed(node_q), strict=True):
        mine = next((g for g in groups if rank in g), None)
        if mine is None:
            continue
        if rank == mine[0] and q_here is not None:
            prod = q_here @ piece
            for i, dst in enumerate(mine[1:], start=1):
                _send(prod[i * n : (i + 1) * n], dst, counter)
            piece = prod[:n]
        elif rank != mine[0]:
            piece = _recv((n, n), mine[0], block.dtype, counter)
    return leaf_q @ piece, r, counter


def factor_across_ranks(a: np.ndarray, arity: int, region: Region) -> float:
    """TSQR of ``a`` with one row block per rank of this launch; the self-check error.

    Joins the process group (gloo; the launcher's MASTER_ADDR/MASTER_PORT, by default
    127.0.0.1:29500) unless one is initialized, times only :func:`tsqr_ranks` in
    ``region``, then gathers Q's rows and rank 0's R to every rank (not counted: assembly
    for the check) and returns ``max(||A - QR|| / ||A||, ||Q^T Q - I||)``, the same on every
    rank. The rank's words and messages are left in ``region.rank_counts``.

    Raises:
        ValueError: not started as several ranks, or a block has fewer rows than columns.
    """
    import torch
    import torch.distributed as dist

    world = rank_world()
    if world is None:
        raise ValueError("factor_across_ranks: no RANK/WORLD_SIZE of a multi-rank launch")
    rank, p = world
    own = not dist.is_initialized()
    if own:
        addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = os.environ.get("MASTER_PORT", "29500")
        dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}", rank=rank,
                                world_size=p, timeout=timedelta(seconds=300))  # fmt: skip
    try:
        bounds = np.linspace(0, a.shape[0], p + 1).astype(int)
        block = torch.from_numpy(np.ascontiguousarray(a[bounds[rank] : bounds[rank + 1]]))
        with region:
            q, r, counter = tsqr_ranks(block, arity)
        rows: list[np.ndarray | None] = [None] * p
        dist.all_gather_object(rows, q.numpy())
        root_r = [r.numpy()]
        dist.broadcast_object_list(root_r, src=0)
        error = check(a, np.vstack([x for x in rows if x is not None]), root_r[0])
    finally:
        if own:
            dist.destroy_process_group()
    region.rank_counts = asdict(counter.record(rank))
    return error
