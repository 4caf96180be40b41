"""Checkpoint and resume: an interrupted run continues bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from precision.registry import from_bits
from training.cli import main
from training.config import RunConfig
from training.loop import run_study
from training.records import ArmRecord, ArmStatus, RunPaths, load_checkpoint
from training.sweep import three_arms

pytestmark = pytest.mark.distributed


@pytest.fixture(autouse=True)
def _eager_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECISION_KERNEL", "eager")


def _without_times(rec: ArmRecord) -> tuple[object, ...]:
    steps = [(s.step, s.lr, s.train_loss, s.train_acc, s.flushed, s.overflow) for s in rec.steps]
    epochs = [(e.epoch, e.train_loss, e.test_loss, e.test_acc, e.flushed) for e in rec.epochs]
    return rec.status, tuple(steps), tuple(epochs)


def test_stop_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    arms = three_arms(from_bits(4), batch_size=64, optimizer="sgd", lr=0.1, seed=2,
                      which=("float32", "aps"))  # fmt: skip
    # Stochastic rounding: the resumed run must also continue the rounding stream.
    cfg = RunConfig(arms=arms, dataset="synthetic", epochs=2, workers=2, device="cpu",
                    rounding="stochastic", warmup_epochs=0.5)  # fmt: skip
    full = run_study(cfg, tmp_path / "full")
    first = run_study(cfg, tmp_path / "split", stop_after_epochs=1)
    assert [r.status for r in first] == [ArmStatus.PARTIAL] * 2
    assert [r.epochs_done for r in first] == [1, 1]
    resumed = run_study(RunConfig.load(tmp_path / "split" / "config.json"), tmp_path / "split")
    for a, b in zip(full, resumed, strict=True):
        assert _without_times(a) == _without_times(b)
    for arm in arms:
        wa = load_checkpoint(RunPaths(tmp_path / "full").checkpoint(arm.name))
        wb = load_checkpoint(RunPaths(tmp_path / "split").checkpoint(arm.name))
        assert wa is not None and wb is not None
        for k, v in wa["model"].items():
            assert torch.equal(v, wb["model"][k]), (arm.name, k)


def test_cli_resume(tmp_path: Path) -> None:
    args = ["run", "--arms", "aps", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "64",
            "--output-dir", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--stop-after-epochs", "1"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert "partial" in result.output
    result = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--epochs", "3"])
    assert result.exit_code == 2 and "--epochs" in result.output
    result = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "training from epoch 1" in result.output and "finished" in result.output
    result = CliRunner().invoke(main, ["run", "--resume", str(run_dir)])
    assert result.exit_code == 0 and "skipped" in result.output
