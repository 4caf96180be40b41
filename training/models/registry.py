"""Registry of model builders: ``name -> builder(in_channels, num_classes, image_size)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from precision.common.registry import Registry
from training.models.batchnorm import BatchNormMode, convert_batchnorm
from training.models.efficientnet import SCALINGS, EfficientNet
from training.models.resnet import CifarResNet, ResNet50
from training.models.simple import MLP, SmallCNN

Builder = Callable[[int, int, int], nn.Module]


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """A model the study can train.

    Attributes:
        name: registry name (lower case).
        builder: ``builder(in_channels, num_classes, image_size) -> nn.Module``.
        min_image_size: smallest input height/width the architecture accepts.
        reference: paper the architecture follows.
    """

    name: str
    builder: Builder
    min_image_size: int = 1
    reference: str = ""


MODELS: Registry[ModelInfo] = Registry("model", lower_case=True)


register_model = MODELS.register
"""Add a model to the registry; returns it (DuplicateNameError if the name is taken)."""


def build_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    batchnorm: BatchNormMode = BatchNormMode.PLAIN,
    ghost_batch_size: int | None = None,
    process_group: Any = None,
) -> nn.Module:
    """Build a registered model and set its batch-norm kind.

    Args:
        name: registry name, e.g. ``resnet20``.
        in_channels: input channels.
        num_classes: number of outputs.
        image_size: input height (= width).
        batchnorm: per-worker, synchronized or ghost batch norm.
        ghost_batch_size: virtual batch size for ``BatchNormMode.GHOST``.
        process_group: reduction group for ``BatchNormMode.SYNC`` (None: default group).

    Returns:
        A freshly initialized model on the CPU in float32.

    Raises:
        UnknownNameError: if ``name`` is not registered.
        ValueError: if ``image_size`` is below the model's minimum or GHOST lacks a size.
    """
    info = MODELS.get(name)
    if image_size < info.min_image_size:
        raise ValueError(f"model {name!r}: image_size={image_size} < {info.min_image_size}")
    model = info.builder(in_channels, num_classes, image_size)
    if batchnorm is BatchNormMode.PLAIN:
        return model
    return convert_batchnorm(
        model, batchnorm, ghost_batch_size=ghost_batch_size, process_group=process_group
    )


_HE2016 = "He et al. 2016, arXiv:1512.03385"

register_model(
    ModelInfo(
        name="mlp",
        builder=lambda c, k, s: MLP(c * s * s, k),
        reference="two hidden ReLU layers of 256 units",
    )
)
register_model(
    ModelInfo(
        name="cnn",
        builder=lambda c, k, s: SmallCNN(c, k, s),
        min_image_size=4,
        reference="VGG-style (Simonyan & Zisserman 2015), sized for 8x8 to 32x32 inputs",
    )
)


def _cifar_resnet(depth: int) -> Builder:
    def build(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
        return CifarResNet(depth, in_channels, num_classes)

    return build


for _depth in (20, 32, 56):
    register_model(
        ModelInfo(
            name=f"resnet{_depth}",
            builder=_cifar_resnet(_depth),
            min_image_size=4,
            reference=f"{_HE2016} §4.2, option A shortcuts",
        )
    )
register_model(
    ModelInfo(
        name="resnet50",
        builder=lambda c, k, s: ResNet50(c, k, s),
        min_image_size=8,
        reference=f"{_HE2016} table 1; zero-init residual BN per Goyal et al. 2017",
    )
)


def _efficientnet(variant: str) -> Builder:
    def build(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
        return EfficientNet(SCALINGS[variant], in_channels, num_classes, image_size)

    return build


for _variant, _scaling in SCALINGS.items():
    register_model(
        ModelInfo(
            name=f"efficientnet_{_variant}",
            builder=_efficientnet(_variant),
            min_image_size=8,
            reference=f"Tan and Le 2019, arXiv:1905.11946 (width {_scaling.width}, depth "
            f"{_scaling.depth}, resolution {_scaling.resolution}); at scale: arXiv:2011.00071",
        )
    )
