"""The read-only counters of :mod:`precision.collectives.telemetry`, against their
definitions element by element."""

from __future__ import annotations

import math

import pytest
import torch

from precision.collectives import telemetry
from precision.quantize import largest_value
from precision.registry import BFLOAT16, FLOAT8_E4M3, FLOAT8_E5M2, from_bits

FORMATS = [from_bits(4), FLOAT8_E4M3, FLOAT8_E5M2, BFLOAT16]


def _by_definition(x: torch.Tensor, spans: list[tuple[int, int]], top: float) -> list[int]:
    out = []
    for a, b in spans:
        n = 0
        for v in x[a:b].tolist():
            n += int(not math.isnan(v) and abs(v) >= top)
        out.append(n)
    return out


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_count_at_least_matches_its_definition(fmt: object) -> None:
    top = largest_value(fmt)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, generator=g).clamp(-3, 3) * (top / 4)  # finite, below the limit
    assert bool(torch.isfinite(x).all()) and float(x.abs().max()) < top
    x[3], x[10] = top, -top  # at the limit, both signs
    x[20], x[21] = math.inf, math.nan  # a NaN span still counts its infinity
    x[40] = math.nan  # a span with NaN and nothing at the limit
    x[50] = -math.inf
    x[60] = torch.nextafter(torch.tensor(top), torch.tensor(0.0))  # just below: not counted
    spans = [(0, 8), (8, 16), (16, 24), (24, 24), (32, 48), (48, 56), (56, 64), (0, 64)]
    got = telemetry.count_at_least(x, spans, [top] * len(spans))
    assert got == _by_definition(x, spans, top)
    assert got[:3] == [1, 1, 1] and got[3] == 0 and got[4] == 0 and got[-1] == 4


def test_count_at_least_skips_nothing_it_should_count() -> None:
    """A span whose maximum reaches its own limit is counted, whatever the others do."""
    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 0.5, 16.0])
    spans = [(0, 2), (2, 4), (4, 6)]
    assert telemetry.count_at_least(x, spans, [2.0, 8.0, 32.0]) == [1, 1, 0]
    assert telemetry.count_at_least(x, [], []) == []
