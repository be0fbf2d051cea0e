"""Evaluate a tabular classifier clean, under the accuracy attack and under the fairness attack.

The fairness gap is a property of a whole set, so the fairness attack runs on the whole
evaluation split at once (one batch), one attack per notion; the accuracy attack is
per-row (run on the whole split too, which changes nothing but speed).
"""

from __future__ import annotations

import torch
from torch import nn

from robustfair.group.attacks import accuracy_attack, fairness_attack
from robustfair.group.config import AttackConfig
from robustfair.group.metrics import NOTIONS, group_metrics
from robustfair.group.tabular import FeatureLayout, TabularSplit
from robustfair.group.training import attack_arguments


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """P(y = 1 | x) [N], in eval mode (the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return torch.sigmoid(model(x))
    finally:
        model.train(was_training)


def evaluate_group_model(model: nn.Module, split: TabularSplit, layout: FeatureLayout, attack: AttackConfig,
                         seed: int = 0) -> dict:
    """Metrics (see `metrics.group_metrics`) on `split` in three conditions.

    Returns {"clean": m, "accuracy_attack": m, "fairness_attack": {notion: m}} where each
    fairness-attack entry is the model attacked to widen that notion's gap; its
    `gaps[notion]` is the gap under the fairness attack.
    """
    args = attack_arguments(attack, layout)
    generator = torch.Generator().manual_seed(seed)
    x, y, s = split.x, split.y, split.s
    x_acc = accuracy_attack(model, x, y, generator=generator, **args)
    result = {
        "clean": group_metrics(predict_proba(model, x), y, s),
        "accuracy_attack": group_metrics(predict_proba(model, x_acc), y, s),
        "fairness_attack": {},
    }
    for notion in NOTIONS:
        x_fair = fairness_attack(model, x, y, s, notion=notion, fix_signs=attack.fix_signs,
                                 generator=generator, **args)
        result["fairness_attack"][notion] = group_metrics(predict_proba(model, x_fair), y, s)
    return result
