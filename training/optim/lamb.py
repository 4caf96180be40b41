"""LAMB: layer-wise adaptive moments (You et al. 2019, arXiv:1904.00962, Algorithm 2).

Per parameter tensor ``w`` with gradient ``g`` at step ``t``:

1. ``m <- b1 m + (1 - b1) g``;  ``v <- b2 v + (1 - b2) g^2``,
2. bias correction ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)`` (if enabled),
3. ``r = m_hat / (sqrt(v_hat) + eps)``;  ``u = r + lambda w``,
4. ``w <- w - lr * phi(||w||) / ||u|| * u``,

with ``phi`` the identity, or ``min(max(z, lo), hi)`` when ``phi_bounds=(lo, hi)`` is given (the
paper's clamped scaling function). The ratio is 1 when a norm is zero, and for groups with
``lars_exclude=True`` (biases and BN parameters), which then take a plain Adam step with the
group's own (normally zero) weight decay.
"""

from __future__ import annotations

import math

import torch
from torch.optim.optimizer import ParamsT

from training.optim.registry import OptimizerInfo, register_optimizer
from training.optim.stepping import ClosureStep, params_with_grad


class LAMB(ClosureStep):
    """Adam moments with a layer-wise trust ratio.

    Args:
        params: parameters or groups; groups may set ``lars_exclude``.
        lr: learning rate.
        betas: ``(b1, b2)`` moment decay rates.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: decoupled decay ``lambda`` added to the Adam direction.
        bias_correction: divide the moments by ``1 - b^t``.
        phi_bounds: ``(lo, hi)`` clamp of the weight norm; None for the identity.

    Raises:
        ValueError: on out-of-range hyper-parameters.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
        phi_bounds: tuple[float, float] | None = None,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"LAMB lr={lr}, eps={eps}, weight_decay={weight_decay}: must be >= 0")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"LAMB betas={betas}: each must be in [0, 1)")
        if phi_bounds is not None and not 0.0 <= phi_bounds[0] <= phi_bounds[1]:
            raise ValueError(f"LAMB phi_bounds={phi_bounds}: need 0 <= lo <= hi")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "bias_correction": bias_correction,
            "phi_bounds": phi_bounds,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    def update(self) -> None:
        """Apply one LAMB update."""
        for p, grad, group in params_with_grad(self.param_groups):
            beta1, beta2 = group["betas"]
            wd, bounds = group["weight_decay"], group["phi_bounds"]
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            c1, c2 = (1 - beta1**t, 1 - beta2**t) if group["bias_correction"] else (1.0, 1.0)
            update = (m / c1) / ((v / c2).sqrt_().add_(group["eps"]))
            if wd != 0:
                update.add_(p, alpha=wd)
            if group["lars_exclude"]:
                p.sub_(update, alpha=group["lr"])
                continue
            w_norm = torch.linalg.vector_norm(p)
            if bounds is not None:
                w_norm = w_norm.clamp(bounds[0], bounds[1] if math.isfinite(bounds[1]) else None)
            u_norm = torch.linalg.vector_norm(update)
            ok = (w_norm > 0) & (u_norm > 0)
            ratio = torch.where(ok, w_norm / u_norm, torch.ones_like(w_norm))
            p.sub_(update.mul_(ratio * group["lr"]))


LAMB_INFO = register_optimizer(
    OptimizerInfo(
        name="lamb",
        cls=LAMB,
        defaults={
            "lr": 1e-3,
            "betas": (0.9, 0.999),
            "eps": 1e-6,
            "weight_decay": 0.01,
            "bias_correction": True,
            "phi_bounds": None,
        },
        reference="You et al. 2019, arXiv:1904.00962, Algorithm 2",
    )
)
