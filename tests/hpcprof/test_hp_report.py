"""report.summarize and the numbers derived from it: a missing input stays missing."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hpcprof.analysis.predict import compare, skipped, why_no_work, work_of
from hpcprof.cli.main import main
from hpcprof.machines.data import MACHINES
from hpcprof.results.records import Measurement, Metric, Precision, RunStatus, Sample, SampleStatus
from hpcprof.results.report import SummaryRow, markdown, summarize
from hpcprof.results.store import to_frame, write_run
from hpcprof.run.host import collect_host


def _row(precision: Precision, *samples: Sample, app: str = "app") -> SummaryRow:
    m = Measurement(
        app=app,
        precision=precision,
        size=100,
        preset=None,
        repetition=0,
        status=RunStatus.OK,
        backend=samples[0].backend,
        samples=(Sample(metric=Metric.KERNEL_S, value=2.0, backend="app"), *samples),
    )
    (row,) = summarize(to_frame([m], "r"))
    return row


def _s(metric: Metric, value: float | None, backend: str = "perf") -> Sample:
    status = SampleStatus.OK if value is not None else SampleStatus.MISSING
    return Sample(metric=metric, value=value, backend=backend, status=status)


def test_counted_widths_give_share_intensity_and_provenance() -> None:
    row = _row(
        Precision.FLOAT64,
        _s(Metric.FP64_FLOP, 3e9),
        _s(Metric.FP32_FLOP, 1e9),
        _s(Metric.ANALYTIC_BYTES, 8e9, "analytic"),
    )
    assert row.fp64_share == 0.75 and row.gflops == 2.0 and row.intensity == 0.5
    assert row.flop_source == "counted: perf" and row.bytes_source == "analytic"
    assert row.note == "" and work_of(row) is not None


def test_missing_fp32_makes_every_derived_number_missing() -> None:
    row = _row(
        Precision.FLOAT32,
        _s(Metric.FP64_FLOP, 3e9),
        Sample.missing(Metric.FP32_FLOP, "perf", SampleStatus.NOT_SUPPORTED),
        _s(Metric.ANALYTIC_BYTES, 8e9, "analytic"),
    )  # fmt: skip
    # before: FP64 share 100%, 1.5 GFLOP/s and 0.375 FLOP/byte, from FP32 taken as 0
    assert row.fp64_gflop == 3.0 and row.fp32_gflop is None
    assert row.fp64_share is None and row.gflops is None and row.intensity is None
    assert row.total_gflop is None
    assert "FP32 not_supported" in row.note
    assert work_of(row) is None
    reason = why_no_work(row)
    assert reason is not None and "FP32 not_supported" in reason
    table = markdown([row])
    line = next(ln for ln in table.splitlines() if ln.startswith("| app |") and "float32" in ln)
    assert "100.0%" not in line and "FP32 not_supported" in line


def test_missing_width_gives_no_knl_knm_ratio_and_says_why() -> None:
    row = _row(
        Precision.FLOAT64,
        _s(Metric.FP64_FLOP, 3e9),
        Sample.missing(Metric.FP32_FLOP, "perf", SampleStatus.NOT_COUNTED),
        _s(Metric.MEM_BYTES, 1e9, "perf"),
    )  # fmt: skip
    machines = [MACHINES["knl-7250"], MACHINES["knm-7295"]]
    assert compare([row], machines) == []
    (skip,) = skipped([row])
    assert skip.app == "app" and "FP32 not_counted" in skip.reason


def test_analytic_flops_are_labelled_analytic() -> None:
    row = _row(
        Precision.FLOAT32,
        _s(Metric.WALL_S, 3.0, "timer"),
        _s(Metric.ANALYTIC_FLOP, 4e9, "analytic"),
        _s(Metric.ANALYTIC_BYTES, 2e9, "analytic"),
    )
    assert row.flop_source == "analytic" and row.fp64_share == 0.0
    assert row.fp32_gflop == 4.0 and row.intensity == 2.0


def test_not_separable_has_total_but_no_share() -> None:
    row = _row(
        Precision.FLOAT64,
        Sample.missing(Metric.FP64_FLOP, "likwid", SampleStatus.NOT_SEPARABLE),
        _s(Metric.FP_FLOP, 5e9, "likwid"),
        _s(Metric.ANALYTIC_BYTES, 1e9, "analytic"),
    )  # fmt: skip
    assert row.flop_source == "not separable: likwid" and row.fp64_share is None
    assert row.gflops == 2.5 and row.intensity == 5.0
    assert work_of(row) is None


def test_counter_that_failed_is_missing_not_analytic() -> None:
    row = _row(
        Precision.FLOAT64,
        _s(Metric.FP64_FLOP, None),
        _s(Metric.FP32_FLOP, None),
        _s(Metric.ANALYTIC_FLOP, 4e9, "analytic"),
        _s(Metric.ANALYTIC_BYTES, 1e9, "analytic"),
    )
    assert row.flop_source == "missing" and row.fp64_gflop is None and row.gflops is None
    assert "FP64 missing" in row.note


def test_external_app_without_bytes_is_skipped_with_reason() -> None:
    row = _row(
        Precision.NATIVE,
        _s(Metric.FP64_FLOP, 1e9),
        _s(Metric.FP32_FLOP, 0.0),
        _s(Metric.FOM, 12.5, "app"),
        app="hpcg",
    )
    assert row.bytes_source == "missing" and row.intensity is None
    (skip,) = skipped([row])
    assert "no bytes" in skip.reason


def test_zero_count_where_the_model_expects_work_is_flagged() -> None:
    row = _row(
        Precision.FLOAT64,
        _s(Metric.FP64_FLOP, 0.0, "callgrind"),
        _s(Metric.FP32_FLOP, 0.0, "callgrind"),
        _s(Metric.ANALYTIC_FLOP, 4e9, "analytic"),
        _s(Metric.ANALYTIC_BYTES, 1e9, "analytic"),
    )
    assert row.fp64_gflop == 0.0 and "counted 0 FLOPs where the model expects 4e+09" in row.note


def test_compare_on_external_suite_run_says_what_it_skipped(tmp_path: Path) -> None:
    def ext(app: str, backend: str, *samples: Sample) -> Measurement:
        return Measurement(
            app=app, precision=Precision.NATIVE, size=None, preset=None, repetition=0,
            status=RunStatus.OK, backend=backend,
            samples=(_s(Metric.WALL_S, 4.0, backend), _s(Metric.FOM, 9.0, "app"), *samples),
        )  # fmt: skip

    timed = ext("xsbench", "timer")
    counted = ext(
        "hpcg",
        "likwid",
        _s(Metric.FP64_FLOP, 8e9, "likwid"),
        _s(Metric.FP32_FLOP, 0.0, "likwid"),
        _s(Metric.MEM_BYTES, 32e9, "likwid"),  # measured: no byte model needed
    )
    run = write_run(tmp_path, "r1", [timed, counted], {"backend_used": "likwid"}, collect_host())
    result = CliRunner().invoke(main, ["compare", str(run), "--no-png"])
    assert result.exit_code == 0, result.output
    out = result.output
    hpcg = next(ln for ln in out.splitlines() if ln.startswith("| hpcg | native |"))
    assert "| counted: likwid | counted: likwid | 0.25 |" in hpcg
    # before: xsbench silently absent (and an empty table when no app had bytes)
    assert "Not placed (1):" in out
    skip = next(ln for ln in out.splitlines() if ln.startswith("- xsbench native:"))
    assert "no bytes" in skip and "FLOPs per width unknown" in skip


def test_roofline_axis_holds_every_point_and_legend_covers_none() -> None:
    from hpcprof.analysis.roofline import roofline_figure

    def placed(app: str, gflops: float, intensity: float, source: str) -> SummaryRow:
        return SummaryRow(
            app=app, precision="float64", size="1", status="ok", fp64_gflop=1.0,
            fp32_gflop=0.0, fp64_share=1.0, gflops=gflops, gbytes=1.0, intensity=intensity,
            check_error=None, flop_source=source, bytes_source="analytic",
        )  # fmt: skip

    rows = [
        placed("gemm-train", 2e-4, 30.0, "analytic"),  # below the old 1e-3 floor
        placed("md", 5.0, 1e3, "counted: callgrind"),  # far right, where the legend was
        placed("triad", 1.0, 0.08, "analytic"),
    ]
    machines = [MACHINES["knl-7210"], MACHINES["knm-7295"]]
    fig = roofline_figure(rows, compare(rows, machines), machines)
    (ax,) = fig.axes
    (ylo, yhi), (xlo, xhi) = ax.get_ylim(), ax.get_xlim()
    for r in rows:
        assert r.gflops is not None and r.intensity is not None
        assert ylo < r.gflops < yhi and xlo < r.intensity < xhi
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())  # drawn beside the plot
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "FLOPs counted" in labels and "FLOPs analytic" in labels


def test_fp64_share_plot_labels_every_bar_with_its_provenance() -> None:
    from hpcprof.results.report import fp64_share_figure

    rows = [
        _row(Precision.FLOAT64, _s(Metric.FP64_FLOP, 3e9, "callgrind"),
             _s(Metric.FP32_FLOP, 1e9, "callgrind"), app="md"),
        _row(Precision.FLOAT32, _s(Metric.WALL_S, 1.0, "timer"),
             _s(Metric.ANALYTIC_FLOP, 1e9, "analytic"), app="triad"),
        _row(Precision.NATIVE, _s(Metric.WALL_S, 1.0, "timer"), app="hpcg"),
    ]  # fmt: skip
    (ax,) = fp64_share_figure(rows).axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [
        "md\nfloat64\n[counted:callgrind]",
        "triad\nfloat32\n[analytic]",
        "hpcg\nnative\n[missing]",
    ]
    hatches = [p.get_hatch() or "" for p in ax.patches]
    assert hatches == ["", "//", ""]  # the analytic bar is hatched
