"""Emulate any floating-point, fixed-point or block format on PyTorch tensors.

>>> import torch
>>> from precision import FloatFormat, quantize
>>> quantize(torch.tensor([1.0, 1.1, 3.3]), FloatFormat(exponent_bits=3, mantissa_bits=0))
tensor([1., 1., 4.])
"""

from precision._dispatch import kernel_backend
from precision.autograd import Cast, Quantizer, quant_function, quantizer
from precision.formats import BlockFormat, FixedFormat, FixedOverflow, FloatFormat, Format
from precision.optim import LowPrecisionOptimizer
from precision.policy import PrecisionPolicy, apply_policy
from precision.quantize import RoundingCounts, quantize
from precision.registry import parse
from precision.rounding import Overflow, RoundingMode, Specials
from precision.scaling import LossScaler
from precision.tensor import EmulatedTensor, emulate

__all__ = [
    "BlockFormat",
    "Cast",
    "EmulatedTensor",
    "FixedFormat",
    "FixedOverflow",
    "FloatFormat",
    "Format",
    "LossScaler",
    "LowPrecisionOptimizer",
    "Overflow",
    "PrecisionPolicy",
    "Quantizer",
    "RoundingCounts",
    "RoundingMode",
    "Specials",
    "apply_policy",
    "emulate",
    "kernel_backend",
    "parse",
    "quant_function",
    "quantize",
    "quantizer",
]
