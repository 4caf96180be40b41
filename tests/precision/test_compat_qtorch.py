"""precision.compat.qtorch: qtorch 0.3's API on this package, and agreement with qtorch."""

from __future__ import annotations

import math

import pytest
import torch

from precision import quantize
from precision.compat import qtorch as qt
from precision.rounding import RoundingMode


def test_float_nearest_ties_away_by_default_with_a_nearest_even_option() -> None:
    ties = torch.tensor([1.0625, -1.0625, 1.1875])  # halfway between e?m3 neighbours
    assert qt.float_quantize(ties, 5, 3, "nearest").tolist() == [1.125, -1.125, 1.25]
    even = qt.float_quantize(ties, 5, 3, "nearest", nearest=RoundingMode.NEAREST_EVEN)
    assert even.tolist() == [1.0, -1.0, 1.25]


def test_floating_point_keeps_no_codes_for_inf_and_nan() -> None:
    number = qt.FloatingPoint(exp=5, man=2)
    top = math.ldexp(1.75, 16)  # the top exponent holds finite values
    assert number.format.max_finite == top
    x = torch.tensor([1e9, -math.inf, math.nan, 70000.0])
    out = qt.float_quantize(x, 5, 2, "nearest")
    assert out[:2].tolist() == [top, -top]
    assert math.isnan(out[2].item())  # qtorch would give the max value here
    assert out[3].item() == 65536.0
    big = qt.float_quantize(
        torch.tensor([torch.finfo(torch.float32).max]), 8, 7, "nearest"
    )  # exp=8 reaches 2**128
    assert big.item() == math.inf
    assert repr(number) == "FloatingPoint (exponent=5, mantissa=2)"
    with pytest.raises(ValueError, match="exp=9"):
        qt.FloatingPoint(9, 2)


@pytest.mark.parametrize("symmetric", [False, True])
def test_fixed_point_range_and_unclamped_grid(symmetric: bool) -> None:
    x = torch.tensor([100.0, -100.0, 0.3, -0.03125, 1e6 + 0.3])
    out = qt.fixed_point_quantize(x, 8, 4, symmetric=symmetric, rounding="nearest")
    lo = -8.0 + (0.0625 if symmetric else 0.0)
    assert out.tolist() == [7.9375, lo, 0.3125, -0.0, 7.9375]  # -0.03125 ties to even: 0
    free = qt.fixed_point_quantize(x, 8, 4, clamp=False, rounding="nearest")
    assert free.tolist() == [100.0, -100.0, 0.3125, 0.0, 1e6 + 0.3125]
    with pytest.raises(ValueError, match="stochastic"):
        qt.fixed_point_quantize(x, 8, 4, rounding="nearest_even")


def test_block_floating_point_shares_one_exponent_per_slice() -> None:
    x = torch.tensor([[1.0, 0.01, 0.3], [100.0, 3.0, 0.4]])
    whole = qt.block_quantize(x, 4, -1, "nearest")  # one block: scale 2**6, step 16
    assert whole.tolist() == [[0.0, 0.0, 0.0], [96.0, 0.0, 0.0]]
    rows = qt.block_quantize(x, 4, 0, "nearest")  # per row: steps 0.25 and 16
    assert rows.tolist() == [[1.0, 0.0, 0.25], [96.0, 0.0, 0.0]]
    cols = qt.block_quantize(x, 8, 1, "nearest")
    assert torch.equal(cols, qt.block_quantize(x.T.contiguous(), 8, 0, "nearest").T)


