"""APS shift math: hand-computed cases, sentinels, clamping, headroom, exactness."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from precision import FixedFormat, FloatFormat
from precision.aps import (
    NonFiniteGradientError,
    apply_shifts,
    compute_shifts,
    default_headroom,
    format_emax,
    local_exponents,
    shift_bounds,
    shifted_format,
    shifts_from_exponents,
)
from precision.quantize import quantize
from precision.registry import (
    BFLOAT16,
    FLOAT6_E2M3FN,
    FLOAT8_E4M3,
    FLOAT8_E4M3FN,
    FLOAT8_E5M2,
    FLOAT32,
    from_bits,
    parse,
)
from precision.rounding import RoundingMode

E3M0 = from_bits(4)


def t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


@pytest.mark.parametrize(
    ("amax", "world", "shift"),
    [
        (1.0, 2, 2),  # ceil(log2 1) = 0, +1 headroom -> E = 1; e3m0 emax 3 -> 2
        (0.75, 2, 2),  # ceil(log2 0.75) = 0
        (1.5, 2, 1),  # ceil(log2 1.5) = 1 -> E = 2
        (2.0**-20, 2, 22),  # exact power of two: ceil = -20 -> E = -19
        (3.0, 4, -1),  # ceil(log2 3) = 2, headroom 2 -> E = 4
        (3.0, 3, -1),  # headroom ceil(log2 3) = 2
        (0.3, 1, 4),  # one worker: no headroom; ceil(log2 0.3) = -1
    ],
)
def test_hand_computed_shifts(amax: float, world: int, shift: int) -> None:
    plan = compute_shifts([t(amax, -amax / 3, 0.0)], E3M0, world)
    assert plan.shifts == (shift,)
    assert plan.exponents == (format_emax(E3M0) - shift,)
    assert plan.nonfinite == (False,)


def test_format_emax() -> None:
    assert format_emax(E3M0) == 3 and E3M0.emax == 3
    assert format_emax(FLOAT8_E5M2) == 15
    assert format_emax(FLOAT8_E4M3FN) == 8
    assert format_emax(FixedFormat(word_bits=8, fraction_bits=4)) == 2  # top bit 2**2


def test_default_headroom() -> None:
    assert [default_headroom(w) for w in (1, 2, 3, 4, 5, 8, 9, 1024)] == [0, 1, 2, 2, 3, 3, 4, 10]
    with pytest.raises(ValueError, match="world_size=0"):
        default_headroom(0)


def test_headroom_options() -> None:
    g = [t(1.0)]
    assert compute_shifts(g, FLOAT8_E5M2, 1024).shifts == (5,)  # 15 - 10
    assert compute_shifts(g, FLOAT8_E5M2, 1024, headroom=0).shifts == (15,)
    assert compute_shifts(g, FLOAT8_E5M2, 2, headroom=4).shifts == (11,)


def test_zero_and_empty_tensors_give_no_nan() -> None:
    e = local_exponents([torch.zeros(5), torch.empty(0), t(0.5)], headroom=1)
    assert e[0] == -math.inf and e[1] == -math.inf and e[2] == 0
    plan = shifts_from_exponents(e, E3M0)
    assert plan.exponents == (None, None, 0) and plan.shifts == (0, 0, 3)
    assert not plan.any_nonfinite


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_nonfinite_maximum_is_reported_not_shifted(bad: float) -> None:
    plan = compute_shifts([t(1.0, bad), t(1.0)], E3M0, 2)
    assert plan.nonfinite == (True, False) and plan.any_nonfinite
    assert plan.exponents[0] is None and plan.shifts[0] == 0
    assert plan.shifts[1] == 2


def test_nonfinite_wins_the_max_exchange() -> None:
    """+inf is the sentinel, so MAX over workers keeps a non-finite layer non-finite."""
    e = torch.stack([local_exponents([t(1.0, math.nan)], 1), local_exponents([t(4.0)], 1)])
    assert shifts_from_exponents(e.amax(0), E3M0).nonfinite == (True,)
    assert issubclass(NonFiniteGradientError, FloatingPointError)


def test_shift_bounds() -> None:
    assert shift_bounds(torch.float32) == (-126, 126)
    assert shift_bounds(torch.float64) == (-1022, 1022)
    assert shift_bounds(torch.float16) == (-14, 14)


@pytest.mark.parametrize("fmt", [BFLOAT16, FLOAT32])
def test_e8_formats_clamp_the_shift(fmt: FloatFormat) -> None:
    """Unclamped, bfloat16 on 2**-20 gradients wants 2**147: Inf in float32, then NaN."""
    g = torch.tensor([2.0**-20, 0.0, -(2.0**-21), 1e-30])
    plan = compute_shifts([g], fmt, 1)
    assert fmt.emax - plan.exponents[0] > 126  # type: ignore[operator]
    assert plan.shifts == (126,)
    x = g.clone()
    apply_shifts(x, [(0, 4)], plan.shifts)
    assert bool(torch.isfinite(x).all()) and x[1] == 0
    apply_shifts(x, [(0, 4)], plan.shifts, sign=-1)
    assert torch.equal(x, g)


def test_negative_shifts_for_large_gradients() -> None:
    plan = compute_shifts([t(1e30)], E3M0, 2)
    assert plan.shifts[0] < 0
    x = t(1e30)
    apply_shifts(x, [(0, 1)], plan.shifts)
    assert float(x[0]) <= 2.0**E3M0.emax


def test_reduce_max_callable_sees_the_exponent_vector() -> None:
    seen: list[torch.Tensor] = []

    def fake_max(e: torch.Tensor) -> torch.Tensor:
        seen.append(e.clone())
        return torch.maximum(e, torch.tensor([3.0, -math.inf]))

    plan = compute_shifts([t(0.5), torch.zeros(3)], E3M0, 2, reduce_max=fake_max)
    assert torch.equal(seen[0], torch.tensor([0.0, -math.inf]))
    assert plan.exponents == (3, None) and plan.shifts == (0, 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-(2.0**100), max_value=2.0**100, allow_nan=False, width=32),
        min_size=1,
        max_size=20,
    ),
    st.integers(min_value=1, max_value=64),
    st.sampled_from([E3M0, FLOAT8_E5M2, FLOAT8_E4M3FN]),
)
def test_shift_puts_the_largest_sum_in_the_top_binade(
    vals: list[float], world: int, fmt: FloatFormat
) -> None:
    g = torch.tensor(vals, dtype=torch.float32)
    plan = compute_shifts([g], fmt, world)
    amax = float(g.abs().max())
    if amax == 0:
        assert plan.shifts == (0,)
        return
    s = plan.shifts[0]
    scaled = math.ldexp(amax, s)
    room = default_headroom(world)
    assert world * scaled <= math.ldexp(1.0, fmt.emax)  # the sum cannot leave the format
    lo, hi = shift_bounds(torch.float32)
    if lo < s < hi:  # not clamped: the largest value uses the top binades
        assert scaled > math.ldexp(1.0, fmt.emax - room - 1)
    x = g.clone()
    apply_shifts(x, [(0, x.numel())], [s])
    apply_shifts(x, [(0, x.numel())], [s], sign=-1)
    normal = (g * 2.0**s).abs() >= torch.finfo(torch.float32).tiny
    assert torch.equal(x[normal], g[normal])  # power-of-two scaling is exact


SHIFTABLE = [
    E3M0,
    FLOAT8_E4M3,
    FLOAT8_E4M3FN,
    FLOAT8_E5M2,
    FLOAT6_E2M3FN,
    BFLOAT16,
    parse("e4m3-nosub"),
]


def _layer(kind: str, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    scale = {"plain": 1e-3, "tiny": 1e-30, "large": 1e20, "subnormal": 1e-40}[kind.split("+")[0]]
    x = (torch.randn(4096, generator=gen, dtype=torch.float64) * scale).to(dtype)
    x[::17] = 0.0
    x[5::31] = -0.0
    if "+special" in kind:
        x[7], x[8], x[9] = math.nan, math.inf, -math.inf
    return x


@pytest.mark.parametrize("fmt", SHIFTABLE, ids=str)
@pytest.mark.parametrize("rounding", list(RoundingMode), ids=lambda r: r.value)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_shifted_format_is_the_multiply_path(
    fmt: FloatFormat, rounding: RoundingMode, dtype: torch.dtype
) -> None:
    """quantize(g * 2**s, fmt) * 2**-s == quantize(g, shifted_format(fmt, s), out=g), bit for bit,
    stochastic rounding included (same generator state), wherever ``g * 2**s`` is exact."""
    gen = torch.Generator().manual_seed(7)
    checked = 0
    kinds = ["plain", "tiny", "large", "plain+special", "tiny+special"]
    if dtype == torch.float32:
        kinds.append("subnormal")  # float32 subnormal inputs, normal once scaled
    for kind in kinds:
        g = _layer(kind, gen, dtype)
        for world in (1, 2, 8):
            s = compute_shifts([g[torch.isfinite(g)]], fmt, world, dtype=dtype).shifts[0]
            for shift in (s, s - 3, 0):
                shifted = shifted_format(fmt, shift, dtype)
                if shifted is None:
                    continue
                scaled = g * 2.0**shift
                exact = torch.isnan(g) | (scaled * 2.0**-shift == g)
                exact &= (scaled == 0) | (scaled.abs() >= torch.finfo(dtype).tiny)
                exact |= torch.isinf(g)
                if not bool(exact.all()):
                    continue  # the multiply path itself would round
                seed = 1000 * checked + 1
                want = quantize(
                    scaled, fmt, rounding, generator=torch.Generator().manual_seed(seed)
                )
                want = want * 2.0**-shift
                gc = g.clone()
                got = quantize(
                    gc, shifted, rounding, out=gc, generator=torch.Generator().manual_seed(seed)
                )
                same = (got == want) | (torch.isnan(got) & torch.isnan(want))
                same &= torch.signbit(got) == torch.signbit(want)
                assert bool(same.all()), (kind, world, shift, got[~same][:4], want[~same][:4])
                checked += 1
    assert checked >= 3


def test_shifted_format_values_and_limits() -> None:
    f = shifted_format(FLOAT8_E4M3, 5, torch.float32)
    assert f is not None and f.exponent_bias == FLOAT8_E4M3.exponent_bias + 5
    assert f.max_finite == FLOAT8_E4M3.max_finite * 2.0**-5
    assert f.smallest_positive == FLOAT8_E4M3.smallest_positive * 2.0**-5
    assert shifted_format(FLOAT8_E4M3, 0, torch.float32) is FLOAT8_E4M3
    # bfloat16 shifted up has normals below float32's (the float32 kernel cannot hold
    # them), shifted down values above float32's largest; float64 holds both
    assert shifted_format(BFLOAT16, 1, torch.float32) is None
    assert shifted_format(BFLOAT16, -3, torch.float32) is None
    assert shifted_format(BFLOAT16, 1, torch.float64) is not None
    assert shifted_format(FLOAT8_E5M2, -3, torch.float32) is not None
    assert shifted_format(FixedFormat(word_bits=8, fraction_bits=4), 2, torch.float32) is None
    assert shifted_format(FLOAT32, 2000, torch.float64) is None  # invalid bias
