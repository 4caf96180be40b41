"""Auto-Precision-Scaling (APS): per-layer power-of-two shifts for low-precision reductions.

Reference: R. Han, J. Demmel, Y. You, "Auto-Precision Scaling for Distributed Deep
Learning", ISC High Performance 2021 (arXiv:1911.08907). Before a gradient is summed over
``W`` workers in a narrow format, each layer ``l`` is multiplied by ``2**shift_l`` so that the
largest possible sum, ``W * max|g_l|`` over all workers, lands just under the format's largest
binade; small gradients then stay above the underflow threshold. Dividing by ``2**shift_l``
afterwards is exact, so the only error left is the format's relative rounding error.

Algorithm (one step, per parameter tensor ``l``):

1. ``E_l = ceil(log2(max|g_l|)) + headroom`` on each worker, with ``headroom`` bits reserved
   for the sum (``ceil(log2 W)`` by default, the paper's ``log2(W * max)``).
2. One ``all_reduce(MAX)`` over the vector of all ``E_l`` (the only extra communication).
3. ``shift_l = fmt.emax - E_l``, clamped so ``2**shift_l`` and ``2**-shift_l`` are normal
   numbers of the working dtype.
4. The caller quantizes ``g_l * 2**shift_l``, reduces, and multiplies by ``2**-shift_l``.
   For a float format the two multiplies can be folded into the format itself:
   :func:`shifted_format` is ``fmt`` with its exponent bias raised by ``shift_l``, whose
   values are those of ``fmt`` times ``2**-shift_l``, so rounding ``g_l`` to it is rounding
   ``g_l * 2**shift_l`` to ``fmt`` and scaling back (see :func:`shifted_format`).

Everything here is pure: the MAX exchange goes through a callable the caller passes in.
Exponents travel as floats with two sentinels: ``-inf`` for an all-zero tensor (any shift is
exact; shift 0 is used) and ``+inf`` for a tensor holding Inf or NaN (no shift
is meaningful; the layer is reported as non-finite, never silently given a shift).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from precision.formats import BlockFormat, FixedFormat, FloatFormat, Format

__all__ = [
    "NonFiniteGradientError",
    "ShiftPlan",
    "apply_shifts",
    "compute_shifts",
    "default_headroom",
    "exponents_from_amax",
    "format_emax",
    "local_exponents",
    "shift_bounds",
    "shifted_format",
    "shifts_from_exponents",
]


class NonFiniteGradientError(FloatingPointError):
    """A gradient held Inf or NaN, so no APS shift exists for it."""


def format_emax(fmt: Format) -> int:
    """Exponent of the largest binade of ``fmt`` (the shift target of step 3).

    Args:
        fmt: a float format (its ``emax``), fixed-point format (exponent of its top bit) or
            block format (its element format's value).
    """
    if isinstance(fmt, BlockFormat):
        return format_emax(fmt.element)
    if isinstance(fmt, FixedFormat):
        return fmt.magnitude_bits - 1 - fmt.fraction_bits
    if isinstance(fmt, FloatFormat):
        return fmt.emax
    raise TypeError(f"format_emax: expected a format, got {type(fmt).__name__}")


def default_headroom(world_size: int) -> int:
    """``ceil(log2 W)``: the bits a sum of ``W`` values can grow by.

    Raises:
        ValueError: ``world_size`` < 1.
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size}: must be at least 1")
    return (world_size - 1).bit_length()


def shift_bounds(dtype: torch.dtype) -> tuple[int, int]:
    """Smallest and largest shift allowed for tensors of ``dtype``.

    Both ``2**shift`` and ``2**-shift`` must be normal numbers of ``dtype``, so one multiply
    scales exactly (unless the scaled value itself leaves the dtype's range). Without the
    clamp, an 8-bit-exponent format on tiny gradients asks for ``2**147``, which is Inf in
    float32 and turns zeros into NaN.
    """
    info = torch.finfo(dtype)
    hi = math.frexp(info.max)[1] - 1
    lo = math.frexp(info.tiny)[1] - 1
    return max(lo, -hi), min(hi, -lo)


