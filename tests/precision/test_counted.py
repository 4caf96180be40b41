"""``quantize(..., out=, count=True)``: same bits as plain ``quantize``; counts that match
a count taken by comparing input and output, on the compiled and the eager kernel."""

from __future__ import annotations

import pytest
import torch

from precision import FixedFormat, FloatFormat, RoundingMode, kernel_backend, quantize
from precision.quantize import RoundingCounts, largest_value
from precision.registry import formats, parse

FMTS = [f for f in formats() if isinstance(f, FloatFormat) and f.carrier == "float32"]
FMTS += [parse(s) for s in ("e3m0", "e5m2-nosub", "e4m3fn-sat", "fixed8.4", "ufixed6.2-wrap")]
FMTS += [parse(s) for s in ("float64", "e11m30", "mxfp8_e4m3")]
MODES = [RoundingMode.NEAREST_EVEN, RoundingMode.TOWARD_POSITIVE, RoundingMode.STOCHASTIC]
N = 5000  # above the kernel's compile threshold, so "auto" compiles


def sample(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, generator=g, dtype=torch.float64)
    x *= 10.0 ** torch.randint(-12, 12, (N,), generator=g)
    x[::97], x[::89], x[::83] = float("nan"), float("inf"), -float("inf")
    x[::79], x[::73] = 0.0, -0.0
    return x.to(dtype)


def oracle(x: torch.Tensor, y: torch.Tensor, top: float) -> RoundingCounts:
    """The counts by definition, from the input and the result."""
    xa, ya = x.abs(), y.abs()
    return RoundingCounts(
        flushed=int(((x != 0) & (y == 0)).sum()),
        beyond=int(((xa > top) & torch.isfinite(x)).sum()),
        at_limit=int((ya >= top).sum()),
    )


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("backend", ["compiled", "eager"])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("fmt", FMTS, ids=str)
def test_out_and_count_match_plain_quantize(
    fmt: FloatFormat | FixedFormat, mode: RoundingMode, backend: str
) -> None:
    dtype = torch.float64 if fmt.carrier == "float64" else torch.float32
    x = sample(dtype)
    with kernel_backend(backend):
        want = quantize(x, fmt, mode, generator=torch.Generator().manual_seed(1))
        counts = oracle(x, want, largest_value(fmt))
        out = torch.empty_like(x)
        got, c1 = quantize(
            x, fmt, mode, out=out, count=True, generator=torch.Generator().manual_seed(1)
        )
        assert got is out and same(got, want) and c1 == counts
        fresh, c2 = quantize(x, fmt, mode, count=True, generator=torch.Generator().manual_seed(1))
        assert same(fresh, want) and c2 == counts
        inplace = x.clone()
        _, c3 = quantize(
            inplace, fmt, mode, out=inplace, count=True, generator=torch.Generator().manual_seed(1)
        )
        assert same(inplace, want) and c3 == counts
        into = torch.empty_like(x)
        assert quantize(x, fmt, mode, out=into, generator=torch.Generator().manual_seed(1)) is into
        assert same(into, want)
        y = x.clone()
        assert quantize(y, fmt, mode, out=y, generator=torch.Generator().manual_seed(1)) is y
        assert same(y, want)
    assert same(x, sample(dtype)), "the input was modified"


def test_strided_input_takes_the_comparing_path() -> None:
    x = sample(torch.float32).view(2, -1).t()  # not contiguous
    fmt = parse("e4m3fn")
    got, counts = quantize(x, fmt, count=True)
    assert same(got, quantize(x, fmt)) and counts == oracle(x, got, 448.0)


def test_counts_of_a_hand_made_tensor() -> None:
    # e3m0: largest 8; 0.01 flushes, 100 goes beyond (to inf), 8 and 9 end at the limit
    x = torch.tensor([0.01, 0.0, -0.0, 1.0, 8.0, 9.0, 100.0, float("nan")] * 1000)
    y, counts = quantize(x, "e3m0", count=True)
    assert counts == RoundingCounts(flushed=1000, beyond=2000, at_limit=3000)
    assert torch.equal(y[:7], torch.tensor([0.0, 0.0, -0.0, 1.0, 8.0, 8.0, float("inf")]))


def test_mismatched_out_is_refused() -> None:
    x = torch.ones(8)
    with pytest.raises(ValueError, match="must match"):
        quantize(x, "e3m0", out=torch.empty(4), count=True)
    with pytest.raises(ValueError, match="must match"):
        quantize(x, "e3m0", out=torch.empty(8, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"out= takes a torch\.Tensor"):
        quantize(x.numpy(), "e3m0", out=x)  # type: ignore[call-overload]


def test_numpy_input_with_counts() -> None:
    x = sample(torch.float32).numpy()
    y, counts = quantize(x, "e5m2", count=True)
    want = quantize(torch.from_numpy(x), "e5m2")
    assert same(torch.from_numpy(y), want)
    assert counts == oracle(torch.from_numpy(x), want, largest_value(parse("e5m2")))
