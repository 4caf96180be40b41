"""LIKWID parser on captured likwid-perfctr output (ASCII and CSV, LIKWID 4 and 5)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from hp_data import fixture_text

from hpcprof.backends.base import Job
from hpcprof.backends.likwid import LikwidBackend, TableKind, parse_likwid, samples_from_likwid
from hpcprof.errors import BackendError
from hpcprof.results.records import HostInfo, Metric, Sample, SampleStatus

D = "likwid-perfctr/"


def test_ascii_likwid5_region_metric_and_flops() -> None:
    out = parse_likwid(fixture_text(D + "cascadelake_gold6246_flops_dp_marker_ascii.txt"))
    assert out.cpu_type == "Intel Cascadelake SP processor"
    assert out.regions() == ("matmul",)
    assert out.metric("matmul", "DP [MFLOP/s]") == 342.8031
    samples = {s.metric: s for s in samples_from_likwid(out)}
    # 512-bit packed double counts 8 FLOPs, scalar double 1
    assert samples[Metric.FP64_FLOP].value == 26624000 * 8 + 1572
    assert samples[Metric.FP64_FLOP].region == "matmul"


def test_csv_likwid4_four_regions() -> None:
    out = parse_likwid(fixture_text(D + "coffeelake_i5-7500_flops_dp_marker_csv_likwid4.txt"))
    assert out.regions() == (
        "multMatVet_NAO_OTIM",
        "multMatVet_COM_OTIM",
        "multMatMat_NAO_OTIM",
        "multMatMat_COM_OTIM",
    )
    assert out.metric("multMatMat_COM_OTIM", "DP MFLOP/s") == 2146.2262
    fp64 = samples_from_likwid(out, region="multMatMat_NAO_OTIM")[0]
    assert fp64.metric is Metric.FP64_FLOP and fp64.value == 4194314
    info = out.table("multMatVet_NAO_OTIM", TableKind.INFO)
    assert info is not None and info.columns == ("Core 3",)


def test_csv_likwid5_stat_tables_and_padding() -> None:
    text = fixture_text(D + "knl_xeonphi7250_hbm_cache_marker_csv_likwid5_16threads_with_STAT.txt")
    out = parse_likwid(text)
    kinds = [t.kind for t in out.tables]
    assert TableKind.EVENTS_STAT in kinds and TableKind.METRICS_STAT in kinds
    metrics = out.table("MMUL_Region", TableKind.METRICS)
    assert metrics is not None and len(metrics.columns) == 16
    assert out.metric("MMUL_Region", "MCDRAM Memory bandwidth [MBytes/s]") == 44118.9977
    stat = out.table("MMUL_Region", TableKind.METRICS_STAT)
    assert stat is not None and stat.columns == ("Sum", "Min", "Max", "Avg")
    row = stat.row("CPI STAT")
    assert row is not None and row.values == (201.2175, 2.0392, 23.2761, 12.5761)


def test_dash_cells_are_none() -> None:
    out = parse_likwid(
        fixture_text(D + "haswellep_e5-2697v3_mem_marker_csv_18regions_dash_values.txt")
    )
    assert len(out.regions()) == 17  # the file holds 17 TABLE blocks (degrees 2-18)
    raw = out.table("1D-MATVEC_Kernel-Degree-2", TableKind.EVENTS)
    assert raw is not None
    rows = [r for r in raw.rows if r.counter == "MBOX2C0"]
    assert rows and rows[0].values == (None,)
    mem = [
        s
        for s in samples_from_likwid(out, "1D-MATVEC_Kernel-Degree-2")
        if s.metric is Metric.MEM_BYTES
    ]
    assert mem and mem[0].value == pytest.approx(1.024e-05 * 1e9)


def test_zen2_dash_metric_and_not_separable() -> None:
    out = parse_likwid(
        fixture_text(D + "zen2_epyc7402_flops_sp_marker_ascii_paranoid_warnings.txt")
    )
    assert out.metric("saxpy!", "Clock [MHz]") is None
    assert out.metric("saxpy!", "SP [MFLOP/s]") == 3439.4605
    samples = {s.metric: s for s in samples_from_likwid(out)}
    assert samples[Metric.FP32_FLOP].value is None
    assert samples[Metric.FP32_FLOP].status is SampleStatus.NOT_SEPARABLE
    assert samples[Metric.FP_FLOP].value == 200000400


def test_inf_clock_is_kept() -> None:
    out = parse_likwid(fixture_text(D + "skylakesp_gold6148_flops_sp_marker_ascii_clock_inf.txt"))
    clock = out.metric("saxpy_cpu", "Clock [MHz]")
    assert clock is not None and math.isinf(clock)
    fp32 = next(s for s in samples_from_likwid(out) if s.metric is Metric.FP32_FLOP)
    assert fp32.value == 4805495 * 8 + 111


def test_threads_stat_and_app_stdout() -> None:
    text = fixture_text(
        D
        + "cascadelake_gold6246_flops_sp_marker_ascii_3threads_STAT_with_warnings_and_app_stdout.txt"
    )
    out = parse_likwid(text)
    metrics = out.table("saxpy_cpu!", TableKind.METRICS)
    assert metrics is not None and metrics.columns == ("HWThread 0", "HWThread 1", "HWThread 2")
    assert out.metric("saxpy_cpu!", "SP [MFLOP/s]", column=1) == 1003.3472
    stat = out.table("saxpy_cpu!", TableKind.EVENTS_STAT)
    assert stat is not None
    row = stat.row("CPU_CLK_UNHALTED_CORE STAT")
    assert row is not None and row.values[3] == 3.885536e08
    fp32 = next(s for s in samples_from_likwid(out) if s.metric is Metric.FP32_FLOP)
    assert fp32.value == 3 * 25000000 * 8  # summed over threads, STAT table not added


def test_likwid4_ascii_with_app_stdout() -> None:
    text = fixture_text(
        D + "sandybridgeep_e5-2670_flops_dp_marker_ascii_4regions_with_app_stdout.txt"
    )
    out = parse_likwid(text)
    assert out.regions()[0] == "eliminacaoDeGauss"
    assert len(out.regions()) == 4
    assert out.metric("eliminacaoDeGauss", "DP MFLOP/s") == 62.8505
    assert samples_from_likwid(out)[0].value == 134  # scalar double


def test_concatenated_runs_are_numbered() -> None:
    text = fixture_text(
        D + "zen3_epyc7763_flops_dp_marker_ascii_12runs_job_log_with_app_stdout.txt"
    )
    out = parse_likwid(text)
    runs = {t.run for t in out.tables}
    assert len(runs) == 12
    assert out.metric("MMUL_Region", "DP [MFLOP/s]", run=0) == 1742.2653


def test_mpirun_and_wrapper_layouts() -> None:
    mpi = parse_likwid(
        fixture_text(D + "zen2_rome_flops_dp_likwid-mpirun_region_table_with_app_stdout.txt")
    )
    assert mpi.metric("force", "DP [MFLOP/s]") == 2581.4121
    wrapper = parse_likwid(fixture_text(D + "avx512_intel_flops_dp_wrapper_ascii_noheader.txt"))
    assert wrapper.regions() == ("",)
    fp64 = samples_from_likwid(wrapper)[0]
    assert fp64.value == 1178 * 2 + 1426957 + 586 * 4 + 1884124 * 8


def test_header_only_and_gpu_regions() -> None:
    empty = parse_likwid(
        fixture_text(D + "skylake_i7-6500u_marker_mode_no_regions_header_only.txt")
    )
    assert empty.tables == () and empty.cpu_name == "Intel(R) Core(TM) i7-6500U CPU @ 2.50GHz"
    gpu = parse_likwid(
        fixture_text(
            D + "cascadelake_gold6246_flops_sp_marker_ascii_cpu_region_plus_gpu_region.txt"
        )
    )
    assert len(gpu.regions()) >= 1
    assert any("GPU 0" in t.columns for t in gpu.tables)


def _host(cpus: tuple[int, ...] = (0, 1, 2, 3)) -> HostInfo:
    return HostInfo(
        hostname="node",
        cpu_model="Intel(R) Xeon(R) Gold 6246 CPU @ 3.30GHz",
        cpu_vendor="GenuineIntel",
        cpu_family=6,
        cpu_model_number=85,
        logical_cpus=len(cpus),
        allowed_cpus=cpus,
        kernel="6.1",
        python="3.12",
    )


def _collect(tmp_path: Path, group: str, text: str) -> tuple[Sample, ...]:
    (tmp_path / f"likwid-{group}.csv").write_text(text, encoding="utf-8")
    job = Job(scratch=tmp_path, pass_name=group)
    return LikwidBackend(_host()).collect(job, "", "")


def test_wrapper_csv_flops_dp_through_the_backend(tmp_path: Path) -> None:
    # the layout `likwid-perfctr -O` writes without -m: TABLE,Group 1 Raw,FLOPS_DP,7
    text = fixture_text(D + "cascadelake_gold6246_flops_dp_wrapper_csv_likwid5_rendered.txt")
    out = parse_likwid(text)
    assert out.regions() == ("",)
    assert {t.group for t in out.tables} == {"FLOPS_DP"}
    assert out.metric("", "DP [MFLOP/s]") == 342.8031
    samples = {s.metric: s for s in _collect(tmp_path, "FLOPS_DP", text)}
    assert samples[Metric.FP64_FLOP].value == 26624000 * 8 + 1572


def test_wrapper_csv_three_threads_sums_threads_not_stat(tmp_path: Path) -> None:
    text = fixture_text(
        D + "cascadelake_gold6246_flops_sp_wrapper_csv_likwid5_3threads_STAT_rendered.txt"
    )
    out = parse_likwid(text)
    kinds = [t.kind for t in out.tables]
    assert kinds == [
        TableKind.EVENTS,
        TableKind.EVENTS_STAT,
        TableKind.METRICS,
        TableKind.METRICS_STAT,
    ]
    samples = {s.metric: s for s in _collect(tmp_path, "FLOPS_SP", text)}
    # three threads x 25e6 256-bit packed single (8 lanes); the STAT Sum row is not added again
    assert samples[Metric.FP32_FLOP].value == 3 * 25_000_000 * 8


def test_wrapper_csv_mem_volume(tmp_path: Path) -> None:
    text = fixture_text(D + "haswellep_e5-2697v3_mem_wrapper_csv_likwid4_rendered.txt")
    samples = {s.metric: s for s in _collect(tmp_path, "MEM", text)}
    assert samples[Metric.MEM_BYTES].value == pytest.approx(1.024e-05 * 1e9)


@pytest.mark.parametrize(
    ("group", "name"),
    [
        ("FLOPS_DP", "skylake_i7-6500u_marker_mode_no_regions_header_only.txt"),
        # a MEM pass whose file holds a FLOPS table: nothing for MEM in it
        ("MEM", "cascadelake_gold6246_flops_dp_wrapper_csv_likwid5_rendered.txt"),
    ],
)
def test_counters_that_parse_to_nothing_are_an_error(tmp_path: Path, group: str, name: str) -> None:
    with pytest.raises(BackendError, match=f"group {group}: no "):
        _collect(tmp_path, group, fixture_text(D + name))


def test_likwid_pins_as_many_cores_as_the_app_has_threads(tmp_path: Path) -> None:
    from hpcprof.apps.external import load_suite
    from hpcprof.run.config import RunConfig
    from hpcprof.run.tasks import suite_tasks

    suite = load_suite(Path(__file__).resolve().parents[2] / "hpcprof/suites/ecp_proxies.toml")
    tasks = {t.app: t for t in suite_tasks(suite, RunConfig())}
    assert tasks["xsbench"].threads == 4 and tasks["hpcg"].threads == 2  # 2 ranks x 1
    backend = LikwidBackend(_host(tuple(range(8))))
    cmd = backend.wrap(["./XSBench"], Job(scratch=tmp_path, pass_name="FLOPS_DP", threads=4))
    # before: -C 0 (the first allowed CPU) whatever the thread count
    assert cmd[cmd.index("-C") + 1] == "0,1,2,3"
    pinned = backend.wrap(["./a"], Job(scratch=tmp_path, pass_name="MEM", cpus=(5,), threads=4))
    assert pinned[pinned.index("-C") + 1] == "5"  # an explicit --cpus wins
    with pytest.raises(BackendError, match="runs 16 threads but only 8 CPUs"):
        backend.wrap(["./a"], Job(scratch=tmp_path, pass_name="MEM", threads=16))
    from hpcprof.results.records import RunStatus
    from hpcprof.run.runner import measure

    m = measure(replace(tasks["xsbench"], threads=16), backend, 0, None)
    assert m.status is RunStatus.LAUNCH_ERROR and "16 threads" in m.stderr_tail