def local_exponents(tensors: Sequence[torch.Tensor], headroom: int) -> torch.Tensor:
    """Step 1: ``ceil(log2(max|g|)) + headroom`` per tensor, computed exactly.

    Args:
        tensors: the local gradient of each layer.
        headroom: bits reserved for the growth of the sum (see :func:`default_headroom`).

    Returns:
        A float32 vector, one entry per tensor: an integer, ``-inf`` for an all-zero (or
        empty) tensor, ``+inf`` for a tensor holding Inf or NaN.
    """
    if not tensors:
        return torch.empty(0, dtype=torch.float32)
    amax = torch.stack(
        [
            t.detach().abs().amax().to(torch.float64)
            if t.numel()
            else torch.zeros((), dtype=torch.float64, device=t.device)
            for t in tensors
        ]
    )
    return exponents_from_amax(amax, headroom)


def exponents_from_amax(amax: torch.Tensor, headroom: int) -> torch.Tensor:
    """Step 1 from precomputed maxima ``amax`` (any float dtype, non-negative or NaN)."""
    return torch.tensor(
        [_exponent(v, headroom) for v in amax.detach().to(torch.float64).cpu().tolist()],
        dtype=torch.float32,
    )


def _exponent(amax: float, headroom: int) -> float:
    if not math.isfinite(amax):  # Inf or NaN
        return math.inf
    if amax <= 0:
        return -math.inf
    # amax = mant * 2**exp with mant in [0.5, 1): ceil(log2 amax) is exp, or exp - 1 when
    # amax is exactly a power of two. Integer math, so no log2 rounding at binade edges.
    mant, exp = math.frexp(amax)
    return float(exp - (mant == 0.5) + headroom)


@dataclass(frozen=True)
class ShiftPlan:
    """The shifts of one step, for scaling and for logging.

    Attributes:
        exponents: global ``E_l`` per layer; None for an all-zero layer or a non-finite one.
        shifts: ``shift_l`` per layer (0 for an all-zero layer, and for a non-finite layer,
            which is sent unscaled).
        nonfinite: True where some worker's gradient held Inf or NaN.
    """

    exponents: tuple[int | None, ...]
    shifts: tuple[int, ...]
    nonfinite: tuple[bool, ...]

    @property
    def any_nonfinite(self) -> bool:
        return any(self.nonfinite)


def shifts_from_exponents(
    exponents: torch.Tensor, fmt: Format, dtype: torch.dtype = torch.float32
) -> ShiftPlan:
    """Step 3: turn global exponents (after the MAX exchange) into clamped shifts.

    Args:
        exponents: float vector from :func:`local_exponents`, reduced with MAX over workers.
        fmt: the communication format.
        dtype: working dtype of the scaled tensors (bounds the shift, see
            :func:`shift_bounds`).
    """
    lo, hi = shift_bounds(dtype)
    emax = format_emax(fmt)
    exps: list[int | None] = []
    shifts: list[int] = []
    nonfinite: list[bool] = []
    for value in exponents.detach().cpu().tolist():
        if math.isnan(value) or value == math.inf:
            exps.append(None)
            shifts.append(0)
            nonfinite.append(True)
        elif value == -math.inf:  # zero on every worker: nothing to scale
            exps.append(None)
            shifts.append(0)
            nonfinite.append(False)
        else:
            exps.append(int(value))
            shifts.append(min(hi, max(lo, emax - int(value))))
            nonfinite.append(False)
    return ShiftPlan(tuple(exps), tuple(shifts), tuple(nonfinite))


