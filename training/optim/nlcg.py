"""Stochastic preconditioned nonlinear conjugate gradients (Adya et al. 2018, arXiv:1812.02886).

At step ``k``, over all parameters together (one ``beta`` for the whole model), with the
gradient ``g_k`` (plus ``weight_decay * w`` for decayed groups):

1. second moments ``v <- b2 v + (1 - b2) g_k^2``; preconditioner ``P = 1 / (sqrt(v_hat) + eps)``
   with ``v_hat = v / (1 - b2^k)`` (``P = I`` when ``precondition=False``),
2. preconditioned gradient ``s_k = P g_k``,
3. ``beta_k`` by the chosen rule (:class:`BetaRule`), with ``y = g_k - g_{k-1}``:

   * Fletcher-Reeves   ``beta = g_k.s_k / g_{k-1}.s_{k-1}``,
   * Polak-Ribiere     ``beta = g_k.(s_k - s_{k-1}) / g_{k-1}.s_{k-1}`` (``pr+``: ``max(beta, 0)``),
   * Hestenes-Stiefel  ``beta = g_k.(s_k - s_{k-1}) / d_{k-1}.y`` (with ``d`` the direction),

4. restart (``beta = 0``) on the first step, every ``restart_every`` steps, when
   ``restart_on_negative`` and ``beta < 0``, or when a denominator is zero; then clamp
   ``beta`` to at most ``beta_max``,
5. direction ``d_k = -s_k + beta_k d_{k-1}``;  update ``w <- w + lr * d_k``.

The step is momentum free; the learning rate (and so any LR schedule and warmup) scales the
direction, as a fixed step replaces the line search in the stochastic setting. Without a line
search nothing keeps ``beta`` below 1: noisy gradients that grow from one step to the next give
``beta > 1`` several steps running and the direction grows geometrically (seen on the synthetic
set at lr 0.005: beta 2.2 for five steps, then divergence). ``beta_max`` (default 1) bounds it
as a momentum coefficient is bounded; ``None`` gives the unclamped textbook rules. The direction
is kept in units of ``s`` (not of ``lr * s``) so a changing learning rate rescales the whole
step rather than only its newest term. Groups with ``weight_decay=0`` (biases and BN
parameters from :func:`training.optim.param_groups`) take part in the direction but are not
decayed. All state is per parameter (in ``state_dict``: second moments, direction, ``s_{k-1}`` and
the per-tensor ``g.s`` and ``d.g`` of the last step), so a checkpoint resumes bit-exactly.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from training.optim.registry import OptimizerInfo, register_optimizer
from training.optim.stepping import ClosureStep, params_with_grad


class BetaRule(str, Enum):
    """How the conjugacy coefficient ``beta`` is computed."""

    FR = "fr"  # Fletcher-Reeves 1964
    PR = "pr"  # Polak-Ribiere 1969
    PR_PLUS = "pr+"  # Polak-Ribiere clamped at zero (Powell 1986)
    HS = "hs"  # Hestenes-Stiefel 1952


class NLCG(ClosureStep):
    """Nonlinear conjugate gradients with a diagonal second-moment preconditioner.

    Args:
        params: parameters or groups.
        lr: step size along the direction.
        beta_rule: ``fr``, ``pr``, ``pr+`` or ``hs`` (:class:`BetaRule`).
        restart_every: restart the direction every this many steps (0: never).
        restart_on_negative: restart when ``beta < 0``.
        beta_max: upper clamp of ``beta`` (None: no clamp).
        precondition: use the diagonal preconditioner (False: ``P = I``).
        beta2: decay of the running second moments.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: L2 decay added to the gradient (groups may override, e.g. with 0).

    Raises:
        ValueError: on an unknown rule or an out-of-range hyper-parameter.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.01,
        beta_rule: str = "pr+",
        restart_every: int = 0,
        restart_on_negative: bool = True,
        beta_max: float | None = 1.0,
        precondition: bool = True,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        try:
            rule = BetaRule(beta_rule)
        except ValueError:
            choices = ", ".join(r.value for r in BetaRule)
            raise ValueError(f"NLCG beta_rule={beta_rule!r}: choose from {choices}") from None
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"NLCG lr={lr}, eps={eps}, weight_decay={weight_decay}: must be >= 0")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"NLCG beta2={beta2}: must be in [0, 1)")
        if beta_max is not None and not beta_max >= 0:
            raise ValueError(f"NLCG beta_max={beta_max}: must be >= 0 or None")
        if restart_every < 0:
            raise ValueError(f"NLCG restart_every={restart_every}: must be >= 0 (0: never)")
        self.beta_rule = rule
        self.restart_every = int(restart_every)
        self.restart_on_negative = bool(restart_on_negative)
        self.beta_max = None if beta_max is None else float(beta_max)
        self.precondition = bool(precondition)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        #: The last step's ``beta`` (0.0 after a restart), for telemetry and tests.
        self.last_beta = 0.0
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    def update(self) -> None:
        """Apply one NLCG update."""
        items = list(params_with_grad(self.param_groups))
        if not items:
            return
        grads: list[torch.Tensor] = []
        precs: list[torch.Tensor] = []
        for p, grad, group in items:
            state = self.state[p]
            g = grad if group["weight_decay"] == 0 else grad.add(p, alpha=group["weight_decay"])
            if not state:
                state["step"] = torch.zeros((), dtype=torch.int64)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            grads.append(g)
            precs.append(self._precondition(g, grad, state))
        k = int(self.state[items[0][0]]["step"])
        prev = [self.state[p] for p, _, _ in items]
        gs = _dots(grads, precs)
        beta = self._beta(k, prev, grads, gs)
        self.last_beta = beta
        hs = self.beta_rule is BetaRule.HS
        for (p, _, group), g, s, gs_i in zip(items, grads, precs, gs, strict=True):
            state = self.state[p]
            d = s.neg() if beta == 0.0 else state["direction"].mul_(beta).sub_(s)
            state["direction"], state["prev_precond"], state["gs"] = d, s, gs_i
            if hs:  # d_k.g_k, the part of HS's next denominator known now
                state["dg"] = _dots([d], [g])[0]
            p.add_(d, alpha=group["lr"])

    def _precondition(
        self, g: torch.Tensor, grad: torch.Tensor, state: dict[str, Any]
    ) -> torch.Tensor:
        v = state["exp_avg_sq"]
        v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        if not self.precondition:  # kept as s_{k-1}: must not alias the gradient buffer
            return g.clone() if g is grad else g
        correction = 1.0 - self.beta2 ** int(state["step"])
        denom = v.sqrt().div_(math.sqrt(correction)).add_(self.eps)
        return torch.div(g, denom, out=denom)

    def _beta(
        self,
        k: int,
        prev: list[dict[str, Any]],
        grads: list[torch.Tensor],
        gs: list[torch.Tensor],
    ) -> float:
        """The conjugacy coefficient of step ``k`` (1-based); 0.0 means restart.

        Only inner products are formed, each tensor's in its dtype and summed in float64;
        the previous step's ``g.s`` and (HS) ``d.g`` come from the state, so no previous
        gradient is kept: ``g.(s_k - s_{k-1}) = g.s_k - g.s_{k-1}`` and
        ``d_{k-1}.y = d_{k-1}.g_k - d_{k-1}.g_{k-1}``.
        """
        first = any("direction" not in st for st in prev)
        if first or (self.restart_every and (k - 1) % self.restart_every == 0):
            return 0.0
        gs_now = _total(gs)
        gs_prev = _total([st["gs"] for st in prev])
        if self.beta_rule is BetaRule.FR:
            num, den = gs_now, gs_prev
        else:
            num = gs_now - _total(_dots(grads, [st["prev_precond"] for st in prev]))
            if self.beta_rule is BetaRule.HS:
                dg = _total(_dots([st["direction"] for st in prev], grads))
                den = dg - _total([st["dg"] for st in prev])
            else:
                den = gs_prev
        if den == 0.0 or not math.isfinite(num / den):
            return 0.0
        beta = num / den
        if beta < 0.0 and (self.restart_on_negative or self.beta_rule is BetaRule.PR_PLUS):
            return 0.0
        return beta if self.beta_max is None else min(beta, self.beta_max)


def _dots(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-tensor inner products (0-d float64 tensors)."""
    return [torch.dot(x.reshape(-1), y.reshape(-1)).double() for x, y in zip(xs, ys, strict=True)]


def _total(parts: list[torch.Tensor]) -> float:
    """Sum of per-tensor inner products, in float64, with one synchronization."""
    return float(torch.stack(parts).sum())


NLCG_INFO = register_optimizer(
    OptimizerInfo(
        name="nlcg",
        cls=NLCG,
        defaults={"lr": 0.01, "beta_rule": "pr+", "restart_every": 0, "weight_decay": 0.0},
        reference="Adya et al. 2018, arXiv:1812.02886 (preconditioned nonlinear CG)",
    )
)
