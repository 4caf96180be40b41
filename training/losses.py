"""Classification losses.

Label smoothing (Szegedy et al. 2016, "Rethinking the Inception architecture", arXiv:1512.00567,
§7) replaces the one-hot target by ``(1 - eps) * onehot + eps / K``; large-batch ImageNet
recipes such as Mikami et al. 2018 (arXiv:1811.05233) use it with ``eps = 0.1``.
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn


class Reduction(Enum):
    """How per-example losses are combined."""

    MEAN = "mean"
    SUM = "sum"
    NONE = "none"


def label_smoothing_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    smoothing: float = 0.1,
    reduction: Reduction = Reduction.MEAN,
) -> torch.Tensor:
    """Cross entropy against label-smoothed targets.

    Per example: ``(1 - eps) * (-log p[y]) + eps * mean_k(-log p[k])``.

    Args:
        logits: ``(N, K)`` unnormalized scores.
        targets: ``(N,)`` class indices.
        smoothing: ``eps`` in ``[0, 1]``; 0 gives ordinary cross entropy.
        reduction: mean, sum or none over the batch.

    Returns:
        A scalar, or ``(N,)`` losses for ``Reduction.NONE``.

    Raises:
        ValueError: if ``smoothing`` is outside ``[0, 1]`` or shapes disagree.
    """
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing={smoothing}: must be in [0, 1]")
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)}: "
            "expected (N, K) and (N,)"
        )
    log_probs = F.log_softmax(logits, dim=1)
    nll = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    uniform = -log_probs.mean(dim=1)
    losses = (1.0 - smoothing) * nll + smoothing * uniform
    if reduction is Reduction.MEAN:
        return losses.mean()
    if reduction is Reduction.SUM:
        return losses.sum()
    return losses


class LabelSmoothingCrossEntropy(nn.Module):
    """Module form of :func:`label_smoothing_cross_entropy`.

    Args:
        smoothing: ``eps`` in ``[0, 1]``.
        reduction: mean, sum or none.

    Raises:
        ValueError: if ``smoothing`` is outside ``[0, 1]``.
    """

    def __init__(self, smoothing: float = 0.1, reduction: Reduction = Reduction.MEAN) -> None:
        super().__init__()
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"smoothing={smoothing}: must be in [0, 1]")
        self.smoothing = smoothing
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return label_smoothing_cross_entropy(logits, targets, self.smoothing, self.reduction)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, reduction={self.reduction.value}"
