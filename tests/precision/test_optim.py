"""Low-precision optimizer wrapper: rounding order, master weights, state round trip."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from precision import quantize
from precision.autograd import Cast
from precision.formats import FloatFormat
from precision.optim import LowPrecisionOptimizer
from precision.registry import BFLOAT16, FLOAT8_E5M2, FLOAT16
from precision.rounding import RoundingMode

OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adamw_amsgrad": lambda ps: torch.optim.AdamW(ps, lr=0.01, amsgrad=True),
}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))


def train(m: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randn(16, 5, generator=g)
        loss = (m(x) - x[:, :2]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def representable(t: torch.Tensor, fmt: FloatFormat) -> bool:
    return torch.equal(quantize(t, fmt), t)


@pytest.mark.parametrize("name", OPTIMIZERS)
# (float8 moments make Adam divide by an underflowed second moment: NaN weights, which
# are a finding for a study, not a property to test here.)
@pytest.mark.parametrize("fmt", [BFLOAT16, FLOAT16], ids=str)
def test_weights_and_state_are_representable_after_step(name: str, fmt: FloatFormat) -> None:
    m = model()
    opt = LowPrecisionOptimizer(
        OPTIMIZERS[name](m.parameters()), grad=Cast(fmt), weight=Cast(fmt), state=Cast(fmt)
    )
    train(m, opt, 3)
    for p in m.parameters():
        assert representable(p.detach(), fmt)
        moments = [v for k, v in opt.state[p].items() if k != "step"]
        assert moments
        for v in moments:
            assert representable(v, fmt)
        assert opt.state[p].get("step", torch.tensor(3.0)).item() == 3  # counters stay exact


def test_gradients_are_rounded_before_the_step() -> None:
    m = nn.Linear(4, 1, bias=False)
    w0 = m.weight.detach().clone()
    opt = LowPrecisionOptimizer(torch.optim.SGD(m.parameters(), lr=1.0), grad=Cast(FLOAT8_E5M2))
    x = torch.randn(8, 4)
    m(x).sum().backward()
    g = m.weight.grad.clone()
    opt.step()
    assert torch.equal(m.weight.detach(), w0 - quantize(g, FLOAT8_E5M2))


def test_master_weights_keep_small_updates_that_pure_low_precision_loses() -> None:
    def run(master: bool) -> torch.Tensor:
        p = nn.Parameter(torch.ones(1))
        opt = LowPrecisionOptimizer(
            torch.optim.SGD([p], lr=1e-3), weight=Cast(BFLOAT16), master_weights=master
        )
        for _ in range(100):
            p.grad = torch.ones(1)
            opt.step()
        return p.detach()

    # bfloat16's spacing below 1 is 2**-8: a 1e-3 step rounds back to 1 every time...
    assert run(master=False).item() == 1.0
    # ...while the float32 master accumulates 0.1 and the model sees it in bfloat16.
    assert run(master=True).item() == quantize(torch.tensor([0.9]), BFLOAT16).item()


def test_stochastic_rounding_keeps_small_updates_in_expectation() -> None:
    p = nn.Parameter(torch.ones(2000))
    opt = LowPrecisionOptimizer(
        torch.optim.SGD([p], lr=1e-3),
        weight=Cast(BFLOAT16, RoundingMode.STOCHASTIC),
        generator=torch.Generator().manual_seed(0),
    )
    for _ in range(100):
        p.grad = torch.ones(2000)
        opt.step()
    assert abs(p.detach().mean().item() - 0.9) < 2e-3


@pytest.mark.parametrize("master", [False, True])
def test_state_dict_round_trip_continues_identically(master: bool) -> None:
    def make(m: nn.Module) -> LowPrecisionOptimizer:
        return LowPrecisionOptimizer(
            torch.optim.Adam(m.parameters(), lr=0.01),
            grad=Cast(FLOAT16),
            weight=Cast(BFLOAT16, RoundingMode.STOCHASTIC),
            state=Cast(FLOAT16),
            master_weights=master,
            master=Cast(FLOAT16) if master else None,
            generator=torch.Generator().manual_seed(7),
        )

    m1 = model()
    opt1 = make(m1)
    train(m1, opt1, 3)
    saved_model, saved_opt = copy.deepcopy(m1.state_dict()), copy.deepcopy(opt1.state_dict())
    expected = train(m1, opt1, 4, seed=1)

    m2 = model()
    opt2 = make(m2)
    opt2.generator.manual_seed(99)  # overwritten by load_state_dict
    m2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    assert train(m2, opt2, 4, seed=1) == expected
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_wrapper_works_with_lr_schedulers_and_validates() -> None:
    m = model()
    opt = LowPrecisionOptimizer(torch.optim.SGD(m.parameters(), lr=1.0), weight=Cast(BFLOAT16))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train(m, opt, 1)
    sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="master_weights=True"):
        LowPrecisionOptimizer(torch.optim.SGD(m.parameters(), lr=1.0), master=Cast(BFLOAT16))
    with pytest.raises(ValueError, match="master weights"):
        opt.load_state_dict({"optimizer": opt.optimizer.state_dict(), "masters": []})


def test_learning_rate_set_after_load_state_dict_reaches_the_wrapped_optimizer() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = LowPrecisionOptimizer(torch.optim.SGD([p], lr=0.1))
    saved = opt.state_dict()
    opt.load_state_dict(saved)  # torch rebuilds the wrapped optimizer's param_groups here
    for group in opt.param_groups:
        group["lr"] = 0.5
    assert opt.optimizer.param_groups[0]["lr"] == 0.5
    p.grad = torch.ones(3)
    opt.step()
    assert torch.equal(p.detach(), torch.full((3,), 0.5))
