"""Tensor roles in training: weights and optimizer state held in a format, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from precision.quantize import quantize
from precision.registry import parse as parse_format
from precision.rounding import RoundingMode
from training.config import ArmSpec, ConfigError, RunConfig
from training.loop import run_study
from training.records import ArmRecord, RunPaths, load_checkpoint
from training.roles import Role, RoleCast


@pytest.fixture(autouse=True)
def _eager_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECISION_KERNEL", "eager")


def _arm(casts: tuple[RoleCast, ...], name: str = "a") -> ArmSpec:
    return ArmSpec(name=name, fmt=None, aps=False, batch_size=64, optimizer="sgd", lr=0.1,
                   seed=1, casts=casts)  # fmt: skip


def _cfg(*arms: ArmSpec, epochs: int = 2) -> RunConfig:
    return RunConfig(arms=arms, dataset="synthetic", epochs=epochs, workers=1, device="cpu",
                     warmup_epochs=0.5)  # fmt: skip


def _representable(t: torch.Tensor, fmt: str) -> bool:
    return torch.equal(quantize(t, parse_format(fmt)), t)


def test_weights_and_momentum_are_stored_in_their_formats(tmp_path: Path) -> None:
    casts = (RoleCast(role=Role.WEIGHT, fmt="e5m2", rounding=RoundingMode.STOCHASTIC),
             RoleCast(role=Role.OPTIMIZER_STATE, fmt="e4m3"))  # fmt: skip
    (rec,) = run_study(_cfg(_arm(casts), epochs=1), tmp_path)
    assert "weight float8_e5m2 stochastic" in rec.method, rec.method
    ckpt = load_checkpoint(RunPaths(tmp_path).checkpoint("a"))
    assert ckpt is not None
    weights = [v for k, v in ckpt["model"].items() if v.is_floating_point()]
    assert weights and all(_representable(w, "e5m2") for w in weights)
    assert not all(_representable(w, "e4m1") for w in weights)  # not trivially coarse
    moments = [s["momentum_buffer"] for s in ckpt["optimizer"]["optimizer"]["state"].values()]
    assert moments and all(_representable(m, "e4m3") for m in moments)


def test_activation_and_error_casts_change_training_and_resume_exactly(tmp_path: Path) -> None:
    casts = (RoleCast(role=Role.ACTIVATION, fmt="e4m1", rounding=RoundingMode.STOCHASTIC),
             RoleCast(role=Role.ERROR, fmt="e5m1", rounding=RoundingMode.STOCHASTIC),
             RoleCast(role=Role.WEIGHT, fmt="e5m3", rounding=RoundingMode.STOCHASTIC))  # fmt: skip
    cfg = _cfg(_arm(()), _arm(casts, "cast"))
    plain, full = run_study(cfg, tmp_path / "full")
    assert plain.steps[-1].train_loss != full.steps[-1].train_loss
    run_study(cfg, tmp_path / "split", stop_after_epochs=1)
    _, resumed = run_study(cfg, tmp_path / "split")

    def trace(r: ArmRecord) -> list[float]:
        return [s.train_loss for s in r.steps] + [e.test_acc for e in r.epochs]

    assert trace(resumed) == trace(full)


def test_casts_round_trip_through_config_json_and_reject_bad_input(tmp_path: Path) -> None:
    cfg = _cfg(_arm((RoleCast(role=Role.ERROR, fmt="e5m2", rounding=RoundingMode.STOCHASTIC),)))
    cfg.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json") == cfg
    with pytest.raises(ConfigError, match="one cast per role"):
        _arm((RoleCast(role=Role.ERROR, fmt="e5m2"), RoleCast(role=Role.ERROR, fmt="e4m3")))
    with pytest.raises(ConfigError, match="grad-comm is the arm's fmt"):
        _arm(({"role": "grad-comm", "fmt": "e5m2"},))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a float format"):
        _arm(({"role": "weight", "fmt": "int8"},))  # type: ignore[arg-type]
