"""Model-wide precision policies: rounding applied to an existing model's layers.

A :class:`PrecisionPolicy` applies straight-through quantizers (:mod:`precision.autograd`),
plus weight and input rounding, to the layers of a model through hooks and
parametrizations, without editing its code::

    policy = PrecisionPolicy(layers=("Conv2d", "Linear"),
                             activation=Cast(FLOAT8_E5M2), error=Cast(FLOAT8_E5M2))
    with apply_policy(model, policy):
        loss = criterion(model(x), y)
        loss.backward()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from precision.autograd import Cast, quant_function

DEFAULT_LAYERS = ("Linear", "Conv1d", "Conv2d", "Conv3d")
_CAST_FIELDS = ("weight", "activation", "error", "input")
_FRESH_OUTPUT = (nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)


@dataclass(frozen=True, kw_only=True)
class PrecisionPolicy:
    """Which layers get which rounding, applied by :func:`apply_policy`.

    Args:
        layers: class names matched against each module's class and its bases
            (``"Conv2d"``, ``"BatchNorm2d"``, ``"_BatchNorm"``, or a user class name).
        weight: rounding of the layer's parameters named in ``parameters`` as used in the
            forward pass (straight-through: the float parameter receives the gradient).
        activation: rounding of the layer's floating outputs.
        error: rounding of the gradients of the layer's outputs.
        input: rounding of the layer's floating inputs (forward only).
        parameters: names of the parameters ``weight`` applies to.

    Raises:
        TypeError: a field has the wrong type.
    """

    layers: tuple[str, ...] = DEFAULT_LAYERS
    weight: Cast | None = None
    activation: Cast | None = None
    error: Cast | None = None
    input: Cast | None = None
    parameters: tuple[str, ...] = ("weight",)

    def __post_init__(self) -> None:
        for name in ("layers", "parameters"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{name}={value!r}: expected a tuple of names")
            object.__setattr__(self, name, tuple(value))
        for name in _CAST_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Cast):
                raise TypeError(f"{name}={value!r}: expected a Cast or None")

    def matches(self, module: nn.Module) -> bool:
        """True when ``module``'s class or one of its bases is named in ``layers``."""
        return any(cls.__name__ in self.layers for cls in type(module).__mro__)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (formats by name, rounding modes by value)."""
        out: dict[str, Any] = {"layers": list(self.layers), "parameters": list(self.parameters)}
        for name in _CAST_FIELDS:
            cast: Cast | None = getattr(self, name)
            out[name] = None if cast is None else cast.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrecisionPolicy:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: an unknown key, format or rounding name.
        """
        known = {"layers", "parameters", *_CAST_FIELDS}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"policy keys {sorted(unknown)}: unknown; allowed: {sorted(known)}")
        kw: dict[str, Any] = {}
        for name in ("layers", "parameters"):
            if name in data:
                kw[name] = tuple(data[name])
        for name in _CAST_FIELDS:
            if data.get(name) is not None:
                kw[name] = Cast.from_dict(data[name])
        return cls(**kw)


class _WeightCast(nn.Module):
    """Parametrization: the forward pass sees the rounded parameter (straight-through)."""

    def __init__(self, cast: Cast, generator: torch.Generator | None) -> None:
        super().__init__()
        self.cast = cast
        self.generator = generator

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return quant_function(w, self.cast, None, generator=self.generator)


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every floating tensor in (nested) tuples/lists of outputs."""
    if isinstance(obj, torch.Tensor):
        return fn(obj) if obj.is_floating_point() else obj
    if isinstance(obj, tuple | list):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    return obj


class PolicyHandle:
    """What :func:`apply_policy` installed; :meth:`remove` undoes it (also as a context)."""

    def __init__(self) -> None:
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []
        self.parametrized: list[tuple[nn.Module, str, list[str]]] = []
        self.modules: list[str] = []

    def remove(self) -> None:
        """Remove every hook and parametrization; parameters keep their float values."""
        for h in self.hooks:
            h.remove()
        for module, name, order in reversed(self.parametrized):
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
            # Re-registering moved the parameter to the end; restore the order so that
            # parameters() and state_dict() list it where they did before.
            params = module._parameters
            module._parameters = {k: params[k] for k in order if k in params} | params
        self.hooks.clear()
        self.parametrized.clear()

    def __enter__(self) -> PolicyHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __iter__(self) -> Iterator[str]:
        return iter(self.modules)


def apply_policy(
    model: nn.Module, policy: PrecisionPolicy, *, generator: torch.Generator | None = None
) -> PolicyHandle:
    """Install ``policy`` on every matching submodule of ``model``.

    Weights are rounded through ``torch.nn.utils.parametrize`` (so ``state_dict`` keys
    change while the policy is applied); inputs by a forward pre-hook; activations and
    errors by one straight-through quantizer in a forward hook. Everything works under
    ``torch.compile`` (compile after applying).

    Args:
        model: any module; it is modified in place.
        policy: what to round.
        generator: source of stochastic-rounding bits.

    Returns:
        A handle whose ``remove()`` restores the model; iterating it gives the names of
        the modules it touched.

    Raises:
        ValueError: a parameter the policy rounds is already parametrized.
    """
    handle = PolicyHandle()
    try:
        for name, module in model.named_modules():
            if policy.matches(module):
                _install(module, policy, generator, handle)
                handle.modules.append(name)
    except Exception:
        handle.remove()
        raise
    return handle


def _install(
    module: nn.Module,
    policy: PrecisionPolicy,
    generator: torch.Generator | None,
    handle: PolicyHandle,
) -> None:
    if policy.weight is not None:
        for pname in policy.parameters:
            if getattr(module, pname, None) is None:
                continue
            if parametrize.is_parametrized(module, pname):
                raise ValueError(
                    f"{type(module).__name__}.{pname} is already parametrized; remove that "
                    "parametrization or leave it out of policy.parameters"
                )
            order = list(module._parameters)
            parametrize.register_parametrization(
                module, pname, _WeightCast(policy.weight, generator)
            )
            handle.parametrized.append((module, pname, order))
    if policy.input is not None:
        in_cast = policy.input

        def pre_hook(_m: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return _map_tensors(
                args, lambda t: quant_function(t, in_cast, None, generator=generator)
            )  # type: ignore[no-any-return]

        handle.hooks.append(module.register_forward_pre_hook(pre_hook))
    if policy.activation is not None or policy.error is not None:
        act, err = policy.activation, policy.error

        # Outputs of these layers are fresh tensors their own backward does not read, so
        # they can be rounded in place (no second buffer per activation).
        owns_output = isinstance(module, _FRESH_OUTPUT)

        def hook(_m: nn.Module, _args: tuple[Any, ...], out: Any) -> Any:
            return _map_tensors(
                out,
                lambda t: quant_function(
                    t, act, err, generator=generator,
                    inplace=owns_output and t._base is None and t.is_contiguous(),
                ),
            )  # fmt: skip

        handle.hooks.append(module.register_forward_hook(hook))
