"""Model registry, architectures, batch-norm variants (incl. 2-process synchronized BN)."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from precision.common.registry import DuplicateNameError
from training.models import (
    MODELS,
    BatchNormMode,
    CifarResNet,
    DistributedBatchNorm2d,
    GhostBatchNorm2d,
    ModelInfo,
    Shortcut,
    build_model,
    convert_batchnorm,
    register_model,
)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("info", MODELS.infos(), ids=lambda i: i.name)
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 32)])
def test_every_model_builds_and_trains_one_step(info: ModelInfo, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(info.name, in_channels=channels, num_classes=7, image_size=size)
    x = torch.randn(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("depth", "params"), [(20, 0.27e6), (32, 0.46e6), (56, 0.85e6)])
def test_cifar_resnet_sizes_match_paper(depth: int, params: float) -> None:
    # He et al. 2016 table 6 lists 0.27M / 0.46M / 0.85M parameters (option A, 10 classes).
    model = build_model(f"resnet{depth}", in_channels=3, num_classes=10, image_size=32)
    assert abs(count_params(model) - params) / params < 0.02


def test_resnet50_size() -> None:
    # 25.56M parameters with the 1000-class ImageNet head (He et al. table 1, torchvision).
    model = build_model("resnet50", in_channels=3, num_classes=1000, image_size=224)
    assert abs(count_params(model) - 25.557e6) < 0.01e6
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0.0 for b in model.blocks)


def test_option_b_adds_projections_option_a_does_not() -> None:
    a = CifarResNet(20, 3, 10, shortcut=Shortcut.A)
    b = CifarResNet(20, 3, 10, shortcut=Shortcut.B)
    # Two stage transitions, each a 1x1 conv (c_in*c_out) + BN (2*c_out).
    assert count_params(b) - count_params(a) == (16 * 32 + 64) + (32 * 64 + 128)


def test_bad_depth_and_duplicate_name_raise() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21, 3, 10)
    with pytest.raises(DuplicateNameError):
        register_model(MODELS.get("mlp"))
    with pytest.raises(ValueError, match="image_size=2"):
        build_model("cnn", in_channels=1, num_classes=2, image_size=2)


def _randomize_bn(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))


@pytest.mark.parametrize("mode", list(BatchNormMode))
def test_convert_batchnorm_keeps_tensors(mode: BatchNormMode) -> None:
    model = build_model("resnet20", in_channels=1, num_classes=10, image_size=8)
    model.eval()
    before = {n: p for n, p in model.named_parameters()}
    converted = convert_batchnorm(model, mode, ghost_batch_size=2)
    kinds = {type(m) for m in converted.modules() if isinstance(m, nn.BatchNorm2d)}
    expected = {
        BatchNormMode.PLAIN: nn.BatchNorm2d,
        BatchNormMode.SYNC: DistributedBatchNorm2d,
        BatchNormMode.GHOST: GhostBatchNorm2d,
    }[mode]
    assert kinds == {expected}
    assert all(p is before[n] for n, p in converted.named_parameters())
    assert not any(m.training for m in converted.modules())
    back = convert_batchnorm(converted, BatchNormMode.PLAIN)
    assert {type(m) for m in back.modules() if isinstance(m, nn.BatchNorm2d)} == {nn.BatchNorm2d}


def test_ghost_needs_size() -> None:
    with pytest.raises(ValueError, match="ghost_batch_size"):
        convert_batchnorm(nn.BatchNorm2d(3), BatchNormMode.GHOST)


def _forward_backward(bn: nn.Module, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_(True)
    out = bn(x)
    (out * w).sum().backward()
    assert x.grad is not None
    return out.detach(), x.grad, bn.weight.grad, bn.bias.grad


@pytest.mark.parametrize("cls", [DistributedBatchNorm2d, nn.BatchNorm2d])
def test_ghost_with_full_batch_equals_plain(cls: type[nn.BatchNorm2d]) -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(6, 3, 4, 4, generator=gen) * 3 + 2, torch.randn(6, 3, 4, 4, generator=gen)
    plain, ghost = cls(3), GhostBatchNorm2d(3, ghost_batch_size=6)
    _randomize_bn(plain, 2)
    _randomize_bn(ghost, 2)
    for a, b in zip(_forward_backward(plain, x, w), _forward_backward(ghost, x, w), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain.running_mean, ghost.running_mean)
    torch.testing.assert_close(plain.running_var, ghost.running_var)
    assert int(plain.num_batches_tracked) == int(ghost.num_batches_tracked) == 1


def test_ghost_normalizes_each_sub_batch() -> None:
    x = torch.cat([torch.randn(4, 2, 3, 3) + 10.0, torch.randn(4, 2, 3, 3) - 10.0])
    out = GhostBatchNorm2d(2, ghost_batch_size=4)(x)
    for half in out.split(4):
        torch.testing.assert_close(half.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    plain = nn.BatchNorm2d(2)(x)
    assert not torch.allclose(plain, out, atol=0.1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    # Large mean relative to the spread: the regime where E[x^2]-E[x]^2 would lose digits.
    x = torch.randn(8, 3, 5, 5, generator=gen, dtype=torch.float64) * 2 + 50
    w = torch.randn(8, 3, 5, 5, generator=gen, dtype=torch.float64)
    return x.float(), w.float()


def _sync_bn_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        x, w = _inputs()
        # Uneven local batches (3 and 5 examples) also exercise the count all-reduce.
        sizes = [3, 5]
        start = sum(sizes[:rank])
        local = slice(start, start + sizes[rank])
        bn = DistributedBatchNorm2d(3)
        _randomize_bn(bn, 4)
        out, gx, gw, gb = _forward_backward(bn, x[local], w[local])
        torch.save(
            {"out": out, "gx": gx, "gw": gw, "gb": gb, "rm": bn.running_mean, "rv": bn.running_var},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_distributed_batchnorm_matches_global_batch(tmp_path: Path) -> None:
    world = 2
    mp.spawn(_sync_bn_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    x, w = _inputs()
    ref = nn.BatchNorm2d(3)
    _randomize_bn(ref, 4)
    out, gx, gw, gb = _forward_backward(ref, x, w)
    tol = {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(torch.cat([p["out"] for p in parts]), out, **tol)
    torch.testing.assert_close(torch.cat([p["gx"] for p in parts]), gx, **tol)
    # Parameter gradients are per-worker shares; DDP's all-reduce would sum them.
    torch.testing.assert_close(sum(p["gw"] for p in parts), gw, **tol)
    torch.testing.assert_close(sum(p["gb"] for p in parts), gb, **tol)
    for p in parts:
        torch.testing.assert_close(p["rm"], ref.running_mean, **tol)
        torch.testing.assert_close(p["rv"], ref.running_var, **tol)


def _effnet() -> nn.Module:
    torch.manual_seed(5)
    model = build_model("efficientnet_b0", in_channels=3, num_classes=4, image_size=32)
    for m in model.modules():  # no randomness in train mode: outputs must match exactly
        if isinstance(m, nn.Dropout) or type(m).__name__ == "StochasticDepth":
            m.p = 0.0
    return model.double()


def _effnet_batch() -> torch.Tensor:
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(6)).double()


def _effnet_sync_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    try:
        model = convert_batchnorm(_effnet(), BatchNormMode.SYNC).train()
        local = _effnet_batch()[rank * 3 : rank * 3 + 3]
        out = model(local)
        stats = [m.running_mean.clone() for m in model.modules() if hasattr(m, "running_mean")]
        torch.save({"out": out.detach(), "stats": stats}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.slow
def test_efficientnet_with_sync_batchnorm_matches_the_whole_batch(tmp_path: Path) -> None:
    """Every BatchNorm of EfficientNet-B0 synchronized over 2 workers gives the outputs and
    running statistics of one process on the whole batch."""
    mp.spawn(_effnet_sync_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    ref = _effnet().train()
    out = ref(_effnet_batch())
    stats = [m.running_mean for m in ref.modules() if hasattr(m, "running_mean")]
    assert len(stats) == len(parts[0]["stats"]) > 40
    torch.testing.assert_close(
        torch.cat([p["out"] for p in parts]), out.detach(), rtol=1e-9, atol=1e-9
    )
    for p in parts:
        for a, b in zip(p["stats"], stats, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
