"""`robustfair group train|eval|compare ...`: group fairness under attack on tabular data.

Parsed by the main parser like every other command (its `_guard` gives the error
contract: one line `robustfair: error: ...`, exit 2). The group parsers print their own
usage errors on one line too, control characters in values escaped. The actions live in
`robustfair.group.cli`. Option names follow the image commands: `--data-root` and
`--json` (the former `--data-dir` and `--output` still work, hidden). `key=value` overrides
may come anywhere on the line.
"""

from __future__ import annotations

import argparse
import re
import sys

TABLE_OPTIONS = (
    ("--csv", "csv", "FILE", "CSV file of your own table (all of it, or its training part with --test-csv)"),
    ("--test-csv", "test_csv", "FILE", "CSV file of the test part (default: a seeded stratified split of --csv)"),
    ("--name", "name", "NAME", "name of the table in results and run directories (default: the CSV file's stem)"),
    ("--label", "label", "COL", "label column"),
    ("--positive", "positive", "VALUE", "label value meaning y = 1 (default for 0/1 labels: 1)"),
    ("--sensitive", "sensitive", "COL", "sensitive column (adult: sex or race, compas: race or sex, or any column)"),
    ("--privileged", "privileged", "VALUE", "value of the sensitive column meaning s = 1"),
    ("--threshold", "threshold", "NUMBER", "numeric sensitive column: s = 1 when value >= NUMBER"),
    ("--continuous", "continuous", "COLS", "comma-separated continuous columns (default: detected)"),
    ("--categorical", "categorical", "COLS", "comma-separated categorical columns (default: detected)"),
    ("--integer", "integer", "COLS", "comma-separated whole-number columns, rounded by attacks (default: detected)"),
    ("--drop", "drop", "COLS", "comma-separated columns to leave out"),
)


def escape_controls(text: str) -> str:
    """`text` with newlines, tabs and other control characters written as escapes (one line)."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in str(text)
    )


OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


class GroupParser(argparse.ArgumentParser):
    """One-line usage errors; `key=value` overrides accepted anywhere on the line (collected into
    the positional named by `override_dest`)."""

    override_dest: str | None = None

    def error(self, message: str) -> None:  # one line (no usage block), exit 2
        sys.stderr.write(f"robustfair: error: {escape_controls(message)} (see: {self.prog} --help)\n")
        raise SystemExit(2)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if self.override_dest is not None:
            moved = [a for a in extras if OVERRIDE.match(a)]
            if moved:
                setattr(namespace, self.override_dest, list(getattr(namespace, self.override_dest) or []) + moved)
                extras = [a for a in extras if not OVERRIDE.match(a)]
        return namespace, extras


def add_parser(sub) -> None:
    from robustfair.group.metrics import NOTIONS

    group = sub.add_parser(
        "group",
        help="group fairness under attack on tabular data (Adult, COMPAS, any CSV)",
        description="Train, evaluate and compare classifiers for group fairness under accuracy "
        "and fairness attacks, on Adult, COMPAS or your own CSV table.",
    )
    group.error = GroupParser.error.__get__(group)  # the main parser's class; the group contract on this one too
    commands = group.add_subparsers(dest="group_command", metavar="{train,eval,compare}", parser_class=GroupParser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train and evaluate one or more (training, seed) runs",
        description="Train every (training, seed) pair on a preset (adult, compas) or on "
        "your own CSV table (--csv ... --label ... --sensitive ...), evaluate "
        "each clean and under attack, and write one run directory per pair.",
    )
    train.add_argument(
        "--preset",
        "--config",
        dest="preset",
        default=None,
        help="preset name (adult, compas, table) or a YAML config path; default with --csv: table",
    )
    for option, dest, metavar, text in TABLE_OPTIONS:
        train.add_argument(option, dest=dest, metavar=metavar, default=None, help=text)
    train.add_argument(
        "--methods",
        default=None,
        help="comma-separated trainings or 'all' (erm, fair_erm, acc_at, fair_at, joint); default: train.method",
    )
    train.add_argument("--seeds", default=None, help="comma-separated training seeds; default: train.seed")
    train.add_argument(
        "--out", default=None, help="parent folder of the run directories (default: runs/group/<dataset>-<sensitive>)"
    )
    _data_root(train)
    train.add_argument("--download", action="store_true", help="download missing adult/compas files (md5-checked)")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--overwrite", action="store_true", help="replace existing run directories")
    train.add_argument("--quiet", action="store_true", help="no per-epoch log")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lam=0.5")
    train.set_defaults(run=_run("train"))
    train.override_dest = "overrides"

    ev = commands.add_parser(
        "eval",
        help="re-evaluate trained runs (optionally with another attack)",
        description="Re-evaluate run directories (or folders of them) from their saved config "
        "and feature encoding; eval.* overrides change the evaluation.",
    )
    ev.add_argument(
        "targets",
        nargs="+",
        metavar="RUN_DIR_OR_eval.key=value",
        help="run directories or folders of them, then eval overrides, e.g. eval.attack.eps=0.2",
    )
    _data_root(ev)
    ev.add_argument(
        "--json",
        dest="json_path",
        default=None,
        help="where to write the results (one run only; default RUN_DIR/<--name>)",
    )
    ev.add_argument("--output", dest="json_path", help=argparse.SUPPRESS)
    ev.add_argument(
        "--name",
        dest="results_name",
        default="eval.json",
        help="file name of the results in each run directory (default eval.json)",
    )
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ev.set_defaults(run=_run("eval"))
    ev.override_dest = "targets"

    cmp_ = commands.add_parser(
        "compare",
        help="tables of mean ± std over seeds with bootstrap intervals",
        description="Rows = (dataset, sensitive attribute, config); hard and soft gaps with "
        "bootstrap intervals, per-group rates, favoured group.",
    )
    cmp_.add_argument("paths", nargs="+", help="run directories, folders of them, or results files")
    cmp_.add_argument(
        "--notion", choices=NOTIONS, default=None, help="gap to report (default: each run's train.notion)"
    )
    cmp_.add_argument("--format", choices=("markdown", "csv", "latex", "json"), default="markdown", dest="fmt")
    cmp_.add_argument(
        "--file", default="results.json", help="results file name to collect (results.json, eval.json or eval's --name)"
    )
    cmp_.add_argument("--no-groups", action="store_true", help="only the gap table, not the per-group rates")
    cmp_.add_argument("--domain", action="store_true", help="instead: how often the attacks left the feature domain")
    cmp_.add_argument("--out", dest="out", default=None, help="write the tables to this file instead of stdout")
    cmp_.add_argument("--output", dest="out", help=argparse.SUPPRESS)
    cmp_.add_argument("--hard", action="store_true", help=argparse.SUPPRESS)  # both kinds are always shown now
    cmp_.set_defaults(run=_run("compare"))


def _data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        dest="data_root",
        default=None,
        help="folder with the adult/compas files (default: $ROBUSTFAIR_DATA)",
    )
    parser.add_argument("--data-dir", dest="data_root", help=argparse.SUPPRESS)


def _run(name: str):
    def run(args: argparse.Namespace) -> int:
        from robustfair.group import cli

        return {"train": cli.run_train, "eval": cli.run_eval, "compare": cli.run_compare}[name](args)

    return run


def run_group(argv: list[str]) -> int:
    """`robustfair group ARGV...` through the main command line (one error contract)."""
    from robustfair.cli import main

    return main(["group", *argv])
