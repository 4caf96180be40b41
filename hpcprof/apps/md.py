"""Lennard-Jones molecular dynamics (CoMD-like): FCC crystal, velocity Verlet, all pairs.

The FLOP model counts what this NumPy formulation executes: 35 operations for each of the
N^2 ordered pairs per force evaluation (separation, minimum image, r^2, 1/r^2, r^-6, force
scalar, force sum, energy) plus 12 per atom per step for the integrator.
"""

from __future__ import annotations

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, real_dtype
from hpcprof.results.records import Precision

STEPS = 10
DT = 0.005
CUTOFF = 2.5
LATTICE = 1.6796  # reduced density 0.8442
PAIR_FLOPS = 35
ATOM_STEP_FLOPS = 12


def fcc_positions(cells: int) -> np.ndarray:
    """Atom positions of a cells^3 FCC crystal (4 atoms per cell), float64."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.stack(np.meshgrid(*(np.arange(cells),) * 3, indexing="ij"), -1).reshape(-1, 3)
    return ((grid[:, None, :] + basis[None, :, :]).reshape(-1, 3)) * LATTICE


def forces(x: np.ndarray, box: float) -> tuple[np.ndarray, float]:
    """LJ forces and potential energy (epsilon = sigma = 1, truncated at CUTOFF)."""
    dtype = x.dtype.type
    d = x[:, None, :] - x[None, :, :]
    d -= dtype(box) * np.round(d / dtype(box))
    r2 = np.einsum("ijk,ijk->ij", d, d)
    np.fill_diagonal(r2, np.inf)
    inv_r2 = np.where(r2 < dtype(CUTOFF**2), dtype(1) / r2, dtype(0))
    inv_r6 = inv_r2 * inv_r2 * inv_r2
    scalar = dtype(24) * inv_r6 * (dtype(2) * inv_r6 - dtype(1)) * inv_r2
    f = np.einsum("ij,ijk->ik", scalar, d)
    energy = float(np.sum(dtype(2) * inv_r6 * (inv_r6 - dtype(1))))  # 4 e / 2 (pairs twice)
    return f, energy


def simulate(x: np.ndarray, v: np.ndarray, box: float, steps: int) -> tuple[float, float]:
    """Velocity Verlet for ``steps``; returns (initial, final) total energy."""
    dt = x.dtype.type(DT)
    half = x.dtype.type(0.5)
    f, pot = forces(x, box)
    e0 = pot + 0.5 * float(np.sum(v.astype(np.float64) ** 2))
    for _ in range(steps):
        v += half * dt * f
        x += dt * v
        f, pot = forces(x, box)
        v += half * dt * f
    return e0, pot + 0.5 * float(np.sum(v.astype(np.float64) ** 2))


def md_kernel(cells: int, precision: Precision, region: Region) -> float:
    """Run the MD; return the relative total-energy drift over the run."""
    dtype = np.dtype(real_dtype(precision))
    x = fcc_positions(cells).astype(dtype)
    rng = np.random.default_rng(0)
    v = rng.normal(0.0, 1.2, size=x.shape)
    v -= v.mean(axis=0)
    v = v.astype(dtype)
    box = cells * LATTICE
    with region:
        e0, e1 = simulate(x, v, box, STEPS)
    return abs(e1 - e0) / abs(e0)


def _flops(cells: int) -> float:
    atoms = 4.0 * cells**3
    return (STEPS + 1) * PAIR_FLOPS * atoms**2 + STEPS * ATOM_STEP_FLOPS * atoms


def _bytes(cells: int, itemsize: int) -> float:
    atoms = 4.0 * cells**3
    return (STEPS + 1) * 9 * atoms * itemsize  # positions in, forces out, velocities


APPS = (
    AppInfo(
        name="md",
        summary="Lennard-Jones MD, FCC crystal, velocity Verlet (NumPy, CoMD-like)",
        kind=AppKind.NUMPY,
        size_doc="FCC unit cells per side (4 n^3 atoms); at least 3",
        default_size=6,
        small_size=3,
        flops=_flops,
        bytes_moved=_bytes,
        tolerance=(1e-3, 1e-2),
        kernel=md_kernel,
    ),
)
