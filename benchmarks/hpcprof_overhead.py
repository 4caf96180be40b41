"""Overhead of measuring with hpcprof's timer backend versus running the app bare.

Claim: the timer backend adds < 2% to an app's wall time. Runs the C triad (default size)
alternately bare (subprocess, timed here) and through the runner with the timer backend,
prints the median ratio, and writes results/benchmarks/hpcprof_overhead.csv atomically.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpcprof.backends.timer import TimerBackend
from hpcprof.config import RunConfig
from hpcprof.host import collect_host
from hpcprof.records import Metric, Precision
from hpcprof.runner import measure
from hpcprof.tasks import builtin_tasks

APP = "triad-c"
ROUNDS = 15
OUT = Path("results/benchmarks/hpcprof_overhead.csv")


def main() -> int:
    config = RunConfig(apps=(APP,), precisions=(Precision.FLOAT64,))
    (task,) = builtin_tasks(config)
    cmd = task.command()  # builds the C program once, outside the timing
    backend = TimerBackend(collect_host())
    subprocess.run(cmd, capture_output=True, check=True)  # warm caches
    bare: list[float] = []
    timed: list[float] = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        m = measure(task, backend, 0, None)
        timed.append(time.perf_counter() - t0)
        if m.value(Metric.WALL_S) is None:
            print(f"run failed: {m.status.value} {m.stderr_tail}", file=sys.stderr)
            return 1
    ratio = statistics.median(timed) / statistics.median(bare)
    print(
        f"{APP}: bare median {statistics.median(bare):.4f}s, timer backend median "
        f"{statistics.median(timed):.4f}s, ratio {ratio:.4f} (target < 1.02)"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows = ["round,bare_s,timer_backend_s"]
    rows += [f"{i},{b:.6f},{t:.6f}" for i, (b, t) in enumerate(zip(bare, timed, strict=True))]
    rows.append(f"median_ratio,{ratio:.6f},")
    fd, tmp = tempfile.mkstemp(dir=OUT.parent, prefix=".hpcprof_overhead.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    os.replace(tmp, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
