"""The end of a reduction: the non-finite check and the :class:`ReduceReport` it makes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from precision import aps
from precision.collectives import telemetry
from precision.collectives.state import (
    LayerStats,
    LowPrecisionState,
    NonFinitePolicy,
    ReduceReport,
    Reduction,
)
from precision.collectives.telemetry import Bounds, LayerFractions
from precision.formats import FixedFormat, FloatFormat


@dataclasses.dataclass(frozen=True)
class LowpResult:
    """What a reduction gives back before its report is made.

    Attributes:
        out: the average, in the working buffer.
        plan: the APS shifts in force (None without APS).
        exchanged: whether the shifts were exchanged in this call.
        stats: per-layer telemetry fractions (``underflow``, ``overflow``, ``saturated``),
            None for a layer that shared its rounding call; empty without telemetry.
        totals: (flushed, beyond, at_limit) of the whole call, or None without telemetry.
    """

    out: torch.Tensor
    plan: aps.ShiftPlan | None
    exchanged: bool
    stats: LayerFractions
    totals: tuple[int, int, int] | None


def raise_nonfinite(layers: Sequence[int]) -> None:
    """Raise the :class:`~precision.aps.NonFiniteGradientError` naming ``layers``."""
    raise aps.NonFiniteGradientError(
        f"gradients of layers {list(layers)} hold Inf or NaN on some worker; "
        "skip the step or lower the loss scale (nonfinite=NonFinitePolicy.REPORT reduces "
        "them unscaled and flags them instead)"
    )


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
        raise_nonfinite([i for i, f in enumerate(nonfinite) if f])
    return ReduceReport(
        step=state.step,
        bucket=bucket,
        world_size=world,
        fmt=None if state.fmt is None else str(state.fmt),
        reduction=state.reduction.value,
        rounding=state.rounding.value,
        aps=state.aps and state.fmt is not None,
        loss_scale=state.loss_scale,
        shifts_exchanged=res.exchanged,
        layers=_layers(bounds, res, nonfinite, errs),
        rel_error=errs[-1] if errs is not None else None,
        totals=res.totals,
    )


def _layers(
    bounds: Bounds, res: LowpResult, nonfinite: Sequence[bool], errs: list[float] | None
) -> tuple[LayerStats, ...]:
    unknown: list[Any] = [None] * len(bounds)
    plan = res.plan
    exps = plan.exponents if plan is not None and res.exchanged else unknown
    shifts: Sequence[int | None] = plan.shifts if plan is not None else unknown
    frac = {name: res.stats.get(name, unknown) for name in ("underflow", "overflow", "saturated")}
    return tuple(
        LayerStats(
            index=i,
            numel=b - a,
            shift=shifts[i],
            exponent=exps[i],
            nonfinite=nonfinite[i],
            underflow=frac["underflow"][i],
            overflow=frac["overflow"][i],
            saturated=frac["saturated"][i],
            rel_error=errs[i] if errs is not None else None,
        )
        for i, (a, b) in enumerate(bounds)
    )
