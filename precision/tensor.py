"""An emulated-precision tensor: ordinary PyTorch code that computes "in e4m3".

:class:`EmulatedTensor` wraps a float32 (or float64) tensor whose values all belong to a
:class:`FloatFormat`. Every operation on it runs on the wrapped values and its floating
result is rounded to the format with :func:`precision.quantize.quantize`::

    x = emulate(torch.randn(4, 8), FLOAT8_E4M3FN)
    y = (x * 3).exp() @ emulate(torch.randn(8, 2), FLOAT8_E4M3FN)   # an EmulatedTensor
    y.to_float()                                                     # a plain tensor

Rules:

* Elementwise ops: ``quantize(op(float inputs))`` with the op computed in the carrier
  (float32 or float64). For +, -, *, / and sqrt this is correctly rounded when the carrier
  has at least ``2p + 2`` significand bits (Figueroa 1995): every format with up to 10
  mantissa bits on a float32 carrier.
* Matrix products and convolutions (``mm``, ``bmm``, ``addmm``, ``mv``, ``dot``,
  ``baddbmm``, ``convolution`` and what ``matmul``/``linear`` decompose into) run in the
  accumulator format's carrier, are rounded to the accumulator format (default float32),
  then to the tensor's format. A narrower accumulator is thus emulated as one rounding of
  the carrier's sum, not as a rounding after every addition.
* Promotion: plain tensors and Python numbers are exact (they take no part in choosing the
  format); among emulated operands the result takes the format that holds all the others
  (more or equal mantissa bits and range). Formats neither of which holds the other (e5m2
  and e4m3) raise ``ValueError``: convert one with :func:`emulate` first. The accumulator
  and rounding mode come from the operand whose format was chosen.
* Views and in-place ops keep aliasing; in-place results are rounded in place.
* Results that are not float32/float64 (``.half()``, comparisons, ``argmax``) come back as
  plain tensors.
* Autograd: backward runs the same ops on emulated gradients, so gradients are
  EmulatedTensors in the format of the forward values (each backward op rounded too).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_map

from precision.formats import FloatFormat
from precision.quantize import quantize
from precision.registry import FLOAT32
from precision.rounding import RoundingMode

aten = torch.ops.aten

_ACCUMULATING = {
    aten.mm.default,
    aten.bmm.default,
    aten.addmm.default,
    aten.addmv.default,
    aten.mv.default,
    aten.dot.default,
    aten.vdot.default,
    aten.baddbmm.default,
    aten.addbmm.default,
    aten.convolution.default,
    aten.convolution_backward.default,
}
_CARRIERS = (torch.float32, torch.float64)


def _holds(a: FloatFormat, b: FloatFormat) -> bool:
    """True when every value of ``b`` is a value of ``a``."""
    return (
        a.mantissa_bits >= b.mantissa_bits
        and a.max_finite >= b.max_finite
        and a.smallest_positive <= b.smallest_positive
    )


class EmulatedTensor(torch.Tensor):
    """A tensor whose values, and the results of every op on it, belong to ``fmt``.

    Build one with :func:`emulate`. Attributes: ``elem`` (the carrier tensor), ``fmt``,
    ``accumulator`` (format of matrix-product sums), ``rounding``, ``generator``.
    """

    elem: torch.Tensor
    fmt: FloatFormat
    accumulator: FloatFormat
    rounding: RoundingMode
    generator: torch.Generator | None

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]

    @staticmethod
    def __new__(
        cls,
        elem: torch.Tensor,
        fmt: FloatFormat,
        accumulator: FloatFormat = FLOAT32,
        rounding: RoundingMode = RoundingMode.NEAREST_EVEN,
        generator: torch.Generator | None = None,
        requires_grad: bool = False,
    ) -> EmulatedTensor:
        r = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls,
            elem.shape,
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            device=elem.device,
            requires_grad=requires_grad,
        )
        r.elem = elem
        r.fmt = fmt
        r.accumulator = accumulator
        r.rounding = rounding
        r.generator = generator
        return r  # type: ignore[no-any-return]

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # type: ignore[override]
        body = repr(self.elem.detach())
        body = body[len("tensor(") : -1] if body.startswith("tensor(") else body
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"EmulatedTensor({body}, format={self.fmt}{grad})"

    def to_float(self) -> torch.Tensor:
        """The values as a plain tensor of the carrier dtype (differentiable)."""
        out: torch.Tensor = _FromEmulated.apply(self)
        return out

    def numpy(self, *, force: bool = False) -> np.ndarray:  # type: ignore[override]
        """The values as a NumPy array (via :meth:`to_float`)."""
        return self.to_float().detach().cpu().numpy()

    def tolist(self) -> Any:  # type: ignore[override]
        return self.to_float().detach().tolist()

    def __reduce_ex__(self, protocol: Any) -> Any:  # type: ignore[override]
        return (
            _rebuild,
            (self.elem.detach(), self.fmt, self.accumulator, self.rounding, self.requires_grad),
        )

    @classmethod
    def __torch_dispatch__(  # type: ignore[override]
        cls,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        leader = _leader([*args, *kwargs.values()])
        by_id: dict[int, EmulatedTensor] = {}

        def unwrap(t: Any) -> Any:
            if isinstance(t, EmulatedTensor):
                by_id[id(t.elem)] = t
                return t.elem
            return t

        uargs, ukwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        schema = func._schema
        if func in _ACCUMULATING:
            out = _accumulate(func, uargs, ukwargs, leader)
        else:
            out = func(*uargs, **ukwargs)
        if schema.is_mutable:
            # In place or out=: round what was written, return the same wrappers.
            for arg in schema.arguments:
                if arg.alias_info is not None and arg.alias_info.is_write:
                    target = kwargs.get(arg.name, None)
                    if target is None and arg.kwarg_only is False:
                        pos = [a.name for a in schema.arguments].index(arg.name)
                        target = args[pos] if pos < len(args) else None
                    if isinstance(target, EmulatedTensor):
                        target.elem.copy_(_round(target.elem, target))
            return tree_map(
                lambda t: by_id.get(id(t), t) if isinstance(t, torch.Tensor) else t, out
            )
        aliasing = any(r.alias_info is not None for r in schema.returns)

        def wrap(t: Any) -> Any:
            if not isinstance(t, torch.Tensor) or t.dtype not in _CARRIERS:
                return t
            value = t if aliasing else _round(t, leader)
            return EmulatedTensor(
                value, leader.fmt, leader.accumulator, leader.rounding, leader.generator
            )

        return tree_map(wrap, out)


def _round(t: torch.Tensor, like: EmulatedTensor) -> torch.Tensor:
    return quantize(t, like.fmt, like.rounding, generator=like.generator)


def _leader(values: list[Any]) -> EmulatedTensor:
    """The emulated operand whose format holds every other operand's format."""
    found: list[EmulatedTensor] = []

    def visit(v: Any) -> Any:
        if isinstance(v, EmulatedTensor):
            found.append(v)
        return v

    tree_map(visit, values)
    best = found[0]
    for t in found[1:]:
        if t.fmt == best.fmt or _holds(best.fmt, t.fmt):
            continue
        if _holds(t.fmt, best.fmt):
            best = t
        else:
            raise ValueError(
                f"mixed formats {best.fmt} and {t.fmt}: neither holds the other; convert "
                "one operand with emulate(t, fmt) first"
            )
    return best