def test_stochastic_rounding_is_reproducible_from_a_generator() -> None:
    x = torch.full((5000,), 1.1)
    a = qt.float_quantize(x, 5, 2, generator=torch.Generator().manual_seed(4))
    b = qt.float_quantize(x, 5, 2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and set(a.unique().tolist()) == {1.0, 1.25}


def test_quantizer_module_and_gradient_masking() -> None:
    x = torch.tensor([0.3, 9.0, -9.0, 1.1], requires_grad=True)
    fwd = qt.FixedPoint(6, 2)  # range [-8, 7.75]
    q = qt.quantizer(fwd, qt.FloatingPoint(5, 2), "nearest", "nearest", True, [lambda g: g * 2])
    y = q(x)
    assert y.tolist() == [0.25, 7.75, -8.0, 1.0]
    y.backward(torch.full((4,), 1.1))
    assert x.grad.tolist() == [2.0, 0.0, 0.0, 2.0]  # (1.1 * 2) rounded to e5m2; clamped: 0
    with pytest.raises(ValueError, match="clamp=True"):
        qt.quantizer(qt.FloatingPoint(5, 2), clamping_grad_zero=True)
    layer = qt.Quantizer(qt.FloatingPoint(4, 3), None, "nearest")
    assert layer(torch.tensor([1.0625])).item() == 1.125


def test_optim_lp_rounds_like_the_native_wrapper() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = qt.OptimLP(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        weight_quant=lambda t: qt.float_quantize(t, 8, 7, "nearest"),
        grad_scaling=2.0,
        grad_quant=lambda t: qt.float_quantize(t, 5, 2, "nearest"),
        momentum_quant=lambda t: qt.float_quantize(t, 5, 2, "nearest"),
        acc_quant=lambda t: qt.float_quantize(t, 8, 23, "nearest"),
    )
    model(torch.randn(8, 4)).pow(2).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for p, g in zip(model.parameters(), grads, strict=True):
        assert torch.equal(
            opt.state[p]["momentum_buffer"], qt.float_quantize(g * 2, 5, 2, "nearest")
        )
        assert torch.equal(quantize(p.detach(), "bfloat16", RoundingMode.NEAREST_AWAY), p.detach())
    with pytest.raises(ValueError, match="grad_scaling"):
        qt.OptimLP(torch.optim.SGD(model.parameters(), lr=0.1), grad_scaling=0)


def _qtorch() -> object:
    try:
        import qtorch.quant as real  # compiles a C++ extension on import (needs ninja)
    except Exception as exc:  # any build or import failure means: cannot compare here
        pytest.skip(f"qtorch not importable: {type(exc).__name__}: {exc}")
    return real


@pytest.mark.parametrize(("exp", "man"), [(5, 2), (4, 3), (8, 7), (5, 10), (3, 1), (6, 9)])
def test_float_quantize_agrees_with_qtorch(exp: int, man: int) -> None:
    real = _qtorch()
    g = torch.Generator().manual_seed(exp * 100 + man)
    x = torch.randn(20000, generator=g) * torch.exp2(
        torch.randint(-12, 12, (20000,), generator=g).float()
    )
    normal = x.abs() >= math.ldexp(1.0, 2 - 2 ** (exp - 1))  # qtorch double-rounds subnormals
    x = x[normal]
    ours = qt.float_quantize(x, exp, man, "nearest")
    theirs = real.float_quantize(x, exp, man, "nearest")  # type: ignore[attr-defined]
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(("wl", "fl"), [(8, 4), (16, 8), (4, 1), (12, 12)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_fixed_point_quantize_agrees_with_qtorch(wl: int, fl: int, symmetric: bool) -> None:
    real = _qtorch()
    x = torch.randn(20000, generator=torch.Generator().manual_seed(wl)) * 2.0 ** (wl - fl - 2)
    ours = qt.fixed_point_quantize(x, wl, fl, True, symmetric, "nearest")
    theirs = real.fixed_point_quantize(x, wl, fl, True, symmetric, "nearest")  # type: ignore[attr-defined]
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("wl", [4, 8, 12])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_block_quantize_agrees_with_qtorch_on_nonnegative_values(wl: int, dim: int) -> None:
    real = _qtorch()
    # Multiples of 2**-10 (ties included): qtorch's float32 rebasing add is then exact, so
    # its double rounding does not show.
    g = torch.Generator().manual_seed(wl)
    x = torch.randint(0, 10 * 1024, (64, 32), generator=g).float() / 1024
    ours = qt.block_quantize(x, wl, dim, "nearest")
    assert torch.equal(ours, real.block_quantize(x, wl, dim, "nearest"))  # type: ignore[attr-defined]
