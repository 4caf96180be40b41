"""Small baselines: a multi-layer perceptron and a VGG-style CNN for 8x8 to 32x32 inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected ReLU network on flattened images.

    Args:
        in_features: ``C * H * W`` of the input.
        num_classes: number of outputs.
        hidden: widths of the hidden layers.

    Raises:
        ValueError: on non-positive sizes.
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        if in_features <= 0 or num_classes <= 0 or any(h <= 0 for h in hidden):
            raise ValueError(
                f"in_features={in_features}, num_classes={num_classes}, hidden={tuple(hidden)}: "
                "all must be positive"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    # No conv bias: the following BatchNorm's shift makes it redundant.
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """VGG-style CNN: stages of two 3x3 conv-BN-ReLU layers, 2x2 max-pool between stages.

    Two stages (8x8 -> 4x4) for inputs up to 8x8 pixels, three stages (e.g. 32 -> 16 -> 8) for
    larger ones; channel width doubles per stage; global average pooling feeds one linear
    layer, so any image size of at least 4 pixels works.

    Args:
        in_channels: input channels.
        num_classes: number of outputs.
        image_size: input height (= width).
        width: channels of the first stage.

    Raises:
        ValueError: if ``image_size`` < 4 or a size is not positive.
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, width: int = 32
    ) -> None:
        super().__init__()
        if image_size < 4 or in_channels <= 0 or num_classes <= 0 or width <= 0:
            raise ValueError(
                f"image_size={image_size}, in_channels={in_channels}, num_classes={num_classes}, "
                f"width={width}: need image_size >= 4 and positive sizes"
            )
        stages = 2 if image_size <= 8 else 3
        layers: list[nn.Module] = []
        c_in = in_channels
        for stage in range(stages):
            c_out = width * 2**stage
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            layers += _conv_bn_relu(c_in, c_out) + _conv_bn_relu(c_out, c_out)
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
