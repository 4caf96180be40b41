"""The search for the fewest exponent and mantissa bits each tensor role needs.

For every role asked for, and every variant of it (rounding mode; with and without APS for
grad-comm), with all other roles in float32:

1. exponent bits descend from ``max_exponent`` (8): at each width the role is first tried
   with the widest mantissa; when that fails, fewer exponent bits are not tried (it fails
   for every mantissa width);
2. the fewest passing mantissa bits are found by bisection, which assumes accuracy grows
   with the mantissa; the answer's neighbours are then evaluated, and a failing wider or a
   passing narrower neighbour is reported as non-monotonic;
3. a point passes when, for every seed, its final test accuracy is within ``tolerance``
   points of the float32 run with the same seed (the worst seed decides).

All variants advance in lockstep: each round's next points (times every seed) go to the
evaluator together, so a cluster trains them side by side. Then the narrowest answer of
every role is run together, and the search reports when that
combination fails although each part passed. The trainer is a callable ``evaluate(point)
-> PointResult``, so the search is tested on accuracy functions with known answers; every
result goes through a :class:`~training.bits_points.PointCache` first.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

from precision.rounding import RoundingMode
from training.bits_points import Point, PointCache, PointResult, PointStatus, Setting
from training.bits_spec import SearchError, SearchSpec
from training.roles import Role

__all__ = [
    "BitsSearch", "Combination", "Evaluate", "EvaluateMany", "Measure", "PointEvent",
    "SearchError", "SearchResult", "SearchSpec", "VariantAnswer", "search_bits",
]  # fmt: skip

Evaluate = Callable[[Point], PointResult]
EvaluateMany = Callable[[Sequence[Point]], Sequence[PointResult]]


@dataclass(frozen=True)
class Measure:
    """A setting measured over every seed: its worst accuracy and drop, and the verdict."""

    passed: bool
    accuracy: float | None
    drop: float | None  # worst baseline - accuracy, in points (None: no accuracy)


@dataclass(frozen=True)
class VariantAnswer:
    """The answer for one role variant.

    Attributes:
        role, rounding, aps: the variant.
        min_mantissa: exponent bits -> fewest passing mantissa bits (None: fails at every
            width up to ``max_mantissa``; the search stops descending there).
        best: the narrowest passing format (fewest total bits, then fewest exponent bits).
        notes: non-monotonic neighbours found while checking.
    """

    role: Role
    rounding: RoundingMode
    aps: bool
    min_mantissa: dict[int, int | None]
    best: Setting | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Combination:
    """Every role's answer trained together."""

    settings: tuple[Setting, ...]
    measure: Measure


@dataclass(frozen=True)
class SearchResult:
    """The search's answers.

    Attributes:
        baseline: seed -> float32 result.
        variants: one answer per role variant, in search order.
        combination: the confirming run (None with fewer than two roles answered).
        notes: what a reader must know (non-monotonic points, a failing combination).
        points: every point the search looked at, with its result, in order.
    """

    baseline: dict[int, PointResult]
    variants: tuple[VariantAnswer, ...]
    combination: Combination | None
    notes: tuple[str, ...] = field(default=())
    points: tuple[tuple[Point, PointResult], ...] = field(default=())

    def best(self, role: Role) -> Setting | None:
        """The narrowest answer of ``role`` over its variants (nearest and no-APS win ties)."""
        found = [v.best for v in self.variants if v.role is role and v.best is not None]
        return min(found, key=_narrowness, default=None)


def _narrowness(s: Setting) -> tuple[int, int, bool, bool]:
    return (s.e + s.m, s.e, s.rounding is not RoundingMode.NEAREST_EVEN, s.aps)


@dataclass(frozen=True)
class PointEvent:
    """Reported after every point: done so far, the planned upper bound, and the point."""

    done: int
    planned: int
    point: Point
    result: PointResult
    cached: bool


