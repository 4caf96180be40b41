"""Gradient averaging over the workers, in float32 or a low-precision format.

:class:`GradientReducer` is the loop's one call per step into :mod:`precision.collectives`;
it keeps the step counter that keys stochastic rounding, so a resumed run rounds the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from precision.collectives import LowPrecisionState, Reduction, all_reduce_gradients


@dataclass(frozen=True)
class ReduceStats:
    """What one gradient reduction reports to the loop.

    Attributes:
        flushed: fraction of gradient elements flushed to zero (None for float32).
        overflow: fraction that overflowed (None for float32).
        nonfinite: some layer held Inf or NaN.
    """

    flushed: float | None
    overflow: float | None
    nonfinite: bool


class GradientReducer:
    """Averages ``.grad`` over the workers through ``precision.collectives``.

    The float32 baseline goes through the same call with ``fmt=None`` (one plain all-reduce
    of the flattened gradients), so both arms pay the same flattening and copying.

    Args:
        fmt: communication format; None is the float32 all-reduce.
        rounding: rounding mode of the quantizations.
        aps: apply APS shifts (Han, Demmel, You 2021, arXiv:1911.08907).
        reduction: ``precision.collectives.Reduction`` value.
        headroom: APS headroom bits (None: ``ceil(log2 W)``).
        seed: stochastic-rounding seed.
        loss_scale: static loss scale of the low-precision reduction (a power of two).
    """

    def __init__(
        self,
        fmt: Any,
        *,
        rounding: Any,
        aps: bool,
        reduction: str,
        headroom: int | None,
        seed: int,
        loss_scale: float = 1.0,
    ) -> None:
        self._state = LowPrecisionState(
            fmt=fmt,
            rounding=rounding,
            aps=aps and fmt is not None,
            headroom=headroom,
            reduction=Reduction(reduction),
            seed=seed,
            loss_scale=loss_scale if fmt is not None else 1.0,
        )
        self.method = (
            "precision.collectives float32 all-reduce"
            if fmt is None
            else f"precision.collectives {fmt} {reduction} {'APS' if aps else 'no-APS'} "
            f"{self._state.rounding.value}"
            + (f" loss-scale {loss_scale:g}" if loss_scale != 1.0 else "")
        )

    def reduce(self, model: torch.nn.Module) -> ReduceStats:
        """Average every parameter's ``.grad`` over the default group, in place.

        Returns:
            The reduction's telemetry.
        """
        report = all_reduce_gradients(model, self._state)
        return ReduceStats(
            flushed=report.underflow,
            overflow=report.overflow,
            nonfinite=bool(report.nonfinite_layers),
        )

    def state_dict(self) -> dict[str, int]:
        """The step counter that keys stochastic rounding (restored for an exact resume)."""
        return {"step": int(self._state.step)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore :meth:`state_dict`."""
        self._state.step = int(state["step"])
