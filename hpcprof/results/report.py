"""Summarize a run: markdown table per app and precision, and a bar chart of FP64 share.

FLOPs come from the counting backend when it produced them; otherwise, where no backend
counted FLOPs, from the analytic model attributed to the run's precision. Every row says
where its FLOPs and bytes come from, and a number derived from a missing one is missing
(never computed with 0 in its place). Medians over successful repetitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hpcprof.results.records import Metric, SampleStatus
from precision.common.files import atomic_save_figure
from precision.common.markdown import markdown_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ANALYTIC = "analytic"
MISSING = "missing"


def counted(backend: str) -> str:
    """Provenance label of a value a backend counted or measured."""
    return f"counted: {backend}"


@dataclass(frozen=True, kw_only=True)
class SummaryRow:
    """One app x precision x size of a run.

    ``flop_source`` and ``bytes_source`` say where the FLOPs and bytes come from:
    ``analytic`` (the app's model), ``counted: <backend>``, ``not separable: <backend>``
    (only the combined count exists) or ``missing``. A value derived from a missing one
    (FP64 share, GFLOP/s, FLOP/byte) is None, and ``note`` says which input is missing and why.
    """

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
    bytes_source: str = MISSING
    total_gflop: float | None = None  # all widths; None when any width is missing
    flop_note: str = ""  # the part of ``note`` about FLOPs


def _median(frame: pd.DataFrame, metric: Metric) -> float | None:
    sel = frame[(frame["metric"] == metric.value) & (frame["sample_status"] == "ok")]
    vals = sel["value"].dropna()
    return None if vals.empty else float(vals.median())


def _samples(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    return frame[frame["metric"] == metric.value]


def _why_missing(frame: pd.DataFrame, metric: Metric, label: str) -> str:
    """Why ``metric`` has no value: the status its samples carry, or 'not reported'."""
    statuses = sorted(set(_samples(frame, metric)["sample_status"]) - {"ok"})
    return f"{label} {'/'.join(statuses) if statuses else 'not reported'}"


@dataclass(frozen=True, kw_only=True)
class _Flops:
    fp64: float | None
    fp32: float | None
    fp16: float | None
    total: float | None
    source: str
    reasons: tuple[str, ...]


def _flops(ok: pd.DataFrame, prec: str) -> _Flops:
    """FLOPs per width and in total, with their provenance and what is missing.

    Counted samples win; the analytic model (attributed to the run's precision) is used
    only when no backend counted FLOPs at all. A width the backend could not count makes
    the total missing instead of being taken as 0.
    """
    widths = ((Metric.FP64_FLOP, "FP64"), (Metric.FP32_FLOP, "FP32"))
    tried = ok[ok["metric"].isin([m.value for m, _ in widths])]
    fp16 = _median(ok, Metric.FP16_FLOP)
    fp16_missing = not _samples(ok, Metric.FP16_FLOP).empty and fp16 is None
    if not tried.empty and (tried["sample_status"] == "ok").any():
        backend = str(tried[tried["sample_status"] == "ok"]["backend"].iloc[0])
        vals = [_median(ok, m) for m, _ in widths]
        reasons = [
            _why_missing(ok, m, lbl) for (m, lbl), v in zip(widths, vals, strict=True) if v is None
        ]
        if fp16_missing:
            reasons.append(_why_missing(ok, Metric.FP16_FLOP, "FP16"))
        total = None if reasons else sum(v or 0.0 for v in vals) + (fp16 or 0.0)
        return _Flops(
            fp64=vals[0], fp32=vals[1], fp16=fp16, total=total,
            source=counted(backend), reasons=tuple(reasons),
        )  # fmt: skip
    if (tried["sample_status"] == SampleStatus.NOT_SEPARABLE.value).any():
        backend = str(tried["backend"].iloc[0])
        return _Flops(
            fp64=None, fp32=None, fp16=fp16, total=_median(ok, Metric.FP_FLOP),
            source=f"not separable: {backend}",
            reasons=("counters cannot tell FP64 from FP32",),
        )  # fmt: skip
    if not tried.empty:
        failed = tuple(_why_missing(ok, m, lbl) for m, lbl in widths)
        return _Flops(fp64=None, fp32=None, fp16=None, total=None, source=MISSING, reasons=failed)
    analytic = _median(ok, Metric.ANALYTIC_FLOP)
    if analytic is None or prec not in ("float64", "float32"):
        return _Flops(
            fp64=None, fp32=None, fp16=None, total=None, source=MISSING,
            reasons=("FLOPs not counted and no FLOP model",),
        )  # fmt: skip
    fp64 = analytic if prec == "float64" else 0.0
    return _Flops(
        fp64=fp64, fp32=analytic - fp64, fp16=None, total=analytic, source=ANALYTIC, reasons=()
    )


def _bytes(ok: pd.DataFrame) -> tuple[float | None, str]:
    """Bytes moved (measured first, else the model) and their provenance."""
    measured = _samples(ok, Metric.MEM_BYTES)
    if (value := _median(ok, Metric.MEM_BYTES)) is not None:
        return value, counted(str(measured[measured["sample_status"] == "ok"]["backend"].iloc[0]))
    if (value := _median(ok, Metric.ANALYTIC_BYTES)) is not None:
        return value, ANALYTIC
    return None, MISSING


_TENSOR_PARTS = (
    (Metric.FP64_TENSOR_FLOP, "FP64"),
    (Metric.FP32_TENSOR_FLOP, "FP32"),
    (Metric.FP16_TENSOR_FLOP, "FP16"),
)


def summarize(frame: pd.DataFrame) -> list[SummaryRow]:
    """One row per (app, precision, size, preset); medians over successful repetitions."""
    rows = []
    keys = ["app", "precision", "size", "preset"]
    if "process" in frame.columns:
        frame = frame[frame["process"].isna()]  # per-process rows add up to the whole-run row
    grouped = frame.assign(
        size=frame["size"].astype("string"), preset=frame["preset"].astype("string")
    )
    for (app, prec, size, preset), group in grouped.groupby(keys, dropna=False, sort=False):
        statuses = group.drop_duplicates("repetition")["status"]
        ok = group[group["status"] == "ok"]
        status = "ok" if (statuses == "ok").all() else ",".join(sorted(set(statuses)))
        flops = _flops(ok, str(prec))
        seconds = _median(ok, Metric.KERNEL_S) or _median(ok, Metric.WALL_S)
        nbytes, bytes_source = _bytes(ok)
        total = flops.total
        reasons = list(flops.reasons) + (["bytes missing"] if nbytes is None else [])
        for part, label in _TENSOR_PARTS:
            if (_samples(ok, part)["sample_status"] == SampleStatus.MISSING.value).any():
                reasons.append(f"{label} tensor-core part not collected (may undercount)")
        model = _median(ok, Metric.ANALYTIC_FLOP)
        if flops.source.startswith("counted") and total == 0 and model:
            reasons.append(f"counted 0 FLOPs where the model expects {model:.3g}")
        share_ok = total and flops.fp64 is not None and flops.source != MISSING
        rows.append(
            SummaryRow(
                app=str(app) + (f" [{preset}]" if isinstance(preset, str) else ""),
                precision=str(prec),
                size="" if pd.isna(size) else str(size),
                status=status,
                fp64_gflop=None if flops.fp64 is None else flops.fp64 / 1e9,
                fp32_gflop=None if flops.fp32 is None else flops.fp32 / 1e9,
                fp64_share=(flops.fp64 or 0.0) / total if share_ok and total else None,
                gflops=total / seconds / 1e9 if total is not None and seconds else None,
                gbytes=None if nbytes is None else nbytes / 1e9,
                intensity=total / nbytes if total is not None and nbytes else None,
                check_error=_median(ok, Metric.CHECK_ERROR),
                flop_source=flops.source,
                note="; ".join(reasons),
                seconds=seconds,
                fp16_gflop=None if flops.fp16 is None else flops.fp16 / 1e9,
                bytes_source=bytes_source,
                total_gflop=None if total is None else total / 1e9,
                flop_note="; ".join(flops.reasons),
            )
        )
    return rows


PROVENANCE = (
    "FLOPs/bytes from: `analytic` = the app's model (by construction, not a measurement), "
    "`counted: <backend>` = counted or measured by that backend, `missing` = neither. "
    "A value derived from a missing input is n/a; the last column says which input and why."
)


def format_cell(value: float | None, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def markdown(rows: list[SummaryRow]) -> str:
    """Markdown table of the summary rows."""
    table = [("app", "precision", "size", "status", "FP64 GFLOP", "FP32 GFLOP", "FP64 share",
              "GFLOP/s", "GB", "FLOP/byte", "check error", "FLOPs from", "bytes from",
              "missing")]  # fmt: skip
    for r in rows:
        share = (
            "not separable"
            if r.flop_source.startswith("not separable")
            else format_cell(r.fp64_share, ".1%")
        )
        table.append((r.app, r.precision, str(r.size), str(r.status), format_cell(r.fp64_gflop),
                      format_cell(r.fp32_gflop), share, format_cell(r.gflops),
                      format_cell(r.gbytes), format_cell(r.intensity, ".3g"),
                      format_cell(r.check_error, ".2e"), r.flop_source, r.bytes_source,
                      r.note or "-"))  # fmt: skip
    return markdown_table(table) + "\n" + PROVENANCE + "\n"


def _short(source: str) -> str:
    """Provenance for a narrow label: ``counted: perf`` -> ``counted:perf``."""
    return source.replace(": ", ":")


def plot_fp64_share(rows: list[SummaryRow], path: Path) -> None:
    """Write :func:`fp64_share_figure` as a PNG (Agg backend, atomic write)."""
    fig = fp64_share_figure(rows)
    import matplotlib.pyplot as plt  # after the figure chose the Agg backend

    atomic_save_figure(fig, path, tight=False)
    plt.close(fig)


def fp64_share_figure(rows: list[SummaryRow]) -> Figure:
    """Bar chart of FP64 share per app and precision.

    Each bar says where its FLOPs come from: solid bars are counted (the backend is named
    under the bar), hatched bars are the analytic model, grey stubs are missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.app}\n{r.precision}\n[{_short(r.flop_source)}]" for r in rows]
    values = [0.0 if r.fp64_share is None else 100.0 * r.fp64_share for r in rows]
    style = {"analytic": ("#ffffff", "//"), "counted": ("#3b6ea8", "")}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.4))
    for i, (r, v) in enumerate(zip(rows, values, strict=True)):
        kind = _short(r.flop_source).split(":")[0]
        face, hatch = style.get(kind, ("#bbbbbb", ""))
        ax.bar(i, v if r.fp64_share is not None else 2.0, color=face, hatch=hatch,
               edgecolor="#3b6ea8" if kind == "analytic" else "none")  # fmt: skip
        if r.fp64_share is None:
            ax.text(i, 3.0, "n/a", ha="center", fontsize=6)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("FP64 share of FLOPs [%]")
    ax.set_title(
        "solid: counted (backend in brackets); hatched: analytic, by construction; grey: missing",
        fontsize=7,
    )
    ax.set_ylim(0, 105)
    fig.tight_layout()
    return fig
