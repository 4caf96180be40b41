"""Data-parallel worker processes: start them, watch them, and fail fast when one fails.

:func:`launch` runs ``fn(ctx, payload, emit)`` on every rank of a torch.distributed group:

* under ``torchrun`` (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set) it joins the group torchrun
  describes and calls ``fn`` in this process;
* with one worker it calls ``fn`` in this process on a one-rank group (same code path);
* otherwise it spawns ``workers`` processes on loopback. The parent holds the rendezvous
  store (so there is no free-port race), relays progress events, and polls the children: the
  first one that raises or dies ends the run with :class:`WorkerError` naming its rank, and
  the others are killed -- survivors blocked in a collective would otherwise wait for the
  process-group timeout.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.config import Backend, Device

T = TypeVar("T")
Emit = Callable[[Any], None]
WorkerFn = Callable[["WorkerContext", Any, Emit], T]

_POLL_S = 0.1
_GRACE_S = 5.0


class WorkerError(RuntimeError):
    """A worker process raised or died.

    Attributes:
        rank: the failing rank.
        detail: its error (type and message) or how it exited.
    """

    def __init__(self, rank: int, detail: str) -> None:
        super().__init__(f"worker rank {rank} failed: {detail}")
        self.rank = rank
        self.detail = detail


@dataclass(frozen=True)
class WorkerContext:
    """What one worker knows about its place in the group.

    Attributes:
        rank: global rank.
        world_size: number of workers.
        local_rank: rank on this host (selects the GPU).
        device: device this worker computes on.
        backend: torch.distributed backend in use.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def primary(self) -> bool:
        """Rank 0 writes files and reports progress."""
        return self.rank == 0


def resolve_device(device: Device) -> str:
    """``cpu`` or ``cuda`` for a requested device.

    Raises:
        ValueError: if cuda is requested but unavailable.
    """
    if device is Device.AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device is Device.CUDA and not torch.cuda.is_available():
        raise ValueError("device=cuda requested but torch.cuda.is_available() is False")
    return device.value


def resolve_backend(backend: Backend, device_type: str) -> str:
    """``gloo`` or ``nccl``: NCCL for GPUs, gloo for CPUs unless overridden.

    Raises:
        ValueError: if NCCL is requested for CPU tensors.
    """
    if backend is Backend.AUTO:
        return "nccl" if device_type == "cuda" else "gloo"
    if backend is Backend.NCCL and device_type != "cuda":
        raise ValueError("backend=nccl needs device=cuda; use gloo on the CPU")
    return backend.value


def under_torchrun() -> bool:
    """True when a launcher such as torchrun has set up the rendezvous environment."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def is_primary_process() -> bool:
    """False only on the non-zero ranks of a torchrun launch (they write no files)."""
    return not under_torchrun() or os.environ["RANK"] == "0"


def threads_per_worker(workers: int) -> int:
    """Intra-op threads so that ``workers`` processes do not oversubscribe the cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def launch(
    fn: WorkerFn[T],
    payload: Any,
    *,
    workers: int,
    device: Device = Device.AUTO,
    backend: Backend = Backend.AUTO,
    timeout_s: float = 60.0,
    on_event: Emit | None = None,
) -> T:
    """Run ``fn(ctx, payload, emit)`` on every rank and return rank 0's result.

    Args:
        fn: a module-level function (it is pickled for spawned workers). ``emit(event)``
            forwards a picklable progress event to ``on_event`` in the calling process; call
            it on rank 0 only.
        payload: picklable argument passed to every rank.
        workers: number of processes (ignored under torchrun, which decides).
        device: where workers compute.
        backend: torch.distributed backend.
        timeout_s: process-group timeout (torch's default is 30 minutes).
        on_event: receives rank 0's events (in this process).

    Returns:
        ``fn``'s return value on rank 0 (under torchrun: this rank's own value).

    Raises:
        WorkerError: if a worker raised or died; the others are stopped first.
        ValueError: on an impossible device/backend combination or ``workers`` < 1.
        KeyboardInterrupt: re-raised after the workers are stopped.
    """
    if workers < 1:
        raise ValueError(f"workers={workers}: must be >= 1")
    emit = on_event or (lambda _event: None)
    dev = resolve_device(device)
    back = resolve_backend(backend, dev)
    if under_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.set_num_threads(threads_per_worker(int(os.environ.get("LOCAL_WORLD_SIZE", world))))
        ctx = _init_group(rank, world, local, dev, back, timeout_s, store=None)
        return _run_and_destroy(fn, ctx, payload, emit)
    if workers == 1:
        store = dist.TCPStore("127.0.0.1", 0, 1, True, wait_for_workers=False)
        ctx = _init_group(0, 1, 0, dev, back, timeout_s, store=store)
        return _run_and_destroy(fn, ctx, payload, emit)
    return _spawn(fn, payload, workers, dev, back, timeout_s, emit)


