"""Evaluate a tabular classifier clean, under the accuracy attack and under the fairness attack.

The fairness gap is a property of a whole set, so the fairness attack runs on the whole
evaluation split at once (one batch), one attack per notion; the accuracy attack is
per-row (run on the whole split too, which changes nothing but speed). Each condition
gets `metrics.group_metrics` (hard and soft gaps, per-group rates, direction), the
attacked ones how often they left the feature domain (`domain.domain_violations`), and,
with a `BootstrapConfig`, a seeded bootstrap interval over test rows for every gap
(`bootstrap.bootstrap_intervals`).
"""

from __future__ import annotations

import torch
from torch import nn

from robustfair.group.attacks import accuracy_attack, fairness_attack
from robustfair.group.bootstrap import bootstrap_intervals
from robustfair.group.config import AttackConfig, BootstrapConfig
from robustfair.group.domain import domain_violations
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


def evaluate_group_model(
    model: nn.Module,
    split: TabularSplit,
    layout: FeatureLayout,
    attack: AttackConfig,
    seed: int = 0,
    *,
    threshold: float = 0.5,
    bootstrap: BootstrapConfig | None = None,
    group_names: tuple[str, str] = ("0", "1"),
) -> dict:
    """Metrics on `split` in three conditions.

    Returns {"clean": m, "accuracy_attack": m, "fairness_attack": {notion: m}} (plus
    "bootstrap": {"resamples", "seed", "level"} when intervals were computed), each m as
    in `metrics.group_metrics`; attacked conditions add "domain" (domain_violations) and,
    with `bootstrap`, every m gets "intervals": {"hard": {notion: [low, high]}, "soft": ...,
    "accuracy": [low, high], "undefined_resamples": {...}}. Each fairness-attack entry is the
    model attacked to widen that notion's gap; its `gaps[notion]` is the gap under that attack.
    """
    args = attack_arguments(attack, layout)
    generator = torch.Generator().manual_seed(seed)
    x, y, s = split.x, split.y, split.s
    inputs = {"clean": x, "accuracy_attack": accuracy_attack(model, x, y, generator=generator, **args)}
    for notion in NOTIONS:
        inputs[f"fairness_attack.{notion}"] = fairness_attack(
            model, x, y, s, notion=notion, fix_signs=attack.fix_signs, generator=generator, **args
        )
    probabilities = {name: predict_proba(model, x_in) for name, x_in in inputs.items()}
    metrics = {}
    for name, x_in in inputs.items():
        m = group_metrics(probabilities[name], y, s, threshold, group_names)
        if name != "clean":
            m["domain"] = domain_violations(x, x_in, layout)
        metrics[name] = m
    if bootstrap is not None and bootstrap.resamples > 0:
        conditions = {
            name: (p.double().numpy(), (p.double() > threshold).double().numpy()) for name, p in probabilities.items()
        }
        intervals = bootstrap_intervals(
            conditions, y.numpy(), s.numpy(), resamples=bootstrap.resamples, seed=bootstrap.seed, level=bootstrap.level
        )
        for name, interval in intervals.items():
            metrics[name]["intervals"] = interval
    result = {
        "clean": metrics["clean"],
        "accuracy_attack": metrics["accuracy_attack"],
        "fairness_attack": {n: metrics[f"fairness_attack.{n}"] for n in NOTIONS},
    }
    if bootstrap is not None and bootstrap.resamples > 0:
        result["bootstrap"] = {
            "resamples": bootstrap.resamples,
            "seed": bootstrap.seed,
            "level": bootstrap.level,
            "over": "test rows (predictions fixed)",
        }
    return result
