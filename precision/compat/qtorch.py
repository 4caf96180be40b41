"""qtorch 0.3's public API on top of :mod:`precision`: switching is one import line.

``from qtorch.quant import float_quantize, quantizer`` becomes
``from precision.compat.qtorch import float_quantize, quantizer`` (likewise the number
classes from ``qtorch`` and ``OptimLP`` from ``qtorch.optim``). Names, positional
signatures and defaults are qtorch's; keyword-only extras are ``nearest`` (what "nearest"
means, see below) and ``generator`` (stochastic-rounding bits).

Formats. ``FloatingPoint(exp, man)`` is qtorch's format: IEEE bias, subnormals, and no
exponent code kept for inf/NaN (the top exponent holds finite numbers), saturating on
overflow: ``FloatFormat(exponent_bits=exp, mantissa_bits=man, specials=FINITE)``.
``FixedPoint(wl, fl)`` is two's complement with range ``[-2**(wl-fl-1), 2**(wl-fl-1) -
2**-fl]``. ``BlockFloatingPoint(wl, dim)`` is a ``wl``-bit signed integer times a shared
power of two ``2**(floor(log2 max|x|) - wl + 2)`` per slice along ``dim`` (``-1``: one
block for the whole tensor): a :class:`BlockFormat` with an e8m0 scale.

Where results differ from qtorch 0.3, and why (see also ``README.md`` here):

* "nearest" for floating point: qtorch adds half an ulp to the bit pattern and truncates,
  which rounds ties away from zero. That is the default here too (``NEAREST_AWAY``) so
  results match; pass ``nearest=RoundingMode.NEAREST_EVEN`` for IEEE 754's ties-to-even.
  For fixed point qtorch uses ``nearbyint`` (ties to even), and so does the default here.
  For block floating point qtorch's ties go toward +infinity (it rounds ``x + 6*2**E``);
  here they go away from zero (negative ties differ).
* NaN: qtorch turns NaN into the largest value; here NaN stays NaN.
* Subnormals of ``FloatingPoint`` and block rebasing: qtorch first adds a power of two in
  float32 (rounding once, to nearest even) and rounds again; here every value is rounded
  once, correctly. Results differ in rare double-rounding cases.
* ``FloatingPoint(man=23)``: qtorch shifts by -1 (undefined behaviour in C) and flips
  signs; here it is the identity on float32. Unclamped fixed point with
  ``|x| >= 2**(23-fl)``: qtorch's ``x + 0.5 - 0.5`` in float32 moves values that are
  already on the grid; here they stay.
* Block floating point: here the most negative integer ``-2**(wl-1)`` is representable;
  qtorch's sign-magnitude clipping stops at ``-(2**(wl-1) - 1)``.
* Stochastic rounding: same distribution, different random bits (the bits come from
  ``generator``, so runs are reproducible; qtorch seeds its CPU generator from the OS).
* ``OptimLP`` accepts any optimizer and rounds every floating state tensor shaped like its
  parameter (qtorch: SGD's ``momentum_buffer`` and Adam's ``exp_avg``/``exp_avg_sq`` only).
* Inputs may be float32 or float64 (qtorch: float32 only); invalid arguments raise
  ``ValueError`` instead of failing an ``assert``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from precision.autograd import quant_function
from precision.compat.qtorch_numbers import (
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    Number,
)
from precision.optim import LowPrecisionOptimizer
from precision.rounding import RoundingMode

__all__ = [
    "BlockFloatingPoint",
    "FixedPoint",
    "FloatingPoint",
    "Number",
    "OptimLP",
    "Quantizer",
    "block_quantize",
    "fixed_point_quantize",
    "float_quantize",
    "quantizer",
]

QuantFn = Callable[[torch.Tensor], torch.Tensor]


def _mode(number: Number, rounding: str, nearest: RoundingMode | None) -> RoundingMode:
    if rounding == "stochastic":
        return RoundingMode.STOCHASTIC
    if rounding == "nearest":
        return number.nearest() if nearest is None else nearest
    raise ValueError(f"rounding={rounding!r}: qtorch accepts 'stochastic' or 'nearest'")


def float_quantize(
    x: torch.Tensor,
    exp: int,
    man: int,
    rounding: str = "stochastic",
    *,
    nearest: RoundingMode | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round ``x`` to ``FloatingPoint(exp, man)``.

    Args:
        x: float32 (or float64) tensor.
        exp: exponent bits, 1..8.
        man: stored mantissa bits, 0..23.
        rounding: ``"stochastic"`` or ``"nearest"``.
        nearest: the mode "nearest" maps to (default: ties away from zero, as qtorch).
        generator: source of stochastic-rounding bits.

    Returns:
        A new tensor of ``x``'s dtype.

    Raises:
        ValueError: bad bit counts or rounding name.
        TypeError: ``x`` is not a float32/float64 tensor.
    """
    number = FloatingPoint(exp, man)
    return number.round(x, _mode(number, rounding, nearest), generator)


