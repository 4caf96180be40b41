"""Fixtures of the training tests: the CLI in-process, a resumed run, killing a real worker."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from training.cli import main
from training.config import RunConfig
from training.loop import run_study
from training.records import RunPaths, load_checkpoint

#: How long a killer waits for its target before it gives up (the test then fails on the
#: outcome, not on time).
KILL_WAIT_S = 300.0

Cli = Callable[[list[str]], tuple[int, str]]
Killer = Callable[..., list[int]]


@pytest.fixture
def eager_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned workers inherit this: same bits as the compiled kernel, no compile time."""
    monkeypatch.setenv("PRECISION_KERNEL", "eager")


@pytest.fixture
def full_and_resumed(tmp_path: Path) -> Callable[[RunConfig], tuple[Any, Any, Any, Any]]:
    """Train ``cfg`` straight through, and again stopped after one epoch then resumed.

    Returns a function giving (full records, resumed records, full checkpoint, resumed
    checkpoint) of the first arm, both checkpoints loaded.
    """

    def run(cfg: RunConfig) -> tuple[Any, Any, Any, Any]:
        full = run_study(cfg, tmp_path / "full")
        run_study(cfg, tmp_path / "split", stop_after_epochs=1)
        resumed = run_study(RunConfig.load(tmp_path / "split" / "config.json"), tmp_path / "split")
        name = cfg.arms[0].name
        a = load_checkpoint(RunPaths(tmp_path / "full").checkpoint(name))
        b = load_checkpoint(RunPaths(tmp_path / "split").checkpoint(name))
        assert a is not None and b is not None
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), k
        return full, resumed, a, b

    return run


@pytest.fixture
def cli() -> Cli:
    """``prec-study ARGS`` in this process: (exit code, output); a crash fails the test."""

    def run(args: list[str]) -> tuple[int, str]:
        result = CliRunner().invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result.exit_code, result.output

    return run


def cmdline(pid: int) -> list[str]:
    """The argument vector of process ``pid`` (empty if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` started with (empty if it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)


def _start_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks


def spawned_workers(parent: int) -> list[int]:
    """Worker processes ``parent`` started with multiprocessing's spawn, oldest first.

    ``training.distributed`` starts rank 0, 1, ... in order, so the list is in rank order.
    """
    children: list[int] = []
    for task in Path(f"/proc/{parent}/task").glob("*"):
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    workers = [p for p in children if any("spawn_main" in a for a in cmdline(p))]
    return sorted(workers, key=lambda p: (_start_ticks(p), p))


class Procs:
    """What the tests read from ``/proc`` (the functions above, as a fixture)."""

    cmdline = staticmethod(cmdline)
    environ = staticmethod(environ)
    spawned_workers = staticmethod(spawned_workers)


@pytest.fixture
def procs() -> Procs:
    """Reading processes from ``/proc``: ``cmdline``, ``environ``, ``spawned_workers``."""
    return Procs()


@pytest.fixture
def kill_worker() -> Iterator[Killer]:
    """Start a thread that SIGKILLs the processes ``find()`` names, ``times`` in all.

    ``find`` is polled until it returns process ids (it returns none until the run has got
    far enough); the returned list fills with the ids killed, for the test to check.
    """
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(find: Callable[[], list[int]], times: int = 1) -> list[int]:
        killed: list[int] = []

        def watch() -> None:
            waited = 0.0
            while len(killed) < times and waited < KILL_WAIT_S and not stop.is_set():
                for pid in find():
                    if pid in killed:
                        continue
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    killed.append(pid)
                    break
                stop.wait(0.02)
                waited += 0.02

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        threads.append(thread)
        return killed

    yield start
    stop.set()
    for t in threads:
        t.join(5)
