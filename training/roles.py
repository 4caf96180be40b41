"""The tensors of training whose format a study can change, and how each is applied.

Five roles (the split of the customized-precision studies, e.g. arXiv:1812.08011):

* ``grad-comm``: the gradients all-reduced between workers (``ArmSpec.fmt`` and
  ``ArmSpec.aps``, applied by :func:`precision.collectives.all_reduce_gradients`);
* ``activation``: outputs of the Linear/Conv layers in the forward pass;
* ``error``: the backward signals, i.e. gradients of the loss with respect to those outputs;
* ``weight``: the weights the model stores, rounded at initialization and after every
  update with no float32 master copy (pure low-precision storage, Gupta et al.
  arXiv:1502.02551, where stochastic rounding keeps small updates from vanishing);
* ``optimizer-state``: momentum and moment buffers, rounded after every step.

Activation, error and weight rounding go through :mod:`precision.policy` and
:class:`precision.optim.LowPrecisionOptimizer`, so every bit is rounded by
:func:`precision.quantize.quantize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

from precision.autograd import Cast
from precision.formats import FloatFormat
from precision.optim import LowPrecisionOptimizer
from precision.policy import PolicyHandle, PrecisionPolicy, apply_policy
from precision.registry import parse as parse_format
from precision.rounding import RoundingMode


class Role(str, Enum):
    """A tensor role of data-parallel training."""

    GRAD_COMM = "grad-comm"
    ACTIVATION = "activation"
    ERROR = "error"
    WEIGHT = "weight"
    OPTIMIZER_STATE = "optimizer-state"

    @classmethod
    def parse(cls, text: str | Role) -> Role:
        """A role from its name.

        Raises:
            ValueError: if ``text`` names no role (the message lists them).
        """
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise ValueError(f"role {text!r}: unknown; choose from {allowed}") from None


@dataclass(frozen=True, kw_only=True)
class RoleCast:
    """One role other than ``grad-comm`` held in a low-precision float format.

    Attributes:
        role: activation, error, weight or optimizer-state.
        fmt: spelling of a float format (``precision.registry.parse`` accepts it).
        rounding: how values are rounded to it.

    Raises:
        ValueError: ``grad-comm`` (set through the arm's ``fmt``/``aps``) or a non-float format.
    """

    role: Role
    fmt: str
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role.parse(self.role))
        object.__setattr__(self, "rounding", RoundingMode.parse(self.rounding))
        if self.role is Role.GRAD_COMM:
            raise ValueError("grad-comm is the arm's fmt and aps, not a cast")
        if not isinstance(parse_format(self.fmt), FloatFormat):
            raise ValueError(f"{self.role.value} format {self.fmt!r}: needs a float format")

    @property
    def cast(self) -> Cast:
        """The rounding step."""
        return Cast(parse_format(self.fmt), self.rounding)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (enums as their values)."""
        return {"role": self.role.value, "fmt": self.fmt, "rounding": self.rounding.value}

    @classmethod
    def coerce(cls, value: RoleCast | dict[str, Any]) -> RoleCast:
        """A cast from itself or from :meth:`to_dict`'s output."""
        return value if isinstance(value, RoleCast) else cls(**value)


def _seed(*parts: int) -> int:
    # Distinct, reproducible streams per (arm seed, rank, epoch): no state to checkpoint.
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h * 0x100000001B3 ^ (p & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


class RoleCasts:
    """The casts of one arm installed on a model and its optimizer.

    Args:
        casts: the arm's casts (at most one per role).
        seed: the arm's seed.
        rank: this worker's rank (forward/backward rounding draws differ per rank; weight
            and state rounding draw the same bits on every rank so the replicas agree).
    """

    def __init__(self, casts: tuple[RoleCast, ...], *, seed: int, rank: int) -> None:
        self.by_role = {c.role: c.cast for c in casts}
        self.seed, self.rank = seed, rank
        self.local = torch.Generator().manual_seed(_seed(seed, rank, 0))
        self.shared = torch.Generator().manual_seed(_seed(seed, 0x5EED))
        self.handle: PolicyHandle | None = None

    def install(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> torch.optim.Optimizer:
        """Round activations/errors by hooks and weights/state by wrapping the optimizer.

        Returns:
            The optimizer to step (``optimizer`` itself when no weight or state is cast).
        """
        act, err = self.by_role.get(Role.ACTIVATION), self.by_role.get(Role.ERROR)
        if act is not None or err is not None:
            policy = PrecisionPolicy(activation=act, error=err)
            self.handle = apply_policy(model, policy, generator=self.local)
        weight, state = self.by_role.get(Role.WEIGHT), self.by_role.get(Role.OPTIMIZER_STATE)
        if weight is None and state is None:
            return optimizer
        if weight is not None:  # the model holds its weights in the format from the start
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(weight(p, self.shared))
        return LowPrecisionOptimizer(optimizer, weight=weight, state=state, generator=self.shared)

    def start_epoch(self, epoch: int) -> None:
        """Reseed the per-rank stream so a resumed epoch draws the same bits."""
        self.local.manual_seed(_seed(self.seed, self.rank, epoch + 1))

    @property
    def method(self) -> str:
        """How the casts round, for records (empty when there are none)."""
        return ", ".join(
            f"{r.value} {c.format} {c.rounding.value}" for r, c in self.by_role.items()
        )
