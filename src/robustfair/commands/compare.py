"""`robustfair compare RUN [RUN ...]`: BAT Table 1 style comparison of finished runs.

Rows are runs (or groups of runs whose configs differ only in seed, shown as mean ± std),
columns the six summary error numbers; then a per-class clean/robust error table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustfair.report.compare import DEFAULT_IGNORED


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare finished runs in a BAT Table 1 style table",
        description="Rows = runs, columns = Avg./Worst Std., Bndy., Rob. error %. Runs whose "
        "config differs only in seed are grouped as mean ± std.",
    )
    p.add_argument("runs", nargs="+", help="run directories or glob patterns (quote globs: 'runs/*')")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"], dest="fmt")
    p.add_argument("--which", default="last", choices=["last", "best"], help="last or best-on-validation model")
    p.add_argument("--attack", help="an attack in the runs' results (main or extra, e.g. autoattack); default main")
    p.add_argument("--no-group", action="store_true", help="one row per run, even for seeds of one config")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="also ignore this dotted config key when grouping (e.g. init_from); repeatable",
    )
    p.add_argument("--no-per-class", action="store_true", help="only the summary table")
    p.add_argument(
        "--baseline",
        metavar="ROW",
        help="also print each row's paired difference per seed against this row, with a 95%% "
        "t-interval and a sign test over seeds (e.g. --baseline pgd_at)",
    )
    p.add_argument("--out", help="write the table(s) to this file instead of stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustfair.report.compare import comparison_notes, comparison_text, group_runs
    from robustfair.report.runs import load_runs

    runs = load_runs(args.runs)
    groups = group_runs(runs, ignored=tuple(DEFAULT_IGNORED) + tuple(args.ignore), group=not args.no_group)
    text = comparison_text(groups, fmt=args.fmt, which=args.which, attack=args.attack, per_class=not args.no_per_class)
    if args.baseline:
        from robustfair.report.paired import paired_text

        text += "\n\n" + paired_text(groups, args.baseline, fmt=args.fmt, which=args.which, attack=args.attack)
    for note in comparison_notes(groups, which=args.which, attack=args.attack):
        print(note, file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0
