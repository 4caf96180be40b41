"""Throughput of ``precision.quantize`` against torch's own casts (and qtorch when present).

Claim (CPU): nearest-even is at least as fast as torch's native ``x.to(bfloat16).float()``
for every format, stochastic rounding at least half that, and both at least 4x qtorch's
``float_quantize``. Times one float32 tensor (16M elements by default) per case, best of
``--repeat`` runs after a warm-up (the warm-up includes the kernel's one-time compile),
prints elements/s and ratios, and writes results/benchmarks/quantize.csv.

    python benchmarks/quantize.py [--size 16777216] [--repeat 7] [--formats bfloat16,e3m0]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from precision import FloatFormat, RoundingMode, quantize
from precision.common.files import atomic_write_text
from precision.registry import parse

OUT = Path("results/benchmarks/quantize.csv")
DEFAULT_FORMATS = "bfloat16,float16,float8_e5m2,float8_e4m3fn,e3m0,float4_e2m1fn"


def best_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: compile, page faults
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def qtorch_float_quantize() -> Callable[..., torch.Tensor] | None:
    try:
        from qtorch.quant import float_quantize  # type: ignore[import-not-found]
    except Exception:  # qtorch builds a C++ extension at import; any failure means absent
        return None
    return float_quantize  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1 << 24)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--formats", default=DEFAULT_FORMATS)
    args = ap.parse_args(argv)
    x = torch.randn(args.size, generator=torch.Generator().manual_seed(0))
    n = x.numel()
    rows: list[dict[str, object]] = []

    def record(case: str, fmt: str, mode: str, seconds: float, ref: float) -> None:
        rows.append(
            {
                "case": case,
                "format": fmt,
                "rounding": mode,
                "elements": n,
                "seconds": f"{seconds:.6f}",
                "elements_per_s": f"{n / seconds:.4e}",
                "ratio_vs_bf16_cast": f"{ref / seconds:.3f}",
            }
        )
        print(
            f"{case:9s} {fmt:15s} {mode:16s} {n / seconds / 1e9:7.3f} Gelem/s  "
            f"speed vs torch bf16 cast: {ref / seconds:5.2f}x"
        )

    ref = best_time(lambda: x.to(torch.bfloat16).float(), args.repeat)
    record("torch", "bfloat16", "nearest", ref, ref)
    record(
        "torch",
        "float8_e5m2",
        "nearest",
        best_time(lambda: x.to(torch.float8_e5m2).float(), args.repeat),
        ref,
    )
    qt = qtorch_float_quantize()
    if qt is None:
        print("qtorch: not importable here; its column is skipped", file=sys.stderr)
    gen = torch.Generator().manual_seed(1)
    worst: dict[str, float] = {}
    for name in args.formats.split(","):
        fmt = parse(name)
        if not isinstance(fmt, FloatFormat):
            raise SystemExit(f"--formats: {name} is not a floating-point format")
        for mode in RoundingMode:
            t = best_time(
                lambda fmt=fmt, mode=mode: quantize(x, fmt, mode, generator=gen), args.repeat
            )
            record("precision", str(fmt), mode.value, t, ref)
            worst[mode.value] = min(worst.get(mode.value, 1e9), ref / t)
            if qt is not None and mode in (RoundingMode.NEAREST_AWAY, RoundingMode.STOCHASTIC):
                qmode = "nearest" if mode is RoundingMode.NEAREST_AWAY else "stochastic"
                tq = best_time(
                    lambda fmt=fmt, qmode=qmode: qt(
                        x, fmt.exponent_bits, fmt.mantissa_bits, rounding=qmode
                    ),
                    args.repeat,
                )
                record("qtorch", str(fmt), qmode, tq, ref)
                print(f"          precision is {tq / t:.2f}x qtorch for {fmt} {qmode}")
    print(
        "\nslowest format per mode, speed relative to torch's bf16 cast (targets: nearest >= 1.0, stochastic >= 0.5):"
    )
    for mode, r in worst.items():
        print(f"  {mode:16s} {r:5.2f}x")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(OUT, buf.getvalue())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
