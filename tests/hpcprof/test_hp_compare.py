"""``hpcprof compare`` on a real (timer) run, and the CUDA code path where a GPU exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcprof.apps import APPS, Device
from hpcprof.apps.base import Region
from hpcprof.cli.main import main
from hpcprof.results.records import Precision


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(
        main,
        ["run", "--app", "triad", "--app", "gemm", "--app", "gemm-cuda", "--sizes", "small",
         "--backend", "timer", "-r", "1", "--warmup", "0", "--out", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def test_compare_prints_ratios_and_draws_roofline(run_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["compare", str(run_dir), "--machines", "knl-7250,knm-7295,h100"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "T(knm-7295)/T(knl-7250)" in out and "T(h100)/T(knl-7250)" in out
    triad = next(ln for ln in out.splitlines() if ln.startswith("| triad | float64 |"))
    assert "| memory |" in triad and "| 1.000 |" in triad  # STREAM: same MCDRAM bandwidth
    assert "Model: T = max(" in out and "Intel ARK" in out
    assert (run_dir / "roofline.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "compare.md").read_text() == out


def test_compare_measured_host_reports_fraction(run_dir: Path) -> None:
    from hpcprof.machines import hostpeak

    probe = hostpeak.PeakProbe(gemm_size=96, triad_size=100_000, repeats=1)
    host = hostpeak.measure_host(probe)
    assert host.peak(hostpeak.Peak.FP64) and host.memory().bandwidth_gbs > 0
    assert "measured" in host.source


def test_compare_unknown_machine_is_one_line(run_dir: Path) -> None:
    result = CliRunner().invoke(main, ["compare", str(run_dir), "--machines", "knl-7250,cray-1"])
    assert result.exit_code == 2 and "cray-1" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def test_cuda_app_on_cpu_only_host_is_a_recorded_failure(run_dir: Path) -> None:
    if _has_cuda():
        pytest.skip("a CUDA device exists; the GPU test covers this app")
    from hpcprof.results.store import read_run

    frame, _ = read_run(run_dir)
    rows = frame[frame["app"] == "gemm-cuda"]
    assert set(rows["status"]) == {"failed"}
    assert rows["stderr_tail"].str.contains("no CUDA device").all()


CUDA_APPS = [n for n, i in APPS.items() if i.device is Device.CUDA]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", [Precision.FLOAT64, Precision.FLOAT32], ids=lambda p: p.value)
@pytest.mark.parametrize("name", CUDA_APPS)
def test_cuda_kernels_self_check(name: str, precision: Precision) -> None:
    if not _has_cuda():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    info = APPS[name]
    assert info.kernel is not None
    region = Region()
    error = info.kernel(info.small_size, precision, region)
    assert error <= info.tolerance_for(precision), f"{name} {precision.value}: {error:.3e}"
    assert region.seconds is not None and region.seconds > 0
