"""Per-sample classification losses on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE of each sample. logits: [B, C]; y: [B] int64 -> [B]."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin `max_{j != y} z_j - z_y` per sample (> 0 means misclassified).

    logits: [B, C]; y: [B] -> [B]. Ascending it is the untargeted CW-inf attack objective.
    """
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return other.amax(dim=1) - true
