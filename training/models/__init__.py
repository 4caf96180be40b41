"""Models for the training study and the batch-norm variants used in data-parallel runs."""

from training.models.batchnorm import (
    BatchNormMode,
    DistributedBatchNorm2d,
    GhostBatchNorm2d,
    convert_batchnorm,
)
from training.models.registry import MODELS, ModelInfo, build_model, register_model
from training.models.resnet import CifarResNet, ResNet50, Shortcut
from training.models.simple import MLP, SmallCNN

__all__ = [
    "MLP",
    "MODELS",
    "BatchNormMode",
    "CifarResNet",
    "DistributedBatchNorm2d",
    "GhostBatchNorm2d",
    "ModelInfo",
    "ResNet50",
    "Shortcut",
    "SmallCNN",
    "build_model",
    "convert_batchnorm",
    "register_model",
]