def compute_shifts(
    tensors: Sequence[torch.Tensor],
    fmt: Format,
    world_size: int,
    *,
    headroom: int | None = None,
    reduce_max: Callable[[torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ShiftPlan:
    """Steps 1-3: the shifts of one step.

    Args:
        tensors: this worker's gradient per layer.
        fmt: the communication format.
        world_size: number of workers ``W`` whose gradients will be summed.
        headroom: bits reserved for the sum; None means ``ceil(log2 W)``. A fixed large value
            wastes exponent range (every layer is pushed that many binades further down).
        reduce_max: element-wise MAX of the exponent vector over workers (e.g. a wrapper of
            ``dist.all_reduce(..., op=MAX)``); None for a single process or a caller that
            already holds the global maxima.
        dtype: working dtype of the scaled tensors.

    Raises:
        ValueError: ``world_size`` < 1.
    """
    room = default_headroom(world_size) if headroom is None else int(headroom)
    e = local_exponents(tensors, room)
    if reduce_max is not None:
        e = reduce_max(e)
    return shifts_from_exponents(e, fmt, dtype)


def apply_shifts(
    flat: torch.Tensor, bounds: Sequence[tuple[int, int]], shifts: Sequence[int], sign: int = 1
) -> None:
    """Multiply each segment ``flat[a:b]`` by ``2**(sign * shift)`` in place.

    Exact for every value whose result is a normal number of ``flat.dtype``; with a negative
    shift, values pushed below that range lose bits, but they are then far below the
    resolution of any format narrower than the dtype, which rounds them to zero anyway.

    Args:
        flat: 1-D tensor holding the layers back to back.
        bounds: ``(start, stop)`` of each layer in ``flat``.
        shifts: one shift per layer, within :func:`shift_bounds` of ``flat.dtype``.
        sign: +1 to scale up before quantizing, -1 to undo it after the reduction.
    """
    pairs = [
        (flat[a:b], math.ldexp(1.0, sign * s)) for (a, b), s in zip(bounds, shifts, strict=True)
    ]
    pairs = [(seg, f) for seg, f in pairs if f != 1.0 and seg.numel()]
    if pairs:  # one call for all layers: each exact multiply costs more to dispatch than do
        torch._foreach_mul_([seg for seg, _ in pairs], [f for _, f in pairs])


@functools.lru_cache(maxsize=4096)
def shifted_format(fmt: Format, shift: int, dtype: torch.dtype) -> FloatFormat | None:
    """``fmt`` with its exponent bias raised by ``shift``, or None where that cannot stand in
    for the multiply of step 4.

    Every value of the result is the matching value of ``fmt`` times ``2**-shift``, and its
    overflow and underflow thresholds move with them, so for a tensor ``g`` of ``dtype``::

        quantize(g, shifted_format(fmt, s, dtype)) == quantize(g * 2**s, fmt) * 2**-s

    in every rounding mode (stochastic with the same generator state), bit for bit, whenever
    ``g * 2**s`` is exact in ``dtype`` (the multiply neither overflows nor lands in its
    subnormals; where it does, the shifted format rounds once where the multiply path rounded
    twice). Sums scale the same way, so a reduction can stay in the unscaled domain and skip
    both multiplies.

    Args:
        fmt: the communication format.
        shift: the layer's APS shift.
        dtype: working dtype of the tensors to round.

    Returns:
        The shifted format; None for a format that is not a :class:`FloatFormat`, or when the
        shifted format would be invalid, not exactly representable in ``dtype``, or have
        normal numbers below ``dtype``'s normal range (the float32 rounding kernel needs
        them inside it; see ``precision.quantize``).
    """
    if not isinstance(fmt, FloatFormat):
        return None
    if shift == 0:
        return fmt
    try:
        out = dataclasses.replace(fmt, bias=fmt.exponent_bias + shift, name=None)
    except ValueError:  # leaves float64's range
        return None
    tiny_exponent = math.frexp(torch.finfo(dtype).tiny)[1] - 1
    names = {torch.float32: "float32", torch.float64: "float64"}
    if dtype not in names or not out.fits_in(names[dtype]) or out.emin < tiny_exponent:
        return None
    return out
