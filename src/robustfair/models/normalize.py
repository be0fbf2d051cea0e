"""Per-channel input normalisation owned by the model.

Attacks work in pixel space ([0, 1], eps in pixel units), so standardisation is the
model's first layer rather than a loader transform (RobustBench's convention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robustfair.errors import ConfigError

NormalizeSpec = tuple[Sequence[float] | float, Sequence[float] | float]


def _as_vector(values: Sequence[float] | float, field: str) -> torch.Tensor:
    if isinstance(values, (int, float)):
        values = [values]
    try:
        vector = torch.tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ConfigError(f"normalize.{field}: expected a number or a list of numbers, got {values!r}") from None
    if vector.numel() == 0:
        raise ConfigError(f"normalize.{field}: empty list; give one value or one per channel")
    if not all(math.isfinite(v) for v in vector.tolist()):
        raise ConfigError(f"normalize.{field}: {values!r} has a non-finite value")
    return vector


class Normalize(nn.Module):
    """`(x - mean) / std` per channel (dim 1), with mean and std stored as buffers.

    mean, std: one value, or one per channel (length C); std > 0.
    x: [B, C, ...] (images [B, C, H, W], tabular [B, D] with D = C) -> same shape.
    The buffers are saved in the state dict, so a checkpoint records its normalisation.
    """

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float):
        super().__init__()
        mean_vector = _as_vector(mean, "mean")
        std_vector = _as_vector(std, "std")
        if (std_vector <= 0).any():
            raise ConfigError(f"normalize.std: {std!r} must be > 0 for every channel")
        if mean_vector.numel() != std_vector.numel() and 1 not in (mean_vector.numel(), std_vector.numel()):
            raise ConfigError(
                f"normalize: mean has {mean_vector.numel()} values but std has "
                f"{std_vector.numel()}; give one value or one per channel for each"
            )
        self.register_buffer("mean", mean_vector)
        self.register_buffer("std", std_vector)

    @property
    def num_channels(self) -> int:
        """Channels the statistics are for (1 means it broadcasts over any count)."""
        return max(self.mean.numel(), self.std.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = self.mean.to(x.dtype).view(shape)
        std = self.std.to(x.dtype).view(shape)
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


def make_normalize(normalize: NormalizeSpec | None, in_channels: int) -> nn.Module:
    """The model's first layer: `Normalize(mean, std)`, or `nn.Identity()` when None.

    Identity keeps the state dict free of extra keys, so checkpoints of the published
    (unnormalised) models load unchanged.
    """
    if normalize is None:
        return nn.Identity()
    if isinstance(normalize, nn.Module):
        return normalize
    if isinstance(normalize, (str, bytes)) or len(normalize) != 2:
        raise ConfigError(f"normalize: expected (mean, std), got {normalize!r}")
    layer = Normalize(*normalize)
    if layer.num_channels not in (1, in_channels):
        raise ConfigError(
            f"normalize: {layer.num_channels} values per statistic but the model has "
            f"in_channels={in_channels}; give one value or {in_channels}"
        )
    return layer
