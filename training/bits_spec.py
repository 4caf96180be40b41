"""What a bits-needed search covers: roles, seeds, tolerance, rounding modes and ranges."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from precision.rounding import RoundingMode
from training.roles import Role


class SearchError(ValueError):
    """The search cannot run: bad settings, or the float32 baseline itself failed."""


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """What to search.

    Attributes:
        roles: roles searched, in order.
        seeds: seeds each point is trained with (the worst decides).
        tolerance: allowed accuracy drop against float32, in percentage points.
        roundings: rounding modes tried for every role.
        aps: APS settings tried for grad-comm.
        max_exponent: widest exponent tried (the search descends from it).
        min_exponent: narrowest exponent tried (2: IEEE formats need two).
        max_mantissa: widest mantissa tried.

    Raises:
        SearchError: empty lists, duplicates, or widths out of range.
    """

    roles: tuple[Role, ...] = tuple(Role)
    seeds: tuple[int, ...] = (0,)
    tolerance: float = 0.5
    roundings: tuple[RoundingMode, ...] = (RoundingMode.NEAREST_EVEN,)
    aps: tuple[bool, ...] = (False, True)
    max_exponent: int = 8
    min_exponent: int = 2
    max_mantissa: int = 10

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "roles", tuple(Role.parse(r) for r in self.roles))
            roundings = tuple(RoundingMode.parse(r) for r in self.roundings)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        object.__setattr__(self, "roundings", roundings)
        for name in ("roles", "seeds", "roundings", "aps"):
            values = getattr(self, name)
            if not values:
                raise SearchError(f"{name}: needs at least one value")
            if len(set(values)) != len(values):
                raise SearchError(f"{name}: {', '.join(map(str, values))} repeats a value")
        if not self.tolerance >= 0:
            raise SearchError(f"tolerance={self.tolerance}: must be >= 0 accuracy points")
        if not 2 <= self.min_exponent <= self.max_exponent <= 11:
            raise SearchError(
                f"exponent range {self.min_exponent}..{self.max_exponent}: need 2 <= min <= max <= 11"
            )
        if not 0 <= self.max_mantissa <= 52:
            raise SearchError(f"max_mantissa={self.max_mantissa}: must be in 0..52")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved as ``search.json``)."""
        return {
            "roles": [r.value for r in self.roles], "seeds": list(self.seeds),
            "tolerance": self.tolerance, "roundings": [r.value for r in self.roundings],
            "aps": list(self.aps), "max_exponent": self.max_exponent,
            "min_exponent": self.min_exponent, "max_mantissa": self.max_mantissa,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            SearchError: unknown keys or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            raise SearchError(f"search.json has unknown keys: {', '.join(sorted(set(d) - known))}")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)

    def variants(self, role: Role) -> list[tuple[RoundingMode, bool]]:
        """(rounding, APS) pairs searched for ``role``."""
        aps = self.aps if role is Role.GRAD_COMM else (False,)
        return [(r, a) for a in aps for r in self.roundings]

    def planned_points(self) -> int:
        """An upper bound of the points a search trains (for a progress bar)."""
        steps = (self.max_mantissa + 1).bit_length() + 3  # widest, bisection, neighbours
        widths = self.max_exponent - self.min_exponent + 1
        per_variant = widths * steps
        variants = sum(len(self.variants(r)) for r in self.roles)
        return len(self.seeds) * (1 + variants * per_variant + (len(self.roles) > 1))
