"""Parser of ``likwid-perfctr`` output: ASCII tables and ``-O`` CSV, LIKWID 4 and 5.

:func:`parse_likwid` reads both output layouts: the ASCII tables printed to stdout
(``Region X, Group 1: FLOPS_DP``, ``Region: X / Group: 1`` from likwid-mpirun,
``Group 1: FLOPS_DP`` in wrapper mode) and the ``-O`` CSV (``TABLE,Region X,Group 1 Raw,...``
in marker mode, ``TABLE,Group 1 Raw,FLOPS_DP,7`` in wrapper mode). Application output mixed
into the text is skipped, ``-`` cells become None, ``inf`` stays ``inf``, and STAT tables
(Sum/Min/Max/Avg over threads) are kept as their own kind. A pure function of the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


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
