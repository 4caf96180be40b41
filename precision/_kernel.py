"""The one bit-level rounding kernel behind every quantizer in this package.

The kernel works on the integer view of a float32 or float64 *carrier* and rounds each
value to a target format described by a short vector of integer parameters, so a single
compiled graph per (carrier, rounding mode) serves every format. ``torch.compile`` fuses
the ~40 integer operations into one pass (inductor's C++/OpenMP code on CPU, Triton on
GPU); the same function runs eagerly where compilation is unavailable, bit for bit equal.

Method. Let ``a`` be the magnitude bits of a carrier value with exponent field ``ef`` and
explicit significand ``s`` (implicit bit included). Rounding to ``m`` mantissa bits drops
``d = (P - m) + max(0, emin_field - max(ef, 1))`` low bits of ``s`` (more bits below the
target's smallest normal: that is gradual underflow). Each mode adds an increment ``inc``
in ``[0, 2**d)`` and truncates: nearest-even adds ``2**(d-1) - 1 + lsb``, stochastic adds
``d`` uniform random bits, directed modes add 0 or ``2**d - 1``. When ``d <= P`` the add
happens in place on ``a`` (a carry into the exponent field is the correct renormalisation);
when ``d > P`` the value is below the smallest positive target value and the result is
that value or zero. Overflow, infinities, NaN and signed zero follow the format's policy.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import torch

from precision.rounding import RoundingMode


@dataclass(frozen=True)
class Carrier:
    """An IEEE binary carrier and its same-width integer type."""

    name: str
    width: int
    mant: int
    bias: int
    float_dtype: torch.dtype
    int_dtype: torch.dtype

    @property
    def abs_mask(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def inf_bits(self) -> int:
        return ((1 << (self.width - 1 - self.mant)) - 1) << self.mant

    @property
    def nan_bits(self) -> int:
        return self.inf_bits | (1 << (self.mant - 1))

    @property
    def max_finite_bits(self) -> int:
        return self.inf_bits - 1

    @property
    def dmax(self) -> int:
        """Most bits dropped in one add: keeps ``s + inc`` below the sign bit."""
        return self.width - 2

    def bits(self, value: float) -> int:
        """Magnitude bit pattern of ``|value|`` in this carrier (value must be exact)."""
        if self.width == 32:
            return int(struct.unpack("<i", struct.pack("<f", abs(value)))[0])
        return int(struct.unpack("<q", struct.pack("<d", abs(value)))[0])


F32 = Carrier("float32", 32, 23, 127, torch.float32, torch.int32)
F64 = Carrier("float64", 64, 52, 1023, torch.float64, torch.int64)
CARRIERS = {"float32": F32, "float64": F64}
F32_EMIN = 1 - F32.bias

# Indices into the parameter vector: bits dropped from a normal value; biased carrier
# exponent of the target's smallest normal; bits dropped under it plus that exponent
# (so that drop = SUB_DROP - exponent there); bit patterns of the smallest positive value,
# the largest finite value, what overflow and infinite inputs become (by sign).
DROP, EMIN_FIELD, SUB_DROP, Q_BITS, MAX_BITS, OVER_POS, OVER_NEG, INF_POS, INF_NEG = range(9)
N_PARAMS = 9

_NEEDS_STICKY = (
    RoundingMode.TOWARD_POSITIVE,
    RoundingMode.TOWARD_NEGATIVE,
    RoundingMode.STOCHASTIC,
)
_M32 = 0xFFFFFFFF
_HASH_MUL = 0x45D9F3B


def mix32(h: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash (xorshift-multiply), computed in int64 without
    overflow: the multiplier is below 2**27, so products stay below 2**59."""
    h = (((h >> 16) ^ h) * _HASH_MUL) & _M32
    h = (((h >> 16) ^ h) * _HASH_MUL) & _M32
    return (h >> 16) ^ h


def random_bits(n: int, key: torch.Tensor, carrier: Carrier, device: torch.device) -> torch.Tensor:
    """Counter-based uniform random integers in ``[0, 2**carrier.dmax)``, one per element.

    Element ``i`` gets a hash of ``(i, key)``, so results do not depend on device, thread
    count or whether the kernel was compiled. ``key`` holds two 32-bit words drawn from the
    caller's ``torch.Generator``.
    """
    idx = torch.arange(n, device=device, dtype=torch.int64)
    lo, hi = idx & _M32, idx >> 32
    h = mix32(mix32(lo ^ key[0]) ^ hi ^ key[1])
    if carrier.width == 32:
        return (h >> 2).to(torch.int32)
    h2 = mix32(mix32(lo ^ key[1]) ^ hi ^ key[0] ^ 0x68E31DA4)
    return (h << 30) | (h2 >> 2)


