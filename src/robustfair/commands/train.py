"""`robustfair train CONFIG [key=value ...]` and `robustfair train --resume RUN_DIR [key=value ...]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from robustfair.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a preset or YAML config",
                       description="Train a preset (robustfair list presets) or a YAML config file. "
                                   "Overrides are dotted key=value pairs, e.g. train.epochs=5 method.beta=1.")
    p.add_argument("config", help="preset name, YAML path, or (with --resume) a run directory")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run directory from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.config import load_config
    from robustfair.engine.trainer import load_run_config, train

    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (for example train.epochs=5)")
    target = Path(args.config)
    if args.resume and (target / "config.yaml").is_file():
        run_dir = Path(args.run_dir) if args.run_dir else target
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
