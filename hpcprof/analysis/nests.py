"""Loop-nest descriptions for ``hpcprof bound``: the built-ins and TOML files.

A built-in is a frozen :class:`NestInfo`: default loop bounds and a builder that takes the
bounds (users override any of them). A TOML file describes one nest::

    name = "batched-matvec"
    summary = "y[b,i] += A[i,j] x[b,j]"
    [loops]            # outermost first; the last loop is innermost when tiling
    b = 64
    i = 1024
    j = 1024
    [[arrays]]
    name = "y"
    indices = ["b", "i"]
    output = true      # optional: read and written
    [[arrays]]
    name = "A"
    indices = ["i", "j"]
    # storage = "X"    # optional: two index maps of one array share storage
    # multiplicity = 9 # optional: see hpcprof.analysis.bound.Array
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hpcprof.analysis.bound import Array, LoopNest, NestError
from hpcprof.errors import UnknownNameError
from precision.common.tomlfile import load_toml


def _a(name: str, *indices: str, output: bool = False, storage: str | None = None,
       multiplicity: int = 1) -> Array:  # fmt: skip
    return Array(name=name, indices=indices, output=output, storage=storage,
                 multiplicity=multiplicity)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class NestInfo:
    """A built-in loop nest.

    Args:
        name: registry name.
        summary: the loop body, one line.
        loops: default bounds, outermost first.
        arrays: the arrays of the body.
        app: the built-in app that runs this nest (for bound vs measured), if any.
    """

    name: str
    summary: str
    loops: tuple[tuple[str, int], ...]
    arrays: tuple[Array, ...]
    app: str | None = None

    def build(self, overrides: Mapping[str, int] | None = None) -> LoopNest:
        """The nest with some bounds replaced.

        Raises:
            NestError: an override names no loop of the nest.
        """
        overrides = dict(overrides or {})
        names = [n for n, _ in self.loops]
        for key in overrides:
            if key not in names:
                raise NestError(f"nest {self.name}: no loop {key!r} (loops: {', '.join(names)})")
        loops = tuple((n, overrides.get(n, b)) for n, b in self.loops)
        return LoopNest(name=self.name, loops=loops, arrays=self.arrays, summary=self.summary)


_MATMUL = (_a("C", "i", "j", output=True), _a("A", "i", "k"), _a("B", "k", "j"))
_CONV = (_a("Out", "b", "k", "h", "w", output=True), _a("In", "b", "c", "h", "w"))

NESTS: Mapping[str, NestInfo] = MappingProxyType({
    n.name: n
    for n in (
        NestInfo(name="matmul", summary="C[i,j] += A[i,k] B[k,j]",
                 loops=(("i", 1024), ("j", 1024), ("k", 1024)), arrays=_MATMUL, app="gemm-c"),
        NestInfo(name="matmul-rect", summary="C[i,j] += A[i,k] B[k,j], inner dimension 16",
                 loops=(("i", 4096), ("j", 4096), ("k", 16)), arrays=_MATMUL),
        NestInfo(name="matvec", summary="y[i] += A[i,j] x[j]", loops=(("i", 4096), ("j", 4096)),
                 arrays=(_a("y", "i", output=True), _a("A", "i", "j"), _a("x", "j"))),
        NestInfo(name="conv1x1", summary="Out[b,k,h,w] += In[b,c,h,w] F[k,c] (pointwise)",
                 loops=(("b", 8), ("k", 64), ("h", 32), ("w", 32), ("c", 64)),
                 arrays=(*_CONV, _a("F", "k", "c"))),
        NestInfo(name="conv3x3",
                 summary="Out[b,k,h,w] += In[b,c,h+r,w+s] F[k,c,r,s] (input indexed by output "
                         "position, multiplicity 9)",
                 loops=(("b", 8), ("k", 32), ("h", 32), ("w", 32), ("c", 16), ("r", 3), ("s", 3)),
                 arrays=(_CONV[0], _a("In", "b", "c", "h", "w", multiplicity=9),
                         _a("F", "k", "c", "r", "s")),
                 app="conv2d-train"),
        NestInfo(name="nbody", summary="F[i] += f(X[i], X[j]) (all pairs)",
                 loops=(("i", 4096), ("j", 4096)),
                 arrays=(_a("F", "i", output=True), _a("Xi", "i", storage="X"),
                         _a("Xj", "j", storage="X")),
                 app="md"),
        NestInfo(name="fc", summary="Y[b,o] += W[o,i] X[b,i] (fully connected layer)",
                 loops=(("b", 256), ("o", 1024), ("i", 1024)),
                 arrays=(_a("Y", "b", "o", output=True), _a("W", "o", "i"), _a("X", "b", "i")),
                 app="gemm-train"),
    )
})  # fmt: skip


def nest_info(name: str) -> NestInfo:
    """The built-in nest ``name``.

    Raises:
        UnknownNameError: no such built-in.
    """
    try:
        return NESTS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown loop nest {name!r} (built-ins: {', '.join(NESTS)})"
        ) from None


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise NestError(f"{where}: missing key {key!r}")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise NestError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def load_nest(path: str | Path) -> LoopNest:
    """Read one nest from a TOML file (format in the module docstring).

    Raises:
        NestError: unreadable or malformed file; the message names the file and the key.
    """
    path = Path(path)
    known = ("arrays", "loops", "name", "summary")
    raw = load_toml(path, what="loop-nest file", error=NestError, allowed=known)
    where = str(path)
    name = _get(raw, "name", str, where)
    loops = _get(raw, "loops", dict, where)
    if not loops:
        raise NestError(f"{where}.loops: needs at least one loop, e.g. i = 1024")
    for loop, bound in loops.items():
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < 1:
            raise NestError(f"{where}.loops.{loop}: bound {bound!r}: must be an integer >= 1")
    arrays = []
    items = _get(raw, "arrays", list, where)
    for n, item in enumerate(items):
        at = f"{where}.arrays[{n}]"
        if not isinstance(item, dict):
            raise NestError(f"{at}: expected a table with name and indices")
        allowed = {"name", "indices", "output", "storage", "multiplicity"}
        bad = sorted(set(item) - allowed)
        if bad:
            raise NestError(f"{at}: unknown key {bad[0]!r} (allowed: {', '.join(sorted(allowed))})")
        indices = _get(item, "indices", list, at)
        if not all(isinstance(i, str) for i in indices):
            raise NestError(f"{at}.indices: expected loop names, got {indices!r}")
        arrays.append(Array(
            name=_get(item, "name", str, at),
            indices=tuple(indices),
            output=_get(item, "output", bool, at, False),
            storage=_get(item, "storage", str, at, None),
            multiplicity=_get(item, "multiplicity", int, at, 1),
        ))  # fmt: skip
    try:
        return LoopNest(name=name, loops=tuple(loops.items()), arrays=tuple(arrays),
                        summary=_get(raw, "summary", str, where, ""))  # fmt: skip
    except NestError as exc:
        raise NestError(f"{where}: {exc}") from None
