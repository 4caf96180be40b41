"""A wrapper that runs any ``torch.optim`` optimizer in emulated low precision.

Each step:

1. round every gradient with ``grad``;
2. with master weights, point each parameter at its float32 master copy;
3. run the wrapped optimizer's step;
4. with master weights, round the masters with ``master`` (if given);
5. round the optimizer state (momentum, Adam moments: every floating tensor in
   ``optimizer.state`` shaped like its parameter; scalars such as Adam's ``step`` are
   counters and stay exact) with ``state``;
6. round the weights the model holds with ``weight``: from the masters (the
   mixed-precision recipe of Micikevicius et al. 2018) or in place (pure low precision,
   where stochastic rounding keeps small updates from vanishing; Gupta et al. 2015).

Example::

    opt = LowPrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                grad=Cast(BFLOAT16), weight=Cast(BFLOAT16, STOCHASTIC),
                                state=Cast(BFLOAT16), generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from precision.autograd import Cast

TensorCast = Cast | Callable[[torch.Tensor], torch.Tensor]


class LowPrecisionOptimizer(torch.optim.Optimizer):
    """Round gradients before, and weights and optimizer state after, each step.

    Shares ``param_groups`` and ``state`` with the wrapped optimizer, so learning-rate
    schedulers work on either.

    Args:
        optimizer: the optimizer to wrap.
        grad: rounding of the gradients before the step (None: unchanged).
        weight: rounding of the weights the model holds after the step.
        state: rounding of the optimizer state after the step.
        master_weights: keep float32 master copies that the optimizer updates.
        master: rounding of the master copies after the step (needs ``master_weights``).
        generator: source of stochastic-rounding bits (saved in ``state_dict``).

    A cast may also be any function ``tensor -> tensor`` (it then ignores ``generator``).

    Raises:
        ValueError: ``master`` without ``master_weights``.
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        grad: TensorCast | None = None,
        weight: TensorCast | None = None,
        state: TensorCast | None = None,
        master_weights: bool = False,
        master: TensorCast | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if master is not None and not master_weights:
            raise ValueError("master= rounds the master copies: pass master_weights=True too")
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state
        self.grad_cast, self.weight_cast, self.state_cast = grad, weight, state
        self.master_cast = master
        self.generator = generator
        self.masters: dict[torch.Tensor, torch.Tensor] | None = None
        if master_weights:
            self.masters = {
                p: p.detach().to(torch.float32 if p.dtype != torch.float64 else p.dtype).clone()
                for p in self._params()
            }

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _cast(self, cast: TensorCast, x: torch.Tensor) -> torch.Tensor:
        if isinstance(cast, Cast):
            return cast(x, self.generator)
        return cast(x)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One optimizer step with rounding (see the module docstring for the order).

        Args:
            closure: passed to the wrapped optimizer's ``step``.

        Returns:
            Whatever the wrapped optimizer's ``step`` returns (the closure's loss).
        """
        params = self._params()
        if self.grad_cast is not None:
            for p in params:
                if p.grad is not None:
                    p.grad.copy_(self._cast(self.grad_cast, p.grad))
        if self.masters is not None:
            for p in params:
                if p.grad is not None and p.grad.dtype != self.masters[p].dtype:
                    p.grad = p.grad.to(self.masters[p].dtype)
                p.data = self.masters[p]
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        if self.masters is not None:
            for p in params:
                if self.master_cast is not None:
                    self.masters[p].copy_(self._cast(self.master_cast, self.masters[p]))
        if self.state_cast is not None:
            for p in params:
                for value in self.state.get(p, {}).values():
                    if _is_moment(value, p):
                        value.copy_(self._cast(self.state_cast, value))
        for p in params:
            if self.masters is not None:
                w = self.masters[p]
                p.data = w.clone() if self.weight_cast is None else self._cast(self.weight_cast, w)
            elif self.weight_cast is not None:
                p.copy_(self._cast(self.weight_cast, p))
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state plus master copies and the generator state."""
        params = self._params()
        return {
            "optimizer": self.optimizer.state_dict(),
            "masters": None if self.masters is None else [self.masters[p].clone() for p in params],
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved.

        Raises:
            ValueError: master copies are saved but this wrapper keeps none, or vice versa.
        """
        saved = state_dict.get("masters")
        if (saved is None) != (self.masters is None):
            raise ValueError(
                "state_dict and this optimizer disagree on master weights "
                f"(saved: {saved is not None}, here: {self.masters is not None})"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        # torch's load_state_dict builds new param_groups: share them again, or learning-rate
        # changes made through this wrapper would no longer reach the wrapped optimizer.
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        if saved is not None and self.masters is not None:
            for p, m in zip(self._params(), saved, strict=True):
                self.masters[p].copy_(m)
        if state_dict.get("generator") is not None and self.generator is not None:
            self.generator.set_state(state_dict["generator"])

    def __repr__(self) -> str:
        return (
            f"LowPrecisionOptimizer({type(self.optimizer).__name__}, grad={self.grad_cast}, "
            f"weight={self.weight_cast}, state={self.state_cast}, "
            f"master_weights={self.masters is not None})"
        )


def _is_moment(value: object, p: torch.Tensor) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and value.shape == p.shape
        and value.dim() > 0
    )
