"""Cost of emulating e5m2 activations and errors in a ResNet-20 training step.

Claim: rounding every Conv2d/BatchNorm2d/Linear output to e5m2 on the way forward and its
gradient on the way back (a :class:`PrecisionPolicy`) costs at most 1.5x the float32 step
on CPU. Trains ResNet-20 on random CIFAR-shaped batches (32x32, batch 128) with SGD,
alternating float32, the policy, and (when importable) qtorch's quantizer at the same
places, after warm-up steps (the first compile of the rounding kernel). Prints the median
ratios and writes results/benchmarks/emulation_overhead.csv atomically.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from precision.autograd import Cast
from precision.common.files import atomic_write_text
from precision.policy import PrecisionPolicy, apply_policy
from precision.registry import FLOAT8_E5M2
from training.models import build_model

OUT = Path("results/benchmarks/emulation_overhead.csv")
LAYERS = ("Conv2d", "BatchNorm2d", "Linear")
TARGET = 1.5


def qtorch_hooks(model: nn.Module) -> Callable[[], None] | None:
    """Install qtorch's e5m2 quantizer after the same layers; None when unavailable."""
    try:
        from qtorch import FloatingPoint
        from qtorch.quant import quantizer
    except Exception as exc:  # qtorch builds a C++ extension at import; any failure: skip
        print(f"qtorch not importable ({type(exc).__name__}: {exc}); skipping it")
        return None
    e5m2 = FloatingPoint(exp=5, man=2)
    q = quantizer(e5m2, e5m2, "nearest", "nearest")
    handles = [
        m.register_forward_hook(lambda _m, _a, out: q(out))
        for m in model.modules()
        if any(c.__name__ in LAYERS for c in type(m).__mro__)
    ]

    def remove() -> None:
        for h in handles:
            h.remove()

    return remove


def step_time(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = build_model("resnet20", in_channels=3, num_classes=10, image_size=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    policy = PrecisionPolicy(layers=LAYERS, activation=Cast(FLOAT8_E5M2), error=Cast(FLOAT8_E5M2))

    def nothing() -> Callable[[], None]:
        return lambda: None

    def with_policy() -> Callable[[], None]:
        return apply_policy(model, policy).remove

    def with_qtorch() -> Callable[[], None]:
        remove = qtorch_hooks(model)
        assert remove is not None  # checked below before this is used
        return remove

    configs: dict[str, Callable[[], Callable[[], None]]] = {
        "float32": nothing,
        "policy_e5m2": with_policy,
    }
    probe = qtorch_hooks(model)
    if probe is not None:
        probe()
        configs["qtorch_e5m2"] = with_qtorch
    times: dict[str, list[float]] = {name: [] for name in configs}
    for install in configs.values():  # warm-up, including the kernel's first compile
        undo = install()
        for _ in range(args.warmup):
            step_time(model, opt, x, y)
        undo()
    for _ in range(args.steps):  # interleave so drift in machine speed hits all alike
        for name, install in configs.items():
            undo = install()
            times[name].append(step_time(model, opt, x, y))
            undo()

    base = statistics.median(times["float32"])
    rows = ["config,median_step_s,ratio_vs_float32,steps,batch,threads"]
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = med / base
        note = f" (target <= {TARGET})" if name == "policy_e5m2" else ""
        print(f"{name:>12}: median step {med:.3f}s, ratio {ratio:.3f}{note}")
        rows.append(
            f"{name},{med:.6f},{ratio:.6f},{len(ts)},{args.batch},{torch.get_num_threads()}"
        )
    atomic_write_text(OUT, "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