class BitsSearch:
    """Runs a :class:`SearchSpec` through an evaluator, caching every point.

    Args:
        spec: what to search.
        evaluate: trains one point.
        cache: where results are kept (None: in memory only).
        evaluate_many: trains several independent points at once (e.g. a job array);
            defaults to calling ``evaluate`` on each.
        on_point: receives a :class:`PointEvent` after every point.
    """

    def __init__(
        self,
        spec: SearchSpec,
        evaluate: Evaluate,
        *,
        cache: PointCache | None = None,
        evaluate_many: EvaluateMany | None = None,
        on_point: Callable[[PointEvent], None] | None = None,
    ) -> None:
        self.spec, self.evaluate, self.cache = spec, evaluate, cache
        self.evaluate_many = evaluate_many
        self.on_point = on_point
        self.memo: dict[Point, PointResult] = {}
        self.trained = 0
        self.done = 0
        self.baseline: dict[int, PointResult] = {}

    # -- evaluation through the cache -------------------------------------------------------

    def _record(self, point: Point, result: PointResult, cached: bool) -> None:
        self.memo[point] = result
        self.done += 1
        if self.on_point is not None:
            planned = max(self.spec.planned_points(), self.done)
            self.on_point(PointEvent(self.done, planned, point, result, cached))

    def results(self, points: Sequence[Point]) -> list[PointResult]:
        """Results of ``points``: from memory or the cache, else trained (and cached)."""
        missing = []
        for p in dict.fromkeys(points):
            if p in self.memo:
                continue
            hit = None if self.cache is None else self.cache.get(p)
            if hit is not None:
                self._record(p, hit, cached=True)
            else:
                missing.append(p)
        if missing and self.evaluate_many is not None:
            for p, r in zip(missing, self.evaluate_many(missing), strict=True):
                self._store(p, r)
        else:
            for p in missing:  # one at a time: each is cached before the next starts
                self._store(p, self.evaluate(p))
        return [self.memo[p] for p in points]

    def _store(self, point: Point, result: PointResult) -> None:
        self.trained += 1
        if self.cache is not None:
            self.cache.put(point, result)
        self._record(point, result, cached=False)

    def measure(self, settings: tuple[Setting, ...]) -> Measure:
        """Train ``settings`` with every seed; the worst seed decides."""
        seeds = self.spec.seeds
        got = self.results([Point(settings=settings, seed=s) for s in seeds])
        drops, accs = [], []
        passed = True
        for seed, r in zip(seeds, got, strict=True):
            base = self.baseline[seed].accuracy
            if r.status is not PointStatus.FINISHED or r.accuracy is None or base is None:
                passed = False
                continue
            accs.append(r.accuracy)
            drops.append(100 * (base - r.accuracy))
        if len(accs) < len(seeds):
            return Measure(False, min(accs, default=None), None)
        worst = max(drops)
        passed = passed and worst <= self.spec.tolerance + 1e-9
        return Measure(passed, min(accs), worst)

    # -- the search -------------------------------------------------------------------------

    def run(self) -> SearchResult:
        """Search every role, then confirm the combination.

        Raises:
            SearchError: if the float32 baseline diverged or failed for some seed.
        """
        spec = self.spec
        base = self.results([Point(settings=(), seed=s) for s in spec.seeds])
        for seed, r in zip(spec.seeds, base, strict=True):
            if r.status is not PointStatus.FINISHED or r.accuracy is None:
                raise SearchError(
                    f"float32 baseline with seed {seed} {r.status.value}: nothing to compare "
                    f"against (lower the learning rate?) {r.detail}".rstrip()
                )
        self.baseline = dict(zip(spec.seeds, base, strict=True))
        answers = self.search_variants(
            [(role, r, aps) for role in spec.roles for r, aps in spec.variants(role)]
        )
        notes = [n for a in answers for n in a.notes]
        result = SearchResult(self.baseline, tuple(answers), None)
        chosen = tuple(s for r in spec.roles if (s := result.best(r)) is not None)
        combination = None
        if len(chosen) > 1:
            combination = Combination(chosen, self.measure(chosen))
            if not combination.measure.passed:
                notes.append(
                    "the combination " + ", ".join(s.label for s in chosen)
                    + " fails although each part passed alone"
                )  # fmt: skip
        return SearchResult(
            self.baseline, tuple(answers), combination, tuple(notes), tuple(self.memo.items())
        )

    def search_variant(self, role: Role, rounding: RoundingMode, aps: bool) -> VariantAnswer:
        """Descend the exponent, bisect the mantissa, check the answer's neighbours."""
        return self.search_variants([(role, rounding, aps)])[0]

    def search_variants(
        self, variants: Sequence[tuple[Role, RoundingMode, bool]]
    ) -> list[VariantAnswer]:
        """Search several variants in lockstep: each round trains the next point of every
        variant (times every seed) as one batch, so a cluster runs them side by side."""
        steps = [self._steps(*v) for v in variants]
        answers: list[VariantAnswer | None] = [None] * len(steps)
        asked: dict[int, Setting] = {}

        def advance(i: int, measure: Measure | None) -> None:
            try:
                asked[i] = next(steps[i]) if measure is None else steps[i].send(measure)
            except StopIteration as stop:
                answers[i] = stop.value
                asked.pop(i, None)

        for i in range(len(steps)):
            advance(i, None)
        while asked:
            self.results([Point(settings=(s,), seed=seed)
                          for s in asked.values() for seed in self.spec.seeds])  # fmt: skip
            for i, setting in list(asked.items()):
                advance(i, self.measure((setting,)))
        return [a for a in answers if a is not None]

    def _steps(
        self, role: Role, rounding: RoundingMode, aps: bool
    ) -> Generator[Setting, Measure, VariantAnswer]:
        """One variant's search: yields the setting to measure next, receives its measure."""
        spec = self.spec

        def at(e: int, m: int) -> Setting:
            return Setting(role=role, e=e, m=m, rounding=rounding, aps=aps)

        found: dict[int, int | None] = {}
        notes: list[str] = []
        for e in range(spec.max_exponent, spec.min_exponent - 1, -1):
            if not (yield at(e, spec.max_mantissa)).passed:
                found[e] = None
                break
            lo, hi = -1, spec.max_mantissa  # lo fails (or is below 0), hi passes
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if (yield at(e, mid)).passed:
                    hi = mid
                else:
                    lo = mid
            found[e] = hi
            for n in (hi - 1, hi + 1):
                if 0 <= n <= spec.max_mantissa and (yield at(e, n)).passed != (n > hi):
                    verdict = "passes" if n < hi else "fails"
                    notes.append(f"non-monotonic: {at(e, hi).label} passes but e{e}m{n} {verdict}")
        ok = [at(e, m) for e, m in found.items() if m is not None]
        best = min(ok, key=_narrowness, default=None)
        return VariantAnswer(role, rounding, aps, found, best, tuple(notes))


def search_bits(
    spec: SearchSpec,
    evaluate: Evaluate,
    *,
    cache: PointCache | None = None,
    evaluate_many: EvaluateMany | None = None,
    on_point: Callable[[PointEvent], None] | None = None,
) -> SearchResult:
    """Run the search (see the module docstring).

    Args:
        spec: roles, seeds, tolerance and ranges.
        evaluate: trains one point and returns its result.
        cache: point store of the run directory (None: nothing kept).
        evaluate_many: trains several independent points at once.
        on_point: progress callback.

    Returns:
        The answers.

    Raises:
        SearchError: the float32 baseline failed.
    """
    return BitsSearch(
        spec, evaluate, cache=cache, evaluate_many=evaluate_many, on_point=on_point
    ).run()
