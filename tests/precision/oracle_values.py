"""Input values for the oracle tests: every edge a rounding kernel can get wrong, and random
values across the range (plain functions, importable by name: several test packages have a
conftest module)."""

from __future__ import annotations

import numpy as np
import torch

from precision.formats import FloatFormat

F32 = np.dtype(np.float32)


def boundary_values(fmt: FloatFormat, dtype: np.dtype = F32) -> np.ndarray:
    """Every edge a rounding kernel can get wrong, for one format, in ``dtype``."""
    info = np.finfo(dtype)
    mx, mn = fmt.max_finite, fmt.smallest_normal
    sub = fmt.smallest_positive
    ulp_max = (
        mx * 2.0**-fmt.mantissa_bits / (2 - 2.0**-fmt.mantissa_bits)
        if fmt.mantissa_bits
        else mx / 2
    )
    vals = [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1.0,
        1.5,
        1.25,
        1.75,
        3.0,
        mx,
        mx + ulp_max / 2,
        mx + ulp_max / 4,
        mx + ulp_max,
        mx * 2,
        mx * (1 - 2.0**-30),
        mn,
        mn * 0.75,
        mn * 0.5,
        mn * (1 - 2.0**-20),
        mn * 1.5,
        sub,
        sub * 0.5,
        sub * 0.25,
        sub * 0.75,
        sub * 1.5,
        sub * 2.5,
        sub * (0.5 + 2.0**-20),
        sub * (0.5 - 2.0**-20),
        float(info.max),
        float(info.tiny),
        float(info.smallest_subnormal),
        1 + fmt.epsilon / 2,
        1 + fmt.epsilon * 1.5,
        1 + fmt.epsilon / 2 + fmt.epsilon / 8,
        2 - fmt.epsilon / 2,
        2 - fmt.epsilon / 4,
    ]
    # halfway points between consecutive values near 1, near the top, and in the subnormals
    for base in (1.0, mx / 2, mn, sub * 4):
        step = base * fmt.epsilon if base >= mn else sub
        vals += [base + step * (k + 0.5) for k in range(4)]
    with np.errstate(over="ignore"):
        arr = np.array(vals, dtype=np.float64).astype(dtype)
    return np.concatenate([arr, -arr])


def random_values(
    n: int, lo_exp: int, hi_exp: int, seed: int, dtype: type = np.float32
) -> np.ndarray:
    """Random significands over a range of binades, both signs, in ``dtype`` exactly."""
    rng = np.random.default_rng(seed)
    sig = rng.uniform(1.0, 2.0, n)
    exp = rng.integers(lo_exp, hi_exp, n)
    sign = rng.choice([-1.0, 1.0], n)
    with np.errstate(over="ignore", under="ignore"):
        out = (sign * np.ldexp(sig, exp)).astype(dtype)
    if dtype is np.float32:
        # also random bit patterns: every exponent, subnormals, NaN payloads
        bits = rng.integers(0, 2**32, n // 4, dtype=np.uint64).astype(np.uint32)
        out = np.concatenate([out, bits.view(np.float32)])
    return out


def as_torch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))
