"""``perf stat`` with the host CPU's FP events; FLOPs from per-width counts.

Parsers accept ``perf stat -x,`` CSV (whole-run and ``-I`` interval mode, with or without
a cgroup column) and the plain-text table (including locales that write ``1.234,5``).
``<not counted>`` and ``<not supported>`` become None with a status, never 0. When the
kernel multiplexes counters, the fraction of the run each event was scheduled is kept as
the sample's ``coverage``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hpcprof.backends.base import Availability, Backend, Job, tool_output
from hpcprof.backends.events import (
    COMBINED_FP_EVENTS,
    FP_EVENT_WEIGHTS,
    PERF_AMD_EVENTS,
    PERF_INTEL_EVENTS,
    Separability,
    normalize_event,
    separability,
)
from hpcprof.errors import BackendError
from hpcprof.results.records import Metric, Precision, Sample, SampleStatus

_MISSING = {
    "<not counted>": SampleStatus.NOT_COUNTED,
    "<not supported>": SampleStatus.NOT_SUPPORTED,
}


@dataclass(frozen=True, kw_only=True)
class PerfCount:
    """One event value of ``perf stat``."""

    event: str
    value: float | None
    status: SampleStatus = SampleStatus.OK
    unit: str = ""
    coverage: float | None = None  # fraction 0..1 of the time the event was counted
    interval: float | None = None  # seconds since start, in -I mode


@dataclass(frozen=True, kw_only=True)
class PerfRun:
    """One ``Performance counter stats for '...'`` block of plain-text output."""

    command: str
    counts: tuple[PerfCount, ...]
    elapsed_s: float | None = None
    user_s: float | None = None
    sys_s: float | None = None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_perf_csv(text: str) -> tuple[PerfCount, ...]:
    """Parse ``perf stat -x,`` output (whole-run or ``-I`` interval lines).

    Lines that are not CSV event lines (comments, app output) are skipped.
    """
    counts: list[PerfCount] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "," not in line:
            continue
        f = [c.strip() for c in line.split(",")]
        interval: float | None = None
        # interval mode: time,value,unit,event,...; the value field is a count or <not ...>
        if (
            len(f) >= 4
            and _number(f[0]) is not None
            and (_number(f[1]) is not None or f[1] in _MISSING)
        ):
            interval, f = float(f[0]), f[1:]
        if len(f) < 3 or not f[2]:
            continue
        raw, unit, event, rest = f[0], f[1], f[2], f[3:]
        if raw in _MISSING:
            value, status = None, _MISSING[raw]
        elif (value := _number(raw)) is not None:
            status = SampleStatus.OK
        else:
            continue
        if rest and rest[0] and _number(rest[0]) is None:
            rest = rest[1:]  # cgroup name (-G)
        pct = _number(rest[1]) if len(rest) > 1 else None
        counts.append(
            PerfCount(
                event=event,
                value=value,
                status=status,
                unit=unit,
                coverage=None if pct is None else pct / 100.0,
                interval=interval,
            )
        )
    return tuple(counts)


_TEXT_LINE = re.compile(
    r"^\s*(?P<value><not counted>|<not supported>|[\d][\d.,]*)\s+"
    r"(?:(?P<unit>msec|usec|nsec|Joules|MiB)\s+)?(?P<event>[^\s#(]+)(?P<rest>.*)$"
)
_PCT = re.compile(r"\((?P<pct>\d+(?:[.,]\d+)?)%\)\s*$")
_TIMES = re.compile(r"^\s*(?P<value>[\d.,]+)\s+seconds\s+(?P<what>time elapsed|user|sys)\s*$")
_HEADER = re.compile(r"Performance counter stats for '(?P<cmd>.*)'")


def _locale_number(text: str, decimal: str) -> float:
    thousands = "." if decimal == "," else ","
    return float(text.replace(thousands, "").replace(decimal, "."))


def _decimal_mark(block: str) -> str:
    """',' when the block's elapsed-time line uses a decimal comma, else '.'."""
    m = re.search(r"^\s*\d+([.,])\d+\s+seconds time elapsed", block, re.M)
    return m.group(1) if m else "."


def parse_perf_text(text: str) -> tuple[PerfRun, ...]:
    """Parse plain-text ``perf stat`` output; one :class:`PerfRun` per stats block.

    Metric-only continuation lines (``#  0.03 stalled cycles per insn``) are ignored.
    """
    runs: list[PerfRun] = []
    starts = [m for m in _HEADER.finditer(text)]
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        block = text[m.end() : end]
        dec = _decimal_mark(block)
        counts: list[PerfCount] = []
        times: dict[str, float] = {}
        for line in block.splitlines():
            if (t := _TIMES.match(line)) is not None:
                times[t["what"]] = _locale_number(t["value"], dec)
                continue
            lm = _TEXT_LINE.match(line)
            if lm is None or lm["event"] == "seconds":
                continue
            raw = lm["value"]
            pm = _PCT.search(lm["rest"])
            coverage = None if pm is None else _locale_number(pm["pct"], dec) / 100.0
            if raw in _MISSING:
                counts.append(
                    PerfCount(
                        event=lm["event"], value=None, status=_MISSING[raw], coverage=coverage
                    )
                )
            else:
                counts.append(
                    PerfCount(
                        event=lm["event"],
                        value=_locale_number(raw, dec),
                        unit=lm["unit"] or "",
                        coverage=coverage,
                    )
                )
        runs.append(
            PerfRun(
                command=m["cmd"],
                counts=tuple(counts),
                elapsed_s=times.get("time elapsed"),
                user_s=times.get("user"),
                sys_s=times.get("sys"),
            )
        )
    return tuple(runs)


