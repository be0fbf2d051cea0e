"""`robustfair list [datasets|models|methods|attacks|presets]`: what can be named in a config."""

from __future__ import annotations

import argparse

KINDS = ["datasets", "models", "methods", "attacks", "presets"]


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list datasets, models, methods, attacks and presets")
    p.add_argument("kind", nargs="?", choices=KINDS, help="only this kind")
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


def run(args: argparse.Namespace) -> int:
    for kind in [args.kind] if args.kind else KINDS:
        print(f"{kind}: {', '.join(names(kind))}")
    return 0
