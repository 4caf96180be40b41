"""Single-process reproduction of the distributed reductions, bit for bit (for tests)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from precision import aps
from precision.collectives.ordered import (
    Rounder,
    Stage,
    plan_layout,
    rank_sum,
    ring_sum,
    square_grid,
    torus_sum,
)
from precision.collectives.pipeline import finish, layer_bounds, working_dtype
from precision.collectives.state import LowPrecisionState, Reduction


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
    bounds = layer_bounds(sizes)
    works = [torch.cat([t.detach().reshape(-1).to(dt) for t in ts]) for ts in tensors]
    if fmt is None:
        out = rank_sum_exact(works).div_(world)
    else:
        works = [w * state.loss_scale if state.loss_scale != 1.0 else w for w in works]
        layout = plan_layout(fmt, bounds, None, dt)
        if state.aps:
            room = state.headroom_bits(world)
            exps = torch.stack(
                [aps.local_exponents([w[a:b] for a, b in bounds], room) for w in works]
            )
            plan = aps.shifts_from_exponents(exps.amax(0), fmt, dt)
            layout = plan_layout(fmt, bounds, plan.shifts, dt)
            for w in works:
                aps.apply_shifts(w, bounds, layout.multiply)
        r = Rounder(fmt, state.rounding, (state.seed, step, 0), layout.segments)
        qs = [_rounded(r, w, Stage.INPUT, k) for k, w in enumerate(works)]
        if state.reduction is Reduction.CARRIER:
            out = _rounded(r, rank_sum_exact(qs), Stage.RESULT)
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


def _rounded(r: Rounder, x: torch.Tensor, *key: int) -> torch.Tensor:
    r.round(x, *key)
    return x
