"""The pieces a training loop combines: every optimizer preset learns the synthetic set."""

from __future__ import annotations

import pytest
import torch

from training.data import ShardSpec, iterate_batches, make_synthetic
from training.losses import label_smoothing_cross_entropy
from training.models import build_model
from training.optim import OPTIMIZERS, OptimizerInfo, build_optimizer, param_groups
from training.schedules import LRScaling, LRSchedule, WarmupRule, as_lambda_lr

# Learning rates at batch 32 for presets whose defaults target other batch sizes.
LR_AT_BATCH_32 = {"sgd": 0.05, "nesterov": 0.05, "lars": 4.0, "lamb": 0.01, "nlcg": 0.0005,
                  "rmsprop": 0.0005}  # fmt: skip
# K-FAC on 64 steps of this small task: curvature every step, heavier damping.
SETTINGS_AT_BATCH_32 = {"kfac": {"lr": 0.02, "damping": 0.03, "update_interval": 1}}
# It reaches 0.89-0.90 over the settings tried (the others: > 0.9); chance is 0.25.
ACCURACY_FLOOR = {"kfac": 0.85}


@pytest.mark.parametrize("info", OPTIMIZERS.infos(), ids=lambda i: i.name)
def test_every_optimizer_learns_with_legw_schedule(info: OptimizerInfo) -> None:
    torch.manual_seed(0)
    data = make_synthetic(num_train=512, num_test=256, num_classes=4, separation=3.0, seed=1)
    model = build_model("mlp", in_channels=1, num_classes=4, image_size=8)
    batch, epochs = 32, 4
    steps = len(data.train) // batch
    opt = build_optimizer(
        info.name,
        param_groups(model, 1e-4),
        model=model,
        **({"lr": LR_AT_BATCH_32[info.name]} if info.name in LR_AT_BATCH_32 else {}),
        **SETTINGS_AT_BATCH_32.get(info.name, {}),
    )
    base_lr = opt.param_groups[0]["lr"]
    schedule = LRSchedule(
        base_lr=base_lr,
        base_batch_size=batch,
        batch_size=batch,
        steps_per_epoch=steps,
        total_epochs=epochs,
        scaling=LRScaling.SQRT,
        warmup_epochs=0.5,
        warmup_rule=WarmupRule.LEGW,
    )
    scheduler = as_lambda_lr(opt, schedule)
    shard = ShardSpec(seed=3, drop_last=True)
    for epoch in range(epochs):
        order = shard.indices(len(data.train), epoch)
        for x, y in iterate_batches(data.train, batch, indices=order, drop_last=True):
            opt.zero_grad()
            label_smoothing_cross_entropy(model(x), y, 0.1).backward()
            opt.step()
            scheduler.step()
    with torch.no_grad():
        accuracy = (model(data.test.inputs).argmax(1) == data.test.targets).double().mean()
    assert accuracy > ACCURACY_FLOOR.get(info.name, 0.9)
