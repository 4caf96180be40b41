"""Datasets held in memory as tensors: built-ins, local-file readers, sharding, batching.

Nothing here downloads. ``load_dataset("digits")`` works offline out of the box; MNIST,
Fashion-MNIST and CIFAR are read from a directory the user already has.
"""

from training.data.base import DatasetError, LoadedDataset, Split, standardize
from training.data.builtin import load_digits_dataset, make_synthetic
from training.data.registry import (
    DATASETS,
    DatasetInfo,
    get_dataset_info,
    load_dataset,
    register_dataset,
)
from training.data.sharding import ShardSpec, iterate_batches, num_batches

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetInfo",
    "LoadedDataset",
    "ShardSpec",
    "Split",
    "get_dataset_info",
    "iterate_batches",
    "load_dataset",
    "load_digits_dataset",
    "make_synthetic",
    "num_batches",
    "register_dataset",
    "standardize",
]
