"""The training loop, records and configuration in one process (a one-rank group)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from precision.registry import from_bits
from training.arm import schedule_for
from training.config import ArmSpec, ConfigError, RunConfig
from training.loop import run_study
from training.records import (
    ArmRecord,
    ArmStatus,
    EpochRecord,
    RecordError,
    RunPaths,
    StepRecord,
    atomic_write_text,
    load_checkpoint,
)
from training.report import load_run, metrics_frame, summary_frame, write_report
from training.sweep import ApsModes, SweepSpec, three_arms


@pytest.fixture(autouse=True)
def _eager_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # The eager kernel gives the compiled kernel's bits without its first-call compile time.
    monkeypatch.setenv("PRECISION_KERNEL", "eager")


def _config(**kw: object) -> RunConfig:
    arms = three_arms(from_bits(4), batch_size=64, optimizer="sgd", lr=0.1, seed=1)
    base: dict[str, object] = {
        "arms": arms, "dataset": "synthetic", "epochs": 2, "workers": 1, "device": "cpu",
        "warmup_epochs": 0.5,
    }  # fmt: skip
    return RunConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_config_roundtrip(tmp_path: Path) -> None:
    cfg = _config(rounding="stochastic", headroom=2, legw=True)
    cfg.save(tmp_path / "config.json")
    back = RunConfig.load(tmp_path / "config.json")
    assert back == cfg
    assert back.digest() == cfg.digest()
    assert json.loads((tmp_path / "config.json").read_text())["rounding"] == "stochastic"


@pytest.mark.parametrize(
    "kw",
    [{"epochs": 0}, {"workers": 0}, {"workers": 3}, {"reduction": "tree"}, {"warmup_epochs": 5}],
)
def test_config_rejects_bad_values(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        _config(**kw)


def test_arm_rejects_aps_without_format() -> None:
    with pytest.raises(ConfigError, match="APS"):
        ArmSpec(name="x", fmt=None, aps=True, batch_size=8, optimizer="sgd", lr=0.1, seed=0)


def test_three_arms_share_seed_and_differ_in_communication() -> None:
    arms = three_arms(from_bits(4), batch_size=64, optimizer="sgd", lr=0.1, seed=3)
    assert [a.name for a in arms] == ["float32", "e3m0", "e3m0-aps"]
    assert [(a.fmt, a.aps) for a in arms] == [(None, False), ("e3m0", False), ("e3m0", True)]
    assert {a.seed for a in arms} == {3}


def test_schedule_warms_up_then_decays() -> None:
    cfg = _config()
    arm = dataclasses.replace(cfg.arms[0], batch_size=32)
    sched = schedule_for(cfg, arm, steps_per_epoch=10)
    lrs = [sched.lr(s) for s in range(20)]
    assert lrs[0] == 0.0
    assert max(lrs) == pytest.approx(0.1 * 32 / 64)  # linear scaling from batch 64
    assert lrs[-1] < lrs[5]


def test_records_roundtrip_and_atomic_write(tmp_path: Path) -> None:
    rec = ArmRecord(
        arm="a",
        status=ArmStatus.DIVERGED,
        epochs_done=1,
        steps=(StepRecord(epoch=0, step=0, lr=0.1, train_loss=math.nan, train_acc=0.5,
                          flushed=None, overflow=0.0, step_time_s=0.01),),
        epochs=(EpochRecord(epoch=0, step=1, train_loss=1.0, test_loss=1.0, test_acc=0.5,
                            flushed=None, epoch_time_s=0.1),),
        method="test",
    )  # fmt: skip
    back = ArmRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.status is ArmStatus.DIVERGED and back.epochs == rec.epochs
    assert math.isnan(back.steps[0].train_loss) and back.steps[0].flushed is None
    atomic_write_text(tmp_path / "x.txt", "new")
    assert (tmp_path / "x.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]  # no temporary left behind
    with pytest.raises(RecordError):
        ArmRecord.from_dict({**rec.to_dict(), "schema": 99})


def test_one_worker_study_learns_and_reports(tmp_path: Path) -> None:
    cfg = _config(arms=_config().arms[::2])  # float32 and e3m0 with APS
    records = run_study(cfg, tmp_path)
    assert [r.status for r in records] == [ArmStatus.FINISHED] * 2
    for r in records:
        assert r.epochs_done == 2 and r.epochs[-1].test_acc > 0.8
    assert records[0].steps[0].flushed is None
    assert records[1].steps[0].flushed is not None
    summary = write_report(tmp_path)
    assert list(summary["arm"]) == ["float32", "e3m0-aps"]
    paths = RunPaths(tmp_path)
    for f in (paths.metrics, paths.summary_csv, paths.summary_md, paths.plot):
        assert f.exists()
    metrics = metrics_frame(load_run(tmp_path))
    assert set(metrics["kind"]) == {"step", "epoch"}
    assert metrics.loc[metrics["kind"] == "step", "test_acc"].isna().all()
    ckpt = load_checkpoint(paths.checkpoint("float32"))  # weights_only=True inside
    assert ckpt is not None and isinstance(ckpt["model"]["net.1.weight"], torch.Tensor)


def test_pending_arms_show_as_pending(tmp_path: Path) -> None:
    cfg = _config(epochs=1)
    RunPaths(tmp_path).root.mkdir(exist_ok=True)
    cfg.save(RunPaths(tmp_path).config)
    summary = summary_frame(load_run(tmp_path))
    assert list(summary["status"]) == ["pending"] * 3
    assert summary["test_acc"].isna().all()


def test_sweep_grid_cells() -> None:
    spec = SweepSpec(bits=(4, 32), aps=ApsModes.BOTH, batch_sizes=(32, 64), lrs={"sgd": (0.1,)})
    names = [a.name for a in spec.arms()]
    assert len(names) == len(set(names)) == 6  # (2 APS settings + float32) x 2 batch sizes
    assert "e3m0-aps-bs32-sgd-lr0.1-s0" in names and "float32-bs64-sgd-lr0.1-s0" in names
    with pytest.raises(ValueError):
        SweepSpec(bits=(0,))
