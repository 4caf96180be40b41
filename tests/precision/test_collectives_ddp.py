"""DDP comm hook vs all_reduce_gradients, worker failures, and the NCCL/CUDA path."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
import torch
from dist_harness import run_workers, values
from torch import nn

from precision.collectives import (
    LowPrecisionState,
    Reduction,
    all_reduce_gradients,
    lowp_allreduce_hook,
    reference_reduce,
)
from precision.registry import from_bits

pytestmark = pytest.mark.distributed

E3M0 = from_bits(4)
PG_TIMEOUT_S = 10.0


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _batch(rank: int, step: int) -> torch.Tensor:
    return torch.randn(6, 8, generator=torch.Generator().manual_seed(100 * rank + step))


def ddp_vs_function(rank: int, world: int) -> dict[str, list[Any]]:
    return {red: _ddp_vs_function(rank, red) for red in ("carrier", "ring")}


def _ddp_vs_function(rank: int, reduction: str) -> list[Any]:
    from torch.nn.parallel import DistributedDataParallel as DDP

    model, twin = _model(), _model()
    # A tiny bucket cap gives several buckets once DDP rebuilds them after the first step,
    # so the hook then sees the parameters spread over several calls.
    ddp = DDP(model, bucket_cap_mb=0.0002)
    hook_state = LowPrecisionState(fmt=E3M0, reduction=Reduction(reduction))
    ddp.register_comm_hook(hook_state, lowp_allreduce_hook)
    fn_state = LowPrecisionState(fmt=E3M0, reduction=Reduction(reduction))
    out = []
    for step in range(2):  # DDP rebuilds its buckets after the first step
        for m in (model, twin):
            m.zero_grad()
        ddp(_batch(rank, step)).pow(2).mean().backward()
        twin(_batch(rank, step)).pow(2).mean().backward()
        all_reduce_gradients(twin, fn_state)
        out.append(
            (
                [p.grad.clone() for p in model.parameters()],  # type: ignore[union-attr]
                [p.grad.clone() for p in twin.parameters()],  # type: ignore[union-attr]
                len(hook_state.last_reports),
                hook_state.step,
            )
        )
    return out


def test_ddp_hook_gives_the_same_gradients_as_all_reduce_gradients() -> None:
    outs = [o for by_red in values(run_workers(ddp_vs_function, 2)) for o in by_red.values()]
    for rank_out in outs:
        for step, (hooked, direct, n_reports, counter) in enumerate(rank_out):
            assert all(torch.equal(a, b) for a, b in zip(hooked, direct, strict=True))
            assert any(bool((g != 0).any()) for g in hooked)
            assert counter == step + 1
            # DDP starts with one bucket and rebuilds by bucket_cap_mb after step 0
            assert n_reports == 1 if step == 0 else n_reports > 1


def dies(rank: int, world: int) -> str:
    ps = [torch.ones(10, requires_grad=True)]
    ps[0].grad = torch.ones(10)
    if rank == world - 1:
        os._exit(3)
    for _ in range(5):
        all_reduce_gradients(ps, LowPrecisionState(fmt=E3M0, reduction=Reduction.RING))
    return "finished without noticing"


def raises(rank: int, world: int) -> str:
    ps = [torch.ones(10, requires_grad=True)]
    ps[0].grad = torch.ones(10)
    if rank == world - 1:
        raise RuntimeError("worker failed on purpose")
    for _ in range(5):
        all_reduce_gradients(ps, LowPrecisionState(fmt=E3M0, reduction=Reduction.RANK))
    return "finished without noticing"


def test_dead_worker_makes_the_others_fail_not_hang() -> None:
    res = run_workers(dies, 2, pg_timeout_s=PG_TIMEOUT_S, join_timeout_s=60)
    assert res[1].status == "died" and res[1].exitcode == 3
    assert res[0].status == "error", res[0]
    assert "RuntimeError" in res[0].error or "DistBackendError" in res[0].error


def test_raising_worker_makes_the_others_fail_not_hang() -> None:
    res = run_workers(raises, 4, pg_timeout_s=PG_TIMEOUT_S, join_timeout_s=60)
    assert res[3].status == "error" and "on purpose" in res[3].error
    for r in res[:3]:
        assert r.status == "error", r  # none finished, none hung


def on_cuda(rank: int, world: int, reduction: str) -> list[torch.Tensor]:
    torch.cuda.set_device(rank)
    g = torch.Generator().manual_seed(rank)
    ps = [torch.zeros(s, device="cuda", requires_grad=True) for s in ((7, 5), (40000,))]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g).cuda() * 1e-6
    all_reduce_gradients(ps, LowPrecisionState(fmt=E3M0, reduction=Reduction(reduction)))
    return [p.grad.cpu() for p in ps]  # type: ignore[union-attr]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (NCCL path)")
@pytest.mark.parametrize("reduction", ["carrier", "rank", "ring", "torus"])
def test_nccl_cuda_path_matches_reference(reduction: str) -> None:
    world = min(2, torch.cuda.device_count())
    res = values(run_workers(on_cuda, world, reduction, backend="nccl", pg_timeout_s=60))
    inputs = []
    for rank in range(world):
        g = torch.Generator().manual_seed(rank)
        inputs.append([torch.randn(s, generator=g) * 1e-6 for s in ((7, 5), (40000,))])
    want = reference_reduce(inputs, LowPrecisionState(fmt=E3M0, reduction=Reduction(reduction)))
    for got in res:
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_state_is_copyable_before_use() -> None:
    state = LowPrecisionState(fmt=E3M0)
    assert copy.deepcopy(state).fmt == E3M0


def async_vs_sync(rank: int, world: int) -> list[Any]:
    from precision.collectives import NonFinitePolicy
    from precision.collectives.pipeline import reduce_flat, reduce_flat_async

    g = torch.Generator().manual_seed(rank)
    sizes = [5, 3000, 70]
    out = []
    for kw in (
        {"aps": True},
        {"aps": False},
        {"aps": True, "telemetry": False},
        {"aps": True, "rounding": "stochastic"},
        {"fmt": None},
        {"aps": True, "reduction": Reduction.RING},
    ):
        if kw.get("rounding"):
            from precision import RoundingMode

            kw = {**kw, "rounding": RoundingMode.STOCHASTIC}
        flat = torch.randn(sum(sizes), generator=g) * 1e-3
        state_kw = {"fmt": E3M0, **kw}
        a, ra = reduce_flat(flat.clone(), sizes, LowPrecisionState(**state_kw))
        fut = reduce_flat_async(flat.clone(), sizes, LowPrecisionState(**state_kw))
        b, rb = fut.wait()
        out.append((torch.equal(a, b), ra == rb))
    bad = torch.ones(sum(sizes))
    bad[7] = float("nan")
    fut = reduce_flat_async(
        bad, sizes, LowPrecisionState(fmt=E3M0, aps=False, nonfinite=NonFinitePolicy.RAISE)
    )
    try:
        fut.wait()
        out.append("no error")
    except Exception as exc:  # the callback's error reaches whoever waits
        out.append("Inf or NaN" in str(exc))
    return out


def test_async_reduction_gives_the_sync_bits_and_reports() -> None:
    for rank_out in values(run_workers(async_vs_sync, 2)):
        *cases, raised = rank_out
        assert all(same_bits and same_report for same_bits, same_report in cases), cases
        assert raised is True
