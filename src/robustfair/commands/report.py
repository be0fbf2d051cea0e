"""`robustfair report RUN [RUN ...] --out report.html`: one self-contained HTML report.

Summary and per-class tables, per-class error bar charts, confusion heatmaps, training
curves (with FRL multipliers and class weights), sanity checks, and each run's
source/target-class analysis when `robustfair analyze` has written its analysis.json.
Images are embedded; the file needs no network and no JavaScript.
"""

from __future__ import annotations

import argparse

from robustfair.report.compare import DEFAULT_IGNORED


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of finished runs",
        description="Tables, bar charts, confusion heatmaps, training curves and the fairness "
        "analysis (if analysis.json exists) of one or more runs, in one HTML file "
        "with embedded images, readable offline.",
    )
    p.add_argument("runs", nargs="+", help="run directories or glob patterns (quote globs: 'runs/*')")
    p.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--which", default="last", choices=["last", "best"], help="last or best-on-validation model")
    p.add_argument("--attack", help="an attack in the runs' results (main or extra, e.g. autoattack); default main")
    p.add_argument("--title", help="report title")
    p.add_argument("--no-group", action="store_true", help="one table row per run, even for seeds of one config")
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KEY",
        help="also ignore this dotted config key when grouping seeds; repeatable",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustfair.report.html import write_report
    from robustfair.report.runs import load_runs

    runs = load_runs(args.runs)
    path = write_report(
        runs,
        args.out,
        which=args.which,
        attack=args.attack,
        title=args.title,
        group=not args.no_group,
        ignored=tuple(DEFAULT_IGNORED) + tuple(args.ignore),
    )
    size = path.stat().st_size
    analysed = sum(run.analysis is not None for run in runs)
    print(f"wrote {path} ({size / 1024:.0f} KiB; {len(runs)} run(s), {analysed} with analysis)")
    return 0
