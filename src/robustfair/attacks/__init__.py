"""Adversarial attacks as pure functions of (model, x, y) with keyword options.

    fgsm, pgd            one-step and projected-gradient attacks, injectable loss
    early_stopped_pgd    FAT / BAT early stopping: flip steps, last clean, first adversarial
                         (compact on CPU, masked and sync-free on CUDA: early_stop_variant)
    autoattack           adapter to the optional extra pyautoattack
    ATTACKS, make_attack named presets (pgd20, pgd20_l2, cw20, autoattack, ...) -> callable(model, x, y),
                         each with its threat model (norm, eps, step); `budget` moves one to another eps

Inputs are in [0, 1] (eps in pixel units); crafting runs in eval mode and restores the
caller's mode; only input gradients are computed.
"""

from robustfair.attacks.autoattack import AUTOATTACK_ATTACKS, AutoAttackResult, MissingExtraError, autoattack
from robustfair.attacks.early_stop import EarlyStopResult, early_stop_variant, early_stopped_pgd
from robustfair.attacks.mode import crafting_mode
from robustfair.attacks.objectives import LOSSES, Objective, resolve_objective
from robustfair.attacks.pgd import fgsm, pgd
from robustfair.attacks.presets import (
    ATTACKS,
    DEFAULT_EPS,
    AttackOutcome,
    AttackPreset,
    ConfiguredAttack,
    budget,
    make_attack,
)

__all__ = [
    "fgsm",
    "pgd",
    "early_stopped_pgd",
    "early_stop_variant",
    "EarlyStopResult",
    "autoattack",
    "AutoAttackResult",
    "AUTOATTACK_ATTACKS",
    "MissingExtraError",
    "ATTACKS",
    "AttackPreset",
    "ConfiguredAttack",
    "make_attack",
    "budget",
    "AttackOutcome",
    "DEFAULT_EPS",
    "crafting_mode",
    "LOSSES",
    "Objective",
    "resolve_objective",
]
