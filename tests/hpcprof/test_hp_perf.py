"""perf stat parsers on captured output (CSV interval mode, plain text, comma locale)."""

from __future__ import annotations

import pytest
from hp_data import fixture_text

from hpcprof.backends.perf import PerfCount, flops_from_counts, parse_perf_csv, parse_perf_text
from hpcprof.results.records import Metric, SampleStatus

D = "perf-stat/"


def test_csv_interval_with_cgroup_all_widths() -> None:
    counts = parse_perf_csv(
        fixture_text(
            D
            + "intel_avx512_interval_-I1000_-x_cgroup_-G_fp_arith_all_widths_multiplexed_EXCERPT_12_lines.txt"
        )
    )
    assert len(counts) == 12
    sd = next(c for c in counts if c.event == "fp_arith_inst_retired.scalar_double")
    assert sd.value == 6335375 and sd.interval == pytest.approx(1.002481419)
    assert sd.coverage == pytest.approx(0.3422)
    samples = {s.metric: s for s in flops_from_counts(counts)}
    assert samples[Metric.FP64_FLOP].value == 6335375
    assert samples[Metric.FP32_FLOP].value == 0
    assert samples[Metric.FP64_FLOP].coverage == pytest.approx(0.3279, abs=1e-4)


def test_csv_interval_without_cgroup_and_modifier() -> None:
    counts = parse_perf_csv(
        fixture_text(
            D
            + "intel_server_interval_-I_-x_csv_cgroup_era_fp_arith_scalar_double_EXCERPT_5_lines.txt"
        )
    )
    assert [c.event for c in counts][2] == "fp_arith_inst_retired.scalar_double:u"
    assert counts[2].coverage == pytest.approx(1.0)
    samples = {s.metric: s for s in flops_from_counts(counts)}
    assert samples[Metric.FP64_FLOP].value == 111710950
    assert samples[Metric.FP32_FLOP].value is None
    assert samples[Metric.FP32_FLOP].status is SampleStatus.MISSING


def test_not_counted_and_not_supported_are_none() -> None:
    text = "<not supported>,,fp_arith_inst_retired.scalar_double,0,100.00,,\n<not counted>,,fp_arith_inst_retired.scalar_single,0,0.00,,\n"
    counts = parse_perf_csv(text)
    assert [c.status for c in counts] == [SampleStatus.NOT_SUPPORTED, SampleStatus.NOT_COUNTED]
    samples = {s.metric: s for s in flops_from_counts(counts)}
    assert samples[Metric.FP64_FLOP].value is None
    assert samples[Metric.FP64_FLOP].status is SampleStatus.NOT_SUPPORTED
    assert samples[Metric.FP32_FLOP].status is SampleStatus.NOT_COUNTED


def test_text_comma_decimal_locale_and_hybrid_pmus() -> None:
    (run,) = parse_perf_text(
        fixture_text(D + "intel_hybrid_cpu_core_atom_de_locale_multiplexed_-o_file.txt")
    )
    assert run.command == "bin/main 3000 3000 3000 perf"
    atom = next(c for c in run.counts if c.event == "cpu_atom/cycles/")
    assert atom.value == 3642649330 and atom.coverage == pytest.approx(0.0068)
    task = next(c for c in run.counts if c.event == "task-clock")
    assert task.value == pytest.approx(1101.01) and task.unit == "msec"
    assert run.elapsed_s == pytest.approx(1.101976138)
    assert run.user_s == pytest.approx(1.022897)


def test_text_metric_continuation_line_ignored() -> None:
    (run,) = parse_perf_text(
        fixture_text(D + "default_events_-o_file_with_metric_continuation_line.txt")
    )
    events = [c.event for c in run.counts]
    assert events == [
        "task-clock", "context-switches", "cpu-migrations", "page-faults", "cycles",
        "stalled-cycles-frontend", "instructions", "branches", "branch-misses",
    ]  # fmt: skip
    assert run.counts[6].value == 49678248668
    assert run.sys_s == pytest.approx(0.220986)


def test_text_appended_runs() -> None:
    runs = parse_perf_text(
        fixture_text(D + "appended_multiple_runs_-o_--append_tlb_pagefault_events.txt")
    )
    assert len(runs) == 11
    assert runs[10].command == "./test 10 3 0"
    assert runs[10].counts[0].value == 35231116
    assert runs[0].elapsed_s == pytest.approx(8.830057942)


def test_not_separable_reports_combined() -> None:
    counts = [PerfCount(event="fp_ret_sse_avx_ops.all", value=1000.0)]
    samples = {s.metric: s for s in flops_from_counts(counts, separable=False)}
    assert samples[Metric.FP64_FLOP].status is SampleStatus.NOT_SEPARABLE
    assert samples[Metric.FP_FLOP].value == 1000.0
