"""Run apps under a backend: warm-up, repetitions, pinning, timeouts, one record per run.

A crashing or hanging app becomes a :class:`~hpcprof.results.records.Measurement` with its status
and the tail of its stderr, and the suite goes on. Nothing here prints; progress goes to an
optional callback.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcprof.apps.base import parse_protocol, parse_rank_lines
from hpcprof.backends import Backend, Job
from hpcprof.errors import HpcprofError
from hpcprof.results.records import Measurement, Metric, RunStatus, Sample
from hpcprof.run.config import RunConfig
from hpcprof.run.launchers import Launcher
from hpcprof.run.tasks import Task, builtin_tasks, suite_tasks  # noqa: F401 (re-exported)

Progress = Callable[[int, int, str], None]
"""progress(done, total, label) is called before each measurement."""

STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True, kw_only=True)
class ProcessResult:
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float | None
    timed_out: bool


def run_process(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float,
    cpus: tuple[int, ...] | None = None,
) -> ProcessResult:
    """Run ``cmd`` (an argument list, no shell) in its own process group.

    On timeout the whole group is killed with SIGKILL. ``cpu_s`` is user+system time of
    the process and the descendants it waited for.
    """
    full = list(cmd)
    preexec = None
    if cpus:
        if shutil.which("taskset"):
            full = ["taskset", "-c", ",".join(map(str, cpus)), *full]
        else:

            def preexec() -> None:
                os.sched_setaffinity(0, cpus)

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
        preexec_fn=preexec,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ProcessResult(
        returncode=None if timed_out else proc.returncode,
        stdout=out.decode("utf-8", errors="replace"),
        stderr=err.decode("utf-8", errors="replace"),
        wall_s=wall,
        cpu_s=cpu,
        timed_out=timed_out,
    )


def _fom(task: Task, stdout: str) -> Sample | None:
    if task.fom_regex is None:
        return None
    matches = list(re.finditer(task.fom_regex, stdout, re.M))
    m = matches[-1] if matches else None  # the last match: apps often print partials first
    if m is None:
        return Sample.missing(Metric.FOM, "app", unit=task.fom_unit)
    try:
        value = float(m.group(1).replace(",", ""))
    except ValueError:
        return Sample.missing(Metric.FOM, "app", unit=task.fom_unit)
    return Sample(metric=Metric.FOM, value=value, backend="app", unit=task.fom_unit)


def measure(
    task: Task,
    backend: Backend,
    repetition: int,
    cpus: tuple[int, ...] | None,
    launcher: Launcher | None = None,
) -> Measurement:
    """Run ``task`` once per backend pass (under ``launcher``, if given) into one Measurement."""
    try:
        cmd = task.command()
    except (HpcprofError, OSError) as exc:
        return _record(task, backend.name, repetition, RunStatus.LAUNCH_ERROR, str(exc))
    samples: list[Sample] = list(task.analytic)
    status = RunStatus.OK
    first: ProcessResult | None = None
    tails: list[str] = []
    for pass_name in backend.passes():
        with tempfile.TemporaryDirectory(prefix="hpcprof-") as scratch:
            job = _job(task, Path(scratch), pass_name, cpus)
            try:
                wrapped = backend.wrap(cmd, job)
                res = run_process(
                    launcher.wrap(wrapped) if launcher is not None else wrapped,
                    env={**task.env, **backend.environment(job)},
                    cwd=task.cwd,
                    timeout_s=task.timeout_s,
                    cpus=cpus,
                )
            except (OSError, HpcprofError) as exc:
                return _record(task, backend.name, repetition, RunStatus.LAUNCH_ERROR, str(exc))
            first = first or res
            if res.stderr.strip():
                tails.append(res.stderr)
            if res.timed_out:
                status = RunStatus.TIMEOUT
                break
            if res.returncode != 0:
                status = RunStatus.FAILED
                break
            try:
                samples.extend(backend.collect(job, res.stdout, res.stderr))
            except HpcprofError as exc:
                status = RunStatus.BACKEND_ERROR
                tails.append(str(exc))
                break
    if first is None:
        return _record(task, backend.name, repetition, RunStatus.BACKEND_ERROR, "no passes")
    samples[:0] = _time_samples(first, backend.name)
    if status is RunStatus.OK:
        status = _app_samples(task, first.stdout, samples)
    return _record(
        task,
        backend.name,
        repetition,
        status,
        "".join(tails) if status is not RunStatus.OK else "",
        returncode=first.returncode,
        samples=tuple(samples),
    )


def _job(task: Task, scratch: Path, pass_name: str, cpus: tuple[int, ...] | None) -> Job:
    return Job(
        scratch=scratch,
        pass_name=pass_name,
        region=task.region,
        python_kernel=task.python_kernel,
        cpus=cpus,
        threads=task.threads,
    )


def _time_samples(first: ProcessResult, backend: str) -> list[Sample]:
    """Wall and CPU time of the first pass (CPU time missing where the OS gave none)."""
    cpu = (
        Sample(metric=Metric.CPU_S, value=first.cpu_s, backend=backend)
        if first.cpu_s is not None
        else Sample.missing(Metric.CPU_S, backend)
    )
    return [Sample(metric=Metric.WALL_S, value=first.wall_s, backend=backend), cpu]


def _record(
    task: Task,
    backend: str,
    repetition: int,
    status: RunStatus,
    stderr: str,
    *,
    returncode: int | None = None,
    samples: tuple[Sample, ...] | None = None,
    wall_s: float | None = None,
) -> Measurement:
    """A Measurement; without samples it carries only the wall time (missing if None)."""
    if samples is None:
        wall = (
            Sample(metric=Metric.WALL_S, value=wall_s, backend=backend)
            if wall_s is not None
            else Sample.missing(Metric.WALL_S, backend)
        )
        samples = (wall,)
    return Measurement(
        app=task.app,
        precision=task.precision,
        size=task.size,
        preset=task.preset,
        repetition=repetition,
        backend=backend,
        status=status,
        returncode=returncode,
        stderr_tail=stderr[-STDERR_TAIL_CHARS:],
        samples=samples,
        node=socket.gethostname(),
    )


def _app_samples(task: Task, stdout: str, samples: list[Sample]) -> RunStatus:
    """Append what the app itself reports; decide the status from its self-check."""
    if (fom := _fom(task, stdout)) is not None:
        samples.append(fom)
    if task.tolerance is None:
        return RunStatus.OK
    proto = parse_protocol(stdout)
    if "kernel_s" in proto:
        samples.append(Sample(metric=Metric.KERNEL_S, value=proto["kernel_s"], backend="app"))
    err = proto.get("check_error")
    if err is None:
        samples.append(Sample.missing(Metric.CHECK_ERROR, "app"))
        return RunStatus.FAILED
    samples.append(Sample(metric=Metric.CHECK_ERROR, value=err, backend="app"))
    samples.extend(_rank_samples(stdout))
    return RunStatus.OK if err <= task.tolerance else RunStatus.CHECK_FAILED


_RANK_METRICS = tuple(
    Metric(k) for k in ("words_sent", "words_received", "messages_sent", "messages_received")
)


def _rank_samples(stdout: str) -> list[Sample]:
    """A distributed kernel's counts: one row per rank (process ``rank N``) and the sum."""
    ranks = parse_rank_lines(stdout)
    out = []
    for metric in _RANK_METRICS:
        rows = {r: c[metric.value] for r, c in sorted(ranks.items()) if metric.value in c}
        out += [Sample(metric=metric, value=v, backend="app", process=f"rank {r}")
                for r, v in rows.items()]  # fmt: skip
        if rows:
            out.append(Sample(metric=metric, value=sum(rows.values()), backend="app"))
    return out


