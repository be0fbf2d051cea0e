"""`robustfair train CONFIG [key=value ...]` and `robustfair train --resume RUN_DIR [key=value ...]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustfair.errors import CheckpointError, ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a preset or YAML config",
        description="Train a preset (robustfair list presets) or a YAML config file. "
        "Overrides are dotted key=value pairs, e.g. train.epochs=5 method.beta=1.",
    )
    p.add_argument("config", help="preset name, YAML path, or (with --resume) a run directory")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (before or after the options)")
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run directory from its last checkpoint (overrides apply, e.g. optim.lr=0.01)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(run=run)


def split_target(first: str, rest: list[str]) -> tuple[str, list[str]]:
    """(config, overrides) from the positional words in order: the config is the first word that is
    not a `key=value` override, wherever it stands (`--run-dir X init_from=... PRESET` works)."""
    from robustfair.typed_config import is_override

    words = [first, *rest]
    for i, word in enumerate(words):
        if not is_override(word):
            return word, words[:i] + words[i + 1 :]
    raise ConfigError(
        "train: give a preset, a YAML file or (with --resume) a run directory besides the key=value overrides"
    )


def refuse_if_being_written(run_dir: Path) -> None:
    """RunLockedError naming the writer when another process trains `run_dir` now."""
    from robustfair.errors import RunLockedError
    from robustfair.run_lock import locked_message, writer_of

    holder = writer_of(run_dir)
    if holder is not None:
        raise RunLockedError(locked_message(run_dir, holder), holder=holder)


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.config import load_config
    from robustfair.engine.trainer import load_run_config, train

    for item in [args.config, *args.overrides, args.run_dir or ""]:
        if "\x00" in item:  # no shell passes one; refuse before any path use
            raise ConfigError(f"argument {item!r}: contains a NUL character")
    args.config, args.overrides = split_target(args.config, args.overrides)
    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (for example train.epochs=5)")
    target = Path(args.config)
    looks_like_run_dir = "/" in args.config and target.suffix not in (".yaml", ".yml")
    if args.resume and looks_like_run_dir and not target.exists():
        raise CheckpointError(f"cannot resume: run directory {args.config!r} does not exist")
    if args.resume and target.is_dir():
        # A run directory: its saved config, with overrides (e.g. a lower optim.lr after divergence).
        run_dir = Path(args.run_dir) if args.run_dir else target
        refuse_if_being_written(run_dir)  # before its config is read: it may not be written yet
        config = load_run_config(target, args.overrides)
    else:
        config = load_config(args.config, args.overrides)
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / config.name
    results = train(config, run_dir, resume=args.resume, quiet=args.quiet)
    if not args.quiet:
        from robustfair.commands.eval import print_result

        print_result(results, title=f"{config.name} (last epoch), test set")
        print(f"run directory: {run_dir}")
    return 0
