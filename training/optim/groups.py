"""Parameter groups that exempt batch-norm parameters and biases from decay and adaptation."""

from __future__ import annotations

from typing import Any

from torch import nn


def param_groups(
    model: nn.Module, weight_decay: float, exclude_bn_bias: bool = True
) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into optimizer groups.

    Layer-wise adaptive methods skip weight decay and trust-ratio scaling for batch-norm
    scales/shifts and biases (You, Gitman, Ginsburg 2017, arXiv:1708.03888; You et al. 2019,
    arXiv:1904.00962; Goyal et al. 2017 §5.1 on not decaying BN parameters). Those are exactly
    the parameters with at most one dimension, so the split is by ``ndim`` and works for any
    architecture.

    Args:
        model: the model.
        weight_decay: decay for the multi-dimensional weights.
        exclude_bn_bias: put 1-D parameters in a group with ``weight_decay=0`` and
            ``lars_exclude=True``; when False, one group holds everything.

    Returns:
        One or two groups (empty ones omitted). Every group carries ``weight_decay`` and
        ``lars_exclude`` keys, which LARS and LAMB read and plain SGD ignores.

    Raises:
        ValueError: if ``weight_decay`` is negative.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay}: must be >= 0")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not exclude_bn_bias:
        return [{"params": trainable, "weight_decay": weight_decay, "lars_exclude": False}]
    decayed = [p for p in trainable if p.ndim > 1]
    excluded = [p for p in trainable if p.ndim <= 1]
    groups = [
        {"params": decayed, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
    ]
    return [g for g in groups if g["params"]]
