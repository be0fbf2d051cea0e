"""ResNet-18, CIFAR variant ("Deep Residual Learning for Image Recognition", He et al. 2016).

As in the BAT and TRADES-family repositories: a 3x3 stride-1 stem convolution with
batch-norm, no max-pool, four stages of basic blocks (64, 128, 256, 512 channels),
global average pooling, one linear layer. 11,173,962 parameters for 10 classes.
State-dict keys match those repositories (conv1, bn1, layer1..4, shortcut.0/1, linear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustfair.models.geometry import check_positive
from robustfair.models.normalize import NormalizeSpec, make_normalize


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with basic blocks; `blocks_per_stage` = (2, 2, 2, 2) is ResNet-18.

    x: [B, in_channels, H, W] in [0, 1] (any H, W) -> logits [B, num_classes].
    """

    def __init__(
        self,
        blocks_per_stage: tuple[int, int, int, int] = (2, 2, 2, 2),
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        normalize: NormalizeSpec | None = None,
    ):
        super().__init__()
        check_positive(num_classes, "num_classes")
        check_positive(in_channels, "in_channels")
        self.normalize = make_normalize(normalize, in_channels)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        stages = []
        for planes, blocks, stride in zip((64, 128, 256, 512), blocks_per_stage, (1, 2, 2, 2)):
            layers = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layers.append(BasicBlock(in_planes, planes, block_stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet18(
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 32,
    normalize: NormalizeSpec | None = None,
) -> ResNet:
    """ResNet-18 (CIFAR variant, BAT's model). Any input_size works: the network pools globally."""
    return ResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, normalize=normalize)
