"""Block floating point / shared-exponent (MX-style) quantization: a shared power-of-two
scale per block, elements rounded by :func:`precision._elementwise.round_elements`."""

from __future__ import annotations

import math

import torch

from precision._elementwise import round_elements
from precision.formats import BlockFormat, FixedFormat, FloatFormat
from precision.rounding import RoundingMode


def _element_emax(element: FloatFormat | FixedFormat) -> int:
    """Exponent of the element format's largest power of two (OCP MX: emax_elem)."""
    if isinstance(element, FloatFormat):
        return element.emax
    return element.magnitude_bits - 1 - element.fraction_bits


def _element_max(element: FloatFormat | FixedFormat) -> float:
    return element.max_finite if isinstance(element, FloatFormat) else element.max_value


def block_scales(x: torch.Tensor, fmt: BlockFormat) -> torch.Tensor:
    """One scale per block, shaped like ``x`` with the block axis replaced by the blocks.

    Power-of-two scale formats (no mantissa bits) use the OCP MX rule
    ``2**(floor(log2(amax)) - emax_element)``, clamped to the scale format's exponent range;
    other scale formats use ``amax / max_element`` rounded to nearest in the scale format.
    A block holding Inf or NaN gets a NaN scale (every element of it becomes NaN). All-zero
    blocks get the smallest scale.
    """
    blocks = _blocked(x.detach().to(torch.float64), fmt)
    amax = blocks.abs().amax(dim=-1)
    finite = torch.isfinite(amax)
    if fmt.scale.mantissa_bits == 0:
        _, e = torch.frexp(torch.where(finite & (amax > 0), amax, torch.ones_like(amax)))
        lo, hi = fmt.scale.emin_subnormal, fmt.scale.emax
        shared = torch.clamp(e.to(torch.float64) - 1 - _element_emax(fmt.element), lo, hi)
        scale = torch.where(amax > 0, torch.exp2(shared), math.ldexp(1.0, lo))
    else:
        raw = amax / _element_max(fmt.element)
        scale = round_elements(raw, fmt.scale, RoundingMode.NEAREST_EVEN, None)[0]
        scale = torch.where(scale > 0, scale, fmt.scale.smallest_positive)
    return torch.where(finite, scale, torch.nan)


def quantize_blocks(
    x: torch.Tensor,
    fmt: BlockFormat,
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Quantize ``x`` to a block format: elements to ``fmt.element`` relative to the block's
    shared scale, returned already multiplied back (values of the block format).

    The division by the scale happens in float64, so it is exact for power-of-two scales and
    the element rounding sees the true value (no double rounding).
    """
    if x.numel() == 0:
        return x.detach().clone()
    axis = fmt.axis % x.dim() if x.dim() else 0
    x64 = x.detach().to(torch.float64)
    scale = block_scales(x64, fmt).unsqueeze(-1)
    blocks = _blocked(x64, fmt)
    q = round_elements(blocks / scale, fmt.element, rounding, generator)[0] * scale
    n = x.shape[axis] if x.dim() else 1
    q = q.reshape(*q.shape[:-2], -1)[..., :n]
    if x.dim():
        q = q.movedim(-1, axis)
    return q.reshape(x.shape).to(x.dtype)


def _blocked(x: torch.Tensor, fmt: BlockFormat) -> torch.Tensor:
    """View ``x`` as (..., n_blocks, block_size) along ``fmt.axis``, zero-padded."""
    if x.dim() == 0:
        x = x.reshape(1)
    axis = fmt.axis % x.dim()
    moved = x.movedim(axis, -1)
    n = moved.shape[-1]
    pad = (-n) % fmt.block_size
    if pad:
        moved = torch.nn.functional.pad(moved, (0, pad))
    return moved.reshape(*moved.shape[:-1], -1, fmt.block_size)
