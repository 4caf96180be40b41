"""Block (MX-style) formats: shared power-of-two scales, element values, shapes."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from precision import BlockFormat, FixedFormat, FloatFormat, RoundingMode, quantize
from precision.block import block_scales
from precision.registry import formats, parse

BLOCKS = [f for f in formats() if isinstance(f, BlockFormat)]


def _reference(x: np.ndarray, fmt: BlockFormat) -> np.ndarray:
    """Straightforward per-block reference with Python floats (power-of-two scales)."""
    out = np.empty_like(x, dtype=np.float64)
    el = fmt.element
    emax = el.emax if isinstance(el, FloatFormat) else el.magnitude_bits - 1 - el.fraction_bits
    for r in range(x.shape[0]):
        for start in range(0, x.shape[1], fmt.block_size):
            blk = x[r, start : start + fmt.block_size].astype(np.float64)
            amax = float(np.max(np.abs(blk)))
            k = math.frexp(amax)[1] - 1 - emax if amax > 0 else fmt.scale.emin_subnormal
            k = min(max(k, fmt.scale.emin_subnormal), fmt.scale.emax)
            scale = math.ldexp(1.0, k)
            q = quantize(torch.from_numpy(blk / scale), el).numpy()
            out[r, start : start + fmt.block_size] = q * scale
    return out.astype(x.dtype)


@pytest.mark.parametrize("fmt", [f for f in BLOCKS if f.scale.mantissa_bits == 0], ids=str)
def test_mx_formats_match_per_block_reference(fmt: BlockFormat) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 100)) * np.exp2(rng.integers(-20, 20, (6, 1)))).astype(np.float32)
    x[2, :40] = 0.0  # an all-zero block
    got = quantize(x, fmt)
    np.testing.assert_array_equal(got, _reference(x, fmt))


@pytest.mark.parametrize("fmt", BLOCKS, ids=str)
def test_elements_are_representable_after_unscaling(fmt: BlockFormat) -> None:
    x = torch.randn(8, 64) * 10
    y = quantize(x, fmt)
    s = block_scales(y, fmt).repeat_interleave(fmt.block_size, dim=-1)[..., :64].float()
    el = y / s
    assert torch.equal(quantize(el, fmt.element), el)
    assert torch.equal(quantize(y, fmt), y)  # idempotent


def test_mxfp8_elements_match_ml_dtypes_saturating_cast() -> None:
    fmt = parse("mxfp8_e4m3")
    assert isinstance(fmt, BlockFormat)
    x = torch.randn(4, 32) * 1e-3
    s = block_scales(x, fmt).repeat_interleave(32, dim=-1).float()
    ref = (
        np.clip((x / s).numpy(), -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
        * s.numpy()
    )
    np.testing.assert_array_equal(quantize(x, fmt).numpy(), ref)


def test_scale_is_power_of_two_and_block_axis() -> None:
    fmt = BlockFormat(element=parse("e2m1fn"), block_size=4, scale=parse("e8m0"), axis=0)  # type: ignore[arg-type]
    x = torch.arange(1.0, 25.0).reshape(8, 3)
    s = block_scales(x, fmt)
    assert s.shape == (3, 2)  # 3 columns, 2 blocks of 4 rows
    m, _ = torch.frexp(s)
    assert bool((m == 0.5).all())
    y = quantize(x, fmt)
    assert y.shape == x.shape
    # column 0 rows 0..3 are 1,4,7,10: amax 10 -> scale 2**(3-2) = 2
    assert s[0, 0].item() == 2.0


def test_nonfinite_block_becomes_nan_and_others_unaffected() -> None:
    x = torch.ones(64)
    x[3] = float("inf")
    y = quantize(x, "mxfp4")
    assert bool(y[:32].isnan().all()) and bool((y[32:] == 1).all())


def test_nvfp4_uses_e4m3_scale() -> None:
    fmt = parse("nvfp4")
    assert isinstance(fmt, BlockFormat) and fmt.block_size == 16
    x = torch.linspace(-3, 3, 48)
    y = quantize(x, fmt)
    s = block_scales(x, fmt)
    assert torch.equal(quantize(s.float(), fmt.scale), s.float())
    # half the widest e2m1 spacing (4 -> 6) times the scale
    assert (y - x).abs().max().item() <= 1.0 * s.max().item()


@pytest.mark.parametrize("mode", [RoundingMode.STOCHASTIC, RoundingMode.TOWARD_ZERO])
def test_block_rounding_modes_pass_through(mode: RoundingMode) -> None:
    x = torch.randn(4, 32)
    fmt = parse("mxint8")
    assert isinstance(fmt, BlockFormat) and isinstance(fmt.element, FixedFormat)
    y = quantize(x, fmt, mode, generator=torch.Generator().manual_seed(0))
    if mode is RoundingMode.TOWARD_ZERO:
        assert bool((y.abs() <= x.abs()).all())
    assert torch.equal(quantize(y, fmt), y)
