"""Summarize a run: markdown table per app and precision, and a bar chart of FP64 share.

FLOPs come from the counting backend when it produced them; otherwise from the analytic
model, attributed to the run's precision (the ``flop source`` column says which). Medians
over successful repetitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hpcprof.records import Metric, SampleStatus


@dataclass(frozen=True, kw_only=True)
class SummaryRow:
    app: str
    precision: str
    size: str
    status: str
    fp64_gflop: float | None
    fp32_gflop: float | None
    fp64_share: float | None
    gflops: float | None
    gbytes: float | None
    intensity: float | None
    check_error: float | None
    flop_source: str
    note: str = ""
    seconds: float | None = None  # median kernel time (wall time where the app reports none)
    fp16_gflop: float | None = None


def _median(frame: pd.DataFrame, metric: Metric) -> float | None:
    sel = frame[(frame["metric"] == metric.value) & (frame["sample_status"] == "ok")]
    vals = sel["value"].dropna()
    return None if vals.empty else float(vals.median())


def _status_of(frame: pd.DataFrame, metric: Metric) -> str | None:
    sel = frame[frame["metric"] == metric.value]["sample_status"]
    return None if sel.empty else str(sel.iloc[0])


def summarize(frame: pd.DataFrame) -> list[SummaryRow]:
    """One row per (app, precision, size, preset)."""
    rows = []
    keys = ["app", "precision", "size", "preset"]
    grouped = frame.assign(
        size=frame["size"].astype("string"), preset=frame["preset"].astype("string")
    )
    for (app, prec, size, preset), group in grouped.groupby(keys, dropna=False, sort=False):
        statuses = group.drop_duplicates("repetition")["status"]
        ok = group[group["status"] == "ok"]
        status = "ok" if (statuses == "ok").all() else ",".join(sorted(set(statuses)))
        fp64, fp32 = _median(ok, Metric.FP64_FLOP), _median(ok, Metric.FP32_FLOP)
        fp16 = _median(ok, Metric.FP16_FLOP)
        note = ""
        counted = fp64 is not None or fp32 is not None
        if counted:
            source = str(ok[ok["metric"] == Metric.FP64_FLOP.value]["backend"].iloc[0])
        elif _status_of(ok, Metric.FP64_FLOP) == SampleStatus.NOT_SEPARABLE.value:
            source, note = "not separable", "counters cannot tell FP64 from FP32"
        else:
            analytic = _median(ok, Metric.ANALYTIC_FLOP)
            source = "analytic" if analytic is not None else "none"
            fp64 = analytic if analytic is not None and prec == "float64" else None
            fp32 = analytic if analytic is not None and prec == "float32" else None
            if analytic is not None:
                fp64, fp32 = (fp64 or 0.0), (fp32 or 0.0)
        total = None if fp64 is None and fp32 is None else (fp64 or 0.0) + (fp32 or 0.0)
        if total is not None and fp16 is not None:
            total += fp16
        if total is None:
            total = _median(ok, Metric.FP_FLOP)
        seconds = _median(ok, Metric.KERNEL_S) or _median(ok, Metric.WALL_S)
        measured_bytes = _median(ok, Metric.MEM_BYTES)
        nbytes = (
            measured_bytes if measured_bytes is not None else _median(ok, Metric.ANALYTIC_BYTES)
        )
        rows.append(
            SummaryRow(
                app=str(app) + (f" [{preset}]" if isinstance(preset, str) else ""),
                precision=str(prec),
                size="" if pd.isna(size) else str(size),
                status=status,
                fp64_gflop=None if fp64 is None else fp64 / 1e9,
                fp32_gflop=None if fp32 is None else fp32 / 1e9,
                fp64_share=(fp64 or 0.0) / total if total and fp64 is not None else None,
                gflops=total / seconds / 1e9 if total is not None and seconds else None,
                gbytes=None if nbytes is None else nbytes / 1e9,
                intensity=total / nbytes if total is not None and nbytes else None,
                check_error=_median(ok, Metric.CHECK_ERROR),
                flop_source=source,
                note=note,
                seconds=seconds,
                fp16_gflop=None if fp16 is None else fp16 / 1e9,
            )
        )
    return rows


def _fmt(value: float | None, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def markdown(rows: list[SummaryRow]) -> str:
    """Markdown table of the summary rows."""
    head = (
        "| app | precision | size | status | FP64 GFLOP | FP32 GFLOP | FP64 share | GFLOP/s"
        " | GB | FLOP/byte | check error | flop source |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        share = "not separable" if r.flop_source == "not separable" else _fmt(r.fp64_share, ".1%")
        lines.append(
            f"| {r.app} | {r.precision} | {r.size} | {r.status} | {_fmt(r.fp64_gflop)} | "
            f"{_fmt(r.fp32_gflop)} | {share} | {_fmt(r.gflops)} | {_fmt(r.gbytes)} | "
            f"{_fmt(r.intensity, '.3g')} | {_fmt(r.check_error, '.2e')} | {r.flop_source} |"
        )
    return "\n".join(lines) + "\n"


def plot_fp64_share(rows: list[SummaryRow], path: Path) -> None:
    """Bar chart of FP64 share per app and precision (PNG, Agg backend, atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.app}\n{r.precision}" for r in rows]
    values = [0.0 if r.fp64_share is None else 100.0 * r.fp64_share for r in rows]
    colors = ["#bbbbbb" if r.fp64_share is None else "#3b6ea8" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.0))
    ax.bar(range(len(rows)), values, color=colors)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("FP64 share of FLOPs [%] (grey: unknown)")
    ax.set_ylim(0, 105)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
