"""EfficientNet: parameter counts against the published models, small-input forward, pieces."""

from __future__ import annotations

import pytest
import torch

from training.models import BatchNormMode, build_model
from training.models.efficientnet import MBConv, StochasticDepth, round_channels

# Parameter counts of the released ImageNet models (224..300 px, 1000 classes): B0 is the
# paper's 5.3M (table 2), exactly 5,288,548 in the reference implementations; B1..B3 7.8M,
# 9.2M and 12M in the paper, 7,794,184, 9,109,994 and 12,233,232 exactly.
PUBLISHED = {"b0": 5_288_548, "b1": 7_794_184, "b2": 9_109_994, "b3": 12_233_232}


@pytest.mark.parametrize("variant", list(PUBLISHED))
def test_parameter_count_matches_the_published_model(variant: str) -> None:
    model = build_model(f"efficientnet_{variant}", in_channels=3, num_classes=1000, image_size=224)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[variant]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [BatchNormMode.PLAIN, BatchNormMode.GHOST])
def test_forward_on_32x32_with_the_batchnorm_factory(mode: BatchNormMode) -> None:
    torch.manual_seed(0)
    model = build_model("efficientnet_b1", in_channels=3, num_classes=10, image_size=32,
                        batchnorm=mode, ghost_batch_size=4)  # fmt: skip
    assert model.input_size == 34  # resolution multiplier 240/224
    out = model(torch.randn(8, 3, 32, 32))
    assert out.shape == (8, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if mode is BatchNormMode.GHOST:
        assert all(type(m).__name__ == "GhostBatchNorm2d" for m in norms)


def test_stochastic_depth_drops_whole_samples_and_keeps_the_mean() -> None:
    sd = StochasticDepth(0.25)
    x = torch.ones(20000, 1, 1, 1)
    torch.manual_seed(0)
    y = sd(x)
    assert y.unique().tolist() == [0.0, pytest.approx(4.0 / 3.0, rel=1e-7)]
    assert float(y.mean()) == pytest.approx(1.0, abs=0.03)
    sd.eval()
    assert torch.equal(sd(x), x)


def test_blocks_and_rounding() -> None:
    assert [round_channels(c) for c in (32 * 1.1, 40 * 1.2, 16, 1280 * 1.1)] == [32, 48, 16, 1408]
    block = MBConv(16, 16, 6, 3, 1, 0.0)
    assert block.residual and not MBConv(16, 24, 6, 3, 2, 0.0).residual
    # SE squeezes to a quarter of the block's input channels: 96 -> 4 -> 96
    se = block.block[6]
    assert (se.reduce.in_channels, se.reduce.out_channels) == (96, 4)
