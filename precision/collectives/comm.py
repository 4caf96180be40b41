"""The distributed side of each reduction: torch.distributed calls, nothing else.

Each function returns the same bits as its pure counterpart in :mod:`.ordered` and the same
result on every rank. The reductions work in place in the quantized input (which they
overwrite) and move data with point-to-point ring steps straight into its chunks, so the
only new buffers are one chunk to receive into (ring) or the other workers' tensors (rank). Data travels in the working dtype (float32 for formats that fit it):
gloo cannot reduce float8 dtypes, and every value of the format is exact in float32.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from precision.collectives.ordered import (
    Rounder,
    Stage,
    accumulate_,
    pad_to,
    padded_chunk,
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


def start_all_reduce_max(
    x: torch.Tensor, group: Any, device: torch.device
) -> Callable[[], torch.Tensor]:
    """Start an element-wise MAX over the group without waiting for it; the returned
    function waits and gives the result on the CPU. The caller may work in between (the
    exchange is latency, not bandwidth)."""
    y = x.to(device)
    work = dist.all_reduce(y, op=dist.ReduceOp.MAX, group=group, async_op=True)

    def wait() -> torch.Tensor:
        if work is not None:
            work.wait()
        return y.cpu()

    return wait


def _exchange(send: torch.Tensor, recv: torch.Tensor, group: Any, dst: int, src: int) -> None:
    """Send ``send`` to member ``dst`` while receiving ``recv`` from member ``src``."""
    ops = [
        dist.P2POp(dist.isend, send, group=group, group_peer=dst),
        dist.P2POp(dist.irecv, recv, group=group, group_peer=src),
    ]
    for work in dist.batch_isend_irecv(ops):
        work.wait()


def _ring_all_gather_(chunks: Sequence[torch.Tensor], group: Any) -> None:
    """Fill ``chunks[k]`` with member ``k``'s copy, in place (this member's is already there).

    At step ``s`` member ``i`` passes chunk ``(i-s) mod P`` on to ``i+1`` and receives chunk
    ``(i-1-s) mod P`` from ``i-1`` straight into its slot: no gather buffer, no copies.
    """
    p, i = dist.get_world_size(group), dist.get_rank(group)
    for s in range(p - 1):
        _exchange(chunks[(i - s) % p], chunks[(i - 1 - s) % p], group, (i + 1) % p, (i - 1) % p)


def rank_reduce(q: torch.Tensor, r: Rounder, group: Any) -> torch.Tensor:
    """``Reduction.RANK``: gather every worker's tensor, sum in rank order locally.

    Inherent cost: every worker receives the ``W - 1`` other tensors (twice the traffic of a
    ring all-reduce) into one new buffer of ``(W - 1) * n`` elements, and performs all
    ``W - 1`` rounded additions over the whole tensor (a ring splits them ``W`` ways).
    ``q`` is overwritten.
    """
    w, me = dist.get_world_size(group), dist.get_rank(group)
    if w == 1 or q.numel() == 0:
        return q
    others = q.new_empty((w - 1, q.numel()))
    parts = list(others.unbind(0))
    parts.insert(me, q.contiguous())
    _ring_all_gather_(parts, group)
    keys = [(int(Stage.RANK), k) for k in range(1, w)]
    return accumulate_(parts[0], parts[1:], r, keys)


def _ring_reduce_scatter_(
    chunks: Sequence[torch.Tensor], r: Rounder, group: Any, stage: Stage, group_id: int, offset: int
) -> None:
    """Reduce-scatter around the ring of ``group``, in place: afterwards ``chunks[i]`` of
    member ``i`` holds the rounded sum of chunk ``i`` (the other chunks hold partial sums).

    At step ``s`` member ``i`` sends chunk ``(i-1-s) mod P`` to ``i+1`` and adds what it
    receives from ``i-1`` to its own copy of chunk ``c = (i-2-s) mod P``, which it sends on
    at the next step. Chunks hold flat elements from ``offset + c * len(chunk)``.
    """
    p, i = dist.get_world_size(group), dist.get_rank(group)
    if p == 1:
        return
    m = chunks[0].numel()
    recv = torch.empty_like(chunks[0])
    send = chunks[(i - 1) % p]
    for s in range(p - 1):
        _exchange(send, recv, group, (i + 1) % p, (i - 1) % p)
        c = (i - 2 - s) % p
        r.add_(chunks[c], recv, stage, group_id, c, s + 1, offset=offset + c * m)
        send = chunks[c]


def ring_allreduce(
    q: torch.Tensor,
    r: Rounder,
    group: Any,
    stage: Stage = Stage.RING,
    group_id: int = 0,
    offset: int = 0,
) -> torch.Tensor:
    """``Reduction.RING``: ring reduce-scatter with rounding at each step, then a ring
    all-gather, both in place in ``q`` (in a zero-padded copy when ``W`` does not divide
    its length). ``q`` holds flat elements from ``offset``."""
    p = dist.get_world_size(group)
    n = q.numel()
    m = padded_chunk(n, p)
    if n == 0:
        return q
    padded = pad_to(q.contiguous(), m * p)
    chunks = list(padded.view(p, m).unbind(0))
    _ring_reduce_scatter_(chunks, r, group, stage, group_id, offset)
    _ring_all_gather_(chunks, group)
    return padded[:n]


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
    if n == 0:
        return q
    padded = pad_to(q.contiguous(), m * cols)
    chunks = list(padded.view(cols, m).unbind(0))
    _ring_reduce_scatter_(chunks, r, t.row_group, Stage.TORUS_ROW, t.row, 0)
    mine = chunks[t.col]
    summed = ring_allreduce(mine, r, t.col_group, Stage.TORUS_COL, t.col, t.col * m)
    if summed.data_ptr() != mine.data_ptr():
        mine.copy_(summed)
    _ring_all_gather_(chunks, t.row_group)
    return padded[:n]
