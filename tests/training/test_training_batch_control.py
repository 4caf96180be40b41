"""Batch-size control: the global batch grows at milestone epochs and the rate follows it.

Smith et al. 2018 (arXiv:1711.00489): increasing the batch instead of decaying the rate. The
loop tests train real gloo workers on the synthetic data (512 examples, 256 per worker).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from precision.registry import from_bits
from training.config import ArmSpec, ConfigError, RunConfig
from training.loop import run_study
from training.records import ArmRecord, RunPaths
from training.report import RunData, metrics_frame, write_report
from training.schedules import BatchSchedule, Decay, LRScaling, LRSchedule
from training.sweep import three_arms

Cli = Callable[[list[str]], tuple[int, str]]
PER_WORKER = 256  # synthetic training examples per worker of two


def _config(**kw: Any) -> RunConfig:
    arm = ArmSpec(name="float32", fmt=None, aps=False, batch_size=32, optimizer="sgd", lr=0.1,
                  seed=1)  # fmt: skip
    base: dict[str, Any] = {"arms": (arm,), "dataset": "synthetic", "epochs": 3, "workers": 2,
                            "device": "cpu", "warmup_epochs": 0.0}  # fmt: skip
    return RunConfig(**{**base, **kw})


def _without_times(rec: ArmRecord) -> tuple[object, ...]:
    steps = [(s.step, s.lr, s.train_loss, s.train_acc, s.flushed, s.batch_size) for s in rec.steps]
    epochs = [(e.step, e.train_loss, e.test_loss, e.test_acc, e.batch_size) for e in rec.epochs]
    return rec.status, tuple(steps), tuple(epochs)


# ---- the schedule as data ---------------------------------------------------------------


def test_batch_doubles_at_each_milestone_up_to_the_cap() -> None:
    grows = BatchSchedule(initial=32, milestones=(2, 4), factor=2)
    assert [grows.size(e) for e in range(6)] == [32, 32, 64, 64, 128, 128]
    capped = BatchSchedule(initial=32, milestones=(1, 2, 3), factor=4, maximum=1000)
    assert [capped.size(e) for e in range(5)] == [32, 128, 512, 1000, 1000]
    assert grows.lr_factor(3, LRScaling.LINEAR) == 2.0
    assert grows.lr_factor(4, LRScaling.SQRT) == 2.0
    assert grows.lr_factor(2, LRScaling.SQRT) == math.sqrt(2.0)
    assert BatchSchedule(initial=32).size(100) == 32


@given(
    initial=st.integers(1, 512),
    milestones=st.lists(st.integers(1, 40), max_size=5, unique=True).map(sorted),
    factor=st.integers(2, 4),
    cap=st.one_of(st.none(), st.integers(0, 4096)),
)
def test_batch_grows_monotonically_by_the_factor_and_never_over_the_cap(
    initial: int, milestones: list[int], factor: int, cap: int | None
) -> None:
    if not milestones:  # a factor or cap without milestones is refused (tested below)
        factor, cap = 2, None
    maximum = None if cap is None else initial + cap
    s = BatchSchedule(initial=initial, milestones=tuple(milestones), factor=factor,
                      maximum=maximum)  # fmt: skip
    sizes = [s.size(e) for e in range(45)]
    assert sizes[0] == initial
    for e in range(1, 45):
        assert sizes[e] >= sizes[e - 1]
        passed = sum(m <= e for m in milestones)
        uncapped = initial * factor**passed
        assert sizes[e] == (uncapped if maximum is None else min(uncapped, maximum))
        if e not in milestones:
            assert sizes[e] == sizes[e - 1]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"initial": 0}, "batch size 0"),
        ({"milestones": (2,), "factor": 1}, "factor 1"),
        ({"milestones": (3, 2)}, "increasing"),
        ({"milestones": (2, 2)}, "increasing"),
        ({"milestones": (0, 2)}, ">= 1"),
        ({"milestones": (2,), "maximum": 16}, "max batch size 16"),
        ({"factor": 4}, "without batch milestones"),
        ({"maximum": 4096}, "without batch milestones"),
    ],
)
def test_schedule_rejects_bad_values_in_one_line(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        BatchSchedule(**{"initial": 32, **kw})
    assert "\n" not in str(info.value)


def test_check_against_the_run() -> None:
    s = BatchSchedule(initial=32, milestones=(1, 3), maximum=100)
    s.check(epochs=4, workers=4)
    with pytest.raises(ValueError, match=r"batch milestones \[1, 3\]: must be < epochs=3"):
        s.check(epochs=3, workers=4)
    with pytest.raises(ValueError, match=r"batch size 100 \(from epoch 3\).*8 workers"):
        s.check(epochs=4, workers=8)


# ---- RunConfig ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"batch_milestones": (3,)}, "must be < epochs=3"),
        ({"batch_milestones": (2, 1)}, "increasing"),
        ({"batch_milestones": (1,), "batch_factor": 1}, "factor 1"),
        ({"batch_milestones": (1,), "max_batch_size": 16}, "max batch size 16"),
        ({"batch_milestones": (1,), "max_batch_size": 42, "workers": 4}, "42 (from epoch 1)"),
        ({"batch_factor": 3}, "without batch milestones"),
    ],
)
def test_run_config_rejects_bad_batch_options_in_one_line(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**kw)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_config_json_holds_the_options_only_when_the_batch_grows(tmp_path: Path) -> None:
    grows = _config(batch_milestones=[1, 2], batch_factor=4, max_batch_size=256)
    assert grows.batch_milestones == (1, 2)
    grows.save(tmp_path / "grows.json")
    saved = json.loads((tmp_path / "grows.json").read_text())
    assert (saved["batch_milestones"], saved["batch_factor"], saved["max_batch_size"]) == (
        [1, 2], 4, 256,
    )  # fmt: skip
    assert RunConfig.load(tmp_path / "grows.json") == grows
    plain = _config()
    plain.save(tmp_path / "plain.json")
    saved = json.loads((tmp_path / "plain.json").read_text())
    assert not {"batch_milestones", "batch_factor", "max_batch_size"} & set(saved)
    assert RunConfig.load(tmp_path / "plain.json") == plain  # as config.json was before


def test_old_records_without_batch_size_show_the_arms(tmp_path: Path) -> None:
    cfg = _config()
    step = {"epoch": 0, "step": 0, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5,
            "flushed": None, "overflow": None, "step_time_s": 0.01}  # fmt: skip
    epoch = {"epoch": 0, "step": 1, "train_loss": 1.0, "test_loss": 1.0, "test_acc": 0.5,
             "flushed": None, "epoch_time_s": 0.01}  # fmt: skip
    old = {"arm": "float32", "status": "partial", "epochs_done": 1, "steps": [step],
           "epochs": [epoch], "method": "m", "schema": 1}  # fmt: skip
    rec = ArmRecord.from_dict(old)
    assert rec.steps[0].batch_size is None and rec.epochs[0].batch_size is None
    frame = metrics_frame(RunData(RunPaths(tmp_path), cfg, {"float32": rec}))
    assert list(frame["batch_size"]) == [32, 32]


# ---- the loop, on two gloo workers -----------------------------------------------------


@pytest.mark.distributed
def test_batch_grows_and_resume_across_a_milestone_is_exact(
    eager_kernel: None, full_and_resumed: Callable[[RunConfig], Any], tmp_path: Path
) -> None:
    (arm,) = three_arms(from_bits(4), batch_size=32, optimizer="sgd", lr=0.1, seed=3,
                        which=("aps",))  # fmt: skip
    # Epochs of 32, 64, 64: doubled at epoch 1, capped at epoch 2; stochastic rounding, so
    # the resumed run (stopped after epoch 0) must also continue the rounding stream.
    cfg = _config(arms=(arm,), rounding="stochastic", warmup_epochs=0.5,
                  batch_milestones=(1, 2), max_batch_size=64)  # fmt: skip
    (full,), (resumed,), _, _ = full_and_resumed(cfg)
    assert _without_times(full) == _without_times(resumed)
    sizes = [32, 64, 64]
    assert [e.batch_size for e in full.epochs] == sizes
    per_epoch = [sum(s.epoch == e for s in full.steps) for e in range(3)]
    assert per_epoch == [PER_WORKER // (b // 2) for b in sizes] == [16, 8, 8]
    assert [s.step for s in full.steps] == list(range(32))
    assert [e.step for e in full.epochs] == [16, 24, 32]
    assert all(s.batch_size == sizes[s.epoch] for s in full.steps)
    shape = LRSchedule(base_lr=0.1, base_batch_size=64, batch_size=32, steps_per_epoch=16,
                       total_epochs=3, warmup_epochs=0.5, decay=Decay.COSINE)  # fmt: skip
    first = [0, 16, 24]
    for s in full.steps:
        frac = s.epoch + (s.step - first[s.epoch]) / per_epoch[s.epoch]
        assert s.lr == pytest.approx(shape.lr_at_epoch(frac) * sizes[s.epoch] / 32, rel=1e-12)
    write_report(tmp_path / "full")
    metrics = pd.read_csv(tmp_path / "full" / "metrics.csv")
    assert list(metrics[metrics["kind"] == "epoch"]["batch_size"]) == sizes


@pytest.mark.distributed
@pytest.mark.parametrize(("legw", "growth"), [(False, 2.0), (True, math.sqrt(2.0))])
def test_rate_follows_the_doubled_batch_by_the_scaling_rule(
    eager_kernel: None, tmp_path: Path, legw: bool, growth: float
) -> None:
    cfg = _config(epochs=2, legw=legw, decay="constant", batch_milestones=(1,))
    (rec,) = run_study(cfg, tmp_path)
    (lr0,), (lr1,) = ({s.lr for s in rec.steps if s.epoch == e} for e in (0, 1))
    # batch 32 at base batch 64: 0.1 x 1/2 linear, 0.1 x sqrt(1/2) under LEGW
    assert lr0 == pytest.approx(0.1 * (0.5 if not legw else math.sqrt(0.5)), rel=1e-12)
    assert lr1 == pytest.approx(lr0 * growth, rel=1e-12)
    assert [sum(s.epoch == e for s in rec.steps) for e in (0, 1)] == [16, 8]


@pytest.mark.distributed
def test_a_grown_batch_over_the_shard_fails_before_training(
    cli: Cli, eager_kernel: None, tmp_path: Path
) -> None:
    code, out = cli(["run", "--arms", "float32", "--dataset", "synthetic", "--epochs", "2",
                     "--batch-size", "256", "--batch-milestones", "1", "--batch-factor", "4",
                     "--output-dir", str(tmp_path)])  # fmt: skip
    errors = [line for line in out.splitlines() if line.startswith("Error")]
    assert code == 1 and len(errors) == 1, out  # a worker's failure, as for any batch
    assert "batch size 1024 (from epoch 1) exceeds the 512 training examples" in errors[0]
    assert "epoch 1/2" not in out  # no epoch trained


# ---- the command line -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch-milestones", "1,x"], "--batch-milestones"),
        (["--batch-milestones", "2,1"], "increasing"),
        (["--batch-milestones", "5"], "must be < epochs=3"),
        (["--batch-milestones", "1", "--batch-factor", "1"], "factor 1"),
        (["--max-batch-size", "4096"], "without batch milestones"),
        (["--batch-milestones", "1", "--max-batch-size", "100", "--workers", "8"], "divisible"),
    ],
)
def test_bad_batch_options_exit_2_with_one_error_line(
    cli: Cli, args: list[str], needle: str, tmp_path: Path
) -> None:
    code, out = cli(["run", "--dataset", "synthetic", "--epochs", "3", *args,
                     "--output-dir", str(tmp_path)])  # fmt: skip
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], out
    assert not list(tmp_path.iterdir())  # rejected before a run directory was made
