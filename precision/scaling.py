"""Loss scaling for emulated formats: the static and dynamic baselines APS is compared with.

The loss is multiplied by ``scale`` before ``backward()``, so small gradients land in the
emulated format's range instead of underflowing. :meth:`LossScaler.unscale_` then rounds
every (scaled) gradient to the emulated format, which is where overflow shows: as inf or
NaN with an IEEE format, as saturation (values at the largest finite number) with a
saturating one. A step with overflow is skipped; the dynamic scaler then backs off and
grows again after ``growth_interval`` good steps, like ``torch.amp.GradScaler``
(Micikevicius et al. 2018)::

    scaler = LossScaler.dynamic(grad=Cast(FLOAT16))
    scaler.scale(loss).backward()
    stepped = scaler.step(optimizer)   # unscale_ (round, check, divide), then step or skip
    scaler.update()
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from precision.autograd import Cast
from precision.formats import FloatFormat
from precision.rounding import Overflow


@dataclass
class _StepState:
    unscaled: bool = False
    found_overflow: bool = False


class LossScaler:
    """Static or dynamic loss scaling with gradients rounded to an emulated format.

    Args:
        init_scale: the initial scale (a power of two keeps unscaling exact).
        growth_factor: multiply the scale by this after ``growth_interval`` good steps
            (1 for a static scale).
        backoff_factor: multiply the scale by this after an overflow (1: static).
        growth_interval: good steps before growing.
        grad: rounding of the scaled gradients (None: they are only checked for inf/NaN).
        saturation_is_overflow: with a saturating format, count gradients at the largest
            finite value as overflow.
        generator: source of stochastic-rounding bits.

    Raises:
        ValueError: a factor or the scale is out of range.
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        *,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        grad: Cast | None = None,
        saturation_is_overflow: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        if not (init_scale > 0 and math.isfinite(init_scale)):
            raise ValueError(f"init_scale={init_scale}: must be positive and finite")
        if growth_factor < 1 or not 0 < backoff_factor <= 1:
            raise ValueError(
                f"growth_factor={growth_factor}, backoff_factor={backoff_factor}: need "
                "growth_factor >= 1 and 0 < backoff_factor <= 1"
            )
        if growth_interval < 1:
            raise ValueError(f"growth_interval={growth_interval}: must be at least 1")
        self.scale_value = float(init_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.grad = grad
        self.saturation_is_overflow = saturation_is_overflow
        self.generator = generator
        self.good_steps = 0
        self._step = _StepState()

    @classmethod
    def static(cls, scale: float, *, grad: Cast | None = None, **kw: Any) -> LossScaler:
        """A fixed scale; overflowing steps are still skipped."""
        return cls(scale, growth_factor=1.0, backoff_factor=1.0, grad=grad, **kw)

    @classmethod
    def dynamic(
        cls, init_scale: float = 2.0**16, *, grad: Cast | None = None, **kw: Any
    ) -> LossScaler:
        """GradScaler's defaults: x2 every 2000 good steps, x0.5 on overflow."""
        return cls(init_scale, grad=grad, **kw)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss * scale`` (call ``backward()`` on the result)."""
        return loss * self.scale_value

    def _overflowed(self, g: torch.Tensor) -> bool:
        if not bool(torch.isfinite(g).all()):
            return True
        fmt = None if self.grad is None else self.grad.format
        if (
            self.saturation_is_overflow
            and isinstance(fmt, FloatFormat)
            and fmt.overflow is not Overflow.INF
        ):
            return bool((g.abs() >= fmt.max_finite).any())
        return False

    @torch.no_grad()
    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Round the scaled gradients to the emulated format, check them, divide by the scale.

        Args:
            optimizer: whose parameters' gradients to process (once per step).

        Returns:
            True when a gradient overflowed (the step will be skipped).

        Raises:
            RuntimeError: called twice before :meth:`update`.
        """
        if self._step.unscaled:
            raise RuntimeError("unscale_() was already called since the last update()")
        overflow = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if self.grad is None else self.grad(p.grad, self.generator)
                overflow = overflow or self._overflowed(g)
                p.grad.copy_(g / self.scale_value)
        self._step = _StepState(unscaled=True, found_overflow=overflow)
        return overflow

    def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> bool:
        """Unscale (unless done), then step unless a gradient overflowed.

        Returns:
            True when the optimizer stepped.
        """
        if not self._step.unscaled:
            self.unscale_(optimizer)
        if self._step.found_overflow:
            return False
        optimizer.step(*args, **kwargs)
        return True

    def update(self) -> None:
        """Adjust the scale after a step: back off on overflow, grow after a good streak."""
        if self._step.found_overflow:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
        elif self._step.unscaled:
            self.good_steps += 1
            if self.good_steps >= self.growth_interval:
                self.scale_value *= self.growth_factor
                self.good_steps = 0
        self._step = _StepState()

    def get_scale(self) -> float:
        return self.scale_value

    def state_dict(self) -> dict[str, float | int]:
        return {"scale": self.scale_value, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.scale_value = float(state["scale"])
        self.good_steps = int(state["good_steps"])
