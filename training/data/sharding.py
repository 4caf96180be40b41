"""Per-worker sharding and in-memory batching.

:class:`ShardSpec` reproduces the index sequence of ``torch.utils.data.DistributedSampler``
(same generator seeding, padding and striding) as a pure function of ``(seed, epoch)``, without
needing a process group or a ``Dataset`` object. Batches are slices of tensors already in
memory: for 8x8 digits a ``DataLoader`` with worker processes costs more than the training step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from training.data.base import Split


@dataclass(frozen=True, kw_only=True)
class ShardSpec:
    """Which part of each epoch's permutation one worker sees.

    Attributes:
        rank: this worker's index in ``[0, world_size)``.
        world_size: number of workers.
        seed: base seed, the same on every worker.
        shuffle: draw a fresh permutation per epoch (seeded with ``seed + epoch``).
        drop_last: drop the tail so every worker gets the same number of examples without
            padding; otherwise pad by repeating examples from the start of the permutation.
    """

    rank: int = 0
    world_size: int = 1
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size={self.world_size}: must be >= 1")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank}: must be in [0, {self.world_size})")

    def num_samples(self, dataset_size: int) -> int:
        """Examples each worker receives per epoch."""
        if self.drop_last and dataset_size % self.world_size != 0:
            return math.ceil((dataset_size - self.world_size) / self.world_size)
        return math.ceil(dataset_size / self.world_size)

    def indices(self, dataset_size: int, epoch: int) -> torch.Tensor:
        """This worker's example indices for ``epoch``.

        Args:
            dataset_size: number of examples in the split.
            epoch: epoch number; with ``shuffle`` each epoch gets a new permutation.

        Returns:
            An int64 tensor of length :meth:`num_samples`; the shards of all ranks together
            cover every example (plus padding, or minus the dropped tail).

        Raises:
            ValueError: if ``dataset_size`` is not positive.
        """
        if dataset_size <= 0:
            raise ValueError(f"dataset_size={dataset_size}: must be positive")
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(dataset_size, generator=gen)
        else:
            order = torch.arange(dataset_size)
        total = self.num_samples(dataset_size) * self.world_size
        if total > dataset_size:
            repeats = math.ceil(total / dataset_size)
            order = order.repeat(repeats)
        order = order[:total]
        return order[self.rank : total : self.world_size]


def iterate_batches(
    split: Split,
    batch_size: int,
    *,
    indices: torch.Tensor | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, targets)`` batches gathered from an in-memory split.

    Args:
        split: the data, on any device.
        batch_size: examples per batch (per worker in data-parallel training).
        indices: order of examples, e.g. ``ShardSpec.indices(len(split), epoch)``; all
            examples in order when None.
        drop_last: skip a final batch smaller than ``batch_size``.

    Yields:
        Batches of inputs ``(b, C, H, W)`` and targets ``(b,)``.

    Raises:
        ValueError: if ``batch_size`` is not positive.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size}: must be positive")
    order = torch.arange(len(split)) if indices is None else indices
    order = order.to(split.inputs.device)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        batch = order[start : start + batch_size]
        yield split.inputs[batch], split.targets[batch]


def num_batches(num_examples: int, batch_size: int, *, drop_last: bool = False) -> int:
    """Number of batches :func:`iterate_batches` yields for ``num_examples`` indices."""
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size}: must be positive")
    if drop_last:
        return num_examples // batch_size
    return math.ceil(num_examples / batch_size)
