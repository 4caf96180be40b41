"""Communication lower bounds and attaining tilings for projective nested loops with
arbitrary loop bounds (Dinh and Demmel, arXiv 2003.00119).

A loop nest runs loops ``x_1..x_d`` with bounds ``L_i`` over ``Z = [L_1] x ... x [L_d]``; each
array ``A_j`` is indexed by a subset ``S_j`` of the loop indices (the projective case). Words
move between a fast memory of M words and a slow memory.

Lower bound (the segment argument): split any execution into segments that each move M
words. A segment can use at most 2M entries of each array (M resident, M moved), so it runs
at most ``T(2M)`` iterations, where ``T(X)`` is the largest tile with every array footprint
at most X. In the projective case the largest set is a box, and ``log_X T(X)`` is the value
``k`` of the linear program

    maximize sum_i l_i  subject to  sum_{i in S_j} l_i <= 1 + log_X m_j  (each array j),
                                    0 <= l_i <= log_X L_i               (each loop i),

(``m_j`` = 1 unless an array's true footprint can be up to ``m_j`` times smaller than its
projective one, as for the input of a small-filter convolution). Hence

    words >= M * |Z| / (2M)^k - M,

which for n x n matmul is ``n^3 / (2 sqrt(2) sqrt(M)) - M``, the Irony-Toledo-Tiskin
constant. The bound reported is the larger of this and the compulsory traffic (every entry
of every array read or written once, for fast memory that starts and ends empty).

Attaining tiling (:func:`tiling`): the LP's solution at X = M gives the tile's shape,
``b_i ~ M^{l_i}`` scaled until the footprints fill M and clipped to the loop bounds, with a
loop order that keeps one array's block resident while the loops it is not indexed by
stream through. Running the tiles one after another moves a constant factor above the
bound independent of the loop bounds (:func:`tiled_traffic` counts it exactly for the
explicit schedule of :func:`simulate`).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from hpcprof.errors import HpcprofError


class NestError(HpcprofError, ValueError):
    """A loop-nest description or a bound request is invalid; one line says what and why."""


@dataclass(frozen=True, kw_only=True)
class Array:
    """One array of a loop nest.

    Args:
        name: array name (unique in the nest).
        indices: loop names that index it, in order.
        output: written (read-modify-write) by the loop body.
        storage: the data it lives in (two index maps of one array share it); default name.
        multiplicity: how many iterations' projective indices may map to one stored entry
            (9 for the input of a 3x3 convolution indexed by output position); 1 otherwise.
    """

    name: str
    indices: tuple[str, ...]
    output: bool = False
    storage: str | None = None
    multiplicity: int = 1

    @property
    def data(self) -> str:
        """Name of the storage the array occupies."""
        return self.storage or self.name


@dataclass(frozen=True, kw_only=True)
class LoopNest:
    """Loops with bounds (outermost first) and the arrays the body touches.

    Raises:
        NestError: no loops or arrays, a bound below 1, a duplicate name, an index that is
            not a loop, or a multiplicity below 1.
    """

    name: str
    loops: tuple[tuple[str, int], ...]
    arrays: tuple[Array, ...]
    summary: str = ""

    def __post_init__(self) -> None:
        names = [n for n, _ in self.loops]
        if not names or not self.arrays:
            raise NestError(f"nest {self.name}: needs at least one loop and one array")
        if len(set(names)) != len(names):
            raise NestError(f"nest {self.name}: duplicate loop name in {', '.join(names)}")
        for loop, bound in self.loops:
            if not isinstance(bound, int) or bound < 1:
                raise NestError(
                    f"nest {self.name}: loop {loop} bound {bound!r}: must be an integer >= 1"
                )
        seen: set[str] = set()
        for a in self.arrays:
            if a.name in seen:
                raise NestError(f"nest {self.name}: duplicate array name {a.name}")
            seen.add(a.name)
            for i in a.indices:
                if i not in names:
                    raise NestError(
                        f"nest {self.name}: array {a.name} index {i!r} is not a loop (loops: {', '.join(names)})"
                    )
            if len(set(a.indices)) != len(a.indices):
                raise NestError(f"nest {self.name}: array {a.name} repeats an index")
            if a.multiplicity < 1:
                raise NestError(f"nest {self.name}: array {a.name} multiplicity {a.multiplicity}: must be >= 1")  # fmt: skip

    @property
    def bounds(self) -> dict[str, int]:
        """Loop name -> bound."""
        return dict(self.loops)

    @property
    def iterations(self) -> int:
        """``|Z|``, the number of loop-body executions."""
        return math.prod(b for _, b in self.loops)

    def footprint(self, array: Array, tile: Mapping[str, int]) -> int:
        """Entries of ``array`` a box tile with these sizes touches (projective count)."""
        return math.prod(tile[i] for i in array.indices)

    def compulsory(self) -> int:
        """Words every execution moves: each stored entry read or written once."""
        per_data: dict[str, int] = {}
        full = self.bounds
        for a in self.arrays:
            size = self.footprint(a, full) // a.multiplicity
            per_data[a.data] = max(per_data.get(a.data, 0), size)
        return sum(per_data.values())


@dataclass(frozen=True, kw_only=True)
class Bound:
    """Lower bound on words moved for one nest and fast-memory size, and a tiling."""

    nest: str
    memory: int  # M, words
    exponent: float  # LP value k at X = 2M
    segment_words: float  # M |Z| / (2M)^k - M
    compulsory_words: int
    tile: tuple[tuple[str, int], ...]  # in the tiling's loop order, outermost first
    tiled_words: int  # tiles x (footprints + output write-backs)

    @property
    def order(self) -> tuple[str, ...]:
        """Loop order of the tiling, outermost first."""
        return tuple(n for n, _ in self.tile)

    @property
    def words(self) -> float:
        """The lower bound: the larger of the segment and compulsory bounds."""
        return max(self.segment_words, float(self.compulsory_words))

    @property
    def tiled_over_bound(self) -> float:
        """How far the tiling's traffic is above the bound."""
        return self.tiled_words / self.words


