"""CLI through click's CliRunner: list, backends, run (timer), report, bad options."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hpcprof.apps import APPS
from hpcprof.cli.main import main


def test_list_names_every_app() -> None:
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    for name in APPS:
        assert name in result.output
    kinds = {ln.split()[0]: ln.split()[1] for ln in result.output.strip().splitlines()}
    # before: gemm-cuda and triad-cuda were listed as numpy
    assert kinds["gemm-cuda"] == "torch/cuda" and kinds["triad-cuda"] == "torch/cuda"
    assert kinds["gemm"] == "numpy" and kinds["gemm-c"] == "c"


def test_backends_reports_each_with_reason() -> None:
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["likwid", "perf", "callgrind", "timer", "ncu"]
    assert any(ln.startswith("timer") and " yes " in ln for ln in lines)
    for ln in lines:
        assert len(ln.split(None, 2)) == 3  # every backend has a reason or detail


def test_run_timer_then_report(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "runs"
    result = runner.invoke(
        main,
        ["run", "--app", "triad", "--app", "gemm-c", "--sizes", "small", "--backend", "timer",
         "-r", "2", "--warmup", "0", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == out and (run_dir / "config.json").exists()
    report = runner.invoke(main, ["report", str(run_dir)])
    assert report.exit_code == 0, report.output
    assert "| triad | float64 |" in report.output and "| gemm-c | float32 |" in report.output
    assert "analytic" in report.output
    assert (run_dir / "report.md").exists()
    assert (run_dir / "fp64_share.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_option_is_one_line_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (
        ["run", "--app", "nosuch", "--out", str(tmp_path)],
        ["run", "--size", "gemm=abc", "--out", str(tmp_path)],
        ["run", "--backend", "magic"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


def test_malformed_suite_is_one_line_exit_2(tmp_path: Path) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text('[[app]]\nname = "a"\ncommand = "not a list"\n')
    result = CliRunner().invoke(main, ["run", "--suite", str(suite), "--out", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(suite) in lines[0] and "command" in lines[0]
