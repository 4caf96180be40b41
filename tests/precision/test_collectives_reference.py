"""The single-process reference: summation orders by hand, identities, unbiasedness."""

from __future__ import annotations

import math

import pytest
import torch

from precision import FloatFormat, aps
from precision.collectives import LowPrecisionState, Reduction, ordered, reference_reduce
from precision.collectives.ordered import Rounder, plan_layout, ring_sum, square_grid, torus_sum
from precision.registry import (
    BFLOAT16,
    FLOAT8_E4M3,
    FLOAT8_E4M3FN,
    FLOAT8_E5M2,
    FLOAT32,
    from_bits,
    parse,
)
from precision.rounding import RoundingMode

E3M1 = parse("e3m1")  # 1, 1.5, 2, 3, ...: 1 + 0.25 is a tie that rounds back to 1
E3M0 = from_bits(4)


def _one_hot_ranks(world: int) -> list[list[torch.Tensor]]:
    """Element c is 1.0 on rank c and 0.25 elsewhere."""
    return [[torch.tensor([1.0 if c == r else 0.25 for c in range(world)])] for r in range(world)]


def test_rank_and_ring_orders_by_hand() -> None:
    """Rank order adds 0.25 to 1.0 one at a time (each tie rounds back to 1.0); the ring
    starts chunk c at rank c+1, so the two 0.25s meet first and make 0.5, then 1.5."""
    tensors = _one_hot_ranks(3)
    kw = {"fmt": E3M1, "aps": False}
    rank = reference_reduce(tensors, LowPrecisionState(reduction=Reduction.RANK, **kw))[0]
    ring = reference_reduce(tensors, LowPrecisionState(reduction=Reduction.RING, **kw))[0]
    assert torch.equal(rank * 3, torch.tensor([1.0, 1.0, 1.5]))
    assert torch.equal(ring * 3, torch.tensor([1.5, 1.5, 1.5]))


def test_torus_on_a_line_is_the_ring() -> None:
    r = Rounder(E3M1, RoundingMode.NEAREST_EVEN, (0, 0, 0))
    g = torch.Generator().manual_seed(3)
    parts = [torch.randn(29, generator=g) for _ in range(6)]
    parts = [p.clone() for p in parts]
    for p in parts:
        r.round(p)
    ring = ring_sum(parts, r)
    assert torch.equal(torus_sum(parts, (1, 6), r), ring)
    assert torch.equal(torus_sum(parts, (6, 1), r), ring)


def test_torus_grid_order_by_hand() -> None:
    """2x2 grid, one element: rows sum (x1 + x0) and (x3 + x2), then the column adds
    row 1's sum to row 0's (the column ring starts at row 1 for sub-chunk 0)."""
    r = Rounder(E3M1, RoundingMode.NEAREST_EVEN, (0, 0, 0))
    x = [torch.tensor([v]) for v in (1.0, 0.25, 0.25, 0.25)]
    # row 0: 0.25 + 1 -> 1.25 -> 1 (tie to even); row 1: 0.25 + 0.25 = 0.5; 0.5 + 1 = 1.5
    assert float(torus_sum(x, (2, 2), r)[0]) == 1.5


def test_square_grid() -> None:
    assert [square_grid(w) for w in (1, 2, 4, 6, 8, 9, 12, 7)] == [
        (1, 1), (1, 2), (2, 2), (2, 3), (2, 4), (3, 3), (3, 4), (1, 7)
    ]  # fmt: skip