def _accumulate(func: Any, args: Any, kwargs: Any, leader: EmulatedTensor) -> Any:
    acc = leader.accumulator
    dtype = torch.float64 if acc.carrier == "float64" else torch.float32

    def to_acc(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype:
            return t.to(dtype)
        return t

    out = func(*tree_map(to_acc, args), **tree_map(to_acc, kwargs))
    native = FLOAT32 if dtype == torch.float32 else None
    if acc == native:
        return out

    def round_acc(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.dtype in _CARRIERS:
            return quantize(t, acc, leader.rounding, generator=leader.generator)
        return t

    return tree_map(round_acc, out)


class _ToEmulated(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        t: torch.Tensor,
        fmt: FloatFormat,
        accumulator: FloatFormat,
        rounding: RoundingMode,
        generator: torch.Generator | None,
    ) -> EmulatedTensor:
        carrier = (
            torch.float64 if t.dtype == torch.float64 or fmt.carrier == "float64" else torch.float32
        )
        elem = quantize(t.detach().to(carrier), fmt, rounding, generator=generator)
        return EmulatedTensor(elem, fmt, accumulator, rounding, generator)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None, None, None]:  # type: ignore[override]
        if isinstance(grad, EmulatedTensor):
            grad = grad.elem
        return grad, None, None, None, None


class _FromEmulated(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t: EmulatedTensor) -> torch.Tensor:  # type: ignore[override]
        ctx.like = t
        return t.elem.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> EmulatedTensor:  # type: ignore[override]
        like: EmulatedTensor = ctx.like
        return EmulatedTensor(
            _round(grad.to(like.dtype), like),
            like.fmt,
            like.accumulator,
            like.rounding,
            like.generator,
        )


def emulate(
    t: torch.Tensor,
    fmt: FloatFormat,
    *,
    accumulator: FloatFormat = FLOAT32,
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN,
    generator: torch.Generator | None = None,
    requires_grad: bool | None = None,
) -> EmulatedTensor:
    """Round ``t`` to ``fmt`` and wrap it so that every later op is rounded too.

    Args:
        t: a floating tensor. If it requires grad, gradients flow back to it (as plain
            tensors); an EmulatedTensor is re-rounded to ``fmt``.
        fmt: the format to compute in.
        accumulator: format of matrix-product and convolution sums (float32 or wider
            formats are exact in their carrier; narrower ones are one extra rounding).
        rounding: rounding of every result.
        generator: source of stochastic-rounding bits.
        requires_grad: make the result a leaf that requires grad (default: False unless
            ``t`` requires grad, in which case the result is connected to ``t``).

    Returns:
        An EmulatedTensor on a float32 carrier (float64 when ``t`` is float64 or ``fmt``
        needs it).

    Raises:
        TypeError: ``fmt`` is not a FloatFormat or ``t`` not a floating tensor.
    """
    if not isinstance(fmt, FloatFormat) or not isinstance(accumulator, FloatFormat):
        raise TypeError("emulate: fmt and accumulator must be FloatFormat objects")
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise TypeError(f"emulate: expected a floating tensor, got {type(t).__name__}")
    if isinstance(t, EmulatedTensor):
        t = t.to_float()
    if requires_grad:
        t = t.detach()
    out: EmulatedTensor = _ToEmulated.apply(t, fmt, accumulator, rounding, generator)
    if requires_grad:
        out.requires_grad_(True)
    return out


def to_float(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor: ``t.to_float()`` for EmulatedTensors, ``t`` otherwise."""
    return t.to_float() if isinstance(t, EmulatedTensor) else t


def _rebuild(
    elem: torch.Tensor,
    fmt: FloatFormat,
    accumulator: FloatFormat,
    rounding: RoundingMode,
    requires_grad: bool,
) -> EmulatedTensor:
    return EmulatedTensor(elem, fmt, accumulator, rounding, None, requires_grad)
