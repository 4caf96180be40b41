"""Static and dynamic loss scaling on emulated gradient formats."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from precision import quantize
from precision.autograd import Cast
from precision.formats import FloatFormat
from precision.registry import FLOAT8_E4M3FN, FLOAT8_E5M2, FLOAT16
from precision.rounding import Specials
from precision.scaling import LossScaler


def setup() -> tuple[nn.Parameter, torch.optim.Optimizer]:
    p = nn.Parameter(torch.zeros(3))
    return p, torch.optim.SGD([p], lr=1.0)


def backward(scaler: LossScaler, p: nn.Parameter, grad: torch.Tensor) -> None:
    p.grad = None
    scaler.scale((p * grad).sum()).backward()


def test_scaling_rescues_gradients_that_underflow_the_format() -> None:
    grad = torch.tensor([1e-9, 2e-9, -3e-9])  # below float16's smallest subnormal (6e-8)
    p, opt = setup()
    unscaled = LossScaler.static(1.0, grad=Cast(FLOAT16))
    backward(unscaled, p, grad)
    assert unscaled.step(opt) and torch.equal(p.detach(), torch.zeros(3))
    p, opt = setup()
    scaled = LossScaler.static(2.0**20, grad=Cast(FLOAT16))
    backward(scaled, p, grad)
    assert scaled.step(opt)
    expected = -quantize(grad * 2.0**20, FLOAT16) / 2.0**20
    assert torch.equal(p.detach(), expected) and (expected != 0).all()


@pytest.mark.parametrize("fmt", [FLOAT16, FLOAT8_E5M2, FLOAT8_E4M3FN], ids=str)
def test_dynamic_scaler_skips_overflow_backs_off_and_grows(fmt: FloatFormat) -> None:
    p, opt = setup()
    scaler = LossScaler.dynamic(2.0**40, grad=Cast(fmt), growth_interval=2)
    backward(scaler, p, torch.ones(3))
    assert scaler.step(opt) is False  # 2**40 overflows: inf (IEEE) or NaN (fn)
    scaler.update()
    assert torch.equal(p.detach(), torch.zeros(3))
    assert scaler.get_scale() == 2.0**39
    scaler.load_state_dict({"scale": 4.0, "good_steps": 0})
    for _ in range(2):
        backward(scaler, p, torch.ones(3))
        assert scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 8.0
    assert torch.equal(p.detach(), torch.full((3,), -2.0))
    assert scaler.state_dict() == {"scale": 8.0, "good_steps": 0}


def test_saturating_format_counts_saturation_as_overflow() -> None:
    fmt = FloatFormat(exponent_bits=4, mantissa_bits=3, specials=Specials.FINITE)
    p, opt = setup()
    scaler = LossScaler.static(2.0**20, grad=Cast(fmt))
    backward(scaler, p, torch.ones(3))
    assert scaler.step(opt) is False
    lenient = LossScaler.static(2.0**20, grad=Cast(fmt), saturation_is_overflow=False)
    scaler.update()
    backward(lenient, p, torch.ones(3))
    assert lenient.step(opt)
    assert torch.equal(p.detach(), torch.full((3,), -fmt.max_finite / 2.0**20))


def test_static_scale_never_changes_and_unscale_twice_is_an_error() -> None:
    p, opt = setup()
    scaler = LossScaler.static(2.0**30, grad=Cast(FLOAT16))
    backward(scaler, p, torch.ones(3))
    assert scaler.unscale_(opt) is True
    with pytest.raises(RuntimeError, match="already"):
        scaler.unscale_(opt)
    assert scaler.step(opt) is False
    scaler.update()
    assert scaler.get_scale() == 2.0**30
    with pytest.raises(ValueError, match="backoff_factor"):
        LossScaler(1.0, backoff_factor=2.0)
