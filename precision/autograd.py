"""Straight-through quantizers and model-wide precision policies.

A :class:`Quantizer` rounds what flows forward (activations) to one format and what flows
backward (the error, i.e. the gradient of the loss with respect to its output) to another,
as in the low-precision training studies of Gupta et al. (2015) and Wang et al. (2018).
A :class:`PrecisionPolicy` applies such quantizers, plus weight and input rounding, to the
layers of an existing model through hooks and parametrizations, without editing its code::

    policy = PrecisionPolicy(layers=("Conv2d", "Linear"),
                             activation=Cast(FLOAT8_E5M2), error=Cast(FLOAT8_E5M2))
    with apply_policy(model, policy):
        loss = criterion(model(x), y)
        loss.backward()

All rounding goes through :func:`precision.quantize.quantize`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from precision.formats import BlockFormat, FixedFormat, FloatFormat, Format
from precision.quantize import quantize
from precision.rounding import RoundingMode

_FORMAT_TYPES = (FloatFormat, FixedFormat, BlockFormat)

#: A rounding step as the straight-through quantizer calls it: ``(x, generator) -> x'``.
#: :class:`Cast` is the usual one; adapters (e.g. :mod:`precision.compat.qtorch`) add others.
Rounder = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


def _check_format(fmt: object, what: str) -> None:
    if fmt is not None and not isinstance(fmt, _FORMAT_TYPES):
        raise TypeError(
            f"{what}={fmt!r}: expected a FloatFormat, FixedFormat, BlockFormat or None; "
            "parse names with precision.registry.parse first"
        )


@dataclass(frozen=True)
class Cast:
    """One rounding step: a format and a rounding mode.

    Args:
        format: the target format.
        rounding: how to round (stochastic rounding draws from the generator given to
            :meth:`__call__`).

    Raises:
        TypeError: ``format`` is not a format object or ``rounding`` not a RoundingMode.
    """

    format: Format
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN

    def __post_init__(self) -> None:
        _check_format(self.format, "format")
        if not isinstance(self.rounding, RoundingMode):
            raise TypeError(f"rounding={self.rounding!r}: expected a RoundingMode")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Round ``x`` (not differentiable; see :func:`quant_function` for that)."""
        return quantize(x, self.format, self.rounding, generator=generator)

    def to_dict(self) -> dict[str, str]:
        """JSON-able form: ``{"format": name, "rounding": mode}``."""
        return {"format": format_name(self.format), "rounding": self.rounding.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Cast:
        """Inverse of :meth:`to_dict`; the only place strings are parsed here.

        Raises:
            ValueError: unknown format or rounding name.
        """
        from precision.registry import parse

        mode = RoundingMode.parse(data.get("rounding", RoundingMode.NEAREST_EVEN))
        return cls(parse(data["format"]), mode)


def format_name(fmt: Format) -> str:
    """A spelling that :func:`precision.registry.parse` turns back into ``fmt``.

    Raises:
        ValueError: the format has no parseable spelling (an unregistered block format).
    """
    from precision.registry import parse

    candidates = [str(fmt)]
    if isinstance(fmt, FloatFormat):
        candidates.append(fmt.spelling)
    for text in candidates:
        try:
            if parse(text) == fmt:
                return text
        except ValueError:
            continue
    raise ValueError(f"format {fmt}: no spelling parses back to it; register it by name first")


class _Quantize(torch.autograd.Function):
    """Identity in value up to rounding: forward rounds ``x``, backward rounds the gradient.

    The straight-through estimator: the derivative of rounding is taken as 1.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        forward: Rounder | None,
        backward: Rounder | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        ctx.backward_cast = backward
        ctx.generator = generator
        if forward is None:
            return x.clone()
        return forward(x, generator)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:  # type: ignore[override]
        cast: Rounder | None = ctx.backward_cast
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        return (grad if cast is None else cast(grad, ctx.generator)), None, None, None


def quant_function(
    x: torch.Tensor,
    forward: Rounder | None = None,
    backward: Rounder | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round ``x`` with ``forward`` and its incoming gradient with ``backward``.

    Args:
        x: a floating tensor.
        forward: rounding of the value (a :class:`Cast`, or any :data:`Rounder`; None:
            unchanged).
        backward: rounding of the gradient flowing back into ``x`` (None: unchanged).
        generator: source of stochastic-rounding bits for both directions.

    Returns:
        ``x`` itself when both are None, else a new tensor connected to ``x`` by autograd.
    """
    if forward is None and backward is None:
        return x
    out: torch.Tensor = _Quantize.apply(x, forward, backward, generator)
    return out


def quantizer(
    forward: Format | None = None,
    backward: Format | None = None,
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN,
    *,
    backward_rounding: RoundingMode | None = None,
    generator: torch.Generator | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Functional form of :class:`Quantizer`: a function ``x -> rounded x``.

    Args:
        forward: format of the values (None: no rounding).
        backward: format of the gradients (None: no rounding).
        rounding: rounding of the values (and of the gradients unless overridden).
        backward_rounding: rounding of the gradients (None: ``rounding``).
        generator: source of stochastic-rounding bits.

    Raises:
        TypeError: a format is not a format object.
    """
    fwd, bwd = _casts(forward, backward, rounding, backward_rounding)

    def apply(x: torch.Tensor) -> torch.Tensor:
        return quant_function(x, fwd, bwd, generator=generator)

    return apply


def _casts(
    forward: Format | None,
    backward: Format | None,
    rounding: RoundingMode,
    backward_rounding: RoundingMode | None,
) -> tuple[Cast | None, Cast | None]:
    _check_format(forward, "forward")
    _check_format(backward, "backward")
    fwd = None if forward is None else Cast(forward, rounding)
    brnd = rounding if backward_rounding is None else backward_rounding
    bwd = None if backward is None else Cast(backward, brnd)
    return fwd, bwd


class Quantizer(nn.Module):
    """A layer that rounds activations on the way forward and errors on the way back.

    Args:
        forward: format of the activations (None: no rounding).
        backward: format of the errors (None: no rounding).
        rounding: rounding of the activations (and of the errors unless overridden).
        backward_rounding: rounding of the errors (None: ``rounding``).
        generator: source of stochastic-rounding bits.

    Raises:
        TypeError: a format is not a format object.
    """

    def __init__(
        self,
        forward: Format | None = None,
        backward: Format | None = None,
        rounding: RoundingMode = RoundingMode.NEAREST_EVEN,
        *,
        backward_rounding: RoundingMode | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.forward_cast, self.backward_cast = _casts(
            forward, backward, rounding, backward_rounding
        )
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quant_function(x, self.forward_cast, self.backward_cast, generator=self.generator)

    def extra_repr(self) -> str:
        return f"forward={self.forward_cast}, backward={self.backward_cast}"


# ---- model-wide policy ------------------------------------------------------------------
DEFAULT_LAYERS = ("Linear", "Conv1d", "Conv2d", "Conv3d")
_CAST_FIELDS = ("weight", "activation", "error", "input")


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

        def hook(_m: nn.Module, _args: tuple[Any, ...], out: Any) -> Any:
            return _map_tensors(out, lambda t: quant_function(t, act, err, generator=generator))

        handle.hooks.append(module.register_forward_hook(hook))
