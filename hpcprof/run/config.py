"""The frozen configuration of one ``hpcprof run``; saved next to the results it produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from hpcprof.results.records import SCHEMA_VERSION, Precision
from hpcprof.run.launchers import Launcher, LauncherKind


class SizeScale(Enum):
    """Which per-app problem size to use when no explicit size is given."""

    DEFAULT = "default"  # the whole built-in suite takes a few minutes
    SMALL = "small"  # seconds; for tests and the callgrind backend


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What to run and how.

    Args:
        apps: built-in app names; empty means all of them (unless a suite is given).
        precisions: precisions for built-in apps.
        scale: default or small sizes.
        sizes: per-app size overrides, (name, size) pairs.
        backend: backend name or ``auto``.
        repetitions: measured runs per app and precision.
        warmup: unmeasured runs before them.
        timeout_s: per-run time limit (a suite entry may set its own).
        cpus: CPUs to pin each run to, or None.
        suite: path of an external suite file, or None.
        out_dir: parent directory of run directories.
        launcher: ``local``, ``mpirun`` or ``srun`` (see :mod:`hpcprof.run.launchers`).
        ranks: processes per run under mpirun/srun.
    """

    apps: tuple[str, ...] = ()
    precisions: tuple[Precision, ...] = (Precision.FLOAT64, Precision.FLOAT32)
    scale: SizeScale = SizeScale.DEFAULT
    sizes: tuple[tuple[str, int], ...] = ()
    backend: str = "auto"
    repetitions: int = 3
    warmup: int = 1
    timeout_s: float = 600.0
    cpus: tuple[int, ...] | None = None
    suite: str | None = None
    out_dir: str = "results/hpcprof"
    launcher: LauncherKind = LauncherKind.LOCAL
    ranks: int = 1
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise ValueError(f"repetitions={self.repetitions}: must be >= 1")
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup}: must be >= 0")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s={self.timeout_s}: must be > 0")
        for name, size in self.sizes:
            if size < 1:
                raise ValueError(f"size {name}={size}: must be >= 1")
        self.launch()  # validates launcher and ranks
        if Precision.NATIVE in self.precisions or not self.precisions:
            raise ValueError("precisions: choose from float64, float32")

    def launch(self) -> Launcher:
        """The :class:`~hpcprof.run.launchers.Launcher` of this config.

        Raises:
            ValueError: bad rank count for the launcher.
        """
        return Launcher(kind=self.launcher, ranks=self.ranks)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (enums as their values)."""
        data = asdict(self)
        data["precisions"] = [p.value for p in self.precisions]
        data["scale"] = self.scale.value
        data["launcher"] = self.launcher.value
        data["sizes"] = dict(self.sizes)
        data["cpus"] = None if self.cpus is None else list(self.cpus)
        return data
