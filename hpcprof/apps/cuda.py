"""GEMM, triad and training kernels on a CUDA device through torch, timed with CUDA events.

The records are variants of the CPU apps (same FLOP and byte models, ``device=CUDA``) and
run only when named (``hpcprof run --app gemm-cuda``). Without a CUDA device the kernel
stops with an error that the runner records as a failed run.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from hpcprof.apps import dl_kernels, gemm, stream
from hpcprof.apps.base import AppInfo, AppKind, Device, Kernel, Region, real_dtype
from hpcprof.apps.device import cuda_device, timed
from hpcprof.results.records import Precision


def gemm_cuda_kernel(n: int, precision: Precision, region: Region) -> float:
    """``C = A @ B`` on the GPU (cuBLAS; TF32 left at torch's default, off for matmul)."""
    import torch

    device = cuda_device()
    dtype = getattr(torch, real_dtype(precision))
    rng = np.random.default_rng(0)
    a_np = rng.random((n, n)).astype(real_dtype(precision))
    b_np = rng.random((n, n)).astype(real_dtype(precision))
    a = torch.from_numpy(a_np).to(device=device, dtype=dtype)
    b = torch.from_numpy(b_np).to(device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up: cuBLAS handle and kernel selection
    with timed(region, device):
        c = torch.matmul(a, b)
    return gemm.freivalds_error(a_np, b_np, c.cpu().numpy())


def triad_cuda_kernel(n: int, precision: Precision, region: Region) -> float:
    """STREAM-like triad on the GPU, SWEEPS times; max relative error vs float64."""
    import torch

    device = cuda_device()
    rng = np.random.default_rng(0)
    b_np = rng.random(n).astype(real_dtype(precision))
    c_np = rng.random(n).astype(real_dtype(precision))
    b, c = (torch.from_numpy(x).to(device) for x in (b_np, c_np))
    a = torch.empty_like(b)
    s = float(np.dtype(real_dtype(precision)).type(3.0 / 7.0))
    torch.mul(c, s, out=a)
    with timed(region, device):
        for _ in range(stream.SWEEPS):
            torch.mul(c, s, out=a)
            a.add_(b)
    ref = b_np.astype(np.float64) + s * c_np.astype(np.float64)
    got = a.cpu().numpy().astype(np.float64)
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def _cuda_training(kernel: Any, size: int, precision: Precision, region: Region) -> float:
    return float(kernel(size, precision, region, device=cuda_device()))


def _on_cuda(info: AppInfo, kernel: Kernel, **changes: Any) -> AppInfo:
    """The ``<name>-cuda`` variant of a CPU app: same models, a torch kernel on the GPU."""
    fields: dict[str, Any] = {"name": f"{info.name}-cuda", "kind": AppKind.TORCH, **changes}
    return replace(info, **fields, kernel=kernel, device=Device.CUDA)


APPS = (
    _on_cuda(
        gemm.APPS[0],
        gemm_cuda_kernel,
        summary="dense matrix multiply on a CUDA device (torch, CUDA events)",
        default_size=4096,
    ),
    _on_cuda(
        stream.APPS[0],
        triad_cuda_kernel,
        summary="STREAM-like triad on a CUDA device (torch, CUDA events)",
        default_size=64_000_000,
    ),
    *(
        _on_cuda(
            info,
            partial(_cuda_training, kernel),
            summary=info.summary.replace("(torch)", "(torch, CUDA device)"),
        )
        for info, kernel in zip(
            dl_kernels.APPS, (dl_kernels.conv_kernel, dl_kernels.linear_kernel), strict=True
        )
    ),
)
