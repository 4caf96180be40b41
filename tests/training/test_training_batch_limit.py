"""The batch-size-limit study on sweep results: by-hand tables and one real sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from training.batch_limit import batch_limits, batch_scaling, steps_to_target
from training.cli import main

RESULT_COLS = ["arm", "bits", "aps", "optimizer", "batch_size", "base_lr", "seed", "status",
               "test_acc"]  # fmt: skip


def _results(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RESULT_COLS)


def _metrics(curves: dict[str, list[tuple[int, float]]]) -> pd.DataFrame:
    """Epoch rows: arm -> [(steps done at the end of the epoch, test accuracy), ...]."""
    rows = [
        {"arm": arm, "kind": "epoch", "epoch": e, "step": step, "test_acc": acc}
        for arm, curve in curves.items()
        for e, (step, acc) in enumerate(curve)
    ]
    rows.append({"arm": "a", "kind": "step", "epoch": 0, "step": 1, "test_acc": math.nan})
    return pd.DataFrame(rows)


def test_steps_to_target_is_the_first_epoch_that_reaches_it() -> None:
    m = _metrics({"a": [(10, 0.5), (20, 0.91), (30, 0.89), (40, 0.95)], "b": [(5, 0.2)]})
    out = steps_to_target(m, 0.9).set_index("arm")
    assert out.loc["a", "steps_to_target"] == 20 and out.loc["a", "epochs_to_target"] == 2
    assert math.isnan(out.loc["b", "steps_to_target"])


def test_best_lr_by_mean_over_seeds_and_reached_by_every_seed() -> None:
    res = _results([
        # lr 0.1: mean 0.9; lr 0.2: mean 0.92 (wins) although its seed 1 is below lr 0.1's best
        ("s0-lo", 32, False, "sgd", 64, 0.1, 0, "finished", 0.95),
        ("s1-lo", 32, False, "sgd", 64, 0.1, 1, "finished", 0.85),
        ("s0-hi", 32, False, "sgd", 64, 0.2, 0, "finished", 0.96),
        ("s1-hi", 32, False, "sgd", 64, 0.2, 1, "finished", 0.88),
        # a diverged learning rate counts as 0 and never wins
        ("s0-bad", 32, False, "sgd", 64, 9.0, 0, "diverged", 0.99),
        ("s0-big", 32, False, "sgd", 256, 0.2, 0, "finished", 0.90),
        ("s1-big", 32, False, "sgd", 256, 0.2, 1, "finished", 0.80),
    ])  # fmt: skip
    m = _metrics({
        "s0-hi": [(10, 0.6), (20, 0.93)], "s1-hi": [(10, 0.91), (20, 0.88)],
        "s0-big": [(3, 0.95)], "s1-big": [(3, 0.5)],
    })  # fmt: skip
    scaling = batch_scaling(res, m, 0.9).set_index("batch_size")
    small = scaling.loc[64]
    assert small["best_lr"] == 0.2 and small["seeds"] == 2
    assert small["acc"] == pytest.approx(0.92) and (small["acc_min"], small["acc_max"]) == (
        0.88,
        0.96,
    )
    assert small["reached"] == 2 and small["steps_to_target"] == 15  # mean of 20 and 10
    assert small["epochs_to_target"] == 1.5
    big = scaling.loc[256]
    assert big["reached"] == 1 and math.isnan(big["steps_to_target"])  # one seed never did


def test_limit_is_the_first_batch_beyond_the_tolerance() -> None:
    rows = []
    for opt, accs in {
        "sgd": [0.97, 0.965, 0.95, 0.90],
        "lars": [0.96, 0.958, 0.957, 0.956],
    }.items():
        for b, acc in zip([32, 64, 128, 256], accs, strict=True):
            rows.append({"bits": 32, "aps": False, "optimizer": opt, "batch_size": b, "acc": acc})
    limits = batch_limits(pd.DataFrame(rows), tolerance=1.0).set_index("optimizer")
    assert limits.loc["sgd", "largest_within"] == 64 and limits.loc["sgd", "limit"] == 128
    assert limits.loc["sgd", "base_acc"] == 0.97
    assert limits.loc["lars", "largest_within"] == 256 and pd.isna(limits.loc["lars", "limit"])


@pytest.mark.parametrize("value", ["0", "101", "-5"])
def test_target_accuracy_out_of_range_exits_2(value: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        main, ["sweep", "--target-accuracy", value, "--output-dir", str(tmp_path)]
    )
    assert res.exit_code == 2 and "--target-accuracy" in res.output


@pytest.mark.distributed
def test_sweep_writes_the_batch_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECISION_KERNEL", "eager")
    args = ["sweep", "--bits", "32", "--batch-sizes", "32,256", "--lrs", "0.1",
            "--dataset", "digits", "--epochs", "3", "--target-accuracy", "80",
            "--output-dir", str(tmp_path)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    (root,) = tmp_path.iterdir()
    scaling = pd.read_csv(root / "scaling.csv")
    assert list(scaling["batch_size"]) == [32, 256]
    assert set(pd.read_csv(root / "limits.csv")["optimizer"]) == {"sgd"}
    text = (root / "scaling.md").read_text()
    assert "steps to 80%" in text and "Batch-size limit (tolerance 1 points)" in text
    if scaling["steps_to_target"].notna().any():
        assert (root / "steps_to_target.png").stat().st_size > 0
    # the study is rebuilt from the saved records
    (root / "scaling.md").unlink()
    assert CliRunner().invoke(main, ["report", str(root)]).exit_code == 0
    assert (root / "scaling.md").exists()
