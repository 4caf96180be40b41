"""Overhead of measuring with hpcprof's timer backend versus running the app bare.

Claim: the timer backend adds < 2% to an app's wall time. Runs the C triad (default size)
alternately bare (subprocess, timed here) and through the runner with the timer backend,
then the randomized / communication-avoiding linear-algebra apps and kernel ridge
regression (small sizes, fewer rounds), prints the median ratio per app, and writes
results/benchmarks/hpcprof_overhead.csv atomically.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from hpcprof.backends.timer import TimerBackend
from hpcprof.results.records import Metric, Precision
from hpcprof.run.config import RunConfig, SizeScale
from hpcprof.run.host import collect_host
from hpcprof.run.runner import measure
from hpcprof.run.tasks import builtin_tasks
from precision.common.files import atomic_write_text

APP = "triad-c"
ROUNDS = 15
PYTHON_APPS = ("glu", "glu-srht", "rqr", "caqr", "caqr-flat", "krr", "krr-kmeans")
PYTHON_ROUNDS = 5
OUT = Path("results/benchmarks/hpcprof_overhead.csv")


def overhead(app: str, rounds: int, scale: SizeScale) -> tuple[list[float], list[float]] | None:
    """Wall times of ``rounds`` bare runs and ``rounds`` timer-backend runs of ``app``."""
    config = RunConfig(apps=(app,), precisions=(Precision.FLOAT64,), scale=scale)
    (task,) = builtin_tasks(config)
    cmd = task.command()  # builds a C program once, outside the timing
    backend = TimerBackend(collect_host())
    subprocess.run(cmd, capture_output=True, check=True)  # warm caches
    bare: list[float] = []
    timed: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        m = measure(task, backend, 0, None)
        timed.append(time.perf_counter() - t0)
        if m.value(Metric.WALL_S) is None:
            print(f"{app}: run failed: {m.status.value} {m.stderr_tail}", file=sys.stderr)
            return None
    return bare, timed


def main() -> int:
    rows = ["app,round,bare_s,timer_backend_s"]
    plan = [(APP, ROUNDS, SizeScale.DEFAULT)] + [
        (a, PYTHON_ROUNDS, SizeScale.SMALL) for a in PYTHON_APPS
    ]
    for app, rounds, scale in plan:
        times = overhead(app, rounds, scale)
        if times is None:
            return 1
        bare, timed = times
        ratio = statistics.median(timed) / statistics.median(bare)
        print(
            f"{app}: bare median {statistics.median(bare):.4f}s, timer backend median "
            f"{statistics.median(timed):.4f}s, ratio {ratio:.4f} (target < 1.02)"
        )
        rows += [
            f"{app},{i},{b:.6f},{t:.6f}" for i, (b, t) in enumerate(zip(bare, timed, strict=True))
        ]
        rows.append(f"{app},median_ratio,{ratio:.6f},")
    atomic_write_text(OUT, "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