def tile_exponents(nest: LoopNest, x: float) -> np.ndarray:
    """Optimal ``l_i`` of the tile LP with footprint limit ``x`` (``b_i = x^{l_i}``).

    Raises:
        NestError: x <= 1.
    """
    from scipy.optimize import linprog

    if not x > 1:
        raise NestError(f"footprint limit {x}: must be > 1 word")
    names = [n for n, _ in nest.loops]
    log_x = math.log(x)
    a_ub = np.array([[1.0 if n in a.indices else 0.0 for n in names] for a in nest.arrays])
    b_ub = np.array([1.0 + math.log(a.multiplicity) / log_x for a in nest.arrays])
    caps = [(0.0, math.log(b) / log_x) for _, b in nest.loops]
    res = linprog(-np.ones(len(names)), A_ub=a_ub, b_ub=b_ub, bounds=caps, method="highs")
    if res.status != 0:  # pragma: no cover - the LP is always feasible (l = 0) and bounded
        raise NestError(f"nest {nest.name}: tile LP failed: {res.message}")
    return np.asarray(res.x)


def _fits(nest: LoopNest, tile: Mapping[str, int], memory: int) -> bool:
    return sum(nest.footprint(a, tile) for a in nest.arrays) <= memory


def _scaled(nest: LoopNest, lam: Mapping[str, float], fixed: Mapping[str, int],
            memory: int) -> dict[str, int]:  # fmt: skip
    """``b_i = t^{l_i}`` (clipped to the bounds) on the loops not in ``fixed``, with the
    largest ``t`` whose footprints fit in ``memory``; bisection on ``log t``."""
    bounds = nest.bounds

    def at(log_t: float) -> dict[str, int]:
        grown = {n: max(1, min(bounds[n], int(math.exp(lam[n] * log_t) + 1e-9))) for n in bounds}
        return {**grown, **fixed}

    lo, hi = 0.0, max(math.log(bounds[n]) / lam[n] for n in bounds if lam[n] > 1e-9) + 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _fits(nest, at(mid), memory) else (lo, mid)
    return at(lo)


