"""Residual networks: CIFAR-style ResNet-20/32/56 and the bottleneck ResNet-50.

References:
    He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition", CVPR
    (arXiv:1512.03385): section 4.2 defines the CIFAR family (6n+2 layers, 16/32/64 channels,
    shortcut options A and B of section 3.3); table 1 defines ResNet-50.
    Goyal et al. 2017, "Accurate, Large Minibatch SGD" (arXiv:1706.02677), section 5.1:
    zero-initialized last BN scale in each residual block, used for large-batch runs.
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn


class Shortcut(Enum):
    """How a residual block matches dimensions when stride or width change (He et al. §3.3)."""

    A = "a"  # identity, subsampled by stride, extra channels zero-padded: no parameters
    B = "b"  # 1x1 convolution + BN projection


class _PadShortcut(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` with zero channels appended."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def _projection(c_in: int, c_out: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (He et al. fig. 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: Shortcut) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut is Shortcut.A:
            self.shortcut = _PadShortcut(stride, c_out - c_in)
        else:
            self.shortcut = _projection(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with the stride on the 3x3 convolution.

    Putting the stride on the 3x3 rather than the first 1x1 ("ResNet v1.5") is what Goyal et
    al. and later large-batch ImageNet work train.
    """

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = (
            nn.Identity() if stride == 1 and c_in == c_out else _projection(c_in, c_out, stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            # He et al. 2015 (arXiv:1502.01852) initialization for ReLU networks.
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        # Goyal et al. §5.1: each block starts as the identity, which eases early large-LR steps.
        for m in model.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)


class CifarResNet(nn.Module):
    """ResNet with ``6n+2`` layers for small images (He et al. §4.2).

    A 3x3 conv with 16 channels, three stages of ``n`` basic blocks with 16, 32, 64 channels
    (stride 2 at the start of stages 2 and 3), global average pooling and a linear layer.

    Args:
        depth: 20, 32, 44, 56, 110, ... (``depth - 2`` divisible by 6).
        in_channels: input channels.
        num_classes: number of outputs.
        shortcut: option A (the paper's CIFAR choice) or B.
        zero_init_residual: zero the last BN scale of each block (Goyal et al. §5.1).

    Raises:
        ValueError: if ``depth`` is not of the form ``6n+2``.
    """

    def __init__(
        self,
        depth: int,
        in_channels: int,
        num_classes: int,
        shortcut: Shortcut = Shortcut.A,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth={depth}: CIFAR ResNets have 6n+2 layers (20, 32, 56, ...)")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        c_in = 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, c_out, stride, shortcut))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
        _init_weights(self, zero_init_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class ResNet50(nn.Module):
    """ResNet-50 (He et al. table 1): bottleneck stages of 3, 4, 6, 3 blocks, no weights.

    Images of at least 64 pixels get the ImageNet stem (7x7/2 conv, 3x3/2 max-pool); smaller
    ones a 3x3/1 conv without pooling, so that 32x32 inputs are not reduced to 1x1 early.

    Args:
        in_channels: input channels.
        num_classes: number of outputs.
        image_size: input height (= width); chooses the stem.
        zero_init_residual: zero the last BN scale of each block (Goyal et al. §5.1).
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, zero_init_residual: bool = True
    ) -> None:
        super().__init__()
        if image_size >= 64:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, 64, 3, padding=1, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
            )
        blocks: list[nn.Module] = []
        c_in = 64
        for stage, (planes, count) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(Bottleneck(c_in, planes, stride))
                c_in = planes * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )
        _init_weights(self, zero_init_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
