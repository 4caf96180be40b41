"""Element-wise rounding of float and fixed-point formats: the one call into the kernel.

:func:`precision.quantize.quantize` (the public entry point) and the block formats of
:mod:`precision.block` come here; the bit work itself is :mod:`precision._kernel`'s.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple, cast

import torch

from precision import _dispatch
from precision import _kernel as K
from precision._memory import empty_output
from precision.formats import BlockFormat, FixedFormat, FixedOverflow, FloatFormat, Format
from precision.rounding import Overflow, RoundingMode

DTYPE_NAMES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}


class RoundingCounts(NamedTuple):
    """What one rounding did to a tensor, counted in the rounding pass.

    Attributes:
        flushed: nonzero inputs that became zero (underflow).
        beyond: finite inputs of magnitude above :func:`largest_value` (overflow: they
            became that value, infinity or NaN as the format's policy says).
        at_limit: results of magnitude at least :func:`largest_value`, infinities
            included (saturation). NaN is counted in none of the three.
    """

    flushed: int
    beyond: int
    at_limit: int


def largest_value(fmt: Format) -> float:
    """The largest finite magnitude of ``fmt``: the limit :class:`RoundingCounts` uses."""
    if isinstance(fmt, BlockFormat):
        return largest_value(fmt.element) * math.ldexp(1.0, fmt.scale.emax)
    return fmt.max_value if isinstance(fmt, FixedFormat) else fmt.max_finite


def round_elements(
    x: torch.Tensor,
    fmt: FloatFormat | FixedFormat,
    mode: RoundingMode,
    generator: torch.Generator | None,
    out: torch.Tensor | None = None,
    count: bool = False,
) -> tuple[torch.Tensor, RoundingCounts | None]:
    """Round ``x`` (a supported dtype that holds ``fmt``) into ``out`` (None: a new tensor;
    ``x`` itself: in place), with the counts when ``count``.

    One kernel call. The kernel reads and writes the tensors' own memory when ``x`` is a
    contiguous tensor of the carrier's dtype, ``fmt`` a signed float format and ``out`` (if
    given) contiguous; then the counts come out of the rounding pass itself unless ``out``
    is ``x``. Otherwise the input is converted to the carrier, rounded, and the counts are
    taken by comparing input and result.
    """
    with torch.no_grad():
        carrier = _carrier(x, fmt)
        in_place = out is not None and out.data_ptr() == x.data_ptr()
        direct = (
            isinstance(fmt, FloatFormat)
            and fmt.signed
            and x.is_contiguous()
            and x.dtype == carrier.float_dtype
            and (out is None or out.is_contiguous())
            # counting in the pass needs the input intact and an int32 count
            and (not count or (not in_place and x.numel() < 1 << 31))
        )
        if direct:
            dest = empty_output(x) if out is None else out
            if x.numel() == 0:
                return dest, RoundingCounts(0, 0, 0) if count else None
            res = _run(x, dest, cast(FloatFormat, fmt), mode, generator, carrier, tally=count)
            if not count:
                return dest, None
            flushed, beyond, at_limit = (int(c) for c in res.tolist())
            return dest, RoundingCounts(flushed, beyond, at_limit)
        y = _round(x, fmt, mode, generator, carrier)  # x is read before out is written
        counted = compare_counts(x, y, fmt) if count else None
        return (y if out is None else out.copy_(y)), counted


def compare_counts(x: torch.Tensor, y: torch.Tensor, fmt: Format) -> RoundingCounts:
    """The counts by definition, from the input and the result."""
    top = largest_value(fmt)
    mag = y.abs()
    return RoundingCounts(
        flushed=int(((x != 0) & (mag == 0)).sum()),
        beyond=int(((x.abs() > top) & torch.isfinite(x)).sum()),
        at_limit=int((mag >= top).sum()),
    )


def _run(
    x: torch.Tensor,
    out: torch.Tensor,
    fmt: FloatFormat,
    mode: RoundingMode,
    generator: torch.Generator | None,
    carrier: K.Carrier,
    tally: bool,
) -> torch.Tensor:
    """The kernel from ``x``'s memory into ``out``'s; what :func:`_dispatch.run` returns."""
    return _dispatch.run(
        x.detach().view(-1).view(carrier.int_dtype),
        out.detach().view(-1).view(carrier.int_dtype),
        _params(fmt, mode, carrier.name, x.device),
        _key(mode, generator, x.device),
        _dispatch.Spec(carrier, mode, fmt.has_negative_zero, tally),
    )


def _round(
    x: torch.Tensor,
    fmt: FloatFormat | FixedFormat,
    mode: RoundingMode,
    generator: torch.Generator | None,
    carrier: K.Carrier,
) -> torch.Tensor:
    """Out of place through a contiguous copy in the carrier's dtype."""
    flat = x.detach().to(carrier.float_dtype).contiguous().view(-1)
    if flat.numel() == 0:
        return x.detach().clone()
    signed_zero = isinstance(fmt, FloatFormat) and fmt.has_negative_zero
    bits = _dispatch.run(
        flat.view(carrier.int_dtype),
        None,
        _params(fmt, mode, carrier.name, flat.device),
        _key(mode, generator, flat.device),
        _dispatch.Spec(carrier, mode, signed_zero),
    )
    y = bits.view(carrier.float_dtype)
    if isinstance(fmt, FixedFormat):
        y = _fixed_range(y, fmt)
    elif not fmt.signed:
        y = torch.where(flat < 0, torch.nan, y + 0.0)  # no sign bit: negatives are NaN, -0 is 0
    return _owning(y.view(x.shape).to(x.dtype))


