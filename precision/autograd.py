"""Straight-through quantizers and model-wide precision policies.

A :class:`Quantizer` rounds what flows forward (activations) to one format and what flows
backward (the error, i.e. the gradient of the loss with respect to its output) to another,
as in the low-precision training studies of Gupta et al. (2015) and Wang et al. (2018).
A :class:`~precision.policy.PrecisionPolicy` (in :mod:`precision.policy`, which builds on
this module; both are exported by :mod:`precision`) applies such quantizers, plus weight and
input rounding, to the layers of an existing model through hooks and parametrizations,
without editing its code::

    policy = PrecisionPolicy(layers=("Conv2d", "Linear"),
                             activation=Cast(FLOAT8_E5M2), error=Cast(FLOAT8_E5M2))
    with apply_policy(model, policy):
        loss = criterion(model(x), y)
        loss.backward()

Every :class:`Cast` rounds with :func:`precision.quantize.quantize`; a :data:`Rounder` from an
adapter (:mod:`precision.compat.qtorch`) rounds as that adapter says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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

    def __call__(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Round ``x`` (into ``out``; ``x`` itself rounds in place). Not differentiable;
        see :func:`quant_function` for that."""
        return quantize(x, self.format, self.rounding, out=out, generator=generator)

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
        inplace: bool = False,
    ) -> torch.Tensor:
        ctx.backward_cast = backward
        ctx.generator = generator
        if forward is None:
            return x.clone()
        if inplace and isinstance(forward, Cast):
            ctx.mark_dirty(x)
            return forward(x, generator, out=x)
        return forward(x, generator)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        cast: Rounder | None = ctx.backward_cast
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        return (grad if cast is None else cast(grad, ctx.generator)), None, None, None, None


def quant_function(
    x: torch.Tensor,
    forward: Rounder | None = None,
    backward: Rounder | None = None,
    *,
    generator: torch.Generator | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Round ``x`` with ``forward`` and its incoming gradient with ``backward``.

    Args:
        x: a floating tensor.
        forward: rounding of the value (a :class:`Cast`, or any :data:`Rounder`; None:
            unchanged).
        backward: rounding of the gradient flowing back into ``x`` (None: unchanged).
        generator: source of stochastic-rounding bits for both directions.
        inplace: round the values into ``x`` itself (a :class:`Cast` forward only), saving
            a buffer; only for tensors nothing else needs unrounded, such as a layer's
            fresh output that its own backward does not use.

    Returns:
        ``x`` itself when both are None, else a new tensor connected to ``x`` by autograd.
    """
    if forward is None and backward is None:
        return x
    out: torch.Tensor = _Quantize.apply(x, forward, backward, generator, inplace)
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
        forward, backward: the formats of the values and of their gradients (each None:
            not rounded).
        rounding, backward_rounding: how each is rounded (``backward_rounding`` None:
            as ``rounding``).
        generator: source of stochastic-rounding bits.

    Returns:
        A function of one tensor, differentiable like :func:`quant_function`.

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
