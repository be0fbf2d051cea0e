"""Adapter to AutoAttack, the optional extra `pyautoattack` (imported lazily).

"Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (Croce and Hein, ICML 2020). AutoAttack keeps, per sample, the
first attack of its ensemble that fools the model (worst case per sample).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import nn

from robustfair.attacks.checks import check_batch, check_choice, check_number
from robustfair.attacks.mode import crafting_mode
from robustfair.errors import ConfigError, RobustfairError

VERSIONS = ("standard", "plus", "rand", "custom")
AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_NORM_NAMES = {"linf": "Linf", "l2": "L2", "l1": "L1"}
# The DLR losses read the 3rd (untargeted) and 4th (targeted) largest logits.
_MIN_CLASSES = {"apgd-dlr": 3, "apgd-t": 4}


class MissingExtraError(RobustfairError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


class AutoAttackResult(NamedTuple):
    """x_adv: [B, ...] detached; predictions: int64 [B], the model's class for each x_adv
    (the clean prediction where the sample was already wrong or resisted every attack)."""

    x_adv: torch.Tensor
    predictions: torch.Tensor


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
               norm: str = "linf", version: str = "standard",
               attacks: Sequence[str] | None = None, seed: int = 0, batch_size: int = 500,
               device: torch.device | str | None = None) -> AutoAttackResult:
    """Run AutoAttack on (x, y) and return the adversarial inputs and their predictions.

    eps: a number (AutoAttack has no per-sample budgets); norm: "linf", "l2" or "l1".
    version: "standard" (APGD-CE, APGD-T, FAB-T, Square), "plus", "rand", or "custom" with
        `attacks` a list from AUTOATTACK_ATTACKS (e.g. ["apgd-ce"] for a quick check).
    seed: AutoAttack's seed; it reseeds torch's global generator, which is saved and
        restored here so the caller's random stream is unaffected.
    The model runs in eval mode (restored afterwards) with parameter gradients switched
    off (FAB calls `backward`, which would otherwise fill parameter `.grad`). With fewer
    than 10 classes the targeted attacks use C - 1 target classes; attacks on the DLR loss
    need at least 3 (apgd-dlr) or 4 (apgd-t) classes, else ConfigError.
    """
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise MissingExtraError("AutoAttack needs the optional dependency pyautoattack; install it with "
                                "`pip install robustfair[autoattack]`") from None
    x, y = check_batch(x, y, "autoattack")
    check_number(eps, "eps")
    check_choice(norm, "norm", tuple(_NORM_NAMES))
    check_choice(version, "version", VERSIONS)
    check_number(seed, "seed", integer=True)
    check_number(batch_size, "batch_size", low=1, integer=True)
    if version == "custom":
        if not attacks:
            raise ConfigError(f"attacks: version='custom' needs a list of attacks from {', '.join(AUTOATTACK_ATTACKS)}")
        for name in attacks:
            check_choice(name, "attacks", AUTOATTACK_ATTACKS)
    elif attacks is not None:
        raise ConfigError(f"attacks: a list of attacks is only used with version='custom', not {version!r}")
    device = x.device if device is None else torch.device(device)

    with crafting_mode(model, "eval"), _frozen_parameters(model), _preserved_rng(device), \
            torch.inference_mode(False):
        with torch.no_grad():
            num_classes = model(x[:1].to(device)).shape[1]
        adversary = AutoAttack(model, norm=_NORM_NAMES[norm], eps=float(eps), version=version,
                               attacks=list(attacks) if version == "custom" else None,
                               device=device, seed=seed)
        _check_class_count(adversary.attacks_to_run, num_classes)
        # AutoAttack's defaults assume at least 10 classes (9 target classes).
        adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
        adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
        x_adv, predictions = adversary.run_standard_evaluation(x.detach(), y, batch_size=batch_size)
    return AutoAttackResult(x_adv.detach().to(x.device), predictions.to(device=x.device, dtype=torch.long))


def _check_class_count(names: Sequence[str], num_classes: int) -> None:
    too_few = [n for n in names if num_classes < _MIN_CLASSES.get(n, 2)]
    if too_few:
        usable = [n for n in names if n not in too_few]
        raise ConfigError(
            f"attacks: {', '.join(f'{n} needs at least {_MIN_CLASSES[n]} classes' for n in too_few)}, "
            f"the model has {num_classes}; use version='custom' with attacks={usable or ['apgd-ce']}")


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def _preserved_rng(device: torch.device) -> Iterator[None]:
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
