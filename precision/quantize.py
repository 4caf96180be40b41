"""``quantize``: the single entry point that rounds values to an emulated format.

Every other module (autograd quantizers, optimizers, the emulated tensor, collectives,
hpcprof's bits-needed runs) calls :func:`quantize`; the bit work lives in
:mod:`precision._kernel` only.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple, TypeVar, overload

import numpy as np
import torch

from precision import _dispatch
from precision import _kernel as K
from precision._memory import empty_output
from precision.formats import BlockFormat, FixedFormat, FixedOverflow, FloatFormat, Format
from precision.rounding import Overflow, RoundingMode

_DTYPE_NAMES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}
_NP_DTYPES = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}

T = TypeVar("T", torch.Tensor, np.ndarray)


@overload
def quantize(
    x: torch.Tensor,
    fmt: Format | str,
    rounding: RoundingMode | str = ...,
    *,
    generator: torch.Generator | None = ...,
) -> torch.Tensor: ...
@overload
def quantize(
    x: np.ndarray,
    fmt: Format | str,
    rounding: RoundingMode | str = ...,
    *,
    generator: torch.Generator | None = ...,
) -> np.ndarray: ...
def quantize(
    x: torch.Tensor | np.ndarray,
    fmt: Format | str,
    rounding: RoundingMode | str = RoundingMode.NEAREST_EVEN,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor | np.ndarray:
    """Round every element of ``x`` to the nearest value of ``fmt`` under ``rounding``.

    Args:
        x: a torch tensor (float16, bfloat16, float32 or float64; any device, shape and
            strides) or a NumPy array (float16, float32, float64).
        fmt: a :class:`FloatFormat`, :class:`FixedFormat` or :class:`BlockFormat`, or a name
            that :func:`precision.registry.parse` accepts (``"bfloat16"``, ``"e3m0"``).
        rounding: a :class:`RoundingMode` (or its name).
        generator: source of the 64-bit key of stochastic rounding. Same generator state,
            same bits, on any device and backend. None uses torch's default CPU generator.

    Returns:
        A new tensor/array of the same type, dtype and shape holding values of ``fmt``
        (NaN stays NaN; infinities per the format's overflow policy). Not differentiable:
        see :mod:`precision.autograd` for straight-through quantizers.

    Raises:
        TypeError: ``x`` is not a floating tensor/array of a supported dtype.
        ValueError: ``fmt`` has values that ``x``'s dtype cannot hold (e.g. ``e11m30`` on a
            float32 tensor: pass float64).
    """
    from precision.registry import parse

    fmt = parse(fmt)
    mode = RoundingMode.parse(rounding)
    if isinstance(x, np.ndarray):
        if x.dtype not in _NP_DTYPES:
            raise TypeError(f"quantize: NumPy dtype {x.dtype} unsupported; use float16/32/64")
        return quantize(
            torch.from_numpy(np.ascontiguousarray(x)), fmt, mode, generator=generator
        ).numpy()
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"quantize: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}"
        )
    dtype_name = _DTYPE_NAMES.get(x.dtype)
    if dtype_name is None:
        raise TypeError(
            f"quantize: dtype {x.dtype} unsupported; use float16, bfloat16, float32 or float64"
        )
    if isinstance(fmt, BlockFormat):
        from precision.block import quantize_blocks

        return quantize_blocks(x, fmt, mode, generator=generator)
    if not fmt.fits_in(dtype_name):
        raise ValueError(
            f"format {fmt} has values that {dtype_name} cannot hold exactly; "
            f"pass a {fmt.carrier} input" + (" (or float64)" if fmt.carrier != "float64" else "")
        )
    return _round(x, fmt, mode, generator)


def quantize_(
    x: torch.Tensor,
    fmt: Format | str,
    rounding: RoundingMode | str = RoundingMode.NEAREST_EVEN,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """In-place :func:`quantize`: overwrites ``x`` with its rounded values and returns it.

    For contiguous float32/float64 tensors the kernel writes straight into ``x`` (no new
    buffer); other tensors are rounded out of place and copied back. Same arguments, same
    bits, same errors as :func:`quantize`.
    """
    from precision.registry import parse

    fmt, mode = parse(fmt), RoundingMode.parse(rounding)
    if (
        (isinstance(fmt, FixedFormat) or (isinstance(fmt, FloatFormat) and fmt.signed))
        and x.is_contiguous()
        and x.dtype == _carrier(x, fmt).float_dtype
        and fmt.fits_in(_DTYPE_NAMES[x.dtype])
    ):
        return _round(x, fmt, mode, generator, inplace=True)
    with torch.no_grad():
        return x.copy_(quantize(x, fmt, mode, generator=generator))


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


def quantize_counted(
    x: torch.Tensor,
    fmt: Format | str,
    rounding: RoundingMode | str = RoundingMode.NEAREST_EVEN,
    *,
    out: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, RoundingCounts]:
    """:func:`quantize` that also counts underflow, overflow and saturation.

    For contiguous float32/float64 tensors, signed float formats and a separate ``out``, the
    counts come out of the rounding pass itself (no extra read of either tensor); otherwise
    they are taken by comparing the input with the result.

    Args:
        x: a torch tensor (same dtypes as :func:`quantize`).
        fmt: the format (or its name).
        rounding: the rounding mode.
        out: tensor of ``x``'s shape and dtype that receives the result; ``x`` itself
            rounds in place. None: a new tensor.
        generator: as for :func:`quantize`.

    Returns:
        The rounded tensor (``out`` when given) and its :class:`RoundingCounts`.

    Raises:
        ValueError: as :func:`quantize`, or ``out`` has another shape, dtype or device.
    """
    from precision.registry import parse

    fmt, mode = parse(fmt), RoundingMode.parse(rounding)
    if out is not None:
        _check_out("quantize_counted", x, out)
    carrier = _direct(x, fmt)
    if (
        carrier is not None
        and isinstance(fmt, FloatFormat)  # (as _direct checked: for the type checker)
        and (out is None or (out.is_contiguous() and out.data_ptr() != x.data_ptr()))
        and x.numel() < 1 << 31
    ):
        dest = empty_output(x) if out is None else out
        if x.numel() == 0:
            return dest, RoundingCounts(0, 0, 0)
        counts = _run_direct(x, dest, fmt, mode, generator, carrier, tally=True)
        flushed, beyond, at_limit = (int(c) for c in counts.tolist())
        return dest, RoundingCounts(flushed, beyond, at_limit)
    with torch.no_grad():
        y = quantize(x, fmt, mode, generator=generator)  # x is read before out is written
        top = largest_value(fmt)
        mag = y.abs()
        flushed = int(((x != 0) & (mag == 0)).sum())
        beyond = int(((x.abs() > top) & torch.isfinite(x)).sum())
        at_limit = int((mag >= top).sum())
        dest = y if out is None else out.copy_(y)
    return dest, RoundingCounts(flushed, beyond, at_limit)


def quantize_into(
    x: torch.Tensor,
    out: torch.Tensor,
    fmt: Format | str,
    rounding: RoundingMode | str = RoundingMode.NEAREST_EVEN,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`quantize` writing into ``out`` (``x``'s shape, dtype and device; a separate
    buffer, or ``x`` itself). For contiguous float32/float64 tensors the kernel stores
    straight into ``out``, which is faster than rounding in place. Returns ``out``.

    Raises:
        ValueError: as :func:`quantize`, or ``out`` does not match ``x``.
    """
    from precision.registry import parse

    fmt, mode = parse(fmt), RoundingMode.parse(rounding)
    _check_out("quantize_into", x, out)
    if out.data_ptr() == x.data_ptr():
        return quantize_(x, fmt, mode, generator=generator)
    carrier = _direct(x, fmt)
    if carrier is not None and isinstance(fmt, FloatFormat) and out.is_contiguous():
        if x.numel():
            _run_direct(x, out, fmt, mode, generator, carrier)
        return out
    with torch.no_grad():
        return out.copy_(quantize(x, fmt, mode, generator=generator))


