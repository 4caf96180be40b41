"""Cost of the low-precision all-reduce versus a plain float32 all-reduce.

Claim: with 2 gloo workers on ~10M gradient elements in ResNet-like layer sizes, the carrier
reduction with APS costs at most 1.3x the float32 all-reduce, and the ordered (rank / ring)
reductions with APS at most 3x. Each variant runs :func:`all_reduce_gradients` (the float32
baseline is the same call with ``fmt=None``) with telemetry on (the default: counted inside
the rounding passes) and, for the APS variants, off (``-notel``); the quantization kernel
is compiled during a warm-up
round before timing. Prints the ratios (a missed target is reported, not an error: this is a
measurement) and writes results/benchmarks/allreduce.csv atomically.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from precision.collectives import (
    LowPrecisionState,
    Reduction,
    all_reduce_gradients,
    init_process_group_with_timeout,
)
from precision.common.files import atomic_write_text
from precision.registry import from_bits

WORLD = 2
ROUNDS = 7
OUT = Path("results/benchmarks/allreduce.csv")
# ResNet-50-like tensors: 3x3 and 1x1 convolutions, the classifier, batch-norm vectors.
LAYERS = (
    [2048 * 1000, 1000]
    + [512 * 512 * 9] * 2
    + [2048 * 512]
    + [256 * 256 * 9] * 3
    + [128 * 128 * 9] * 4
    + [64 * 64 * 9] * 4
    + [c for c in (64, 128, 256, 512, 1024, 2048) for _ in range(4)]
)
FMT = from_bits(4)
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("float32", {"fmt": None}),
    ("carrier", {"fmt": FMT, "aps": False, "reduction": Reduction.CARRIER}),
    ("carrier+aps", {"fmt": FMT, "aps": True, "reduction": Reduction.CARRIER}),
    ("rank", {"fmt": FMT, "aps": False, "reduction": Reduction.RANK}),
    ("rank+aps", {"fmt": FMT, "aps": True, "reduction": Reduction.RANK}),
    ("ring", {"fmt": FMT, "aps": False, "reduction": Reduction.RING}),
    ("ring+aps", {"fmt": FMT, "aps": True, "reduction": Reduction.RING}),
]
VARIANTS += [
    (f"{name}-notel", {**kw, "telemetry": False}) for name, kw in VARIANTS if "+aps" in name
]
TARGETS = {"carrier+aps": 1.3, "rank+aps": 3.0, "ring+aps": 3.0}
TARGETS |= {f"{name}-notel": t for name, t in TARGETS.items()}


def _worker(rank: int, port: int, threads: int, outfile: str) -> None:
    torch.set_num_threads(threads)
    init_process_group_with_timeout("gloo", rank, WORLD, f"tcp://127.0.0.1:{port}", 120)
    g = torch.Generator().manual_seed(rank)
    params = [torch.zeros(n, requires_grad=True) for n in LAYERS]
    grads = [torch.randn(n, generator=g) * 1e-4 for n in LAYERS]

    def once(kw: dict[str, Any]) -> float:
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr.clone()
        dist.barrier()
        t0 = time.perf_counter()
        all_reduce_gradients(params, LowPrecisionState(**kw))
        elapsed = torch.tensor([time.perf_counter() - t0])
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the slowest worker sets the pace
        return float(elapsed)

    for _, kw in VARIANTS:  # warm-up: compiles the kernels, faults in the buffers
        once(kw)
    times: dict[str, list[float]] = {name: [] for name, _ in VARIANTS}
    for _ in range(ROUNDS):  # interleaved, so drift affects every variant alike
        for name, kw in VARIANTS:
            times[name].append(once(kw))
    if rank == 0:
        torch.save(times, outfile)
    dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    threads = max(1, (os.cpu_count() or 2) // WORLD)
    with tempfile.TemporaryDirectory() as tmp:
        outfile = str(Path(tmp, "times.pt"))
        mp.start_processes(
            _worker, args=(_free_port(), threads, outfile), nprocs=WORLD, start_method="spawn"
        )
        times: dict[str, list[float]] = torch.load(outfile)
    base = statistics.median(times["float32"])
    numel = sum(LAYERS)
    print(f"{WORLD} gloo workers, {numel / 1e6:.1f}M elements in {len(LAYERS)} tensors, {FMT}")
    rows = ["variant,world_size,numel,format,median_s,ratio_vs_float32,target"]
    missed = []
    for name, _ in VARIANTS:
        med = statistics.median(times[name])
        ratio = med / base
        target = TARGETS.get(name)
        verdict = "" if target is None else (" ok" if ratio <= target else " MISSED")
        if target is not None and ratio > target:
            missed.append(f"{name} {ratio:.2f}x > {target}x")
        tgt = "" if target is None else f" (target <= {target})"
        print(f"{name:18s} median {med * 1e3:8.1f} ms  ratio {ratio:5.2f}{tgt}{verdict}")
        fmt_name = "float32" if name == "float32" else str(FMT)
        rows.append(f"{name},{WORLD},{numel},{fmt_name},{med:.6f},{ratio:.4f},{target or ''}")
    atomic_write_text(OUT, "\n".join(rows) + "\n")
    print("targets missed: " + "; ".join(missed) if missed else "all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
