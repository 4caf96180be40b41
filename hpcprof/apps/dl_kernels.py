"""Training kernels through torch: conv2d and GEMM (linear layer), forward + backward.

Backward computes the input and the weight gradients, each as costly as the forward, so
both models count 3x the forward FLOPs. The self-check compares output and gradients
with the same computation in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpcprof.apps.base import AppInfo, AppKind, Region, real_dtype
from hpcprof.apps.device import timed
from hpcprof.results.records import Precision

if TYPE_CHECKING:
    import torch

CONV_IN = 16
CONV_OUT = 32
CONV_HW = 32
CONV_K = 3


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).abs().max() / b.abs().max())


def _forward_backward(
    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    w0: torch.Tensor,
    g0: torch.Tensor,
    precision: Precision,
    region: Region,
    device: Any,
) -> float:
    """Time ``op(x, w)`` forward and backward at ``precision`` (float64 operands given),
    then return the largest relative error of output and gradients vs float64."""
    import torch

    dtype = getattr(torch, real_dtype(precision))

    def run(dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x0.to(device=device, dtype=dt).requires_grad_()
        w = w0.to(device=device, dtype=dt).requires_grad_()
        y = op(x, w)
        y.backward(g0.to(device=device, dtype=dt))
        if x.grad is None or w.grad is None:
            raise RuntimeError("backward produced no gradient")
        return y.detach().cpu(), x.grad.cpu(), w.grad.cpu()

    # Warm-up on every device, as the other apps get: the first call pays for lazy set-up
    # (oneDNN/cuDNN algorithm selection, thread pools, allocations), 1.26 s against 0.26 ms
    # for a later one on a CPU, which would otherwise be timed as the kernel.
    run(dtype)
    with timed(region, device):
        got = run(dtype)
    ref = run(torch.float64)
    return max(_max_rel(a, b) for a, b in zip(got, ref, strict=True))


def conv_kernel(batch: int, precision: Precision, region: Region, device: Any = "cpu") -> float:
    """conv2d 3x3, 16 -> 32 channels, 32 x 32 images, padding 1; forward and backward."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, CONV_IN, CONV_HW, CONV_HW, generator=gen, dtype=torch.float64)
    w0 = torch.randn(CONV_OUT, CONV_IN, CONV_K, CONV_K, generator=gen, dtype=torch.float64)
    g0 = torch.randn(batch, CONV_OUT, CONV_HW, CONV_HW, generator=gen, dtype=torch.float64)

    def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w, padding=CONV_K // 2)

    return _forward_backward(conv, x0, w0, g0, precision, region, device)


def linear_kernel(n: int, precision: Precision, region: Region, device: Any = "cpu") -> float:
    """``y = x @ W^T`` with n x n operands; forward and backward."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, n, generator=gen, dtype=torch.float64)
    w0 = torch.randn(n, n, generator=gen, dtype=torch.float64)
    g0 = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return _forward_backward(torch.nn.functional.linear, x0, w0, g0, precision, region, device)


def _conv_flops(batch: int) -> float:
    forward = 2.0 * batch * CONV_OUT * CONV_HW * CONV_HW * CONV_IN * CONV_K * CONV_K
    return 3 * forward


def _conv_bytes(batch: int, itemsize: int) -> float:
    act = batch * CONV_HW * CONV_HW * (CONV_IN + CONV_OUT)
    return 3.0 * (act + CONV_OUT * CONV_IN * CONV_K * CONV_K) * itemsize


APPS = (
    AppInfo(
        name="conv2d-train",
        summary="conv2d 3x3 16->32 ch, 32x32, forward + backward (torch)",
        kind=AppKind.TORCH,
        size_doc="batch size",
        default_size=8,
        small_size=2,
        flops=_conv_flops,
        bytes_moved=_conv_bytes,
        tolerance=(1e-12, 1e-4),
        kernel=conv_kernel,
    ),
    AppInfo(
        name="gemm-train",
        summary="linear layer y = x W^T, n x n, forward + backward (torch)",
        kind=AppKind.TORCH,
        size_doc="matrix order n (batch = features = n)",
        default_size=256,
        small_size=32,
        flops=lambda n: 6.0 * n**3,
        bytes_moved=lambda n, itemsize: 3 * 3.0 * n * n * itemsize,
        tolerance=(1e-12, 1e-4),
        kernel=linear_kernel,
    ),
)
