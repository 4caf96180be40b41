"""Optimizers against steps worked out by hand with Python floats; registry; state round trip."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from precision.common.registry import DuplicateNameError
from training.optim import (
    LAMB,
    LARS,
    OPTIMIZERS,
    OptimizerInfo,
    build_optimizer,
    param_groups,
    register_optimizer,
)


class Tiny(nn.Module):
    """Three scalars: a 1x2 weight (adapted, decayed) and a 1-element bias (excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))


def set_grads(model: Tiny, gw: tuple[float, float], gb: float) -> None:
    model.weight.grad = torch.tensor([list(gw)], dtype=torch.float64)
    model.bias.grad = torch.tensor([gb], dtype=torch.float64)


def values(model: Tiny) -> tuple[float, float, float]:
    w = model.weight.detach().reshape(-1).tolist()
    return (w[0], w[1], float(model.bias.detach()[0]))


def test_param_groups_split_by_ndim() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))
    model[3].weight.requires_grad_(False)
    groups = param_groups(model, weight_decay=5e-4)
    decayed, excluded = groups
    assert [p.ndim for p in decayed["params"]] == [4]
    assert decayed["weight_decay"] == 5e-4 and decayed["lars_exclude"] is False
    assert [p.ndim for p in excluded["params"]] == [1, 1, 1, 1]  # conv bias, BN w/b, fc bias
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"] is True
    (single,) = param_groups(model, 1e-4, exclude_bn_bias=False)
    assert len(single["params"]) == 5
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(model, -1.0)


def test_lars_two_steps_by_hand() -> None:
    lr, m, wd, eta = 0.1, 0.9, 0.01, 0.001
    model = Tiny()
    opt = LARS(param_groups(model, wd), lr=lr, momentum=m, weight_decay=wd, eta=eta)
    set_grads(model, (0.6, 0.8), 0.5)
    opt.step()
    # Step 1 by the numbers: trust = 0.001 * 5 / (1 + 0.01 * 5), update = g + wd w = (0.63, 0.84).
    first = 0.1 * (0.005 / 1.05)
    assert values(model) == pytest.approx((3.0 - first * 0.63, 4.0 - first * 0.84, 0.95))
    model = Tiny()
    opt = LARS(param_groups(model, wd), lr=lr, momentum=m, weight_decay=wd, eta=eta)
    grads = [((0.6, 0.8), 0.5), ((-0.3, 0.2), 0.25), ((0.1, 0.1), -1.0)]
    w, b = [3.0, 4.0], 1.0
    vw, vb = [0.0, 0.0], 0.0
    for gw, gb in grads:
        set_grads(model, gw, gb)
        opt.step()
        w_norm, g_norm = math.hypot(*w), math.hypot(*gw)
        trust = eta * w_norm / (g_norm + wd * w_norm)
        vw = [m * v + lr * trust * (g + wd * x) for v, g, x in zip(vw, gw, w, strict=True)]
        w = [x - v for x, v in zip(w, vw, strict=True)]
        vb = m * vb + lr * gb  # excluded: no trust ratio, no decay
        b -= vb
        assert values(model) == pytest.approx((*w, b), rel=1e-12, abs=1e-15)


def test_lars_zero_weight_falls_back_to_global_rate() -> None:
    model = Tiny()
    with torch.no_grad():
        model.weight.zero_()
    opt = LARS(param_groups(model, 0.0), lr=0.5, momentum=0.0, eta=0.001)
    set_grads(model, (1.0, 2.0), 0.0)
    opt.step()
    assert values(model)[:2] == pytest.approx((-0.5, -1.0))


