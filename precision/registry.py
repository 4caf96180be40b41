"""Canonical format names (ml_dtypes spelling), aliases, and the string parser.

Strings are parsed here and nowhere else: the CLI and config files call :func:`parse`,
library code passes format objects.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import TypeVar

from precision.formats import BlockFormat, FixedFormat, FloatFormat, Format
from precision.rounding import Overflow, Specials

_REGISTRY: dict[str, Format] = {}
_ALIASES: dict[str, str] = {}


FormatT = TypeVar("FormatT", FloatFormat, FixedFormat, BlockFormat)


def register(fmt: FormatT, *aliases: str) -> FormatT:
    """Add a named format; its ``name`` is the canonical spelling.

    Raises:
        ValueError: the format has no name, or a name or alias is taken.
    """
    if not fmt.name:
        raise ValueError("register: the format needs a name")
    for key in (fmt.name, *aliases):
        k = key.lower()
        if k in _REGISTRY or k in _ALIASES:
            raise ValueError(f"format name {key!r} is already registered")
    _REGISTRY[fmt.name.lower()] = fmt
    for a in aliases:
        _ALIASES[a.lower()] = fmt.name.lower()
    return fmt


def _f(name: str, e: int, m: int, **kw: object) -> FloatFormat:
    return FloatFormat(exponent_bits=e, mantissa_bits=m, name=name, **kw)  # type: ignore[arg-type]


FLOAT64 = register(_f("float64", 11, 52), "fp64", "double", "e11m52")
FLOAT32 = register(_f("float32", 8, 23), "fp32", "single", "float", "e8m23")
TF32 = register(_f("tf32", 8, 10), "tensorfloat32", "e8m10")
BFLOAT16 = register(_f("bfloat16", 8, 7), "bf16", "e8m7")
FLOAT16 = register(_f("float16", 5, 10), "fp16", "half", "e5m10")
FLOAT8_E5M2 = register(_f("float8_e5m2", 5, 2), "fp8_e5m2", "e5m2")
FLOAT8_E4M3FN = register(_f("float8_e4m3fn", 4, 3, specials=Specials.FN), "fp8_e4m3fn", "e4m3fn")
FLOAT8_E4M3 = register(_f("float8_e4m3", 4, 3), "fp8_e4m3", "e4m3")
FLOAT8_E3M4 = register(_f("float8_e3m4", 3, 4), "fp8_e3m4", "e3m4")
FLOAT8_E4M3FNUZ = register(_f("float8_e4m3fnuz", 4, 3, bias=8, specials=Specials.FNUZ))
FLOAT8_E5M2FNUZ = register(_f("float8_e5m2fnuz", 5, 2, bias=16, specials=Specials.FNUZ))
FLOAT8_E4M3B11FNUZ = register(_f("float8_e4m3b11fnuz", 4, 3, bias=11, specials=Specials.FNUZ))
FLOAT6_E3M2FN = register(_f("float6_e3m2fn", 3, 2, specials=Specials.FINITE), "fp6_e3m2", "e3m2fn")
FLOAT6_E2M3FN = register(_f("float6_e2m3fn", 2, 3, specials=Specials.FINITE), "fp6_e2m3", "e2m3fn")
FLOAT4_E2M1FN = register(
    _f("float4_e2m1fn", 2, 1, specials=Specials.FINITE), "fp4", "fp4_e2m1", "e2m1fn"
)
# Power-of-two scale of the MX formats (no sign bit). ml_dtypes' float8_e8m0fnu also gives
# code 0 the value 2**-127 and has no zero; here code 0 is zero, so scales span
# 2**-126..2**127.
FLOAT8_E8M0 = register(
    _f("float8_e8m0", 8, 0, specials=Specials.FN, subnormals=False, signed=False),
    "e8m0",
    "float8_e8m0fnu",
)

# MX elements saturate: amax / scale lies in [2**emax, 2**(emax+1)), above max finite.
_SAT = {"overflow": Overflow.SATURATE}
MXFP8_E4M3 = register(
    BlockFormat(
        element=_f("float8_e4m3fn_sat", 4, 3, specials=Specials.FN, **_SAT),
        block_size=32,
        scale=FLOAT8_E8M0,
        name="mxfp8_e4m3",
    ),
    "mxfp8",
)
MXFP8_E5M2 = register(
    BlockFormat(
        element=_f("float8_e5m2_sat", 5, 2, **_SAT),
        block_size=32,
        scale=FLOAT8_E8M0,
        name="mxfp8_e5m2",
    )
)
MXFP6_E3M2 = register(
    BlockFormat(element=FLOAT6_E3M2FN, block_size=32, scale=FLOAT8_E8M0, name="mxfp6_e3m2")
)
MXFP6_E2M3 = register(
    BlockFormat(element=FLOAT6_E2M3FN, block_size=32, scale=FLOAT8_E8M0, name="mxfp6_e2m3")
)
MXFP4 = register(
    BlockFormat(element=FLOAT4_E2M1FN, block_size=32, scale=FLOAT8_E8M0, name="mxfp4_e2m1"),
    "mxfp4",
)
MXINT8 = register(
    BlockFormat(
        element=FixedFormat(word_bits=8, fraction_bits=6),
        block_size=32,
        scale=FLOAT8_E8M0,
        name="mxint8",
    )
)
NVFP4 = register(
    BlockFormat(
        element=FLOAT4_E2M1FN,
        block_size=16,
        scale=_f("float8_e4m3fn_sat", 4, 3, specials=Specials.FN, **_SAT),
        name="nvfp4",
    )
)

_FLOAT_RE = re.compile(
    r"^(?P<u>u?)e(?P<e>\d+)m(?P<m>\d+)(?P<sp>fnuz|fn|finite)?(?:b(?P<b>-?\d+))?"
    r"(?P<nosub>-nosub)?(?:-(?P<ov>inf|sat|nan))?$"
)
_FIXED_RE = re.compile(r"^(?P<u>u?)fixed(?P<w>\d+)\.(?P<f>-?\d+)(?P<wrap>-wrap)?$")
_INT_RE = re.compile(r"^(?P<u>u?)int(?P<w>\d+)$")


def parse(text: str | Format) -> Format:
    """Turn a name or spelling into a format.

    Accepts registered names and aliases (``bfloat16``, ``fp8_e4m3fn``, ``mxfp4``), float
    spellings ``eXmY`` with optional suffixes (``fn``/``fnuz``/``finite``, ``b<bias>``,
    ``-nosub``, ``-inf``/``-sat``/``-nan``), fixed point ``fixed<W>.<F>`` / ``ufixed<W>.<F>``
    (``-wrap`` for modular overflow) and integers ``int8``/``uint8``.

    Raises:
        ValueError: the text is none of these; the message says what is accepted.
    """
    if isinstance(text, FloatFormat | FixedFormat | BlockFormat):
        return text
    key = str(text).strip().lower()
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    if mt := _FLOAT_RE.match(key):
        ov = {"inf": Overflow.INF, "sat": Overflow.SATURATE, "nan": Overflow.NAN, None: None}
        fmt = FloatFormat(
            exponent_bits=int(mt["e"]),
            mantissa_bits=int(mt["m"]),
            bias=int(mt["b"]) if mt["b"] is not None else None,
            subnormals=mt["nosub"] is None,
            specials=Specials(mt["sp"]) if mt["sp"] else Specials.IEEE,
            overflow=ov[mt["ov"]],
            signed=not mt["u"],
        )
        return dataclasses.replace(fmt, name=canonical_name(fmt))
    if mt := _FIXED_RE.match(key):
        return FixedFormat(
            word_bits=int(mt["w"]),
            fraction_bits=int(mt["f"]),
            signed=not mt["u"],
            overflow="wrap" if mt["wrap"] else "saturate",  # type: ignore[arg-type]
        )
    if mt := _INT_RE.match(key):
        return FixedFormat(word_bits=int(mt["w"]), fraction_bits=0, signed=not mt["u"])
    raise ValueError(
        f"format {text!r}: unknown; use a name ({', '.join(list(_REGISTRY)[:6])}, ... see "
        "`prec-study formats`), eXmY[fn|fnuz|finite][b<bias>][-nosub][-sat|-inf|-nan], "
        "fixed<W>.<F>[-wrap], or int<W>"
    )


def canonical_name(fmt: FloatFormat) -> str:
    """The registered name of an equal format, else its ``eXmY`` spelling."""
    for name, known in _REGISTRY.items():
        if isinstance(known, FloatFormat) and known == fmt:
            return name
    return fmt.spelling


def from_bits(n: int) -> FloatFormat:
    """The format that ``--bits N`` means, with its registered name.

    Follows the customized-precision study's splits: 4 -> e3m0, 8 -> e5m2 (e4m3 is the
    alternative with more precision and less range: ask for it by name), 16 -> float16,
    32 -> float32, 64 -> float64. Other widths: N <= 8 gets ``N//2 + 1`` exponent bits;
    9..16 get 5 (float16's range), 17..32 get 8 (float32's range; 19 is TF32),
    33..64 get 11 (float64's range); the rest are mantissa bits.

    Raises:
        ValueError: N outside 3..64.
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 3 <= n <= 64:
        raise ValueError(f"bits={n!r}: must be an integer in 3..64")
    if n <= 8:
        e = n // 2 + 1
    elif n <= 16:
        e = 5
    elif n <= 32:
        e = 8
    else:
        e = 11
    fmt = FloatFormat(exponent_bits=e, mantissa_bits=n - 1 - e)
    return dataclasses.replace(fmt, name=canonical_name(fmt))


def names() -> list[str]:
    """Registered canonical names, in registration order."""
    return [str(f) for f in _REGISTRY.values()]


def formats() -> Iterator[Format]:
    """Registered formats, in registration order."""
    return iter(list(_REGISTRY.values()))


def aliases_of(name: str) -> list[str]:
    return [a for a, n in _ALIASES.items() if n == name.lower()]
