"""Configuration and telemetry records of the low-precision all-reduce."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

import torch

from precision import aps
from precision._memory import empty_output
from precision.formats import BlockFormat, FixedFormat, FloatFormat, Format
from precision.rounding import RoundingMode

SCHEMA_VERSION = 1


class Reduction(str, Enum):
    """How the sum over workers is formed (every variant rounds with ``quantize``).

    ``CARRIER``: quantize each worker's tensor, all-reduce in the carrier dtype (float32),
    quantize the sum. Rounding happens only at the two ends; cheapest.
    ``RANK``: round after every partial sum, adding workers in rank order 0, 1, ..., W-1
    (all-gather, then every worker sums locally: the original APS study's emulation).
    ``RING``: round after every partial sum in the order a ring reduce-scatter accumulates:
    the (zero-padded) tensor is cut into W equal chunks and chunk ``c`` is accumulated
    starting at rank ``c+1``, going up the ring (``c+1, c+2, ..., W-1, 0, ..., c``), so it
    ends on rank ``c``; an all-gather then gives every rank every chunk.
    ``TORUS``: 2D-torus all-reduce on an ``R x C`` grid (rank ``r`` = row ``r // C``, column
    ``r % C``): ring reduce-scatter along each row (C chunks), ring all-reduce of each chunk
    along its column (R sub-chunks), all-gather along rows (Mikami et al., "Massively
    Distributed SGD: ImageNet/ResNet-50 Training in a Flash", arXiv:1811.05233).
    """

    CARRIER = "carrier"
    RANK = "rank"
    RING = "ring"
    TORUS = "torus"


class NonFinitePolicy(str, Enum):
    """What a layer holding Inf or NaN does.

    ``REPORT``: reduce it unscaled (Inf/NaN propagate as in a float32 all-reduce) and flag it
    in the report, so a loop can skip the step. ``RAISE``: raise
    :class:`~precision.aps.NonFiniteGradientError` on every worker (the decision is made on
    globally reduced values, so no worker is left waiting in a collective).
    """

    REPORT = "report"
    RAISE = "raise"


@dataclass
class LowPrecisionState:
    """Settings of the low-precision gradient all-reduce, plus its small runtime cache.

    Args:
        fmt: communication format; None is the float32 baseline (a plain all-reduce).
        rounding: rounding mode of every quantization.
        aps: scale each layer by its APS shift (:mod:`precision.aps`).
        headroom: bits APS reserves for the sum; None means ``ceil(log2 W)``.
        reduction: how the sum is formed (:class:`Reduction`).
        seed: seed of stochastic rounding; the stream is keyed by (seed, step, bucket,
            stage, rank or chunk), so results are reproducible and identical on all ranks.
        grid: ``(rows, cols)`` for ``Reduction.TORUS``; None picks the most square grid.
        reuse_shifts: steps that reuse the last APS shifts before they are recomputed; 0
            recomputes every step. Reuse skips the MAX all-reduce but a gradient that grew
            since may overflow (seen as ``overflow`` in the report).
        measure_error: also all-reduce the float32 gradients and report the relative error
            (costs a second all-reduce).
        telemetry: count underflow, overflow and saturation inside the rounding passes
            (:func:`precision.quantize.quantize` with ``count=True``): the totals of each
            call (``ReduceReport.totals``) and the fractions of each layer rounded in a call
            of its own (APS on and at least ``ordered.MIN_CARRIED`` elements, or the only
            layer of the call); layers that share a call report None. The carrier
            reduction reads nothing extra; the ordered ones read their result once for
            saturation. Values that the exact APS multiply itself pushes below float32's
            range are not counted as flushed. When False, nothing is counted and those
            report fields are None.
        loss_scale: static global scale multiplied in before quantizing and divided out
            after: the baseline APS is compared against. Use a power of two (exact).
        nonfinite: policy for layers holding Inf/NaN (:class:`NonFinitePolicy`).
        process_group: group to reduce over; None is the default group. Create groups
            with an explicit ``timeout`` (see :func:`init_process_group_with_timeout`):
            torch's default is 30 minutes, so a dead worker would stall the others that long.

    Raises:
        TypeError: ``fmt`` is a string (parse it with :func:`precision.parse` first).
        ValueError: a setting is out of range.
    """

    fmt: Format | None = None
    rounding: RoundingMode = RoundingMode.NEAREST_EVEN
    aps: bool = True
    headroom: int | None = None
    reduction: Reduction = Reduction.CARRIER
    seed: int = 0
    grid: tuple[int, int] | None = None
    reuse_shifts: int = 0
    measure_error: bool = False
    telemetry: bool = True
    loss_scale: float = 1.0
    nonfinite: NonFinitePolicy = NonFinitePolicy.REPORT
    process_group: Any = None
    step: int = field(default=0, init=False)
    last_reports: list[ReduceReport] = field(default_factory=list, init=False, repr=False)
    _shift_cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)
    _pending: list[ReduceReport] = field(default_factory=list, init=False, repr=False)
    _expected_buckets: int = field(default=-1, init=False, repr=False)
    _torus: Any = field(default=None, init=False, repr=False)
    _wire: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def headroom_bits(self, world: int) -> int:
        """The APS headroom in force for ``world`` workers: ``headroom``, or ``ceil(log2 W)``."""
        return aps.default_headroom(world) if self.headroom is None else self.headroom

    def wire_buffer(self, like: torch.Tensor, bucket: int) -> torch.Tensor:
        """The buffer the quantized gradients of ``bucket`` travel in, kept across steps
        (one per bucket, the size of its gradients): a fresh multi-megabyte buffer each
        step costs page faults, and rounding into a separate buffer is faster than in
        place."""
        key = (bucket, like.shape, like.dtype, like.device)
        buf = self._wire.get(key)
        if buf is None:
            self._wire = {k: v for k, v in self._wire.items() if k[0] != bucket}
            buf = self._wire[key] = empty_output(like)
        return cast(torch.Tensor, buf)

    def __post_init__(self) -> None:
        if isinstance(self.fmt, str):
            raise TypeError(f"fmt={self.fmt!r}: pass a format object (precision.parse(name))")
        if self.fmt is not None and not isinstance(
            self.fmt, FloatFormat | FixedFormat | BlockFormat
        ):
            raise TypeError(f"fmt: expected a format or None, got {type(self.fmt).__name__}")
        self.rounding = RoundingMode(self.rounding)
        self.reduction = Reduction(self.reduction)
        self.nonfinite = NonFinitePolicy(self.nonfinite)
        if self.headroom is not None and not isinstance(self.headroom, int):
            raise ValueError(f"headroom={self.headroom!r}: must be an integer or None")
        if not isinstance(self.reuse_shifts, int) or self.reuse_shifts < 0:
            raise ValueError(f"reuse_shifts={self.reuse_shifts!r}: must be an integer >= 0")
        ls = float(self.loss_scale)
        if not math.isfinite(ls) or ls <= 0:
            raise ValueError(f"loss_scale={self.loss_scale!r}: must be finite and > 0")
        self.loss_scale = ls
        if self.grid is not None:
            rows, cols = self.grid
            if rows < 1 or cols < 1:
                raise ValueError(f"grid={self.grid!r}: rows and cols must be >= 1")
            self.grid = (int(rows), int(cols))


@dataclass(frozen=True)
class LayerStats:
    """Telemetry of one layer (parameter tensor) in one step.

    Fractions are over the layer's elements on this worker; None where they do not apply
    (the float32 baseline quantizes nothing; without ``telemetry`` nothing is counted; a
    layer rounded in one call with other layers has no count of its own, see
    :attr:`ReduceReport.totals`; ``rel_error`` needs ``measure_error``).

    Attributes:
        index: position of the layer among the reduced tensors.
        numel: element count.
        shift: APS shift applied (None when APS is off).
        exponent: global ``E_l`` of APS (None: APS off, shifts reused, or an all-zero layer).
        nonfinite: the layer's input or result held Inf/NaN.
        underflow: nonzero inputs that quantized to zero.
        overflow: finite inputs whose scaled magnitude exceeded the format's largest value.
        saturated: reduced elements at or beyond the format's largest magnitude.
        rel_error: ``||reduced - float32 sum|| / ||float32 sum||`` (L2).
    """

    index: int
    numel: int
    shift: int | None
    exponent: int | None
    nonfinite: bool
    underflow: float | None
    overflow: float | None
    saturated: float | None
    rel_error: float | None


@dataclass(frozen=True)
class ReduceReport:
    """Telemetry of one reduction call (one step, or one DDP bucket).

    Attributes:
        step: the state's step counter when the call ran.
        bucket: DDP bucket index (0 for :func:`all_reduce_gradients`).
        world_size: workers in the group.
        fmt: format name, None for the float32 baseline.
        reduction: :class:`Reduction` value.
        rounding: :class:`RoundingMode` value.
        aps: whether APS shifts were applied.
        loss_scale: the static loss scale.
        shifts_exchanged: whether the APS MAX all-reduce ran in this call.
        layers: per-layer records.
        rel_error: relative L2 error over all layers (None unless ``measure_error``).
        method: what produced the record.
        totals: ``(flushed, beyond, at_limit)`` element counts of the whole call, tallied
            by its rounding passes (None for the float32 baseline or without telemetry);
            :attr:`underflow`, :attr:`overflow` and :attr:`saturated` come from them.
    """

    step: int
    bucket: int
    world_size: int
    fmt: str | None
    reduction: str
    rounding: str
    aps: bool
    loss_scale: float
    shifts_exchanged: bool
    layers: tuple[LayerStats, ...]
    rel_error: float | None = None
    method: str = "precision.collectives"
    schema_version: int = SCHEMA_VERSION
    totals: tuple[int, int, int] | None = None

    @property
    def numel(self) -> int:
        return sum(s.numel for s in self.layers)

    def _fraction(self, index: int) -> float | None:
        if self.totals is None:
            return None
        return self.totals[index] / self.numel if self.numel else 0.0

    @property
    def underflow(self) -> float | None:
        """Fraction of all elements flushed to zero (None without counts)."""
        return self._fraction(0)

    @property
    def overflow(self) -> float | None:
        """Fraction of all elements whose scaled input was beyond the format's largest
        value (None without counts)."""
        return self._fraction(1)

    @property
    def saturated(self) -> float | None:
        """Fraction of all reduced elements at or beyond the format's largest magnitude
        (None without counts)."""
        return self._fraction(2)

    @property
    def nonfinite_layers(self) -> tuple[int, ...]:
        return tuple(s.index for s in self.layers if s.nonfinite)

    @property
    def shifts(self) -> tuple[int | None, ...]:
        return tuple(s.shift for s in self.layers)
