"""``prec-study bits-needed``: option errors, and one tiny real search on the digits data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.usefixtures("eager_kernel")

Cli = Callable[[list[str]], tuple[int, str]]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--roles", "weight,bogus"], "role 'bogus'"),
        (["--tolerance", "-1"], "tolerance=-1"),
        (["--seeds", "0,x"], "--seeds"),
        (["--rounding", "nearest,sideways"], "sideways"),
        (["--rounding", "nearest,nearest"], "repeats"),
        (["--min-exponent", "6", "--max-exponent", "4"], "exponent range 6..4"),
        (["--max-mantissa", "60"], "max_mantissa=60"),
        (["--batch-size", "33"], "divisible"),
        (["--optimizer", "nope"], "--optimizer"),
        (["--executor", "mpi"], "--executor"),
        (["--slurm-partition", "gpu"], "needs --executor slurm"),
        (["--slurm-time", "0"], "--slurm-time"),
        (["--dataset", "mnist"], "--data-dir"),
    ],
)
def test_bad_options_exit_2_with_one_error_line(
    cli: Cli, args: list[str], needle: str, tmp_path: Path
) -> None:
    code, out = cli(["bits-needed", *args, "--output-dir", str(tmp_path)])
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], out
    assert "Traceback" not in out


def test_bits_needed_refuses_torchrun(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29500"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    code, out = cli(["bits-needed", "--output-dir", str(tmp_path)])
    assert code == 2 and "without torchrun" in out, out


def test_sweep_rejects_slurm_settings_without_slurm(cli: Cli, tmp_path: Path) -> None:
    code, out = cli(["sweep", "--slurm-partition", "x", "--output-dir", str(tmp_path)])
    assert code == 2 and "needs --executor slurm" in out, out


@pytest.mark.slow
def test_tiny_search_on_digits_then_a_rerun_trains_nothing(cli: Cli, tmp_path: Path) -> None:
    # One role, one exponent width, mantissa 0..1, a loose tolerance: baseline, e5m1, e5m0.
    args = ["bits-needed", "--roles", "weight", "--max-exponent", "5", "--min-exponent", "5",
            "--max-mantissa", "1", "--tolerance", "60", "--epochs", "1", "--workers", "1",
            "--device", "cpu", "--output-dir", str(tmp_path)]  # fmt: skip
    code, out = cli(args)
    assert code == 0, out
    (root,) = tmp_path.iterdir()
    assert root.name.startswith("bits-")
    points = pd.read_csv(root / "points.csv")
    assert set(points["status"]) == {"finished"}
    assert sorted(points["point"]) == ["float32-s0", "weight-e5m0-nearest__s0",
                                       "weight-e5m1-nearest__s0"]  # fmt: skip
    base = points[points["role"] == "float32"].iloc[0]
    assert base["accuracy"] > 0.5  # one epoch of the MLP on digits learns something
    assert list(points.columns[:9]) == ["role", "e", "m", "aps", "rounding", "seed",
                                        "accuracy", "loss", "status"]  # fmt: skip
    summary = (root / "summary.md").read_text()
    assert "- weight: e5m0 nearest" in summary and "weight: e5m0 nearest" in out
    assert (root / "heatmap-weight.png").stat().st_size > 1000
    trained = sorted(p.name for p in (root / "trained").iterdir())
    assert len(trained) == 3
    stamp = {p: p.stat().st_mtime_ns for p in (root / "points").iterdir()}
    code, again = cli(args)
    assert code == 0, again
    assert again.count("(cached)") == 3 and "finished\n" not in again.replace("(cached)", "")
    assert {p: p.stat().st_mtime_ns for p in (root / "points").iterdir()} == stamp
    # report rebuilds every file from the cached points alone
    (root / "summary.md").unlink()
    (root / "points.csv").unlink()
    code, rep = cli(["report", str(root)])
    assert code == 0 and "weight: e5m0 nearest" in rep, rep
    assert "- weight: e5m0 nearest" in (root / "summary.md").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(root / "points.csv"), points)
    # a point the search needs but that was never trained: one-line error, exit 2
    (root / "points" / "weight-e5m0-nearest__s0.json").unlink()
    code, rep = cli(["report", str(root)])
    assert code == 2 and "weight-e5m0-nearest__s0 is not trained yet" in rep, rep
