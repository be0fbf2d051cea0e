"""WideResNet ("Wide Residual Networks", Zagoruyko and Komodakis 2016), as in the TRADES and Madry repos.

depth = 6n + 4; stages of n pre-activation blocks with 16k, 32k, 64k channels
(k = widen_factor), final BN-ReLU, global average pooling, one linear layer.
WRN-34-10 has 46,160,474 parameters and WRN-28-10 36,479,194 for 10 classes.

The TRADES file also builds an unused `sub_block1` (never called in forward); it is left
out here, so its checkpoints load with `strict=False` or after dropping `sub_block1.*`
keys. The other state-dict keys match (conv1, block1.layer.0.bn1, convShortcut, bn1, fc).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustfair.errors import ConfigError
from robustfair.models.geometry import check_positive
from robustfair.models.normalize import NormalizeSpec, make_normalize


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus a shortcut.

    As in the reference code, when the width changes the 1x1 projection shortcut takes the
    pre-activated input; otherwise the identity shortcut takes the raw input.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes
        # The reference code only projects when the width changes (a stride change alone
        # never happens in WRN); camelCase keeps its checkpoint keys.
        self.convShortcut = (
            None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(activated)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.convShortcut is None else self.convShortcut(activated)
        return shortcut + out


class NetworkBlock(nn.Module):
    """One stage: `num_blocks` WideBasicBlocks, the first one changing width and stride."""

    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int, dropout: float):
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropout)
                for i in range(num_blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-widen_factor. x: [B, in_channels, H, W] in [0, 1] (any H, W) -> logits [B, num_classes].

    dropout: probability inside each block (0 in TRADES/Madry); depth - 4 must divide by 6.
    """

    def __init__(
        self,
        depth: int = 34,
        widen_factor: int = 10,
        dropout: float = 0.0,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        normalize: NormalizeSpec | None = None,
    ):
        super().__init__()
        check_positive(num_classes, "num_classes")
        check_positive(in_channels, "in_channels")
        check_positive(widen_factor, "widen_factor")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"depth: {depth!r} must be 6n + 4 with n >= 1 (for example 16, 28, 34)")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout: {dropout!r} must be in [0, 1)")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.normalize = make_normalize(normalize, in_channels)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(blocks, widths[0], widths[1], 1, dropout)
        self.block2 = NetworkBlock(blocks, widths[1], widths[2], 2, dropout)
        self.block3 = NetworkBlock(blocks, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # normal(0, sqrt(2 / (k * k * out_channels))), the reference initialisation
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def wide_resnet(
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 32,
    normalize: NormalizeSpec | None = None,
    depth: int = 34,
    widen_factor: int = 10,
    dropout: float = 0.0,
) -> WideResNet:
    """WideResNet of any depth (6n + 4) and width. Any input_size works: the network pools globally."""
    return WideResNet(
        depth, widen_factor, dropout, num_classes=num_classes, in_channels=in_channels, normalize=normalize
    )


def wrn28_10(
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 32,
    normalize: NormalizeSpec | None = None,
    dropout: float = 0.0,
) -> WideResNet:
    """WRN-28-10."""
    return WideResNet(28, 10, dropout, num_classes=num_classes, in_channels=in_channels, normalize=normalize)


def wrn34_10(
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | tuple[int, int] = 32,
    normalize: NormalizeSpec | None = None,
    dropout: float = 0.0,
) -> WideResNet:
    """WRN-34-10 (TRADES' CIFAR-10 model)."""
    return WideResNet(34, 10, dropout, num_classes=num_classes, in_channels=in_channels, normalize=normalize)