def _check_out(name: str, x: torch.Tensor, out: torch.Tensor) -> None:
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"{name}: out is {tuple(out.shape)} {out.dtype} on {out.device}, x is "
            f"{tuple(x.shape)} {x.dtype} on {x.device}: they must match"
        )


def _run_direct(
    x: torch.Tensor,
    out: torch.Tensor,
    fmt: FloatFormat,
    mode: RoundingMode,
    generator: torch.Generator | None,
    carrier: K.Carrier,
    tally: bool = False,
) -> torch.Tensor:
    """The kernel from ``x``'s memory into ``out``'s (see :func:`_direct`); returns what
    :func:`precision._dispatch.run_into` does."""
    with torch.no_grad():
        return _dispatch.run_into(
            x.detach().view(-1).view(carrier.int_dtype),
            out.detach().view(-1).view(carrier.int_dtype),
            _params(fmt, mode, carrier.name, x.device),
            _key(mode, generator, x.device),
            carrier,
            mode,
            fmt.has_negative_zero,
            tally=tally,
        )


def _direct(x: torch.Tensor, fmt: Format) -> K.Carrier | None:
    """The carrier when the kernel can round ``x`` straight from and to its memory: a
    contiguous tensor of the carrier's dtype and a signed float format it holds."""
    if not (isinstance(fmt, FloatFormat) and fmt.signed and x.is_contiguous()):
        return None
    if x.dtype not in (torch.float32, torch.float64) or not fmt.fits_in(_DTYPE_NAMES[x.dtype]):
        return None
    carrier = _carrier(x, fmt)
    return carrier if x.dtype == carrier.float_dtype else None


def _carrier(x: torch.Tensor, fmt: FloatFormat | FixedFormat) -> K.Carrier:
    return K.F64 if x.dtype == torch.float64 or _needs_f64(fmt) else K.F32


def _round(
    x: torch.Tensor,
    fmt: FloatFormat | FixedFormat,
    mode: RoundingMode,
    generator: torch.Generator | None,
    inplace: bool = False,
) -> torch.Tensor:
    carrier = _carrier(x, fmt)
    flat = x.detach().to(carrier.float_dtype).contiguous().view(-1)
    if flat.numel() == 0:
        return x if inplace else x.detach().clone()
    params = _params(fmt, mode, carrier.name, flat.device)
    key = _key(mode, generator, flat.device)
    signed_zero = isinstance(fmt, FloatFormat) and fmt.has_negative_zero
    bits = _dispatch.run(
        flat.view(carrier.int_dtype), params, key, carrier, mode, signed_zero, inplace
    )
    y = bits.view(carrier.float_dtype)
    if isinstance(fmt, FixedFormat):
        y = _fixed_range(y, fmt)
    elif not fmt.signed:  # (never in place: this needs the input)
        y = torch.where(flat < 0, torch.nan, y + 0.0)  # no sign bit: negatives are NaN, -0 is 0
    if inplace:
        if y.data_ptr() != flat.data_ptr():
            flat.copy_(y)
        return x
    return _owning(y.view(x.shape).to(x.dtype))


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
