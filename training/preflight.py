"""Checks a study's names and files before any worker starts, so mistakes fail early."""

from __future__ import annotations

from pathlib import Path

from training.config import RunConfig
from training.data import DatasetError, get_dataset_info
from training.models import MODELS
from training.optim import OPTIMIZERS


def preflight(cfg: RunConfig) -> None:
    """Check names and files before starting workers, so mistakes fail in this process.

    Raises:
        UnknownNameError: for an unknown dataset, model or optimizer.
        DatasetError: if a file-based dataset has no data dir or misses files.
        ValueError: if the model cannot take the dataset's image size.
    """
    info = get_dataset_info(cfg.dataset)
    if info.needs_data_dir:
        if cfg.data_dir is None:
            raise DatasetError(
                f"dataset {cfg.dataset!r} is read from local files; pass --data-dir holding "
                f"{', '.join(info.files)}"
            )
        if not Path(cfg.data_dir).expanduser().is_dir():
            raise DatasetError(f"{cfg.data_dir}: not a directory")
    model = MODELS.get(cfg.model)
    if info.input_shape[1] < model.min_image_size:
        raise ValueError(
            f"model {cfg.model!r} needs images of at least {model.min_image_size} pixels; "
            f"{cfg.dataset} has {info.input_shape[1]}"
        )
    for arm in cfg.arms:
        OPTIMIZERS.get(arm.optimizer)
