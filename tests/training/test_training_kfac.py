"""K-FAC: factors against by-hand computations, the exact natural-gradient step, workers, resume."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from precision.registry import from_bits
from precision.registry import parse as parse_format
from training.cli import main
from training.config import Device, RunConfig
from training.distributed import WorkerContext, launch
from training.optim import KFAC, build_optimizer, param_groups
from training.sweep import three_arms

D = torch.float64


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(D)


def _mlp_factors_by_hand(
    net: nn.Sequential, x: torch.Tensor, y: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A and G of both layers from the forward pass and per-sample output gradients."""
    w1, b1, w2, b2 = (p.detach() for p in net.parameters())
    h = torch.tanh(x @ w1.t() + b1)
    p = torch.softmax(h @ w2.t() + b2, dim=1)
    d2 = p - F.one_hot(y, 3).to(D)  # dL_i/ds2 of sample i's own cross-entropy
    d1 = (d2 @ w2) * (1 - h * h)
    n = len(x)
    return [(x.t() @ x / n, d1.t() @ d1 / n), (h.t() @ h / n, d2.t() @ d2 / n)]


def _one_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()


def test_mlp_factors_and_damped_step_by_hand() -> None:
    net = _mlp()
    x, y = torch.randn(8, 4, dtype=D), torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    want = _mlp_factors_by_hand(net, x, y)
    before = [p.detach().clone() for p in net.parameters()]
    opt = KFAC(net.parameters(), lr=0.1, momentum=0.0, damping=0.01, kl_clip=None, model=net)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    grads = [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]
    opt.step()
    for layer, (a, g) in zip((net[0], net[2]), want, strict=True):
        state = opt.state[layer.weight]
        assert torch.allclose(state["A"], a, rtol=1e-12, atol=1e-14)
        assert torch.allclose(state["G"], g, rtol=1e-12, atol=1e-14)
    for i, (a, g) in zip((0, 2), want, strict=True):
        pi = math.sqrt((torch.trace(a) / a.shape[0]) / (torch.trace(g) / g.shape[0]))
        ai = torch.linalg.inv(a + pi * 0.1 * torch.eye(a.shape[0], dtype=D))
        gi = torch.linalg.inv(g + 0.1 / pi * torch.eye(g.shape[0], dtype=D))
        step = gi @ grads[i] @ ai
        assert torch.allclose(before[i] - net[2 * (i // 2)].weight.detach(), 0.1 * step, rtol=1e-9)
    for i in (1, 3):  # biases: plain SGD
        assert torch.allclose(list(net.parameters())[i].detach(), before[i] - 0.1 * grads[i])


def test_conv_factors_by_hand() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).to(D)
    net = nn.Sequential(conv, nn.Flatten(), nn.Linear(3 * 3 * 3, 2).to(D))
    x, y = torch.randn(4, 2, 5, 5, dtype=D), torch.tensor([0, 1, 1, 0])
    opt = KFAC(net.parameters(), lr=0.0, model=net)
    out = conv(x)
    out.retain_grad()
    F.cross_entropy(net[2](net[1](out)), y).backward()
    per_sample = out.grad * len(x)  # type: ignore[operator]
    # im2col by hand: zero-pad, then every 3x3 window at stride 2 (3x3 output positions)
    xp = F.pad(x, (1, 1, 1, 1))
    rows = [
        xp[i, :, 2 * r : 2 * r + 3, 2 * c : 2 * c + 3].reshape(-1)
        for i in range(4)
        for r in range(3)
        for c in range(3)
    ]
    a = sum(torch.outer(v, v) for v in rows) / len(rows)
    g = (
        sum(
            torch.outer(per_sample[i, :, r, c], per_sample[i, :, r, c])
            for i in range(4)
            for r in range(3)
            for c in range(3)
        )
        / 4
    )
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    assert torch.allclose(opt.state[conv.weight]["A"], a, rtol=1e-12, atol=1e-14)  # type: ignore[arg-type]
    assert torch.allclose(opt.state[conv.weight]["G"], g, rtol=1e-12, atol=1e-14)  # type: ignore[arg-type]


def test_running_average_and_stale_inverses() -> None:
    net = _mlp()
    opt = KFAC(
        net.parameters(),
        lr=0.01,
        factor_decay=0.75,
        factor_interval=1,
        update_interval=3,
        model=net,
    )
    batches = [(torch.randn(6, 4, dtype=D), torch.randint(0, 3, (6,))) for _ in range(4)]
    running = None
    invs = []
    for x, y in batches:
        a_b = _mlp_factors_by_hand(net, x, y)[0][0]
        running = a_b if running is None else 0.75 * running + 0.25 * a_b
        _one_step(net, opt, x, y)
        invs.append(opt.state[net[0].weight]["A_inv"].clone())
    assert torch.allclose(opt.state[net[0].weight]["A"], running, rtol=1e-12)
    assert torch.equal(invs[0], invs[1]) and torch.equal(invs[1], invs[2])  # stale
    assert not torch.equal(invs[2], invs[3])  # step 4 (= 1 + interval) recomputes


def test_factors_follow_the_update_interval_by_default() -> None:
    net = _mlp()
    opt = KFAC(net.parameters(), lr=0.0, factor_decay=0.5, update_interval=2, model=net)
    batches = [(torch.randn(6, 4, dtype=D), torch.randint(0, 3, (6,))) for _ in range(3)]
    seen = [_mlp_factors_by_hand(net, x, y)[0][0] for x, y in batches]  # lr 0: fixed weights
    for x, y in batches:
        _one_step(net, opt, x, y)
    # Steps 1 and 3 collect (0-based 0 and 2); step 2's batch is not seen.
    assert torch.allclose(opt.state[net[0].weight]["A"], 0.5 * seen[0] + 0.5 * seen[2])


def test_least_squares_step_is_the_exact_natural_gradient_step() -> None:
    # Inputs x_j and residuals r_l in a full factorial design: residuals independent of the
    # inputs, so the empirical Fisher is exactly A (x) G and K-FAC (no damping) is exact.
    torch.manual_seed(2)
    xs, rs = torch.randn(4, 3, dtype=D), torch.randn(3, 2, dtype=D)
    layer = nn.Linear(3, 2, bias=False).to(D)
    w0 = layer.weight.detach().clone()
    x = xs.repeat_interleave(3, 0)
    r = rs.repeat(4, 1)
    y = x @ w0.t() - r  # residual W0 x - y = r
    per_sample = torch.stack([torch.outer(ri, xi).reshape(-1) for ri, xi in zip(r, x, strict=True)])
    fisher = per_sample.t() @ per_sample / len(x)
    grad = per_sample.mean(0)
    natural = torch.linalg.solve(fisher, grad).view(2, 3)
    opt = KFAC(layer.parameters(), lr=0.5, momentum=0.0, damping=0.0, kl_clip=None, model=layer)
    opt.zero_grad()
    (0.5 * (layer(x) - y).square().sum(1).mean()).backward()
    opt.step()
    assert torch.allclose(layer.weight.detach(), w0 - 0.5 * natural, rtol=1e-10, atol=1e-12)


def _worker_factors(ctx: WorkerContext, payload: Any, emit: Any) -> list[Any]:
    x, y, fmt = payload
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8, 3))
    opt = KFAC(
        net.parameters(),
        lr=0.0,
        model=net,
        stats_format=None if fmt is None else parse_format(fmt),
    )
    shard = slice(ctx.rank * len(x) // ctx.world_size, (ctx.rank + 1) * len(x) // ctx.world_size)
    _one_step(net, opt, x[shard], y[shard])
    # numpy arrays: torch tensors would travel back through shared memory the worker frees
    mine = [opt.state[w][k].numpy().copy() for w in opt.layers.values() for k in ("A", "G")]
    every: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(every, mine)
    return every


@pytest.mark.distributed
@pytest.mark.parametrize(("workers", "fmt"), [(2, None), (2, "bfloat16"), (4, None)])
def test_workers_average_to_the_whole_batch_factors(workers: int, fmt: str | None) -> None:
    torch.manual_seed(3)
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    result = launch(_worker_factors, (x, y, fmt), workers=workers, device=Device.CPU, timeout_s=30)
    ranks = [[torch.from_numpy(a) for a in r] for r in result]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8, 3))
    opt = KFAC(net.parameters(), lr=0.0, model=net)
    _one_step(net, opt, x, y)
    whole = [opt.state[w][k] for w in opt.layers.values() for k in ("A", "G")]
    for other in ranks[1:]:
        for a, b in zip(ranks[0], other, strict=True):
            assert torch.equal(a, b)  # every worker holds the same factors
    tol = 1e-6 if fmt is None else 2.0**-8  # bfloat16: 8 significant bits, one rounding
    for got, want in zip(ranks[0], whole, strict=True):
        assert torch.allclose(got, want, rtol=tol, atol=tol * float(want.abs().max()))
    if fmt is not None:  # the low-precision path was really taken
        assert any(not torch.equal(g, w) for g, w in zip(ranks[0], whole, strict=True))


