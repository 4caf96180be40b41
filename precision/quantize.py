"""``quantize``: the single entry point that rounds values to an emulated format.

Every other module (autograd quantizers, optimizers, the emulated tensor, collectives,
hpcprof's bits-needed runs) calls :func:`quantize`: out of place, into a kept buffer
(``out=``), in place (``out=x``), with or without counts of what the rounding did
(``count=True``). Element-wise formats go through :mod:`precision._elementwise` (one kernel
call), block formats through :mod:`precision.block`; the bit work is :mod:`precision._kernel`'s.

Speed: for contiguous float32/float64 tensors and signed float formats the kernel stores
straight into ``out``, so a separate buffer kept across calls is the fastest way to round
repeatedly; there, with ``out`` not ``x``, ``count=True`` counts in the rounding pass
itself. Otherwise the counts come from comparing input and result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypedDict, TypeVar, overload

import numpy as np
import torch

from precision._elementwise import (
    DTYPE_NAMES,
    RoundingCounts,
    compare_counts,
    largest_value,
    round_elements,
)
from precision.block import quantize_blocks
from precision.formats import BlockFormat, FixedFormat, FloatFormat, Format
from precision.rounding import RoundingMode

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["RoundingCounts", "largest_value", "quantize"]

_NP_DTYPES = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
_FORMATS = (FloatFormat, FixedFormat, BlockFormat)


#: What :func:`quantize` rounds: a torch tensor or a NumPy array, and it returns the same.
ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


class _Options(TypedDict, total=False):
    """The keyword arguments of :func:`quantize` that do not change its return type."""

    out: torch.Tensor | None
    generator: torch.Generator | None


# The overloads are kept to three lines each (fmt: skip): only ``count`` and the result differ.
@overload
def quantize(
    x: ArrayT, fmt: Format | str, rounding: RoundingMode | str = ..., *,
    count: Literal[False] = ..., **kw: Unpack[_Options],
) -> ArrayT: ...  # fmt: skip
@overload
def quantize(
    x: ArrayT, fmt: Format | str, rounding: RoundingMode | str = ..., *,
    count: Literal[True], **kw: Unpack[_Options],
) -> tuple[ArrayT, RoundingCounts]: ...  # fmt: skip
@overload
def quantize(
    x: ArrayT, fmt: Format | str, rounding: RoundingMode | str = ..., *,
    count: bool, **kw: Unpack[_Options],
) -> ArrayT | tuple[ArrayT, RoundingCounts]: ...  # fmt: skip
def quantize(
    x: torch.Tensor | np.ndarray,
    fmt: Format | str,
    rounding: RoundingMode | str = RoundingMode.NEAREST_EVEN,
    *,
    out: torch.Tensor | None = None,
    count: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor | np.ndarray | tuple[torch.Tensor | np.ndarray, RoundingCounts]:
    """Round every element of ``x`` to the nearest value of ``fmt`` under ``rounding``.

    Args:
        x: a torch tensor (float16, bfloat16, float32 or float64; any device, shape and
            strides) or a NumPy array (float16, float32, float64).
        fmt: a :class:`FloatFormat`, :class:`FixedFormat` or :class:`BlockFormat`, or a name
            that :func:`precision.registry.parse` accepts (``"bfloat16"``, ``"e3m0"``).
            Hot loops pass the parsed format: a name is parsed on every call.
        rounding: a :class:`RoundingMode` (or its name).
        out: tensor of ``x``'s shape, dtype and device that receives the result; ``x``
            itself rounds in place; None: a new tensor. Tensors only.
        count: also return :class:`RoundingCounts` (underflow, overflow, saturation).
        generator: source of the 64-bit key of stochastic rounding. Same generator state,
            same bits, on any device and backend. None uses torch's default CPU generator.

    Returns:
        A tensor/array of ``x``'s type, dtype and shape holding values of ``fmt`` (``out``
        when given; NaN stays NaN; infinities per the format's overflow policy), and with
        ``count`` a ``(result, RoundingCounts)`` pair. Not differentiable: see
        :mod:`precision.autograd` for straight-through quantizers.

    Raises:
        TypeError: ``x`` is not a floating tensor/array of a supported dtype, or ``out`` is
            given with a NumPy array.
        ValueError: ``fmt`` has values that ``x``'s dtype cannot hold (e.g. ``e11m30`` on a
            float32 tensor: pass float64), or ``out`` does not match ``x``.
    """
    if not isinstance(fmt, _FORMATS):
        from precision.registry import parse

        fmt = parse(fmt)
    mode = RoundingMode.parse(rounding)
    if isinstance(x, np.ndarray):
        return _quantize_array(x, fmt, mode, out, count, generator)
    dtype_name = _check_tensor(x, out)
    if isinstance(fmt, BlockFormat):
        with torch.no_grad():
            yb = quantize_blocks(x, fmt, mode, generator=generator)
            tally = compare_counts(x, yb, fmt) if count else None
            result = yb if out is None else out.copy_(yb)
        return (result, tally) if tally is not None else result
    if not fmt.fits_in(dtype_name):
        raise ValueError(
            f"format {fmt} has values that {dtype_name} cannot hold exactly; "
            f"pass a {fmt.carrier} input" + (" (or float64)" if fmt.carrier != "float64" else "")
        )
    result, tally = round_elements(x, fmt, mode, generator, out, count)
    return (result, tally) if tally is not None else result


def _quantize_array(
    x: np.ndarray,
    fmt: Format,
    mode: RoundingMode,
    out: torch.Tensor | None,
    count: bool,
    generator: torch.Generator | None,
) -> np.ndarray | tuple[np.ndarray, RoundingCounts]:
    """:func:`quantize` of a NumPy array, through a tensor sharing its memory."""
    if x.dtype not in _NP_DTYPES:
        raise TypeError(f"quantize: NumPy dtype {x.dtype} unsupported; use float16/32/64")
    if out is not None:
        raise TypeError("quantize: out= takes a torch.Tensor; a NumPy input returns a new array")
    t = torch.from_numpy(np.ascontiguousarray(x))
    if count:
        y, counts = quantize(t, fmt, mode, count=True, generator=generator)
        return y.numpy(), counts
    return quantize(t, fmt, mode, generator=generator).numpy()


def _check_tensor(x: object, out: torch.Tensor | None) -> str:
    """The dtype name of the tensor ``x``, after checking it and ``out``.

    Raises:
        TypeError: ``x`` is not a tensor of a supported dtype.
        ValueError: ``out`` does not match ``x``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"quantize: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}"
        )
    dtype_name = DTYPE_NAMES.get(x.dtype)
    if dtype_name is None:
        raise TypeError(
            f"quantize: dtype {x.dtype} unsupported; use float16, bfloat16, float32 or float64"
        )
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or out.device != x.device):
        raise ValueError(
            f"quantize: out is {tuple(out.shape)} {out.dtype} on {out.device}, x is "
            f"{tuple(x.shape)} {x.dtype} on {x.device}: they must match"
        )
    return dtype_name
