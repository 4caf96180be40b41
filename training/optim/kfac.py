"""K-FAC natural-gradient descent in the SP-NGD style (Osawa et al., arXiv:1811.12019, 2002.06015).

For every Linear and Conv2d weight ``W`` (gradient ``V``, shape ``out x fan_in``) at step ``k``:

1. every ``factor_interval`` steps (by default every ``update_interval`` steps: SP-NGD refreshes
   statistics and inverses together and keeps both stale in between): the batch factors ``A_b, G_b``
   (:mod:`training.optim.kronecker`) collected by hooks during forward and backward, averaged
   over the workers (all-reduce; in an emulated format through
   :func:`precision.collectives.reduce_flat` when ``stats_format`` is set), then
   ``A <- d A + (1 - d) A_b`` and the same for ``G`` (``d = factor_decay``; the first batch
   initializes them),
2. every ``update_interval`` steps: ``pi = sqrt((tr A/dim A) / (tr G/dim G))`` and the damped
   inverses ``(A + pi sqrt(l) I)^-1``, ``(G + sqrt(l)/pi I)^-1`` (``l = damping``; ``pi = 1``
   without ``pi_damping``); they stay fixed (stale) in between, SP-NGD's practical trick,
3. preconditioned gradient ``U = G^-1 V A^-1`` (reshaped back for a convolution),
4. ``u = U + wd W``, momentum ``v <- m v + u``, ``W <- W - lr v`` (torch SGD's rule).

Biases, BatchNorm parameters and any parameter outside a supported layer take step 4 with
``U = V``: plain momentum SGD with their group's weight decay (normally 0, see
:func:`training.optim.param_groups`). The factors, inverses and counters are optimizer state,
so a checkpoint resumes bit-exactly. Stochastic rounding of the statistics is keyed by the
optimizer's own counter (saved too).

Example::

    opt = KFAC(param_groups(model, 5e-4), lr=0.05, model=model, update_interval=10)
    loss.backward(); opt.step()   # the forward and backward of this step fed the hooks
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.optimizer import ParamsT
from torch.utils.hooks import RemovableHandle

from precision.collectives import LowPrecisionState, reduce_flat
from precision.formats import Format
from precision.rounding import RoundingMode
from training.optim import kronecker as kr
from training.optim.registry import OptimizerInfo, register_optimizer
from training.optim.stepping import ClosureStep, params_with_grad


class KFAC(ClosureStep):
    """Kronecker-factored natural-gradient descent with momentum.

    Args:
        params: parameters or groups (each group's ``weight_decay`` applies).
        lr: learning rate.
        momentum: momentum of the (preconditioned) update.
        weight_decay: L2 decay added after preconditioning.
        damping: Tikhonov damping ``l`` of the Fisher.
        pi_damping: split the damping between the factors by ``pi`` (else ``sqrt(l)`` each).
        factor_decay: running-average decay ``d`` of the factors.
        factor_interval: collect and average the factors every this many steps (None: every
            ``update_interval`` steps). Collecting costs more than the inversion for
            convolutions with many input channels: im2col makes ``A`` a product of
            ``(N*T) x (C*k*k)`` rows, several times the layer's own forward cost.
        update_interval: recompute the inverses every this many steps.
        stats_format: average the factors over the workers in this emulated format (None:
            float32 all-reduce).
        stats_rounding: rounding of that reduction.
        kl_clip: bound on the step's predicted change of the model's output distribution
            (KL clipping, Ba, Grosse and Martens 2017): the preconditioned updates are scaled
            by ``min(1, sqrt(kl_clip / sum(lr**2 * u.g)))``. Without it a small damping lets
            the natural-gradient step grow without limit where the factors are nearly
            singular (an MLP on an easy task diverges within a few steps). None: off.
        model: the module whose Linear/Conv2d layers are preconditioned (hooks are added).

    Raises:
        ValueError: on out-of-range settings or a missing model.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        damping: float = 1e-3,
        pi_damping: bool = True,
        factor_decay: float = 0.95,
        factor_interval: int | None = None,
        update_interval: int = 10,
        stats_format: Format | None = None,
        stats_rounding: RoundingMode = RoundingMode.NEAREST_EVEN,
        kl_clip: float | None = 1e-3,
        model: nn.Module | None = None,
    ) -> None:
        if model is None:
            raise ValueError("KFAC needs model=: its Linear and Conv2d layers get the factors")
        if lr < 0 or momentum < 0 or weight_decay < 0 or damping < 0:
            raise ValueError(
                f"KFAC lr={lr}, momentum={momentum}, weight_decay={weight_decay}, "
                f"damping={damping}: must be >= 0"
            )
        if not 0.0 <= factor_decay < 1.0:
            raise ValueError(f"KFAC factor_decay={factor_decay}: must be in [0, 1)")
        if factor_interval is None:
            factor_interval = update_interval
        if factor_interval < 1 or update_interval < 1:
            raise ValueError(
                f"KFAC factor_interval={factor_interval}, update_interval={update_interval}: "
                "must be >= 1"
            )
        if kl_clip is not None and not kl_clip > 0:
            raise ValueError(f"KFAC kl_clip={kl_clip}: must be > 0, or None for no clipping")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.kl_clip = None if kl_clip is None else float(kl_clip)
        self.damping = float(damping)
        self.pi_damping = bool(pi_damping)
        self.factor_decay = float(factor_decay)
        self.factor_interval = int(factor_interval)
        self.update_interval = int(update_interval)
        self._stats_state = (
            None
            if stats_format is None
            else LowPrecisionState(fmt=stats_format, rounding=stats_rounding, aps=True)
        )
        self.steps = 0
        owned = {id(p) for g in self.param_groups for p in g["params"]}
        #: The preconditioned layers and their weights.
        self.layers: dict[nn.Module, torch.Tensor] = {
            m: cast(torch.Tensor, m.weight)
            for m in model.modules()
            if kr.supported(m) and m.weight.requires_grad and id(m.weight) in owned
        }
        self._batch: dict[nn.Module, dict[str, torch.Tensor]] = {}
        self._handles: list[RemovableHandle] = [
            m.register_forward_hook(self._forward_hook) for m in self.layers
        ]

    # -- statistics
    def _collecting(self, module: nn.Module) -> bool:
        return (
            module.training and torch.is_grad_enabled() and self.steps % self.factor_interval == 0
        )

    def _forward_hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if not self._collecting(module) or not output.requires_grad:
            return
        x = inputs[0].detach()
        batch = x.shape[0]
        self._batch[module] = {"A": kr.factor_a(kr.input_rows(module, x))}

        def grad_hook(g: torch.Tensor) -> None:
            self._batch[module]["G"] = kr.factor_g(kr.output_rows(module, g.detach()), batch)

        output.register_hook(grad_hook)

    def remove_hooks(self) -> None:
        """Detach the forward hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def _average_factors(self, batch: list[tuple[nn.Module, dict[str, torch.Tensor]]]) -> None:
        """Average the batch factors over the workers in place (steps 1's all-reduce)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        tensors = [f[k] for _, f in batch for k in ("A", "G")]
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        if self._stats_state is None:
            dist.all_reduce(flat)
            out = flat.div_(dist.get_world_size())
        else:
            out, _ = reduce_flat(flat, [t.numel() for t in tensors], self._stats_state)
            self._stats_state.step += 1
        offset = 0
        for t in tensors:
            t.copy_(out[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def _update_factors(self) -> None:
        batch = [(m, self._batch[m]) for m in self.layers if "G" in self._batch.get(m, {})]
        self._batch = {}
        self._average_factors(batch)
        d = self.factor_decay
        for module, fac in batch:
            state = self.state[self.layers[module]]
            for key in ("A", "G"):
                if key in state:
                    state[key].mul_(d).add_(fac[key], alpha=1.0 - d)
                else:
                    state[key] = fac[key].clone()

    def _update_inverses(self) -> None:
        root = self.damping**0.5
        for module in self.layers:
            state = self.state[self.layers[module]]
            if "A" not in state:
                continue
            pi = kr.pi_factor(state["A"], state["G"]) if self.pi_damping else 1.0
            state["A_inv"] = kr.damped_inverse(state["A"], pi * root)
            state["G_inv"] = kr.damped_inverse(state["G"], root / pi)

    def _preconditioned(self, p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "A_inv" not in state:
            return grad
        v = grad.reshape(grad.shape[0], -1)
        return (state["G_inv"] @ v @ state["A_inv"]).view_as(grad)

    # -- the step
    def update(self) -> None:
        """Update the factors (and inverses when due), then take the preconditioned step."""
        if self.steps % self.factor_interval == 0:
            self._update_factors()
        if self.steps % self.update_interval == 0:
            self._update_inverses()
        weights = {id(w) for w in self.layers.values()}
        pre: dict[int, torch.Tensor] = {}
        dots, lr2 = [], []  # u.g and lr**2 per preconditioned weight (KL clipping)
        for p, grad, group in params_with_grad(self.param_groups):
            if id(p) in weights:
                pre[id(p)] = u = self._preconditioned(p, grad)
                dots.append((u * grad).sum())
                lr2.append(group["lr"] ** 2)
        nu = 1.0
        vg = 0.0
        if dots and self.kl_clip is not None:  # one device synchronization for all layers
            vg = sum(a * d for a, d in zip(lr2, torch.stack(dots).tolist(), strict=True))
        if self.kl_clip is not None and vg > 0 and math.isfinite(vg):
            nu = min(1.0, math.sqrt(self.kl_clip / vg))
        for p, grad, group in params_with_grad(self.param_groups):
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            u = pre[id(p)].mul_(nu) if id(p) in pre else grad.clone()
            if wd != 0:
                u.add_(p, alpha=wd)
            state = self.state[p]
            if m != 0:
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = u
                else:
                    state["momentum_buffer"].mul_(m).add_(u)
                u = state["momentum_buffer"]
            p.sub_(u, alpha=lr)
        self.steps += 1

    # -- checkpoints: the counters travel with the per-parameter state
    def state_dict(self) -> dict[str, Any]:
        """Torch's optimizer state plus the step counters (``kfac`` entry)."""
        out = super().state_dict()
        stats_step = 0 if self._stats_state is None else self._stats_state.step
        out["kfac"] = {"steps": self.steps, "stats_step": stats_step}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        state_dict = dict(state_dict)
        counters = state_dict.pop("kfac", {"steps": 0, "stats_step": 0})
        super().load_state_dict(state_dict)
        self.steps = int(counters["steps"])
        if self._stats_state is not None:
            self._stats_state.step = int(counters["stats_step"])


KFAC_INFO = register_optimizer(
    OptimizerInfo(
        name="kfac",
        cls=KFAC,
        defaults={"lr": 0.05, "momentum": 0.9, "damping": 1e-3, "update_interval": 10},
        reference="Osawa et al. 2019/2020, arXiv:1811.12019 and 2002.06015 (SP-NGD); "
        "Martens and Grosse 2015, arXiv:1503.05671",
        needs_model=True,
    )
)