def test_needs_a_model_and_valid_settings() -> None:
    net = _mlp()
    with pytest.raises(ValueError, match="pass model="):
        build_optimizer("kfac", param_groups(net, 0.0))
    with pytest.raises(ValueError, match="update_interval=0"):
        KFAC(net.parameters(), update_interval=0, model=net)
    with pytest.raises(ValueError, match="factor_decay"):
        KFAC(net.parameters(), factor_decay=1.0, model=net)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.usefixtures("eager_kernel")
def test_resume_with_stale_inverses_and_e5m2_factors_is_bit_exact(full_and_resumed: Any) -> None:
    (arm,) = three_arms(from_bits(8), batch_size=64, optimizer="kfac", lr=0.02, seed=3,
                        which=("aps",))  # fmt: skip
    # An inverse interval that does not divide the steps per epoch: the resumed run starts
    # with stale inverses from the checkpoint. Gradients travel in e5m2 with APS, and so do
    # the factors (stochastic rounding, keyed by the optimizer's saved counter).
    cfg = RunConfig(arms=(arm,), dataset="synthetic", epochs=2, workers=2, device=Device.CPU,
                    warmup_epochs=0.5, kfac_update_interval=3, stats_format="e5m2",
                    rounding="stochastic")  # fmt: skip
    full, resumed, a, b = full_and_resumed(cfg)  # also: the same weights at the end
    losses = [s.train_loss for s in full[0].steps]
    assert all(math.isfinite(v) for v in losses)
    assert losses == [s.train_loss for s in resumed[0].steps]
    assert a["optimizer"]["kfac"] == b["optimizer"]["kfac"]
    assert a["optimizer"]["kfac"]["stats_step"] > 0


