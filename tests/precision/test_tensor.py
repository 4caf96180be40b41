"""Emulated-precision tensors: every op's result is rounded to the tensor's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from precision import quantize
from precision.formats import FloatFormat
from precision.registry import BFLOAT16, FLOAT8_E4M3FN, FLOAT8_E5M2, FLOAT16, FLOAT64
from precision.rounding import RoundingMode
from precision.tensor import EmulatedTensor, emulate, to_float

FORMATS = [FLOAT8_E4M3FN, FLOAT8_E5M2, BFLOAT16, FLOAT16]
UNARY = {
    "exp": torch.exp,
    "tanh": torch.tanh,
    "sqrt_abs": lambda t: t.abs().sqrt(),  # abs is exact, so one rounding
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}
BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "max": torch.maximum,
    "pow": lambda a, b: a.abs() ** b,
}


def operands(fmt: FloatFormat, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = quantize(torch.randn(6, 5, generator=g) * 2, fmt)
    b = quantize(torch.randn(6, 5, generator=g), fmt)
    return a, b


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("name", UNARY)
def test_unary_ops_equal_rounded_float_ops(fmt: FloatFormat, name: str) -> None:
    a, _ = operands(fmt)
    out = UNARY[name](emulate(a, fmt))
    assert isinstance(out, EmulatedTensor) and out.fmt == fmt
    assert torch.equal(out.to_float(), quantize(UNARY[name](a), fmt))


def test_composite_expressions_round_every_step() -> None:
    a, b = operands(FLOAT8_E4M3FN)
    out = (emulate(a, FLOAT8_E4M3FN) * emulate(b, FLOAT8_E4M3FN) + 1).exp()
    step = quantize(
        quantize(quantize(a * b, FLOAT8_E4M3FN) + 1, FLOAT8_E4M3FN).exp(), FLOAT8_E4M3FN
    )
    assert step.isnan().any()  # exp overflows e4m3fn's range: NaN, as the format says
    torch.testing.assert_close(out.to_float(), step, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_ops_equal_rounded_float_ops(fmt: FloatFormat, name: str) -> None:
    a, b = operands(fmt)
    op = BINARY[name]
    out = op(emulate(a, fmt), emulate(b, fmt))
    expected = quantize(op(a, b), fmt)  # pow's abs is exact
    torch.testing.assert_close(out.to_float(), expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_matmul_linear_conv_round_the_float32_result(fmt: FloatFormat) -> None:
    g = torch.Generator().manual_seed(1)
    a = quantize(torch.randn(3, 7, 16, generator=g), fmt)
    w = quantize(torch.randn(5, 16, generator=g), fmt)
    bias = quantize(torch.randn(5, generator=g), fmt)
    ea, ew, eb = emulate(a, fmt), emulate(w, fmt), emulate(bias, fmt)
    assert torch.equal((ea @ ew.T).to_float(), quantize(a @ w.T, fmt))
    assert torch.equal(torch.mm(ea[0], ew.T).to_float(), quantize(a[0] @ w.T, fmt))
    linear = torch.nn.functional.linear(ea[0], ew, eb).to_float()
    assert torch.equal(linear, quantize(torch.addmm(bias, a[0], w.T), fmt))
    img = quantize(torch.randn(2, 3, 6, 6, generator=g), fmt)
    ker = quantize(torch.randn(4, 3, 3, 3, generator=g), fmt)
    conv = torch.nn.functional.conv2d(emulate(img, fmt), emulate(ker, fmt))
    assert torch.equal(conv.to_float(), quantize(torch.nn.functional.conv2d(img, ker), fmt))


def test_accumulator_format_is_applied_before_the_tensor_format() -> None:
    g = torch.Generator().manual_seed(2)
    a = quantize(torch.randn(4, 64, generator=g), FLOAT16)
    b = quantize(torch.randn(64, 3, generator=g), FLOAT16)
    out = emulate(a, FLOAT16, accumulator=BFLOAT16) @ emulate(b, FLOAT16)
    assert torch.equal(out.to_float(), quantize(quantize(a @ b, BFLOAT16), FLOAT16))
    wide = emulate(a, FLOAT16, accumulator=FLOAT64) @ emulate(b, FLOAT16)
    assert torch.equal(wide.to_float(), quantize((a.double() @ b.double()).float(), FLOAT16))
    assert not torch.equal(out.to_float(), wide.to_float())


def test_promotion_wider_format_wins_and_plain_tensors_are_exact() -> None:
    a, b = operands(FLOAT16)
    narrow = emulate(a, FLOAT8_E4M3FN)
    mixed = narrow + emulate(b, FLOAT16)
    assert mixed.fmt == FLOAT16
    assert torch.equal(mixed.to_float(), quantize(quantize(a, FLOAT8_E4M3FN) + b, FLOAT16))
    plain = narrow * b  # b enters unrounded
    assert plain.fmt == FLOAT8_E4M3FN
    assert torch.equal(plain.to_float(), quantize(quantize(a, FLOAT8_E4M3FN) * b, FLOAT8_E4M3FN))
    assert torch.equal((narrow * 0.1).to_float(), quantize(narrow.to_float() * 0.1, FLOAT8_E4M3FN))
    with pytest.raises(ValueError, match="neither holds the other"):
        narrow + emulate(b, FLOAT8_E5M2)


def test_gradients_flow_and_are_emulated() -> None:
    fmt = BFLOAT16
    a, b = operands(fmt, seed=3)
    x = emulate(a, fmt, requires_grad=True)
    y = (x * emulate(b, fmt)).tanh().sum()
    y.backward()
    assert isinstance(x.grad, EmulatedTensor) and x.grad.fmt == fmt
    grad = x.grad.to_float()
    assert torch.equal(quantize(grad, fmt), grad)
    ref = a.clone().requires_grad_(True)
    (ref * b).tanh().sum().backward()
    torch.testing.assert_close(grad, ref.grad, rtol=2**-6, atol=1e-2)  # 1 - tanh² cancels
    # from a plain leaf: gradient arrives as a plain tensor through the rounding
    leaf = a.clone().requires_grad_(True)
    (emulate(leaf, fmt) * 3).to_float().sum().backward()
    assert type(leaf.grad) is torch.Tensor and torch.equal(leaf.grad, torch.full_like(a, 3.0))


def test_views_inplace_and_non_float_results() -> None:
    a, _ = operands(FLOAT8_E4M3FN)
    x = emulate(a, FLOAT8_E4M3FN)
    row = x[0]
    row.mul_(1.1)  # in place on a view: rounded, and visible through the base
    assert isinstance(row, EmulatedTensor)
    assert torch.equal(x.to_float()[0], quantize(a[0] * 1.1, FLOAT8_E4M3FN))
    assert type(x > 0) is torch.Tensor and (x > 0).dtype == torch.bool
    half = x.half()
    assert type(half) is torch.Tensor and half.dtype == torch.float16
    assert x.sum().item() == pytest.approx(quantize(x.to_float().sum(), FLOAT8_E4M3FN).item())


def test_numpy_repr_and_entry_points() -> None:
    a, _ = operands(FLOAT8_E5M2)
    x = emulate(torch.randn(6, 5).double(), FLOAT8_E5M2, rounding=RoundingMode.TOWARD_ZERO)
    assert x.dtype == torch.float64
    e = emulate(a, FLOAT8_E5M2)
    arr = (e + 1).numpy()
    assert isinstance(arr, np.ndarray)
    np.testing.assert_array_equal(arr, quantize(a + 1, FLOAT8_E5M2).numpy())
    assert "format=float8_e5m2" in repr(e) and repr(e).startswith("EmulatedTensor(")
    assert to_float(a) is a and type(to_float(e)) is torch.Tensor
    assert e.tolist() == a.tolist()
    with pytest.raises(TypeError, match="FloatFormat"):
        emulate(a, "e5m2")  # type: ignore[arg-type]
