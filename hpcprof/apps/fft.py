"""1-D complex FFT, forward and inverse (NumPy pocketfft): model 5 N log2 N per transform."""

from __future__ import annotations

import math

import numpy as np

from hpcprof.apps.base import AppInfo, AppKind, Region, real_dtype
from hpcprof.results.records import Precision


def fft_kernel(n: int, precision: Precision, region: Region) -> float:
    """Forward then inverse FFT of ``n`` random complex points.

    Returns the larger of the round-trip error and the forward transform's error against
    a float64 transform, both relative to the largest magnitude.
    """
    if n & (n - 1):
        raise ValueError(f"fft size {n}: must be a power of two")
    dtype = np.dtype(real_dtype(precision))
    cdtype = np.result_type(dtype, np.complex64)
    rng = np.random.default_rng(0)
    x = (rng.random(n) + 1j * rng.random(n)).astype(cdtype)
    with region:
        y = np.fft.fft(x)
        back = np.fft.ifft(y)
    ref = np.fft.fft(x.astype(np.complex128))
    forward = np.max(np.abs(y - ref)) / np.max(np.abs(ref))
    round_trip = np.max(np.abs(back - x)) / np.max(np.abs(x))
    return float(max(forward, round_trip))


def _flops(n: int) -> float:
    return 2 * 5.0 * n * math.log2(n)


def _bytes(n: int, itemsize: int) -> float:
    return 2 * 2.0 * n * 2 * itemsize  # complex in and out, two transforms


APPS = (
    AppInfo(
        name="fft",
        summary="1-D complex FFT, forward + inverse (NumPy)",
        kind=AppKind.NUMPY,
        size_doc="transform length (power of two)",
        default_size=1 << 21,
        small_size=1 << 12,
        flops=_flops,
        bytes_moved=_bytes,
        tolerance=(1e-12, 1e-4),
        kernel=fft_kernel,
    ),
)
