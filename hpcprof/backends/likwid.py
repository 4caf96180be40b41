"""``likwid-perfctr``: groups FLOPS_DP, FLOPS_SP and MEM, wrapper or marker mode.

The output (ASCII or ``-O`` CSV, marker or wrapper layout, LIKWID 4 and 5) is read by
:func:`hpcprof.backends.likwid_output.parse_likwid`; this module turns it into samples and
runs the tool. It also measures traffic for ``hpcprof bound --measure --traffic likwid``
(:func:`measure_traffic`: the MEM/L3/L2 data volumes, :func:`traffic_bytes`).

Python kernels get marker regions through ``pylikwid`` when it imports in the child. A pass
whose output holds nothing for its group is a :class:`~hpcprof.errors.BackendError`, never
a silent fall-back to the analytic model.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from hpcprof.backends.base import Availability, Backend, Job, tool_output
from hpcprof.backends.events import (
    COMBINED_FP_EVENTS,
    FP_EVENT_WEIGHTS,
    Separability,
    normalize_event,
    separability,
    separability_from_text,
)
from hpcprof.backends.likwid_output import (  # noqa: F401 (re-exported)
    LikwidOutput,
    LikwidRow,
    LikwidTable,
    TableKind,
    parse_likwid,
)
from hpcprof.errors import BackendError
from hpcprof.results.records import Metric, Precision, Sample, SampleStatus

GROUPS = ("FLOPS_DP", "FLOPS_SP", "MEM")


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
            samples.append(Sample.missing(metric, backend, SampleStatus.NOT_SEPARABLE, region=tag))
        elif prec in totals:
            samples.append(Sample(metric=metric, value=totals[prec], backend=backend, region=tag))
        else:
            samples.append(Sample.missing(metric, backend, region=tag))
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


# Traffic for ``hpcprof bound --measure --traffic likwid``: the data volume one group
# counts, and the cache whose size is the fast memory M of that traffic.
TRAFFIC_METRICS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "MEM": ("Memory data volume [GBytes]", "Memory data volume [GByte]"),  # LLC <-> DRAM
    "L3": ("L3 data volume [GBytes]", "L3 data volume [GByte]"),  # L2 <-> L3
    "L2": ("L2 data volume [GBytes]", "L2 data volume [GByte]"),  # L1 <-> L2
})  # fmt: skip
FAST_LEVEL: Mapping[str, int | None] = MappingProxyType({"MEM": None, "L3": 2, "L2": 1})
"""Cache level below each group's traffic (None: the last level)."""


def check_group(group: str) -> None:
    """Raises:
    BackendError: ``group`` is not one of :data:`TRAFFIC_METRICS`."""
    if group not in TRAFFIC_METRICS:
        raise BackendError(
            f"likwid traffic group {group!r}: must be one of {', '.join(TRAFFIC_METRICS)}"
        )


def traffic_bytes(out: LikwidOutput, group: str, region: str | None = None, run: int = 0) -> float:
    """Bytes the data-volume metric of ``group`` reports for one region, summed over threads.

    Uncore counts (MEM) appear on one thread per socket and ``-`` elsewhere; the sum over
    the values present is the total either way.

    Raises:
        BackendError: an unknown group, or the output holds no such metric for the region.
    """
    check_group(group)
    regions = out.regions()
    name = region if region is not None else (regions[0] if regions else "")
    for t in out.tables:
        if t.region != name or t.run != run or t.kind is not TableKind.METRICS or t.group != group:
            continue
        for metric in TRAFFIC_METRICS[group]:
            row = t.row(metric)
            vals = [] if row is None else [v for v in row.values if v is not None]
            if vals:
                return sum(vals) * 1e9
    seen = sorted({f"{t.group}/{t.region or '-'}" for t in out.tables}) or ["no tables"]
    raise BackendError(
        f"likwid-perfctr output has no {TRAFFIC_METRICS[group][0]} for region {name or '-'} "
        f"(group/region read: {', '.join(seen)})"
    )


def cache_bytes(
    level: int | None, cpu: int = 0, root: Path = Path("/sys/devices/system/cpu")
) -> int:
    """Size of the data (or unified) cache at ``level`` of ``cpu`` (None: the last level).

    Raises:
        BackendError: sysfs does not describe that cache.
    """
    sizes: dict[int, int] = {}
    for index in sorted((root / f"cpu{cpu}" / "cache").glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            lvl = int((index / "level").read_text())
            raw = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and raw[:-1].isdigit():
            sizes[lvl] = int(raw[:-1]) * {"K": 1024, "M": 1 << 20, "G": 1 << 30}.get(raw[-1], 1)
    want = max(sizes, default=None) if level is None else level
    if want not in sizes:
        raise BackendError(f"no level-{want or 'last'} cache size in {root}/cpu{cpu}/cache")
    return sizes[want]


def require_traffic_counters(group: str) -> None:
    """Raises:
    BackendError: ``group`` is unknown, likwid-perfctr is missing, or it cannot count
        ``group`` on this host (no counter access, or no such group for this CPU)."""
    check_group(group)
    probe = tool_output(["likwid-perfctr", "-a"])
    if probe is None:
        raise BackendError("likwid-perfctr not installed")
    if probe[0] != 0 or group not in probe[1]:
        raise BackendError(f"likwid-perfctr cannot measure group {group} here (no counter access)")


def measure_traffic(cmd: Sequence[str], group: str, *, marker: bool, cpu: int = 0,
                    env: Mapping[str, str] | None = None, timeout_s: float = 900.0) -> float:  # fmt: skip
    """Run ``cmd`` pinned to ``cpu`` under ``likwid-perfctr -g group`` and return the bytes
    of its data volume: the ``hpcprof_kernel`` marker region with ``marker``, else the
    whole program (wrapper mode).

    Raises:
        BackendError: likwid-perfctr missing or without counters, the run failed or timed
            out, or its output holds no data volume.
    """
    require_traffic_counters(group)
    with tempfile.TemporaryDirectory(prefix="hpcprof-likwid-") as tmp:
        out = Path(tmp) / "likwid.csv"
        args = ["likwid-perfctr", "-C", str(cpu), "-g", group, *(["-m"] if marker else []),
                "-O", "-o", str(out), *cmd]  # fmt: skip
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s,
                                  env={**os.environ, **(env or {})}, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise BackendError(f"likwid-perfctr -g {group}: over {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not out.exists():
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])
            raise BackendError(f"likwid-perfctr -g {group} failed: {tail}")
        parsed = parse_likwid(out.read_text(encoding="utf-8", errors="replace"))
    return traffic_bytes(parsed, group, "hpcprof_kernel" if marker else None)
