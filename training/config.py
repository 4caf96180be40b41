"""Frozen, schema-versioned configuration of a training study.

A study is a list of *arms* trained one after another on the same data, model and workers.
An arm fixes what the study varies: the gradient-communication format, APS on or off, the
global batch size, the optimizer, the learning rate and the seed. ``prec-study run`` builds
three arms (float32, low precision without APS, low precision with APS:
:func:`training.sweep.three_arms`); ``prec-study sweep`` builds a grid. Everything else is
shared by all arms and lives in :class:`RunConfig`.

The configuration is saved as ``config.json`` next to the results it produced and is read
back verbatim by ``--resume``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from precision.collectives import Reduction
from precision.formats import FloatFormat, Format
from precision.registry import parse as parse_format
from precision.rounding import RoundingMode
from training.models import BatchNormMode
from training.optim.nlcg import BetaRule
from training.roles import RoleCast
from training.schedules import BatchSchedule, Decay

SCHEMA_VERSION = 1

#: Base learning rates (at ``RunConfig.base_batch_size``) tried per optimizer by a sweep; the
#: last one is the default of ``prec-study run``.
DEFAULT_LRS: dict[str, tuple[float, ...]] = {
    "sgd": (0.05, 0.1),
    "nesterov": (0.05, 0.1),
    "lars": (2.0, 5.0),
    "lamb": (0.005, 0.01),
    "rmsprop": (0.004, 0.016),
    "nlcg": (0.002, 0.005),
    "kfac": (0.02, 0.05),
}

_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


class ConfigError(ValueError):
    """A configuration value is invalid or two values contradict each other."""


class Device(str, Enum):
    """Where the workers compute."""

    AUTO = "auto"  # cuda when available, else cpu
    CPU = "cpu"
    CUDA = "cuda"


class Backend(str, Enum):
    """torch.distributed backend."""

    AUTO = "auto"  # nccl on cuda, gloo on cpu
    GLOO = "gloo"
    NCCL = "nccl"


#: RunConfig fields holding enum members, and their enums.
_ENUM_FIELDS: dict[str, type[Enum]] = {
    "rounding": RoundingMode,
    "reduction": Reduction,
    "decay": Decay,
    "device": Device,
    "backend": Backend,
    "batchnorm": BatchNormMode,
    "nlcg_beta": BetaRule,
}


def _member(kind: type[Enum], key: str, value: Any) -> Enum:
    """``value`` as a member of ``kind`` (a member, or its value as config.json spells it)."""
    if isinstance(value, kind):
        return value
    try:
        return RoundingMode.parse(value) if kind is RoundingMode else kind(value)
    except ValueError as exc:
        choices = ", ".join(str(m.value) for m in kind)
        detail = str(exc) if kind is RoundingMode else f"{key}={value!r}: choose from {choices}"
        raise ConfigError(detail) from None


@dataclass(frozen=True, kw_only=True)
class ArmSpec:
    """One training run inside a study.

    Attributes:
        name: unique, file-name safe label (e.g. ``float32``, ``e3m0-aps``).
        fmt: spelling of the gradient-communication format (``precision.registry.parse``
            accepts it); None is the float32 all-reduce baseline.
        aps: shift each layer's gradients by a power of two before quantizing (APS).
        batch_size: global batch size (all workers together).
        optimizer: registry name in :mod:`training.optim`.
        lr: base learning rate, tuned at ``RunConfig.base_batch_size``.
        seed: seed of model initialization, data order and stochastic rounding.
        casts: low-precision formats of the other tensor roles (activation, error,
            weight, optimizer-state; :mod:`training.roles`), at most one per role.
    """

    name: str
    fmt: str | None
    aps: bool
    batch_size: int
    optimizer: str
    lr: float
    seed: int
    casts: tuple[RoleCast, ...] = ()

    def __post_init__(self) -> None:
        try:
            casts = tuple(RoleCast.coerce(c) for c in self.casts)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"arm {self.name!r}: {exc}") from None
        object.__setattr__(self, "casts", casts)
        roles = [c.role for c in casts]
        if len(set(roles)) != len(roles):
            raise ConfigError(
                f"arm {self.name!r}: one cast per role ({', '.join(r.value for r in roles)})"
            )
        if not _ARM_NAME.match(self.name):
            raise ConfigError(f"arm name {self.name!r}: use letters, digits and _.+=-")
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size={self.batch_size}: must be positive")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr}: must be positive")
        if self.fmt is not None:
            fmt = parse_format(self.fmt)
            if not isinstance(fmt, FloatFormat):
                raise ConfigError(
                    f"format {self.fmt!r}: gradient communication needs a float format"
                )
        elif self.aps:
            raise ConfigError(f"arm {self.name!r}: APS needs a low-precision format")

    @property
    def float_format(self) -> FloatFormat | None:
        """The parsed communication format (None for the float32 baseline)."""
        if self.fmt is None:
            return None
        fmt = parse_format(self.fmt)
        assert isinstance(fmt, FloatFormat)  # checked in __post_init__
        return fmt

    @property
    def bits(self) -> int:
        """Storage width of the communicated gradients (32 for the baseline)."""
        fmt = self.float_format
        return 32 if fmt is None else fmt.total_bits


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Settings shared by every arm of a study.

    Attributes:
        arms: the arms, trained in this order by the same worker processes.
        dataset: registry name in :mod:`training.data`.
        data_dir: local copy of a file-based dataset (None for built-ins).
        model: registry name in :mod:`training.models`.
        epochs: epochs per arm.
        workers: data-parallel processes.
        rounding: rounding of the low-precision communication.
        reduction: how ``precision.collectives`` forms the sum over workers.
        headroom: APS headroom in bits (None: the collectives default).
        loss_scale: static loss scale of the low-precision gradient reduction (a power of
            two, multiplied in before quantizing and divided out after; 1: none): the
            baseline the APS study compares against.
        label_smoothing: label-smoothing epsilon (Szegedy et al. 2016).
        warmup_epochs: learning-rate warmup (at ``base_batch_size`` under LEGW).
        legw: LEGW schedule (You et al. 2019): sqrt scaling, warmup grows with the batch.
        decay: learning-rate shape after warmup: cosine, polynomial (power 2), exponential
            (x0.97 every 2.4 epochs, the EfficientNet recipe) or constant.
        base_batch_size: batch size at which each arm's ``lr`` is the peak rate.
        batch_milestones: epochs at whose start every arm's global batch is multiplied by
            ``batch_factor`` (batch-size control, :class:`training.schedules.BatchSchedule`).
        batch_factor: growth of the batch at each milestone.
        max_batch_size: cap on the grown global batch (None: none).
        weight_decay: L2 decay of multi-dimensional weights.
        device: cpu, cuda or auto.
        backend: gloo, nccl or auto.
        timeout_s: process-group timeout; a hung collective fails after this long.
        batchnorm: batch-norm statistics per worker (plain), synchronized across workers
            (sync; works on CPU too) or over virtual sub-batches (ghost).
        ghost_batch_size: virtual batch size of ghost batch norm (per worker).
        kfac_update_interval: steps between K-FAC inverse updates (stale in between).
        kfac_factor_interval: steps between K-FAC statistics collections (None: the
            update interval, SP-NGD's choice).
        kfac_damping: Tikhonov damping of K-FAC.
        stats_format: format K-FAC's factors are averaged in over the workers (None:
            float32), rounded with ``rounding``.
        nlcg_beta: NLCG's beta rule.
        schema: version of this layout.
    """

    arms: tuple[ArmSpec, ...]
    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "mlp"
    epochs: int = 12
    workers: int = 2
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN
    reduction: Reduction = Reduction.CARRIER
    headroom: int | None = None
    loss_scale: float = 1.0
    label_smoothing: float = 0.0
    warmup_epochs: float = 1.0
    legw: bool = False
    decay: Decay = Decay.COSINE
    base_batch_size: int = 64
    batch_milestones: tuple[int, ...] = ()
    batch_factor: int = 2
    max_batch_size: int | None = None
    weight_decay: float = 1e-4
    device: Device = Device.AUTO
    backend: Backend = Backend.AUTO
    timeout_s: float = 60.0
    batchnorm: BatchNormMode = BatchNormMode.PLAIN
    ghost_batch_size: int | None = None
    kfac_update_interval: int = 10
    kfac_factor_interval: int | None = None
    kfac_damping: float = 1e-3
    stats_format: Format | None = None
    nlcg_beta: BetaRule = BetaRule.PR_PLUS
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # Enum fields also take their values (what config.json holds); each set is checked
        # here, by its enum, and nowhere else.
        for key, kind in _ENUM_FIELDS.items():
            object.__setattr__(self, key, _member(kind, key, getattr(self, key)))
        if isinstance(self.stats_format, str):
            try:
                object.__setattr__(self, "stats_format", parse_format(self.stats_format))
            except ValueError as exc:
                raise ConfigError(f"stats_format: {exc}") from None
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "batch_milestones", tuple(self.batch_milestones))
        if self.schema != SCHEMA_VERSION:
            raise ConfigError(f"config schema {self.schema}: this version reads {SCHEMA_VERSION}")
        self._check_arms()
        self._check_reduction()
        self._check_schedule()
        self._check_other()

    def _check_arms(self) -> None:
        if not self.arms:
            raise ConfigError("a study needs at least one arm")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"arm names must be unique: {', '.join(names)}")
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs}: must be >= 1")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers}: must be >= 1")
        for arm in self.arms:
            try:
                self.batch_schedule(arm).check(epochs=self.epochs, workers=self.workers)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None

    def _check_reduction(self) -> None:
        if self.headroom is not None and self.headroom < 0:
            raise ConfigError(f"headroom={self.headroom}: must be >= 0 bits")
        if not (
            math.isfinite(self.loss_scale)
            and self.loss_scale > 0
            and math.frexp(self.loss_scale)[0] == 0.5
        ):
            raise ConfigError(
                f"loss_scale={self.loss_scale}: must be a positive power of two (exact to undo)"
            )

    def _check_schedule(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={self.label_smoothing}: must be in [0, 1)")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError(f"warmup_epochs={self.warmup_epochs}: must be in [0, epochs]")
        if self.legw:
            for arm in self.arms:
                k = arm.batch_size / self.base_batch_size
                if self.warmup_epochs * k > self.epochs:
                    raise ConfigError(
                        f"LEGW warmup of {self.warmup_epochs * k:g} epochs (warmup_epochs="
                        f"{self.warmup_epochs:g} x batch multiple {k:g}) exceeds epochs={self.epochs}"
                    )

    def _check_other(self) -> None:
        if self.batchnorm is BatchNormMode.GHOST and not self.ghost_batch_size:
            raise ConfigError("batchnorm=ghost needs ghost_batch_size (e.g. 16)")
        if self.ghost_batch_size is not None and self.ghost_batch_size < 1:
            raise ConfigError(f"ghost_batch_size={self.ghost_batch_size}: must be >= 1")
        factor_interval = self.kfac_factor_interval
        if self.kfac_update_interval < 1 or (factor_interval is not None and factor_interval < 1):
            raise ConfigError(
                f"kfac_update_interval={self.kfac_update_interval}, kfac_factor_interval="
                f"{factor_interval}: must be >= 1"
            )
        if not self.kfac_damping >= 0:
            raise ConfigError(f"kfac_damping={self.kfac_damping}: must be >= 0")
        if self.base_batch_size < 1 or self.weight_decay < 0 or not self.timeout_s > 0:
            raise ConfigError(
                f"base_batch_size={self.base_batch_size}, weight_decay={self.weight_decay}, "
                f"timeout_s={self.timeout_s}: need >= 1, >= 0 and > 0"
            )

    def optimizer_options(self, name: str) -> dict[str, Any]:
        """Hyper-parameters of optimizer ``name`` that this configuration sets (may be empty)."""
        if name == "kfac":
            return {
                "update_interval": self.kfac_update_interval,
                "factor_interval": self.kfac_factor_interval,
                "damping": self.kfac_damping,
                "stats_format": self.stats_format,
                "stats_rounding": self.rounding,
            }
        if name == "nlcg":
            return {"beta_rule": self.nlcg_beta}
        return {}

    def batch_schedule(self, arm: ArmSpec) -> BatchSchedule:
        """``arm``'s global batch size per epoch (``arm.batch_size`` throughout by default)."""
        return BatchSchedule(
            initial=arm.batch_size,
            milestones=self.batch_milestones,
            factor=self.batch_factor,
            maximum=self.max_batch_size,
        )

    def shared(self) -> dict[str, Any]:
        """Every setting except the arms (what all arms of a study must agree on)."""
        d = self.to_dict()
        d.pop("arms")
        return d

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (enums as their values, the format by its name)."""
        d = dataclasses.asdict(self)
        for key in _ENUM_FIELDS:
            d[key] = getattr(self, key).value
        d["stats_format"] = None if self.stats_format is None else str(self.stats_format)
        if not self.batch_milestones:  # a constant batch: config.json and run ids as before
            for key in ("batch_milestones", "batch_factor", "max_batch_size"):
                del d[key]
        for arm, out in zip(self.arms, d["arms"], strict=True):
            out["casts"] = [c.to_dict() for c in arm.casts]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: on unknown keys, a different schema or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"config has unknown keys: {', '.join(unknown)}")
        arms = tuple(ArmSpec(**a) for a in d.get("arms", ()))
        return cls(**{**d, "arms": arms})

    def digest(self) -> str:
        """Short stable hash of the configuration (part of a run id)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def save(self, path: Path) -> None:
        """Write ``config.json`` atomically."""
        from precision.common.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        """Read a ``config.json`` written by :meth:`save`.

        Raises:
            ConfigError: if the file is missing, not JSON or not a valid configuration.
        """
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file (is this a run directory?)") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data)
