"""Summation orders of the low-precision reductions, as pure functions.

The distributed code and the single-process reference both call these, so a distributed
result can be compared with the reference bit for bit. Each partial sum is formed exactly
(or, for float32-carried formats, in float64: double rounding through 53 bits is innocuous
for round-to-nearest into formats of at most 24 significand bits) and then rounded to the
format with :func:`precision.quantize.quantize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch

from precision.formats import Format
from precision.quantize import quantize
from precision.rounding import RoundingMode

_MASK64 = (1 << 64) - 1


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
class Rounder:
    """Rounds to ``fmt``; stochastic streams are keyed by ``base`` + a per-call key.

    Args:
        fmt: target format.
        rounding: rounding mode.
        base: (seed, step, bucket) of the call.
    """

    fmt: Format
    rounding: RoundingMode
    base: tuple[int, ...]

    def generator(self, *key: int) -> torch.Generator | None:
        if self.rounding is not RoundingMode.STOCHASTIC:
            return None
        h = 0
        for v in (*self.base, *key):
            h = _splitmix(h, v)
        return torch.Generator().manual_seed(h >> 1)

    def quantize(self, x: torch.Tensor, *key: int) -> torch.Tensor:
        return quantize(x, self.fmt, self.rounding, generator=self.generator(*key))

    def add(self, acc: torch.Tensor, x: torch.Tensor, *key: int) -> torch.Tensor:
        """``round(acc + x)`` in ``acc``'s dtype, the sum formed in float64."""
        s = acc.to(torch.float64) + x.to(torch.float64)  # no copy when already float64
        return quantize(s, self.fmt, self.rounding, generator=self.generator(*key)).to(acc.dtype)


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
    acc = parts[0].clone()
    for k in range(1, len(parts)):
        acc = r.add(acc, parts[k], Stage.RANK, k)
    return acc


def ring_sum(
    parts: Sequence[torch.Tensor], r: Rounder, stage: Stage = Stage.RING, group: int = 0
) -> torch.Tensor:
    """The ring reduce-scatter order over ``P = len(parts)`` members (see ``Reduction.RING``).

    Chunk ``c`` of the zero-padded tensor is ``x[c+1] + x[c+2] + ... + x[c]`` (indices mod
    P), rounded after each addition; addition ``k`` (1-based) of chunk ``c`` uses the
    stochastic key ``(stage, group, c, k)``.
    """
    p = len(parts)
    n = parts[0].numel()
    m = padded_chunk(n, p)
    chunks = [pad_to(x, m * p).view(p, m) for x in parts]
    out = []
    for c in range(p):
        acc = chunks[(c + 1) % p][c].clone()
        for k in range(1, p):
            acc = r.add(acc, chunks[(c + 1 + k) % p][c], stage, group, c, k)
        out.append(acc)
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
        ring_sum([row_sums[i][c * m : (c + 1) * m] for i in range(rows)], r, Stage.TORUS_COL, c)
        for c in range(cols)
    ]
    return torch.cat(col_sums)[:n]


def square_grid(world_size: int) -> tuple[int, int]:
    """The most square ``(rows, cols)`` with ``rows <= cols`` and ``rows * cols == W``."""
    rows = max(d for d in range(1, int(world_size**0.5) + 1) if world_size % d == 0)
    return rows, world_size // rows