def _init_group(
    rank: int,
    world: int,
    local_rank: int,
    device_type: str,
    backend: str,
    timeout_s: float,
    store: dist.Store | None,
) -> WorkerContext:
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
    if store is not None:
        kwargs.update(store=store, rank=rank, world_size=world)
    dist.init_process_group(**kwargs)
    return WorkerContext(rank, world, local_rank, device, backend)


def _run_and_destroy(fn: WorkerFn[T], ctx: WorkerContext, payload: Any, emit: Emit) -> T:
    try:
        return fn(ctx, payload, emit)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _worker_main(
    rank: int,
    world: int,
    port: int,
    fn: WorkerFn[Any],
    payload: Any,
    messages: Any,
    device_type: str,
    backend: str,
    timeout_s: float,
) -> None:
    """Entry point of a spawned worker: report the result or the error through ``messages``."""
    # The parent handles Ctrl-C; a worker stopped by the terminal's SIGINT would print its
    # own traceback. It is killed by the parent instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads_per_worker(world))
    try:
        store = dist.TCPStore("127.0.0.1", port, world, False, timeout=timedelta(seconds=timeout_s))
        ctx = _init_group(rank, world, rank, device_type, backend, timeout_s, store=store)

        def emit(event: Any) -> None:
            messages.put(("event", rank, event))

        result = _run_and_destroy(fn, ctx, payload, emit)
        messages.put(("result", rank, result))
    except BaseException as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
        messages.put(("error", rank, f"{type(exc).__name__}: {exc}{where}"))
        messages.close()
        messages.join_thread()
        sys.exit(1)


def _spawn(
    fn: WorkerFn[T],
    payload: Any,
    workers: int,
    device_type: str,
    backend: str,
    timeout_s: float,
    emit: Emit,
) -> T:
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    # The parent is the rendezvous server: port 0 lets the OS pick a free port atomically.
    store = dist.TCPStore("127.0.0.1", 0, workers, True, wait_for_workers=False)
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(r, workers, store.port, fn, payload, messages, device_type, backend, timeout_s),
            name=f"prec-study-rank{r}",
        )
        for r in range(workers)
    ]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    try:
        while len(results) < workers:
            failure = _poll(messages, procs, results, emit)
            if failure is not None:
                raise _root_cause(failure, messages, procs, results, emit)
        return results[0]
    finally:
        _stop(procs)
        messages.close()


def _poll(
    messages: Any, procs: list[Any], results: dict[int, Any], emit: Emit
) -> WorkerError | None:
    """Handle one message or one exited process; return the failure, if any."""
    try:
        kind, rank, body = messages.get(timeout=_POLL_S)
    except queue.Empty:
        for rank, p in enumerate(procs):
            if p.exitcode is not None and (p.exitcode != 0 or rank not in results):
                # Let an error message sent just before exiting arrive first.
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and rank not in results:
                    try:
                        kind, r, body = messages.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if kind == "error":
                        return WorkerError(r, body)
                    if kind == "result":
                        results[r] = body
                    elif kind == "event":
                        emit(body)
                if rank in results and p.exitcode == 0:
                    continue
                return WorkerError(rank, _exit_text(p.exitcode))
        return None
    if kind == "event":
        emit(body)
    elif kind == "result":
        results[rank] = body
    elif kind == "error":
        return WorkerError(rank, body)
    return None


#: Errors a worker sees when a *peer* failed: they name the victim, not the cause.
_PEER_ERRORS = ("connection closed by peer", "connection reset", "broken pipe", "remote worker")


def _root_cause(
    first: WorkerError, messages: Any, procs: list[Any], results: dict[int, Any], emit: Emit
) -> WorkerError:
    """Collect the failures of the next moment and pick the one that caused the others.

    When rank 1 dies, rank 0's pending collective fails with "connection closed by peer",
    and that report may arrive first; the rank that died or raised on its own is the news.
    """
    failures = [first]
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        failure = _poll(messages, procs, results, emit)
        if failure is not None and all(f.rank != failure.rank for f in failures):
            failures.append(failure)
        if all(p.exitcode is not None for p in procs):
            break
    failed = {f.rank for f in failures}
    for rank, p in enumerate(procs):  # died without a word (killed, os._exit)
        if rank not in failed and p.exitcode not in (None, 0) and rank not in results:
            failures.append(WorkerError(rank, _exit_text(p.exitcode)))
    causes = [f for f in failures if not any(k in f.detail.lower() for k in _PEER_ERRORS)]
    return (causes or failures)[0]


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code} without reporting an error"


def _stop(procs: list[Any]) -> None:
    """Terminate, then kill, every worker still alive (bounded time)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + _GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(_GRACE_S)
