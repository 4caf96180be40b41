"""The compiled kernel is checked against the eager one before its first result is used."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from precision import RoundingMode, kernel_backend, quantize
from precision import _dispatch as D
from precision._kernel import F32, F64
from precision.registry import parse


@pytest.fixture
def fresh_dispatch() -> Iterator[None]:
    """Forget which kernels were compiled, checked or failed; restore afterwards."""
    saved = (dict(D._compiled), set(D._verified), set(D._compile_failed))
    D._compiled.clear()
    D._verified.clear()
    D._compile_failed.clear()
    yield
    D._compiled.clear()
    D._compiled.update(saved[0])
    D._verified.clear()
    D._verified.update(saved[1])
    D._compile_failed.clear()
    D._compile_failed.update(saved[2])


def _half_lanes(b, out, p, key):  # type: ignore[no-untyped-def]
    """What a kernel built for twice this CPU's vector width does: every other block of
    eight values is left as it came in."""
    res = D.round_bits(b, p, key, F32, RoundingMode.NEAREST_EVEN)
    keep = (torch.arange(b.numel()) // 8) % 2 == 1
    out.copy_(torch.where(keep, b, res))
    return out


@pytest.mark.parametrize("carrier", [F32, F64], ids=lambda c: c.name)
def test_probe_covers_the_whole_range(carrier: D.Carrier) -> None:
    b = D.probe_bits(carrier, torch.device("cpu"))
    assert b.dtype == carrier.int_dtype and b.numel() % 8 != 0
    exponent = (b & carrier.abs_mask) >> carrier.mant
    top = (1 << (carrier.width - 1 - carrier.mant)) - 1
    assert bool((b < 0).any()) and bool((b > 0).any())
    assert int(exponent.min()) <= 1 and int(exponent.max()) >= top - 1


def test_wrong_compiled_kernel_falls_back_to_eager(fresh_dispatch: None) -> None:
    x = torch.randn(20000) * 1e3
    fmt = parse("e5m2")
    with kernel_backend("eager"):
        want = quantize(x, fmt)
    D._compiled[("float32", RoundingMode.NEAREST_EVEN, True, "cpu", False)] = _half_lanes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = quantize(x, fmt)
    assert torch.equal(got, want)
    msg = " ".join(str(w.message) for w in caught)
    assert "gives other bits than the eager one" in msg and "TORCHINDUCTOR_CACHE_DIR" in msg


def test_wrong_compiled_kernel_raises_when_compiled_is_required(fresh_dispatch: None) -> None:
    D._compiled[("float32", RoundingMode.NEAREST_EVEN, True, "cpu", False)] = _half_lanes
    with kernel_backend("compiled"), pytest.raises(RuntimeError, match="other bits"):
        quantize(torch.randn(5000), parse("bfloat16"))


_CHILD = textwrap.dedent(
    """
    import numpy as np, torch
    from precision import kernel_backend, quantize
    from precision.registry import parse
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 2**32, 20000, dtype=np.uint64)
                         .astype(np.uint32).view(np.float32).copy())
    fmt = parse("e5m2")
    with kernel_backend("eager"):
        want = quantize(x, fmt)
    got = quantize(x, fmt)
    same = (got.view(torch.int32) == want.view(torch.int32)) | (got.isnan() & want.isnan())
    print("mismatches", int((~same).sum()))
    """
)


@pytest.mark.slow
def test_cache_built_for_another_isa_is_caught(tmp_path: Path) -> None:
    """Reproduces the stale-cache case for real: a kernel compiled for AVX-512 is reused by
    a process restricted to AVX2 through the shared TorchInductor cache."""
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("needs a CPU with AVX-512 to build the kernel that AVX2 then reuses")
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PRECISION_KERNEL", None)

    def child(**extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1] + " | " + done.stderr

    first = child()
    assert first.startswith("mismatches 0 ")
    second = child(ATEN_CPU_CAPABILITY="avx2")
    assert second.startswith("mismatches 0 "), second
