"""``--executor slurm`` on a real single-node Slurm on localhost (munged, slurmctld, slurmd).

The daemons come from Debian's slurm-wlm and munge packages (``.ci/run`` installs them);
where they cannot start (not installed, not root) the tests skip with the reason.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from training.cli import main

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The throwaway Slurm of the hpcprof tests, for this module."""
    pytest.importorskip("submitit", reason="submitit not installed (optional extra 'slurm')")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hpcprof"))
    from slurm_local import running_slurm

    with running_slurm(tmp_path_factory.mktemp("slurm")) as env:
        yield env


@pytest.fixture(autouse=True)
def _job_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Jobs inherit the submitting environment (sbatch --export=ALL): the eager kernel and
    # this checkout on the path.
    monkeypatch.setenv("PRECISION_KERNEL", "eager")
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


def test_sweep_job_array_gathers_cells_and_records_a_cell_that_fails_twice(
    local_slurm: dict[str, str], tmp_path: Path, kill_worker: Any, procs: Any
) -> None:
    # The batch-64 cell's task is SIGKILLed once its first epoch is checkpointed, and its
    # resubmitted task as soon as it starts; the batch-256 cell finishes.
    cell = "float32-bs64-sgd-lr0.1-s0"
    cells: dict[int, str | None] = {}

    def cell_of(pid: int) -> str | None:
        """The cell a submitit task process trains, from the job's pickled submission."""
        if pid not in cells:
            argv, env = procs.cmdline(pid), procs.environ(pid)
            if "submitit.core._submit" not in argv or "python" not in Path(argv[0]).name:
                return None  # not (yet) the task's Python process: look again next time
            task = env.get("SLURM_ARRAY_TASK_ID")
            job = f"{env['SLURM_ARRAY_JOB_ID']}_{task}" if task else env["SLURM_JOB_ID"]
            (pkl,) = tmp_path.glob(f"sweep-*/slurm/{job}_submitted.pkl")
            cells[pid] = pickle.loads(pkl.read_bytes()).args[0].arms[0].name
        return cells[pid]

    def bs64_task() -> list[int]:
        if not any(tmp_path.glob(f"sweep-*/records/{cell}.json")):
            return []
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        return [pid for pid in pids if cell_of(pid) == cell]

    killed = kill_worker(bs64_task, times=2)
    args = ["sweep", "--bits", "32", "--batch-sizes", "64,256", "--lrs", "0.1", "--dataset",
            "synthetic", "--epochs", "30", "--workers", "1", "--device", "cpu",
            "--executor", "slurm", "--slurm-time", "5", "--output-dir", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(killed) == 2, result.output
    (root,) = [p for p in tmp_path.iterdir() if p.name.startswith("sweep-")]
    results = pd.read_csv(root / "results.csv").set_index("batch_size")
    assert results.loc[256, "status"] == "finished"
    assert results.loc[64, "status"] == "partial"  # its first epoch is kept
    failed = json.loads((root / "failed.json").read_text())
    assert list(failed) == ["float32-bs64-sgd-lr0.1-s0"]
    assert "attempt 2" in failed["float32-bs64-sgd-lr0.1-s0"]
    assert "failed: float32-bs64" in result.output
    # 2 cells, then the failed one resubmitted once: three tasks in all
    assert len(result.output.split("(jobs ")[1].split(")")[0].split(", ")) == 3


def test_bits_needed_on_slurm_matches_the_local_search(
    local_slurm: dict[str, str], tmp_path: Path
) -> None:
    common = ["bits-needed", "--roles", "grad-comm", "--aps", "on", "--max-exponent", "3",
              "--min-exponent", "3", "--max-mantissa", "0", "--tolerance", "100",
              "--dataset", "synthetic", "--epochs", "1", "--workers", "1", "--device", "cpu"]  # fmt: skip
    on_slurm = CliRunner().invoke(
        main, [*common, "--executor", "slurm", "--output-dir", str(tmp_path / "s")]
    )
    assert on_slurm.exit_code == 0, on_slurm.output
    local = CliRunner().invoke(main, [*common, "--output-dir", str(tmp_path / "l")])
    assert local.exit_code == 0, local.output
    (s_root,) = (tmp_path / "s").iterdir()
    (l_root,) = (tmp_path / "l").iterdir()
    assert s_root.name == l_root.name  # same settings, same run id
    a = pd.read_csv(s_root / "points.csv")
    b = pd.read_csv(l_root / "points.csv")
    assert list(a["point"]) == ["float32-s0", "grad-comm-e3m0-aps-nearest__s0"]
    pd.testing.assert_frame_equal(a, b)  # the same runs, bit for bit, wherever they trained
    assert any((s_root / "slurm").glob("*_log.out"))
