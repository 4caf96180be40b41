"""Datasets that need no files: scikit-learn's bundled digits and a seeded synthetic set."""

from __future__ import annotations

import numpy as np
import torch

from training.data.base import DatasetError, LoadedDataset, make_split, standardize

DIGITS_TEST_SIZE = 359
DIGITS_SPLIT_SEED = 0


def load_digits_dataset() -> LoadedDataset:
    """Load the UCI handwritten digits bundled with scikit-learn (no download).

    1,797 grey-scale 8x8 images of the digits 0-9 with pixel values 0..16
    (``sklearn.datasets.load_digits``). The split is fixed: a stratified
    ``train_test_split(test_size=359, random_state=0)``, giving 1,438 training and 359 test
    images with the class proportions of the whole set. Pixels are divided by 16 and
    standardized with the training split's scalar mean and standard deviation.

    Returns:
        The dataset with inputs shaped ``(N, 1, 8, 8)`` float32 and int64 labels.
    """
    # Imported here: scikit-learn is slow to import and only this loader needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)[:, None] / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_SIZE,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels,
    )
    train_f, test_f = standardize(train_x, test_x, per_channel=False)
    return LoadedDataset(
        name="digits",
        train=make_split(train_f, train_y),
        test=make_split(test_f, test_y),
        num_classes=10,
        source="sklearn.datasets.load_digits (bundled UCI optical digits)",
    )


def make_synthetic(
    *,
    num_train: int = 512,
    num_test: int = 128,
    num_classes: int = 4,
    shape: tuple[int, int, int] = (1, 8, 8),
    separation: float = 3.0,
    seed: int = 0,
) -> LoadedDataset:
    """Gaussian class clusters shaped like images: learnable, tiny and reproducible.

    Each class has a random unit-norm centre scaled by ``separation``; examples are the centre
    plus standard normal noise, so a linear model separates them well when ``separation`` is
    a few units.

    Args:
        num_train: number of training examples.
        num_test: number of test examples.
        num_classes: number of classes (at least 2).
        shape: ``(C, H, W)`` of one example.
        separation: distance of each class centre from the origin.
        seed: seed of the ``torch.Generator`` that draws centres, labels and noise.

    Returns:
        The dataset (name ``synthetic``), float32 inputs and int64 labels.

    Raises:
        DatasetError: on non-positive sizes or fewer than two classes.
    """
    if num_train <= 0 or num_test <= 0:
        raise DatasetError(f"num_train={num_train}, num_test={num_test}: must be positive")
    if num_classes < 2:
        raise DatasetError(f"num_classes={num_classes}: need at least 2")
    if len(shape) != 3 or min(shape) <= 0:
        raise DatasetError(f"shape={shape}: expected positive (C, H, W)")
    gen = torch.Generator().manual_seed(seed)
    dim = shape[0] * shape[1] * shape[2]
    centres = torch.randn(num_classes, dim, generator=gen, dtype=torch.float64)
    centres = separation * centres / centres.norm(dim=1, keepdim=True)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = torch.randint(num_classes, (n,), generator=gen)
        noise = torch.randn(n, dim, generator=gen, dtype=torch.float64)
        x = (centres[labels] + noise).reshape(n, *shape)
        return x.numpy(), labels.numpy()

    train_x, train_y = draw(num_train)
    test_x, test_y = draw(num_test)
    return LoadedDataset(
        name="synthetic",
        train=make_split(train_x, train_y),
        test=make_split(test_x, test_y),
        num_classes=num_classes,
        source=f"synthetic Gaussian clusters (seed={seed}, separation={separation})",
    )