def run_tasks(
    tasks: Sequence[Task],
    backend: Backend,
    config: RunConfig,
    progress: Progress | None = None,
) -> list[Measurement]:
    """Warm up (unmeasured, unwrapped), then measure each task ``config.repetitions`` times."""
    results: list[Measurement] = []
    total = len(tasks) * config.repetitions
    done = 0
    for task in tasks:
        label = f"{task.app} {task.precision.value}" + (f" {task.preset}" if task.preset else "")
        hung: ProcessResult | None = None
        for _ in range(config.warmup):
            try:
                res = run_process(
                    task.command(),
                    env=task.env,
                    cwd=task.cwd,
                    timeout_s=task.timeout_s,
                    cpus=config.cpus,
                )
            except (HpcprofError, OSError):
                break  # the measured run records the error
            if res.timed_out:
                hung = res
                break
        if hung is not None:
            # A hang is recorded once, not waited out again for every repetition.
            results.append(
                _record(task, backend.name, 0, RunStatus.TIMEOUT, hung.stderr, wall_s=hung.wall_s)
            )
            done += config.repetitions
            continue
        for rep in range(config.repetitions):
            if progress is not None:
                progress(done, total, f"{label} rep {rep + 1}/{config.repetitions}")
            done += 1
            m = measure(task, backend, rep, config.cpus, config.launch())
            results.append(m)
            if m.status is RunStatus.TIMEOUT:
                done += config.repetitions - rep - 1
                break
    if progress is not None:
        progress(done, total, "done")
    return results