def _carrier(x: torch.Tensor, fmt: FloatFormat | FixedFormat) -> K.Carrier:
    return K.F64 if x.dtype == torch.float64 or _needs_f64(fmt) else K.F32


def _owning(t: torch.Tensor) -> torch.Tensor:
    """``t`` re-pointed at its own storage so it is not a view (no copy).

    The result is a dtype view of the kernel's integer output; autograd forbids in-place
    ops (``ReLU(inplace=True)``) on views returned from a custom Function, and nothing else
    holds that buffer.
    """
    if t._base is None or torch.compiler.is_compiling():
        return t
    return t.new_empty(0).set_(t.untyped_storage(), t.storage_offset(), t.size(), t.stride())


def _needs_f64(fmt: FloatFormat | FixedFormat) -> bool:
    """The float32 kernel needs the format's normals inside float32's normal range (its
    subnormals may be float32 subnormals); a custom bias can put them below."""
    return isinstance(fmt, FloatFormat) and fmt.emin < K.F32_EMIN


def _key(
    mode: RoundingMode, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    if mode is not RoundingMode.STOCHASTIC:
        return _zero_key(device)
    key = torch.randint(0, 1 << 32, (2,), dtype=torch.int64, generator=generator)
    return key.to(device)


@lru_cache(maxsize=16)
def _zero_key(device: torch.device) -> torch.Tensor:
    return torch.zeros(2, dtype=torch.int64, device=device)


@lru_cache(maxsize=1024)
def _params(
    fmt: FloatFormat | FixedFormat, mode: RoundingMode, carrier_name: str, device: torch.device
) -> torch.Tensor:
    c = K.CARRIERS[carrier_name]
    p = kernel_params(fmt, mode, c)
    return torch.tensor(p, dtype=c.int_dtype, device=device)


def kernel_params(fmt: FloatFormat | FixedFormat, mode: RoundingMode, c: K.Carrier) -> list[int]:
    """The kernel's parameter vector for ``fmt`` (see the layout in ``_kernel``)."""
    p = [0] * K.N_PARAMS
    if isinstance(fmt, FixedFormat):
        # Fixed point is the float kernel's uniform-spacing region: a format whose ulp is
        # 2**-F over the whole range; the range itself is applied afterwards.
        m_eff = min(c.mant, c.bias + fmt.fraction_bits)
        p[K.DROP] = c.mant - m_eff
        p[K.EMIN_FIELD] = m_eff - fmt.fraction_bits + c.bias
        p[K.SUB_DROP] = p[K.DROP] + p[K.EMIN_FIELD]
        p[K.Q_BITS] = c.bits(fmt.resolution)
        p[K.MAX_BITS] = c.max_finite_bits
        # Only an infinite input lies beyond the carrier's largest value here (rounding to
        # a spacing of 2**-F never carries past it); it stays infinite for the range step.
        p[K.OVER_POS] = p[K.OVER_NEG] = p[K.INF_POS] = p[K.INF_NEG] = c.inf_bits
        return p
    inf, mx, nan = c.inf_bits, c.bits(fmt.max_finite), c.nan_bits
    p[K.DROP] = c.mant - fmt.mantissa_bits
    p[K.EMIN_FIELD] = fmt.emin + c.bias
    # under the smallest normal: gradual underflow keeps dropping one bit per binade from
    # the normal drop; without subnormals the whole region is one step of 2**emin
    p[K.SUB_DROP] = p[K.EMIN_FIELD] + (p[K.DROP] if fmt.subnormals else c.mant)
    p[K.Q_BITS] = c.bits(fmt.smallest_positive)
    p[K.MAX_BITS] = mx
    # IEEE 754 7.4: a directed mode that rounds toward the finite side never overflows; it
    # gives the largest finite value (with the input's sign) whatever the format's policy.
    # Only a rounding that would go past it (to infinity) takes the overflow policy:
    # infinity, NaN or saturation. Infinite inputs are not overflow: in every mode they
    # become the policy's value (infinity under the inf policy).
    policy = {Overflow.INF: inf, Overflow.NAN: nan, Overflow.SATURATE: mx}
    over = policy[fmt.overflow]  # type: ignore[index]
    finite_pos = mode in (RoundingMode.TOWARD_ZERO, RoundingMode.TOWARD_NEGATIVE)
    finite_neg = mode in (RoundingMode.TOWARD_ZERO, RoundingMode.TOWARD_POSITIVE)
    p[K.OVER_POS] = mx if finite_pos else over
    p[K.OVER_NEG] = mx if finite_neg else over
    p[K.INF_POS] = p[K.INF_NEG] = over
    return p


def _fixed_range(y: torch.Tensor, fmt: FixedFormat) -> torch.Tensor:
    lo, hi = fmt.min_value, fmt.max_value
    if fmt.overflow is FixedOverflow.SATURATE:
        return torch.clamp(y, lo, hi)
    span = 2.0 ** (fmt.word_bits - fmt.fraction_bits)
    t = torch.remainder(y, span)  # exact: fmod of multiples of 2**-F by a power of two
    if fmt.signed:
        t = torch.where(t > hi, t - span, t)
    t = torch.where(torch.isinf(y), torch.clamp(y, lo, hi), t)
    return t + 0.0  # fmod keeps the dividend's sign: -0.0 + 0.0 is +0.0 (no -0 in fixed point)
