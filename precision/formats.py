"""Number formats as data: every constant a kernel needs is a derived property.

A format is a frozen dataclass. Nothing here touches tensors; :mod:`precision.quantize`
turns a format into kernel parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from precision.rounding import Overflow, Specials


@dataclass(frozen=True, kw_only=True)
class FloatFormat:
    """A binary floating-point format with a sign bit.

    Args:
        exponent_bits: width of the exponent field, 1..11.
        mantissa_bits: stored fraction bits (IEEE's t, not counting the implicit bit), 0..52.
        bias: exponent bias; None means IEEE's ``2**(exponent_bits-1) - 1``.
        subnormals: gradual underflow; when False, values below the smallest normal round
            to zero or to the smallest normal (the representable set has nothing between).
        signed: False for formats without a sign bit (the e8m0 scale of MX formats);
            negative inputs then quantize to NaN.
        specials: which bit patterns are reserved (see :class:`Specials`).
        overflow: what finite overflow gives; None picks the natural policy of ``specials``
            (INF for IEEE, NAN for FN/FNUZ, SATURATE for FINITE).
        name: display name (canonical registry spelling); not part of equality.

    Raises:
        ValueError: a field is out of range or the combination is impossible; the message
            says what is allowed.
    """

    exponent_bits: int
    mantissa_bits: int
    bias: int | None = None
    subnormals: bool = True
    specials: Specials = Specials.IEEE
    overflow: Overflow | None = None
    signed: bool = True
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        e, m = self.exponent_bits, self.mantissa_bits
        if not isinstance(e, int) or not 1 <= e <= 11:
            raise ValueError(f"exponent_bits={e!r}: must be an integer in 1..11")
        if not isinstance(m, int) or not 0 <= m <= 52:
            raise ValueError(f"mantissa_bits={m!r}: must be an integer in 0..52")
        object.__setattr__(self, "specials", Specials(self.specials))
        if self.specials is Specials.IEEE and e < 2:
            raise ValueError(
                "exponent_bits=1 with IEEE specials leaves no normal numbers; "
                "use specials='fn', 'fnuz' or 'finite', or exponent_bits >= 2"
            )
        if self.specials is Specials.FN and e + m < 2:
            raise ValueError("specials='fn' needs exponent_bits + mantissa_bits >= 2")
        natural = {
            Specials.IEEE: Overflow.INF,
            Specials.FN: Overflow.NAN,
            Specials.FNUZ: Overflow.NAN,
            Specials.FINITE: Overflow.SATURATE,
        }[self.specials]
        policy = natural if self.overflow is None else Overflow(self.overflow)
        object.__setattr__(self, "overflow", policy)
        if policy is Overflow.INF and not self.has_inf:
            raise ValueError(
                f"overflow='inf' needs a format with infinities (specials='ieee'); "
                f"specials={self.specials.value!r} allows 'saturate'"
                + (" or 'nan'" if self.has_nan else "")
            )
        if policy is Overflow.NAN and not self.has_nan:
            raise ValueError("overflow='nan' needs a format with NaN; use 'saturate'")
        if self.bias is not None and not isinstance(self.bias, int):
            raise ValueError(f"bias={self.bias!r}: must be an integer or None")
        if self.bias == self.ieee_bias:  # one spelling per format, so equality is by value
            object.__setattr__(self, "bias", None)
        if self.emin < -1022 or self.emin_subnormal < -1074 or self.emax > 1023:
            raise ValueError(
                f"bias={self.exponent_bias}: normals 2**{self.emin}..2**{self.emax} (subnormals "
                f"from 2**{self.emin_subnormal}) leave float64's (normals 2**-1022..2**1023, "
                "subnormals from 2**-1074); choose a bias that keeps them inside"
            )

    # ---- identity ---------------------------------------------------------------------
    def __str__(self) -> str:
        return self.name or self.spelling

    @property
    def spelling(self) -> str:
        """Parseable spelling, e.g. ``e5m2``, ``e4m3fn``, ``e8m3b100-nosub-sat``."""
        s = f"{'' if self.signed else 'u'}e{self.exponent_bits}m{self.mantissa_bits}"
        if self.specials is not Specials.IEEE:
            s += self.specials.value
        if self.bias is not None and self.bias != self.ieee_bias:
            s += f"b{self.bias}"
        if not self.subnormals:
            s += "-nosub"
        natural = {Specials.IEEE: Overflow.INF, Specials.FINITE: Overflow.SATURATE}
        if self.overflow is not natural.get(self.specials, Overflow.NAN):
            s += {Overflow.INF: "-inf", Overflow.SATURATE: "-sat", Overflow.NAN: "-nan"}[
                self.overflow  # type: ignore[index]
            ]
        return s

    # ---- exponent range ---------------------------------------------------------------
    @property
    def ieee_bias(self) -> int:
        return (1 << (self.exponent_bits - 1)) - 1

    @property
    def exponent_bias(self) -> int:
        """The bias in use (``bias`` or the IEEE default)."""
        return self.ieee_bias if self.bias is None else self.bias

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.exponent_bias

    @cached_property
    def _top(self) -> tuple[int, int]:
        """(largest finite exponent, largest fraction code at that exponent)."""
        top_code = (1 << self.exponent_bits) - 1
        frac_max = (1 << self.mantissa_bits) - 1
        if self.specials is Specials.IEEE:
            return top_code - 1 - self.exponent_bias, frac_max
        if self.specials is Specials.FN:
            if frac_max == 0:  # the only pattern of the top exponent is NaN
                return top_code - 1 - self.exponent_bias, 0
            return top_code - self.exponent_bias, frac_max - 1
        return top_code - self.exponent_bias, frac_max

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return self._top[0]

    @property
    def emin_subnormal(self) -> int:
        """Exponent of the smallest positive number (subnormal, or normal without them)."""
        return self.emin - self.mantissa_bits if self.subnormals else self.emin

    # ---- derived values ---------------------------------------------------------------
    @property
    def max_finite(self) -> float:
        emax, frac = self._top
        return math.ldexp(1.0 + frac / (1 << self.mantissa_bits), emax)

    @property
    def smallest_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def smallest_subnormal(self) -> float | None:
        """Smallest positive subnormal, or None when the format has no subnormals."""
        return math.ldexp(1.0, self.emin - self.mantissa_bits) if self.subnormals else None

    @property
    def smallest_positive(self) -> float:
        return math.ldexp(1.0, self.emin_subnormal)

    @property
    def epsilon(self) -> float:
        """Distance from 1.0 to the next larger number: ``2**-mantissa_bits``."""
        return math.ldexp(1.0, -self.mantissa_bits)

    @property
    def precision_bits(self) -> int:
        """Significand precision p = mantissa_bits + 1 (the implicit bit)."""
        return self.mantissa_bits + 1

    @property
    def total_bits(self) -> int:
        """Storage width: sign (if any) + exponent + mantissa."""
        return int(self.signed) + self.exponent_bits + self.mantissa_bits

    @property
    def has_inf(self) -> bool:
        return self.specials is Specials.IEEE

    @property
    def has_nan(self) -> bool:
        return self.specials is not Specials.FINITE

    @property
    def has_negative_zero(self) -> bool:
        return self.specials is not Specials.FNUZ

    def fits_in(self, carrier: str) -> bool:
        """True when every value of this format is exactly a ``carrier`` value.

        Args:
            carrier: ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``.
        """
        p, b, _ = _DTYPE_LAYOUT[carrier]
        cmax = math.ldexp(2.0 - math.ldexp(1.0, -p), (1 << _DTYPE_LAYOUT[carrier][2]) - 2 - b)
        return (
            self.mantissa_bits <= p
            and self.emin - self.mantissa_bits >= (1 - b) - p  # finest spacing
            and self.max_finite <= cmax
        )

    @property
    def carrier(self) -> str:
        """Narrowest of float32/float64 that holds every value exactly."""
        return "float32" if self.fits_in("float32") else "float64"


# (mantissa bits, bias, exponent bits) of the torch/numpy dtypes a tensor may have.
_DTYPE_LAYOUT = {
    "float16": (10, 15, 5),
    "bfloat16": (7, 127, 8),
    "float32": (23, 127, 8),
    "float64": (52, 1023, 11),
}


class FixedOverflow(str, Enum):
    """Out-of-range fixed-point values either clamp or wrap modulo 2**word_bits."""

    SATURATE = "saturate"
    WRAP = "wrap"


@dataclass(frozen=True, kw_only=True)
class FixedFormat:
    """Two's-complement (or unsigned) fixed point: integers k times ``2**-fraction_bits``.

    Args:
        word_bits: total bits including the sign bit, 2..53 (1..53 unsigned).
        fraction_bits: bits after the binary point; may be negative or exceed word_bits.
        signed: two's complement when True, else unsigned.
        overflow: saturate (clamp) or wrap (modular, like integer hardware).
    """

    word_bits: int
    fraction_bits: int
    signed: bool = True
    overflow: FixedOverflow = FixedOverflow.SATURATE
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        lo = 2 if self.signed else 1
        if not isinstance(self.word_bits, int) or not lo <= self.word_bits <= 53:
            raise ValueError(f"word_bits={self.word_bits!r}: must be an integer in {lo}..53")
        if not isinstance(self.fraction_bits, int) or not -900 <= self.fraction_bits <= 1000:
            raise ValueError(f"fraction_bits={self.fraction_bits!r}: must be in -900..1000")
        object.__setattr__(self, "overflow", FixedOverflow(self.overflow))
        # The largest value must stay inside float64 and the resolution above its subnormals.
        if self.fraction_bits > 1074 - 53 + self.word_bits or self.fraction_bits < -960:
            raise ValueError(f"fraction_bits={self.fraction_bits}: outside float64's range")

    def __str__(self) -> str:
        if self.name:
            return self.name
        kind = "fixed" if self.signed else "ufixed"
        wrap = "-wrap" if self.overflow is FixedOverflow.WRAP else ""
        return f"{kind}{self.word_bits}.{self.fraction_bits}{wrap}"

    @property
    def resolution(self) -> float:
        return math.ldexp(1.0, -self.fraction_bits)

    @property
    def magnitude_bits(self) -> int:
        return self.word_bits - 1 if self.signed else self.word_bits

    @property
    def min_value(self) -> float:
        if not self.signed:
            return 0.0
        return -math.ldexp(1.0, self.word_bits - 1 - self.fraction_bits)

    @property
    def max_value(self) -> float:
        return math.ldexp((1 << self.magnitude_bits) - 1, -self.fraction_bits)

    @property
    def total_bits(self) -> int:
        return self.word_bits

    def fits_in(self, carrier: str) -> bool:
        p, b, _ = _DTYPE_LAYOUT[carrier]
        e_hi = (1 << _DTYPE_LAYOUT[carrier][2]) - 2 - b
        return (
            self.magnitude_bits <= p + 1
            and -self.fraction_bits >= (1 - b) - p
            and self.magnitude_bits - self.fraction_bits - 1 <= e_hi
        )

    @property
    def carrier(self) -> str:
        return "float32" if self.fits_in("float32") else "float64"


@dataclass(frozen=True, kw_only=True)
class BlockFormat:
    """Block floating point: blocks of ``block_size`` elements share one scale.

    With a power-of-two scale format (``mantissa_bits == 0``, e.g. e8m0) this is the OCP
    Microscaling (MX) rule: scale = 2**(floor(log2(amax)) - emax_element), clamped to the
    scale format's range. With a scale format that has mantissa bits (e.g. e4m3 in NVFP4),
    scale = quantize(amax / max_element, scale format, nearest).

    Args:
        element: format of each element (FloatFormat or FixedFormat).
        block_size: elements per block along ``axis`` (the last block may be partial).
        scale: format of the shared scale.
        axis: tensor dimension along which blocks are formed.
    """

    element: FloatFormat | FixedFormat
    block_size: int
    scale: FloatFormat
    axis: int = -1
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"block_size={self.block_size!r}: must be a positive integer")
        if not isinstance(self.element, FloatFormat | FixedFormat):
            raise ValueError("element: must be a FloatFormat or FixedFormat")
        if not isinstance(self.scale, FloatFormat):
            raise ValueError("scale: must be a FloatFormat (e.g. e8m0 for MX formats)")

    def __str__(self) -> str:
        return self.name or f"block{self.block_size}[{self.element}|{self.scale}]"

    @property
    def total_bits(self) -> float:
        """Average storage per element, scale included."""
        return self.element.total_bits + self.scale.total_bits / self.block_size

    @property
    def carrier(self) -> str:
        return self.element.carrier


Format = FloatFormat | FixedFormat | BlockFormat
