"""EfficientNet-B0..B3 (Tan and Le 2019, arXiv:1905.11946), as trained at scale in arXiv:2011.00071.

MBConv blocks (inverted bottleneck: 1x1 expansion, depthwise k x k, squeeze-and-excitation,
1x1 projection) with SiLU activations and stochastic depth on the residual branch, in the
seven stages of the paper's table 1. Compound scaling (§3.3) is data: each variant is a
:class:`Scaling` of width (channels, rounded to multiples of 8), depth (``ceil`` of each
stage's repeats) and resolution.

Sized for small inputs: below 64x64 the stem convolution has stride 1 instead of 2, so a
32x32 image reaches the head as 2x2 instead of 1x1. Resolution scaling is applied to the
image actually fed: a B1..B3 model resizes its input (bilinear) to ``round(image_size * r /
224)`` first, e.g. 34, 37 and 43 pixels for 32x32 data. Batch norms are ``nn.BatchNorm2d``
(eps 1e-3, momentum 0.01 as in the paper's TensorFlow code), so
:func:`training.models.convert_batchnorm` makes them synchronized or ghost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Stages of B0: (expansion, kernel, stride, output channels, repeats), table 1.
B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


@dataclass(frozen=True, kw_only=True)
class Scaling:
    """A compound-scaling variant.

    Attributes:
        width: channel multiplier.
        depth: multiplier of each stage's repeats.
        resolution: the paper's input size at ImageNet scale (224 for B0).
        dropout: dropout before the classifier.
    """

    width: float
    depth: float
    resolution: int
    dropout: float


#: The paper's B0..B3 coefficients (§3.3; resolutions and dropout of the released models).
SCALINGS = {
    "b0": Scaling(width=1.0, depth=1.0, resolution=224, dropout=0.2),
    "b1": Scaling(width=1.0, depth=1.1, resolution=240, dropout=0.2),
    "b2": Scaling(width=1.1, depth=1.2, resolution=260, dropout=0.3),
    "b3": Scaling(width=1.2, depth=1.4, resolution=300, dropout=0.3),
}


def round_channels(c: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor``, never more than 10% below ``c`` (the paper's code)."""
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class StochasticDepth(nn.Module):
    """Drop the whole residual branch per sample with probability ``p`` (Huang et al. 2016)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep) / keep


class SqueezeExcite(nn.Module):
    """Channel gates ``sigmoid(W2 silu(W1 mean(x)))`` (Hu et al. 2018)."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted-bottleneck block with squeeze-and-excitation (SE ratio 0.25 of the input)."""

    def __init__(
        self, c_in: int, c_out: int, expansion: int, kernel: int, stride: int, drop: float
    ) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), _bn(hidden), nn.SiLU()]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            _bn(hidden),
            nn.SiLU(),
            SqueezeExcite(hidden, max(1, c_in // 4)),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            _bn(c_out),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out
        self.drop = StochasticDepth(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.drop(out) if self.residual else out


class EfficientNet(nn.Module):
    """EfficientNet with a compound scaling.

    Args:
        scaling: the variant's multipliers.
        in_channels: input channels.
        num_classes: outputs.
        image_size: input height (= width) of the data.
        stochastic_depth: drop probability of the last block (linear in block index).
    """

    def __init__(
        self,
        scaling: Scaling,
        in_channels: int,
        num_classes: int,
        image_size: int,
        stochastic_depth: float = 0.2,
    ) -> None:
        super().__init__()
        self.input_size = round(image_size * scaling.resolution / 224)
        stem = round_channels(32 * scaling.width)
        stem_stride = 2 if image_size >= 64 else 1
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, stem, 3, stem_stride, 1, bias=False),
            _bn(stem),
            nn.SiLU(),
        ]
        stages = [
            (e, k, s, round_channels(c * scaling.width), math.ceil(n * scaling.depth))
            for e, k, s, c, n in B0_STAGES
        ]
        total = sum(n for *_, n in stages)
        c_in, index = stem, 0
        for e, k, s, c, n in stages:
            for i in range(n):
                drop = stochastic_depth * index / total
                layers.append(MBConv(c_in, c, e, k, s if i == 0 else 1, drop))
                c_in, index = c, index + 1
        head = round_channels(1280 * scaling.width)
        layers += [nn.Conv2d(c_in, head, 1, bias=False), _bn(head), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(scaling.dropout)
        self.classifier = nn.Linear(head, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(self.dropout(x))
