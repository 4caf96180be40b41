"""``prec-study`` end to end: options, outputs, failures (2 workers on synthetic data)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from training.config import RunConfig
from training.models import BatchNormMode

SMALL = ["--dataset", "synthetic", "--epochs", "2", "--batch-size", "64", "--lr", "0.1"]

pytestmark = pytest.mark.usefixtures("eager_kernel")

Cli = Callable[[list[str]], tuple[int, str]]
Killer = Callable[..., list[int]]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--bits", "0"], "bits=0"),
        (["run", "--workers", "0"], "workers=0"),
        (["run", "--dataset", "nope"], "--dataset"),
        (["run", "--model", "nope"], "--model"),
        (["run", "--optimizer", "nope"], "--optimizer"),
        (["run", "--rounding", "sideways"], "rounding"),
        (["run", "--format", "e9z9"], "--format"),
        (["run", "--bits", "4", "--format", "e4m3"], "not both"),
        (["run", "--batch-size", "33"], "divisible"),
        (["run", "--arms", "float32,bogus"], "bogus"),
        (["run", "--dataset", "mnist"], "--data-dir"),
        (["run", "--batchnorm", "ghost"], "ghost_batch_size"),
        (["run", "--batchnorm", "odd"], "--batchnorm"),
        (["run", "--loss-scale", "3"], "loss_scale=3.0"),
        (["run", "--loss-scale", "0"], "loss_scale=0.0"),
        (["run", "--decay", "linear"], "--decay"),
        (["run", "--optimizer", "adam"], "--optimizer"),
        (["sweep", "--bits", "4,x"], "--bits"),
        (["sweep", "--optimizers", "nope"], "--optimizers"),
        (["report", "/nonexistent/run"], "RUN_DIR"),
    ],
)
def test_bad_options_exit_2_with_one_error_line(
    cli: Cli, args: list[str], needle: str, tmp_path: Path
) -> None:
    code, out = cli([*args, *(["--output-dir", str(tmp_path)] if args[0] != "report" else [])])
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], out
    assert "Traceback" not in out


def test_report_of_a_directory_without_config_exits_2(cli: Cli, tmp_path: Path) -> None:
    code, out = cli(["report", str(tmp_path)])
    assert code == 2 and "config.json" in out


@pytest.mark.distributed
def test_run_three_arms_with_two_workers(cli: Cli, tmp_path: Path) -> None:
    code, out = cli(["run", "--bits", "4", *SMALL, "--output-dir", str(tmp_path)])
    assert code == 0, out
    (run_dir,) = tmp_path.iterdir()
    for name in ("config.json", "metrics.csv", "summary.md", "summary.csv", "accuracy.png"):
        assert (run_dir / name).exists(), name
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["arm"]) == ["float32", "e3m0", "e3m0-aps"]
    assert set(summary["status"]) == {"finished"}
    assert summary.loc[0, "test_acc"] > 0.8 and summary.loc[2, "test_acc"] > 0.8
    assert pd.isna(summary.loc[0, "flushed"]) and summary.loc[1, "flushed"] > 0
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert set(metrics["kind"]) == {"step", "epoch"}
    assert len(metrics[metrics["kind"] == "epoch"]) == 3 * 2
    assert "e3m0-aps" in out and "test acc" in out
    # the report command rebuilds the same table from the records
    (run_dir / "summary.csv").unlink()
    code, _ = cli(["report", str(run_dir)])
    assert code == 0 and (run_dir / "summary.csv").exists()


@pytest.mark.distributed
def test_huge_learning_rate_diverges_one_arm_and_the_next_goes_on(cli: Cli, tmp_path: Path) -> None:
    args = ["run", "--arms", "float32,aps", "--dataset", "synthetic", "--epochs", "1",
            "--batch-size", "64", "--lr", "1e30", "--output-dir", str(tmp_path)]  # fmt: skip
    code, out = cli(args)
    assert code == 0, out
    (run_dir,) = tmp_path.iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary.loc[0, "status"] == "diverged"
    assert summary.loc[1, "status"] in ("diverged", "finished")  # it ran after the first
    assert "diverged" in out


@pytest.mark.distributed
def test_a_killed_worker_fails_the_run_with_its_rank_and_the_run_resumes(
    cli: Cli, tmp_path: Path, kill_worker: Killer, procs: Any
) -> None:
    # Once the first epoch is checkpointed, SIGKILL rank 1 from outside (it is training epoch
    # 2 of 20 then); rank 0, blocked in a collective with it, must not hang the run.
    def rank_1_after_the_first_epoch() -> list[int]:
        if not any(tmp_path.glob("*/records/float32.json")):
            return []
        workers = procs.spawned_workers(os.getpid())
        return workers[1:] if len(workers) == 2 else []

    killed = kill_worker(rank_1_after_the_first_epoch)
    args = ["run", "--arms", "float32", "--dataset", "synthetic", "--epochs", "20",
            "--batch-size", "64", "--lr", "0.1", "--output-dir", str(tmp_path)]  # fmt: skip
    code, out = cli(args)
    assert len(killed) == 1, out
    assert code == 1
    assert "worker rank 1 failed: killed by signal SIGKILL" in out and "--resume" in out, out
    assert "Traceback" not in out
    (run_dir,) = tmp_path.iterdir()
    code, out = cli(["run", "--resume", str(run_dir), "--stop-after-epochs", "1"])
    assert code == 0, out
    record = json.loads((run_dir / "records" / "float32.json").read_text())
    assert record["status"] == "partial" and record["epochs_done"] >= 2


@pytest.mark.distributed
def test_sweep_is_resumable(cli: Cli, tmp_path: Path) -> None:
    args = ["sweep", "--bits", "4,32", "--aps", "on", "--batch-sizes", "64", "--lrs", "0.1",
            "--dataset", "synthetic", "--epochs", "1", "--output-dir", str(tmp_path)]  # fmt: skip
    code, out = cli(args)
    assert code == 0, out
    (root,) = tmp_path.iterdir()
    results = pd.read_csv(root / "results.csv")
    assert len(results) == 2 and set(results["status"]) == {"finished"}
    assert (root / "accuracy_vs_bits.png").exists() and (root / "accuracy_vs_batch.png").exists()
    code, out = cli(args)
    assert code == 0 and out.count("skipped") == 2, out


@pytest.mark.distributed
def test_synchronized_batchnorm_run_records_its_mode(cli: Cli, tmp_path: Path) -> None:
    code, out = cli(
        ["run", "--dataset", "synthetic", "--model", "cnn", "--batchnorm", "sync", "--epochs", "1",
         "--arms", "float32", "--output-dir", str(tmp_path)]
    )  # fmt: skip
    assert code == 0, out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert cfg.batchnorm is BatchNormMode.SYNC


@pytest.mark.distributed
def test_loss_scale_reaches_the_low_precision_reduction(cli: Cli, tmp_path: Path) -> None:
    """A static loss scale (the baseline APS is compared against) lifts small e3m0
    gradients over the underflow threshold: fewer flushed elements than without it."""
    flushed = {}
    for scale in ("1", "1024"):
        out_dir = tmp_path / scale
        code, out = cli(
            ["run", "--dataset", "synthetic", "--epochs", "1", "--bits", "4", "--arms", "plain",
             "--loss-scale", scale, "--output-dir", str(out_dir)]
        )  # fmt: skip
        assert code == 0, out
        (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
        cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        assert cfg.loss_scale == float(scale)
        flushed[scale] = float(pd.read_csv(run_dir / "summary.csv").loc[0, "flushed"])
    assert flushed["1024"] < flushed["1"]