def flops_from_counts(
    counts: Iterable[PerfCount], backend: str = "perf", separable: bool = True
) -> tuple[Sample, ...]:
    """FP64/FP32 FLOP samples from per-width FP event counts (intervals are summed).

    A precision whose events are all missing gets a None sample with that status; on CPUs
    that count all widths together (``separable=False``) FP64/FP32 are NOT_SEPARABLE and
    the combined count is an ``FP_FLOP`` sample.
    """
    totals: dict[Precision, float] = {}
    status: dict[Precision, SampleStatus] = {}
    coverage: dict[Precision, float] = {}
    combined: float | None = None
    for c in counts:
        name = normalize_event(c.event)
        if name in COMBINED_FP_EVENTS and c.value is not None:
            combined = (combined or 0.0) + c.value
        weight = FP_EVENT_WEIGHTS.get(name)
        if weight is None:
            continue
        prec, per = weight
        if c.value is None:
            status.setdefault(prec, c.status)
            continue
        totals[prec] = totals.get(prec, 0.0) + c.value * per
        if c.coverage is not None:
            coverage[prec] = min(coverage.get(prec, 1.0), c.coverage)
    samples: list[Sample] = []
    for prec, metric in (
        (Precision.FLOAT64, Metric.FP64_FLOP),
        (Precision.FLOAT32, Metric.FP32_FLOP),
    ):
        if not separable:
            samples.append(Sample.missing(metric, backend, SampleStatus.NOT_SEPARABLE))
        elif prec in totals and prec not in status:
            samples.append(
                Sample(
                    metric=metric, value=totals[prec], backend=backend, coverage=coverage.get(prec)
                )
            )
        else:
            samples.append(Sample.missing(metric, backend, status.get(prec, SampleStatus.MISSING)))
    if combined is not None:
        samples.append(Sample(metric=Metric.FP_FLOP, value=combined, backend=backend))
    return tuple(samples)


class PerfBackend(Backend):
    """``perf stat -x,`` on the host's FP events."""

    name = "perf"
    summary = (
        "perf stat with the CPU's FP events (Intel fp_arith_inst_retired, AMD fp_ret_sse_avx_ops)"
    )

    def events(self) -> tuple[str, ...]:
        if self.host.cpu_vendor in ("AuthenticAMD", "HygonGenuine"):
            return PERF_AMD_EVENTS
        return PERF_INTEL_EVENTS

    def available(self) -> Availability:
        probe = tool_output(["perf", "stat", "-x,", "-e", "instructions", "--", "true"])
        if probe is None:
            return Availability(ok=False, detail="perf not installed")
        rc, _, err = probe
        counts = parse_perf_csv(err)
        if rc != 0 or not counts:
            first = next((ln for ln in err.splitlines() if ln.strip()), "no output")
            return Availability(ok=False, detail=f"perf stat failed: {first.strip()}")
        if counts[0].value is None:
            return Availability(ok=False, detail="no PMU exposed (perf counts nothing here)")
        fp = tool_output(["perf", "stat", "-x,", "-e", self.events()[0], "--", "true"])
        if fp is None or fp[0] != 0 or not parse_perf_csv(fp[2]):
            return Availability(
                ok=False, detail=f"perf does not know {self.events()[0]} on this CPU"
            )
        if parse_perf_csv(fp[2])[0].value is None:
            return Availability(ok=False, detail=f"{self.events()[0]} not supported by this PMU")
        return Availability(ok=True, detail=f"events: {','.join(self.events())}")

    def wrap(self, cmd: Sequence[str], job: Job) -> list[str]:
        out = job.scratch / "perf-stat.csv"
        return ["perf", "stat", "-x,", "-o", str(out), "-e", ",".join(self.events()), "--", *cmd]

    def environment(self, job: Job) -> dict[str, str]:
        return {"LC_ALL": "C"}

    def collect(self, job: Job, stdout: str, stderr: str) -> tuple[Sample, ...]:
        path = job.scratch / "perf-stat.csv"
        if not path.exists():
            raise BackendError(f"perf stat wrote no output file ({path.name})")
        counts = parse_perf_csv(path.read_text(encoding="utf-8", errors="replace"))
        if not counts:
            raise BackendError("perf stat output has no event lines")
        separable = separability(self.host) is Separability.SEPARABLE
        samples = list(flops_from_counts(counts, backend=self.name, separable=separable))
        cov = [c.coverage for c in counts if c.coverage is not None]
        if cov:
            samples.append(Sample(metric=Metric.MULTIPLEX, value=min(cov), backend=self.name))
        return tuple(samples)
