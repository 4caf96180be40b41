"""Learning-rate schedules (values by hand, properties) and label-smoothing cross entropy."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from training.losses import LabelSmoothingCrossEntropy, Reduction, label_smoothing_cross_entropy
from training.schedules import (
    Decay,
    LRScaling,
    LRSchedule,
    WarmupRule,
    as_lambda_lr,
)


def legw(**fields: Any) -> LRSchedule:
    """LEGW (You et al. 2019): square-root scaling, warmup growing with the batch multiple."""
    return LRSchedule(scaling=LRScaling.SQRT, warmup_rule=WarmupRule.LEGW, **fields)


def legw_example(decay: Decay = Decay.POLYNOMIAL) -> LRSchedule:
    # B0 = 256 -> B = 1024: k = 4, peak = 0.1 * sqrt(4) = 0.2, warmup 0.5 * 4 = 2 epochs.
    return legw(
        base_lr=0.1,
        base_batch_size=256,
        batch_size=1024,
        steps_per_epoch=10,
        total_epochs=10,
        warmup_epochs=0.5,
        decay=decay,
    )


def test_legw_values_by_hand() -> None:
    s = legw_example()
    assert s.k == 4 and s.warmup_length == 2.0
    assert s.peak_lr == pytest.approx(0.2)
    assert s.lr(0) == 0.0
    assert s.lr(5) == pytest.approx(0.05)  # epoch 0.5 of 2: 0.2 * 0.25
    assert s.lr(15) == pytest.approx(0.15)
    assert s.lr(20) == pytest.approx(0.2)  # warmup done
    assert s.lr(60) == pytest.approx(0.05)  # epoch 6: 0.2 * (1 - 4/8)^2
    assert s.lr(80) == pytest.approx(0.0125)  # epoch 8: 0.2 * (1 - 6/8)^2
    assert s.lr(100) == 0.0
    cosine = legw_example(Decay.COSINE)
    assert cosine.lr(60) == pytest.approx(0.1)  # half-way through decay: peak / 2
    assert cosine.lr(40) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))


def test_legw_warmup_scales_with_batch() -> None:
    lengths = [
        legw(
            base_lr=1.0,
            base_batch_size=128,
            batch_size=b,
            steps_per_epoch=1,
            total_epochs=100,
            warmup_epochs=0.25,
        ).warmup_length
        for b in (128, 256, 1024, 8192)
    ]
    assert lengths == [0.25, 0.5, 2.0, 16.0]
    with pytest.raises(ValueError, match="exceeds total_epochs"):
        legw(
            base_lr=1.0,
            base_batch_size=128,
            batch_size=128 * 64,
            steps_per_epoch=1,
            total_epochs=10,
            warmup_epochs=0.25,
        )


def test_goyal_warmup_starts_at_base_lr() -> None:
    # Goyal et al.: k = 32 (8192 / 256), 0.1 -> 3.2 over 5 epochs.
    s = LRSchedule(base_lr=0.1, base_batch_size=256, batch_size=8192, steps_per_epoch=4,
                   total_epochs=90, warmup_epochs=5.0, warmup_start_lr=0.1)  # fmt: skip
    assert s.lr(0) == pytest.approx(0.1)
    assert s.lr_at_epoch(2.5) == pytest.approx(0.1 + 3.1 * 0.5)
    assert s.lr(20) == pytest.approx(3.2)


@settings(max_examples=50, deadline=None)
@given(
    k=st.sampled_from([0.5, 1.0, 2.0, 8.0, 64.0]),
    warmup=st.floats(0.0, 1.0),
    scaling=st.sampled_from(list(LRScaling)),
    rule=st.sampled_from(list(WarmupRule)),
    decay=st.sampled_from(list(Decay)),
    start=st.floats(0.0, 0.05),
    end=st.floats(0.0, 0.01),
    power=st.floats(0.5, 3.0),
)
def test_schedule_shape(
    k: float,
    warmup: float,
    scaling: LRScaling,
    rule: WarmupRule,
    decay: Decay,
    start: float,
    end: float,
    power: float,
) -> None:
    s = LRSchedule(
        base_lr=0.1,
        base_batch_size=256,
        batch_size=int(256 * k),
        steps_per_epoch=7,
        total_epochs=70,
        scaling=scaling,
        warmup_epochs=warmup,
        warmup_rule=rule,
        warmup_start_lr=start,
        decay=decay,
        power=power,
        end_lr=end,
    )
    lrs = [s.lr(i) for i in range(s.total_steps + 1)]
    # Steps strictly inside warmup, then the peak itself (reached between two steps).
    warm_steps = math.ceil(s.warmup_length * s.steps_per_epoch)
    warm, rest = [*lrs[:warm_steps], s.peak_lr], lrs[warm_steps:]
    direction = 1 if s.peak_lr >= start else -1
    assert all(direction * (b - a) >= -1e-12 for a, b in itertools.pairwise(warm))
    if decay is Decay.CONSTANT:
        assert lrs[-1] == pytest.approx(s.peak_lr)
    elif decay is Decay.EXPONENTIAL:  # a factor per epoch, floored at end_lr
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(rest))
        tail = s.total_epochs - s.warmup_length
        assert lrs[-1] == pytest.approx(max(end, s.peak_lr * s.rate**tail))
    else:
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(rest))
        assert lrs[-1] == pytest.approx(end)
    assert max(lrs) <= max(s.peak_lr, start) + 1e-12


def test_lambda_lr_adapter_follows_schedule() -> None:
    s = legw_example()
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=123.0)
    sched = as_lambda_lr(opt, s)
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([s.lr(i) for i in range(30)])


def test_schedule_validation() -> None:
    with pytest.raises(ValueError, match="batch_size=0"):
        LRSchedule(
            base_lr=0.1, base_batch_size=256, batch_size=0, steps_per_epoch=1, total_epochs=1
        )


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("reduction", list(Reduction))
def test_label_smoothing_matches_torch(smoothing: float, reduction: Reduction) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(7, (16,), generator=gen)
    ours = label_smoothing_cross_entropy(logits, targets, smoothing, reduction)
    ref = F.cross_entropy(logits, targets, label_smoothing=smoothing, reduction=reduction.value)
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


def test_label_smoothing_module_and_validation() -> None:
    loss = LabelSmoothingCrossEntropy(0.2)
    logits, targets = torch.zeros(3, 4), torch.tensor([0, 1, 3])
    assert float(loss(logits, targets)) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match=r"smoothing=1\.5"):
        LabelSmoothingCrossEntropy(1.5)
    with pytest.raises(ValueError, match="expected"):
        label_smoothing_cross_entropy(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))


def test_exponential_decay_is_the_efficientnet_rate() -> None:
    """x0.97 every 2.4 epochs after warmup (arXiv:2011.00071's recipe)."""
    s = LRSchedule(
        base_lr=0.1, base_batch_size=64, batch_size=64, steps_per_epoch=10, total_epochs=20,
        warmup_epochs=2.0, decay=Decay.EXPONENTIAL,
    )  # fmt: skip
    assert s.lr_at_epoch(2.0) == pytest.approx(0.1)
    assert s.lr_at_epoch(2.0 + 2.4) == pytest.approx(0.1 * 0.97)
    assert s.lr_at_epoch(2.0 + 4.8) == pytest.approx(0.1 * 0.97**2)
    with pytest.raises(ValueError, match="rate"):
        LRSchedule(base_lr=0.1, base_batch_size=64, batch_size=64, steps_per_epoch=10,
                   total_epochs=20, decay=Decay.EXPONENTIAL, rate=1.5)  # fmt: skip


def test_run_config_takes_the_decay_and_refuses_others() -> None:
    from precision.registry import from_bits
    from training.arm import schedule_for
    from training.config import ConfigError, RunConfig
    from training.sweep import three_arms

    arms = three_arms(from_bits(4), batch_size=64, optimizer="rmsprop", lr=0.016, seed=0)
    cfg = RunConfig(arms=arms[:1], decay="exponential", epochs=10)
    assert cfg.to_dict()["decay"] == "exponential"
    assert RunConfig.from_dict(cfg.to_dict()).decay is Decay.EXPONENTIAL
    assert schedule_for(cfg, cfg.arms[0], steps_per_epoch=5).decay is Decay.EXPONENTIAL
    with pytest.raises(ConfigError, match="decay='linear'"):
        RunConfig(arms=arms[:1], decay="linear")
