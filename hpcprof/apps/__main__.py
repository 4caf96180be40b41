"""Child-process entry point of the Python kernels: ``python -m hpcprof.apps NAME SIZE PREC``.

Prints one protocol line (``hpcprof: check_error=... kernel_s=...``) on stdout. This is a
program, not library code, so it prints and sets the exit status.
"""

from __future__ import annotations

import os
import sys

from hpcprof.apps import APPS
from hpcprof.apps.base import PROTOCOL_PREFIX, RANK_PREFIX, Region
from hpcprof.apps.device import DeviceUnavailable
from hpcprof.results.records import Precision


def _marker() -> object | None:
    """pylikwid's marker API when the likwid backend asked for it and pylikwid imports."""
    if os.environ.get("HPCPROF_LIKWID_MARKER") != "1":
        return None
    try:
        import pylikwid  # type: ignore[import-not-found]
    except ImportError:
        return None
    pylikwid.markerinit()
    pylikwid.markerthreadinit()
    return pylikwid


def _callgrind() -> object | None:
    """The region-marker library when the callgrind backend passed its path."""
    path = os.environ.get("HPCPROF_CALLGRIND_MARKER")
    if not path:
        return None
    import ctypes

    return ctypes.CDLL(path)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python -m hpcprof.apps NAME SIZE PRECISION\n")
        return 2
    name, size, prec = argv
    info = APPS[name]
    if info.kernel is None:
        sys.stderr.write(f"{name}: not a Python kernel\n")
        return 2
    marker = _marker()
    region = Region(marker=marker, callgrind=_callgrind())
    try:
        error = info.kernel(int(size), Precision(prec), region)
    except DeviceUnavailable as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        return 3
    if marker is not None:
        marker.markerclose()  # type: ignore[attr-defined]
    sys.stdout.write(f"{PROTOCOL_PREFIX} check_error={error:.6e} kernel_s={region.seconds:.6e}\n")
    if region.rank_counts:
        counts = " ".join(f"{k}={v}" for k, v in region.rank_counts.items())
        sys.stdout.write(f"{RANK_PREFIX} {counts}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
