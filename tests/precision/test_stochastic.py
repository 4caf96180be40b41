"""Stochastic rounding: unbiased, bracketed by the directed modes, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precision import FixedFormat, FloatFormat, RoundingMode, quantize
from precision.registry import parse

SR = RoundingMode.STOCHASTIC
NAMES = [
    "bfloat16",
    "float16",
    "float8_e5m2",
    "float8_e4m3fn",
    "e3m0",
    "float4_e2m1fn",
    "e5m2-nosub",
    "fixed8.4",
    "e11m30",
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dtype_for(fmt: FloatFormat | FixedFormat) -> torch.dtype:
    return torch.float64 if fmt.carrier == "float64" else torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_result_is_one_of_the_two_neighbours(name: str, backend: str) -> None:
    fmt = parse(name)
    assert isinstance(fmt, FloatFormat | FixedFormat)
    dt = _dtype_for(fmt)
    x = torch.randn(50_000, dtype=dt, generator=_gen(0)) * 3
    if isinstance(fmt, FloatFormat):
        x = x * torch.exp2(torch.randint(-12, 4, x.shape, generator=_gen(1))).to(dt)
    lo = quantize(x, fmt, RoundingMode.TOWARD_NEGATIVE)
    hi = quantize(x, fmt, RoundingMode.TOWARD_POSITIVE)
    y = quantize(x, fmt, SR, generator=_gen(2))
    assert bool(((y == lo) | (y == hi)).all())
    exact = (lo == hi) & (lo == x)  # representable (saturated values have lo == hi != x)
    assert torch.equal(y[exact], x[exact])  # representable values are never moved
    # both neighbours actually occur
    assert bool((y[~exact] == lo[~exact]).any()) and bool((y[~exact] == hi[~exact]).any())


@pytest.mark.parametrize("name", NAMES)
def test_unbiased(name: str, backend: str) -> None:
    """Mean of many roundings equals x within 5 standard errors of a Bernoulli mean."""
    fmt = parse(name)
    assert isinstance(fmt, FloatFormat | FixedFormat)
    dt = _dtype_for(fmt)
    base = torch.tensor([0.3, -1.7, 2.4, 0.013, -0.061, 1 / 3], dtype=dt)
    if isinstance(fmt, FloatFormat) and fmt.max_finite < 3:
        base = base / 2
    draws = 20_000
    x = base.repeat(draws)
    y = quantize(x, fmt, SR, generator=_gen(3)).view(draws, -1)
    lo = quantize(base, fmt, RoundingMode.TOWARD_NEGATIVE)
    hi = quantize(base, fmt, RoundingMode.TOWARD_POSITIVE)
    p = ((base - lo) / (hi - lo)).nan_to_num(0.0)
    se = (hi - lo) * torch.sqrt(p * (1 - p) / draws)
    err = (y.mean(0, dtype=torch.float64) - base.double()).abs()
    assert bool((err <= 5 * se.double() + 1e-300).all()), (err, se)


def test_same_seed_same_bits_and_backend_independent() -> None:
    x = torch.randn(100_000)
    from precision import kernel_backend

    with kernel_backend("eager"):
        a = quantize(x, "e4m3", SR, generator=_gen(7))
    with kernel_backend("compiled"):
        b = quantize(x, "e4m3", SR, generator=_gen(7))
        c = quantize(x, "e4m3", SR, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_default_generator_follows_manual_seed() -> None:
    x = torch.randn(1000)
    torch.manual_seed(11)
    a = quantize(x, "bfloat16", SR)
    torch.manual_seed(11)
    b = quantize(x, "bfloat16", SR)
    assert torch.equal(a, b)


def test_tiny_values_far_below_the_smallest_subnormal() -> None:
    """Values thousands of binades below the format still round up with the right odds."""
    fmt = parse("e3m0")
    assert isinstance(fmt, FloatFormat)
    q = fmt.smallest_positive
    x = torch.full((400_000,), q * 2.0**-6)
    y = quantize(x, fmt, SR, generator=_gen(4))
    frac = (y == q).double().mean().item()
    assert abs(frac - 2.0**-6) < 5 * np.sqrt(2.0**-6 / 400_000)
    assert bool(((y == 0) | (y == q)).all())
