"""The `robustfair` command.

Each subcommand lives in `robustfair/commands/<name>.py` with `add_parser(subparsers)`
and `run(args) -> int`. Bad input ends with one line `robustfair: error: ...` on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from robustfair import __version__
from robustfair.errors import RobustfairError

COMMANDS = ["train", "eval", "list", "demo", "analyze", "compare", "report", "sweep", "group"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _command_modules():
    for name in COMMANDS:
        try:
            yield importlib.import_module(f"robustfair.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"robustfair.commands.{name}":
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robustfair", description="Adversarial training that is fair across classes.")
    parser.add_argument("--version", action="version", version=f"robustfair {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _command_modules():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["group"]:  # the tabular group-fairness tool has its own parser
        from robustfair.commands.group import run_group

        return _guard(lambda: run_group(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    return _guard(lambda: args.run(args))


def _guard(action) -> int:
    try:
        return int(action() or 0)
    except RobustfairError as err:
        sys.stderr.write(f"robustfair: error: {err}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("robustfair: interrupted; completed epochs are in the run's last checkpoint "
                         "(continue with --resume)\n")
        return 130
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        sys.stderr.write(f"robustfair: error: {err.strerror or err}{where}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
