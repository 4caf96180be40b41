"""LARS: layer-wise adaptive rate scaling (You, Gitman, Ginsburg 2017, arXiv:1708.03888).

Algorithm 1 of the paper, per parameter tensor ``w`` with gradient ``g`` at each step:

1. local LR   ``lambda = eta * ||w|| / (||g|| + beta * ||w||)``  (1 when a norm is zero),
2. momentum   ``v <- m * v + gamma * lambda * (g + beta * w)``,
3. update     ``w <- w - v``,

where ``gamma`` is the global learning rate and ``beta`` the weight decay. The learning rate
sits inside the momentum buffer as in the paper. Groups with ``lars_exclude=True`` (biases and
BN parameters, see :func:`training.optim.param_groups`) use ``lambda = 1``, i.e. plain
momentum SGD with the group's own (normally zero) weight decay.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import ParamsT

from training.optim.registry import OptimizerInfo, register_optimizer
from training.optim.stepping import ClosureStep, params_with_grad


class LARS(ClosureStep):
    """Momentum SGD with a layer-wise trust ratio.

    Args:
        params: parameters or groups; groups may set ``lars_exclude``.
        lr: global learning rate ``gamma``.
        momentum: momentum ``m``.
        weight_decay: ``beta`` in the update and in the trust-ratio denominator.
        eta: trust coefficient (0.001 in the paper).
        eps: added to the trust-ratio denominator to guard against division by zero.

    Raises:
        ValueError: on a negative hyper-parameter.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        eps: float = 0.0,
    ) -> None:
        for key, value in (
            ("lr", lr),
            ("momentum", momentum),
            ("weight_decay", weight_decay),
            ("eta", eta),
            ("eps", eps),
        ):
            if value < 0:
                raise ValueError(f"LARS {key}={value}: must be >= 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "eps": eps,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    def update(self) -> None:
        """Apply one LARS update."""
        for p, grad, group in params_with_grad(self.param_groups):
            lr, wd, eta = group["lr"], group["weight_decay"], group["eta"]
            update = grad.add(p, alpha=wd) if wd != 0 else grad.clone()
            if group["lars_exclude"]:
                scale: torch.Tensor | float = lr
            else:
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(grad)
                ratio = eta * w_norm / (g_norm + wd * w_norm + group["eps"])
                # A zero norm (fresh zero-initialized layer, dead gradient) would give 0 or
                # NaN: fall back to the global rate as reference implementations do.
                ok = (w_norm > 0) & (g_norm > 0)
                scale = lr * torch.where(ok, ratio, torch.ones_like(ratio))
            update.mul_(scale)
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = update
            else:
                state["momentum_buffer"].mul_(group["momentum"]).add_(update)
            p.sub_(state["momentum_buffer"])


LARS_INFO = register_optimizer(
    OptimizerInfo(
        name="lars",
        cls=LARS,
        defaults={"lr": 1.0, "momentum": 0.9, "weight_decay": 5e-4, "eta": 0.001, "eps": 0.0},
        reference="You, Gitman, Ginsburg 2017, arXiv:1708.03888, Algorithm 1",
    )
)
