"""Compile the shipped C proxy programs on first use and cache the binaries.

Nothing is built at import. A binary is keyed by the hash of its source, the compiler's
path and version, the flags and the precision macro, so editing a source or switching
compilers rebuilds it. Builds write to a temporary file in the cache directory and are
moved into place with ``os.replace``, so concurrent runs never see half-written binaries.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from hpcprof.errors import BuildError
from hpcprof.results.records import Precision

# Portable x86-64 baseline on purpose: valgrind cannot run AVX-512 code, and a binary built
# with -march=native would die under the callgrind backend on AVX-512 machines.
DEFAULT_FLAGS: tuple[str, ...] = ("-O3", "-fno-fast-math", "-std=c11")

_PRECISION_MACRO = {Precision.FLOAT64: "-DHP_FLOAT64", Precision.FLOAT32: "-DHP_FLOAT32"}


@dataclass(frozen=True, kw_only=True)
class Toolchain:
    """A C compiler and the flags every proxy program is built with."""

    compiler: str
    flags: tuple[str, ...] = DEFAULT_FLAGS


def cache_dir() -> Path:
    """Directory for built binaries: $HPCPROF_CACHE_DIR, else $XDG_CACHE_HOME/prec-study/hpcprof."""
    override = os.environ.get("HPCPROF_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prec-study" / "hpcprof"


def find_compiler() -> str | None:
    """Path of the system C compiler ($CC, cc, gcc, clang), or None."""
    candidates = [os.environ.get("CC", ""), "cc", "gcc", "clang"]
    for name in candidates:
        if name and (path := shutil.which(name)):
            return path
    return None


@cache
def compiler_version(compiler: str) -> str:
    """First line of ``compiler --version`` (part of the cache key)."""
    try:
        out = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise BuildError(f"{compiler}: cannot run: {exc}") from exc
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def default_toolchain() -> Toolchain:
    """The system compiler with :data:`DEFAULT_FLAGS`.

    Raises:
        BuildError: no C compiler is installed.
    """
    compiler = find_compiler()
    if compiler is None:
        raise BuildError("no C compiler found (set $CC or install cc/gcc)")
    return Toolchain(compiler=compiler)


COMMON_HEADER = "hp_common.h"


def source_text(name: str) -> str:
    """Text of the shipped C source (or header) ``hpcprof/apps/c/<name>``."""
    return resources.files("hpcprof.apps").joinpath("c", name).read_text(encoding="utf-8")


def binary_key(source: str, precision: Precision, toolchain: Toolchain) -> str:
    """Cache key of one build: hash of source, compiler, compiler version, flags, precision."""
    h = hashlib.sha256()
    for part in (
        source,
        source_text(COMMON_HEADER),
        toolchain.compiler,
        compiler_version(toolchain.compiler),
        *toolchain.flags,
        _PRECISION_MACRO[precision],
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def build(name: str, precision: Precision, toolchain: Toolchain | None = None) -> Path:
    """Return the path of the compiled program, compiling it if not cached.

    Args:
        name: source file name under ``hpcprof/apps/c`` (e.g. ``gemm.c``).
        precision: FLOAT64 or FLOAT32; selects ``-DHP_FLOAT64`` or ``-DHP_FLOAT32``.
        toolchain: compiler and flags; the system compiler by default.

    Raises:
        BuildError: no compiler, unsupported precision, or the compile failed.
    """
    if precision not in _PRECISION_MACRO:
        raise BuildError(f"{name}: precision {precision.value} has no C build (float64, float32)")
    tc = toolchain or default_toolchain()
    source = source_text(name)
    key = binary_key(source, precision, tc)
    stem = name.removesuffix(".c")
    out_dir = cache_dir()
    flags = [tc.compiler, *tc.flags, _PRECISION_MACRO[precision]]
    return _cached_build(
        out_dir / f"{stem}-{precision.value}-{key}",
        {name: source, COMMON_HEADER: source_text(COMMON_HEADER)},
        lambda d: [*flags, str(d / name), "-o", str(d / stem), "-lm"],
        stem,
        timeout_s=300,
    )


def _cached_build(
    target: Path,
    sources: dict[str, str],
    command: Callable[[Path], list[str]],
    built: str,
    *,
    timeout_s: float,
) -> Path:
    """``target`` if it is cached; else write ``sources`` into a scratch directory beside it,
    run ``command(scratch)`` there and move its output ``built`` onto ``target``.

    Raises:
        BuildError: the compiler did not run, or the compile failed (its last lines).
    """
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        scratch = Path(tmp)
        for file_name, text in sources.items():
            (scratch / file_name).write_text(text, encoding="utf-8")
        _compile(
            command(scratch), next(iter(sources)), scratch / built, target, timeout_s=timeout_s
        )
    return target


def _compile(cmd: list[str], name: str, built: Path, target: Path, *, timeout_s: float) -> None:
    """Run the compiler command ``cmd``, then move its output ``built`` onto ``target``."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{name}: compiler did not run: {exc}") from exc
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise BuildError(f"{name}: compile failed ({' '.join(cmd)}): {tail}")
    os.replace(built, target)


MARKER_SOURCE = "hp_marker.c"
MARKER_FLAGS: tuple[str, ...] = ("-O0", "-shared", "-fPIC")


def build_marker(compiler: str | None = None) -> Path:
    """Path of the region shim (``hp_marker.c``), compiled if not cached: the markers the
    callgrind backend zeroes and dumps at, and the collection toggle of hpcprof.analysis.traffic.

    Raises:
        BuildError: no compiler, or the compile failed.
    """
    cc = compiler or default_toolchain().compiler
    source = source_text(MARKER_SOURCE)
    h = hashlib.sha256()
    for part in (source, cc, compiler_version(cc), *MARKER_FLAGS):
        h.update(part.encode())
        h.update(b"\0")
    return _cached_build(
        cache_dir() / f"libhp_marker-{h.hexdigest()[:20]}.so",
        {MARKER_SOURCE: source},
        lambda d: [cc, *MARKER_FLAGS, str(d / MARKER_SOURCE), "-o", str(d / "libhp_marker.so")],
        "libhp_marker.so",
        timeout_s=120,
    )
