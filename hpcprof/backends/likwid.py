"""``likwid-perfctr``: groups FLOPS_DP, FLOPS_SP and MEM, wrapper or marker mode.

The output (ASCII or ``-O`` CSV, marker or wrapper layout, LIKWID 4 and 5) is read by
:func:`hpcprof.backends.likwid_output.parse_likwid`; this module turns it into samples and
runs the tool.

Python kernels get marker regions through ``pylikwid`` when it imports in the child. A pass
whose output holds nothing for its group is a :class:`~hpcprof.errors.BackendError`, never
a silent fall-back to the analytic model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

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
from hpcprof.records import Metric, Precision, Sample, SampleStatus

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
