"""What the low-precision all-reduce measures: per-layer maxima, non-finite layers, errors,
and the underflow / overflow / saturation tallies of its rounding calls.

The counts come from the rounding passes themselves (:func:`precision.quantize.quantize`
with ``count=True``), one :class:`~precision.quantize.RoundingCounts` per rounding call:
their sums are a call's totals, and a layer rounded in a call of its own has that call's
counts as its own. A layer that shares its call with others has no per-layer count (it
would take another read of the gradients).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from precision.quantize import RoundingCounts

Bounds = list[tuple[int, int]]
#: Per-layer fractions by name (``underflow``, ``overflow``, ``saturated``); None where a
#: layer shared its rounding call.
LayerFractions = dict[str, list[float | None]]


def layer_amax(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """``max|x[a:b]|`` per layer as a float64 CPU vector (NaN if the layer holds NaN, 0 for
    an empty one); one read pass, a few operations per layer."""
    if not bounds:
        return torch.empty(0, dtype=torch.float64)
    zero = x.new_zeros(())
    pairs = [torch.aminmax(x[a:b]) if b > a else (zero, zero) for a, b in bounds]
    lo = torch.stack([p[0] for p in pairs])
    hi = torch.stack([p[1] for p in pairs])
    return (torch.maximum(-lo, hi) + 0.0).to(torch.float64).cpu()  # (+ 0.0: no -0)


def count_at_least(x: torch.Tensor, spans: Bounds, tops: Sequence[float]) -> list[int]:
    """Elements with ``|x| >= top`` (infinities included, NaN not) in each span.

    One :func:`layer_amax` pass first; only a span whose maximum is not below its ``top``
    (or is NaN) is then counted, so a reduction that saturates nothing costs one read.
    Each ``top`` must be exact in ``x.dtype`` (the comparison happens in that dtype).
    """
    amax = layer_amax(x, spans).tolist()
    return [
        0 if m < top else int((x[a:b].abs() >= top).count_nonzero())
        for (a, b), m, top in zip(spans, amax, tops, strict=True)
    ]


def tally(
    calls: Sequence[tuple[int, int]],
    inputs: Sequence[RoundingCounts],
    at_limit: Sequence[int],
    bounds: Bounds,
) -> tuple[tuple[int, int, int], LayerFractions]:
    """The totals and per-layer fractions of one reduction, from its rounding calls' tallies.

    Args:
        calls: ``(start, stop)`` of each nonempty rounding call over the flat tensor, in
            order (the same calls round the inputs and the result).
        inputs: the :class:`~precision.quantize.RoundingCounts` of each call rounding the
            inputs.
        at_limit: per call, the results at or beyond the format's largest value.
        bounds: the layers.

    Returns:
        ``(flushed, beyond, at_limit)`` of the whole tensor, and per layer the fractions
        ``underflow``, ``overflow``, ``saturated`` of a layer that is a call of its own
        (None for a layer that shares its call: its counts are not split).
    """
    totals = (
        sum(c.flushed for c in inputs),
        sum(c.beyond for c in inputs),
        sum(at_limit),
    )
    index = {span: k for k, span in enumerate(calls)}
    own = [index.get(b) for b in bounds]
    per_call = {
        "underflow": [c.flushed for c in inputs],
        "overflow": [c.beyond for c in inputs],
        "saturated": list(at_limit),
    }
    stats: LayerFractions = {
        name: [
            None if k is None else counts[k] / (b - a)
            for k, (a, b) in zip(own, bounds, strict=True)
        ]
        for name, counts in per_call.items()
    }
    return totals, stats


def nonfinite_layers(out: torch.Tensor, bounds: Bounds) -> list[bool]:
    if math.isfinite(float(out.sum())):  # one cheap pass; Inf/NaN (or overflow) -> check
        return [False] * len(bounds)
    return [not bool(torch.isfinite(out[a:b]).all()) for a, b in bounds]


def rel_errors(got: torch.Tensor, ref: torch.Tensor, bounds: Bounds) -> list[float]:
    """Relative L2 error per layer, then over the whole tensor."""
    out = []
    for a, b in [*bounds, (0, got.numel())]:
        d = torch.linalg.vector_norm((got[a:b] - ref[a:b]).double())
        nr = torch.linalg.vector_norm(ref[a:b].double())
        out.append(float(d / nr) if nr > 0 else (0.0 if d == 0 else math.inf))
    return out
