"""Low-precision all-reduce on real gloo processes, against the single-process reference.

One spawn per world size runs every scenario (starting processes dominates the cost); the
tests below read its results.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from dist_harness import run_workers, values

from precision.collectives import (
    LowPrecisionState,
    NonFiniteGradientError,
    NonFinitePolicy,
    Reduction,
    all_reduce_gradients,
    ordered,
    reference_reduce,
)
from precision.quantize import largest_value, quantize
from precision.registry import BFLOAT16, FLOAT8_E4M3, FLOAT8_E5M2, FLOAT32, from_bits

pytestmark = pytest.mark.distributed

E3M0 = from_bits(4)
SHAPES = [(7, 5), (33,), (4, 3, 2), (1,), (257,)]
CARRIED = 32  # a MIN_CARRIED under which the long layers of SHAPES carry their shift
MIN_CARRIED = ordered.MIN_CARRIED


def grads(rank: int, scale: float = 1.0, seed: int = 0) -> list[torch.Tensor]:
    """Per-rank gradients with layer magnitudes 10**-3 .. 10**1 (times ``scale``)."""
    g = torch.Generator().manual_seed(1000 * seed + rank)
    return [torch.randn(s, generator=g) * scale * 10.0 ** (k - 3) for k, s in enumerate(SHAPES)]


def configs(world: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"fmt": None}]
    for fmt in (E3M0, FLOAT8_E4M3, FLOAT8_E5M2, BFLOAT16):
        for red in Reduction:
            # carrier sums in float32 in the all-reduce's own order: exact (so order-free)
            # for narrow-range formats only, see reference_reduce
            if red is Reduction.CARRIER and world > 2 and fmt in (FLOAT8_E5M2, BFLOAT16):
                continue
            for aps, rnd in ((True, "nearest"), (False, "nearest"), (True, "stochastic")):
                out.append({"fmt": fmt, "reduction": red, "aps": aps, "rounding": rnd, "seed": 5})
    out.append({"fmt": FLOAT8_E5M2, "aps": False, "loss_scale": 2.0**10, "reduction": "ring"})
    out.append({"fmt": E3M0, "headroom": 0, "reduction": "rank"})
    if world == 4:
        for grid in ((1, 4), (4, 1)):
            out.append({"fmt": FLOAT8_E4M3, "reduction": "torus", "grid": grid})
    return out


def t1() -> torch.Tensor:
    return torch.tensor([0.01, 0.0, 1.0, 0.0])  # one element underflows, two are zero


def carried_configs(world: int) -> list[dict[str, Any]]:
    return [kw for kw in configs(world) if kw["fmt"] is not None and kw.get("aps", True)]


def _params(gs: list[torch.Tensor]) -> list[torch.Tensor]:
    ps = [torch.zeros_like(g, requires_grad=True) for g in gs]
    for p, g in zip(ps, gs, strict=True):
        p.grad = g.clone()
    return ps


def _reduce(gs: list[torch.Tensor], **kw: Any) -> tuple[list[torch.Tensor], Any]:
    ps = _params(gs)
    report = all_reduce_gradients(ps, LowPrecisionState(**kw))
    return [p.grad for p in ps], report  # type: ignore[misc]


def scenarios(rank: int, world: int) -> dict[str, Any]:
    import torch.distributed as dist

    res: dict[str, Any] = {}
    res["configs"] = [_reduce(grads(rank), **kw) for kw in configs(world)]
    ordered.MIN_CARRIED = CARRIED  # every layer but two carries its APS shift in the format
    res["carried"] = [_reduce(grads(rank), **kw) for kw in carried_configs(world)]
    ordered.MIN_CARRIED = MIN_CARRIED

    flat = torch.cat([g.reshape(-1) for g in grads(rank)])
    dist.all_reduce(flat)
    plain = flat / world
    fp32 = _reduce(grads(rank), fmt=FLOAT32, aps=False)[0]
    base = _reduce(grads(rank), fmt=None)[0]
    res["plain"] = [torch.cat([g.reshape(-1) for g in x]) for x in (fp32, base)] + [plain]

    tiny = grads(rank, scale=1e-8, seed=1)
    res["tiny"] = {
        (fmt.name, aps): _reduce(tiny, fmt=fmt, aps=aps, measure_error=True)
        for fmt in (E3M0, FLOAT8_E5M2)
        for aps in (False, True)
    }

    special = grads(rank)
    special[0] = torch.zeros_like(special[0])
    special[1][3] = math.nan if rank == world - 1 else 1.0
    special[2][0, 0, 0] = math.inf
    res["special"] = _reduce(special, fmt=FLOAT8_E4M3, reduction="ring")
    try:
        _reduce(special, fmt=FLOAT8_E4M3, nonfinite=NonFinitePolicy.RAISE)
        res["raised"] = None
    except NonFiniteGradientError as exc:
        res["raised"] = str(exc)
    try:
        _reduce(special, fmt=FLOAT8_E4M3, aps=False, nonfinite=NonFinitePolicy.RAISE)
        res["raised_noaps"] = None
    except NonFiniteGradientError as exc:
        res["raised_noaps"] = str(exc)
    res["after_raise"] = _reduce(grads(rank), fmt=FLOAT8_E4M3)[0]  # group still usable

    # e3m0 tops out at 8: 4 + 4 reaches it, 8 + 8 and 100 go beyond
    limits = [torch.full((6,), 4.0), torch.full((4,), 8.0), torch.tensor([100.0, 1.0]), t1()]
    res["limits"] = _reduce(limits, fmt=E3M0, aps=False)
    res["limits_each"] = [_reduce([t], fmt=E3M0, aps=False)[1] for t in limits]
    res["notel"] = _reduce(grads(rank), **configs(world)[1], telemetry=False)

    clamp = grads(rank, scale=1e-30, seed=2)
    clamp[0] = torch.zeros_like(clamp[0])
    res["clamp"] = _reduce(clamp, fmt=BFLOAT16)

    state = LowPrecisionState(fmt=E3M0, reuse_shifts=2)
    ps = _params(grads(rank))
    res["reuse"] = [all_reduce_gradients(ps, state).shifts_exchanged for _ in range(4)]
    return res


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"W{w}")
def run(request: pytest.FixtureRequest) -> tuple[int, list[dict[str, Any]]]:
    world = request.param
    return world, values(run_workers(scenarios, world))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def test_each_reduction_matches_reference_bit_for_bit(run: tuple[int, list[Any]]) -> None:
    world, res = run
    inputs = [grads(r) for r in range(world)]
    for i, kw in enumerate(configs(world)):
        want = reference_reduce(inputs, LowPrecisionState(**kw))
        for rank in range(world):
            got = res[rank]["configs"][i][0]
            if kw["fmt"] is None and world > 2:  # float32 all-reduce order is gloo's own
                ok = all(
                    torch.allclose(g, w, rtol=1e-5, atol=1e-6 * float(w.abs().max()))
                    for g, w in zip(got, want, strict=True)
                )
            else:
                ok = all(_same(g, w) for g, w in zip(got, want, strict=True))
            assert ok, f"config {kw} rank {rank} differs from reference_reduce"


def test_carried_shifts_match_reference_bit_for_bit(
    run: tuple[int, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    world, res = run
    inputs = [grads(r) for r in range(world)]
    monkeypatch.setattr(ordered, "MIN_CARRIED", CARRIED)
    for i, kw in enumerate(carried_configs(world)):
        want = reference_reduce(inputs, LowPrecisionState(**kw))
        for rank in range(world):
            got, report = res[rank]["carried"][i]
            assert all(_same(g, w) for g, w in zip(got, want, strict=True)), (kw, rank)
            out, multiplied = res[rank]["configs"][configs(world).index(kw)]
            assert report.shifts == multiplied.shifts
            if kw.get("rounding", "nearest") == "nearest":  # same bits, so the same counts
                assert all(_same(g, w) for g, w in zip(got, out, strict=True))
                for name in ("underflow", "overflow", "saturated"):
                    assert getattr(report, name) == getattr(multiplied, name), (kw, name)


def test_float32_format_without_aps_is_the_plain_all_reduce(run: tuple[int, list[Any]]) -> None:
    _, res = run
    for r in res:
        fp32, base, plain = r["plain"]
        assert torch.equal(fp32, plain)
        assert torch.equal(base, plain)


def test_tiny_gradients_flush_without_aps_and_survive_with_it(run: tuple[int, list[Any]]) -> None:
    world, res = run
    inputs = [grads(r, scale=1e-8, seed=1) for r in range(world)]
    for r in res:
        for name in ("float8_e5m2", E3M0.name):
            out, report = r["tiny"][(name, False)]
            assert all(bool((g == 0).all()) for g in out)
            assert report.rel_error == 1.0 and report.underflow == 1.0
            out, report = r["tiny"][(name, True)]
            assert report.rel_error < (0.35 if name == E3M0.name else 0.15)
            assert report.underflow < 0.5
            assert all(s.rel_error is not None for s in report.layers)
        fmt_out, _ = r["tiny"][(E3M0.name, True)]
        want = reference_reduce(inputs, LowPrecisionState(fmt=E3M0))
        assert all(_same(g, w) for g, w in zip(fmt_out, want, strict=True))


def test_zero_and_nonfinite_layers(run: tuple[int, list[Any]]) -> None:
    _, res = run
    for r in res:
        out, report = r["special"]
        assert bool((out[0] == 0).all())  # all-zero layer: zero, no NaN from log2(0)
        assert report.layers[0].exponent is None and report.layers[0].shift == 0
        assert report.nonfinite_layers == (1, 2)
        assert math.isnan(out[1][3]) and bool(torch.isfinite(out[1][:3]).all())
        assert report.layers[1].shift == 0  # reported, not given a made-up shift
        assert bool(torch.isfinite(out[3]).all()) and bool(torch.isfinite(out[4]).all())
        assert r["raised"] is not None and "[1, 2]" in r["raised"]
        assert r["raised_noaps"] is not None
        assert bool(torch.isfinite(torch.cat([g.reshape(-1) for g in r["after_raise"]])).all())


def test_e8_format_clamps_shift_instead_of_making_nan(run: tuple[int, list[Any]]) -> None:
    world, res = run
    inputs = [grads(r, scale=1e-30, seed=2) for r in range(world)]
    for x in inputs:
        x[0].zero_()
    exact = [sum(x[k] for x in inputs) / world for k in range(len(SHAPES))]
    mag = [sum(x[k].abs() for x in inputs) / world for k in range(len(SHAPES))]
    for r in res:
        out, report = r["clamp"]
        assert all(s.shift is not None and s.shift <= 127 for s in report.layers)
        for g, e, m in zip(out, exact, mag, strict=True):
            assert bool(torch.isfinite(g).all())
            assert bool(((g - e).abs() <= 2**-6 * m).all())  # bfloat16 rounding only
        assert bool((out[0] == 0).all())


def _oracle_counts(
    kw: dict[str, Any], inputs: list[torch.Tensor], got: list[torch.Tensor], report: Any, world: int
) -> list[tuple[int, int, int]]:
    """Per layer, (flushed, beyond, at_limit) counted afresh: the layer's input scaled by the
    loss scale and its reported APS shift and rounded on its own (flushed: only for
    nearest rounding, else -1), and its average scaled back to the rounded sum."""
    fmt, top = kw["fmt"], largest_value(kw["fmt"])
    out = []
    for x, y, layer in zip(inputs, got, report.layers, strict=True):
        scale = kw.get("loss_scale", 1.0) * 2.0 ** (layer.shift or 0)
        v = x.reshape(-1) * scale
        flushed = -1
        if kw.get("rounding", "nearest") == "nearest":
            flushed = int(((v != 0) & (quantize(v, fmt) == 0)).sum())
        beyond = int((torch.isfinite(v) & (v.abs() > top)).sum())
        at_limit = int(((y.reshape(-1) * world * scale).abs() >= top).sum())
        out.append((flushed, beyond, at_limit))
    return out


def _own_call(kw: dict[str, Any], sizes: list[int], min_carried: int) -> list[bool]:
    """Which layers are rounded in a call of their own (so report their own counts)."""
    if not kw.get("aps", True):
        return [len(sizes) == 1] * len(sizes)
    return [n >= min_carried for n in sizes]


@pytest.mark.parametrize("key", ["configs", "carried"])
def test_counts_match_a_separate_count_of_each_layer(run: tuple[int, list[Any]], key: str) -> None:
    """The totals tallied by the rounding passes equal a fresh count over all layers, and a
    layer rounded in a call of its own reports exactly its own counts (others: None)."""
    world, res = run
    kws = configs(world) if key == "configs" else carried_configs(world)
    sizes = [math.prod(s) for s in SHAPES]
    own = {"configs": MIN_CARRIED, "carried": CARRIED}[key]
    for i, kw in enumerate(kws):
        if kw["fmt"] is None:
            continue
        for rank, r in enumerate(res):
            got, report = r[key][i]
            want = _oracle_counts(kw, grads(rank), got, report, world)
            first = 0 if kw.get("rounding", "nearest") == "nearest" else 1
            totals = [sum(c[k] for c in want) for k in range(3)]
            assert report.totals is not None
            assert list(report.totals)[first:] == totals[first:], (kw, rank)
            n = sum(sizes)
            assert report.saturated == report.totals[2] / n and report.overflow == totals[1] / n
            for layer, mine, alone in zip(
                report.layers, want, _own_call(kw, sizes, own), strict=True
            ):
                fractions = (layer.underflow, layer.overflow, layer.saturated)
                if not alone:
                    assert fractions == (None, None, None), (kw, layer.index)
                    continue
                expect = [c / layer.numel for c in mine]
                assert list(fractions)[first:] == expect[first:], (kw, rank, layer.index)
    assert any(any(_own_call(kw, sizes, own)) for kw in kws) == (key == "carried")


def test_saturation_and_overflow_counts(run: tuple[int, list[Any]]) -> None:
    """A call over several layers counts its totals; a layer alone in a call, its own."""
    _, res = run
    for r in res:
        _, report = r["limits"]
        n = sum(s.numel for s in report.layers)
        assert report.totals == (1, 1, 6 + 4 + 1)
        assert report.saturated == 11 / n and report.overflow == 1 / n
        assert report.underflow == 1 / n
        assert all(s.saturated is None and s.underflow is None for s in report.layers)
        each = [rep.layers[0] for rep in r["limits_each"]]
        assert [s.saturated for s in each] == [1.0, 1.0, 0.5, 0.0]
        assert [s.overflow for s in each] == [0.0, 0.0, 0.5, 0.0]
        assert [s.underflow for s in each] == [0.0, 0.0, 0.0, 0.25]
        summed = [
            sum(int(getattr(s, f) * s.numel) for s in each)
            for f in ("underflow", "overflow", "saturated")
        ]
        assert tuple(summed) == report.totals


def test_telemetry_off_counts_nothing(run: tuple[int, list[Any]]) -> None:
    _, res = run
    for r in res:
        got, report = r["notel"]
        want, counted = r["configs"][1]
        assert all(_same(g, w) for g, w in zip(got, want, strict=True))
        assert counted.totals is not None and counted.underflow is not None
        assert report.totals is None and report.underflow is None and report.saturated is None
        assert all(s.overflow is None for s in report.layers)


def test_reuse_shifts_skips_the_max_exchange(run: tuple[int, list[Any]]) -> None:
    _, res = run
    for r in res:
        assert r["reuse"] == [True, False, False, True]


def test_results_identical_on_every_rank(run: tuple[int, list[Any]]) -> None:
    world, res = run
    for i in range(len(configs(world))):
        first = res[0]["configs"][i][0]
        for r in res[1:]:
            assert all(_same(a, b) for a, b in zip(first, r["configs"][i][0], strict=True))
