"""The reduction pipeline shared by the DDP hook, the training loop and the reference."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from precision import aps
from precision.collectives import comm, telemetry
from precision.collectives.ordered import (
    Rounder,
    Stage,
    plan_layout,
    rank_sum,
    ring_sum,
    square_grid,
    torus_sum,
)
from precision.collectives.state import (
    LayerStats,
    LowPrecisionState,
    NonFinitePolicy,
    ReduceReport,
    Reduction,
)
from precision.formats import BlockFormat, FixedFormat, Format

Bounds = list[tuple[int, int]]


def working_dtype(fmt: Format | None) -> torch.dtype:
    """float32, or float64 for a format float32 cannot hold."""
    return torch.float64 if fmt is not None and fmt.carrier == "float64" else torch.float32


def _top(fmt: Format) -> float:
    if isinstance(fmt, BlockFormat):
        return _top(fmt.element) * math.ldexp(1.0, fmt.scale.emax)
    return fmt.max_value if isinstance(fmt, FixedFormat) else fmt.max_finite


def _bounds(sizes: Iterable[int]) -> Bounds:
    out, a = [], 0
    for n in sizes:
        out.append((a, a + n))
        a += n
    return out


def layer_amax(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """``max|x[a:b]|`` per layer as a float64 CPU vector (NaN if the layer holds NaN)."""
    return telemetry.layer_amax(x, bounds)


def _plan(
    fmt: Format,
    amax: Callable[[], torch.Tensor],
    state: LowPrecisionState,
    world: int,
    cache_key: object,
    reduce_max: Callable[[torch.Tensor], torch.Tensor] | None,
    dtype: torch.dtype,
) -> tuple[aps.ShiftPlan, bool]:
    """APS steps 1-3 from local maxima (``amax()``, called only when the plan is
    recomputed), or the cached plan while ``reuse_shifts`` allows."""
    cached = state._shift_cache.get(cache_key)
    if cached is not None and cached[1] > 0:
        state._shift_cache[cache_key] = (cached[0], cached[1] - 1)
        return cached[0], False
    room = aps.default_headroom(world) if state.headroom is None else state.headroom
    e = aps.exponents_from_amax(amax(), room)
    plan = aps.shifts_from_exponents(reduce_max(e) if reduce_max else e, fmt, dtype)
    if state.reuse_shifts:
        state._shift_cache[cache_key] = (plan, state.reuse_shifts)
    return plan, True


def _raise_nonfinite(layers: Sequence[int]) -> None:
    raise aps.NonFiniteGradientError(
        f"gradients of layers {list(layers)} hold Inf or NaN on some worker; "
        "skip the step or lower the loss scale (nonfinite=NonFinitePolicy.REPORT reduces "
        "them unscaled and flags them instead)"
    )


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
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    fmt = state.fmt
    bounds = _bounds(sizes)
    work = flat.detach().view(-1).to(working_dtype(fmt))
    orig = work.clone() if state.measure_error and fmt is not None else None
    n = len(bounds)
    exps: Sequence[int | None] = [None] * n
    shifts: Sequence[int | None] = [None] * n
    exchanged, nonfinite_in = False, [False] * n
    stats: dict[str, list[float]] = {}
    if fmt is None:
        out = comm.all_reduce(work, group).div_(world)
    else:
        if state.loss_scale != 1.0:
            work.mul_(state.loss_scale)
        amax = functools.cache(lambda: layer_amax(work, bounds))
        plan = None
        if state.aps:
            plan, exchanged = _plan(
                fmt,
                amax,
                state,
                world,
                (bucket, tuple(sizes)),
                lambda e: comm.all_reduce_max(e, group, work.device),
                work.dtype,
            )
            if plan.any_nonfinite and state.nonfinite is NonFinitePolicy.RAISE:
                _raise_nonfinite([i for i, f in enumerate(plan.nonfinite) if f])
            exps, shifts, nonfinite_in = plan.exponents, plan.shifts, list(plan.nonfinite)
        layout = plan_layout(fmt, bounds, plan.shifts if plan else None, work.dtype)
        aps.apply_shifts(work, bounds, layout.multiply)
        r = Rounder(fmt, state.rounding, (state.seed, state.step, bucket), layout.segments)
        # the format's largest value per layer, in the domain each layer is rounded in
        tops = [math.ldexp(_top(fmt), -c) for c in layout.carried]
        if state.telemetry:
            mults = layout.multiply
            scaled = [math.ldexp(m, s) for m, s in zip(amax().tolist(), mults, strict=True)]
            stats["overflow"] = telemetry.count_above(work, bounds, scaled, tops)
            before = telemetry.nonzero_counts(work, bounds)
        q = r.round_(work, Stage.INPUT, rank)
        if state.telemetry:
            lost = [x - y for x, y in zip(before, telemetry.nonzero_counts(q, bounds), strict=True)]
            stats["underflow"] = telemetry.fractions(lost, bounds)
        out = _reduce_quantized(q, r, state, group)
        if state.telemetry:
            out_amax = layer_amax(out, bounds).tolist()
            stats["saturated"] = telemetry.count_at_least(out, bounds, out_amax, tops)
        finish(out, bounds, layout.multiply, state, world)
    nonfinite = [
        f or g for f, g in zip(nonfinite_in, telemetry.nonfinite_layers(out, bounds), strict=True)
    ]
    if any(nonfinite) and state.nonfinite is NonFinitePolicy.RAISE:
        _raise_nonfinite([i for i, f in enumerate(nonfinite) if f])
    errs: list[float] | None = None
    if state.measure_error:
        ref = comm.all_reduce(orig, group).div_(world) if orig is not None else out
        errs = telemetry.rel_errors(out, ref, bounds)
    report = _report(state, bucket, world, bounds, exps, shifts, nonfinite, stats, errs, exchanged)
    return out, report


def _reduce_quantized(
    q: torch.Tensor, r: Rounder, state: LowPrecisionState, group: Any
) -> torch.Tensor:
    """Sum the quantized ``q`` (overwritten) over the group as ``state.reduction`` says."""
    if state.reduction is Reduction.CARRIER:
        return r.round_(comm.all_reduce(q, group), Stage.RESULT)
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
    for (a, b), s in zip(bounds, shifts, strict=True):
        seg = out[a:b]
        factor = math.ldexp(1.0, -(s or 0)) / state.loss_scale / world
        if pow2 and info.tiny <= factor <= info.max:
            if factor != 1.0:
                seg.mul_(factor)
            continue
        if s:
            seg.mul_(math.ldexp(1.0, -s))
        if state.loss_scale != 1.0:
            seg.div_(state.loss_scale)
        seg.div_(world)


def _report(
    state: LowPrecisionState,
    bucket: int,
    world: int,
    bounds: Bounds,
    exps: Sequence[int | None],
    shifts: Sequence[int | None],
    nonfinite: Sequence[bool],
    stats: dict[str, list[float]],
    errs: list[float] | None,
    exchanged: bool,
) -> ReduceReport:
    none: list[float | None] = [None] * len(bounds)
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
        flat = torch.cat([g.detach().reshape(-1).to(working_dtype(state.fmt)) for g in grads])
    else:
        flat = torch.zeros(0)
    out, report = reduce_flat(flat, [g.numel() for g in grads], state)
    for g, (a, b) in zip(grads, _bounds(g.numel() for g in grads), strict=True):
        g.copy_(out[a:b].view_as(g))
    state.last_reports = [report]
    state.step += 1
    return report


def reference_reduce(
    tensors: Sequence[Sequence[torch.Tensor]], state: LowPrecisionState, *, step: int = 0
) -> list[torch.Tensor]:
    """Single-process reproduction of :func:`all_reduce_gradients`, bit for bit.

    Args:
        tensors: ``tensors[rank][layer]``: each worker's gradients.
        state: the settings (``reuse_shifts`` and ``process_group`` are ignored).
        step: the step counter the distributed call would see (keys stochastic rounding).

    Returns:
        The averaged gradient of each layer, shaped like ``tensors[0]``.

    Note:
        ``CARRIER`` and the float32 baseline sum in rank order in the carrier; the
        all-reduce's own order can differ by a carrier rounding unless every partial sum is
        exact (true for formats whose values span at most ~22 binades, e.g. e3m0, e4m3).
    """
    world = len(tensors)
    fmt = state.fmt
    dt = working_dtype(fmt)
    sizes = [t.numel() for t in tensors[0]]
    bounds = _bounds(sizes)
    works = [torch.cat([t.detach().reshape(-1).to(dt) for t in ts]) for ts in tensors]
    if fmt is None:
        out = rank_sum_exact(works).div_(world)
    else:
        works = [w * state.loss_scale if state.loss_scale != 1.0 else w for w in works]
        layout = plan_layout(fmt, bounds, None, dt)
        if state.aps:
            room = aps.default_headroom(world) if state.headroom is None else state.headroom
            exps = torch.stack(
                [aps.local_exponents([w[a:b] for a, b in bounds], room) for w in works]
            )
            plan = aps.shifts_from_exponents(exps.amax(0), fmt, dt)
            layout = plan_layout(fmt, bounds, plan.shifts, dt)
            for w in works:
                aps.apply_shifts(w, bounds, layout.multiply)
        r = Rounder(fmt, state.rounding, (state.seed, step, 0), layout.segments)
        qs = [r.round_(w, Stage.INPUT, k) for k, w in enumerate(works)]
        if state.reduction is Reduction.CARRIER:
            out = r.round_(rank_sum_exact(qs), Stage.RESULT)
        elif state.reduction is Reduction.RANK:
            out = rank_sum(qs, r)
        elif state.reduction is Reduction.RING:
            out = ring_sum(qs, r)
        else:
            out = torus_sum(qs, state.grid or square_grid(world), r)
        finish(out, bounds, layout.multiply, state, world)
    return [out[a:b].view_as(t).to(t.dtype) for t, (a, b) in zip(tensors[0], bounds, strict=True)]


def rank_sum_exact(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Plain carrier-dtype sum in rank order (no format rounding)."""
    acc = parts[0].clone()
    for x in parts[1:]:
        acc += x
    return acc
