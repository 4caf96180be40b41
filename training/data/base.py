"""In-memory dataset records shared by every reader.

Every dataset in this package ends up as two :class:`Split` objects holding float32 inputs
shaped ``(N, C, H, W)`` and int64 labels shaped ``(N,)``, already normalized, so the training
loop never touches files or decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class DatasetError(ValueError):
    """A dataset could not be found, read or validated."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Split:
    """One split (train or test) held in memory.

    Attributes:
        inputs: float32 tensor shaped ``(N, C, H, W)``.
        targets: int64 tensor shaped ``(N,)`` with class indices.
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.inputs.dim() != 4:
            raise DatasetError(f"inputs shape {tuple(self.inputs.shape)}: expected (N, C, H, W)")
        if self.targets.dim() != 1 or self.targets.shape[0] != self.inputs.shape[0]:
            raise DatasetError(
                f"targets shape {tuple(self.targets.shape)}: expected ({self.inputs.shape[0]},)"
            )
        if self.inputs.dtype != torch.float32 or self.targets.dtype != torch.int64:
            raise DatasetError(
                f"dtypes {self.inputs.dtype}/{self.targets.dtype}: expected float32/int64"
            )

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass(frozen=True, kw_only=True, eq=False)
class LoadedDataset:
    """A dataset ready for training: both splits plus what produced them.

    Attributes:
        name: registry name of the dataset.
        train: training split.
        test: held-out split.
        num_classes: number of label classes.
        source: where the data came from (a path, or a description for built-in data).
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one example."""
        c, h, w = self.train.inputs.shape[1:]
        return (int(c), int(h), int(w))


def standardize(
    train: np.ndarray, test: np.ndarray, *, per_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Standardize both splits with statistics of the training split only.

    Using train-only statistics keeps the test split truly held out.

    Args:
        train: array shaped ``(N, C, H, W)`` in any real dtype.
        test: array shaped ``(M, C, H, W)``.
        per_channel: one mean/std per channel (colour images) instead of one scalar.

    Returns:
        The two arrays as float32, with zero mean and unit variance over the training split.

    Raises:
        DatasetError: if the training split is constant (zero standard deviation).
    """
    axes = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    # float64 statistics: a float32 running sum over ~1.5e8 CIFAR pixels loses digits.
    mean = train.astype(np.float64).mean(axis=axes, keepdims=True)
    std = train.astype(np.float64).std(axis=axes, keepdims=True)
    if np.any(std == 0.0):
        raise DatasetError("training split has zero standard deviation: cannot standardize")
    scale = 1.0 / std
    return (
        ((train - mean) * scale).astype(np.float32),
        ((test - mean) * scale).astype(np.float32),
    )


def make_split(inputs: np.ndarray, targets: np.ndarray) -> Split:
    """Wrap numpy arrays as a :class:`Split` (float32 inputs, int64 targets).

    Args:
        inputs: array shaped ``(N, C, H, W)``.
        targets: integer array shaped ``(N,)``.

    Returns:
        The split, with tensors that own their memory.
    """
    return Split(
        inputs=torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)),
        targets=torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64)),
    )
