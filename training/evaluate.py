"""Evaluation on the distributed test split, and the small collectives it needs.

Each rank scores every W-th test example and one all-reduce sums the results, so every rank
gets the same loss and accuracy; batch-norm statistics are averaged first so every rank's
model is the same.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from training.data import Split, iterate_batches
from training.distributed import WorkerContext

EVAL_BATCH = 1024


def all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.tolist()]


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, ctx: WorkerContext) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``split``; each rank scores every W-th example.

    Returns:
        ``(loss, accuracy)`` over the whole split, identical on every rank.
    """
    model.eval()
    idx = torch.arange(ctx.rank, len(split), ctx.world_size)
    loss_sum = correct = 0.0
    for x, y in iterate_batches(split, EVAL_BATCH, indices=idx):
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += float((logits.argmax(1) == y).sum())
    loss_sum, correct = all_sum([loss_sum, correct], ctx.device)
    model.train()
    return loss_sum / len(split), correct / len(split)


def sync_buffers(model: torch.nn.Module, world_size: int) -> None:
    """Average floating buffers (batch-norm running statistics) over the workers.

    Each worker's running statistics come from its own batches; averaging them before
    evaluation and checkpointing keeps every rank's model identical.
    """
    if world_size == 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf.div_(world_size)
