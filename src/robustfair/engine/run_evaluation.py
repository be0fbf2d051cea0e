"""Evaluation inside a run: validation, model selection, and the final test results.

Model selection looks at the validation split only (worst-class robust accuracy); the
test split is evaluated once, at the end, for the last model, the selected ("best")
model (its weights equal to the last model's, when the last epoch was selected, reuse the
last model's numbers instead of a second identical attack) and a method's averaged weights
when it keeps them (CFA).

The threat model is explicit: a run trains at one eps in one norm, and its evaluation
attacks take that eps only when they attack in the same norm (`run_attack_budget`); an
attack of another norm keeps its preset's budget (pgd20_l2's L2 eps 0.5 in an L-inf run),
and the result says which. Every evaluation draws its random numbers from the run's
recorded `eval.seed`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustfair.engine.checkpoint import load_checkpoint

SELECTION_RULE = "validation worst-class robust accuracy (never the test set)"


CLEAN_ONLY = ("none", "clean")


def run_attack_budget(attack: str, eps: float, norm: str = "linf") -> tuple[dict[str, float], str]:
    """(overrides, note): the budget of the named attack in a run trained at `eps` in `norm`.

    An attack of the run's norm takes the run's eps, with the step by its preset's rule
    (eps/4 for the L-inf PGD/CW presets, as 2/255 at 8/255; pgd20_trades keeps its 0.003);
    an attack of another norm keeps its preset's eps and step. The note says which, for the
    output and results.json ("eps_from").
    """
    from robustfair.attacks import ATTACKS, budget

    if attack in CLEAN_ONLY:
        return {}, "clean only"
    preset = ATTACKS[attack]
    if preset.norm != norm:
        return {}, (
            f"{attack} attacks in {preset.norm}: the run's {norm} eps {eps:g} does not apply, so it keeps "
            f"its preset's {preset.norm} eps {preset.eps:g}"
        )
    return budget(attack, eps=eps), f"the run's {norm} eps {eps:g}"


def eval_attack_overrides(attack: str, eps: float, norm: str = "linf") -> dict[str, float]:
    """The overrides of `run_attack_budget` alone."""
    return run_attack_budget(attack, eps, norm)[0]


def evaluate_model(
    model: nn.Module,
    data,
    *,
    attack: str,
    eps: float,
    num_classes: int,
    classes: list[str],
    device: torch.device,
    dataset_name: str,
    reduce: Callable | None = None,
    norm: str = "linf",
    seed: int | None = 0,
    progress: bool | None = False,
    overrides: dict[str, Any] | None = None,
    eps_from: str | None = None,
):
    """Class-wise result of `model` on `data` under the named attack ('none': clean only), at
    the run's eps where the attack's norm is the run's `norm` (`run_attack_budget`), with
    every random draw from `seed`. overrides: an explicit budget (e.g. `eval --eps`) used
    instead, described by `eps_from`. The attack record says where its eps came from."""
    from robustfair.metrics import evaluate_classwise

    if attack in CLEAN_ONLY:
        return evaluate_classwise(
            model,
            data,
            attack=None,
            num_classes=num_classes,
            classes=classes,
            device=device,
            dataset_name=dataset_name,
            reduce=reduce,
            seed=seed,
            progress=progress,
        )
    if overrides is None:
        overrides, eps_from = run_attack_budget(attack, eps, norm)
    result = evaluate_classwise(
        model,
        data,
        attack=attack,
        num_classes=num_classes,
        classes=classes,
        device=device,
        dataset_name=dataset_name,
        attack_overrides=overrides,
        reduce=reduce,
        seed=seed,
        progress=progress,
    )
    return dataclasses.replace(result, attack={**result.attack, "eps_from": eps_from}) if eps_from else result


def selection_score(result) -> float:
    """What model selection maximises: the worst class's robust accuracy on validation."""
    return float(min(result.to_dict()["per_class"]["robust_acc"]))


def validation_record(result) -> dict[str, Any]:
    """The part of a validation result kept in metrics.jsonl."""
    summary = result.to_dict()
    return {
        "summary": summary["summary"],
        "clean_acc": summary["per_class"]["clean_acc"],
        "robust_acc": summary["per_class"]["robust_acc"],
    }


def final_test_results(
    core: nn.Module,
    test: Iterable,
    *,
    attack: str,
    extra_attacks: Iterable[str],
    evaluate: Callable[[nn.Module, str], Any],
    evaluate_extra: Callable[[nn.Module, str], Any] | None = None,
    best_checkpoint: Path,
    best_epoch: int,
    averaged_state: dict | None,
    averaged_label: str,
    device: torch.device,
    sanity: Callable[[Any], dict] | None,
) -> dict[str, Any]:
    """results.json's class-wise content: last model, extra attacks, sanity, best and averaged models.

    `evaluate(model, attack_name)` runs one class-wise evaluation on the test split;
    `evaluate_extra` the same for the extra attacks (default `evaluate`; e.g. on a
    class-balanced subset, for an expensive attack). The core's weights are restored after
    evaluating the best and averaged models.
    """
    last = evaluate(core, attack)
    results = last.to_dict()
    results["model_selection"] = "last epoch"
    extra = {name: (evaluate_extra or evaluate)(core, name).to_dict() for name in extra_attacks}
    if extra:
        results["extra_attacks"] = extra
    if sanity is not None:
        results["sanity"] = sanity(last)
    if best_checkpoint.is_file():
        state = load_checkpoint(best_checkpoint, map_location=device)
        if _holds_weights(core, state["model"]):
            # the selected epoch is the last one: the same weights under the same seeded
            # attack give the same numbers, so the last model's evaluation is reused
            best = last.to_dict()
        else:
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


def _holds_weights(model: nn.Module, state: dict) -> bool:
    """Whether `model`'s state dict equals `state` exactly (same keys, shapes and values); `state`
    is loaded onto the model's device."""
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], state[k]) for k in own)


class _weights_swapped:
    """Load `state` into `model` for the block, then put the previous weights back."""

    def __init__(self, model: nn.Module, state: dict):
        self.model, self.state = model, state

    def __enter__(self) -> None:
        self.saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.state)

    def __exit__(self, *exc) -> None:
        self.model.load_state_dict(self.saved)


__all__ = [
    "run_attack_budget",
    "eval_attack_overrides",
    "evaluate_model",
    "CLEAN_ONLY",
    "selection_score",
    "validation_record",
    "final_test_results",
    "SELECTION_RULE",
]
