"""PreActResNet-18 for small images ("Identity Mappings in Deep Residual Networks", He et al. 2016).

The variant of the FRL ("To be Robust or to be Fair", Xu et al. 2021) and TRADES-family
repositories: 3x3 stem convolution, no max-pool, pre-activation basic blocks, no
batch-norm after the last block, global average pooling, one linear layer. 11,171,146
parameters for 10 classes. State-dict keys match those repositories (conv1, layer1..4,
shortcut.0, linear), so their checkpoints load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustfair.models.geometry import check_positive
from robustfair.models.normalize import NormalizeSpec, make_normalize


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut.

    A projecting shortcut (1x1 conv, when the stride or the width changes) takes the
    pre-activated input, the identity shortcut the raw input, as in the original code.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet with basic blocks; `blocks_per_stage` = (2, 2, 2, 2) is PreActResNet-18.

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
        in_planes = 64
        stages = []
        for planes, blocks, stride in zip((64, 128, 256, 512), blocks_per_stage, (1, 2, 2, 2)):
            layers = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layers.append(PreActBlock(in_planes, planes, block_stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # Adaptive pooling equals the original avg_pool2d(4) on 32x32 inputs and accepts any size.
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def preact_resnet18(
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 32,
    normalize: NormalizeSpec | None = None,
) -> PreActResNet:
    """PreActResNet-18 (FRL's model). input_size is accepted for any value: the network pools globally."""
    return PreActResNet((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, normalize=normalize)
