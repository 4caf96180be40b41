"""Per-step cost of the second-order and conjugate-gradient optimizers, versus momentum SGD.

Claims: an NLCG step takes at most 1.2x the SGD step; a K-FAC step with statistics and
inverses refreshed every 10 steps (SP-NGD's stale statistics) at most 2x. K-FAC refreshing
both every step, and K-FAC with statistics every step but inverses every 10, are reported too,
without a target. One process
trains the same model (same initialization, same batches) with each optimizer: forward,
backward and ``step`` are timed together, as the loop times a step. The optimizers take
turns in rounds (one block of steps each, the order rotated every round) so machine drift
hits all alike. A block's cost is its mean step time (amortized: the inverse and statistics
steps of K-FAC count, which a median would hide); the median over rounds is reported, with the
ratio to SGD of each round's blocks (median and range). A missed target is reported, not an
error. Writes results/benchmarks/optim_overhead.csv atomically.

Usage: python benchmarks/optim_overhead.py [--model resnet20] [--batch-size 128]
       [--rounds 5] [--steps 20] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from training.models import build_model
from training.optim import build_optimizer, param_groups
from training.report import ratio_text, write_csv

OUT = Path("results/benchmarks/optim_overhead.csv")

#: (label, registry name, overrides, target ratio to SGD or None)
ARMS: tuple[tuple[str, str, dict[str, Any], float | None], ...] = (
    ("sgd", "sgd", {"lr": 0.01}, None),
    ("nlcg", "nlcg", {"lr": 0.001}, 1.2),
    ("kfac-1", "kfac", {"lr": 0.001, "update_interval": 1}, None),
    ("kfac-10", "kfac", {"lr": 0.001, "update_interval": 10}, 2.0),
    ("kfac-10-stats-1", "kfac", {"lr": 0.001, "update_interval": 10, "factor_interval": 1}, None),
)


def _timed_steps(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
) -> list[float]:
    times = []
    for x, y in batches:
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per optimizer per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    base = build_model(args.model, in_channels=3, num_classes=10, image_size=32).to(device)
    batches = [
        (
            torch.randn(args.batch_size, 3, 32, 32, device=device),
            torch.randint(0, 10, (args.batch_size,), device=device),
        )
        for _ in range(args.steps)
    ]
    runs = {}
    for label, name, overrides, _ in ARMS:
        model = copy.deepcopy(base)  # before the optimizer hooks it
        opt = build_optimizer(name, param_groups(model, 5e-4), model=model, **overrides)
        _timed_steps(model, opt, batches[:2])  # warm-up: allocations, first inverses
        runs[label] = (model, opt)
    per_round: dict[str, list[float]] = {label: [] for label, *_ in ARMS}
    labels = [label for label, *_ in ARMS]
    for r in range(args.rounds):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            model, opt = runs[label]
            # 20 steps per block: a multiple of the inverse interval, so every block of
            # kfac-10 pays the same number of inversions.
            per_round[label].append(statistics.fmean(_timed_steps(model, opt, batches)))
    rows = []
    sgd = per_round["sgd"]
    for label, _name, overrides, target in ARMS:
        ms = 1e3 * statistics.median(per_round[label])
        ratios = sorted(t / s for t, s in zip(per_round[label], sgd, strict=True))
        ratio = statistics.median(ratios)
        rows.append(
            {
                "model": args.model,
                "batch_size": args.batch_size,
                "optimizer": label,
                "update_interval": overrides.get("update_interval"),
                "factor_interval": overrides.get(
                    "factor_interval", overrides.get("update_interval")
                ),
                "device": args.device,
                "threads": args.threads,
                "rounds": args.rounds,
                "step_ms": ms,
                "ratio_to_sgd": ratio,
                "ratio_min": ratios[0],
                "ratio_max": ratios[-1],
                "target": target,
            }
        )
        line = f"{args.model} batch {args.batch_size} {label:>15}: {ms:8.2f} ms/step, to sgd: "
        print(line + ratio_text(ratio, ratios, target), flush=True)
    write_csv(OUT, pd.DataFrame(rows))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
