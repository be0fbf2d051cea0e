"""Per-sample divergences between predicted distributions.

Convention (METHODS.md): KL(p || q) = sum_k p_k log(p_k / q_k).

The TRADES-family code computes its KL as PyTorch's
`kl_div(log_softmax(z_q), softmax(z_p))`, i.e. `xlogy(p, p) - p * log q` elementwise.
Algebraically equal forms such as `p * (log p - log q)` round differently: at the
0.001-scale start of a KL attack the input gradient is tiny, and those rounding
differences flip the sign of a few pixels' first step, after which trajectories part.
So `kl_divergence` uses exactly the code's expression: the same sign steps, bit for bit
(tests/test_kl_expression.py).

Precision: half and bfloat16 logits (autocast) are computed in float32; float32 and
float64 logits keep their own precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype a loss is computed in: the inputs' common dtype, at least float32."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) per sample. [B, C], [B, C] -> [B].

    Computed as `F.kl_div(F.log_softmax(logits_q), F.softmax(logits_p), reduction="none").sum(1)`,
    the TRADES code's expression (see the module docstring). Gradients flow into both
    arguments (detach a side yourself when it must be fixed).
    """
    dtype = working_dtype(logits_p, logits_q)
    log_q = F.log_softmax(logits_q.to(dtype), dim=1)
    p = F.softmax(logits_p.to(dtype), dim=1)
    return F.kl_div(log_q, p, reduction="none").sum(dim=1)


def trades_kl(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """TRADES robust term KL(p(x) || p(x')) per sample (Zhang et al. 2019). [B] output.

    Exactly `kl_div(log_softmax(adv), softmax(clean), reduction="none").sum(1)`, the
    official code's expression; its batch sum has the same gradient, element for element,
    as the code's `reduction="sum"`. The clean side is not detached, as in the official code.
    """
    return kl_divergence(logits_clean, logits_adv)


def uniform_kl(logits: torch.Tensor, direction: str = "code") -> torch.Tensor:
    """KL between the prediction p and the uniform distribution U over C classes, per sample.

    direction="code": KL(p || U) = log C - H(p) (BAT's official code, the default), computed
        as that code does: `kl_div(log_softmax(constant logits), softmax(logits))`.
    direction="paper": KL(U || p) = -log C - (1/C) sum_k log p_k  (BAT paper, Eq. 8).
    """
    dtype = working_dtype(logits)
    logits = logits.to(dtype)
    num_classes = logits.shape[1]
    if direction == "code":
        log_uniform = F.log_softmax(torch.full_like(logits, 0.1), dim=1)
        return F.kl_div(log_uniform, F.softmax(logits, dim=1), reduction="none").sum(dim=1)
    if direction == "paper":
        return -math.log(num_classes) - F.log_softmax(logits, dim=1).mean(dim=1)
    raise ValueError(f"uniform_kl direction must be 'code' or 'paper', got {direction!r}")
