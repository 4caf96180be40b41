"""Text and pictures of a machine comparison: markdown tables and a roofline PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpcprof.analysis.predict import MODEL, CompareRow, Skipped, Width, ceiling
from hpcprof.machines.model import Machine, MemoryKind, Peak
from hpcprof.results.report import SummaryRow, format_cell
from precision.common.files import atomic_save_figure
from precision.common.markdown import markdown_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_VECTOR_PEAKS = (Peak.FP64, Peak.FP32, Peak.FP16)


def machines_markdown(machines: Sequence[Machine], memory: MemoryKind | None = None) -> str:
    """Table of the machines' ceilings and sources; special units (tensor cores, Knights
    Mill 4FMAPS, BF16 dot products: used only with ``--matrix``) in their own column."""
    rows = [("machine", "cores", "GHz", "FP64 GFLOP/s", "FP32 GFLOP/s", "FP16 GFLOP/s",
             "special units GFLOP/s (--matrix)", "memory", "GB/s", "source")]  # fmt: skip
    for m in machines:
        mem = m.memory(memory if any(x.kind is memory for x in m.memories) else None)
        special = ", ".join(
            f"{p.value} {format_cell(v)}" for p, v in m.peaks if p not in _VECTOR_PEAKS
        )
        rows.append((m.name, str(m.cores or "n/a"), format_cell(m.clock_ghz),
                     format_cell(m.peak(Peak.FP64)), format_cell(m.peak(Peak.FP32)),
                     format_cell(m.peak(Peak.FP16)), special or "-", mem.kind.value,
                     format_cell(mem.bandwidth_gbs), m.source))  # fmt: skip
    return markdown_table(rows)


def compare_markdown(
    rows: Sequence[CompareRow],
    machines: Sequence[Machine],
    skipped: Sequence[Skipped] = (),
) -> str:
    """One line per app and precision: where its FLOPs and bytes come from, intensity, then
    per machine the roof, bound and predicted time ratio against the first machine; the
    rows that could not be placed are listed with the reason, the model stated below."""
    names = [m.name for m in machines]
    head = ["app", "precision", "FLOPs from", "bytes from", "FLOP/byte", "measured GFLOP/s",
            "host % of roof"]  # fmt: skip
    for n in names:
        head += [f"{n} roof GFLOP/s", f"{n} bound"] + ([f"T({n})/T({names[0]})"] * (n != names[0]))
    table = [tuple(head)]
    keyed: dict[tuple[str, str], dict[str, CompareRow]] = {}
    for r in rows:
        keyed.setdefault((r.app, r.precision), {})[r.machine] = r
    for (app, prec), per in keyed.items():
        first = next(iter(per.values()))
        cells = [app, prec, first.flop_source, first.bytes_source,
                 format_cell(first.intensity, ".3g"), format_cell(first.measured_gflops),
                 format_cell(first.host_fraction, ".1%")]  # fmt: skip
        for n in names:
            r = per[n]
            cells += [format_cell(r.attainable_gflops), r.bound.value if r.bound else "n/a"]
            cells += [format_cell(r.ratio, ".3f")] * (n != names[0])
        table.append(tuple(cells))
    lines = [markdown_table(table).rstrip("\n")]
    if not keyed:
        lines.append("| (no app could be placed) |" + " |" * (len(head) - 1))
    if skipped:
        lines += ["", f"Not placed ({len(skipped)}):", ""]
        lines += [f"- {s.app} {s.precision}: {s.reason}" for s in skipped]
    lines.append("")
    lines.append(f"Model: {MODEL}.")
    return "\n".join(lines) + "\n"


def plot_roofline(
    summary: Sequence[SummaryRow],
    compared: Sequence[CompareRow],
    machines: Sequence[Machine],
    path: Path,
    *,
    memory: MemoryKind | None = None,
) -> None:
    """Write :func:`roofline_figure` as a PNG (atomic write, Agg backend)."""
    fig = roofline_figure(summary, compared, machines, memory=memory)
    import matplotlib.pyplot as plt  # after the figure chose the Agg backend

    atomic_save_figure(fig, path, dpi=100)
    plt.close(fig)


def _limits(values: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    """Log-axis limits that hold every value with a margin (defaults when there is none)."""
    vals = [v for v in values if v > 0]
    return (min([*vals, lo]) / 3, max([*vals, hi]) * 3)


def roofline_figure(
    summary: Sequence[SummaryRow],
    compared: Sequence[CompareRow],
    machines: Sequence[Machine],
    *,
    memory: MemoryKind | None = None,
) -> Figure:
    """Log-log roofline of each machine (FP64 solid, FP32 dashed) with every app placed at
    its arithmetic intensity and measured GFLOP/s.

    Both axes are scaled to the data (no point is clipped), the legend sits outside the
    plot so it covers no point, and each point shows where its FLOPs come from: filled
    where counted by a backend, hollow where analytic.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placed = [(r, r.intensity, r.gflops) for r in summary if r.intensity and r.gflops]
    xlo, xhi = _limits([x for _, x, _ in placed] + [r.intensity or 0 for r in compared],
                       0.05, 100.0)  # fmt: skip
    xs = [xlo * (xhi / xlo) ** (i / 200) for i in range(201)]
    fig, ax = plt.subplots(figsize=(8.0, 5.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    peaks: list[float] = []
    for i, m in enumerate(machines):
        mem = m.memory(memory if any(x.kind is memory for x in m.memories) else None)
        for width, style in ((Width.FP64, "-"), (Width.FP32, "--")):
            peak = ceiling(m, width)
            if peak is None:
                continue
            peaks.append(peak)
            ax.plot(xs, [min(peak, x * mem.bandwidth_gbs) for x in xs], style,
                    color=colors[i % len(colors)], lw=1.5,
                    label=f"{m.name} {width.value} ({mem.kind.value} {mem.bandwidth_gbs:.0f} GB/s)")  # fmt: skip
    markers = {"float64": "o", "float32": "s"}
    for r, x, y in placed:
        hollow = not r.flop_source.startswith("counted")
        ax.scatter(x, y, marker=markers.get(r.precision, "^"), s=28,
                   facecolors="none" if hollow else "black", edgecolors="black")  # fmt: skip
        ax.annotate(f"{r.app} {r.precision.replace('float', 'f')}", (x, y),
                    textcoords="offset points", xytext=(4, 3), fontsize=7)  # fmt: skip
    for label, face in (("FLOPs counted", "black"), ("FLOPs analytic", "none")):
        ax.scatter([], [], marker="o", facecolors=face, edgecolors="black", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xlo, xhi)
    top = max(peaks, default=1.0)
    ax.set_ylim(*_limits([y for _, _, y in placed] + peaks, top / 1e3, top))
    ax.set_xlabel("arithmetic intensity [FLOP/byte]")
    ax.set_ylabel("GFLOP/s (points: measured on this host)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig
