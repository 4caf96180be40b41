"""Nsight Compute parsers on real captured output (text and --csv), and FLOP arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
from hp_data import fixture_text

from hpcprof.backends.base import Job
from hpcprof.backends.ncu import (
    NcuBackend,
    parse_ncu,
    parse_ncu_csv,
    parse_ncu_text,
    parse_query_metrics,
    scale,
    totals,
)
from hpcprof.errors import ParseError
from hpcprof.results.records import Metric, SampleStatus
from hpcprof.run.host import collect_host

TEXT = "ncu/ncu_text_sol_launch_occupancy_plus_metrics_ffma_dram_g2bmm_origin.txt"
CSV = "ncu/nv-nsight-cu-cli_2020_csv_ffma_v100_tf_EXCERPT_first_19_rows.txt"


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("5,122,560,000", "inst", 5_122_560_000.0),
        ("20.96", "Mbyte", 20.96e6),
        ("19.75", "Gbyte", 19.75e9),
        ("65.54", "Kbyte", 65540.0),
        ("13.26", "msecond", 0.01326),
        ("1.21", "cycle/nsecond", 1.21),
        ("667", "", 667.0),
        ("n/a", "inst", None),
    ],
)
def test_scale_units_and_separators(value: str, unit: str, expected: float | None) -> None:
    got = scale(value, unit)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_text_report_two_kernels_metrics_section() -> None:
    kernels = parse_ncu_text(fixture_text(TEXT))
    assert len(kernels) == 2  # a default-sections run and a metrics run of the same kernel
    name = "infini::sg2bmm_bs1_n10000_m64_w1000_d4_kernel0_tvm10(float*, float*, float*)"
    assert all(k.kernel == name for k in kernels)
    first, second = kernels
    assert first.values["Duration"] == pytest.approx(13.26e-3)
    assert first.values["Block Size"] == 667
    assert first.values["Threads"] == 1_334_000
    # smsp__ spelling is stored under the sm__ name
    ffma = "sm__sass_thread_inst_executed_op_ffma_pred_on.sum"
    assert second.values[ffma] == 5_122_560_000
    assert second.values["dram__bytes_write.sum"] == pytest.approx(311.37e6)
    assert "OK" not in first.values and "WRN" not in first.values  # rule text skipped


def test_text_totals_fma_counts_two_and_missing_widths_are_none() -> None:
    samples = {s.metric: s for s in totals(parse_ncu(fixture_text(TEXT)))}
    assert samples[Metric.FP32_FLOP].value == 2 * 5_122_560_000
    assert samples[Metric.MEM_BYTES].value == pytest.approx(20.96e6 + 311.37e6)
    for metric in (Metric.FP64_FLOP, Metric.FP16_FLOP):
        assert samples[metric].value is None
        assert samples[metric].status is SampleStatus.MISSING


def test_csv_kernel_names_with_commas_and_zero_counts() -> None:
    text = fixture_text(CSV)
    kernels = parse_ncu_csv(text)
    assert len(kernels) == 19
    assert kernels[3].kernel.startswith(
        "void tensorflow::functor::SwapDimension1And2InTensor3UsingTiles<unsigned short, 256,"
    )
    assert all(k.values == {"sm__sass_thread_inst_executed_op_ffma_pred_on.sum": 0.0}
               for k in kernels)  # fmt: skip
    samples = {s.metric: s for s in totals(kernels)}
    assert samples[Metric.FP32_FLOP].value == 0.0  # counted zero, not missing
    assert samples[Metric.FP64_FLOP].status is SampleStatus.MISSING
    assert parse_ncu(text) == kernels


def test_csv_with_units_and_thousands() -> None:
    text = (
        "==PROF== Connected to process 1\n"
        '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
        '"Section Name","Metric Name","Metric Unit","Metric Value"\n'
        '"0","1","p","h","k(double*, int)","1","7","Command line profiler metrics",'
        '"sm__sass_thread_inst_executed_op_dfma_pred_on.sum","inst","1,000"\n'
        '"0","1","p","h","k(double*, int)","1","7","Command line profiler metrics",'
        '"sm__sass_thread_inst_executed_op_dadd_pred_on.sum","inst","10"\n'
        '"0","1","p","h","k(double*, int)","1","7","Command line profiler metrics",'
        '"dram__bytes_read.sum","Kbyte","2.5"\n'
        "app output line\n"
    )
    samples = {s.metric: s.value for s in totals(parse_ncu_csv(text))}
    assert samples[Metric.FP64_FLOP] == 2010.0
    assert samples[Metric.MEM_BYTES] == 2500.0


@pytest.mark.parametrize("text", ["", "no header here\n", "==PROF== nothing profiled\n"])
def test_unparseable_output_raises(text: str) -> None:
    with pytest.raises(ParseError):
        parse_ncu(text)


def test_backend_says_why_when_unavailable() -> None:
    avail = NcuBackend(collect_host()).available()
    assert avail.detail  # a version, or the reason it cannot run
    if not avail.ok:
        assert "ncu" in avail.detail or "GPU" in avail.detail


def _with_rows(text: str, kernel_id: str, rows: dict[str, str]) -> str:
    """The captured CSV with more metric rows for one kernel, each a copy of that kernel's
    captured row with only the metric name, unit and value changed (same quoting, same
    columns), as ncu writes one row per kernel and metric."""
    lines = text.splitlines()
    row = next(ln for ln in lines if ln.startswith(f'"{kernel_id}",'))
    tail = '"sm__sass_thread_inst_executed_op_ffma_pred_on.sum","inst","0"'
    assert row.endswith(tail)
    extra = [row[: -len(tail)] + f'"{name}","inst","{value}"' for name, value in rows.items()]
    return "\n".join([*lines, *extra]) + "\n"


def test_tensor_core_flops_are_added_to_their_width() -> None:
    text = _with_rows(
        fixture_text(CSV),
        "0",
        {
            "sm__sass_thread_inst_executed_op_dfma_pred_on.sum": "10",
            "sm__ops_path_tensor_src_fp64.sum": "4,096",  # 8 DMMA.884 warp ops x 256 MACs x 2
            "sm__ops_path_tensor_src_fp16_dst_fp32.sum": "8192",
            "sm__ops_path_tensor_src_bf16_dst_fp32.sum": "1024",
        },
    )
    requested = frozenset(
        {
            "sm__ops_path_tensor_src_fp64.sum",
            "sm__ops_path_tensor_src_fp16_dst_fp32.sum",
            "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
        }
    )
    samples = {s.metric: s for s in totals(parse_ncu(text), tensor=requested)}
    # before: DMMA/HMMA work was not counted at all (FP64 = 20)
    assert samples[Metric.FP64_FLOP].value == 2 * 10 + 4096
    assert samples[Metric.FP64_TENSOR_FLOP].value == 4096
    assert samples[Metric.FP16_TENSOR_FLOP].value == 8192 + 1024
    # no TF32 metric on this GPU: said so, not 0
    assert samples[Metric.FP32_TENSOR_FLOP].status is SampleStatus.NOT_SUPPORTED
    assert samples[Metric.FP32_FLOP].value == 0.0


def test_gpu_without_tensor_metrics_records_not_supported() -> None:
    samples = {s.metric: s for s in totals(parse_ncu(fixture_text(TEXT)), tensor=frozenset())}
    assert samples[Metric.FP32_FLOP].value == 2 * 5_122_560_000  # CUDA-core count unchanged
    for part in (Metric.FP64_TENSOR_FLOP, Metric.FP32_TENSOR_FLOP, Metric.FP16_TENSOR_FLOP):
        assert samples[part].status is SampleStatus.NOT_SUPPORTED
    unknown = {s.metric: s for s in totals(parse_ncu(fixture_text(TEXT)))}
    assert unknown[Metric.FP64_TENSOR_FLOP].status is SampleStatus.MISSING  # not queried


def test_query_metrics_listing_and_requested_metrics(tmp_path: Path) -> None:
    listing = (
        "Device NVIDIA A100-SXM4-40GB (GA100)\n"
        "--------------------------------------------------------------------------\n"
        "Metric Name                               Metric Description\n"
        "dram__bytes_read                          # of bytes read from DRAM\n"
        "sm__ops_path_tensor_src_fp64              # of math ops executed in the tensor path\n"
        "sm__ops_path_tensor_src_fp16_dst_fp32     # of math ops executed in the tensor path\n"
    )
    names = parse_query_metrics(listing)
    assert "sm__ops_path_tensor_src_fp64" in names and "Device" not in names
    backend = NcuBackend(collect_host())
    backend._tensor = frozenset({"sm__ops_path_tensor_src_fp64.sum"})
    cmd = backend.wrap(["./app"], Job(scratch=tmp_path))
    metrics = cmd[cmd.index("--metrics") + 1].split(",")
    assert "sm__ops_path_tensor_src_fp64.sum" in metrics
    assert "sm__ops_path_tensor_src_tf32_dst_fp32.sum" not in metrics  # not on this GPU
