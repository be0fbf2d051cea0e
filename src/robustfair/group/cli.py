"""`robustfair group train|eval|compare`: group fairness under attack on Adult and COMPAS.

    python -m robustfair.group.cli train --preset adult --methods all --seeds 0,1,2
    python -m robustfair.group.cli eval runs/group/adult-sex/joint-seed0 eval.attack.eps=0.2
    python -m robustfair.group.cli compare runs/group/adult-sex --format markdown

`train` writes one run directory per (method, seed) under `--out` (default
`runs/group/<dataset>-<sensitive>`), named `<method>-seed<seed>`, holding config.yaml,
model.safetensors, features.json and results.json (see `robustfair.group.runs`).
Positional `a.b=value` arguments override the preset. Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from robustfair.errors import ConfigError, RobustfairError
from robustfair.group.compare import FORMATS, find_results, format_comparison, read_results
from robustfair.group.config import TRAINING_NAMES, GroupConfig, load_group_config
from robustfair.group.data import load_group_data
from robustfair.group.evaluation import evaluate_group_model
from robustfair.group.metrics import NOTIONS
from robustfair.group.runs import (RESULTS_SCHEMA, code_version, load_run_config, load_run_model,
                                   prepare_run_dir, run_dir_name, save_run, write_json)
from robustfair.group.tabular import GroupData
from robustfair.group.training import train_group_model
from robustfair.typed_config import to_dict


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustfair group",
                                     description="Group fairness under accuracy and fairness attacks (Adult, COMPAS).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,compare}")

    train = sub.add_parser("train", help="train and evaluate one or more (method, seed) runs")
    train.add_argument("--preset", "--config", dest="preset", default=None,
                       help="preset name (adult, compas) or a YAML config path")
    train.add_argument("--methods", default=None,
                       help=f"comma-separated trainings or 'all' ({', '.join(TRAINING_NAMES)}); default: train.method")
    train.add_argument("--seeds", default=None, help="comma-separated training seeds; default: train.seed")
    train.add_argument("--out", default=None, help="parent folder of the run directories")
    train.add_argument("--data-dir", default=None, help="folder with the data files (overrides data.root)")
    train.add_argument("--download", action="store_true", help="download missing data files (md5-checked)")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--overwrite", action="store_true", help="replace existing run directories")
    train.add_argument("--quiet", action="store_true", help="no per-epoch log")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lam=0.5")

    ev = sub.add_parser("eval", help="re-evaluate a trained run (optionally with another attack)")
    ev.add_argument("run_dir", help="a run directory written by train")
    ev.add_argument("--data-dir", default=None, help="folder with the data files (overrides data.root)")
    ev.add_argument("--output", default=None, help="where to write the results (default RUN_DIR/eval.json)")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ev.add_argument("overrides", nargs="*", metavar="eval.key=value", help="eval overrides, e.g. eval.attack.eps=0.2")

    cmp_ = sub.add_parser("compare", help="table of mean +- std over seeds")
    cmp_.add_argument("paths", nargs="+", help="run directories, parents of run directories, or results files")
    cmp_.add_argument("--notion", choices=NOTIONS, default=None,
                      help="gap to report (default: each run's train.notion)")
    cmp_.add_argument("--hard", action="store_true", help="gaps of hard predictions instead of soft ones")
    cmp_.add_argument("--format", choices=FORMATS, default="markdown")
    cmp_.add_argument("--file", default="results.json", help="results file name to collect (results.json or eval.json)")
    cmp_.add_argument("--output", default=None, help="write the table to this file instead of stdout")
    return parser


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads: {threads} must be >= 1")
        torch.set_num_threads(threads)


def _split_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what}: expected a comma-separated list, got {text!r}")
    return items


def _load_data(config: GroupConfig) -> GroupData:
    d = config.data
    return load_group_data(d.name, d.root, sensitive=d.sensitive, include_sensitive=d.include_sensitive,
                           split_seed=d.split_seed, test_fraction=d.test_fraction, download=d.download)


def _summary_line(label: str, config: GroupConfig, metrics: dict, seconds: str) -> str:
    n = config.train.notion
    return (f"{label}: clean acc {100 * metrics['clean']['accuracy']:.2f}%, {n} gap "
            f"{100 * metrics['clean']['gaps'][n]:.2f} | acc under acc. attack "
            f"{100 * metrics['accuracy_attack']['accuracy']:.2f}% | {n} gap under fair. attack "
            f"{100 * metrics['fairness_attack'][n]['gaps'][n]:.2f}{seconds}")


def _results(config: GroupConfig, data: GroupData, metrics: dict, history: list, train_s: float | None,
             eval_s: float) -> dict:
    return {"schema": RESULTS_SCHEMA, "config": to_dict(config), "data": data.summary(), "metrics": metrics,
            "history": history, "train_seconds": train_s, "eval_seconds": eval_s, "code_version": code_version()}


def _train(args: argparse.Namespace, echo: Callable[[str], None]) -> int:
    _set_threads(args.threads)
    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data.root={args.data_dir}")
    if args.download:
        overrides.append("data.download=true")
    base = load_group_config(args.preset, overrides)
    methods = _split_list(args.methods, "methods") or [base.train.method]
    if methods == ["all"]:
        methods = list(TRAINING_NAMES)
    unknown = [m for m in methods if m not in TRAINING_NAMES]
    if unknown:
        raise ConfigError(f"--methods: unknown training {unknown[0]!r}; valid: {', '.join(TRAINING_NAMES)}, all")
    seed_texts = _split_list(args.seeds, "seeds") or [str(base.train.seed)]
    try:
        seeds = [int(t) for t in seed_texts]
    except ValueError:
        raise ConfigError(f"--seeds: expected integers, got {args.seeds!r}") from None
    configs = [load_group_config(args.preset, overrides + [f"train.method={m}", f"train.seed={s}"])
               for s in seeds for m in methods]
    out = Path(args.out) if args.out else Path("runs") / "group" / f"{base.data.name}-{base.data.sensitive}"
    for c in configs:  # refuse before spending time if any run directory is taken
        prepare_run_dir(out / run_dir_name(c), args.overwrite)
    data = _load_data(base)
    echo(f"{data.name} ({data.sensitive}): {len(data.train)} train / {len(data.test)} test rows, "
         f"{data.layout.num_features} features ({len(data.layout.continuous)} continuous)")
    for c in configs:
        run_dir = out / run_dir_name(c)
        log = None if args.quiet else (lambda rec, c=c: echo(
            f"  {c.train.method} seed {c.train.seed} epoch {rec['epoch']}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in rec.items() if k != "epoch")))
        trained = train_group_model(data, c.model, c.train, log=log)
        start = time.perf_counter()
        metrics = evaluate_group_model(trained.model, data.test, data.layout, c.eval.attack, seed=c.eval.seed)
        eval_s = time.perf_counter() - start
        save_run(run_dir, c, data, trained.model,
                 _results(c, data, metrics, trained.history, trained.seconds, eval_s))
        echo(_summary_line(f"{c.train.method} seed {c.train.seed}", c, metrics,
                           f" [train {trained.seconds:.1f}s, eval {eval_s:.1f}s] -> {run_dir}"))
    return 0


def _eval(args: argparse.Namespace, echo: Callable[[str], None]) -> int:
    _set_threads(args.threads)
    bad = [o for o in args.overrides if not o.strip().startswith("eval.")]
    if bad:
        raise ConfigError(f"eval override {bad[0]!r}: only eval.* settings can change after training")
    run_dir = Path(args.run_dir)
    overrides = list(args.overrides) + ([f"data.root={args.data_dir}"] if args.data_dir is not None else [])
    config = load_run_config(run_dir, overrides)
    data = _load_data(config)
    model = load_run_model(run_dir, config, data)
    start = time.perf_counter()
    metrics = evaluate_group_model(model, data.test, data.layout, config.eval.attack, seed=config.eval.seed)
    eval_s = time.perf_counter() - start
    output = Path(args.output) if args.output else run_dir / "eval.json"
    write_json(output, _results(config, data, metrics, [], None, eval_s))
    echo(_summary_line(str(run_dir), config, metrics, f" [eval {eval_s:.1f}s] -> {output}"))
    return 0


def _compare(args: argparse.Namespace, echo: Callable[[str], None]) -> int:
    results = [read_results(p) for p in find_results(args.paths, args.file)]
    table = format_comparison(results, notion=args.notion, hard=args.hard, fmt=args.format)
    if args.output:
        Path(args.output).write_text(table + "\n", encoding="utf-8")
    else:
        echo(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `robustfair group` with `argv` (without the leading 'group'); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def echo(text: str) -> None:
        print(text, flush=True)

    commands = {"train": _train, "eval": _eval, "compare": _compare}
    try:
        return commands[args.command](args, echo)
    except RobustfairError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable --out, unreadable file: one line, no traceback
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
