"""Per-layer counters of the low-precision all-reduce, each at most one read pass.

Every counter first looks at the per-layer maximum it is given and scans only the layers
where that maximum shows there can be something to count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from precision.quantize import RoundingCounts

Bounds = list[tuple[int, int]]


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


def nonzero_counts(x: torch.Tensor, bounds: Bounds) -> list[int]:
    """Nonzero elements per layer (one read pass, one host transfer)."""
    if not bounds:
        return []
    counts = [x[a:b].count_nonzero() for a, b in bounds]
    return [int(c) for c in torch.stack(counts).cpu().tolist()]


@dataclass(frozen=True)
class LayerCounts:
    """Underflow, overflow and saturation per layer of one reduction.

    Layers rounded in a call of their own (``parts[i]``: that call's index) take their
    counts from the rounding passes (:func:`precision.quantize.quantize` with ``count=True``); the
    others (``scan``) are counted by reads of those layers alone.
    """

    bounds: Bounds
    parts: list[int | None]
    scan: list[int]
    before: list[int]  # nonzero elements of each scanned layer before rounding

    @classmethod
    def start(cls, work: torch.Tensor, bounds: Bounds, parts: list[int | None]) -> LayerCounts:
        """Count the scanned layers' nonzero inputs (call before ``work`` is rounded)."""
        scan = [i for i, k in enumerate(parts) if k is None]
        return cls(bounds, parts, scan, nonzero_counts(work, [bounds[i] for i in scan]))

    @property
    def tallied(self) -> bool:
        """Whether some layer takes its counts from a rounding call."""
        return len(self.scan) < len(self.bounds)

    def flushed(self, q: torch.Tensor, counts: Sequence[RoundingCounts]) -> list[float]:
        """Fraction of each layer's elements flushed to zero; ``q`` is the rounded input."""
        sub = [self.bounds[i] for i in self.scan]
        lost = [x - y for x, y in zip(self.before, nonzero_counts(q, sub), strict=True)]
        return self._merge(counts, "flushed", fractions(lost, sub))

    def beyond(
        self,
        x: torch.Tensor,
        counts: Sequence[RoundingCounts],
        amax: Sequence[float],
        tops: Sequence[float],
    ) -> list[float]:
        """Fraction of each layer's (scaled) input ``x`` above its ``tops`` value."""
        sub = [self.bounds[i] for i in self.scan]
        above = count_above(x, sub, [amax[i] for i in self.scan], [tops[i] for i in self.scan])
        return self._merge(counts, "beyond", above)

    def at_limit(
        self, out: torch.Tensor, counts: Sequence[RoundingCounts] | None, tops: Sequence[float]
    ) -> list[float]:
        """Fraction of each layer's result at its ``tops`` value or beyond; ``counts`` None
        (a result not made by one rounding call per part) scans every layer."""
        layers = self.scan if counts is not None else range(len(self.bounds))
        sub = [self.bounds[i] for i in layers]
        at = count_at_least(out, sub, layer_amax(out, sub).tolist(), [tops[i] for i in layers])
        return at if counts is None else self._merge(counts, "at_limit", at)

    def _merge(
        self, counts: Sequence[RoundingCounts], name: str, scanned: Sequence[float]
    ) -> list[float]:
        rest = iter(scanned)
        return [
            next(rest) if k is None else (getattr(counts[k], name) / (b - a) if b > a else 0.0)
            for k, (a, b) in zip(self.parts, self.bounds, strict=True)
        ]


def fractions(counts: Sequence[int], bounds: Bounds) -> list[float]:
    return [c / (b - a) if b > a else 0.0 for c, (a, b) in zip(counts, bounds, strict=True)]


def count_above(
    x: torch.Tensor, bounds: Bounds, amax: Sequence[float], tops: Sequence[float]
) -> list[float]:
    """Fraction of finite elements with ``|x| > top`` per layer; a layer whose maximum is
    at most its ``top`` is not scanned."""
    out = []
    for (a, b), m, top in zip(bounds, amax, tops, strict=True):
        if b == a or m <= top:
            out.append(0.0)
            continue
        seg = x[a:b]
        hit = (seg.abs() > top) & torch.isfinite(seg)
        out.append(int(hit.count_nonzero()) / (b - a))
    return out


def count_at_least(
    x: torch.Tensor, bounds: Bounds, amax: Sequence[float], tops: Sequence[float]
) -> list[float]:
    """Fraction of elements with ``|x| >= top`` per layer (Inf included, NaN not); a layer
    whose maximum is below its ``top`` is not scanned. Each ``top`` must be exact in
    ``x.dtype`` (the comparison happens in that dtype)."""
    out = []
    for (a, b), m, top in zip(bounds, amax, tops, strict=True):
        if b == a or m < top:
            out.append(0.0)
            continue
        out.append(int((x[a:b].abs() >= top).count_nonzero()) / (b - a))
    return out


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
