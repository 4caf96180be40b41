"""Regenerate the training reference under results/reference/prec-study-run-bits4/.

Runs ``make run``'s job (``prec-study run --bits 4``, seed 0) and the same three arms for
seeds 0..4 (``prec-study sweep``), on this machine, and keeps the small outputs: the run's
config, environment, summary and accuracy plot, and the spread over seeds (seeds.md/csv).

Usage: make reference   (or .venv/bin/python scripts/training_reference.py)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "reference" / "prec-study-run-bits4"
CLI = [sys.executable, "-m", "training.cli"]
SEEDS = "0,1,2,3,4"


def study(*args: str, out: Path) -> Path:
    """Run one prec-study command writing under ``out``; its run directory."""
    subprocess.run([*CLI, *args, "--output-dir", str(out)], check=True, cwd=ROOT)
    (run_dir,) = out.iterdir()
    return run_dir


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
    print(f"reference written to {OUT}")


if __name__ == "__main__":
    main()
