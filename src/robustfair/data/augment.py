"""Random crop with zero padding and horizontal flip, as batched tensor operations.

The standard CIFAR augmentation (pad 4, random 32x32 crop, flip with probability 1/2),
done for a whole batch at once with index arithmetic (no per-image Python loop, no padded
copy) and an explicit generator, as in airbench's loader. Parameters are drawn on the CPU
from the generator so a CPU and a GPU run see the same augmentation.
"""

from __future__ import annotations

import torch

from robustfair.errors import ConfigError


def crop_flip_params(
    n: int, padding: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(offsets int64 [n, 2] in [0, 2 * padding] as (top, left) on the padded image,
    flips bool [n]), drawn in that order from `generator` (a CPU generator)."""
    if padding < 0:
        raise ConfigError(f"padding: {padding!r} is out of range; allowed: >= 0")
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, dtype=torch.int64)
    flips = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64).bool()
    return offsets, flips


def apply_crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each image of x [B, C, H, W] at `offsets` of its zero-padded version, then flip
    where `flips`; same shape and dtype as x (any dtype, e.g. uint8 before conversion).

    Equivalent to padding with `padding` zeros on each side, taking the H x W window whose
    top-left corner is offsets[b], and reversing its columns if flips[b].
    """
    if x.ndim != 4:
        raise ConfigError(f"crop/flip needs images [B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    offsets = offsets.to(x.device)
    flips = flips.to(x.device)
    rows = offsets[:, :1] - padding + torch.arange(h, device=x.device)  # [B, H] source rows
    cols = offsets[:, 1:] - padding + torch.arange(w, device=x.device)  # [B, W] source columns
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices split by the channel slice put [B, H, W] first: result [B, H, W, C].
    picked = x[batch, :, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
    picked = torch.where(inside[..., None], picked, torch.zeros((), dtype=x.dtype, device=x.device))
    return picked.permute(0, 3, 1, 2).contiguous()


def random_crop_flip(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding `padding`) and horizontal flip of x [B, C, H, W]."""
    offsets, flips = crop_flip_params(x.shape[0], padding, generator)
    return apply_crop_flip(x, offsets, flips, padding)
