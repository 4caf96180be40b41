"""Run a function on W real torch.distributed (gloo) processes on loopback.

Workers are started with the "spawn" method, join a process group with a short timeout, and
write their result (``torch.save``) or their error to files in a directory; the parent joins
them with a bound and terminates any worker still alive after it, so a hang shows up as a
test failure instead of a stuck run.
"""

from __future__ import annotations

import os
import socket
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp


@dataclass(frozen=True)
class WorkerResult:
    """What one worker left behind.

    Attributes:
        status: ``ok``, ``error`` (raised; ``error`` holds the text), ``died`` (exited
            without a result) or ``hung`` (still alive at the join bound; terminated).
        value: the function's return value when ``ok``.
        error: exception type and message, plus traceback.
        exitcode: the process's exit code.
    """

    status: str
    value: Any = None
    error: str = ""
    exitcode: int | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(
    fn: Callable[..., Any],
    rank: int,
    world: int,
    port: int,
    backend: str,
    pg_timeout_s: float,
    outdir: str,
    args: tuple[Any, ...],
) -> None:
    torch.set_num_threads(1)
    # Small test tensors run the eager kernel anyway; this keeps compilation out of workers.
    os.environ.setdefault("PRECISION_KERNEL", "eager")
    import torch.distributed as dist

    from precision.collectives import init_process_group_with_timeout

    out = Path(outdir)
    try:
        init_process_group_with_timeout(
            backend, rank, world, f"tcp://127.0.0.1:{port}", pg_timeout_s
        )
        value = fn(rank, world, *args)
        torch.save(value, out / f"{rank}.pt")
    except BaseException as exc:  # report everything, including SystemExit from the test
        (out / f"{rank}.err").write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        os._exit(1)  # skip process-group teardown, which could wait on dead peers
    if dist.is_initialized():
        dist.destroy_process_group()


def run_workers(
    fn: Callable[..., Any],
    world: int,
    *args: Any,
    backend: str = "gloo",
    pg_timeout_s: float = 15.0,
    join_timeout_s: float = 90.0,
) -> list[WorkerResult]:
    """Run ``fn(rank, world, *args)`` on ``world`` processes; return each one's outcome.

    ``fn`` must be a module-level function (it is pickled into spawned processes).
    """
    ctx = mp.get_context("spawn")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dist-") as tmp:
        procs = [
            ctx.Process(
                target=_entry,
                args=(fn, rank, world, port, backend, pg_timeout_s, tmp, args),
                daemon=True,
            )
            for rank in range(world)
        ]
        for p in procs:
            p.start()
        hung = set()
        deadline = _now() + join_timeout_s
        for rank, p in enumerate(procs):
            p.join(max(0.0, deadline - _now()))
            if p.is_alive():
                hung.add(rank)
        for rank in hung:
            procs[rank].terminate()
            procs[rank].join(5)
        results = []
        for rank, p in enumerate(procs):
            ok, err = Path(tmp, f"{rank}.pt"), Path(tmp, f"{rank}.err")
            if rank in hung:
                results.append(WorkerResult("hung", exitcode=p.exitcode))
            elif ok.exists():
                results.append(WorkerResult("ok", torch.load(ok, weights_only=False), "", 0))
            elif err.exists():
                results.append(WorkerResult("error", error=err.read_text(), exitcode=p.exitcode))
            else:
                results.append(WorkerResult("died", exitcode=p.exitcode))
        return results


def _now() -> float:
    import time

    return time.monotonic()


def values(results: list[WorkerResult]) -> list[Any]:
    """The values of all workers; fails with every worker's error when one did not succeed."""
    bad = [(r, w) for r, w in enumerate(results) if w.status != "ok"]
    if bad:
        text = "\n".join(f"rank {r}: {w.status} (exit {w.exitcode}) {w.error}" for r, w in bad)
        raise AssertionError(f"workers failed:\n{text}")
    return [w.value for w in results]
