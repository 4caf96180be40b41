"""Launchers (argument lists), node names in records, and a real local Slurm submission."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from hpcprof.errors import LaunchError
from hpcprof.results.records import Precision
from hpcprof.results.store import read_run
from hpcprof.run.config import RunConfig, SizeScale
from hpcprof.run.launchers import Launcher, LauncherKind


def test_launchers_wrap_argument_lists() -> None:
    cmd = ["./app", "--n", "10"]
    assert Launcher().wrap(cmd) == cmd
    assert Launcher(kind=LauncherKind.MPIRUN, ranks=4).wrap(cmd) == ["mpirun", "-np", "4", *cmd]
    srun = Launcher(kind=LauncherKind.SRUN, ranks=2, extra_args=("--exclusive",))
    assert srun.wrap(cmd) == ["srun", "--ntasks=2", "--exclusive", *cmd]
    with pytest.raises(ValueError, match="ranks"):
        Launcher(kind=LauncherKind.MPIRUN, ranks=0)
    with pytest.raises(ValueError, match="local"):
        RunConfig(ranks=2)


def test_missing_launcher_program_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LaunchError, match="mpirun not found"):
        Launcher(kind=LauncherKind.MPIRUN, ranks=2).check()


def test_submit_without_submitit_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcprof.run.slurm import SlurmConfig, submit_study

    monkeypatch.setitem(sys.modules, "submitit", None)  # import now raises ImportError
    with pytest.raises(LaunchError, match=r"submitit>=1\.5"):
        submit_study(RunConfig(apps=("triad",)), SlurmConfig())


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize("array", [False, True], ids=["per-app", "array"])
def test_slurm_suite_gathers_one_run(
    local_slurm: dict[str, str], tmp_path: Path, array: bool
) -> None:
    pytest.importorskip("submitit", reason="submitit not installed (optional extra 'slurm')")
    from hpcprof.run.slurm import SlurmConfig, submit_study

    config = RunConfig(
        apps=("triad", "gemm"),
        precisions=(Precision.FLOAT64,),
        scale=SizeScale.SMALL,
        backend="timer",
        repetitions=1,
        warmup=0,
        out_dir=str(tmp_path),
    )
    run_dir = submit_study(config, SlurmConfig(time_min=5, array=array))
    frame, saved = read_run(run_dir)
    assert set(frame["app"]) == {"triad", "gemm"}
    assert set(frame["status"]) == {"ok"}, frame[["app", "status", "stderr_tail"]]
    assert set(frame["node"]) == {socket.gethostname()}
    assert set(saved["slurm"]["jobs"]) == {"triad", "gemm"}
    assert saved["slurm"]["array"] is array
