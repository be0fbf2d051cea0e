"""Checks a run passes before any training step: names, attack budgets and data.

`parse_config` validates every field's type and range and the method's own fields; the
names it cannot check without importing the registries (dataset, model, attacks) are
checked here, as is the data once loaded, so a typo in `eval.attack` or a class missing
from the validation split fails in seconds rather than after the last epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from robustfair.errors import ConfigError, DataError, UnknownNameError

CLEAN_ONLY = ("none", "clean")


def _named(field: str, lookup: Callable[[], Any]) -> Any:
    """Run `lookup`, prefixing a ConfigError (unknown name, bad option) with `field`."""
    try:
        return lookup()
    except UnknownNameError as err:
        raise UnknownNameError(f"{field}: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{field}: {err}") from None


def check_names(
    config, attack_budget: Callable[[str], dict[str, float]], *, model_given: bool = False, data_given: bool = False
) -> None:
    """Raise UnknownNameError (listing the valid names) for an unknown dataset, model or attack.

    attack_budget(name) -> the overrides the run will pass to `make_attack` (eps, step
    size), so a preset that cannot take them fails here too. model_given / data_given:
    the model or data were passed to `robustfair.train` as objects. A model factory
    (`package.module:factory`) is imported here, so a typo fails before any data is read.
    """
    from robustfair.attacks import make_attack
    from robustfair.engine.run_data import check_data_name
    from robustfair.engine.run_model import check_model_name

    check_data_name(config, data_given=data_given)
    check_model_name(config, model_given=model_given)
    attacks: list[tuple[str, str]] = [
        ("train.val_attack", config.train.val_attack),
        ("eval.attack", config.eval.attack),
    ]
    attacks += [(f"eval.extra_attacks[{i}]", name) for i, name in enumerate(config.eval.extra_attacks)]
    for field, name in attacks:
        if name in CLEAN_ONLY:
            continue
        _named(field, lambda name=name: make_attack(name, **attack_budget(name)))


def _counts(dataset) -> np.ndarray:
    return np.bincount(np.asarray(dataset.y), minlength=len(dataset.classes))


def _missing(dataset, classes: list[str]) -> list[str]:
    return [classes[c] for c in np.flatnonzero(_counts(dataset) == 0)]


def check_run_data(train, val, test, *, dataset: str) -> None:
    """Raise DataError unless train and test share their classes and every class has
    samples in train, validation (when used) and test, after every subset and split."""
    if list(train.classes) != list(test.classes):
        raise DataError(
            f"data {dataset!r}: the train and test splits have different classes "
            f"({len(train.classes)} vs {len(test.classes)}: {_preview(train.classes)} vs "
            f"{_preview(test.classes)})"
        )
    classes = list(train.classes)
    for split, part in (("training", train), ("validation", val), ("test", test)):
        if part is None:
            continue
        missing = _missing(part, classes)
        if missing:
            hint = " (lower data.val_per_class or use more data)" if split == "validation" else ""
            raise DataError(
                f"data {dataset!r}: {len(missing)} classes have no samples in the {split} split: "
                f"{_preview(missing)}{hint}"
            )


def _preview(items: Iterable[Any], limit: int = 10) -> str:
    items = list(items)
    shown = ", ".join(map(repr, items[:limit]))
    return f"[{shown}{', ...' if len(items) > limit else ''}]"