def fixed_point_quantize(
    x: torch.Tensor,
    wl: int,
    fl: int,
    clamp: bool = True,
    symmetric: bool = False,
    rounding: str = "stochastic",
    *,
    nearest: RoundingMode | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round ``x`` to ``FixedPoint(wl, fl, clamp, symmetric)`` (arguments as qtorch's).

    Raises:
        ValueError: bad lengths or rounding name.
        TypeError: ``x`` is not a float32/float64 tensor.
    """
    number = FixedPoint(wl, fl, clamp, symmetric)
    return number.round(x, _mode(number, rounding, nearest), generator)


def block_quantize(
    x: torch.Tensor,
    wl: int,
    dim: int = -1,
    rounding: str = "stochastic",
    *,
    nearest: RoundingMode | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round ``x`` to ``BlockFloatingPoint(wl, dim)`` (arguments as qtorch's).

    Raises:
        ValueError: bad word length, dimension or rounding name.
        TypeError: ``x`` is not a float32/float64 tensor.
    """
    number = BlockFloatingPoint(wl, dim)
    return number.round(x, _mode(number, rounding, nearest), generator)


@dataclass(frozen=True)
class _NumberCast:
    """A qtorch number and mode as a rounding step for :func:`quant_function`."""

    number: Number
    mode: RoundingMode

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.number.round(x, self.mode, generator)


def _cast(number: Number | None, rounding: str, nearest: RoundingMode | None) -> _NumberCast | None:
    """The rounding step of one direction of :func:`quantizer` (None: unchanged).

    Raises:
        TypeError: ``number`` is not a qtorch number.
        ValueError: a bad rounding name.
    """
    if number is None:
        return None
    if not isinstance(number, Number):
        raise TypeError(f"{number!r}: expected a FloatingPoint, FixedPoint or BlockFloatingPoint")
    return _NumberCast(number, _mode(number, rounding, nearest))


def quantizer(
    forward_number: Number | None = None,
    backward_number: Number | None = None,
    forward_rounding: str = "stochastic",
    backward_rounding: str = "stochastic",
    clamping_grad_zero: bool = False,
    backward_hooks: Iterable[QuantFn] = (),
    *,
    nearest: RoundingMode | None = None,
    generator: torch.Generator | None = None,
) -> QuantFn:
    """A function rounding values forward and gradients backward (qtorch's ``quantizer``).

    Args:
        forward_number: format of the values (None: unchanged).
        backward_number: format of the gradients (None: unchanged).
        forward_rounding: ``"stochastic"`` or ``"nearest"``.
        backward_rounding: ``"stochastic"`` or ``"nearest"``.
        clamping_grad_zero: zero the gradient where the forward pass clamped (needs a
            clamping ``FixedPoint`` forward format).
        backward_hooks: functions applied to the gradient before it is rounded (as in
            qtorch, only used with ``clamping_grad_zero``).
        nearest: the mode "nearest" maps to (default: qtorch's per-format behaviour).
        generator: source of stochastic-rounding bits.

    Raises:
        ValueError: bad rounding names, or ``clamping_grad_zero`` without a clamping
            fixed-point forward format.
        TypeError: a number is not a qtorch number.
    """
    fwd = _cast(forward_number, forward_rounding, nearest)
    bwd = _cast(backward_number, backward_rounding, nearest)
    if not clamping_grad_zero:
        return lambda x: quant_function(x, fwd, bwd, generator=generator)
    if not (isinstance(forward_number, FixedPoint) and forward_number.clamp) or fwd is None:
        raise ValueError("clamping_grad_zero needs forward_number=FixedPoint(..., clamp=True)")
    hooks = list(backward_hooks)
    fixed, mode = forward_number, fwd.mode

    def apply(x: torch.Tensor) -> torch.Tensor:
        unclamped = _NumberCast(FixedPoint(fixed.wl, fixed.fl, False, fixed.symmetric), mode)
        y = quant_function(x, unclamped, bwd, generator=generator)
        if y.requires_grad:
            for hook in hooks:
                y.register_hook(hook)
        clamped = torch.clamp(y, *fixed.bounds)
        # Where clamping changed the value, pass no gradient (qtorch's mask).
        return torch.where(clamped != y, clamped.detach(), clamped)

    return apply


class Quantizer(nn.Module):
    """qtorch's ``Quantizer`` layer: :func:`quantizer` as a module."""

    def __init__(
        self,
        forward_number: Number | None = None,
        backward_number: Number | None = None,
        forward_rounding: str = "stochastic",
        backward_rounding: str = "stochastic",
        *,
        nearest: RoundingMode | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.quantize = quantizer(
            forward_number,
            backward_number,
            forward_rounding,
            backward_rounding,
            nearest=nearest,
            generator=generator,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(x)


class OptimLP(LowPrecisionOptimizer):
    """qtorch's low-precision optimizer wrapper on :class:`LowPrecisionOptimizer`.

    Args:
        optim: the optimizer to wrap (any ``torch.optim.Optimizer``).
        weight_quant: function rounding the weights after the step.
        grad_scaling: factor the gradient is multiplied by before ``grad_quant`` (qtorch
            never divides it back out).
        grad_quant: function rounding the gradients before the step.
        momentum_quant: function rounding the optimizer state after the step.
        acc_quant: function rounding float32 master copies ("accumulators"); giving it
            turns master weights on.

    Raises:
        ValueError: ``grad_scaling`` is not positive.
    """

    def __init__(
        self,
        optim: torch.optim.Optimizer,
        weight_quant: QuantFn | None = None,
        grad_scaling: float = 1.0,
        grad_quant: QuantFn | None = None,
        momentum_quant: QuantFn | None = None,
        acc_quant: QuantFn | None = None,
    ) -> None:
        if not grad_scaling > 0:
            raise ValueError(f"grad_scaling={grad_scaling}: must be positive")
        grad: QuantFn | None = None
        if grad_quant is not None:
            gq = grad_quant
            grad = (lambda g: gq(g * grad_scaling)) if grad_scaling != 1 else gq
        super().__init__(
            optim,
            grad=grad,
            weight=weight_quant,
            state=momentum_quant,
            master_weights=acc_quant is not None,
            master=acc_quant,
        )
        self.grad_scaling = grad_scaling
