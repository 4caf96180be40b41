"""Every built-in app passes its own self-check in float64 and float32 at small size."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpcprof.apps import APPS
from hpcprof.apps.base import AppKind, Region, parse_protocol
from hpcprof.results.records import Precision
from hpcprof.run.build import build, find_compiler

PRECISIONS = [Precision.FLOAT64, Precision.FLOAT32]
PY_APPS = [n for n, i in APPS.items() if i.kind is not AppKind.C and i.default_run]
C_APPS = [n for n, i in APPS.items() if i.kind is AppKind.C]
no_cc = pytest.mark.skipif(find_compiler() is None, reason="no C compiler (cc/gcc) on PATH")


@pytest.mark.parametrize("precision", PRECISIONS, ids=lambda p: p.value)
@pytest.mark.parametrize("name", PY_APPS)
def test_python_kernel_self_check(name: str, precision: Precision) -> None:
    info = APPS[name]
    assert info.kernel is not None
    region = Region()
    error = info.kernel(info.small_size, precision, region)
    assert error <= info.tolerance_for(precision), f"{name} {precision.value}: error {error:.3e}"
    assert region.seconds is not None and region.seconds >= 0


@no_cc
@pytest.mark.parametrize("precision", PRECISIONS, ids=lambda p: p.value)
@pytest.mark.parametrize("name", C_APPS)
def test_c_program_self_check(name: str, precision: Precision) -> None:
    info = APPS[name]
    assert info.c_source is not None and info.c_args is not None
    binary = build(info.c_source, precision)
    out = subprocess.run(
        [str(binary), *info.c_args(info.small_size)], capture_output=True, text=True, check=True
    )
    proto = parse_protocol(out.stdout)
    assert proto["check_error"] <= info.tolerance_for(precision)
    assert proto["kernel_s"] >= 0


@no_cc
def test_build_is_cached_and_keyed_by_precision() -> None:
    a64 = build("gemm.c", Precision.FLOAT64)
    a32 = build("gemm.c", Precision.FLOAT32)
    assert a64 != a32
    mtime = a64.stat().st_mtime_ns
    assert build("gemm.c", Precision.FLOAT64) == a64
    assert a64.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("name", list(APPS))
@given(size=st.integers(min_value=3, max_value=4096))
def test_analytic_models_positive_and_monotone(name: str, size: int) -> None:
    info = APPS[name]
    if name == "fft":
        size = 1 << (size.bit_length() + 1)
    assert info.flops(size) > 0
    assert info.flops(2 * size) > info.flops(size)
    assert info.bytes_moved(size, 4) * 2 == pytest.approx(info.bytes_moved(size, 8))


def test_protocol_ignores_app_output() -> None:
    text = "hello\nhpcprof: check_error=1.5e-07 kernel_s=2.0e-03 junk\nresult=3\n"
    assert parse_protocol(text) == {"check_error": 1.5e-07, "kernel_s": 2.0e-03}


class _CountingRegion(Region):
    """A Region that notes how many op calls happened before the timing started."""

    def __init__(self, calls: list[int]) -> None:
        super().__init__()
        self.calls = calls
        self.calls_before_timing: int | None = None

    def __enter__(self) -> Region:
        self.calls_before_timing = len(self.calls)
        return super().__enter__()


def test_cpu_training_kernel_is_warmed_up_before_timing() -> None:
    import torch

    from hpcprof.apps.dl_kernels import _forward_backward

    calls: list[int] = []

    def op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x @ w

    region = _CountingRegion(calls)
    x, w, g = (torch.eye(4, dtype=torch.float64) for _ in range(3))
    error = _forward_backward(op, x, w, g, Precision.FLOAT32, region, "cpu")
    # before: the first (cold) call was the timed one on a CPU
    assert region.calls_before_timing == 1
    assert len(calls) == 3  # warm-up, timed, float64 reference
    assert error == 0.0  # identity operands are exact in float32
