"""qtorch 0.3's number formats (``FloatingPoint``, ``FixedPoint``, ``BlockFloatingPoint``).

Each rounds tensors through :func:`precision.quantize.quantize`; :mod:`precision.compat.qtorch`
re-exports them next to qtorch's functions. Where results differ from qtorch, see there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from precision.formats import BlockFormat, FixedFormat, FloatFormat
from precision.quantize import quantize
from precision.registry import FLOAT8_E8M0
from precision.rounding import RoundingMode, Specials


class Number:
    """Base of qtorch's number formats."""

    def round(
        self, x: torch.Tensor, mode: RoundingMode, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Round ``x`` to this format with ``mode``."""
        raise NotImplementedError

    def nearest(self) -> RoundingMode:
        """What qtorch's "nearest" means for this format."""
        return RoundingMode.NEAREST_AWAY


def _int(value: object, name: str, lo: int, hi: int | None = None) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < lo
        or (hi is not None and value > hi)
    ):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={value!r}: must be an integer {rng}")
    return value


def _check_dtype(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"expected a float32 or float64 tensor, got {getattr(x, 'dtype', type(x))}")


@dataclass(frozen=True, repr=False)
class FloatingPoint(Number):
    """qtorch's low-precision float: ``exp`` exponent bits, ``man`` stored mantissa bits."""

    exp: int
    man: int

    def __post_init__(self) -> None:
        _int(self.exp, "exp", 1, 8)
        _int(self.man, "man", 0, 23)

    def __repr__(self) -> str:
        return f"FloatingPoint (exponent={self.exp:d}, mantissa={self.man:d})"

    @property
    def format(self) -> FloatFormat:
        """The equivalent :class:`FloatFormat` (no inf/NaN codes, saturating)."""
        return FloatFormat(exponent_bits=self.exp, mantissa_bits=self.man, specials=Specials.FINITE)

    def round(
        self, x: torch.Tensor, mode: RoundingMode, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _check_dtype(x)
        fmt = self.format
        if x.dtype == torch.float32 and not fmt.fits_in("float32"):
            # exp=8 reaches 2**128: round in float64; the cast gives inf there, as qtorch does.
            return quantize(x.double(), fmt, mode, generator=generator).float()
        return quantize(x, fmt, mode, generator=generator)


@dataclass(frozen=True, repr=False)
class FixedPoint(Number):
    """qtorch's fixed point: word length ``wl``, fraction length ``fl``."""

    wl: int
    fl: int
    clamp: bool = True
    symmetric: bool = False

    def __post_init__(self) -> None:
        _int(self.wl, "wl", 1)
        _int(self.fl, "fl", -100, 140)
        if not isinstance(self.clamp, bool) or not isinstance(self.symmetric, bool):
            raise ValueError("clamp and symmetric must be bools")

    def __repr__(self) -> str:
        return f"FixedPoint (wl={self.wl:d}, fl={self.fl:d})"

    def nearest(self) -> RoundingMode:
        return RoundingMode.NEAREST_EVEN  # qtorch's fixed point uses nearbyint

    @property
    def bounds(self) -> tuple[float, float]:
        """(smallest, largest) value after clamping."""
        step = 2.0**-self.fl
        lo = -(2.0 ** (self.wl - self.fl - 1))
        return (lo + step if self.symmetric else lo), -lo - step

    def round_unclamped(
        self, x: torch.Tensor, mode: RoundingMode, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Round to multiples of ``2**-fl`` without range limits."""
        _check_dtype(x)
        # The widest grid the carrier holds; larger carrier values are already multiples.
        grid = FixedFormat(word_bits=25 if x.dtype == torch.float32 else 53, fraction_bits=self.fl)
        q = quantize(x, grid, mode, generator=generator)
        return torch.where(x.abs() <= grid.max_value, q, x)

    def round(
        self, x: torch.Tensor, mode: RoundingMode, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        q = self.round_unclamped(x, mode, generator)
        return torch.clamp(q, *self.bounds) if self.clamp else q


@dataclass(frozen=True, repr=False)
class BlockFloatingPoint(Number):
    """qtorch's block floating point: ``wl``-bit integers sharing one exponent per block."""

    wl: int
    dim: int = -1

    def __post_init__(self) -> None:
        _int(self.wl, "wl", 2, 53)
        _int(self.dim, "dim", -1)

    def __repr__(self) -> str:
        return f"BlockFloatingPoint (wl={self.wl:d}, dim={self.dim:d})"

    def round(
        self, x: torch.Tensor, mode: RoundingMode, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _check_dtype(x)
        if x.numel() == 0:
            return x.clone()
        if self.dim == -1:
            blocks = x.reshape(1, -1)
        else:
            blocks = x.movedim(self.dim, 0).reshape(x.shape[self.dim], -1)
        fmt = BlockFormat(
            element=FixedFormat(word_bits=self.wl, fraction_bits=self.wl - 2),
            block_size=blocks.shape[1],
            scale=FLOAT8_E8M0,
        )
        q = quantize(blocks, fmt, mode, generator=generator)
        if self.dim == -1:
            return q.reshape(x.shape)
        return q.reshape(x.movedim(self.dim, 0).shape).movedim(0, self.dim)
