"""Exact rounding oracle on Python Fractions: independent of the bit-level kernel."""

from __future__ import annotations

import math
from fractions import Fraction

from precision.formats import FixedFormat, FixedOverflow, FloatFormat
from precision.rounding import Overflow
from precision.rounding import RoundingMode as R

NAN = float("nan")


def neighbours(v: Fraction, fmt: FloatFormat) -> tuple[Fraction, Fraction]:
    """Largest format value <= |v| and the next value up, ignoring the top of the range."""
    a = abs(v)
    if a == 0:
        return Fraction(0), Fraction(0)
    n, d = a.numerator, a.denominator
    e = n.bit_length() - d.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    if e < fmt.emin:
        step = (
            Fraction(2) ** (fmt.emin - fmt.mantissa_bits)
            if fmt.subnormals
            else Fraction(2) ** fmt.emin
        )
    else:
        step = Fraction(2) ** (e - fmt.mantissa_bits)
    lo = (a // step) * step
    return lo, lo + step


def _even(v: Fraction, fmt: FloatFormat) -> bool:
    """Whether the encoding of |v| ends in an even digit (exponent code when m = 0)."""
    if v == 0:
        return True
    n, d = v.numerator, v.denominator
    e = n.bit_length() - d.bit_length()
    if Fraction(2) ** e > v:
        e -= 1
    if e < fmt.emin:
        units = v / Fraction(2) ** (fmt.emin - fmt.mantissa_bits)
        return units.numerator % 2 == 0
    if fmt.mantissa_bits == 0:
        return False  # significand is always 1: ties go to the larger magnitude
    units = v / Fraction(2) ** (e - fmt.mantissa_bits)
    return units.numerator % 2 == 0


def round_float(x: float, fmt: FloatFormat, mode: R) -> float:
    """Correctly rounded value of x in fmt (deterministic modes)."""
    if math.isnan(x):
        return NAN
    if not fmt.signed:
        if x < 0:
            return NAN
        x = abs(x)  # -0.0 is 0.0
    neg = math.copysign(1.0, x) < 0
    mx = Fraction(fmt.max_finite)
    if math.isinf(x):
        if fmt.overflow is Overflow.INF:
            return x
        return NAN if fmt.overflow is Overflow.NAN else math.copysign(fmt.max_finite, x)
    v = Fraction(x)
    lo, hi = neighbours(v, fmt)
    a = abs(v)
    if a == lo:
        r = lo
    elif mode is R.NEAREST_EVEN:
        r = lo if a - lo < hi - a else hi if a - lo > hi - a else (lo if _even(lo, fmt) else hi)
    elif mode is R.NEAREST_AWAY:
        r = lo if a - lo < hi - a else hi
    elif mode is R.TOWARD_ZERO:
        r = lo
    elif mode is R.TOWARD_POSITIVE:
        r = lo if neg else hi
    elif mode is R.TOWARD_NEGATIVE:
        r = hi if neg else lo
    else:
        raise ValueError(mode)
    if r > mx:
        # IEEE 754 7.4: rounding toward the finite side never overflows, whatever the
        # format's policy; only a rounding past the largest finite value takes the policy.
        toward_finite = mode is R.TOWARD_ZERO or (
            mode is (R.TOWARD_NEGATIVE if not neg else R.TOWARD_POSITIVE)
        )
        if toward_finite or fmt.overflow is Overflow.SATURATE:
            r_f = fmt.max_finite
        elif fmt.overflow is Overflow.NAN:
            return NAN
        else:
            r_f = math.inf
        return -r_f if neg else r_f
    out = float(r)
    if out == 0 and not fmt.has_negative_zero:
        return 0.0
    return -out if neg else out


def round_fixed(x: float, fmt: FixedFormat, mode: R) -> float:
    """Correctly rounded fixed-point value of x (deterministic modes)."""
    if math.isnan(x):
        return NAN
    if math.isinf(x):
        return fmt.max_value if x > 0 else fmt.min_value
    v = Fraction(x) * 2**fmt.fraction_bits
    fl = math.floor(v)
    frac = v - fl
    if frac == 0:
        k = fl
    elif mode is R.NEAREST_EVEN:
        k = fl if frac < Fraction(1, 2) else fl + 1 if frac > Fraction(1, 2) else fl + (fl % 2)
    elif mode is R.NEAREST_AWAY:
        k = (
            fl
            if frac < Fraction(1, 2)
            else fl + 1
            if frac > Fraction(1, 2)
            else (fl + 1 if v > 0 else fl)
        )
    elif mode is R.TOWARD_ZERO:
        k = fl if v > 0 else fl + 1
    elif mode is R.TOWARD_POSITIVE:
        k = fl + 1
    elif mode is R.TOWARD_NEGATIVE:
        k = fl
    else:
        raise ValueError(mode)
    lo = -(1 << (fmt.word_bits - 1)) if fmt.signed else 0
    hi = (1 << fmt.magnitude_bits) - 1
    if fmt.overflow is FixedOverflow.SATURATE:
        k = min(max(k, lo), hi)
    else:
        k = (k - lo) % (1 << fmt.word_bits) + lo
    return float(Fraction(k) / 2**fmt.fraction_bits) + 0.0
