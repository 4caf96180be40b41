"""Properties that hold for every format and deterministic mode (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from precision import FixedFormat, FloatFormat, RoundingMode, quantize
from precision.registry import formats, parse

DETERMINISTIC = [m for m in RoundingMode if m is not RoundingMode.STOCHASTIC]
FMTS = [f for f in formats() if isinstance(f, FloatFormat) and f.carrier == "float32"]
FMTS += [parse(s) for s in ("e3m0", "e5m2-nosub", "fixed8.4", "ufixed6.2-wrap", "e4m3fn-sat")]
floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
arrays = st.lists(floats32, min_size=1, max_size=64).map(
    lambda v: torch.tensor(v, dtype=torch.float32)
)


def _eq(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("mode", DETERMINISTIC, ids=lambda m: m.value)
@pytest.mark.parametrize("fmt", FMTS, ids=str)
@settings(max_examples=40, deadline=None)
@given(x=arrays)
def test_idempotent(fmt: FloatFormat | FixedFormat, mode: RoundingMode, x: torch.Tensor) -> None:
    y = quantize(x, fmt, mode)
    assert _eq(quantize(y, fmt, mode), y)
    assert _eq(quantize(y, fmt, RoundingMode.NEAREST_EVEN), y)  # q(x) is representable


@pytest.mark.parametrize("mode", [m for m in DETERMINISTIC if m.symmetric], ids=lambda m: m.value)
@pytest.mark.parametrize(
    "fmt", [f for f in FMTS if isinstance(f, FloatFormat) and f.signed], ids=str
)
@settings(max_examples=40, deadline=None)
@given(x=arrays)
def test_sign_symmetric(fmt: FloatFormat, mode: RoundingMode, x: torch.Tensor) -> None:
    a, b = quantize(-x, fmt, mode), -quantize(x, fmt, mode)
    if not fmt.has_negative_zero:
        a, b = a + 0.0, b + 0.0  # fnuz formats have one zero
    assert _eq(a, b)


@pytest.mark.parametrize("mode", DETERMINISTIC, ids=lambda m: m.value)
@pytest.mark.parametrize("fmt", FMTS, ids=str)
@settings(max_examples=30, deadline=None)
@given(x=arrays)
def test_monotone(fmt: FloatFormat | FixedFormat, mode: RoundingMode, x: torch.Tensor) -> None:
    if isinstance(fmt, FixedFormat) and fmt.overflow.value == "wrap":
        return  # modular arithmetic is not monotone by design
    xs = torch.sort(x[~x.isnan()]).values
    y = quantize(xs, fmt, mode)
    finite_y = y[~y.isnan()]  # NaN-on-overflow results drop out; the rest stay ordered
    assert bool((finite_y[1:] >= finite_y[:-1]).all())


@pytest.mark.parametrize(
    "fmt", [f for f in FMTS if isinstance(f, FloatFormat) and f.signed], ids=str
)
@settings(max_examples=40, deadline=None)
@given(x=arrays)
def test_directed_modes_bracket_and_nearest_is_closest(fmt: FloatFormat, x: torch.Tensor) -> None:
    x = x[torch.isfinite(x) & (x.abs() <= fmt.max_finite)]
    dn = quantize(x, fmt, RoundingMode.TOWARD_NEGATIVE)
    up = quantize(x, fmt, RoundingMode.TOWARD_POSITIVE)
    rn = quantize(x, fmt, RoundingMode.NEAREST_EVEN)
    assert bool((dn <= x).all()) and bool((up >= x).all())
    assert bool(((rn == dn) | (rn == up)).all())
    xd, dd, ud, rd = x.double(), dn.double(), up.double(), rn.double()
    assert bool(((rd - xd).abs() <= torch.minimum(xd - dd, ud - xd)).all())


@pytest.mark.parametrize("name", ["bfloat16", "e4m3", "e3m0"])
def test_relative_error_bound(name: str) -> None:
    """|q(x) - x| <= eps/2 * |x| for normal-range values (unit roundoff)."""
    fmt = parse(name)
    assert isinstance(fmt, FloatFormat)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(
        rng.uniform(fmt.smallest_normal, fmt.max_finite / 2, 20_000).astype(np.float32)
    )
    err = (quantize(x, fmt).double() - x.double()).abs() / x.double()
    assert err.max().item() <= math.ldexp(1.0, -fmt.precision_bits)
