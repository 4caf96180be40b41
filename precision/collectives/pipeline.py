"""The reduction pipeline shared by the DDP hook, the training loop and the reference.

A low-precision reduction of one flat tensor (layers back to back) runs in three steps:
:func:`_prepare` (loss scale, APS shifts, the rounding of the inputs into the wire buffer),
the sum over the group (the carrier all-reduce, or an ordered reduction of
:mod:`.comm`), and :func:`_complete` (rounding the sum, counting, undoing the shifts).
With telemetry on, every rounding call tallies what it did
(:func:`precision.quantize.quantize` with ``count=True``); :mod:`.telemetry` turns those
tallies into the call's totals and the per-layer fractions of layers rounded in a call of
their own. Nothing else reads the gradients to count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from precision import aps
from precision.collectives import comm, telemetry
from precision.collectives.ordered import Layout, Rounder, Stage, plan_layout
from precision.collectives.report import LowpResult, conclude, raise_nonfinite
from precision.collectives.state import (
    LowPrecisionState,
    NonFinitePolicy,
    ReduceReport,
    Reduction,
)
from precision.collectives.telemetry import Bounds
from precision.formats import Format
from precision.quantize import RoundingCounts, largest_value

#: What one reduction gives back: the average (in the working dtype) and its report.
Reduced = tuple[torch.Tensor, ReduceReport]


def working_dtype(fmt: Format | None) -> torch.dtype:
    """float32, or float64 for a format float32 cannot hold."""
    return torch.float64 if fmt is not None and fmt.carrier == "float64" else torch.float32


def layer_bounds(sizes: Iterable[int]) -> Bounds:
    """``(start, stop)`` of each layer of ``sizes`` laid back to back."""
    out, a = [], 0
    for n in sizes:
        out.append((a, a + n))
        a += n
    return out


def reduce_flat(
    flat: torch.Tensor,
    sizes: Sequence[int],
    state: LowPrecisionState,
    *,
    bucket: int = 0,
    group: Any = None,
) -> Reduced:
    """Average ``flat`` (layers of ``sizes`` back to back) over the group.

    Args:
        flat: 1-D gradients; overwritten when it already has the working dtype.
        sizes: element count of each layer, in order.
        state: settings; not advanced here (callers count steps).
        bucket: DDP bucket index (keys stochastic rounding and the shift cache).
        group: process group; None uses ``state.process_group``.

    Returns:
        The average in the working dtype (may be ``flat`` itself), and the report.

    Raises:
        NonFiniteGradientError: with ``NonFinitePolicy.RAISE``, a gradient held Inf/NaN.
    """
    work, bounds, pg = _inputs(flat, sizes, state, group)
    return _reduce_now(work, bounds, state, pg, bucket)


def reduce_flat_async(
    flat: torch.Tensor, sizes: Sequence[int], state: LowPrecisionState, bucket: int = 0
) -> torch.futures.Future[Reduced]:
    """:func:`reduce_flat` over ``state.process_group`` whose sum runs while the caller
    goes on (what the DDP hook uses).

    The APS exponent exchange and the rounding of the inputs happen now; the carrier
    all-reduce is started asynchronously, and rounding the sum, undoing the shifts and the
    report happen when it completes, in the future's callback. Ordered reductions (rank,
    ring, torus), error measurement and float32 (``state.fmt`` None: a plain all-reduce,
    also asynchronous) are supported; the ordered ones and error measurement run at once
    and return a completed future.

    Args:
        flat, sizes, state, bucket: as for :func:`reduce_flat`.

    Returns:
        A future of :func:`reduce_flat`'s result (the same bits).

    Raises:
        NonFiniteGradientError: with ``NonFinitePolicy.RAISE``, a gradient held Inf/NaN
            (from the future's ``wait()`` when found after the sum).
    """
    work, bounds, group = _inputs(flat, sizes, state, None)
    if state.measure_error or (state.fmt is not None and state.reduction is not Reduction.CARRIER):
        done: torch.futures.Future[Reduced] = torch.futures.Future()
        done.set_result(_reduce_now(work, bounds, state, group, bucket))
        return done
    return _start(work, bounds, state, group, bucket)


def _inputs(
    flat: torch.Tensor, sizes: Sequence[int], state: LowPrecisionState, group: Any
) -> tuple[torch.Tensor, Bounds, Any]:
    """The working copy of ``flat`` (``flat`` itself in the working dtype), the layers'
    bounds and the group of one reduction call."""
    pg = comm.group_of(group if group is not None else state.process_group)
    return flat.detach().view(-1).to(working_dtype(state.fmt)), layer_bounds(sizes), pg


def _reduce_now(
    work: torch.Tensor, bounds: Bounds, state: LowPrecisionState, group: Any, bucket: int
) -> Reduced:
    world = dist.get_world_size(group)
    orig = work.clone() if state.measure_error and state.fmt is not None else None
    if state.fmt is None:
        res = LowpResult(comm.all_reduce(work, group).div_(world), None, False, {}, None)
    else:
        prep = _prepare(work, bounds, state, state.fmt, group, bucket)
        if state.reduction is Reduction.CARRIER:
            res = _complete(prep, comm.all_reduce(prep.q, group), state)
        else:  # the result can sit in the wire buffer or a new one: keep it in ``work``
            work.copy_(_reduce_ordered(prep.q, prep.rounder, state, group))
            res = _complete(prep, None, state)
    errs: list[float] | None = None
    if state.measure_error:
        ref = comm.all_reduce(orig, group).div_(world) if orig is not None else res.out
        errs = telemetry.rel_errors(res.out, ref, bounds)
    return res.out, conclude(res, state, bucket, world, bounds, errs)


def _start(
    work: torch.Tensor, bounds: Bounds, state: LowPrecisionState, group: Any, bucket: int
) -> torch.futures.Future[Reduced]:
    """The carrier reduction (or the float32 all-reduce) finished in a future's callback."""
    world = dist.get_world_size(group)
    fmt = state.fmt
    prep = None if fmt is None else _prepare(work, bounds, state, fmt, group, bucket)
    wire = work if prep is None else prep.q
    fut = dist.all_reduce(wire, group=group, async_op=True).get_future()

    def complete(_f: torch.futures.Future[Any]) -> Reduced:
        if prep is None:
            res = LowpResult(work.div_(world), None, False, {}, None)
        else:
            res = _complete(prep, prep.q, state)
        return res.out, conclude(res, state, bucket, world, bounds, None)

    return fut.then(complete)


@dataclasses.dataclass
class _Prepared:
    """A low-precision reduction after its inputs were rounded into the wire buffer ``q``,
    before the sum: what :func:`_complete` needs once the sum is there."""

    work: torch.Tensor
    q: torch.Tensor
    bounds: Bounds
    world: int
    plan: aps.ShiftPlan | None
    exchanged: bool
    layout: Layout
    rounder: Rounder
    in_counts: list[RoundingCounts]


def _prepare(
    work: torch.Tensor,
    bounds: Bounds,
    state: LowPrecisionState,
    fmt: Format,
    group: Any,
    bucket: int,
) -> _Prepared:
    """APS steps 1-3 and the rounding of the inputs into the wire buffer."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if state.loss_scale != 1.0:
        work.mul_(state.loss_scale)
    key = (bucket, tuple(b - a for a, b in bounds))  # the shift cache's
    plan, exchanged = _shift_plan(state, fmt, work, bounds, group, key)
    if plan is not None and plan.any_nonfinite and state.nonfinite is NonFinitePolicy.RAISE:
        raise_nonfinite([i for i, f in enumerate(plan.nonfinite) if f])
    layout = plan_layout(fmt, bounds, plan.shifts if plan else None, work.dtype)
    aps.apply_shifts(work, bounds, layout.multiply)
    r = Rounder(fmt, state.rounding, (state.seed, state.step, bucket), layout.segments)
    q = state.wire_buffer(work, bucket)  # quantize out of place: faster, and keeps the input
    counts = r.round(work, Stage.INPUT, rank, out=q, tally=state.telemetry)
    return _Prepared(work, q, bounds, world, plan, exchanged, layout, r, counts or [])


def _shift_plan(
    state: LowPrecisionState, fmt: Format, work: torch.Tensor, bounds: Bounds, group: Any, key: Any
) -> tuple[aps.ShiftPlan | None, bool]:
    """APS steps 1-3: the shifts in force (None: APS off), and whether they were exchanged
    in this call (else taken from the cache under ``key`` while ``reuse_shifts`` allows)."""
    if not state.aps:
        return None, False
    cached = state._shift_cache.get(key)
    if cached is not None and cached[1] > 0:
        state._shift_cache[key] = (cached[0], cached[1] - 1)
        return cast(aps.ShiftPlan, cached[0]), False
    world = dist.get_world_size(group)
    e = aps.exponents_from_amax(telemetry.layer_amax(work, bounds), state.headroom_bits(world))
    pending = comm.start_all_reduce_max(e, group, work.device)
    plan = aps.shifts_from_exponents(pending(), fmt, work.dtype)
    if state.reuse_shifts:
        state._shift_cache[key] = (plan, state.reuse_shifts)
    return plan, True


def _complete(prep: _Prepared, summed: torch.Tensor | None, state: LowPrecisionState) -> LowpResult:
    """Round the carrier's sum ``summed`` into ``prep.work`` (None: an ordered reduction
    already left its result there), count, undo the shifts and average."""
    work, r = prep.work, prep.rounder
    counts = None
    if summed is not None:
        counts = r.round(summed, Stage.RESULT, out=work, tally=state.telemetry)
    stats: telemetry.LayerFractions = {}
    totals = None
    if state.telemetry:
        calls = _calls(r, work)
        spans = [span for span, _ in calls]
        if counts is not None:
            at_limit = [c.at_limit for c in counts]
        else:  # the ordered sums round chunk by chunk: read the result once
            at_limit = telemetry.count_at_least(work, spans, [top for _, top in calls])
        totals, stats = telemetry.tally(spans, prep.in_counts, at_limit, prep.bounds)
    finish(work, prep.bounds, prep.layout.multiply, state, prep.world)
    return LowpResult(work, prep.plan, prep.exchanged, stats, totals)


def _calls(r: Rounder, x: torch.Tensor) -> list[tuple[tuple[int, int], float]]:
    """The nonempty rounding calls of ``r`` over the flat ``x``: their spans and the
    largest value of each call's format (the layers of a call share its format)."""
    if not r.segments:
        return [((0, x.numel()), largest_value(r.fmt))] if x.numel() else []
    return [((s.start, s.stop), largest_value(s.fmt)) for s in r.segments if s.stop > s.start]


