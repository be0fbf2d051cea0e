"""The `robustfair` command.

Each subcommand lives in `robustfair/commands/<name>.py` with `add_parser(subparsers)`
and `run(args) -> int`. Bad input ends with one line `robustfair: error: ...` on stderr
and a non-zero exit, never a traceback:

- 2: bad input or bad state (`RobustfairError`, argument errors);
- 1: an operating-system error (disk full, permission, missing file), with advice;
- 70: an unexpected exception, i.e. a bug (`ROBUSTFAIR_DEBUG=1` shows the traceback);
- 130: interrupted (Ctrl-C);
- 141: stdout closed by its reader (`robustfair list | head`), quietly.
`main` returns the exit status and never raises, `SystemExit` from argparse included.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence

from robustfair import __version__
from robustfair.errors import RobustfairError

COMMANDS = ["train", "eval", "list", "demo", "analyze", "compare", "report", "sweep", "group"]


EXIT_BAD_INPUT = 2
EXIT_OS_ERROR = 1
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


# Commands whose list of positional words may go on after options, e.g.
# `train PRESET --run-dir X init_from=...`, `sweep P --out X train.epochs=1`: the words
# argparse leaves over are appended to this argument (options are still refused).
LOOSE_WORDS = {"train": "overrides", "demo": "overrides", "sweep": "presets", "compare": "runs", "report": "runs"}

_INVALID_CHOICE = re.compile(r"invalid choice: (?P<word>'.*?') \(choose from (?P<choices>.*)\)$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line (no usage block), exit 2
        message = _with_suggestion(" ".join(message.split()))
        sys.stderr.write(f"{self.prog}: error: {message} (see: {self.prog} --help)\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _with_suggestion(message: str) -> str:
    """argparse's 'invalid choice' message with the closest valid choices named first."""
    from robustfair.registry import closest_names, or_list

    match = _INVALID_CHOICE.search(message)
    if match is None:
        return message
    choices = re.findall(r"'([^']*)'", match["choices"])
    close = closest_names(match["word"][1:-1], choices)
    if not close:
        return message
    hint = f"; did you mean {or_list([repr(c) for c in close])}?"
    return message[: match.start("word") + len(match["word"])] + hint + message[match.end("word") :]


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
    parser.set_defaults(_commands=sub.choices)
    return parser


def parse_command_line(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed arguments; `key=value` overrides (and more run directories) may follow options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = getattr(args, "command", None)
    dest = LOOSE_WORDS.get(command)
    stray = [word for word in extra if dest is None or word.startswith("-")]
    if stray:
        where = args._commands.get(command, parser) if command else parser
        where.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        setattr(args, dest, [*(getattr(args, dest) or []), *extra])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status, never raises."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    nul = next((word for word in argv if "\x00" in word), None)
    if nul is not None:  # no shell can pass one; os calls would raise ValueError on it
        sys.stderr.write(f"robustfair: error: argument {_one_line(repr(nul))}: contains a NUL character\n")
        return EXIT_BAD_INPUT

    def parse_and_run():
        args = parse_command_line(argv)
        return args.run(args)

    return _guard(parse_and_run)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _guard(action) -> int:
    try:
        return _exit_status(action())
    except SystemExit as done:  # argparse (--help, --version, a usage error) and sys.exit in commands
        if done.code is None or isinstance(done.code, int):
            return int(done.code or 0)
        sys.stderr.write(f"robustfair: error: {_one_line(done.code)}\n")
        return EXIT_BAD_INPUT
    except RobustfairError as err:
        sys.stderr.write(f"robustfair: error: {_one_line(err)}\n")
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away (`robustfair list | head`): stop quietly, as Unix tools do
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more may reach the closed pipe
        except OSError:
            pass
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        sys.stderr.write(
            "robustfair: interrupted; completed epochs are in the run's last checkpoint (continue with --resume)\n"
        )
        return EXIT_INTERRUPTED
    except OSError as err:
        sys.stderr.write(f"robustfair: error: {_os_error_line(err)}\n")
        return EXIT_OS_ERROR
    except MemoryError:
        sys.stderr.write("robustfair: error: out of memory; lower train.batch_size or train.eval_batch_size\n")
        return EXIT_OS_ERROR
    except Exception as err:  # a bug: still one line, with the way to see the traceback
        if os.environ.get("ROBUSTFAIR_DEBUG"):
            raise
        if "out of memory" in str(err).lower():  # torch.OutOfMemoryError and CUDA allocator errors
            sys.stderr.write(
                "robustfair: error: out of memory on the device; lower train.batch_size or train.eval_batch_size\n"
            )
            return EXIT_OS_ERROR
        first = _one_line(str(err).splitlines()[0]) if str(err).strip() else ""
        sys.stderr.write(
            f"robustfair: internal error (a bug; please report it): {type(err).__name__}"
            f"{': ' + first if first else ''}; ROBUSTFAIR_DEBUG=1 shows the traceback\n"
        )
        return EXIT_BUG


def _exit_status(value: object) -> int:
    if value is None or isinstance(value, bool):
        return int(bool(value))
    return value if isinstance(value, int) else 0


def _os_error_line(err: OSError) -> str:
    """'REASON (FILE); ADVICE' for an OSError that reached the top."""
    from robustfair.engine.run_files import os_error_advice

    reason = err.strerror or _one_line(err) or type(err).__name__
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    advice = os_error_advice(err)
    return f"{reason}{where}" + (f"; {advice}" if advice else "")


if __name__ == "__main__":
    raise SystemExit(main())