def _grow(
    nest: LoopNest, tile: dict[str, int], order: tuple[str, ...], memory: int
) -> dict[str, int]:
    """Grow extents one step at a time (by one, or as far as the memory allows) while the
    traffic does not rise; fewer words first, then the larger tile."""
    bounds = nest.bounds
    cost = tiled_traffic(nest, tile, order)
    while True:
        best: tuple[tuple[int, int], dict[str, int]] | None = None
        for n in order:
            lo, hi = tile[n], bounds[n]
            while lo < hi:  # widest extent of loop n that still fits
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if _fits(nest, {**tile, n: mid}, memory) else (lo, mid - 1)
            for size in {tile[n] + 1, lo}:
                trial = {**tile, n: size}
                if not tile[n] < size <= bounds[n] or not _fits(nest, trial, memory):
                    continue
                key = (tiled_traffic(nest, trial, order), -math.prod(trial.values()))
                if key[0] <= cost and (best is None or key < best[0]):
                    best = (key, trial)
        if best is None:
            return tile
        cost, tile = best[0][0], best[1]


def tiling(nest: LoopNest, memory: int) -> tuple[tuple[str, ...], dict[str, int]]:
    """Loop order (outermost first) and tile sizes whose footprints fit in ``memory`` words.

    From the LP solution ``l_i`` at X = M: for each array R taken as the resident one, the
    loops R is indexed by go outermost and get extents ``t^{l_i}`` (t as large as fits);
    the other loops go innermost and step one index at a time (R stays in fast memory
    while they run, and a wider extent would only take room from R's tile), except loops
    the LP takes whole (``l_i`` at its cap ``log_M L_i``), which stay whole where they fit
    beside R's block. The LP box in the nest's own order is a further candidate.
    Each grows while the traffic does not rise; the fewest :func:`tiled_traffic` wins.
    For matmul this keeps a ``sqrt(M) x sqrt(M)`` block of C and streams A's columns and
    B's rows: ``2 n^3 / sqrt(M)`` words against the cube tiling's ``2 sqrt(3) n^3 / sqrt(M)``.
    """
    names = tuple(n for n, _ in nest.loops)
    bounds = nest.bounds
    if memory <= 1:
        return names, dict.fromkeys(names, 1)
    lam = dict(zip(names, tile_exponents(nest, float(memory)), strict=True))
    whole = {n for n in names if lam[n] >= math.log(bounds[n]) / math.log(memory) - 1e-9}
    candidates = [(names, _scaled(nest, lam, {}, memory))]
    if memory > len(nest.arrays):  # the box of X = M / arrays, each array a share of M
        share = tile_exponents(nest, memory / len(nest.arrays))
        candidates.append((names, _scaled(nest, dict(zip(names, share, strict=True)), {}, memory)))
    for res in {a.indices: a for a in nest.arrays}.values():
        inner = [n for n in names if n not in res.indices]
        order = tuple([n for n in names if n in res.indices] + inner)
        tile = _scaled(nest, lam, {n: bounds[n] if n in whole else 1 for n in inner}, memory)
        if not _fits(nest, tile, memory):  # whole loops that do not fit beside R step too
            tile = _scaled(nest, lam, dict.fromkeys(inner, 1), memory)
        candidates.append((order, tile))
    done = []
    for order, tile in candidates:
        while not _fits(nest, tile, memory) and any(v > 1 for v in tile.values()):
            biggest = max(tile, key=lambda n: tile[n])  # a whole loop alone can overflow M
            tile[biggest] -= 1
        tile = _grow(nest, tile, order, memory)
        done.append((tiled_traffic(nest, tile, order), -math.prod(tile.values()), order, tile))
    _, _, order, tile = min(done, key=lambda c: c[:2])
    return order, tile


