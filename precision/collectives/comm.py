"""The distributed side of each reduction: torch.distributed calls, nothing else.

Each function returns the same bits as its pure counterpart in :mod:`.ordered` and the same
result on every rank. Data travels in the working dtype (float32 for formats that fit it):
gloo cannot reduce float8 dtypes, and every value of the format is exact in float32.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from precision.collectives.ordered import (
    Rounder,
    Stage,
    pad_to,
    padded_chunk,
    rank_sum,
    square_grid,
)


def init_process_group_with_timeout(
    backend: str, rank: int, world_size: int, init_method: str, timeout_s: float
) -> None:
    """``dist.init_process_group`` with an explicit collective timeout.

    torch's default timeout is 30 minutes: a worker that dies mid-step would leave the others
    blocked that long. With a timeout of a few tens of seconds they raise instead.

    Args:
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (CUDA).
        rank: this process's rank.
        world_size: number of processes.
        init_method: rendezvous URL, e.g. ``"tcp://127.0.0.1:29500"``.
        timeout_s: seconds a collective may wait before raising.

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s!r}: must be > 0")
    dist.init_process_group(
        backend=backend,
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def group_of(process_group: Any) -> Any:
    return dist.group.WORLD if process_group is None else process_group


def all_reduce(x: torch.Tensor, group: Any, op: Any = None) -> torch.Tensor:
    dist.all_reduce(x, op=dist.ReduceOp.SUM if op is None else op, group=group)
    return x


def all_reduce_max(x: torch.Tensor, group: Any, device: torch.device) -> torch.Tensor:
    """Element-wise MAX over the group (on ``device``: NCCL reduces device tensors only)."""
    y = x.to(device)
    dist.all_reduce(y, op=dist.ReduceOp.MAX, group=group)
    return y.cpu()


def rank_reduce(q: torch.Tensor, r: Rounder, group: Any) -> torch.Tensor:
    """``Reduction.RANK``: all-gather every worker's tensor, sum in rank order locally."""
    w = dist.get_world_size(group)
    gathered = q.new_empty(w * q.numel())
    dist.all_gather(list(gathered.view(w, -1).unbind(0)), q.contiguous(), group=group)
    return rank_sum(list(gathered.view(w, -1).unbind(0)), r)


def _ring_reduce_scatter(
    padded: torch.Tensor, r: Rounder, group: Any, stage: Stage, group_id: int
) -> torch.Tensor:
    """Reduce-scatter around the ring of ``group``; returns this member's chunk.

    At step ``s`` member ``i`` sends chunk ``(i-1-s) mod P`` to ``i+1`` and adds its own
    copy of chunk ``(i-2-s) mod P`` to what it receives from ``i-1``.
    """
    p = dist.get_world_size(group)
    i = dist.get_rank(group)
    chunks = padded.view(p, -1)
    send = chunks[(i - 1) % p]
    if p == 1:
        return send.clone()
    for s in range(p - 1):
        recv = torch.empty_like(send)
        ops = [
            dist.P2POp(dist.isend, send.contiguous(), group=group, group_peer=(i + 1) % p),
            dist.P2POp(dist.irecv, recv, group=group, group_peer=(i - 1) % p),
        ]
        for work in dist.batch_isend_irecv(ops):
            work.wait()
        c = (i - 2 - s) % p
        send = r.add(recv, chunks[c], stage, group_id, c, s + 1)
    return send


def _all_gather_flat(chunk: torch.Tensor, group: Any) -> torch.Tensor:
    p = dist.get_world_size(group)
    out = chunk.new_empty(p * chunk.numel())
    dist.all_gather(list(out.view(p, -1).unbind(0)), chunk.contiguous(), group=group)
    return out


def ring_allreduce(
    q: torch.Tensor, r: Rounder, group: Any, stage: Stage = Stage.RING, group_id: int = 0
) -> torch.Tensor:
    """``Reduction.RING``: ring reduce-scatter with rounding at each step, then all-gather."""
    p = dist.get_world_size(group)
    n = q.numel()
    m = padded_chunk(n, p)
    mine = _ring_reduce_scatter(pad_to(q, m * p), r, group, stage, group_id)
    return _all_gather_flat(mine, group)[:n]


@dataclass(frozen=True)
class TorusGroups:
    """Row and column process groups of one ``rows x cols`` grid, seen from one rank."""

    grid: tuple[int, int]
    row: int
    col: int
    row_group: Any
    col_group: Any


def torus_groups(grid: tuple[int, int] | None, group: Any) -> TorusGroups:
    """Create the row and column subgroups of ``group`` (a collective call).

    Every process of the default group must call this, in the same order, because
    ``dist.new_group`` is collective over the default group.

    Raises:
        ValueError: the grid does not tile the group.
    """
    w = dist.get_world_size(group)
    rows, cols = square_grid(w) if grid is None else grid
    if rows * cols != w:
        raise ValueError(f"grid={rows}x{cols} does not match the group's {w} workers")
    ranks = [dist.get_global_rank(group, k) for k in range(w)]
    me = dist.get_rank(group)
    row_groups = [dist.new_group(ranks[i * cols : (i + 1) * cols]) for i in range(rows)]
    col_groups = [dist.new_group(ranks[c::cols]) for c in range(cols)]
    row, col = divmod(me, cols)
    return TorusGroups((rows, cols), row, col, row_groups[row], col_groups[col])


def torus_allreduce(q: torch.Tensor, r: Rounder, t: TorusGroups) -> torch.Tensor:
    """``Reduction.TORUS``: row reduce-scatter, column ring all-reduce, row all-gather."""
    cols = t.grid[1]
    n = q.numel()
    m = padded_chunk(n, cols)
    mine = _ring_reduce_scatter(pad_to(q, m * cols), r, t.row_group, Stage.TORUS_ROW, t.row)
    mine = ring_allreduce(mine, r, t.col_group, Stage.TORUS_COL, t.col)
    return _all_gather_flat(mine, t.row_group)[:n]
