"""The main job is bit-reproducible on one software stack and CPU, and records what its bits
depend on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from training.environment import (
    NumericEnvironment,
    _blas,
    load_environment,
    record_environment,
)
from training.sweep import seed_spread, seed_spread_markdown

TIMING = ["step_time_s", "epoch_time_s"]


def _default_job(out: Path) -> Path:
    """``make run``'s command (``prec-study run --bits 4``) in a fresh process."""
    env = dict(os.environ)
    env.pop("PRECISION_KERNEL", None)  # the default kernel choice, compiled where it pays
    subprocess.run(
        [sys.executable, "-m", "training.cli", "run", "--bits", "4", "--output-dir", str(out)],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.mark.slow
@pytest.mark.distributed
def test_default_job_twice_gives_the_same_metrics(tmp_path: Path) -> None:
    a = _default_job(tmp_path / "a")
    b = _default_job(tmp_path / "b")
    ma = pd.read_csv(a / "metrics.csv").drop(columns=TIMING)
    mb = pd.read_csv(b / "metrics.csv").drop(columns=TIMING)
    assert len(ma) > 0 and set(ma["arm"]) == {"float32", "e3m0", "e3m0-aps"}
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    ea, eb = load_environment(a / "environment.json"), load_environment(b / "environment.json")
    assert ea[0] is not None and ea == eb
    assert "Numerical environment: torch" in (a / "summary.md").read_text()


def _env(**changes: object) -> NumericEnvironment:
    base = NumericEnvironment.capture(threads_per_worker=1, device_type="cpu")
    return NumericEnvironment(**{**base.to_dict(), "variables": base.variables, **changes})


def test_environment_is_kept_and_a_different_resume_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "environment.json"
    first = _env()
    assert record_environment(path, first) == []
    assert record_environment(path, first) == []  # same environment: nothing appended
    assert "resumed_under" not in json.loads(path.read_text())
    isa = "DEFAULT" if first.cpu_capability == "AVX2" else "AVX2"  # one this host has not
    other = _env(cpu_capability=isa, threads_per_worker=4)
    diff = record_environment(path, other)
    assert diff == [
        f"cpu_capability: {first.cpu_capability} -> {isa}",
        f"threads_per_worker: {first.threads_per_worker} -> 4",
    ]
    record_environment(path, other)  # appended once only
    loaded, resumed = load_environment(path)
    assert loaded == first and resumed == 1
    assert NumericEnvironment.from_dict(json.loads(path.read_text())["resumed_under"][0]) == other


def test_environment_names_the_isa_blas_and_set_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    env = NumericEnvironment.capture(threads_per_worker=3, device_type="cpu")
    assert env.cpu_capability and env.cpu and env.blas != "unknown"
    assert "MKL_CBWR=AVX2" in env.variables
    line = env.describe()
    assert env.cpu_capability in line and "3 thread(s) per worker" in line and "MKL_CBWR" in line


@pytest.mark.parametrize(
    ("config", "want"),
    [
        ("  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605", "MKL 2024.2"),
        ("Build settings: BLAS_INFO=open, BUILD_TYPE=Release, LAPACK_INFO=open", "open"),
        ("nothing about it", "unknown"),
    ],
)  # fmt: skip
def test_blas_from_the_build_configuration(config: str, want: str) -> None:
    assert _blas(config) == want


def test_seed_spread_by_hand() -> None:
    rows = [
        # format, bits, aps, batch, optimizer, lr, seed, status, acc, flushed
        ("e3m0", 4, True, 64, "sgd", 0.1, 0, "finished", 0.97, 0.60),
        ("e3m0", 4, True, 64, "sgd", 0.1, 1, "finished", 0.95, 0.70),
        ("e3m0", 4, True, 64, "sgd", 0.1, 2, "diverged", 0.10, 0.99),  # not in the spread
        ("float32", 32, False, 64, "sgd", 0.1, 0, "finished", 0.98, None),
        ("float32", 32, False, 64, "sgd", 0.1, 1, "finished", 0.96, None),
        ("e5m2", 8, False, 64, "sgd", 0.1, 0, "finished", 0.9, 0.1),  # one seed: left out
    ]
    cols = ["format", "bits", "aps", "batch_size", "optimizer", "base_lr", "seed", "status",
            "test_acc", "flushed"]  # fmt: skip
    spread = seed_spread(pd.DataFrame(rows, columns=cols))
    assert list(spread["format"]) == ["e3m0", "float32"]
    e3 = spread.iloc[0]
    assert e3["seeds"] == 2 and e3["acc_mean"] == pytest.approx(0.96)
    assert (e3["acc_min"], e3["acc_max"]) == (0.95, 0.97)
    assert (e3["flushed_min"], e3["flushed_max"]) == (0.60, 0.70)
    assert pd.isna(spread.iloc[1]["flushed_mean"])
    md = seed_spread_markdown(spread)
    assert (
        "| e3m0 | on | 64 | sgd | 0.1 | 2 | 96.0% | 95.0% .. 97.0% | 65.0% | 60.0% .. 70.0% |" in md
    )
    assert "| float32 | - | 64 | sgd | 0.1 | 2 | 97.0% | 96.0% .. 98.0% | - | - |" in md
