"""``likwid-perfctr``: groups FLOPS_DP, FLOPS_SP and MEM, wrapper or marker mode.

:func:`parse_likwid` reads both output layouts of LIKWID 4 and 5: the ASCII tables printed
to stdout (``Region X, Group 1: FLOPS_DP``, ``Region: X / Group: 1`` from likwid-mpirun,
``Group 1: FLOPS_DP`` in wrapper mode) and the ``-O`` CSV (``TABLE,Region X,Group 1 Raw,...``
in marker mode, ``TABLE,Group 1 Raw,FLOPS_DP,7`` in wrapper mode).
Application output mixed into the text is skipped, ``-`` cells become None, ``inf`` stays
``inf``, and STAT tables (Sum/Min/Max/Avg over threads) are kept as their own kind.

Python kernels get marker regions through ``pylikwid`` when it imports in the child. A pass
whose output holds nothing for its group is a :class:`~hpcprof.errors.BackendError`, never
a silent fall-back to the analytic model.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from hpcprof.backends.base import Availability, Backend, Job, tool_output
from hpcprof.backends.events import (
    COMBINED_FP_EVENTS,
    FP_EVENT_WEIGHTS,
    Separability,
    normalize_event,
    separability,
    separability_from_text,
)
from hpcprof.errors import BackendError
from hpcprof.records import Metric, Precision, Sample, SampleStatus

GROUPS = ("FLOPS_DP", "FLOPS_SP", "MEM")


class TableKind(Enum):
    INFO = "info"
    EVENTS = "events"
    EVENTS_STAT = "events_stat"
    METRICS = "metrics"
    METRICS_STAT = "metrics_stat"


@dataclass(frozen=True, kw_only=True)
class LikwidRow:
    name: str
    counter: str | None
    values: tuple[float | None, ...]


@dataclass(frozen=True, kw_only=True)
class LikwidTable:
    """One table of one region; ``run`` counts repeated runs concatenated in one log."""

    run: int
    region: str
    group: str
    kind: TableKind
    columns: tuple[str, ...]
    rows: tuple[LikwidRow, ...]

    def row(self, name: str) -> LikwidRow | None:
        for r in self.rows:
            if r.name == name:
                return r
        return None


@dataclass(frozen=True, kw_only=True)
class LikwidOutput:
    cpu_name: str | None
    cpu_type: str | None
    tables: tuple[LikwidTable, ...]

    def regions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.region for t in self.tables))

    def table(self, region: str, kind: TableKind, run: int = 0) -> LikwidTable | None:
        for t in self.tables:
            if t.region == region and t.kind is kind and t.run == run:
                return t
        return None

    def metric(self, region: str, name: str, column: int = 0, run: int = 0) -> float | None:
        """Value of metric ``name`` (e.g. ``DP [MFLOP/s]``) in ``region``, thread ``column``."""
        t = self.table(region, TableKind.METRICS, run)
        r = None if t is None else t.row(name)
        return None if r is None else r.values[column]


def _cell(text: str) -> float | None:
    t = text.strip()
    if t in ("", "-", "nan", "-nan"):
        return None
    try:
        return float(t)
    except ValueError:
        return None


def _kind(first: str, columns: Sequence[str], rows: Sequence[str]) -> TableKind:
    stat = "Sum" in columns or any(r.endswith(" STAT") for r in rows)
    if first == "Region Info":
        return TableKind.INFO
    if first == "Event":
        return TableKind.EVENTS_STAT if stat else TableKind.EVENTS
    return TableKind.METRICS_STAT if stat else TableKind.METRICS


_REGION_RE = re.compile(r"^Region (?P<region>.+?), Group \d+: (?P<group>\S+)")
_WRAPPER_RE = re.compile(r"^Group \d+: (?P<group>\S+)")
_MPI_REGION_RE = re.compile(r"^Region: (?P<region>.+?)\s*$")
_MPI_GROUP_RE = re.compile(r"^Group: (?P<group>\S+)")


class _Builder:
    """Collects tables and numbers repeated runs (a region seen again starts a new run)."""

    def __init__(self) -> None:
        self.tables: list[LikwidTable] = []
        self.run = 0
        self.seen: set[tuple[str, TableKind]] = set()

    def add(self, region: str, group: str, header: list[str], body: list[list[str]]) -> None:
        first = header[0]
        has_counter = len(header) > 1 and header[1] == "Counter"
        columns = tuple(header[2:] if has_counter else header[1:])
        names = [r[0] for r in body]
        kind = _kind(first, columns, names)
        if (region, kind) in self.seen:
            self.run += 1
            self.seen.clear()
        self.seen.add((region, kind))
        rows = []
        for r in body:
            vals = r[2:] if has_counter else r[1:]
            vals = (vals + [""] * len(columns))[: len(columns)]
            rows.append(
                LikwidRow(
                    name=r[0],
                    counter=r[1] if has_counter else None,
                    values=tuple(_cell(v) for v in vals),
                )
            )
        self.tables.append(
            LikwidTable(
                run=self.run,
                region=region,
                group=group,
                kind=kind,
                columns=columns,
                rows=tuple(rows),
            )
        )


def _header_value(text: str, key: str) -> str | None:
    m = re.search(rf"^{key}:[\t ,]+(.+?)[\s,]*$", text, re.M)
    return m.group(1).strip() if m else None


def parse_likwid(text: str) -> LikwidOutput:
    """Parse likwid-perfctr output, CSV (``-O``) or ASCII tables, detected from the text.

    Text that is not part of a table (application output, warnings) is skipped.
    """
    builder = _Builder()
    if re.search(r"^(TABLE,Region|TABLE,Group|STRUCT,Info)", text, re.M):
        _parse_csv(text, builder)
    else:
        _parse_ascii(text, builder)
    return LikwidOutput(
        cpu_name=_header_value(text, "CPU name"),
        cpu_type=_header_value(text, "CPU type"),
        tables=tuple(builder.tables),
    )


def _parse_ascii(text: str, builder: _Builder) -> None:
    region, group = "", ""
    state = "idle"  # idle -> header -> after_header -> rows
    header: list[str] = []
    body: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if state == "idle":
            if (m := _REGION_RE.match(line)) is not None:
                region, group = m["region"], m["group"]
            elif (m := _WRAPPER_RE.match(line)) is not None:
                region, group = "", m["group"]
            elif (m := _MPI_REGION_RE.match(line)) is not None:
                region = m["region"]
            elif (m := _MPI_GROUP_RE.match(line)) is not None:
                group = m["group"]
        if line.startswith("+-"):
            if state == "idle":
                state = "header"
            elif state == "after_header":
                state = "rows"
            elif state == "rows":
                builder.add(region, group, header, body)
                header, body, state = [], [], "idle"
            continue
        if line.startswith("|") and state in ("header", "rows"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if state == "header":
                header, state = cells, "after_header"
            else:
                body.append(cells)
        elif state != "idle" and line:
            # app output inside a table: drop the partial table rather than guess
            header, body, state = [], [], "idle"


def _csv_table_title(cells: Sequence[str]) -> tuple[str, str]:
    """(region, group) of a CSV ``TABLE`` line in either layout LIKWID writes.

    Marker mode: ``TABLE,Region R,Group 1 Raw,FLOPS_DP,7``; wrapper mode (no regions):
    ``TABLE,Group 1 Raw,FLOPS_DP,7``. The last number is the table's row count.
    """
    if len(cells) > 3 and cells[1].startswith("Region "):
        return cells[1].removeprefix("Region ").strip(), cells[3]
    if len(cells) > 2 and cells[1].startswith("Group "):
        return "", cells[2]
    return "", ""


def _parse_csv(text: str, builder: _Builder) -> None:
    region, group = "", ""
    header: list[str] | None = None
    body: list[list[str]] = []

    def flush() -> None:
        nonlocal header, body
        if header is not None:
            builder.add(region, group, header, body)
        header, body = None, []

    for raw in text.splitlines():
        if "," not in raw:
            flush()
            continue
        cells = [c.strip() for c in raw.split(",")]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells:
            continue
        if cells[0] in ("TABLE", "STRUCT"):
            flush()
            if cells[0] == "TABLE":
                region, group = _csv_table_title(cells)
            continue
        if cells[0] in ("Region Info", "Event", "Metric"):
            flush()
            header = cells
            continue
        if header is not None:
            body.append(cells)
    flush()


def samples_from_likwid(
    out: LikwidOutput, region: str | None = None, backend: str = "likwid", run: int = 0
) -> tuple[Sample, ...]:
    """FP64/FP32 FLOPs and memory bytes of one region, summed over threads.

    FLOPs come from the raw FP events (weights in :mod:`hpcprof.backends.events`); on CPUs
    whose counters cannot tell widths apart (KNL/KNM, Zen 2-4) FP64/FP32 are None with
    status NOT_SEPARABLE and the combined count, where there is one, is ``FP_FLOP``.
    """
    regions = out.regions()
    name = region if region is not None else (regions[0] if regions else "")
    tables = [t for t in out.tables if t.region == name and t.run == run]
    events = [t for t in tables if t.kind is TableKind.EVENTS]
    metrics = [t for t in tables if t.kind is TableKind.METRICS]
    sep = separability_from_text(out.cpu_type or out.cpu_name or "")
    totals: dict[Precision, float] = {}
    combined: float | None = None
    groups = {t.group for t in tables}
    for t in events:
        for r in t.rows:
            key = normalize_event(r.name)
            vals = [v for v in r.values if v is not None]
            if key in COMBINED_FP_EVENTS and vals:
                combined = (combined or 0.0) + sum(vals)
            if (w := FP_EVENT_WEIGHTS.get(key)) is not None and vals:
                totals[w[0]] = totals.get(w[0], 0.0) + w[1] * sum(vals)
    samples: list[Sample] = []
    tag = name or None
    wanted = {
        "FLOPS_DP": (Precision.FLOAT64, Metric.FP64_FLOP),
        "FLOPS_SP": (Precision.FLOAT32, Metric.FP32_FLOP),
    }
    for grp, (prec, metric) in wanted.items():
        if grp not in groups:
            continue
        if sep is Separability.NOT_SEPARABLE:
            samples.append(
                Sample(
                    metric=metric,
                    value=None,
                    backend=backend,
                    status=SampleStatus.NOT_SEPARABLE,
                    region=tag,
                )
            )
        elif prec in totals:
            samples.append(Sample(metric=metric, value=totals[prec], backend=backend, region=tag))
        else:
            samples.append(
                Sample(
                    metric=metric,
                    value=None,
                    backend=backend,
                    status=SampleStatus.MISSING,
                    region=tag,
                )
            )
    if combined is not None:
        samples.append(Sample(metric=Metric.FP_FLOP, value=combined, backend=backend, region=tag))
    for t in metrics:
        mem = t.row("Memory data volume [GBytes]")
        mem = mem if mem is not None else t.row("Memory data volume [GByte]")
        if mem is not None and t.group.startswith("MEM"):
            vals = [v for v in mem.values if v is not None]
            if vals:
                samples.append(
                    Sample(
                        metric=Metric.MEM_BYTES, value=sum(vals) * 1e9, backend=backend, region=tag
                    )
                )
    return tuple(samples)


_GROUP_METRICS = {
    "FLOPS_DP": frozenset({Metric.FP64_FLOP, Metric.FP_FLOP}),
    "FLOPS_SP": frozenset({Metric.FP32_FLOP, Metric.FP_FLOP}),
    "MEM": frozenset({Metric.MEM_BYTES}),
}


def require_group_samples(group: str, samples: Sequence[Sample], out: LikwidOutput) -> None:
    """Raise unless the samples read for ``group`` hold what that group measures.

    A run whose counters parse to nothing must not pass as measured: the report would
    silently fall back to the analytic model.

    Raises:
        BackendError: no FLOP sample for a FLOPS group, or no memory volume for MEM.
    """
    wanted = _GROUP_METRICS.get(group)
    if wanted is None or any(s.metric in wanted for s in samples):
        return
    seen = sorted({t.group for t in out.tables}) or ["no tables"]
    raise BackendError(
        f"likwid-perfctr group {group}: no {'/'.join(sorted(m.value for m in wanted))} "
        f"in its output (groups read: {', '.join(seen)})"
    )


class LikwidBackend(Backend):
    """likwid-perfctr, one pass per group."""

    name = "likwid"
    summary = "likwid-perfctr groups FLOPS_DP, FLOPS_SP, MEM (marker regions via pylikwid)"

    def available(self) -> Availability:
        probe = tool_output(["likwid-perfctr", "-V"])
        if probe is None:
            return Availability(ok=False, detail="likwid-perfctr not installed")
        check = tool_output(["likwid-perfctr", "-a"])
        if check is None or check[0] != 0 or "FLOPS" not in check[1]:
            return Availability(ok=False, detail="likwid-perfctr cannot access counters here")
        version = probe[1].strip().splitlines()[0] if probe[1].strip() else "likwid-perfctr"
        return Availability(ok=True, detail=version)

    def passes(self) -> tuple[str, ...]:
        if separability(self.host) is Separability.NOT_SEPARABLE:
            return ("FLOPS_DP", "MEM")  # FLOPS_SP counts the same combined events
        return GROUPS

    def _cores(self, threads: int) -> tuple[int, ...]:
        """The first ``threads`` allowed CPUs: likwid-perfctr ``-C`` pins one thread to each.

        Raises:
            BackendError: the app wants more CPUs than this process may use.
        """
        allowed = self.host.allowed_cpus
        if threads > len(allowed):
            raise BackendError(
                f"likwid: the app runs {threads} threads but only {len(allowed)} CPUs are "
                "allowed here; pin it with --cpus or lower omp_threads/mpi_ranks"
            )
        return allowed[:threads]

    def _marker(self, job: Job) -> bool:
        return job.python_kernel and importlib.util.find_spec("pylikwid") is not None

    def wrap(self, cmd: Sequence[str], job: Job) -> list[str]:
        cpus = job.cpus or self._cores(job.threads)
        out = job.scratch / f"likwid-{job.pass_name}.csv"
        args = ["likwid-perfctr", "-C", ",".join(map(str, cpus)), "-g", job.pass_name]
        if self._marker(job):
            args.append("-m")
        return [*args, "-O", "-o", str(out), *cmd]

    def environment(self, job: Job) -> dict[str, str]:
        return {"HPCPROF_LIKWID_MARKER": "1"} if self._marker(job) else {}

    def collect(self, job: Job, stdout: str, stderr: str) -> tuple[Sample, ...]:
        path = job.scratch / f"likwid-{job.pass_name}.csv"
        if not path.exists():
            raise BackendError(f"likwid-perfctr wrote no output file ({path.name})")
        out = parse_likwid(path.read_text(encoding="utf-8", errors="replace"))
        region = "hpcprof_kernel" if self._marker(job) else None
        samples = samples_from_likwid(
            out, region=region if region in out.regions() else None, backend=self.name
        )
        require_group_samples(job.pass_name, samples, out)
        return samples