@pytest.mark.parametrize("bounds", [None, (0.0, 2.0)])
def test_lamb_two_steps_by_hand(bounds: tuple[float, float] | None) -> None:
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-6, 0.01
    model = Tiny()
    opt = LAMB(
        param_groups(model, wd), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, phi_bounds=bounds
    )
    grads = [((0.6, 0.8), 0.5), ((-0.3, 0.2), 0.25)]
    w, b = [3.0, 4.0], 1.0
    mw, vw, mb, vb = [0.0, 0.0], [0.0, 0.0], 0.0, 0.0
    for t, (gw, gb) in enumerate(grads, start=1):
        set_grads(model, gw, gb)
        opt.step()
        c1, c2 = 1 - b1**t, 1 - b2**t
        mw = [b1 * x + (1 - b1) * g for x, g in zip(mw, gw, strict=True)]
        vw = [b2 * x + (1 - b2) * g * g for x, g in zip(vw, gw, strict=True)]
        u = [
            (mi / c1) / (math.sqrt(vi / c2) + eps) + wd * x
            for mi, vi, x in zip(mw, vw, w, strict=True)
        ]
        w_norm = math.hypot(*w)
        if bounds is not None:
            w_norm = min(max(w_norm, bounds[0]), bounds[1])
        trust = w_norm / math.hypot(*u)
        w = [x - lr * trust * ui for x, ui in zip(w, u, strict=True)]
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb * gb
        b -= lr * (mb / c1) / (math.sqrt(vb / c2) + eps)  # excluded: plain Adam, no decay
        assert values(model) == pytest.approx((*w, b), rel=1e-12, abs=1e-15)


def test_lamb_first_step_is_sign_like() -> None:
    # Step 1 with bias correction: m_hat = g and sqrt(v_hat) = |g|, so r = g / (|g| + eps).
    model = Tiny()
    opt = LAMB(param_groups(model, 0.0), lr=0.1, eps=0.0)
    set_grads(model, (0.6, 0.8), 0.5)
    opt.step()
    # u = (1, 1), ||w|| = 5, ||u|| = sqrt(2): each weight moves by 0.1 * 5 / sqrt(2).
    step = 0.1 * 5 / math.sqrt(2)
    assert values(model) == pytest.approx((3.0 - step, 4.0 - step, 0.9))


def test_nesterov_preset_by_hand() -> None:
    model = Tiny()
    opt = build_optimizer("nesterov", param_groups(model, 0.1), lr=0.5)
    set_grads(model, (1.0, -1.0), 2.0)
    opt.step()
    # torch rule: g' = g + wd w; buf = g'; p -= lr (g' + m buf) = lr * 1.9 g'.
    g0, g1 = 1.0 + 0.1 * 3.0, -1.0 + 0.1 * 4.0
    assert values(model) == pytest.approx((3.0 - 0.95 * g0, 4.0 - 0.95 * g1, 1.0 - 0.95 * 2.0))


@pytest.mark.parametrize("name", ["sgd", "nesterov"])
def test_sgd_presets_equal_torch_sgd(name: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    twin = copy.deepcopy(net)
    ours = build_optimizer(name, param_groups(net, 1e-3), lr=0.05)
    ref = torch.optim.SGD(
        param_groups(twin, 1e-3), lr=0.05, momentum=0.9, nesterov=name == "nesterov"
    )
    x = torch.randn(8, 4)
    for _ in range(4):
        for model, opt in ((net, ours), (twin, ref)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("info", OPTIMIZERS.infos(), ids=lambda i: i.name)
def test_state_dict_round_trip(info: OptimizerInfo) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    x = torch.randn(6, 3)

    def step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()

    clone = copy.deepcopy(net)  # before any optimizer hooks the model (K-FAC does)
    opt = build_optimizer(info.name, param_groups(net, 1e-2), model=net, lr=0.01)
    for _ in range(3):
        step(net, opt)
    clone.load_state_dict(net.state_dict())
    restored = build_optimizer(info.name, param_groups(clone, 0.5), model=clone, lr=99.0)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert restored.param_groups[0]["lr"] == 0.01
    for _ in range(2):
        step(net, opt)
        step(clone, restored)
    for a, b in zip(net.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_registry_rules() -> None:
    with pytest.raises(DuplicateNameError, match="lars"):
        register_optimizer(OPTIMIZERS.get("lars"))
    with pytest.raises(ValueError, match="takes no trust"):
        build_optimizer("lamb", [nn.Parameter(torch.zeros(2))], trust=1.0)
    with pytest.raises(ValueError, match="takes no nesterov"):
        OptimizerInfo(name="bad-lars", cls=LARS, defaults={"lr": 1.0, "nesterov": True})
    info = OPTIMIZERS.get("sgd")
    with pytest.raises(TypeError):
        info.defaults["lr"] = 1.0  # type: ignore[index]


def test_hyper_parameter_validation() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="eta=-1"):
        LARS(p, lr=0.1, eta=-1.0)
    with pytest.raises(ValueError, match="betas"):
        LAMB(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="phi_bounds"):
        LAMB(p, phi_bounds=(2.0, 1.0))
