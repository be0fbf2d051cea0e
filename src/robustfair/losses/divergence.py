"""Per-sample divergences between predicted distributions.

Convention (METHODS.md): KL(p || q) = sum_k p_k log(p_k / q_k).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) per sample. [B, C], [B, C] -> [B].

    Gradients flow into both arguments (detach a side yourself when it must be fixed).
    """
    log_p = F.log_softmax(logits_p.float(), dim=1)
    log_q = F.log_softmax(logits_q.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def trades_kl(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """TRADES robust term KL(p(x) || p(x')) per sample (Zhang et al. 2019). [B] output.

    Equals PyTorch's `kl_div(log_softmax(adv), softmax(clean), reduction="none").sum(1)`,
    the official code's form. The clean side is not detached, as in the official code.
    """
    return kl_divergence(logits_clean, logits_adv)


def uniform_kl(logits: torch.Tensor, direction: str = "code") -> torch.Tensor:
    """KL between the prediction p and the uniform distribution U over C classes, per sample.

    direction="code": KL(p || U) = log C - H(p)  (BAT's official code, the default).
    direction="paper": KL(U || p) = -log C - (1/C) sum_k log p_k  (BAT paper, Eq. 8).
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    num_classes = logits.shape[1]
    if direction == "code":
        return (log_p.exp() * log_p).sum(dim=1) + math.log(num_classes)
    if direction == "paper":
        return -math.log(num_classes) - log_p.mean(dim=1)
    raise ValueError(f"uniform_kl direction must be 'code' or 'paper', got {direction!r}")
