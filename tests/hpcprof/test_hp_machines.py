"""Machine models, roofline math on hand-checked numbers, KNL -> KNM predictions, TOML files."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hpcprof.analysis.predict import Bound, Width, Work, attainable, ceiling, predict, time_ratio
from hpcprof.apps import APPS
from hpcprof.cli.main import main
from hpcprof.errors import MachineFileError, UnknownNameError
from hpcprof.machines.data import MACHINES
from hpcprof.machines.model import Machine, MachineKind, Memory, MemoryKind, Peak, load_machines

KNL, KNM = MACHINES["knl-7250"], MACHINES["knm-7295"]


def _toy(peak64: float = 100.0, peak32: float = 200.0, bw: float = 50.0) -> Machine:
    return Machine(
        name="toy",
        label="toy",
        kind=MachineKind.CPU,
        cores=1,
        clock_ghz=1.0,
        peaks=((Peak.FP64, peak64), (Peak.FP32, peak32)),
        memories=(Memory(kind=MemoryKind.DDR, bandwidth_gbs=bw),),
        source="test",
    )


def test_builtin_machines_have_sources_and_required_entries() -> None:
    for name in ("knl-7210", "knl-7250", "knm-7295", "skx-8160", "zen4-9654", "a100", "h100",
                 "h200"):  # fmt: skip
        m = MACHINES[name]
        assert m.source and m.peak(Peak.FP64) and m.peak(Peak.FP32)
    for gpu in ("a100", "h100", "h200"):
        m = MACHINES[gpu]
        assert m.kind is MachineKind.GPU and m.memory().kind is MemoryKind.HBM
        for p in Peak:
            special = p in (Peak.FP32_4FMAPS, Peak.BF16_DOT)
            assert (m.peak(p) is None) is special, (gpu, p)
    with pytest.raises(UnknownNameError, match="knl-7250"):
        MACHINES["knl-9999"]


def test_knm_derivation_from_flop_per_cycle() -> None:
    # 72 cores x 1.5 GHz x 16 FP64 / 64 FP32 (plain FMA) / 128 FP32 (4FMAPS) FLOP per
    # cycle; KNL 68 x 1.4 x 32 / 64.
    assert KNM.peak(Peak.FP64) == pytest.approx(1728.0)
    # before: 13824 (the 4FMAPS figure) was the FP32 peak of every code
    assert KNM.peak(Peak.FP32) == pytest.approx(6912.0)
    assert KNM.peak(Peak.FP32_4FMAPS) == pytest.approx(13824.0)
    assert ceiling(KNM, Width.FP32) == pytest.approx(6912.0)
    assert ceiling(KNM, Width.FP32, matrix=True) == pytest.approx(13824.0)
    assert "4FMAPS" in KNM.source
    assert KNL.peak(Peak.FP64) == pytest.approx(3046.4)
    fp64_ratio = KNL.peak(Peak.FP64) / KNM.peak(Peak.FP64)  # type: ignore[operator]
    assert 1.7 < fp64_ratio < 1.8
    assert KNM.peak(Peak.FP32) > KNL.peak(Peak.FP32)  # type: ignore[operator]


def test_roofline_hand_checked() -> None:
    toy = _toy()  # ridge points: FP64 at 2 FLOP/byte, FP32 at 4
    assert attainable(toy, Width.FP64, 1.0) == 50.0
    assert attainable(toy, Width.FP64, 2.0) == 100.0
    assert attainable(toy, Width.FP64, 10.0) == 100.0
    assert attainable(toy, Width.FP32, 3.0) == 150.0
    assert ceiling(toy, Width.FP16) == 200.0  # no FP16 unit: FP32 rate
    # 1e9 FP64 + 2e9 FP32 FLOPs, 1e9 bytes: compute 0.01 + 0.01 s, memory 0.02 s
    pred = predict(Work(fp64_flop=1e9, fp32_flop=2e9, bytes_moved=1e9), toy)
    assert pred.compute_s == pytest.approx(0.02) and pred.memory_s == pytest.approx(0.02)
    assert pred.seconds == pytest.approx(0.02)
    memory = predict(Work(fp64_flop=1e9, bytes_moved=4e9), toy)
    assert memory.bound is Bound.MEMORY and memory.seconds == pytest.approx(0.08)
    compute = predict(Work(fp64_flop=1e10, bytes_moved=1e9), toy)
    assert compute.bound is Bound.COMPUTE and compute.seconds == pytest.approx(0.1)


def _work(app: str, size: int, itemsize: int) -> Work:
    info = APPS[app]
    flops = info.flops(size)
    return Work(
        fp64_flop=flops if itemsize == 8 else 0.0,
        fp32_flop=flops if itemsize == 4 else 0.0,
        bytes_moved=info.bytes_moved(size, itemsize),
    )


def test_knl_to_knm_stream_is_one_and_gemm_is_fp64_peak_ratio() -> None:
    stream = _work("triad", APPS["triad"].default_size, 8)
    assert predict(stream, KNL).bound is Bound.MEMORY
    assert time_ratio(stream, KNL, KNM) == pytest.approx(1.0, rel=0.05)
    gemm = _work("gemm", APPS["gemm"].default_size, 8)
    assert predict(gemm, KNL).bound is Bound.COMPUTE
    expected = KNL.peak(Peak.FP64) / KNM.peak(Peak.FP64)  # type: ignore[operator]
    assert time_ratio(gemm, KNL, KNM) == pytest.approx(expected)
    gemm32 = _work("gemm", APPS["gemm"].default_size, 4)
    assert time_ratio(gemm32, KNL, KNM) == pytest.approx(6092.8 / 6912.0)  # plain FMA
    assert time_ratio(gemm32, KNL, KNM, matrix=True) == pytest.approx(6092.8 / 13824.0)


def test_knl_7210_is_the_default_and_changes_memory_bound_ratios() -> None:
    knl7210 = MACHINES["knl-7210"]
    stream = _work("triad", APPS["triad"].default_size, 8)
    # MCDRAM 400 GB/s (6.4 GT/s) on the 7210 against 450 on the KNM 7295
    assert time_ratio(stream, knl7210, KNM) == pytest.approx(400.0 / 450.0)
    compare = next(p for p in main.commands["compare"].params if p.name == "names")
    assert compare.default == "knl-7210,knm-7295"


def test_zen4_has_a_bf16_dot_peak_not_an_fp16_one() -> None:
    zen4 = MACHINES["zen4-9654"]
    assert zen4.peak(Peak.FP16) is None  # before: the BF16 dot-product rate, named FP16
    assert zen4.peak(Peak.BF16_DOT) == pytest.approx(96 * 2.4 * 64)
    assert ceiling(zen4, Width.FP16) == zen4.peak(Peak.FP32)
    assert ceiling(zen4, Width.FP16, matrix=True) == zen4.peak(Peak.BF16_DOT)


def test_capacities_are_gb_and_gib_files_are_converted(tmp_path: Path) -> None:
    assert MACHINES["h200"].memory().capacity_gb == 141  # the datasheet's "141GB"
    path = tmp_path / "m.toml"
    path.write_text(
        '[[machine]]\nname = "box"\nmemory = [ { kind = "ddr", bandwidth_gbs = 51.2, '
        "capacity_gib = 64 } ]\n",
        encoding="utf-8",
    )
    (box,) = load_machines(path)
    assert box.memory().capacity_gb == pytest.approx(64 * 2**30 / 1e9)


def test_matrix_units_only_when_asked() -> None:
    a100 = MACHINES["a100"]
    assert ceiling(a100, Width.FP64) == 9700.0
    assert ceiling(a100, Width.FP64, matrix=True) == 19500.0
    assert attainable(KNL, Width.FP64, 1.0, memory=MemoryKind.DDR) == pytest.approx(115.2)


@given(
    fp64=st.floats(0, 1e15),
    fp32=st.floats(0, 1e15),
    nbytes=st.floats(1, 1e15),
    scale=st.floats(1.01, 100),
)
def test_prediction_is_max_of_terms_and_monotone(
    fp64: float, fp32: float, nbytes: float, scale: float
) -> None:
    toy = _toy()
    work = Work(fp64_flop=fp64, fp32_flop=fp32, bytes_moved=nbytes)
    pred = predict(work, toy)
    assert pred.seconds == max(pred.compute_s or 0.0, pred.memory_s)
    faster = predict(work, _toy(100.0 * scale, 200.0 * scale, 50.0 * scale))
    assert faster.seconds is not None and pred.seconds is not None
    assert faster.seconds <= pred.seconds * (1 + 1e-12)


def test_load_machines_file(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[[machine]]\nname = "box"\nkind = "cpu"\ncores = 8\nclock_ghz = 3.0\n'
        'source = "spec sheet"\npeak_gflops = { fp64 = 384.0, fp32 = 768.0 }\n'
        'memory = [ { kind = "ddr", bandwidth_gbs = 51.2, capacity_gib = 64 } ]\n'
    )
    (box,) = load_machines(path)
    assert box.peak(Peak.FP64) == 384.0 and box.memory().bandwidth_gbs == 51.2
    assert "spec sheet" in box.source
    merged = MACHINES.merged([box])
    assert "box" in merged and "knl-7250" in merged


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("not toml [", "not valid TOML"),
        ("[[machine]]\nname = 'a b'\n", "name"),
        ("[[machine]]\nname = 'x'\nmemory = []\n", "memory"),
        ("[[machine]]\nname = 'x'\npeak_gflops = { fp128 = 1 }\nmemory = [{kind='ddr', "
         "bandwidth_gbs=1}]\n", "fp128"),
        ("[[machine]]\nname = 'x'\npeak_gflops = { fp64 = -1 }\nmemory = [{kind='ddr', "
         "bandwidth_gbs=1}]\n", "positive"),
        ("[[machine]]\nname = 'x'\nmemory = [{kind='sram', bandwidth_gbs=1}]\n", "sram"),
        ("[[machine]]\nname = 'x'\ncolor = 'red'\nmemory = [{kind='ddr', bandwidth_gbs=1}]\n",
         "color"),
        ("[other]\n", "other"),
    ],
)  # fmt: skip
def test_machines_file_errors_are_one_line(tmp_path: Path, body: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(MachineFileError, match=needle):
        load_machines(path)
    result = CliRunner().invoke(main, ["machines", "--machines-file", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in result.output


def test_missing_machines_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["machines", "--machines-file", str(tmp_path / "no.toml")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
