"""The bits-needed search on accuracy functions whose answer is known by construction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from precision.rounding import RoundingMode
from training.bits_points import Point, PointCache, PointResult, PointStatus, Setting
from training.bits_search import SearchError, SearchSpec, search_bits
from training.roles import Role

NEAREST, STOCHASTIC = RoundingMode.NEAREST_EVEN, RoundingMode.STOCHASTIC
#: weight needs e >= 4 and these mantissa widths (by construction of the oracle below)
NEED_M = {8: 2, 7: 2, 6: 2, 5: 3, 4: 4}


def threshold_oracle(
    need: Callable[[Setting, int], int | None], good: float = 0.90, bad: float = 0.10
) -> Callable[[Point], PointResult]:
    """Accuracy ``good`` when every setting has at least ``need(setting, seed)`` mantissa
    bits (None: no width passes), else ``bad``; the float32 baseline is ``good``."""

    def evaluate(point: Point) -> PointResult:
        ok = True
        for s in point.settings:
            m = need(s, point.seed)
            ok = ok and m is not None and s.m >= m
        return PointResult(status=PointStatus.FINISHED, accuracy=good if ok else bad, loss=1.0)

    return evaluate


class Counting:
    """Wraps an evaluator; counts the points it trains; raises after ``fail_after``."""

    def __init__(self, fn: Callable[[Point], PointResult], fail_after: int | None = None) -> None:
        self.fn, self.fail_after = fn, fail_after
        self.calls: list[Point] = []

    def __call__(self, point: Point) -> PointResult:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        self.calls.append(point)
        return self.fn(point)


def weight_need(s: Setting, seed: int) -> int | None:
    return NEED_M.get(s.e)


def test_known_answer_per_exponent_and_narrowest() -> None:
    spec = SearchSpec(roles=(Role.WEIGHT,))
    ev = Counting(threshold_oracle(weight_need))
    result = search_bits(spec, ev)
    (v,) = result.variants
    assert v.min_mantissa == {**NEED_M, 3: None}  # stops at the first exponent that fails
    assert v.best == Setting(role=Role.WEIGHT, e=4, m=4)  # 8 bits ties: fewest exponent bits
    assert result.combination is None and not result.notes
    assert len(ev.calls) <= spec.planned_points()
    assert not any(s.e < 3 for p in ev.calls for s in p.settings)  # never below the failure


def test_worst_seed_decides() -> None:
    # seed 1 needs one more mantissa bit at every exponent
    spec = SearchSpec(roles=(Role.WEIGHT,), seeds=(0, 1))
    result = search_bits(spec, threshold_oracle(lambda s, seed: NEED_M.get(s.e, 99) + seed))
    assert result.variants[0].min_mantissa[8] == NEED_M[8] + 1


def test_tolerance_in_points_against_the_same_seed_baseline() -> None:
    # accuracy falls 0.4 points per missing mantissa bit below 6: tolerance 1.0 allows 2 bits
    def evaluate(point: Point) -> PointResult:
        drop = sum(max(0, 6 - s.m) * 0.004 for s in point.settings)
        return PointResult(status=PointStatus.FINISHED, accuracy=0.95 - drop)

    spec = SearchSpec(roles=(Role.ERROR,), tolerance=1.0, min_exponent=8)
    assert search_bits(spec, evaluate).variants[0].min_mantissa == {8: 4}


def test_non_monotonic_neighbour_is_reported() -> None:
    def evaluate(point: Point) -> PointResult:
        (s,) = point.settings or (None,)
        acc = 0.9 if s is None or (s.m >= 3 and s.m != 4) else 0.1  # e*m4 fails, m3 passes
        return PointResult(status=PointStatus.FINISHED, accuracy=acc)

    spec = SearchSpec(roles=(Role.ACTIVATION,), min_exponent=8, max_mantissa=7)
    result = search_bits(spec, evaluate)
    assert result.variants[0].min_mantissa == {8: 3}
    assert any("non-monotonic" in n and "e8m4 fails" in n for n in result.notes), result.notes


def test_rounding_and_aps_are_axes() -> None:
    def need(s: Setting, seed: int) -> int | None:
        if s.role is Role.WEIGHT:
            return 1 if s.rounding is STOCHASTIC else 5  # stochastic rounding rescues weights
        return 0 if s.aps else (2 if s.e >= 5 else None)  # APS rescues narrow exponents

    spec = SearchSpec(roles=(Role.GRAD_COMM, Role.WEIGHT), roundings=(NEAREST, STOCHASTIC))
    result = search_bits(spec, threshold_oracle(need))
    got = {(v.role, v.rounding, v.aps): v.best for v in result.variants}
    assert got[(Role.WEIGHT, NEAREST, False)] == Setting(role=Role.WEIGHT, e=2, m=5)
    assert result.best(Role.WEIGHT) == Setting(role=Role.WEIGHT, e=2, m=1, rounding=STOCHASTIC)
    assert got[(Role.GRAD_COMM, NEAREST, False)] == Setting(role=Role.GRAD_COMM, e=5, m=2)
    assert result.best(Role.GRAD_COMM) == Setting(role=Role.GRAD_COMM, e=2, m=0, aps=True)
    assert result.combination is not None and result.combination.measure.passed


def test_combination_that_fails_although_each_part_passed() -> None:
    def evaluate(point: Point) -> PointResult:
        together = len(point.settings) > 1
        ok = all(s.m >= 2 for s in point.settings) and not together
        return PointResult(status=PointStatus.FINISHED, accuracy=0.9 if ok else 0.2)

    spec = SearchSpec(roles=(Role.ACTIVATION, Role.ERROR), min_exponent=7)
    result = search_bits(spec, evaluate)
    c = result.combination
    assert c is not None and not c.measure.passed
    assert [s.role for s in c.settings] == [Role.ACTIVATION, Role.ERROR]
    assert all(s.m == 2 for s in c.settings)
    assert any("fails although each part passed" in n for n in result.notes)


def test_diverged_points_fail_and_a_failed_baseline_stops_the_search() -> None:
    def evaluate(point: Point) -> PointResult:
        if point.settings and point.settings[0].m < 3:
            return PointResult(status=PointStatus.DIVERGED, accuracy=None)
        return PointResult(status=PointStatus.FINISHED, accuracy=0.9)

    spec = SearchSpec(roles=(Role.WEIGHT,), min_exponent=8)
    assert search_bits(spec, evaluate).variants[0].min_mantissa == {8: 3}
    with pytest.raises(SearchError, match="baseline with seed 0 diverged"):
        search_bits(spec, lambda p: PointResult(status=PointStatus.DIVERGED, accuracy=None))


def test_second_search_trains_nothing(tmp_path: Path) -> None:
    spec = SearchSpec(roles=(Role.WEIGHT, Role.ERROR), seeds=(0, 1))
    first = Counting(threshold_oracle(weight_need))
    a = search_bits(spec, first, cache=PointCache(tmp_path))
    again = Counting(threshold_oracle(weight_need))
    b = search_bits(spec, again, cache=PointCache(tmp_path))
    assert first.calls and again.calls == []
    assert a.variants == b.variants and a.combination == b.combination
    assert len(list((tmp_path / "points").glob("*.json"))) == len(first.calls)


def test_killed_search_resumes_without_retraining(tmp_path: Path) -> None:
    spec = SearchSpec(roles=(Role.WEIGHT, Role.OPTIMIZER_STATE))
    full = Counting(threshold_oracle(weight_need))
    expected = search_bits(spec, full)
    killed = Counting(threshold_oracle(weight_need), fail_after=7)
    with pytest.raises(RuntimeError, match="killed"):
        search_bits(spec, killed, cache=PointCache(tmp_path / "run"))
    assert len(killed.calls) == 7
    rest = Counting(threshold_oracle(weight_need))
    resumed = search_bits(spec, rest, cache=PointCache(tmp_path / "run"))
    assert len(rest.calls) == len(full.calls) - 7
    assert set(rest.calls).isdisjoint(killed.calls)
    assert resumed.variants == expected.variants


def test_evaluate_many_gets_every_variant_and_seed_of_a_round_together() -> None:
    batches: list[list[Point]] = []
    one = threshold_oracle(weight_need)

    def many(points: list[Point]) -> list[PointResult]:
        batches.append(list(points))
        return [one(p) for p in points]

    spec = SearchSpec(roles=(Role.WEIGHT,), seeds=(3, 4, 5), min_exponent=8,
                      roundings=(NEAREST, STOCHASTIC))  # fmt: skip
    result = search_bits(spec, one, evaluate_many=many)  # type: ignore[arg-type]
    assert [v.min_mantissa for v in result.variants] == [{8: 2}, {8: 2}]
    assert [len(b) for b in batches[1:]] == [6] * (len(batches) - 1)  # 2 variants x 3 seeds
    for b in batches[1:]:
        by_setting: dict[Setting, list[int]] = {}
        for p in b:
            by_setting.setdefault(p.settings[0], []).append(p.seed)
        assert {s.rounding for s in by_setting} == {NEAREST, STOCHASTIC}
        assert all(sorted(v) == [3, 4, 5] for v in by_setting.values())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"roles": ("bogus",)}, "role 'bogus'"),
        ({"seeds": ()}, "seeds: needs"),
        ({"tolerance": -1.0}, "tolerance=-1.0"),
        ({"min_exponent": 6, "max_exponent": 4}, "exponent range 6..4"),
        ({"min_exponent": 1}, "exponent range 1..8"),
        ({"roundings": ("nearest", "nearest")}, "repeats"),
    ],
)
def test_bad_spec_raises_one_line(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(SearchError, match=needle) as info:
        SearchSpec(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_point_keys_are_unique_and_file_safe() -> None:
    points = [
        Point(settings=(Setting(role=r, e=e, m=m, rounding=rd, aps=a),), seed=s)
        for r in Role
        for e in (2, 8)
        for m in (0, 10)
        for rd in (NEAREST, STOCHASTIC)
        for a in ((False, True) if r is Role.GRAD_COMM else (False,))
        for s in (0, 1)
    ]
    keys = [p.key for p in points]
    assert len(set(keys)) == len(keys)
    assert all(k.replace("-", "").replace("_", "").isalnum() for k in keys)
    both = Point(settings=(Setting(role=Role.WEIGHT, e=4, m=3), Setting(role=Role.ERROR, e=5, m=2)),
                 seed=0)  # fmt: skip
    assert [s.role for s in both.settings] == [Role.ERROR, Role.WEIGHT]  # canonical order
    with pytest.raises(ValueError, match="APS applies to grad-comm only"):
        Setting(role=Role.WEIGHT, e=4, m=3, aps=True)


def test_spec_round_trips_through_its_dict() -> None:
    spec = SearchSpec(roles=(Role.ERROR, Role.GRAD_COMM), seeds=(2, 3), tolerance=1.5,
                      roundings=(STOCHASTIC,), aps=(True,), max_exponent=6, max_mantissa=4)  # fmt: skip
    assert SearchSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SearchError, match="unknown keys: colour"):
        SearchSpec.from_dict({**spec.to_dict(), "colour": 1})
