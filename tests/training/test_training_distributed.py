"""Worker processes: results, progress relay, and failures that end the run quickly."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import torch
import torch.distributed as dist

from training.config import Device
from training.distributed import WorkerContext, WorkerError, launch, threads_per_worker

pytestmark = pytest.mark.distributed


def _sum_of_ranks(ctx: WorkerContext, payload: Any, emit: Any) -> tuple[int, int, float]:
    t = torch.tensor([float(ctx.rank + payload)])
    dist.all_reduce(t)
    if ctx.primary:
        emit(("hello", ctx.world_size))
    return ctx.rank, ctx.world_size, float(t)


def _rank1_raises(ctx: WorkerContext, payload: Any, emit: Any) -> None:
    if ctx.rank == 1:
        raise FloatingPointError("gradient exploded")
    dist.barrier()  # rank 0 would wait here until the process-group timeout


def _rank1_dies(ctx: WorkerContext, payload: Any, emit: Any) -> None:
    if ctx.rank == 1:
        os._exit(7)
    dist.barrier()


def test_launch_returns_rank0_result_and_relays_events() -> None:
    events: list[Any] = []
    rank, world, total = launch(
        _sum_of_ranks, 10, workers=2, device=Device.CPU, on_event=events.append
    )
    assert (rank, world, total) == (0, 2, 21.0)
    assert events == [("hello", 2)]


def test_one_worker_runs_in_process() -> None:
    assert launch(_sum_of_ranks, 5, workers=1, device=Device.CPU) == (0, 1, 5.0)
    assert not dist.is_initialized()


@pytest.mark.parametrize(("fn", "detail"), [(_rank1_raises, "FloatingPointError: gradient exploded"),
                                            (_rank1_dies, "exited with code 7")])  # fmt: skip
def test_failing_worker_is_named_and_the_run_ends_fast(fn: Any, detail: str) -> None:
    start = time.monotonic()
    with pytest.raises(WorkerError, match="rank 1") as info:
        launch(fn, None, workers=2, device=Device.CPU, timeout_s=120)
    assert info.value.rank == 1 and detail in info.value.detail
    assert time.monotonic() - start < 30  # far below the 120 s process-group timeout


def test_threads_per_worker_divides_the_cores() -> None:
    assert threads_per_worker(1) >= threads_per_worker(2) >= 1
    assert threads_per_worker(10_000) == 1