def tiled_traffic(
    nest: LoopNest, tile: Mapping[str, int], order: tuple[str, ...] | None = None
) -> int:
    """Words moved running the box tiles in ``order`` (default the nest's; last innermost),
    each tile loading the footprints it does not already hold: an array indexed by none of
    the innermost loops stays resident while those loops step (everything fits in M), so
    it is loaded once per step of the other loops. Outputs are also written back; edge
    tiles count at their clipped size."""
    total = 0
    bounds = nest.bounds
    order = order or tuple(n for n, _ in nest.loops)
    count = {n: -(-bounds[n] // tile[n]) for n in bounds}  # tiles along each loop
    for a in nest.arrays:
        trailing: set[str] = set()
        for n in reversed(order):
            if n in a.indices:
                break
            trailing.add(n)
        # over the tiles, prod_{i in S_j} size_i sums to prod_{i in S_j} L_i
        inside = math.prod(bounds[i] for i in a.indices)
        steps = math.prod(count[n] for n in order if n not in a.indices and n not in trailing)
        total += inside * steps * (2 if a.output else 1)
    return total


def lower_bound(nest: LoopNest, memory: int) -> Bound:
    """The communication lower bound for fast memory ``memory`` words, with a tiling.

    Raises:
        NestError: memory below 2 words.
    """
    if memory < 2:
        raise NestError(f"memory {memory}: must be at least 2 words")
    x = 2.0 * memory
    k = float(np.sum(tile_exponents(nest, x)))
    segment = memory * nest.iterations / x**k - memory
    order, tile = tiling(nest, memory)
    return Bound(nest=nest.name, memory=memory, exponent=k, segment_words=segment,
                 compulsory_words=nest.compulsory(), tile=tuple((n, tile[n]) for n in order),
                 tiled_words=tiled_traffic(nest, tile, order))  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Simulated:
    """Words moved by one execution in a simulated two-level memory."""

    reads: int
    writes: int

    @property
    def words(self) -> int:
        """Reads plus write-backs."""
        return self.reads + self.writes


class Policy(Enum):
    """How the simulated fast memory is managed."""

    LRU = "lru"  # a fully associative LRU cache of one-word lines
    TILE = "tile"  # explicit: before each tile, evict what it does not use, load the rest


def simulate(nest: LoopNest, memory: int, tile: Mapping[str, int] | None = None,
             policy: Policy = Policy.LRU, order: tuple[str, ...] | None = None) -> Simulated:  # fmt: skip
    """Execute the nest (tiled with ``tile``, or in plain loop order) over a simulated fast
    memory of ``memory`` words and count the words moved, tiles stepping in ``order``
    (outermost first; default the nest's): a load reads one word, evicting
    a written entry writes it back, written entries are flushed at the end. Pure Python:
    small sizes only.

    Raises:
        NestError: memory below 1, a TILE policy without a tile, a tile whose
            footprints do not fit in memory, or an order that is not the nest's loops.
    """
    if memory < 1:
        raise NestError(f"memory {memory}: must be at least 1 word")
    if policy is Policy.TILE and tile is None:
        raise NestError("policy tile: needs a tile")
    names = list(order or (n for n, _ in nest.loops))
    if sorted(names) != sorted(n for n, _ in nest.loops):
        raise NestError(f"order {names}: must list each loop of {nest.name} once")
    bounds = nest.bounds
    sizes = tile or bounds
    pos = {n: i for i, n in enumerate(names)}
    maps = [(a.data, tuple(pos[i] for i in a.indices), a.output) for a in nest.arrays]
    fast: OrderedDict[tuple[object, ...], bool] = OrderedDict()  # entry -> written
    reads = writes = 0
    for origin in itertools.product(*(range(0, bounds[n], sizes[n]) for n in names)):
        ranges = [
            range(o, min(o + sizes[n], bounds[n])) for o, n in zip(origin, names, strict=True)
        ]
        if policy is Policy.TILE:
            needed = {
                (d, *(p[i] for i in idx)) for p in itertools.product(*ranges) for d, idx, _ in maps
            }
            if len(needed) > memory:
                raise NestError(
                    f"tile {dict(sizes)}: footprint {len(needed)} words exceeds memory {memory}"
                )
            for key in [k for k in fast if k not in needed]:
                writes += int(fast.pop(key))
            missing = needed.difference(fast)
            reads += len(missing)
            fast.update(dict.fromkeys(missing, False))
        for point in itertools.product(*ranges):
            for data, idx, out in maps:
                key = (data, *(point[i] for i in idx))
                if key in fast:
                    fast.move_to_end(key)
                    fast[key] = fast[key] or out
                    continue
                reads += 1  # only under LRU: a TILE policy loaded everything up front
                fast[key] = out
                if len(fast) > memory:
                    _, dirty = fast.popitem(last=False)
                    writes += int(dirty)
    writes += sum(fast.values())
    return Simulated(reads=reads, writes=writes)
