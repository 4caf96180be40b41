"""Points of a bits-needed search, their results, and the cache that makes searches resumable.

A *point* is one training run: a seed plus the low-precision settings it applies (none for
the float32 baseline, one for a single role, several for the confirming combination). Its
``key`` is a readable, file-name safe label; the cache stores each result as
``<run-dir>/points/<key>.json`` (written atomically), so a killed search resumes where it
stopped and a repeated search trains nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from precision.common.files import atomic_write_text
from precision.formats import FloatFormat
from precision.rounding import RoundingMode
from training.records import RecordError
from training.roles import Role

POINT_SCHEMA = 1


class PointStatus(str, Enum):
    """How a point's training ended."""

    FINISHED = "finished"
    DIVERGED = "diverged"  # a non-finite loss: fails the tolerance
    FAILED = "failed"  # the run itself failed (e.g. a cluster job, twice)


@dataclass(frozen=True, kw_only=True, order=True)
class Setting:
    """One role held in ``e<e>m<m>`` with a rounding mode (and, for grad-comm, APS).

    Raises:
        ValueError: widths outside what :class:`~precision.formats.FloatFormat` allows, or
            APS on a role other than grad-comm.
    """

    role: Role
    e: int
    m: int
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN
    aps: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role.parse(self.role))
        object.__setattr__(self, "rounding", RoundingMode.parse(self.rounding))
        FloatFormat(exponent_bits=self.e, mantissa_bits=self.m)  # raises on bad widths
        if self.aps and self.role is not Role.GRAD_COMM:
            raise ValueError(f"APS applies to grad-comm only, not {self.role.value}")

    @property
    def fmt(self) -> str:
        """The format's spelling (``e4m3``)."""
        return FloatFormat(exponent_bits=self.e, mantissa_bits=self.m).spelling

    @property
    def label(self) -> str:
        """``grad-comm=e3m0+aps:nearest``."""
        aps = "+aps" if self.aps else ""
        return f"{self.role.value}={self.fmt}{aps}:{self.rounding.value}"

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role.value, "e": self.e, "m": self.m,
                "rounding": self.rounding.value, "aps": self.aps}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Point:
    """One training run of the search.

    Attributes:
        settings: roles in low precision (empty: the float32 baseline), one per role.
        seed: seed of initialization, data order and stochastic rounding.
    """

    settings: tuple[Setting, ...]
    seed: int

    def __post_init__(self) -> None:
        settings = tuple(sorted(self.settings, key=lambda s: list(Role).index(s.role)))
        if len({s.role for s in settings}) != len(settings):
            raise ValueError("a point holds at most one setting per role")
        object.__setattr__(self, "settings", settings)

    @property
    def kind(self) -> str:
        """``float32``, the role's name, or ``combination``."""
        if not self.settings:
            return "float32"
        return self.settings[0].role.value if len(self.settings) == 1 else "combination"

    @property
    def key(self) -> str:
        """File-name safe and unique: ``float32-s0``, ``weight-e5m2-stochastic-s1``."""
        parts = [
            f"{s.role.value}-{s.fmt}{'-aps' if s.aps else ''}-{s.rounding.value}"
            for s in self.settings
        ]
        return "__".join([*parts, ""]) + f"s{self.seed}" if parts else f"float32-s{self.seed}"


@dataclass(frozen=True, kw_only=True)
class PointResult:
    """What training a point gave.

    Attributes:
        status: finished, diverged or failed.
        accuracy: final test accuracy in [0, 1] (None when there is none).
        loss: final test loss (None when there is none).
        detail: why a point failed ("" otherwise).
    """

    status: PointStatus
    accuracy: float | None
    loss: float | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", PointStatus(self.status))

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "accuracy": self.accuracy, "loss": self.loss,
                "detail": self.detail}  # fmt: skip


class PointCache:
    """Results stored one file per point under ``<root>/points/``.

    Args:
        root: the search's run directory.
    """

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "points"

    def path(self, point: Point) -> Path:
        return self.dir / f"{point.key}.json"

    def get(self, point: Point) -> PointResult | None:
        """The stored result, or None.

        Raises:
            RecordError: if the file exists but is unreadable or of another schema.
        """
        path = self.path(point)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("schema") != POINT_SCHEMA:
                raise RecordError(f"{path}: point schema {data.get('schema')}, expected 1")
            return PointResult(**data["result"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"{path}: unreadable point ({exc})") from None

    def put(self, point: Point, result: PointResult) -> None:
        """Store a result atomically."""
        data = {
            "schema": POINT_SCHEMA,
            "seed": point.seed,
            "settings": [s.to_dict() for s in point.settings],
            "result": result.to_dict(),
        }
        atomic_write_text(self.path(point), json.dumps(data, indent=1) + "\n")

    def load_all(self) -> list[tuple[Point, PointResult]]:
        """Every stored point (for reports), in key order."""
        out = []
        for path in sorted(self.dir.glob("*.json")):
            data = json.loads(path.read_text())
            point = Point(settings=tuple(Setting(**s) for s in data["settings"]),
                          seed=data["seed"])  # fmt: skip
            out.append((point, PointResult(**data["result"])))
        return out