def _reduce_ordered(
    q: torch.Tensor, r: Rounder, state: LowPrecisionState, group: Any
) -> torch.Tensor:
    """Sum the quantized ``q`` (overwritten) over the group in ``state.reduction``'s order."""
    if state.reduction is Reduction.RANK:
        return comm.rank_reduce(q, r, group)
    if state.reduction is Reduction.RING:
        return comm.ring_allreduce(q, r, group)
    if state._torus is None or state._torus[0] is not group:
        state._torus = (group, comm.torus_groups(state.grid, group))
    return comm.torus_allreduce(q, r, state._torus[1])


def finish(
    out: torch.Tensor,
    bounds: Bounds,
    shifts: Sequence[int | None],
    state: LowPrecisionState,
    world: int,
) -> None:
    """Undo the multiplied APS shifts and the loss scale and divide by ``world``, in place.

    One multiply per layer when the combined factor is exact (power-of-two ``world`` and
    loss scale); otherwise the exact shift first, then the two divisions. With no shift to
    undo, one pass over the whole tensor.
    """
    pow2 = world & (world - 1) == 0 and math.frexp(state.loss_scale)[0] == 0.5
    info = torch.finfo(out.dtype)
    if not any(shifts):
        bounds, shifts = [(0, out.numel())], [0]
    segs, factors = [], []  # the exact single multiplies, made in one call
    for (a, b), s in zip(bounds, shifts, strict=True):
        seg = out[a:b]
        factor = math.ldexp(1.0, -(s or 0)) / state.loss_scale / world
        if pow2 and info.tiny <= factor <= info.max:
            if factor != 1.0 and b > a:
                segs.append(seg)
                factors.append(factor)
            continue
        if s:
            seg.mul_(math.ldexp(1.0, -s))
        if state.loss_scale != 1.0:
            seg.div_(state.loss_scale)
        seg.div_(world)
    if segs:
        torch._foreach_mul_(segs, factors)


