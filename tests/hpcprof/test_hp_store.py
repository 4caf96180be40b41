"""Store: tidy table round trip; missing stays NaN; every row names its backend."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hpcprof.results.records import Measurement, Metric, Precision, RunStatus, Sample, SampleStatus
from hpcprof.results.store import read_run, write_run
from hpcprof.run.host import collect_host


def test_round_trip_keeps_missing_as_nan(tmp_path: Path) -> None:
    m = Measurement(
        app="gemm",
        precision=Precision.FLOAT32,
        size=64,
        preset=None,
        repetition=0,
        status=RunStatus.OK,
        backend="perf",
        samples=(
            Sample(metric=Metric.WALL_S, value=0.5, backend="perf"),
            Sample(
                metric=Metric.FP64_FLOP,
                value=None,
                backend="perf",
                status=SampleStatus.NOT_SUPPORTED,
            ),
            Sample(metric=Metric.FP32_FLOP, value=0.0, backend="perf"),
        ),
    )
    directory = write_run(tmp_path, "r1", [m], {"backend": "perf"}, collect_host())
    frame, config = read_run(directory)
    assert config["run_id"] == "r1" and config["schema_version"] == 1
    assert (directory / "host.json").exists()
    fp64 = frame[frame["metric"] == "fp64_flop"].iloc[0]
    assert math.isnan(fp64["value"]) and fp64["sample_status"] == "not_supported"
    assert frame[frame["metric"] == "fp32_flop"]["value"].iloc[0] == 0.0  # a real zero stays 0
    assert set(frame["backend"]) == {"perf"}
    assert not list(directory.glob("*.tmp"))


def test_sample_rejects_value_with_missing_status() -> None:
    with pytest.raises(ValueError, match="has a value"):
        Sample(metric=Metric.FP64_FLOP, value=0.0, backend="perf", status=SampleStatus.NOT_COUNTED)


def test_sample_missing_has_no_value_and_needs_a_reason() -> None:
    s = Sample.missing(Metric.FOM, "app", SampleStatus.NOT_COUNTED, unit="GB/s", region="k")
    assert (s.value, s.status, s.unit, s.region) == (None, SampleStatus.NOT_COUNTED, "GB/s", "k")
    assert Sample.missing(Metric.WALL_S, "timer").status is SampleStatus.MISSING
    with pytest.raises(ValueError, match="status ok needs a value"):
        Sample.missing(Metric.WALL_S, "timer", SampleStatus.OK)
