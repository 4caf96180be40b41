"""Regenerate the training references under results/reference/.

Runs, on this machine: ``make run``'s job (``prec-study run --bits 4``, seed 0) and the same
three arms for seeds 0..4 (``prec-study sweep``) into prec-study-run-bits4/ (config,
environment, summary, accuracy plot, seeds.md/csv); ``prec-study bits-needed`` on digits,
all five roles, nearest and stochastic, into bits-needed-digits/; and the batch-size-limit
sweep (five optimizers x three batch sizes x float32 and e3m0+APS) into
batch-size-limit-digits/. Keeps only the small outputs.

Usage: make reference   (or .venv/bin/python scripts/training_reference.py)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "results" / "reference"
OUT = REF / "prec-study-run-bits4"
CLI = [sys.executable, "-m", "training.cli"]
SEEDS = "0,1,2,3,4"


def study(*args: str, out: Path) -> Path:
    """Run one prec-study command writing under ``out``; its run directory."""
    subprocess.run([*CLI, *args, "--output-dir", str(out)], check=True, cwd=ROOT)
    (run_dir,) = out.iterdir()
    return run_dir


def keep(run_dir: Path, dest: Path, names: list[str]) -> None:
    """Copy ``names`` of ``run_dir`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(run_dir / name, dest / name)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = study("run", "--bits", "4", out=Path(tmp) / "run")
        sweep = study(
            "sweep", "--bits", "4,32", "--aps", "both", "--batch-sizes", "64",
            "--lrs", "0.1", "--seeds", SEEDS, out=Path(tmp) / "sweep",
        )  # fmt: skip
        OUT.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "environment.json", "summary.md", "summary.csv"):
            shutil.copy2(run / name, OUT / name)
        shutil.copy2(run / "accuracy.png", OUT / "accuracy.png")
        for name in ("seeds.md", "seeds.csv"):
            shutil.copy2(sweep / name, OUT / name)
        bits = study(
            "bits-needed", "--rounding", "nearest,stochastic", "--max-mantissa", "7",
            "--epochs", "6", "--workers", "1", "--device", "cpu", out=Path(tmp) / "bits",
        )  # fmt: skip
        keep(bits, REF / "bits-needed-digits",
             ["summary.md", "points.csv", "config.json", "search.json",
              *(p.name for p in bits.glob("heatmap-*.png"))])  # fmt: skip
        limit = study(
            "sweep", "--bits", "4,32", "--aps", "on", "--batch-sizes", "32,128,512",
            "--optimizers", "sgd,lars,lamb,nlcg,kfac", "--epochs", "10",
            "--target-accuracy", "95", out=Path(tmp) / "limit",
        )  # fmt: skip
        keep(limit, REF / "batch-size-limit-digits",
             ["scaling.md", "scaling.csv", "limits.csv", "steps_to_target.png",
              "accuracy_vs_batch.png", "sweep.json", "config.json"])  # fmt: skip
    print(f"references written under {REF}")


if __name__ == "__main__":
    main()
