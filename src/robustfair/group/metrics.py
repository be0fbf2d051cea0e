"""Group-fairness gaps, accuracy and balanced accuracy: pure functions on tensors.

Design (METHODS.md, "Group fairness under attack", seed 002: "To be Robust and to be
Fair: Aligning Fairness with Robustness"): every gap is a difference of group means of
the soft prediction p = P(y = 1 | x), within one or two label strata:

- DP (demographic parity):  |E[p | s=0] - E[p | s=1]|
- EOpp (equal opportunity): |E[p | s=0, y=1] - E[p | s=1, y=1]|
- EOdds (equalized odds):   |E[p | s=0, y=0] - E[p | s=1, y=0]| + |E[p | s=0, y=1] - E[p | s=1, y=1]|

EOdds is the SUM of the two conditional gaps (not the max): the sum is differentiable
in both strata at once, so its gradient is the unified weighted form with a sign per
stratum (see `robustfair.group.attacks.unified_weights`). Note that fairlearn's
`equalized_odds_difference` is the max; ours is up to twice it.

Passing hard predictions (p in {0, 1}) gives the usual rate-based gaps. In these
differentiable gaps (the training losses and the attacks' objectives) a stratum in which
either group is empty contributes 0, so a small training minibatch never produces NaN.
Reported numbers never do that: `group_metrics` (evaluation) gives an undefined gap as
None with its reason (`robustfair.group.rates`).

Shapes: p float [N] in [0, 1]; y, s int [N] in {0, 1}. Gaps are 0-dim tensors
(differentiable in p).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from robustfair.errors import ConfigError
from robustfair.group.rates import (
    cell_sums,
    gaps_from_differences,
    group_rates,
    higher_group,
    rate_differences,
    undefined_reasons,
)

NOTIONS = ("dp", "eopp", "eodds")
NOTION_TITLES = {"dp": "demographic parity", "eopp": "equal opportunity", "eodds": "equalized odds"}


def check_notion(notion: str) -> str:
    if notion not in NOTIONS:
        raise ConfigError(f"unknown fairness notion {notion!r}; valid notions: {', '.join(NOTIONS)}")
    return notion


def notion_strata(notion: str, y: torch.Tensor) -> list[torch.Tensor]:
    """The label strata (bool masks [N]) within which `notion` compares the two groups."""
    check_notion(notion)
    if notion == "dp":
        return [torch.ones_like(y, dtype=torch.bool)]
    if notion == "eopp":
        return [y == 1]
    return [y == 0, y == 1]


def group_mean_difference(p: torch.Tensor, s: torch.Tensor, within: torch.Tensor | None = None) -> torch.Tensor:
    """E[p | s=1, within] - E[p | s=0, within] (signed); 0 if either group is empty there."""
    within = torch.ones_like(s, dtype=torch.bool) if within is None else within
    in1 = (within & (s == 1)).to(p.dtype)
    in0 = (within & (s == 0)).to(p.dtype)
    n1, n0 = in1.sum(), in0.sum()
    if n1 == 0 or n0 == 0:
        return p.sum() * 0.0  # keeps the autograd graph and dtype
    return (p * in1).sum() / n1 - (p * in0).sum() / n0


def fairness_gap(notion: str, p: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The gap of `notion` ("dp", "eopp", "eodds"): sum over its strata of |group mean difference|."""
    return sum((group_mean_difference(p, s, m).abs() for m in notion_strata(notion, y)), p.sum() * 0.0)


def demographic_parity_gap(p: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """|E[p | s=0] - E[p | s=1]|."""
    return group_mean_difference(p, s).abs()


def equal_opportunity_gap(p: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """|E[p | s=0, y=1] - E[p | s=1, y=1]|."""
    return fairness_gap("eopp", p, y, s)


def equalized_odds_gap(p: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Sum over y in {0, 1} of |E[p | s=0, y] - E[p | s=1, y]|."""
    return fairness_gap("eodds", p, y, s)


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of hard predictions (int or bool [N]) equal to y."""
    return float((pred.long() == y).float().mean()) if y.numel() else float("nan")


def balanced_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the classes present in y of the per-class recall (TPR and TNR)."""
    recalls = [float((pred[y == c].long() == c).float().mean()) for c in (0, 1) if bool((y == c).any())]
    return sum(recalls) / len(recalls) if recalls else float("nan")


def group_metrics(
    p: torch.Tensor, y: torch.Tensor, s: torch.Tensor, threshold: float = 0.5, group_names: tuple[str, str] = ("0", "1")
) -> dict:
    """Accuracy, per-group rates, every gap hard and soft, and each gap's direction.

    p: [N] probabilities (no gradient needed). Hard decisions are `p > threshold`.
    Returns plain floats (fractions, see `robustfair.group.rates` for the definitions):
    {"accuracy", "balanced_accuracy", "accuracy_by_group": {"0", "1"},
     "groups": {"0"/"1": {"name", "rows", "positives", "hard": {"selection_rate", "tpr", "fpr",
                "accuracy"}, "soft": {"selection_rate", "tpr", "fpr"}}},
     "gaps": {notion: soft gap}, "gaps_hard": {notion: gap of the decisions},
     "direction": {"hard": {notion: name of the group with the higher rate | "none" | "mixed"},
                   "soft": {...}} (`rates.higher_group`),
     "undefined": {notion: reason}}. An undefined rate or gap (an empty group or label
    stratum) is None, with the reason under "undefined".
    """
    p_np = p.detach().double().cpu().numpy()
    y_np, s_np = y.cpu().numpy(), s.cpu().numpy()
    pred = (p_np > threshold).astype(np.float64)
    cells = cell_sums(p_np, pred, y_np, s_np)
    rates = {kind: group_rates(cells, kind) for kind in ("hard", "soft")}
    diffs = {kind: rate_differences(rates[kind]) for kind in rates}
    gaps = {kind: gaps_from_differences(diffs[kind]) for kind in diffs}
    groups = {
        str(g): {
            "name": group_names[g],
            "rows": int(cells.n[g].sum()),
            "positives": int(cells.n[g, 1]),
            **{kind: {r: _number(v[g]) for r, v in rates[kind].items()} for kind in rates},
        }
        for g in (0, 1)
    }
    hard_pred = torch.from_numpy(pred).long()
    return {
        "accuracy": accuracy(hard_pred, y),
        "balanced_accuracy": balanced_accuracy(hard_pred, y),
        "accuracy_by_group": {str(g): groups[str(g)]["hard"]["accuracy"] for g in (0, 1)},
        "groups": groups,
        "gaps": {n: _number(gaps["soft"][n]) for n in NOTIONS},
        "gaps_hard": {n: _number(gaps["hard"][n]) for n in NOTIONS},
        "direction": {kind: higher_group({r: float(d) for r, d in diffs[kind].items()}, group_names) for kind in diffs},
        "undefined": undefined_reasons(cells.n, group_names),
    }


def _number(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
