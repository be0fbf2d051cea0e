"""Adapter to AutoAttack, the optional extra `pyautoattack` (imported lazily), with a record of
which component attack broke each sample.

"Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (Croce and Hein, ICML 2020). AutoAttack runs its components in a
fixed order (standard: APGD-CE, APGD-T, FAB-T, Square), each on the samples that are still
robust, and keeps per sample the first adversarial example found (worst case per sample).
Its own report gives the robust accuracy after each component over the whole set; here the
components run one at a time through AutoAttack's own code, on exactly the batches its
`run_standard_evaluation` would form (the remaining robust samples, in order, cut into
`batch_size` chunks, every component reseeding itself per batch), so the result equals
AutoAttack's, and `first_success` says per sample which component fooled it first. Grouped
by class (`metrics.classwise`), that is the per-class component table AutoAttack lacks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

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
MISCLASSIFIED = -1  # first_success of a sample wrong on the clean input (never attacked)


class MissingExtraError(RobustfairError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


class AutoAttackResult(NamedTuple):
    """x_adv: [B, ...] detached; predictions: int64 [B], the model's class for each x_adv
    (the clean prediction where the sample was already wrong or resisted every attack);
    first_success: int64 [B], the index in `components` of the component that fooled the
    sample first, MISCLASSIFIED (-1) for a sample wrong on the clean input, and
    len(components) for a sample no component fooled; components: the attacks in the
    order they ran."""

    x_adv: torch.Tensor
    predictions: torch.Tensor
    first_success: torch.Tensor
    components: tuple[str, ...]


def _import_autoattack():
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise MissingExtraError(
            "AutoAttack needs the optional dependency pyautoattack; install it with "
            "`pip install robustfair[autoattack]`"
        ) from None
    return AutoAttack


def implementation() -> str:
    """ "pyautoattack X.Y.Z", or a note that the extra is missing (recorded with every result)."""
    try:
        import pyautoattack
    except ImportError:
        return "pyautoattack (not installed)"
    return f"pyautoattack {getattr(pyautoattack, '__version__', '?')}"


def check_options(eps: Any, norm: str, version: str, attacks: Sequence[str] | None, seed: Any, batch_size: Any) -> None:
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


def _adversary(
    model: nn.Module | None,
    *,
    eps: float,
    norm: str,
    version: str,
    attacks: Sequence[str] | None,
    seed: int,
    device: torch.device | str,
    num_classes: int | None,
):
    """AutoAttack configured as its `version` sets it, with the target-class count capped at C - 1."""
    AutoAttack = _import_autoattack()
    adversary = AutoAttack(
        model,
        norm=_NORM_NAMES[norm],
        eps=float(eps),
        version=version,
        attacks=list(attacks) if version == "custom" else None,
        device=device,
        seed=seed,
    )
    if num_classes is not None:
        # AutoAttack's defaults assume at least 10 classes (9 target classes).
        adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
        adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
    return adversary


def component_settings(
    *,
    eps: float,
    norm: str = "linf",
    version: str = "standard",
    attacks: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> dict[str, dict]:
    """{component: its settings} in run order, read from AutoAttack's own configuration
    (iterations, restarts, target classes, queries); needs the extra."""
    adversary = _adversary(
        None, eps=eps, norm=norm, version=version, attacks=attacks, seed=0, device="cpu", num_classes=num_classes
    )
    apgd, targeted, fab, square = adversary.apgd, adversary.apgd_targeted, adversary.fab, adversary.square
    settings = {
        "apgd-ce": {"loss": "ce", "iterations": apgd.n_iter, "restarts": apgd.n_restarts, "eot_iter": apgd.eot_iter},
        "apgd-dlr": {"loss": "dlr", "iterations": apgd.n_iter, "restarts": apgd.n_restarts, "eot_iter": apgd.eot_iter},
        "apgd-t": {
            "loss": "dlr-targeted",
            "iterations": targeted.n_iter,
            "restarts": targeted.n_restarts,
            "target_classes": targeted.n_target_classes,
        },
        "fab": {"iterations": fab.n_iter, "restarts": fab.n_restarts},
        # AutoAttack runs FAB-T with one restart (it sets this when FAB-T starts).
        "fab-t": {"iterations": fab.n_iter, "restarts": 1, "target_classes": fab.n_target_classes},
        "square": {"queries": square.n_queries, "restarts": square.n_restarts, "p_init": square.p_init},
    }
    return {name: settings[name] for name in adversary.attacks_to_run}


def components_of(version: str, attacks: Sequence[str] | None = None) -> tuple[str, ...]:
    """The components `version` runs, in order (AutoAttack's `_set_version`), without the extra."""
    if version == "custom":
        return tuple(attacks or ())
    return {
        "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
        "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
        "rand": ("apgd-ce", "apgd-dlr"),
    }[version]


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    version: str = "standard",
    attacks: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> AutoAttackResult:
    """Run AutoAttack on (x, y): adversarial inputs, their predictions, and per sample the
    component that fooled it first.

    eps: a number (AutoAttack has no per-sample budgets); norm: "linf", "l2" or "l1".
    version: "standard" (APGD-CE, APGD-T, FAB-T, Square), "plus", "rand", or "custom" with
        `attacks` a list from AUTOATTACK_ATTACKS (e.g. ["apgd-ce"] for a quick check).
    seed: AutoAttack's seed; each component reseeds torch's global generator with it per
        batch; that state is saved and restored here so the caller's random stream is unaffected.
    batch_size: AutoAttack's batch size (the result depends on it, as AutoAttack's does).
    progress: a bar per component counting the model's forward passes (None: when stderr
        is a terminal, see `robustfair.engine.progress`).
    The model runs in eval mode (restored afterwards) with parameter gradients switched
    off (FAB calls `backward`, which would otherwise fill parameter `.grad`). With fewer
    than 10 classes the targeted attacks use C - 1 target classes; attacks on the DLR loss
    need at least 3 (apgd-dlr) or 4 (apgd-t) classes, else ConfigError.
    """
    from robustfair.engine.progress import counting_calls, progress_bar

    _import_autoattack()
    x, y = check_batch(x, y, "autoattack")
    check_options(eps, norm, version, attacks, seed, batch_size)
    device = x.device if device is None else torch.device(device)

    with (
        crafting_mode(model, "eval"),
        _frozen_parameters(model),
        _preserved_rng(device),
        torch.inference_mode(False),
        _each_warning_once(),
    ):
        x_run, y_run = x.detach().to(device), y.to(device)
        with torch.no_grad():
            clean = torch.cat([model(chunk).argmax(1) for chunk in x_run.split(batch_size)])
            num_classes = model(x_run[:1]).shape[1]
        adversary = _adversary(
            model,
            eps=eps,
            norm=norm,
            version=version,
            attacks=attacks,
            seed=seed,
            device=device,
            num_classes=num_classes,
        )
        components = tuple(adversary.attacks_to_run)
        _check_class_count(components, num_classes)

        x_adv = x_run.clone()
        predictions = clean.clone()
        robust = clean == y_run
        first_success = torch.where(robust, len(components), MISCLASSIFIED)
        for index, name in enumerate(components):
            remaining = torch.nonzero(robust).squeeze(1)
            if remaining.numel() == 0:
                break
            adversary.attacks_to_run = [name]
            with (
                progress_bar(
                    None, f"AutoAttack {name} on {remaining.numel()}", unit="pass", enabled=progress, leave=False
                ) as bar,
                counting_calls(model, bar),
            ):
                for chunk in remaining.split(batch_size):
                    adv_chunk, pred_chunk = adversary.run_standard_evaluation(
                        x_run[chunk], y_run[chunk], batch_size=batch_size
                    )
                    fooled = pred_chunk.to(device) != y_run[chunk]
                    hit = chunk[fooled]
                    x_adv[hit] = adv_chunk.to(device)[fooled].detach()
                    predictions[hit] = pred_chunk.to(device)[fooled]
                    first_success[hit] = index
                    robust[hit] = False
                    bar.set_postfix_str(f"robust {int(robust.sum())}/{robust.numel()}")
        adversary.attacks_to_run = list(components)
    return AutoAttackResult(
        x_adv.detach().to(x.device),
        predictions.to(device=x.device, dtype=torch.long),
        first_success.to(x.device),
        components,
    )


def _check_class_count(names: Sequence[str], num_classes: int) -> None:
    too_few = [n for n in names if num_classes < _MIN_CLASSES.get(n, 2)]
    if too_few:
        usable = [n for n in names if n not in too_few]
        raise ConfigError(
            f"attacks: {', '.join(f'{n} needs at least {_MIN_CLASSES[n]} classes' for n in too_few)}, "
            f"the model has {num_classes}; use version='custom' with attacks={usable or ['apgd-ce']}"
        )


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
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        yield


class _OnceFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


@contextlib.contextmanager
def _each_warning_once() -> Iterator[None]:
    """AutoAttack checks the model (probabilities? randomised?) at each call, and each
    component runs through one call per batch: show each of its warnings once."""
    logger = logging.getLogger("auto-attack")
    once = _OnceFilter()
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)


__all__ = [
    "autoattack",
    "AutoAttackResult",
    "AUTOATTACK_ATTACKS",
    "VERSIONS",
    "MISCLASSIFIED",
    "MissingExtraError",
    "component_settings",
    "components_of",
    "implementation",
]
