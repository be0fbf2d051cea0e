"""Per-sample loss terms of Balance Adversarial Training (BAT).

Sun et al., "Improving Robust Fairness via Balance Adversarial Training", AAAI 2023.

The full objective (paper Eq. 7, official `BAT_loss`), per sample i:

    CE(f(x_lc), y) + beta * KL(p(x) || p(x_fa)) + alpha * [KL(p(x_lc) || U) + KL(p(x_fa) || U)]

with x_lc the last clean and x_fa the first adversarial boundary example. The official
code reduces each term by the batch mean, so the method's loss is `terms["total"].mean()`.

Table 2 ablations are selected by two switches:
- `source`: "boundary" (CE on x_lc, KL to x_fa; BAT) or "fixed_step" (TRADES source term:
  CE on the clean x, KL to the fixed-step x_adv; row 6).
- `target`: which inputs get the uniform term: "none" (row 1), "last_clean" (row 2),
  "first_adv" (row 3), "fixed_step" (x_adv, row 4) or "both" (x_lc and x_fa; rows 5, 6).
"""

from __future__ import annotations

import torch

from robustfair.errors import ConfigError
from robustfair.losses.classification import cross_entropy
from robustfair.losses.divergence import trades_kl, uniform_kl

SOURCE_TERMS = ("boundary", "fixed_step")
TARGET_TERMS = ("none", "last_clean", "first_adv", "fixed_step", "both")


def bat_needs(source: str, target: str) -> tuple[bool, bool]:
    """(needs boundary examples, needs a fixed-step x_adv) for a source/target choice."""
    _check_choice("source", source, SOURCE_TERMS)
    _check_choice("target", target, TARGET_TERMS)
    boundary = source == "boundary" or target in ("last_clean", "first_adv", "both")
    fixed = source == "fixed_step" or target == "fixed_step"
    return boundary, fixed


def bat_loss_terms(
    logits_clean: torch.Tensor,
    logits_lc: torch.Tensor | None,
    logits_fa: torch.Tensor | None,
    y: torch.Tensor,
    *,
    beta: float = 6.0,
    alpha: float = 1.0,
    direction: str = "code",
    source: str = "boundary",
    target: str = "both",
    logits_adv: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Unreduced BAT terms, each of shape [B].

    logits_clean: f(x) [B, C] (not detached: gradients flow through p(x), as in TRADES).
    logits_lc, logits_fa: f(x_lc), f(x_fa) [B, C]; may be None when the chosen
        source/target terms do not use them.
    logits_adv: f(x_adv) of the fixed-step (10-step TRADES KL-PGD) example, needed only
        for source="fixed_step" or target="fixed_step".
    y: [B] int64 labels.
    direction: "code" = KL(p || U) (official code, default); "paper" = KL(U || p) (Eq. 6).

    Returns {"ce", "kl", "uniform", "total"}: total = ce + beta * kl + alpha * uniform.
    """
    _, needs_fixed = bat_needs(source, target)
    if source == "boundary" and (logits_lc is None or logits_fa is None):
        raise ValueError("bat_loss_terms: source='boundary' needs logits_lc and logits_fa")
    if target in ("last_clean", "both") and logits_lc is None:
        raise ValueError(f"bat_loss_terms: target={target!r} needs logits_lc")
    if target in ("first_adv", "both") and logits_fa is None:
        raise ValueError(f"bat_loss_terms: target={target!r} needs logits_fa")
    if needs_fixed and logits_adv is None:
        raise ValueError("bat_loss_terms: a 'fixed_step' term needs logits_adv")
    if logits_clean.ndim != 2 or y.shape != logits_clean.shape[:1]:
        raise ValueError(
            f"bat_loss_terms: expected logits [B, C] and y [B], got {tuple(logits_clean.shape)} and {tuple(y.shape)}"
        )

    if source == "boundary":
        ce = cross_entropy(logits_lc, y)
        kl = trades_kl(logits_clean, logits_fa)
    else:
        ce = cross_entropy(logits_clean, y)
        kl = trades_kl(logits_clean, logits_adv)

    uniform_inputs = {
        "none": [],
        "last_clean": [logits_lc],
        "first_adv": [logits_fa],
        "fixed_step": [logits_adv],
        "both": [logits_lc, logits_fa],
    }[target]
    uniform = torch.zeros_like(ce)
    for logits in uniform_inputs:
        uniform = uniform + uniform_kl(logits, direction)

    total = ce + beta * kl + alpha * uniform
    return {"ce": ce, "kl": kl, "uniform": uniform, "total": total}


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{field}: {value!r} is not allowed; valid values: {', '.join(choices)}")