@pytest.mark.distributed
def test_cli_records_the_kfac_options(tmp_path: Path) -> None:
    args = ["run", "--arms", "float32", "--dataset", "synthetic", "--epochs", "1",
            "--optimizer", "kfac", "--output-dir", str(tmp_path)]  # fmt: skip
    bad = CliRunner().invoke(main, [*args, "--stats-format", "e9m9x"])
    assert bad.exit_code == 2 and "--stats-format" in bad.output and "Traceback" not in bad.output
    ok = CliRunner().invoke(
        main,
        [*args, "--stats-format", "e4m3", "--kfac-update-interval", "5", "--kfac-damping", "0.01"],
    )
    assert ok.exit_code == 0, ok.output
    (run_dir,) = tmp_path.iterdir()
    cfg = RunConfig.load(run_dir / "config.json")
    assert (cfg.stats_format, cfg.kfac_update_interval, cfg.kfac_damping) == (
        parse_format("e4m3"),
        5,
        0.01,
    )
    assert cfg.arms[0].optimizer == "kfac"


def test_kl_clipping_scales_the_step_to_the_bound() -> None:
    """The clipped step u' = nu u has lr**2 u'.g == kl_clip when the raw step exceeds it."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(3, 2, bias=False)).double()  # float64: exact differences
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    steps = {}
    for clip in (None, 1e-6):
        layer = copy.deepcopy(net)
        opt = KFAC(layer.parameters(), lr=0.5, momentum=0.0, damping=0.0, kl_clip=clip,
                   model=layer)  # fmt: skip
        w0 = layer[0].weight.detach().clone()
        nn.functional.mse_loss(layer(x), y).backward()
        g = layer[0].weight.grad.detach().clone()  # type: ignore[union-attr]
        opt.step()
        steps[clip] = (w0 - layer[0].weight.detach()) / 0.5  # the update u
    raw, clipped = steps[None], steps[1e-6]
    vg = 0.25 * float((raw * g).sum())
    assert vg > 1e-6  # the bound is active
    nu = (1e-6 / vg) ** 0.5
    assert torch.allclose(clipped, nu * raw, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="kl_clip"):
        KFAC(net.parameters(), kl_clip=0.0, model=net)
