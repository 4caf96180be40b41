"""What the step of every optimizer here shares: torch.optim's closure contract.

Each optimizer implements :meth:`ClosureStep.update` (one update of the parameters that hold
a gradient, under ``torch.no_grad``); :meth:`ClosureStep.step` evaluates the optional closure
first, as ``torch.optim.Optimizer.step`` documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

Closure = Callable[[], float]


class ClosureStep(torch.optim.Optimizer):
    """Base class: ``step(closure)`` runs the closure with gradients on, then ``update()``."""

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> float | None:  # type: ignore[override]
        """Evaluate ``closure`` (if given), then apply one update.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update()
        return loss

    def update(self) -> None:
        """Apply one update to the parameters (called under ``torch.no_grad``).

        Raises:
            NotImplementedError: in this base class.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement update()")


def params_with_grad(
    groups: Iterable[dict[str, Any]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """``(parameter, its gradient, its group)`` for every parameter holding a gradient, in
    group order."""
    for group in groups:
        for p in group["params"]:
            if p.grad is not None:
                yield p, p.grad, group
