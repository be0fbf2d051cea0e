"""Evaluation inside a run: validation, model selection, and the final test results.

Model selection looks at the validation split only (worst-class robust accuracy); the
test split is evaluated once, at the end, for the last model, the selected ("best")
model and a method's averaged weights when it keeps them (CFA).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from robustfair.engine.checkpoint import load_checkpoint

SELECTION_RULE = "validation worst-class robust accuracy (never the test set)"


def eval_attack_overrides(attack: str, eps: float) -> dict[str, float]:
    """Budget of a named evaluation attack at the run's eps (PGD/CW step = eps/4, as 2/255 at 8/255)."""
    if attack in ("none", "clean"):
        return {}
    overrides: dict[str, float] = {"eps": eps}
    if attack.startswith(("pgd", "cw")) and not attack.endswith("_trades"):
        overrides["step_size"] = eps / 4
    return overrides


def evaluate_model(model: nn.Module, data, *, attack: str, eps: float, num_classes: int, classes: list[str],
                   device: torch.device, dataset_name: str, reduce: Callable | None = None):
    """Class-wise result of `model` on `data` under the named attack at the run's eps ('none': clean only)."""
    from robustfair.metrics import evaluate_classwise

    if attack in ("none", "clean"):
        return evaluate_classwise(model, data, attack=None, num_classes=num_classes, classes=classes,
                                  device=device, dataset_name=dataset_name, reduce=reduce)
    return evaluate_classwise(model, data, attack=attack, num_classes=num_classes, classes=classes, device=device,
                              dataset_name=dataset_name, attack_overrides=eval_attack_overrides(attack, eps),
                              reduce=reduce)


def selection_score(result) -> float:
    """What model selection maximises: the worst class's robust accuracy on validation."""
    return float(min(result.to_dict()["per_class"]["robust_acc"]))


def validation_record(result) -> dict[str, Any]:
    """The part of a validation result kept in metrics.jsonl."""
    summary = result.to_dict()
    return {"summary": summary["summary"], "clean_acc": summary["per_class"]["clean_acc"],
            "robust_acc": summary["per_class"]["robust_acc"]}


def final_test_results(core: nn.Module, test: Iterable, *, attack: str, extra_attacks: Iterable[str],
                 evaluate: Callable[[nn.Module, str], Any], best_checkpoint: Path, best_epoch: int,
                 averaged_state: dict | None, averaged_label: str, device: torch.device,
                 sanity: Callable[[Any], dict] | None) -> dict[str, Any]:
    """results.json's class-wise content: last model, extra attacks, sanity, best and averaged models.

    `evaluate(model, attack_name)` runs one class-wise evaluation on the test split. The
    core's weights are restored after evaluating the best and averaged models.
    """
    last = evaluate(core, attack)
    results = last.to_dict()
    results["model_selection"] = "last epoch"
    extra = {name: evaluate(core, name).to_dict() for name in extra_attacks}
    if extra:
        results["extra_attacks"] = extra
    if sanity is not None:
        results["sanity"] = sanity(last)
    if best_checkpoint.is_file():
        state = load_checkpoint(best_checkpoint, map_location=device)
        with _weights_swapped(core, state["model"]):
            best = evaluate(core, attack).to_dict()
        best["epoch"] = int(state.get("epoch", best_epoch))  # what the file holds
        best["selected_by"] = SELECTION_RULE
        results["best"] = best
    if averaged_state is not None:  # e.g. CFA's fairness-aware weight average
        with _weights_swapped(core, averaged_state):
            results["averaged"] = evaluate(core, attack).to_dict()
        results["averaged"]["selected_by"] = averaged_label
    return results


class _weights_swapped:
    """Load `state` into `model` for the block, then put the previous weights back."""

    def __init__(self, model: nn.Module, state: dict):
        self.model, self.state = model, state

    def __enter__(self) -> None:
        self.saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.state)

    def __exit__(self, *exc) -> None:
        self.model.load_state_dict(self.saved)


__all__ = ["eval_attack_overrides", "evaluate_model", "selection_score", "validation_record", "final_test_results",
           "SELECTION_RULE"]
