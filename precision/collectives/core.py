"""The reduction pipeline shared by the DDP hook, the training loop and the reference."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from precision import aps
from precision.collectives import comm, telemetry
from precision.collectives.ordered import (
    Layout,
    Rounder,
    Stage,
    plan_layout,
)
from precision.collectives.state import (
    LayerStats,
    LowPrecisionState,
    NonFinitePolicy,
    ReduceReport,
    Reduction,
)
from precision.formats import FixedFormat, FloatFormat, Format
from precision.quantize import RoundingCounts, largest_value

Bounds = list[tuple[int, int]]


def working_dtype(fmt: Format | None) -> torch.dtype:
    """float32, or float64 for a format float32 cannot hold."""
    return torch.float64 if fmt is not None and fmt.carrier == "float64" else torch.float32


def layer_bounds(sizes: Iterable[int]) -> Bounds:
    out, a = [], 0
    for n in sizes:
        out.append((a, a + n))
        a += n
    return out


def layer_amax(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """``max|x[a:b]|`` per layer as a float64 CPU vector (NaN if the layer holds NaN)."""
    return telemetry.layer_amax(x, bounds)


def _cached_plan(state: LowPrecisionState, cache_key: object) -> aps.ShiftPlan | None:
    """The cached APS plan while ``reuse_shifts`` allows (counting this use), else None."""
    cached = state._shift_cache.get(cache_key)
    if cached is None or cached[1] <= 0:
        return None
    state._shift_cache[cache_key] = (cached[0], cached[1] - 1)
    return cast(aps.ShiftPlan, cached[0])


def _cannot_overflow(state: LowPrecisionState, plan: aps.ShiftPlan | None, world: int) -> bool:
    """Whether fresh APS shifts bound the carrier reduction's results, so none can be Inf
    or NaN and the scan for them can be skipped.

    With a headroom of at least ``ceil(log2 W)`` bits each scaled value is at most
    ``2**emax / W``, a value of the format, so rounding it in any mode cannot pass it; the
    carrier's sum of ``W`` of them is at most ``2**emax``, which the format and the carrier
    hold, so neither the carrier's own rounding nor the final one can pass that either.
    Not so for the ordered reductions: rounding every partial sum upward (directed or
    stochastic modes) can climb past the bound. Reused shifts may be stale, and unsigned
    formats turn negatives into NaN.
    """
    fmt = state.fmt
    signed = isinstance(fmt, FixedFormat) or (isinstance(fmt, FloatFormat) and fmt.signed)
    return (
        plan is not None
        and state.reduction is Reduction.CARRIER
        and signed
        and state.headroom_bits(world) >= aps.default_headroom(world)
        and not plan.any_nonfinite
    )


def _raise_nonfinite(layers: Sequence[int]) -> None:
    raise aps.NonFiniteGradientError(
        f"gradients of layers {list(layers)} hold Inf or NaN on some worker; "
        "skip the step or lower the loss scale (nonfinite=NonFinitePolicy.REPORT reduces "
        "them unscaled and flags them instead)"
    )


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
    tel: telemetry.LayerCounts | None
    tally: bool
    in_counts: list[RoundingCounts]
    tops: list[float]
    stats: dict[str, list[float]]


@dataclasses.dataclass(frozen=True)
class LowpResult:
    """What a low-precision reduction gives back.

    Attributes:
        out: the average, in the working buffer.
        plan: the APS shifts in force (None without APS).
        exchanged: whether the shifts were exchanged in this call.
        stats: per-layer telemetry fractions (``underflow``, ``overflow``, ``saturated``).
        totals: (flushed, beyond, at_limit) counted without the per-layer split, or None.
    """

    out: torch.Tensor
    plan: aps.ShiftPlan | None
    exchanged: bool
    stats: dict[str, list[float]]
    totals: tuple[int, int, int] | None


def reduce_flat(
    flat: torch.Tensor,
    sizes: Sequence[int],
    state: LowPrecisionState,
    *,
    bucket: int = 0,
    group: Any = None,
) -> tuple[torch.Tensor, ReduceReport]:
    """Average ``flat`` (layers of ``sizes`` back to back) over the group.

    Args:
        flat: 1-D gradients; overwritten when it already has the working dtype.
        sizes: element count of each layer, in order.
        state: settings; not advanced here (callers count steps).
        bucket: DDP bucket index (keys stochastic rounding and the shift cache).
        group: process group; None uses ``state.process_group``.

    Returns:
        The average in the working dtype (may be ``flat`` itself), and the report.
    """
    group = comm.group_of(group if group is not None else state.process_group)
    world = dist.get_world_size(group)
    bounds = layer_bounds(sizes)
    work = flat.detach().view(-1).to(working_dtype(state.fmt))
    orig = work.clone() if state.measure_error and state.fmt is not None else None
    if state.fmt is None:
        res = LowpResult(comm.all_reduce(work, group).div_(world), None, False, {}, None)
    else:
        res = _reduce_lowp(work, bounds, state, state.fmt, group, bucket)
    errs: list[float] | None = None
    if state.measure_error:
        ref = comm.all_reduce(orig, group).div_(world) if orig is not None else res.out
        errs = telemetry.rel_errors(res.out, ref, bounds)
    return res.out, conclude(res, state, bucket, world, bounds, errs)


def reduce_flat_async(
    flat: torch.Tensor,
    sizes: Sequence[int],
    state: LowPrecisionState,
    *,
    bucket: int = 0,
    group: Any = None,
) -> torch.futures.Future[tuple[torch.Tensor, ReduceReport]]:
    """:func:`reduce_flat` whose sum runs while the caller goes on (what the DDP hook uses).

    The APS exponent exchange and the rounding of the inputs happen now; the carrier
    all-reduce is started asynchronously, and rounding the sum, undoing the shifts and the
    report happen when it completes, in the future's callback. Ordered reductions (rank,
    ring, torus), error measurement and float32 (``state.fmt`` None: a plain all-reduce,
    also asynchronous) are supported; the ordered ones and error measurement run at once
    and return a completed future.

    Returns:
        A future of :func:`reduce_flat`'s result (the same bits).
    """
    group = comm.group_of(group if group is not None else state.process_group)
    fmt = state.fmt
    done: torch.futures.Future[tuple[torch.Tensor, ReduceReport]]
    if state.measure_error or (fmt is not None and state.reduction is not Reduction.CARRIER):
        done = torch.futures.Future()
        done.set_result(reduce_flat(flat, sizes, state, bucket=bucket, group=group))
        return done
    world = dist.get_world_size(group)
    bounds = layer_bounds(sizes)
    work = flat.detach().view(-1).to(working_dtype(fmt))
    if fmt is None:
        fut = dist.all_reduce(work, group=group, async_op=True).get_future()

        def plain(_f: torch.futures.Future[Any]) -> tuple[torch.Tensor, ReduceReport]:
            res = LowpResult(work.div_(world), None, False, {}, None)
            return res.out, conclude(res, state, bucket, world, bounds, None)

        return fut.then(plain)
    prep = _prepare(work, bounds, state, fmt, group, bucket)
    fut = dist.all_reduce(prep.q, group=group, async_op=True).get_future()

    def lowp(_f: torch.futures.Future[Any]) -> tuple[torch.Tensor, ReduceReport]:
        res = _complete(prep, prep.q, state)
        return res.out, conclude(res, state, bucket, world, bounds, None)

    return fut.then(lowp)


def conclude(
    res: LowpResult,
    state: LowPrecisionState,
    bucket: int,
    world: int,
    bounds: Bounds,
    errs: list[float] | None,
) -> ReduceReport:
    """The non-finite check and the report of a finished reduction (no communication).

    Raises:
        NonFiniteGradientError: with ``NonFinitePolicy.RAISE``, a result or input held
            Inf/NaN.
    """
    n = len(bounds)
    if res.exchanged and _cannot_overflow(state, res.plan, world):
        nonfinite = [False] * n
    else:
        nonfinite_in = list(res.plan.nonfinite) if res.plan is not None else [False] * n
        nonfinite_out = telemetry.nonfinite_layers(res.out, bounds)
        nonfinite = [f or g for f, g in zip(nonfinite_in, nonfinite_out, strict=True)]
    if any(nonfinite) and state.nonfinite is NonFinitePolicy.RAISE:
        _raise_nonfinite([i for i, f in enumerate(nonfinite) if f])
    report = _report(
        state, bucket, world, bounds, res.plan, nonfinite, res.stats, errs, res.exchanged
    )
    return dataclasses.replace(report, totals=res.totals) if res.totals is not None else report


def _reduce_lowp(
    work: torch.Tensor,
    bounds: Bounds,
    state: LowPrecisionState,
    fmt: Format,
    group: Any,
    bucket: int,
) -> LowpResult:
    """The reduction in ``fmt`` (``state.fmt``), in ``work``."""
    prep = _prepare(work, bounds, state, fmt, group, bucket)
    if state.reduction is Reduction.CARRIER:
        return _complete(prep, comm.all_reduce(prep.q, group), state)
    # the result can sit in the wire buffer or a new one: keep it in ``work``
    work.copy_(_reduce_ordered(prep.q, prep.rounder, state, group))
    return _complete(prep, None, state)


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
    amax = functools.cache(lambda: layer_amax(work, bounds))
    plan, pending, exchanged = None, None, False
    cache_key = (bucket, tuple(b - a for a, b in bounds))
    if state.aps:
        plan = _cached_plan(state, cache_key)
        if plan is None:  # APS steps 1-2; the exchange runs while the counting below does
            e = aps.exponents_from_amax(amax(), state.headroom_bits(world))
            pending = comm.start_all_reduce_max(e, group, work.device)
    tel = None  # per-layer counts; without them, totals come from the rounding passes
    if state.telemetry and state.layer_telemetry:
        tel = telemetry.LayerCounts.start(work, bounds, _parts(fmt, bounds, state.aps, work.dtype))
    if pending is not None:  # APS step 3
        plan, exchanged = aps.shifts_from_exponents(pending(), fmt, work.dtype), True
        if state.reuse_shifts:
            state._shift_cache[cache_key] = (plan, state.reuse_shifts)
    if plan is not None and plan.any_nonfinite and state.nonfinite is NonFinitePolicy.RAISE:
        _raise_nonfinite([i for i, f in enumerate(plan.nonfinite) if f])
    layout = plan_layout(fmt, bounds, plan.shifts if plan else None, work.dtype)
    aps.apply_shifts(work, bounds, layout.multiply)
    r = Rounder(fmt, state.rounding, (state.seed, state.step, bucket), layout.segments)
    # the format's largest value per layer, in the domain each layer is rounded in
    tops = [math.ldexp(largest_value(fmt), -c) for c in layout.carried]
    q = state.wire_buffer(work, bucket)  # quantize out of place: faster, and keeps the input
    totals_only = state.telemetry and not state.layer_telemetry
    tally = totals_only or (tel is not None and tel.tallied)
    counts = r.round(work, Stage.INPUT, rank, out=q, tally=tally)
    stats: dict[str, list[float]] = {}
    if tel is not None:
        scaled = [math.ldexp(m, s) for m, s in zip(amax().tolist(), layout.multiply, strict=True)]
        stats["underflow"] = tel.flushed(q, counts or [])
        stats["overflow"] = tel.beyond(work, counts or [], scaled, tops)
    return _Prepared(
        work, q, bounds, world, plan, exchanged, layout, r, tel, tally, counts or [], tops, stats
    )


def _complete(prep: _Prepared, summed: torch.Tensor | None, state: LowPrecisionState) -> LowpResult:
    """Round the carrier's sum ``summed`` into ``prep.work`` (None: an ordered reduction
    already left its result there), count, undo the shifts and average."""
    work, r = prep.work, prep.rounder
    counts = None  # the ordered sums round chunk by chunk: no per-layer counts
    if summed is not None:
        counts = r.round(summed, Stage.RESULT, out=work, tally=prep.tally)
    stats = dict(prep.stats)
    if prep.tel is not None:
        stats["saturated"] = prep.tel.at_limit(work, counts, prep.tops)
    totals = None
    if state.telemetry and not state.layer_telemetry:
        at_limit = (
            sum(c.at_limit for c in counts) if counts is not None else _count_at_limit(work, r)
        )
        totals = (
            sum(c.flushed for c in prep.in_counts),
            sum(c.beyond for c in prep.in_counts),
            at_limit,
        )
    finish(work, prep.bounds, prep.layout.multiply, state, prep.world)
    return LowpResult(work, prep.plan, prep.exchanged, stats, totals)


def _count_at_limit(out: torch.Tensor, r: Rounder) -> int:
    """Elements of ``out`` at or beyond the largest value of their rounding call's format
    (one read per call; the layers of a call share its format)."""
    if not r.segments:
        return int((out.abs() >= largest_value(r.fmt)).sum())
    return sum(
        int((out[seg.start : seg.stop].abs() >= largest_value(seg.fmt)).sum()) for seg in r.segments
    )


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


def _parts(fmt: Format, bounds: Bounds, aps_on: bool, dtype: torch.dtype) -> list[int | None]:
    """Per layer, the index of the rounding call that covers exactly that layer (whose
    counts are then the layer's), else None. Under APS the calls depend on the sizes only."""
    if aps_on:
        layout = plan_layout(fmt, bounds, [0] * len(bounds), dtype)
        spans = [(seg.start, seg.stop) for seg in layout.segments]
    else:
        spans = [(0, bounds[-1][1])] if bounds else []
    index = {span: k for k, span in enumerate(spans)}
    return [index.get(b) for b in bounds]


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


def _report(
    state: LowPrecisionState,
    bucket: int,
    world: int,
    bounds: Bounds,
    plan: aps.ShiftPlan | None,
    nonfinite: Sequence[bool],
    stats: dict[str, list[float]],
    errs: list[float] | None,
    exchanged: bool,
) -> ReduceReport:
    none: list[float | None] = [None] * len(bounds)
    unknown: list[int | None] = [None] * len(bounds)
    exps = plan.exponents if plan is not None else unknown
    shifts: Sequence[int | None] = plan.shifts if plan is not None else unknown
    frac: dict[str, Sequence[float | None]] = dict(stats)
    layers = tuple(
        LayerStats(
            index=i,
            numel=b - a,
            shift=shifts[i],
            exponent=exps[i] if exchanged else None,
            nonfinite=nonfinite[i],
            underflow=frac.get("underflow", none)[i],
            overflow=frac.get("overflow", none)[i],
            saturated=frac.get("saturated", none)[i],
            rel_error=errs[i] if errs is not None else None,
        )
        for i, (a, b) in enumerate(bounds)
    )
    return ReduceReport(
        step=state.step,
        bucket=bucket,
        world_size=world,
        fmt=None if state.fmt is None else str(state.fmt),
        reduction=state.reduction.value,
        rounding=state.rounding.value,
        aps=state.aps and state.fmt is not None,
        loss_scale=state.loss_scale,
        shifts_exchanged=exchanged,
        layers=layers,
        rel_error=errs[-1] if errs is not None else None,
    )


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