def all_reduce_gradients(
    params: nn.Module | Iterable[torch.Tensor], state: LowPrecisionState
) -> ReduceReport:
    """Average ``.grad`` of ``params`` over the group in place, in the emulated format.

    Call after ``backward()`` (without DDP, or with DDP's own reduction disabled). Every
    worker must pass the same parameters in the same order, each with a gradient; parameters
    whose ``.grad`` is None are skipped (on every worker alike, or the collectives mismatch).
    Each parameter is one APS layer; the whole set costs one APS MAX all-reduce.

    Args:
        params: a module (its ``parameters()``) or tensors with ``.grad``.
        state: the settings; its ``step`` counter advances by one.

    Returns:
        The step's :class:`ReduceReport` (also stored as ``state.last_reports``).

    Raises:
        NonFiniteGradientError: with ``NonFinitePolicy.RAISE``, a gradient held Inf/NaN.
    """
    plist = list(params.parameters()) if isinstance(params, nn.Module) else list(params)
    grads = [p.grad for p in plist if p.grad is not None]
    if grads:
        dtype = working_dtype(state.fmt)
        flat = torch.cat([g.detach().reshape(-1).to(dtype) for g in grads])
    else:
        flat = torch.zeros(0)
    out, report = reduce_flat(flat, [g.numel() for g in grads], state)
    for g, (a, b) in zip(grads, layer_bounds(g.numel() for g in grads), strict=True):
        g.copy_(out[a:b].view_as(g))
    state.last_reports = [report]
    state.step += 1
    return report
