"""Registry of datasets: built-in (digits, synthetic) and readers for a user's local copies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from precision.common.registry import Registry
from training.data import cifar, idx
from training.data.base import DatasetError, LoadedDataset
from training.data.builtin import load_digits_dataset, make_synthetic

Loader = Callable[[Path | None], LoadedDataset]


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What a dataset is and how to load it.

    Attributes:
        name: registry name (lower case).
        input_shape: ``(C, H, W)`` of one example.
        num_classes: number of label classes.
        loader: ``loader(data_dir) -> LoadedDataset``; ``data_dir`` is None for built-ins.
        files: files expected in the data directory (empty for built-ins).
        needs_data_dir: whether the loader reads a user's local copy.
        reference: where the data comes from.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    loader: Loader
    files: tuple[str, ...] = ()
    needs_data_dir: bool = False
    reference: str = ""


DATASETS: Registry[DatasetInfo] = Registry("dataset", lower_case=True)


register_dataset = DATASETS.register
"""Add a dataset to the registry (DuplicateNameError if the name is taken)."""
get_dataset_info = DATASETS.get
"""The registered :class:`DatasetInfo` called ``name`` (UnknownNameError if none)."""


def load_dataset(name: str, data_dir: Path | str | None = None) -> LoadedDataset:
    """Load a registered dataset into memory. Never downloads.

    Args:
        name: registry name, e.g. ``digits``, ``mnist``, ``cifar10``.
        data_dir: directory of the user's local copy; required for file-based datasets and
            ignored by built-ins.

    Returns:
        The loaded, normalized dataset.

    Raises:
        UnknownNameError: if ``name`` is not registered.
        DatasetError: if a file-based dataset has no ``data_dir``, files are missing or
            malformed, or the loaded shape disagrees with the registry.
    """
    info = DATASETS.get(name)
    path: Path | None = None
    if info.needs_data_dir:
        if data_dir is None:
            raise DatasetError(
                f"dataset {name!r} is read from local files; pass a data dir holding "
                f"{', '.join(info.files)}"
            )
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DatasetError(f"{path}: not a directory (expected {', '.join(info.files)})")
    data = info.loader(path)
    if data.input_shape != info.input_shape:
        raise DatasetError(
            f"dataset {name!r}: loaded shape {data.input_shape}, expected {info.input_shape}"
        )
    return data


def _require_dir(path: Path | None) -> Path:
    if path is None:
        raise DatasetError("this dataset needs a data dir")
    return path


def _idx_loader(name: str, subdir: str) -> Loader:
    def load(path: Path | None) -> LoadedDataset:
        return idx.load_idx_dataset(
            _require_dir(path), name=name, num_classes=10, subdirs=(f"{subdir}/raw", subdir)
        )

    return load


def _cifar_loader(
    name: str,
    num_classes: int,
    subdir: str,
    train: tuple[str, ...],
    test: tuple[str, ...],
    label_key: bytes,
) -> Loader:
    def load(path: Path | None) -> LoadedDataset:
        return cifar.load_cifar(
            _require_dir(path),
            name=name,
            num_classes=num_classes,
            subdir=subdir,
            train_files=train,
            test_files=test,
            label_key=label_key,
        )

    return load


register_dataset(
    DatasetInfo(
        name="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        loader=lambda _path: load_digits_dataset(),
        reference="UCI optical recognition of handwritten digits, bundled with scikit-learn",
    )
)
register_dataset(
    DatasetInfo(
        name="synthetic",
        input_shape=(1, 8, 8),
        num_classes=4,
        loader=lambda _path: make_synthetic(),
        reference="seeded Gaussian class clusters (training.data.make_synthetic)",
    )
)
for _name, _subdir, _ref in (
    ("mnist", "MNIST", "LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/"),
    ("fashion-mnist", "FashionMNIST", "Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747"),
):
    register_dataset(
        DatasetInfo(
            name=_name,
            input_shape=(1, 28, 28),
            num_classes=10,
            loader=_idx_loader(_name, _subdir),
            files=idx.IDX_FILES,
            needs_data_dir=True,
            reference=_ref,
        )
    )
for _name, _classes, _dir, _train, _test, _key in (
    ("cifar10", 10, cifar.CIFAR10_DIR, cifar.CIFAR10_TRAIN, cifar.CIFAR10_TEST, b"labels"),
    (
        "cifar100",
        100,
        cifar.CIFAR100_DIR,
        cifar.CIFAR100_TRAIN,
        cifar.CIFAR100_TEST,
        b"fine_labels",
    ),
):
    register_dataset(
        DatasetInfo(
            name=_name,
            input_shape=(3, 32, 32),
            num_classes=_classes,
            loader=_cifar_loader(_name, _classes, _dir, _train, _test, _key),
            files=tuple(f"{_dir}/{f}" for f in _train + _test),
            needs_data_dir=True,
            reference="Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html",
        )
    )
