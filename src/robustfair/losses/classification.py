"""Per-sample classification losses on logits.

Half and bfloat16 logits (autocast) are computed in float32; float32 and float64 logits
keep their own precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustfair.losses.divergence import working_dtype


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE of each sample. logits: [B, C]; y: [B] int64 -> [B]."""
    return F.cross_entropy(logits.to(working_dtype(logits)), y, reduction="none")


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin `max_{j != y} z_j - z_y` per sample (> 0 means misclassified).

    logits: [B, C]; y: [B] -> [B]. Ascending it is the untargeted CW-inf attack objective.
    """
    logits = logits.to(working_dtype(logits))
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return other.amax(dim=1) - true


def probability_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The margin on softmax probabilities, `max_{j != y} p_j - p_y` per sample, in [-1, 1].

    FAAL's class score (official `cw` in TrustAI/FAAL `ft_prn.py`). logits: [B, C]; y: [B] -> [B].
    """
    return margin(F.softmax(logits.to(working_dtype(logits)), dim=1), y)
