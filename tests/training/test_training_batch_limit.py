"""Batch-size-limit study: best LR, steps to target and the limit, on tables worked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from training.batch_limit import (
    batch_size_limit,
    best_cells,
    plot_steps_to_target,
    steps_to_target,
)
from training.config import ArmSpec, RunConfig
from training.records import ArmRecord, ArmStatus, EpochRecord, RunPaths
from training.report import RunData


def _cell(arm: str, batch: int, lr: float, acc: float, status: str = "finished") -> dict:
    return {"arm": arm, "bits": 32, "aps": False, "optimizer": "sgd", "batch_size": batch,
            "base_lr": lr, "seed": 0, "status": status, "test_acc": acc}  # fmt: skip


RESULTS = pd.DataFrame(
    [
        _cell("a", 64, 0.1, 0.90),
        _cell("b", 64, 0.2, 0.92),
        _cell("c", 256, 0.1, 0.915),
        _cell("d", 256, 0.2, 0.99, status="diverged"),  # diverged: counts as 0, never best
        _cell("e", 1024, 0.1, 0.80),
        _cell("f", 1024, 0.2, 0.85),
    ]
)


def _epochs(accs: list[float], steps_per_epoch: int) -> tuple[EpochRecord, ...]:
    return tuple(
        EpochRecord(
            epoch=i,
            step=(i + 1) * steps_per_epoch,
            train_loss=1.0,
            test_loss=1.0,
            test_acc=a,
            flushed=None,
            epoch_time_s=1.0,
        )
        for i, a in enumerate(accs)
    )


def test_best_lr_steps_to_target_and_limit(tmp_path: Path) -> None:
    accs = {"a": [0.5, 0.9], "b": [0.8, 0.92], "c": [0.6, 0.915], "d": [0.5, 0.99],
            "e": [0.3, 0.8], "f": [0.4, 0.85]}  # fmt: skip
    spe = {"a": 16, "b": 16, "c": 4, "d": 4, "e": 1, "f": 1}
    records = {
        k: ArmRecord(
            arm=k,
            status=ArmStatus.FINISHED,
            epochs_done=2,
            steps=(),
            epochs=_epochs(v, spe[k]),
            method="test",
        )
        for k, v in accs.items()
    }
    arm = ArmSpec(name="a", fmt=None, aps=False, batch_size=64, optimizer="sgd", lr=0.1, seed=0)
    data = RunData(paths=RunPaths(tmp_path), config=RunConfig(arms=(arm,)), records=records)
    reached = steps_to_target(data, 0.9)
    by_arm = reached.set_index("arm")["steps_to_target"].to_dict()
    assert by_arm["a"] == 32 and by_arm["b"] == 32 and by_arm["c"] == 8
    assert math.isnan(by_arm["e"]) and math.isnan(by_arm["f"])
    best = best_cells(RESULTS, reached)
    assert best[["batch_size", "base_lr", "acc"]].values.tolist() == [
        [64, 0.2, 0.92],
        [256, 0.1, 0.915],
        [1024, 0.2, 0.85],
    ]
    assert best["steps_to_target"].tolist()[:2] == [32, 8]
    (limit,) = batch_size_limit(best, tolerance=0.01).to_dict("records")
    assert (limit["reference_batch"], limit["limit_batch"], limit["largest_ok_batch"]) == (
        64,
        1024,
        256,
    )
    (loose,) = batch_size_limit(best, tolerance=0.1).to_dict("records")
    assert math.isnan(loose["limit_batch"]) and loose["largest_ok_batch"] == 1024
    plot_steps_to_target(best, tmp_path / "steps.png", 0.9)
    assert (tmp_path / "steps.png").stat().st_size > 0


def test_bad_target_and_tolerance(tmp_path: Path) -> None:
    arm = ArmSpec(name="a", fmt=None, aps=False, batch_size=64, optimizer="sgd", lr=0.1, seed=0)
    data = RunData(paths=RunPaths(tmp_path), config=RunConfig(arms=(arm,)), records={})
    with pytest.raises(ValueError, match=r"target accuracy 1\.5"):
        steps_to_target(data, 1.5)
    with pytest.raises(ValueError, match="tolerance -1"):
        batch_size_limit(best_cells(RESULTS), -1)


@pytest.mark.distributed
def test_sweep_writes_the_batch_study(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from training.cli import main

    args = ["sweep", "--bits", "32", "--batch-sizes", "32,64", "--optimizers", "sgd,nlcg",
            "--lrs", "0.05", "--dataset", "synthetic", "--epochs", "1", "--target-accuracy", "0.2",
            "--output-dir", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (root,) = tmp_path.iterdir()
    study = pd.read_csv(root / "batch_study.csv")
    assert len(study) == 4 and set(study["optimizer"]) == {"sgd", "nlcg"}
    assert "steps_to_target" in study.columns
    limits = pd.read_csv(root / "batch_limit.csv")
    assert sorted(limits["optimizer"]) == ["nlcg", "sgd"]
    assert (limits["reference_batch"] == 32).all()
    assert (root / "steps_to_target.png").exists() == study["steps_to_target"].notna().any()