@pytest.mark.parametrize("reduction", list(Reduction))
def test_float32_format_is_the_float32_sum(reduction: Reduction) -> None:
    g = torch.Generator().manual_seed(1)
    tensors = [[torch.randn(50, generator=g)] for _ in range(4)]
    got = reference_reduce(tensors, LowPrecisionState(fmt=FLOAT32, reduction=reduction))[0]
    exact = sum(t[0].double() for t in tensors) / 4
    assert torch.allclose(got.double(), exact, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("reduction", list(Reduction))
def test_stochastic_rounding_is_unbiased_through_every_reduction(reduction: Reduction) -> None:
    """0.3 lies between the e3m0 values 0.25 and 0.5; nearest always gives 0.25."""
    tensors = [[torch.full((8192,), 0.3)] for _ in range(4)]
    kw = {"fmt": E3M0, "aps": False, "reduction": reduction, "seed": 11}
    sr = reference_reduce(tensors, LowPrecisionState(rounding=RoundingMode.STOCHASTIC, **kw))[0]
    rn = reference_reduce(tensors, LowPrecisionState(**kw))[0]
    assert abs(float(sr.double().mean()) - 0.3) < 0.006  # > 5 standard errors
    assert abs(float(rn.double().mean()) - 0.3) > 0.04
    again = reference_reduce(tensors, LowPrecisionState(rounding=RoundingMode.STOCHASTIC, **kw))
    assert torch.equal(again[0], sr)  # seeded: reproducible


def test_loss_scale_is_the_static_baseline() -> None:
    tiny = [[torch.full((4,), 1e-9)], [torch.full((4,), 3e-9)]]
    kw = {"fmt": FLOAT8_E4M3, "aps": False}
    assert bool((reference_reduce(tiny, LowPrecisionState(**kw))[0] == 0).all())
    scaled = reference_reduce(tiny, LowPrecisionState(loss_scale=2.0**30, **kw))[0]
    assert torch.allclose(scaled, torch.full((4,), 2e-9), rtol=2**-3)


def test_state_validation() -> None:
    with pytest.raises(TypeError, match=r"precision\.parse"):
        LowPrecisionState(fmt="e4m3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss_scale"):
        LowPrecisionState(fmt=E3M0, loss_scale=0.0)
    with pytest.raises(ValueError, match="reuse_shifts"):
        LowPrecisionState(fmt=E3M0, reuse_shifts=-1)
    with pytest.raises(ValueError, match="grid"):
        LowPrecisionState(fmt=E3M0, grid=(0, 2))
    assert LowPrecisionState(reduction="ring").reduction is Reduction.RING  # type: ignore[arg-type]


def _mixed_layers(world: int) -> list[list[torch.Tensor]]:
    """Per-rank layers: ordinary, tiny, zero, large, one with a NaN on the last rank, and
    short ones that stay on the multiply path."""
    g = torch.Generator().manual_seed(world)
    out = []
    for r in range(world):
        layers = [
            torch.randn(300, generator=g) * 1e-3,
            torch.randn(257, generator=g) * 1e-30,
            torch.zeros(64),
            torch.randn(3, generator=g),
            torch.randn(130, generator=g) * 1e15,
            torch.randn(5, generator=g) * 1e-8,
            torch.randn(96, generator=g) * 1e-6,
        ]
        if r == world - 1:
            layers[6][4] = math.nan
        out.append(layers)
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool((both_nan | ((a == b) & (torch.signbit(a) == torch.signbit(b)))).all())


@pytest.mark.parametrize("fmt", [E3M0, FLOAT8_E4M3, FLOAT8_E4M3FN, FLOAT8_E5M2, BFLOAT16], ids=str)
@pytest.mark.parametrize("reduction", list(Reduction))
@pytest.mark.parametrize("rounding", [RoundingMode.NEAREST_EVEN, RoundingMode.STOCHASTIC])
def test_carried_shifts_equal_the_multiply_path(
    fmt: FloatFormat, reduction: Reduction, rounding: RoundingMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers that carry their APS shift in the format give the bits of scaling by
    multiplication (the segments, hence the stochastic streams, are the same)."""
    monkeypatch.setattr(ordered, "MIN_CARRIED", 50)
    for world in (2, 3, 4):
        tensors = _mixed_layers(world)
        state = LowPrecisionState(fmt=fmt, reduction=reduction, rounding=rounding, seed=3)
        carried = reference_reduce(tensors, state, step=1)
        bounds, a = [], 0
        for t in tensors[0]:
            bounds.append((a, a + t.numel()))
            a += t.numel()
        with monkeypatch.context() as m:
            m.setattr(aps, "shifted_format", lambda *args: None)
            multiplied = reference_reduce(tensors, state, step=1)
        assert all(_same(x, y) for x, y in zip(carried, multiplied, strict=True)), world
        if fmt is not BFLOAT16:  # (bfloat16 shifts never fit float32)
            layout = plan_layout(fmt, bounds, [3] * len(bounds), torch.float32)
            assert any(layout.carried) and any(layout.multiply)


SIGNED = [E3M0, E3M1, FLOAT8_E4M3, FLOAT8_E4M3FN, FLOAT8_E5M2, BFLOAT16]
SIGNED += [parse("fixed8.4"), parse("e4m3fn-sat"), parse("e2m1fn")]


def _hostile(world: int) -> list[list[torch.Tensor]]:
    """Gradients whose largest magnitude sits at the same place on every worker (the worst
    case for the sum), with exact powers of two and values just under a binade edge."""
    g = torch.Generator().manual_seed(world)
    layers = []
    for r in range(world):
        a = torch.randn(64, generator=g) * 10.0 ** torch.randint(-6, 6, (64,), generator=g)
        a[0], a[1], a[2] = 3.0e6, -(2.0**22), math.nextafter(2.0**22, 0.0)
        layers.append([a, torch.full((5,), 2.0**-20) * (r + 1)])
    return layers


@pytest.mark.parametrize("world", [2, 3, 4, 8])
@pytest.mark.parametrize("fmt", SIGNED, ids=str)
def test_fresh_shifts_keep_the_carrier_sum_finite(fmt: FloatFormat, world: int) -> None:
    """What lets the carrier all-reduce skip its Inf/NaN scan: with fresh APS shifts and
    the default headroom its result stays in the format, whatever the gradients and the
    rounding mode."""
    for mode in RoundingMode:
        state = LowPrecisionState(fmt=fmt, rounding=mode)
        for out in reference_reduce(_hostile(world), state):
            assert bool(torch.isfinite(out).all()), (str(fmt), world, mode)


def test_ordered_sums_rounded_upward_can_overflow_despite_aps() -> None:
    """Why the ordered reductions keep the scan: rounding each partial sum toward +inf
    climbs 0.25, 0.5, 1, 2, 4, 8 and then past e3m0's largest value."""
    state = LowPrecisionState(
        fmt=E3M0, rounding=RoundingMode.TOWARD_POSITIVE, reduction=Reduction.RANK
    )
    out = reference_reduce(_hostile(8), state)[0]
    assert math.isinf(float(out[0]))


def test_wire_buffer_is_kept_per_bucket_and_shape() -> None:
    state = LowPrecisionState(fmt=E3M0)
    a = state.wire_buffer(torch.zeros(10), bucket=0)
    assert state.wire_buffer(torch.ones(10), bucket=0) is a
    assert state.wire_buffer(torch.zeros(10), bucket=1) is not a
    b = state.wire_buffer(torch.zeros(12), bucket=0)  # the bucket changed size: replaced
    assert b.shape == (12,) and len(state._wire) == 2
