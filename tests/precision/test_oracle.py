"""Every deterministic rounding mode against exact rational rounding (Python fractions).

Covers formats no other library implements: float64-carrier formats (e11m30), no-subnormal
formats, custom biases, saturating and NaN overflow, and fixed point.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from oracle_values import boundary_values, random_values
from precision_oracle import round_fixed, round_float

from precision import FixedFormat, FloatFormat, RoundingMode, quantize
from precision.registry import formats, parse
from precision.rounding import Overflow, Specials

DETERMINISTIC = [m for m in RoundingMode if m is not RoundingMode.STOCHASTIC]
EXTRA = [
    "e3m0",
    "e2m0",
    "e4m1",
    "e5m3-nosub",
    "e8m3b130",
    "e6m5fn",
    "e3m2finite",
    "e5m2-sat",
    "e4m3fn-sat",
    "e5m10-nosub",
    "e8m0-nosub",
]
WIDE = ["e11m30", "e11m40", "e11m51", "e9m25", "e10m20-nosub", "e10m24b600-sat"]
FLOATS_32 = [f for f in formats() if isinstance(f, FloatFormat) and f.carrier == "float32"]
FLOATS_32 += [parse(s) for s in EXTRA]


def _check(x: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    ib = np.int32 if got.dtype == np.float32 else np.int64
    same = (got.view(ib) == want.view(ib)) | (np.isnan(got) & np.isnan(want))
    bad = np.nonzero(~same)[0][:5]
    assert same.all(), f"x={x[bad].tolist()} got={got[bad].tolist()} want={want[bad].tolist()}"


def _oracle(x: np.ndarray, fmt: FloatFormat | FixedFormat, mode: RoundingMode) -> np.ndarray:
    fn = round_float if isinstance(fmt, FloatFormat) else round_fixed
    return np.array([fn(float(v), fmt, mode) for v in x], dtype=x.dtype)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", DETERMINISTIC, ids=lambda m: m.value)
@pytest.mark.parametrize("fmt", FLOATS_32, ids=str)
def test_float32_carrier_formats(fmt: FloatFormat, mode: RoundingMode, backend: str) -> None:
    x = np.concatenate(
        [random_values(1500, fmt.emin_subnormal - 3, fmt.emax + 2, seed=3), boundary_values(fmt)]
    )
    _check(x, quantize(x, fmt, mode), _oracle(x, fmt, mode))


@pytest.mark.parametrize("mode", DETERMINISTIC, ids=lambda m: m.value)
@pytest.mark.parametrize("name", [*WIDE, "bfloat16", "float16", "e3m0", "float32"])
def test_float64_inputs(name: str, mode: RoundingMode, backend: str) -> None:
    fmt = parse(name)
    assert isinstance(fmt, FloatFormat)
    x = np.concatenate(
        [
            random_values(
                1500, fmt.emin_subnormal - 3, min(fmt.emax + 2, 1023), seed=4, dtype=np.float64
            ),
            boundary_values(fmt, np.dtype(np.float64)),
        ]
    )
    _check(x, quantize(x, fmt, mode), _oracle(x, fmt, mode))


FIXED = [
    "fixed8.4",
    "fixed8.0",
    "ufixed8.8",
    "fixed16.12-wrap",
    "ufixed4.2-wrap",
    "fixed24.20",
    "fixed12.-3",
    "int8",
]


@pytest.mark.parametrize("mode", DETERMINISTIC, ids=lambda m: m.value)
@pytest.mark.parametrize("name", FIXED)
def test_fixed_point(name: str, mode: RoundingMode, backend: str) -> None:
    fmt = parse(name)
    assert isinstance(fmt, FixedFormat)
    rng = np.random.default_rng(5)
    span = max(abs(fmt.min_value), fmt.max_value) * 2.5
    x = rng.uniform(-span, span, 3000).astype(np.float32)
    ties = (np.arange(-40, 40) + 0.5) * fmt.resolution
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, fmt.max_value, fmt.min_value, 1e30, -1e30]
    x = np.concatenate([x, ties.astype(np.float32), np.array(specials, np.float32)])
    _check(x, quantize(x, fmt, mode), _oracle(x, fmt, mode))


def test_fixed_point_float64_wide_words() -> None:
    fmt = FixedFormat(word_bits=40, fraction_bits=20)
    rng = np.random.default_rng(6)
    x = rng.uniform(-6e5, 6e5, 2000)
    _check(x, quantize(x, fmt), _oracle(x, fmt, RoundingMode.NEAREST_EVEN))


def _overflow_formats() -> list[FloatFormat]:
    """Every specials x overflow policy that can be built, on both carriers, with IEEE and
    custom biases and with and without subnormals."""
    shapes = [
        (4, 3, None, True),
        (4, 3, 8, True),
        (5, 2, 16, True),
        (3, 0, None, True),
        (8, 3, 250, False),  # needs the float64 carrier (values beyond float32's range)
        (11, 30, None, True),
        (9, 25, 200, False),
    ]
    out = []
    for e, m, bias, sub in shapes:
        for specials in Specials:
            for policy in Overflow:
                try:
                    out.append(
                        FloatFormat(
                            exponent_bits=e,
                            mantissa_bits=m,
                            bias=bias,
                            subnormals=sub,
                            specials=specials,
                            overflow=policy,
                        )
                    )
                except ValueError:
                    continue  # e.g. overflow='inf' without infinities
    return out


def _beyond_max(fmt: FloatFormat, dtype: np.dtype) -> np.ndarray:
    """Values at, just above and far above the largest finite value, both signs."""
    mx = fmt.max_finite
    ulp = mx * 2.0 ** -(fmt.mantissa_bits + 1) if fmt.mantissa_bits else mx / 2
    info = np.finfo(dtype)
    vals = [mx, mx + ulp * 2.0**-20, mx + ulp / 2, mx + ulp * 0.75, mx + ulp, mx + 3 * ulp]
    vals += [mx * 2, mx * 2**10, float(info.max) / 2, float(info.max), np.inf]
    with np.errstate(over="ignore"):
        arr = np.array(vals, dtype=np.float64).astype(dtype)
    arr = arr[np.isinf(arr) | (arr >= mx)]
    return np.concatenate([arr, -arr])


@pytest.mark.parametrize("mode", DETERMINISTIC, ids=lambda m: m.value)
@pytest.mark.parametrize("fmt", _overflow_formats(), ids=lambda f: f"{f}-{f.carrier}")
def test_overflow_every_policy(fmt: FloatFormat, mode: RoundingMode, backend: str) -> None:
    """Overflow in each mode follows IEEE 754 7.4 under every policy: the modes that round
    toward the finite side give the largest finite value, the others take the policy."""
    dtype = np.dtype(np.float32 if fmt.carrier == "float32" else np.float64)
    x = _beyond_max(fmt, dtype)
    got = quantize(x, fmt, mode)
    _check(x, got, _oracle(x, fmt, mode))
    finite = np.isfinite(x)
    toward_finite = {
        RoundingMode.TOWARD_ZERO: finite,
        RoundingMode.TOWARD_NEGATIVE: finite & (x > 0),
        RoundingMode.TOWARD_POSITIVE: finite & (x < 0),
    }.get(mode, np.zeros_like(finite))
    assert (np.abs(got[toward_finite]) == fmt.max_finite).all()


@st.composite
def random_formats(draw: st.DrawFn) -> FloatFormat:
    """Formats as a researcher would try them: any e/m split, custom biases, subnormals or
    not, every specials and overflow policy that fits together."""
    e = draw(st.integers(2, 8))
    m = draw(st.integers(0, 10))
    ieee = (1 << (e - 1)) - 1
    bias = draw(st.one_of(st.none(), st.integers(ieee - 3, ieee + 3)))
    specials = draw(st.sampled_from(list(Specials)))
    policy = draw(st.sampled_from([None, *Overflow]))
    try:
        return FloatFormat(
            exponent_bits=e,
            mantissa_bits=m,
            bias=bias,
            subnormals=draw(st.booleans()),
            specials=specials,
            overflow=policy,
        )
    except ValueError:
        assume(False)
        raise


@settings(max_examples=300, deadline=None)
@given(fmt=random_formats(), seed=st.integers(0, 2**32 - 1))
def test_random_formats_against_the_oracle(fmt: FloatFormat, seed: int) -> None:
    dtype = np.dtype(np.float32 if fmt.carrier == "float32" else np.float64)
    x = np.concatenate(
        [
            random_values(48, fmt.emin_subnormal - 2, fmt.emax + 3, seed=seed % 2**31,
                          dtype=dtype.type),
            _beyond_max(fmt, dtype),
        ]
    )  # fmt: skip
    for mode in DETERMINISTIC:
        _check(x, quantize(x, fmt, mode), _oracle(x, fmt, mode))
