"""Small models for digits, MNIST, small CIFAR runs and tabular data: SmallCNN and MLP."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustfair.errors import ConfigError
from robustfair.models.geometry import InputSize, check_positive, image_shape, spatial_shape
from robustfair.models.normalize import NormalizeSpec, make_normalize


class SmallCNN(nn.Module):
    """TRADES' "SmallCNN" ("Theoretically Principled Trade-off between Robustness and Accuracy").

    (conv3x3-ReLU-conv3x3-ReLU-maxpool2) x 2 with `conv_channels` = (32, 64), then
    fc(`fc_width`)-ReLU-dropout-fc(`fc_width`)-ReLU-fc(num_classes). The flatten size is
    computed from `input_size`, so any image size works: on 28x28 MNIST with 1 channel
    and padding 0 this is exactly the TRADES model (312,202 parameters).

    padding: of every conv; None picks 0 (the original) when the input is at least 16
    pixels on each side and 1 otherwise (8x8 digits would shrink to nothing unpadded).
    x: [B, in_channels, H, W] in [0, 1] -> logits [B, num_classes].
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: InputSize = 28,
        normalize: NormalizeSpec | None = None,
        conv_channels: Sequence[int] = (32, 64),
        fc_width: int = 200,
        dropout: float = 0.5,
        padding: int | None = None,
    ):
        super().__init__()
        check_positive(num_classes, "num_classes")
        check_positive(in_channels, "in_channels")
        check_positive(fc_width, "fc_width")
        height, width = image_shape(input_size)
        if len(conv_channels) != 2:
            raise ConfigError(f"conv_channels: {conv_channels!r} must be two widths, e.g. [32, 64]")
        c1, c2 = (check_positive(c, "conv_channels") for c in conv_channels)
        if padding is None:
            padding = 0 if min(height, width) >= 16 else 1
        if padding not in (0, 1):
            raise ConfigError(f"padding: {padding!r} must be 0, 1 or null (automatic)")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout: {dropout!r} must be in [0, 1)")

        def side_after(size: int) -> int:
            for _ in range(2):  # two stages: two 3x3 convs then a 2x2 max-pool
                size = (size + 4 * padding - 4) // 2
            return size

        out_h, out_w = side_after(height), side_after(width)
        if out_h < 1 or out_w < 1:
            raise ConfigError(
                f"input_size: {input_size!r} is too small for SmallCNN with padding={padding}; "
                "use padding 1 or a larger input"
            )
        self.normalize = make_normalize(normalize, in_channels)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=padding)
        self.conv2 = nn.Conv2d(c1, c1, 3, padding=padding)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=padding)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=padding)
        self.fc1 = nn.Linear(c2 * out_h * out_w, fc_width)
        self.fc2 = nn.Linear(fc_width, fc_width)
        self.fc3 = nn.Linear(fc_width, num_classes)
        self.dropout = dropout
        for module in (self.conv1, self.conv2, self.conv3, self.conv4):
            nn.init.kaiming_normal_(module.weight)
            nn.init.zeros_(module.bias)
        # The reference zero-initialises the last layer: every class starts equally likely
        # (so an untrained SmallCNN has zero input gradients: attacks on it do nothing).
        nn.init.zeros_(self.fc3.weight)
        nn.init.zeros_(self.fc3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.normalize(x)
        out = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(out)))), 2)
        out = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(out)))), 2)
        # flatten (not view): works for channels_last tensors, same NCHW feature order
        out = F.relu(self.fc1(out.flatten(1)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        out = F.relu(self.fc2(out))
        return self.fc3(out)


class MLP(nn.Module):
    """Fully connected ReLU network on the flattened input.

    in_features = in_channels * prod(spatial shape of input_size): for images [B, C, H, W]
    give in_channels=C, input_size=H or [H, W]; for tabular [B, D] give in_channels=D and
    input_size=[] (no spatial dims). hidden_sizes: widths of the hidden layers (may be
    empty: a linear model). x: [B, in_channels, *spatial] in [0, 1] -> logits [B, num_classes].
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: InputSize = 32,
        normalize: NormalizeSpec | None = None,
        hidden_sizes: Sequence[int] = (256, 256),
        dropout: float = 0.0,
    ):
        super().__init__()
        check_positive(num_classes, "num_classes")
        check_positive(in_channels, "in_channels")
        if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence):
            raise ConfigError(f"hidden_sizes: expected a list of widths, got {hidden_sizes!r}")
        widths = [check_positive(w, "hidden_sizes") for w in hidden_sizes]
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout: {dropout!r} must be in [0, 1)")
        self.in_features = in_channels * math.prod(spatial_shape(input_size))
        self.normalize = make_normalize(normalize, in_channels)
        sizes = [self.in_features, *widths]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.normalize(x).flatten(1)
        if out.shape[1] != self.in_features:
            raise ValueError(f"MLP built for {self.in_features} input features, got input of shape {tuple(x.shape)}")
        for layer in self.hidden:
            out = F.dropout(F.relu(layer(out)), p=self.dropout, training=self.training)
        return self.head(out)


def small_cnn(
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: InputSize = 32,
    normalize: NormalizeSpec | None = None,
    conv_channels: Sequence[int] = (32, 64),
    fc_width: int = 200,
    dropout: float = 0.5,
    padding: int | None = None,
) -> SmallCNN:
    """SmallCNN sized for `input_size` (see SmallCNN)."""
    return SmallCNN(
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        normalize=normalize,
        conv_channels=conv_channels,
        fc_width=fc_width,
        dropout=dropout,
        padding=padding,
    )


def mlp(
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: InputSize = 32,
    normalize: NormalizeSpec | None = None,
    hidden_sizes: Sequence[int] = (256, 256),
    dropout: float = 0.0,
) -> MLP:
    """MLP on the flattened input (see MLP)."""
    return MLP(
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        normalize=normalize,
        hidden_sizes=hidden_sizes,
        dropout=dropout,
    )
