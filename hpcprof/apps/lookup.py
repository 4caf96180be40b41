"""Monte-Carlo macroscopic cross-section lookup (XSBench-like).

Each lookup draws an energy, finds its interval on every nuclide's energy grid (binary
search), interpolates 5 reaction channels and accumulates them weighted by the nuclide's
density: 28 FLOPs per (lookup, nuclide) pair (3 for the interpolation factor, 15 for the
channels, 10 for the weighted sum).
"""

from __future__ import annotations

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, real_dtype
from hpcprof.results.records import Precision

NUCLIDES = 68  # XSBench "small"
GRID_POINTS = 1000
CHANNELS = 5
CHUNK = 8192
PAIR_FLOPS = 28


def macro_xs(
    energies: np.ndarray, grids: np.ndarray, xs: np.ndarray, density: np.ndarray
) -> np.ndarray:
    """Macroscopic cross sections (lookups x channels) for sampled ``energies``."""
    out = np.empty((energies.size, CHANNELS), dtype=grids.dtype)
    nuc = np.arange(grids.shape[0])
    for start in range(0, energies.size, CHUNK):
        e = energies[start : start + CHUNK]
        idx = np.stack([np.searchsorted(g, e) for g in grids], axis=1) - 1
        np.clip(idx, 0, grids.shape[1] - 2, out=idx)
        e_lo = grids[nuc, idx]
        e_hi = grids[nuc, idx + 1]
        frac = (e[:, None] - e_lo) / (e_hi - e_lo)
        lo = xs[nuc, idx]
        hi = xs[nuc, idx + 1]
        micro = lo + frac[:, :, None] * (hi - lo)
        out[start : start + e.size] = np.einsum("n,lnc->lc", density, micro)
    return out


def lookup_kernel(lookups: int, precision: Precision, region: Region) -> float:
    """Run the lookups; return max relative error vs the float64 computation."""
    dtype = np.dtype(real_dtype(precision))
    rng = np.random.default_rng(0)
    grids = np.sort(rng.random((NUCLIDES, GRID_POINTS)), axis=1).astype(dtype)
    xs = rng.random((NUCLIDES, GRID_POINTS, CHANNELS)).astype(dtype)
    density = rng.random(NUCLIDES).astype(dtype)
    energies = rng.random(lookups).astype(dtype)
    with region:
        got = macro_xs(energies, grids, xs, density)
    ref = macro_xs(
        energies.astype(np.float64),
        grids.astype(np.float64),
        xs.astype(np.float64),
        density.astype(np.float64),
    )
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def _flops(lookups: int) -> float:
    return float(PAIR_FLOPS) * lookups * NUCLIDES


def _bytes(lookups: int, itemsize: int) -> float:
    return float(lookups) * NUCLIDES * 2 * (1 + CHANNELS) * itemsize


APPS = (
    AppInfo(
        name="lookup",
        summary="Monte-Carlo cross-section lookup, 68 nuclides (NumPy, XSBench-like)",
        kind=AppKind.NUMPY,
        size_doc="number of lookups",
        default_size=30_000,
        small_size=1000,
        flops=_flops,
        bytes_moved=_bytes,
        tolerance=(1e-12, 1e-4),
        kernel=lookup_kernel,
    ),
)
