"""`robustfair list [datasets|models|methods|attacks|presets]`: what can be named in a config.

Without a kind, one line per kind. `list datasets` and `list models` show each entry's
options (`data.options` / `model.options`) with their defaults.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

KINDS = ["datasets", "models", "methods", "attacks", "presets"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "list",
        help="list datasets, models, methods, attacks and presets",
        description="List what a config can name; `list datasets` and `list models` also show each "
        "one's options and defaults.",
    )
    p.add_argument("kind", nargs="?", choices=KINDS, help="only this kind, with details")
    p.set_defaults(run=run)


def names(kind: str) -> list[str]:
    if kind == "datasets":
        from robustfair.data import DATASETS

        return DATASETS.names()
    if kind == "models":
        from robustfair.models import MODELS

        return MODELS.names()
    if kind == "methods":
        from robustfair.methods import METHODS

        return METHODS.names()
    if kind == "attacks":
        from robustfair.attacks import ATTACKS

        return ATTACKS.names()
    from robustfair.engine.config import list_presets

    return list_presets()


def _summary(function: Callable[..., Any]) -> str:
    doc = inspect.getdoc(function) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def _options(function: Callable[..., Any], kinds: tuple[Any, ...], skip: tuple[str, ...] = ()) -> str:
    params = [p for p in inspect.signature(function).parameters.values() if p.kind in kinds and p.name not in skip]
    return ", ".join(f"{p.name}={p.default!r}" for p in params) or "none"


def dataset_lines() -> list[str]:
    """Two lines per dataset: what it is, then its data.options with defaults."""
    from robustfair.data import DATASETS

    lines = ["datasets (data.name; options go in data.options, files in data.root):"]
    for name in DATASETS.names():
        reader = DATASETS[name]
        lines.append(f"  {name}: {_summary(reader)}")
        lines.append(f"      options: {_options(reader, (inspect.Parameter.KEYWORD_ONLY,))}")
    lines.append(
        "  your own data: imagefolder (a folder per class), arrays (.npz/.npy), or Python objects through "
        "robustfair.train(train_data=..., test_data=...); see README 'Your own model and data'"
    )
    return lines


def model_lines() -> list[str]:
    """One line per model with its model.options, and how to name your own."""
    from robustfair.models import MODELS, model_options

    lines = ["models (model.name; options go in model.options):"]
    for name in MODELS.names():
        options = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items()) or "none"
        lines.append(f"  {name}: options: {options}")
    lines.append(
        "  your own model: model.name: 'package.module:factory' with model.kwargs (the factory also gets "
        "num_classes, in_channels, input_size when it declares them)"
    )
    return lines


def preset_lines() -> list[str]:
    """One line per preset: its name and the first line of its header comment."""
    from robustfair.engine.config import PRESET_DIR, list_presets

    lines = ["presets (robustfair train NAME; files in configs/):"]
    for name in list_presets():
        first = ""
        for line in (PRESET_DIR / f"{name}.yaml").read_text().splitlines():
            if line.startswith("#"):
                first = line.lstrip("# ").strip()
                break
        lines.append(f"  {name}" + (f": {first}" if first else ""))
    return lines


def attack_lines() -> list[str]:
    """One line per attack preset: its description (threat model and steps)."""
    from robustfair.attacks import ATTACKS

    return ["attacks (--attack NAME, eval.attack, train.val_attack):"] + [
        f"  {name}: {ATTACKS[name].description}" for name in ATTACKS.names()
    ]


def run(args: argparse.Namespace) -> int:
    details = {"datasets": dataset_lines, "models": model_lines, "presets": preset_lines, "attacks": attack_lines}
    if args.kind in details:
        print("\n".join(details[args.kind]()))
        return 0
    for kind in [args.kind] if args.kind else KINDS:
        print(f"{kind}: {', '.join(names(kind))}")
    return 0
