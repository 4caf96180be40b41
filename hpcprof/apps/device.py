"""Where a torch kernel runs: the CUDA device, and timing a region on it with CUDA events.

Shared by the CUDA variants (:mod:`hpcprof.apps.cuda`) and the training kernels
(:mod:`hpcprof.apps.dl_kernels`), which import it; it imports neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hpcprof.apps.base import Region

if TYPE_CHECKING:
    import torch


class DeviceUnavailable(RuntimeError):
    """The kernel needs a device this machine lacks."""


def cuda_device() -> torch.device:
    """The current CUDA device.

    Raises:
        DeviceUnavailable: torch sees no CUDA device.
    """
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailable("no CUDA device: torch.cuda.is_available() is False")
    return torch.device("cuda")


@contextmanager
def timed(region: Region, device: Any) -> Iterator[None]:
    """Enter ``region``; on CUDA, time the work with CUDA events and synchronize at the end,
    so ``region.seconds`` is device time rather than launch time."""
    import torch

    if getattr(device, "type", device) != "cuda":
        with region:
            yield
        return
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    with region:
        start.record()
        yield
        end.record()
        torch.cuda.synchronize()
    region.seconds = start.elapsed_time(end) / 1e3
