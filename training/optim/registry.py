"""Registry of optimizers: frozen records naming a class, its preset hyper-parameters and paper.

Variants (Nesterov SGD, LAMB with clamped norms, ...) are presets -- another record pointing
at the same class with other defaults -- never copied classes. Later optimizers (K-FAC,
nonlinear CG) plug in with :func:`register_optimizer`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from precision.common.registry import Registry


@dataclass(frozen=True, kw_only=True)
class OptimizerInfo:
    """An optimizer preset.

    Attributes:
        name: registry name (lower case).
        cls: the ``torch.optim.Optimizer`` subclass.
        defaults: keyword arguments passed to ``cls`` unless overridden (read-only copy).
        reference: paper (and section) the update rule follows.
        needs_model: the class takes ``model=`` (it hooks the layers, e.g. K-FAC);
            :func:`build_optimizer` passes it.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    reference: str = ""
    needs_model: bool = False

    def __post_init__(self) -> None:
        accepted = _accepted_kwargs(self.cls)
        unknown = sorted(set(self.defaults) - accepted)
        if unknown:
            raise ValueError(
                f"optimizer {self.name!r}: {self.cls.__name__} takes no {', '.join(unknown)}"
            )
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


def _accepted_kwargs(cls: type[torch.optim.Optimizer]) -> set[str]:
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = inspect.signature(cls.__init__).parameters
    skip = ("self", "params", "model")
    return {n for n, p in signature.items() if p.kind in kinds and n not in skip}


OPTIMIZERS: Registry[OptimizerInfo] = Registry("optimizer", lower_case=True)


register_optimizer = OPTIMIZERS.register
"""Add an optimizer preset to the registry; returns it (DuplicateNameError if taken)."""
get_optimizer_info = OPTIMIZERS.get
"""The preset called ``name`` (UnknownNameError if none)."""


def build_optimizer(
    name: str, params: ParamsT, *, model: torch.nn.Module | None = None, **overrides: Any
) -> torch.optim.Optimizer:
    """Instantiate a registered optimizer.

    Args:
        name: registry name, e.g. ``lars``.
        params: parameters or parameter groups, typically from :func:`param_groups`; a
            group's own ``weight_decay`` wins over the preset's.
        model: the module being trained; passed to optimizers that hook its layers
            (``needs_model``), ignored by the others.
        **overrides: hyper-parameters replacing the preset's defaults (e.g. ``lr``).

    Returns:
        The optimizer.

    Raises:
        UnknownNameError: if ``name`` is not registered.
        ValueError: if an override is not a parameter of the optimizer class, or the
            optimizer needs a model and none was given.
    """
    info = OPTIMIZERS.get(name)
    unknown = sorted(set(overrides) - _accepted_kwargs(info.cls))
    if unknown:
        raise ValueError(f"optimizer {name!r} ({info.cls.__name__}) takes no {', '.join(unknown)}")
    kwargs = {**info.defaults, **overrides}
    if info.needs_model:
        if model is None:
            raise ValueError(f"optimizer {name!r} hooks the model's layers: pass model=")
        kwargs["model"] = model
    return info.cls(params, **kwargs)