def round_bits(
    b: torch.Tensor,
    p: torch.Tensor,
    key: torch.Tensor,
    carrier: Carrier,
    mode: RoundingMode,
    signed_zero: bool = True,
) -> torch.Tensor:
    """Round the carrier bit patterns ``b`` (1-D, int32/int64) to the format in ``p``.

    ``signed_zero`` is False for formats without -0 (fnuz, fixed point): a result of zero
    then drops the sign. It is a compile-time constant, not a parameter, because almost
    every format has -0 and the test costs a few operations per element.
    """
    P = carrier.mant
    a_in = b & carrier.abs_mask
    is_nan = a_in > carrier.inf_bits
    a = torch.clamp(a_in, max=carrier.inf_bits)  # NaN is restored at the end
    ef = a >> P
    ee = torch.clamp(ef, min=1)  # carrier subnormals share the exponent of the first binade
    # Bits to drop: the mantissa difference, plus one per binade under the target's
    # smallest normal (gradual underflow; without subnormals that region is one step).
    d = torch.where(ef < p[EMIN_FIELD], p[SUB_DROP] - ee, p[DROP])
    dd = torch.clamp(d, max=carrier.dmax)
    s = a - ((ee - 1) << P)  # explicit significand: the implicit bit for normals, f below
    one = torch.ones_like(a)  # a tensor, not a Python int, on the left of `<<`: codegen
    # would otherwise shift a 32-bit literal
    if mode in _NEEDS_STICKY:
        # Values more than dmax bits under the smallest step: shift them into range and keep
        # a sticky bit, so "any nonzero part rounds away" and stochastic odds survive.
        # Nearest and toward-zero give 0 there without it.
        k = torch.clamp(d - carrier.dmax, min=0, max=carrier.dmax)
        s = (s >> k) | ((s & ((one << k) - 1)) != 0).to(s.dtype)
    mask = (one << dd) - 1
    neg = b < 0
    inc = _increment(s, dd, mask, neg, key, carrier, mode)
    in_place = (a + inc) & ~mask
    # Under the smallest positive value (d > P): s + inc < 2**(dd+1), so the carry bit says
    # whether the result is that value or zero.
    tiny = -((s + inc) >> dd) & p[Q_BITS]  # (carry 0 or 1: all bits of Q or none)
    r = torch.where(d > P, tiny, in_place)
    r = _overflow(r, a, neg, p, carrier, mode)
    sign = b ^ a_in  # the sign bit alone
    out = r | sign if signed_zero else r | torch.where(r != 0, sign, 0)
    return torch.where(is_nan, b, out)


def _increment(
    s: torch.Tensor,
    dd: torch.Tensor,
    mask: torch.Tensor,
    neg: torch.Tensor,
    key: torch.Tensor,
    carrier: Carrier,
    mode: RoundingMode,
) -> torch.Tensor:
    """What :func:`round_bits` adds to a magnitude before clearing its ``dd`` dropped bits
    (``mask``): the rounding mode itself. ``s`` is the explicit significand, ``neg`` the
    sign of each input."""
    if mode is RoundingMode.NEAREST_EVEN:
        # The kept lsb of s. With no mantissa bits it is the implicit bit, 1 for every
        # normal: "even" cannot pick a neighbour, and ties go to the larger magnitude, as
        # ml_dtypes' e8m0 does.
        lsb = (s >> dd) & 1
        return (lsb + (mask >> 1)) & mask
    if mode is RoundingMode.NEAREST_AWAY:
        return ((mask >> 1) + 1) & mask
    if mode is RoundingMode.TOWARD_ZERO:
        return torch.zeros_like(s)
    if mode is RoundingMode.TOWARD_POSITIVE:
        return torch.where(neg, 0, mask)
    if mode is RoundingMode.TOWARD_NEGATIVE:
        return torch.where(neg, mask, 0)
    return random_bits(s.numel(), key, carrier, s.device) >> (carrier.dmax - dd)


def _overflow(
    r: torch.Tensor,
    a: torch.Tensor,
    neg: torch.Tensor,
    p: torch.Tensor,
    carrier: Carrier,
    mode: RoundingMode,
) -> torch.Tensor:
    """The rounded magnitudes ``r`` with overflow and infinite inputs (``a``, the input
    magnitudes) replaced by what the format's policy and the rounding mode give."""
    if mode in (RoundingMode.TOWARD_POSITIVE, RoundingMode.TOWARD_NEGATIVE):
        r = torch.where(r > p[MAX_BITS], torch.where(neg, p[OVER_NEG], p[OVER_POS]), r)
        r = torch.where(a == carrier.inf_bits, torch.where(neg, p[INF_NEG], p[INF_POS]), r)
    else:  # overflow does not depend on the sign in the other modes
        r = torch.where(r > p[MAX_BITS], p[OVER_POS], r)
        if mode is RoundingMode.TOWARD_ZERO:
            # Only here can an infinite input and a finite overflow differ (IEEE 754 7.4:
            # overflow toward zero gives the largest finite value, infinity stays). In the
            # nearest and stochastic modes ``a`` = Inf keeps its bits (its low bits are
            # zero and ``inc`` is below 2**dd), which the line above already sent to
            # OVER_POS = INF_POS.
            r = torch.where(a == carrier.inf_bits, p[INF_POS], r)
    return r


def round_tally(
    b: torch.Tensor,
    p: torch.Tensor,
    key: torch.Tensor,
    carrier: Carrier,
    mode: RoundingMode,
    signed_zero: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`round_bits` plus three counts taken in the same pass (an int32 vector): nonzero
    inputs rounded to zero; finite inputs of magnitude above the format's largest finite
    value; results of magnitude at least that value, infinities included (NaN is in none
    of them)."""
    r = round_bits(b, p, key, carrier, mode, signed_zero)
    a_in = b & carrier.abs_mask
    ra = r & carrier.abs_mask
    top = p[MAX_BITS]
    counts = torch.stack(
        [
            ((a_in != 0) & (ra == 0)).sum(dtype=torch.int32),
            ((a_in > top) & (a_in < carrier.inf_bits)).sum(dtype=torch.int32),
            ((ra >= top) & (ra <= carrier.inf_bits)).sum(dtype=torch.int32),
        ]
    )
    return r, counts
