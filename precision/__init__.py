"""Emulate any floating-point, fixed-point or block format on PyTorch tensors.

>>> import torch
>>> from precision import FloatFormat, quantize
>>> quantize(torch.tensor([1.0, 1.1, 3.3]), FloatFormat(exponent_bits=3, mantissa_bits=0))
tensor([1., 1., 4.])
"""

from precision._kernel import kernel_backend
from precision.formats import BlockFormat, FixedFormat, FixedOverflow, FloatFormat, Format
from precision.quantize import quantize
from precision.registry import parse
from precision.rounding import Overflow, RoundingMode, Specials

__all__ = [
    "BlockFormat",
    "FixedFormat",
    "FixedOverflow",
    "FloatFormat",
    "Format",
    "Overflow",
    "RoundingMode",
    "Specials",
    "kernel_backend",
    "parse",
    "quantize",
]
