"""Output buffers for the rounding kernel."""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable

import torch

_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def empty_output(like: torch.Tensor) -> torch.Tensor:
    """An uninitialized tensor like ``like``, backed by huge pages where Linux allows.

    Faulting in a fresh multi-megabyte buffer 4 KiB at a time costs as much as the
    rounding itself; asking for transparent huge pages (madvise, before the first touch)
    makes the output nearly free. Without THP the call is a harmless no-op.
    """
    out = torch.empty_like(like)
    advise = _madvise() if out.device.type == "cpu" else None
    nbytes = out.numel() * out.element_size()
    if advise is not None and nbytes >= 4 * _HUGE_PAGE:
        start = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
        stop = (out.data_ptr() + nbytes) // _HUGE_PAGE * _HUGE_PAGE
        if stop > start:
            advise(start, stop - start, _MADV_HUGEPAGE)
    return out
