"""`robustfair group train|eval|compare ...`: group fairness under attack on tabular data."""

from __future__ import annotations


def add_parser(sub) -> None:
    # Parsed by robustfair.group.cli; registered here so it shows in `robustfair --help`.
    p = sub.add_parser("group", help="group fairness under attack on tabular data (Adult, COMPAS)",
                       add_help=False)
    p.set_defaults(run=lambda args: run_group(["--help"]))


def run_group(argv: list[str]) -> int:
    from robustfair.group.cli import main

    return main(argv)
