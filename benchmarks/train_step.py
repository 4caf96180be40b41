"""Cost of 4-bit APS gradient communication per training step, versus float32.

Claim: with the carrier reduction, a data-parallel step with e3m0 + APS gradients takes at
most 1.3x the float32 step. Trains float32 and e3m0+APS arms with the real loop
(``training.loop.run_study``, 2 workers on the digits data) for each model and for the
carrier and ring (ordered, rounding every partial sum) reductions, takes the median step time
after the first epoch (which pays the quantization kernel's compilation), prints the ratios
(a missed target is reported, not an error) and writes results/benchmarks/train_step.csv
atomically. The study runs its arms one after the other, so machine drift between them
would bias one ratio: each measurement is repeated with the arm order swapped every time,
and the median ratio (with the range) is reported.

Usage: python benchmarks/train_step.py [--models mlp,cnn] [--workers 2] [--epochs 3]
       [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

from precision.registry import from_bits
from training.config import Device, RunConfig
from training.loop import run_study
from training.report import ratio_text, write_csv
from training.sweep import three_arms

OUT = Path("results/benchmarks/train_step.csv")
TARGET = 1.3


def median_step_ms(steps: tuple, first_epoch: int = 1) -> float:
    """Median step time in ms, leaving out the warm-up epochs."""
    times = [s.step_time_s for s in steps if s.epoch >= first_epoch]
    return 1e3 * statistics.median(times)


def measure(
    model: str, reduction: str, workers: int, epochs: int, order: tuple[str, str]
) -> dict[str, float]:
    """Median step time (ms) of the float32 and e3m0+APS arms of one short study."""
    arms = three_arms(from_bits(4), batch_size=64, optimizer="sgd", lr=0.1, seed=0, which=order)
    cfg = RunConfig(
        arms=arms, model=model, epochs=epochs, workers=workers, reduction=reduction,
        device=Device.CPU,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        records = run_study(cfg, Path(tmp))
    return {r.arm: median_step_ms(r.steps) for r in records}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        for reduction in ("carrier", "ring"):
            runs = []
            for k in range(args.repeats):
                order = ("float32", "aps") if k % 2 == 0 else ("aps", "float32")
                runs.append(measure(model, reduction, args.workers, args.epochs, order))
            ratios = sorted(ms["e3m0-aps"] / ms["float32"] for ms in runs)
            ratio = statistics.median(ratios)
            f32 = statistics.median(ms["float32"] for ms in runs)
            lowp = statistics.median(ms["e3m0-aps"] for ms in runs)
            rows.append(
                {
                    "model": model,
                    "reduction": reduction,
                    "workers": args.workers,
                    "repeats": args.repeats,
                    "float32_ms": f32,
                    "e3m0_aps_ms": lowp,
                    "ratio": ratio,
                    "ratio_min": ratios[0],
                    "ratio_max": ratios[-1],
                    "target": TARGET if reduction == "carrier" else None,
                }
            )
            target = TARGET if reduction == "carrier" else None
            times = f"float32 {f32:.2f} ms/step, e3m0+APS {lowp:.2f} ms/step"
            print(f"{model:>5} {reduction:>7}: {times}, " + ratio_text(ratio, ratios, target))
    frame = pd.DataFrame(rows)
    write_csv(OUT, frame)
    print(f"wrote {OUT} ({len(frame)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
