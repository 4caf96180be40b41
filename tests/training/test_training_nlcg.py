"""NLCG against a three-step sequence worked out with Python floats; convergence vs SGD."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from precision.registry import from_bits
from training.config import RunConfig
from training.optim import NLCG, build_optimizer, param_groups
from training.sweep import three_arms

H = ((3.0, 1.0), (1.0, 2.0))
B = (1.0, -1.0)
W0 = (2.0, 1.0)


def _grad(w: list[float]) -> list[float]:
    """Gradient of f(w) = 0.5 w.Hw - b.w."""
    return [sum(H[i][j] * w[j] for j in range(2)) - B[i] for i in range(2)]


def _by_hand(
    rule: str, steps: int, lr: float, precondition: bool, restart_every: int, clip: bool = True
) -> tuple[list[list[float]], list[float]]:
    """The NLCG recurrences written out on lists of floats (module docstring, steps 1-5)."""
    b2, eps = 0.999, 1e-8
    w = list(W0)
    v = [0.0, 0.0]
    g_prev: list[float] = []
    s_prev: list[float] = []
    d: list[float] = []
    path, betas = [], []
    for k in range(1, steps + 1):
        g = _grad(w)
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        if precondition:
            s = [gi / (math.sqrt(vi / (1 - b2**k)) + eps) for gi, vi in zip(g, v, strict=True)]
        else:
            s = list(g)
        beta = 0.0
        if k > 1 and not (restart_every and (k - 1) % restart_every == 0):
            gs_prev = sum(a * b for a, b in zip(g_prev, s_prev, strict=True))
            if rule == "fr":
                beta = sum(a * b for a, b in zip(g, s, strict=True)) / gs_prev
            else:
                num = sum(gi * (si - sp) for gi, si, sp in zip(g, s, s_prev, strict=True))
                if rule == "hs":
                    den = sum(di * (gi - gp) for di, gi, gp in zip(d, g, g_prev, strict=True))
                else:
                    den = gs_prev
                beta = num / den
            if clip:
                beta = max(beta, 0.0)  # restart on a negative beta
        d = (
            [-si for si in s]
            if beta == 0.0
            else [beta * di - si for di, si in zip(d, s, strict=True)]
        )
        w = [wi + lr * di for wi, di in zip(w, d, strict=True)]
        g_prev, s_prev = g, s
        path.append(list(w))
        betas.append(beta)
    return path, betas


def _run(rule: str, steps: int, lr: float, **kw: object) -> tuple[list[list[float]], list[float]]:
    w = nn.Parameter(torch.tensor(W0, dtype=torch.float64))
    h, b = torch.tensor(H, dtype=torch.float64), torch.tensor(B, dtype=torch.float64)
    opt = NLCG([w], lr=lr, beta_rule=rule, **{"beta_max": None, **kw})  # type: ignore[arg-type]
    path, betas = [], []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * w @ h @ w - b @ w).backward()
        opt.step()
        path.append(w.detach().tolist())
        betas.append(opt.last_beta)
    return path, betas


@pytest.mark.parametrize("rule", ["fr", "pr", "pr+", "hs"])
@pytest.mark.parametrize("precondition", [False, True])
@pytest.mark.parametrize("restart_every", [0, 2])
def test_three_steps_by_hand(rule: str, precondition: bool, restart_every: int) -> None:
    # Steps long enough to overshoot along the stiff direction, so PR and HS betas are positive.
    lr = 2.0 if precondition else 0.5
    got, got_betas = _run(rule, 3, lr, precondition=precondition, restart_every=restart_every)
    want, want_betas = _by_hand(rule, 3, lr, precondition, restart_every)
    assert got_betas == pytest.approx(want_betas, rel=1e-12, abs=1e-15)
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15)
    assert got_betas[0] == 0.0  # the first step is steepest descent
    if restart_every == 2:
        assert got_betas[2] == 0.0  # step 3 = 1 + restart_every restarts
    else:
        assert any(got_betas[1:])  # otherwise a later step is conjugate


def test_negative_beta_restarts_only_when_asked() -> None:
    # Small fixed steps shrink the gradient along itself, so PR's beta is negative at step 2.
    _, raw = _by_hand("pr", 3, 0.1, False, 0, clip=False)
    assert raw[1] < 0
    path, kept = _run("pr", 3, 0.1, precondition=False, restart_on_negative=False)
    assert kept == pytest.approx(raw, rel=1e-12)
    want = _by_hand("pr", 3, 0.1, False, 0, clip=False)[0]
    assert [x for w in path for x in w] == pytest.approx([x for w in want for x in w], rel=1e-12)
    _, clipped = _run("pr", 3, 0.1, precondition=False, restart_on_negative=True)
    _, plus = _run("pr+", 3, 0.1, precondition=False, restart_on_negative=False)
    assert clipped[1] == 0.0 and plus[1] == 0.0


def _steps_to_converge(make: object, h: torch.Tensor, tol: float, limit: int = 5000) -> int:
    w = nn.Parameter(torch.ones(h.shape[0], dtype=torch.float64))
    opt = make([w])  # type: ignore[operator]
    for k in range(1, limit + 1):
        opt.zero_grad()
        (0.5 * w @ h @ w).backward()
        opt.step()
        if float(w.detach().norm()) < tol:
            return k
    return limit + 1


@pytest.mark.parametrize(("rule", "precondition"), [("fr", False), ("fr", True), ("pr+", True)])
def test_converges_in_fewer_steps_than_sgd(rule: str, precondition: bool) -> None:
    # Ill-conditioned convex quadratic (condition number 100), minimum at 0; same LR for both.
    h = torch.diag(torch.tensor([100.0, 30.0, 10.0, 1.0], dtype=torch.float64))
    lr = 0.009  # stable for SGD: lr < 2 / 100
    sgd = _steps_to_converge(lambda p: torch.optim.SGD(p, lr=lr), h, 1e-6)
    cg = _steps_to_converge(
        lambda p: NLCG(p, lr=lr, beta_rule=rule, precondition=precondition), h, 1e-6
    )
    assert sgd <= 5000
    # Measured: SGD 1529 steps; FR 154, preconditioned FR 99, preconditioned PR+ 603.
    assert cg < sgd, (cg, sgd)


def test_options_are_validated() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="beta_rule='cd'"):
        NLCG(p, beta_rule="cd")
    with pytest.raises(ValueError, match="restart_every"):
        NLCG(p, restart_every=-1)
    with pytest.raises(ValueError, match="beta2"):
        NLCG(p, beta2=1.0)


def test_excluded_groups_are_not_decayed() -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = build_optimizer("nlcg", param_groups(net, 0.5), lr=0.1, precondition=False)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    net.weight.grad = torch.zeros_like(net.weight)
    net.bias.grad = torch.zeros_like(net.bias)
    opt.step()
    assert torch.allclose(net.weight, w0 * (1 - 0.1 * 0.5))  # pure decay step
    assert torch.equal(net.bias, b0)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.usefixtures("eager_kernel")
def test_resume_keeps_the_search_direction_bit_exact(full_and_resumed: Any) -> None:
    arms = three_arms(from_bits(8), batch_size=64, optimizer="nlcg", lr=0.005,
                      seed=3, which=("aps",))  # fmt: skip
    cfg = RunConfig(arms=arms, dataset="synthetic", epochs=2, workers=2, device="cpu",
                    warmup_epochs=0.5)  # fmt: skip
    full, resumed, a, _ = full_and_resumed(cfg)  # also: the same weights at the end
    assert [s.train_loss for s in full[0].steps] == [s.train_loss for s in resumed[0].steps]
    assert any("direction" in s for s in a["optimizer"]["state"].values())
