"""Rounding modes and overflow/special-value policies (closed sets, so Enums)."""

from __future__ import annotations

from enum import Enum


class RoundingMode(str, Enum):
    """How a value between two representable neighbours is resolved.

    ``NEAREST_EVEN`` is IEEE 754's default (ties to the neighbour with an even last digit).
    ``NEAREST_AWAY`` rounds ties away from zero; it exists to reproduce emulators that do so
    (qtorch's "nearest"), not as a recommended mode. ``STOCHASTIC`` rounds up with probability
    equal to the distance from the lower neighbour in ulps, so the result is unbiased.
    """

    NEAREST_EVEN = "nearest"
    NEAREST_AWAY = "nearest_away"
    TOWARD_ZERO = "toward_zero"
    TOWARD_POSITIVE = "toward_positive"
    TOWARD_NEGATIVE = "toward_negative"
    STOCHASTIC = "stochastic"

    @classmethod
    def parse(cls, text: str | RoundingMode) -> RoundingMode:
        """Parse a user-facing spelling (``"nearest"``, ``"rne"``, ``"up"``, ``"sr"`` ...).

        Raises:
            ValueError: the text names no rounding mode; the message lists the allowed ones.
        """
        if isinstance(text, RoundingMode):
            return text
        key = str(text).strip().lower().replace("-", "_")
        found = _ALIASES.get(key)
        if found is None:
            allowed = ", ".join(sorted(_ALIASES))
            raise ValueError(f"rounding={text!r}: unknown rounding mode; allowed: {allowed}")
        return found

    @property
    def symmetric(self) -> bool:
        """True when ``round(-x) == -round(x)`` (a property the tests check)."""
        return self not in (RoundingMode.TOWARD_POSITIVE, RoundingMode.TOWARD_NEGATIVE)


_ALIASES: dict[str, RoundingMode] = {
    "nearest": RoundingMode.NEAREST_EVEN,
    "nearest_even": RoundingMode.NEAREST_EVEN,
    "rne": RoundingMode.NEAREST_EVEN,
    "nearest_away": RoundingMode.NEAREST_AWAY,
    "rna": RoundingMode.NEAREST_AWAY,
    "toward_zero": RoundingMode.TOWARD_ZERO,
    "rtz": RoundingMode.TOWARD_ZERO,
    "truncate": RoundingMode.TOWARD_ZERO,
    "toward_positive": RoundingMode.TOWARD_POSITIVE,
    "up": RoundingMode.TOWARD_POSITIVE,
    "rup": RoundingMode.TOWARD_POSITIVE,
    "toward_negative": RoundingMode.TOWARD_NEGATIVE,
    "down": RoundingMode.TOWARD_NEGATIVE,
    "rdn": RoundingMode.TOWARD_NEGATIVE,
    "stochastic": RoundingMode.STOCHASTIC,
    "sr": RoundingMode.STOCHASTIC,
}


class Overflow(str, Enum):
    """What a finite value that rounds past the largest finite number becomes.

    Under every policy a directed mode that rounds toward the finite side (toward zero;
    toward negative for positive inputs; toward positive for negative ones) never
    overflows: it gives the largest finite value with the input's sign, as IEEE 754 7.4
    says. Round-to-nearest, stochastic rounding and a directed mode rounding away from
    zero take the policy. ``INF``: infinity; needs a format with infinities.
    ``SATURATE``: the largest finite value (also for infinite inputs). ``NAN``: NaN, as
    float8_e4m3fn conversions do (also for infinite inputs).
    """

    INF = "inf"
    SATURATE = "saturate"
    NAN = "nan"


class Specials(str, Enum):
    """Which bit patterns are reserved for non-finite values.

    ``IEEE``: the all-ones exponent holds infinities and NaNs (float16, bfloat16, e5m2).
    ``FN``: only the all-ones exponent with all-ones mantissa is NaN; no infinities, so the top
    exponent holds finite values (float8_e4m3fn).
    ``FNUZ``: no infinities, no negative zero; its bit pattern is the only NaN (float8_*fnuz).
    ``FINITE``: every pattern is a finite number (float6_e3m2fn, float4_e2m1fn). Such a format
    cannot hold NaN; emulation keeps NaN inputs as NaN in the carrier.
    """

    IEEE = "ieee"
    FN = "fn"
    FNUZ = "fnuz"
    FINITE = "finite"
