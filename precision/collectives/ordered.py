"""Rounding plans and summation orders of the low-precision reductions, as pure functions.

The distributed code and the single-process reference both call these, so a distributed
result can be compared with the reference bit for bit. Each partial sum is formed exactly
and then rounded to the format in place with :func:`precision.quantize.quantize`: in the
working dtype when every sum of two values of the format is exact there (e3m0, e4m3 in
float32), otherwise in float64 (double rounding through 53 bits is innocuous for
round-to-nearest into formats of at most 24 significand bits). A float64 accumulator is
converted once per chain of additions, not once per addition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import torch

from precision import aps
from precision.formats import FixedFormat, FloatFormat, Format
from precision.quantize import RoundingCounts, quantize
from precision.rounding import RoundingMode

_MASK64 = (1 << 64) - 1
#: Layers at least this long carry their APS shift in the format (saving two multiply
#: passes); shorter ones are multiplied and rounded together in one call: each rounding
#: call costs ~0.1-0.3 ms, as much as two multiply passes over ~2**18 elements.
MIN_CARRIED = 1 << 18


class Stage(IntEnum):
    """Which rounding a stochastic-rounding stream belongs to (part of its key)."""

    INPUT = 0
    RANK = 1
    RING = 2
    TORUS_ROW = 3
    TORUS_COL = 4
    RESULT = 5


def _splitmix(h: int, v: int) -> int:
    z = (h ^ (v & _MASK64)) + 0x9E3779B97F4A7C15 & _MASK64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK64
    return z ^ (z >> 31)


@dataclass(frozen=True)
class Segment:
    """Elements ``start:stop`` of the flat tensor, rounded to ``fmt`` in one call."""

    start: int
    stop: int
    fmt: Format


@dataclass(frozen=True)
class Layout:
    """How the layers of one flat tensor are rounded under APS.

    Attributes:
        segments: the rounding calls; empty means one call over the whole tensor with the
            base format (APS off).
        multiply: per layer, the shift applied by multiplying before rounding (and undone
            after the reduction); 0 where the segment's format carries the shift.
        carried: per layer, the shift carried by the segment's format.
    """

    segments: tuple[Segment, ...]
    multiply: tuple[int, ...]
    carried: tuple[int, ...]


def plan_layout(
    fmt: Format,
    bounds: Sequence[tuple[int, int]],
    shifts: Sequence[int] | None,
    dtype: torch.dtype,
    min_carried: int | None = None,
) -> Layout:
    """Segments and shifts of one call (``shifts`` None: APS off).

    A layer of at least ``min_carried`` elements is its own segment and carries its shift in
    :func:`precision.aps.shifted_format` where that exists; every run of shorter layers is one
    segment in ``fmt``, their shifts multiplied in (``min_carried`` None: :data:`MIN_CARRIED`,
    read at call time). The segments depend on the sizes only, so stochastic streams (keyed
    by segment) do not depend on which layers carry their shift.
    """
    n = len(bounds)
    if shifts is None:
        return Layout((), (0,) * n, (0,) * n)
    min_carried = MIN_CARRIED if min_carried is None else min_carried
    segments: list[Segment] = []
    multiply: list[int] = []
    carried: list[int] = []
    run: int | None = None  # start of the current run of short layers
    for (a, b), s in zip(bounds, shifts, strict=True):
        if b - a < min_carried:
            run = a if run is None else run
            multiply.append(s)
            carried.append(0)
            continue
        if run is not None:
            segments.append(Segment(run, a, fmt))
            run = None
        own = aps.shifted_format(fmt, s, dtype)
        segments.append(Segment(a, b, fmt if own is None else own))
        multiply.append(s if own is None else 0)
        carried.append(0 if own is None else s)
    if run is not None:
        segments.append(Segment(run, bounds[-1][1], fmt))
    return Layout(tuple(segments), tuple(multiply), tuple(carried))


def _exact_sums(fmt: Format, dtype: torch.dtype) -> bool:
    """True when ``a + b`` is exact in ``dtype`` for all values ``a``, ``b`` of ``fmt``."""
    info = torch.finfo(dtype)
    p = 1 - round(math.log2(info.eps))  # significand bits
    if isinstance(fmt, FixedFormat):
        return fmt.word_bits + 1 <= p
    if isinstance(fmt, FloatFormat):
        # multiples of 2**(emin - m) below 2**(emax + 2), and 2*max_finite finite
        span = fmt.emax - fmt.emin + fmt.mantissa_bits + 2
        return span <= p and 2 * fmt.max_finite <= info.max
    return False


@dataclass(frozen=True)
class Rounder:
    """Rounds to ``fmt`` (or per segment); stochastic streams are keyed by ``base`` + a
    per-call key (+ the segment index).

    Args:
        fmt: target format.
        rounding: rounding mode.
        base: (seed, step, bucket) of the call.
        segments: per-segment formats over the flat tensor (see :class:`Layout`); empty
            rounds every element to ``fmt``.
    """

    fmt: Format
    rounding: RoundingMode
    base: tuple[int, ...]
    segments: tuple[Segment, ...] = ()

    def generator(self, *key: int) -> torch.Generator | None:
        if self.rounding is not RoundingMode.STOCHASTIC:
            return None
        h = 0
        for v in (*self.base, *key):
            h = _splitmix(h, v)
        return torch.Generator().manual_seed(h >> 1)

    def round(
        self,
        x: torch.Tensor,
        *key: int,
        out: torch.Tensor | None = None,
        offset: int = 0,
        tally: bool = False,
    ) -> list[RoundingCounts] | None:
        """Round ``x`` into ``out`` (None: in place), segment by segment.

        ``x`` holds elements ``offset:offset + len(x)`` of the flat tensor; elements past
        the last segment (zero padding) are left as they are (copied into ``out``).

        Returns:
            With ``tally``, the :class:`~precision.quantize.RoundingCounts` of each segment
            that ``x`` covers (one entry when there are no segments); else None.
        """
        dest = x if out is None else out
        parts = (
            [(0, x.numel(), self.fmt, ())]
            if not self.segments
            else [
                (max(seg.start - offset, 0), min(seg.stop - offset, x.numel()), seg.fmt, (i,))
                for i, seg in enumerate(self.segments)
            ]
        )
        counts: list[RoundingCounts] = []
        end = 0
        for a, b, fmt, extra in parts:
            if a >= b:
                continue
            gen = self.generator(*key, *extra)
            if tally:
                counts.append(quantize(x[a:b], fmt, self.rounding, out=dest[a:b], count=True,
                                       generator=gen)[1])  # fmt: skip
            else:
                quantize(x[a:b], fmt, self.rounding, out=dest[a:b], generator=gen)
            end = b
        if dest is not x and end < x.numel():
            dest[end:].copy_(x[end:])  # zero padding, left as it is
        return counts if tally else None

    @cached_property
    def _exact(self) -> dict[torch.dtype, bool]:
        fmts = [self.fmt, *(s.fmt for s in self.segments)]
        return {dt: all(_exact_sums(f, dt) for f in fmts) for dt in (torch.float32, torch.float64)}

    def exact_in(self, dtype: torch.dtype) -> bool:
        """Whether partial sums can be formed in ``dtype`` (float32 or float64) exactly."""
        return self._exact.get(dtype, False)

    def add_(self, acc: torch.Tensor, x: torch.Tensor, *key: int, offset: int = 0) -> None:
        """``acc = round(acc + x)`` in place."""
        accumulate_(acc, [x], self, [key], offset)


def accumulate_(
    acc: torch.Tensor,
    xs: Sequence[torch.Tensor],
    r: Rounder,
    keys: Sequence[tuple[int, ...]],
    offset: int = 0,
) -> torch.Tensor:
    """``acc = round(...round(round(acc + xs[0]) + xs[1])... )`` in place; addition ``k``
    rounds with the stochastic key ``keys[k]``. Returns ``acc``."""
    if not xs:
        return acc
    if r.exact_in(acc.dtype) or acc.dtype == torch.float64:
        for x, key in zip(xs, keys, strict=True):
            r.round(acc.add_(x), *key, offset=offset)
        return acc
    wide = acc.to(torch.float64)
    for x, key in zip(xs, keys, strict=True):
        r.round(wide.add_(x), *key, offset=offset)
    return acc.copy_(wide)


def padded_chunk(n: int, parts: int) -> int:
    """Chunk length when ``n`` elements are zero-padded to ``parts`` equal chunks."""
    return -(-n // parts) if n else 0


def pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    if x.numel() == length:
        return x
    out = x.new_zeros(length)
    out[: x.numel()] = x
    return out


def rank_sum(parts: Sequence[torch.Tensor], r: Rounder) -> torch.Tensor:
    """``round(...round(round(x0 + x1) + x2)... + x_{W-1})``: rank order."""
    keys = [(int(Stage.RANK), k) for k in range(1, len(parts))]
    return accumulate_(parts[0].clone(), parts[1:], r, keys)


def ring_sum(
    parts: Sequence[torch.Tensor],
    r: Rounder,
    stage: Stage = Stage.RING,
    group: int = 0,
    offset: int = 0,
) -> torch.Tensor:
    """The ring reduce-scatter order over ``P = len(parts)`` members (see ``Reduction.RING``).

    Chunk ``c`` of the zero-padded tensor is ``x[c+1] + x[c+2] + ... + x[c]`` (indices mod
    P), rounded after each addition; addition ``k`` (1-based) of chunk ``c`` uses the
    stochastic key ``(stage, group, c, k)``. ``parts`` hold flat elements from ``offset``.
    """
    p = len(parts)
    n = parts[0].numel()
    m = padded_chunk(n, p)
    chunks = [pad_to(x, m * p).view(p, m) for x in parts]
    out = []
    for c in range(p):
        keys = [(int(stage), group, c, k) for k in range(1, p)]
        xs = [chunks[(c + 1 + k) % p][c] for k in range(1, p)]
        out.append(accumulate_(chunks[(c + 1) % p][c].clone(), xs, r, keys, offset + c * m))
    return torch.cat(out)[:n] if out else parts[0].clone()


def torus_sum(parts: Sequence[torch.Tensor], grid: tuple[int, int], r: Rounder) -> torch.Tensor:
    """The 2D-torus order: ring reduce-scatter along rows, ring all-reduce along columns."""
    rows, cols = grid
    n = parts[0].numel()
    m = padded_chunk(n, cols)
    row_sums = [
        pad_to(ring_sum(parts[i * cols : (i + 1) * cols], r, Stage.TORUS_ROW, i), m * cols)
        for i in range(rows)
    ]
    col_sums = [
        ring_sum(
            [row_sums[i][c * m : (c + 1) * m] for i in range(rows)],
            r,
            Stage.TORUS_COL,
            c,
            c * m,
        )
        for c in range(cols)
    ]
    return torch.cat(col_sums)[:n]


def square_grid(world_size: int) -> tuple[int, int]:
    """The most square ``(rows, cols)`` with ``rows <= cols`` and ``rows * cols == W``."""
    rows = max(d for d in range(1, int(world_size**0.5) + 1) if world_size % d == 0)
    return rows, world_size // rows
