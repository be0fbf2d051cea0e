"""The actions of `robustfair group train|eval|compare` (parser: `robustfair.commands.group`).

    robustfair group train --preset adult --methods all --seeds 0,1,2
    robustfair group train --csv german.csv --label credit --positive good --sensitive age --threshold 25
    robustfair group eval runs/group/adult-sex/joint-seed0 eval.attack.eps=0.2
    robustfair group compare runs/group/adult-sex runs/group/german-age

`train` writes one run directory per (training, seed) under `--out` (default
`runs/group/<dataset>-<sensitive>`), named `<training>-seed<seed>`, holding config.yaml,
model.safetensors, features.json and results.json (see `robustfair.group.runs`).
It holds each of those directories' writer lock (`robustfair.run_lock`) from before it
checks them to its last file, so a second `group train` into the same one fails at once.
Positional `a.b=value` arguments override the preset. `python -m robustfair.group.cli ...`
is the same as `robustfair group ...`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from robustfair import run_lock
from robustfair.commands.group import OVERRIDE
from robustfair.engine.run_files import check_writable
from robustfair.errors import ConfigError
from robustfair.group.compare import find_results, format_comparison, read_results
from robustfair.group.config import TRAINING_NAMES, GroupConfig, load_group_config
from robustfair.group.data import load_group_data_from_config
from robustfair.group.evaluation import evaluate_group_model
from robustfair.group.runs import (
    RESULTS_SCHEMA,
    code_version,
    load_run_config,
    load_run_data,
    load_run_model,
    prepare_run_dir,
    run_dir_name,
    save_run,
    write_json,
)
from robustfair.group.tabular import GroupData
from robustfair.group.training import train_group_model
from robustfair.typed_config import to_dict

_LIST_OPTIONS = ("continuous", "categorical", "integer", "drop")


def _echo(text: str) -> None:
    print(text, flush=True)


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


def evaluate(model: torch.nn.Module, data: GroupData, config: GroupConfig) -> dict:
    """`evaluate_group_model` on the test split with the run's eval settings."""
    e = config.eval
    return evaluate_group_model(
        model,
        data.test,
        data.layout,
        e.attack,
        seed=e.seed,
        threshold=e.threshold,
        bootstrap=e.bootstrap,
        group_names=data.group_names,
    )


def results_record(
    config: GroupConfig, data: GroupData, metrics: dict, history: list, train_s: float | None, eval_s: float
) -> dict:
    """The results.json mapping of one run (schema in `robustfair.group.runs`)."""
    return {
        "schema": RESULTS_SCHEMA,
        "config": to_dict(config),
        "data": data.summary(),
        "metrics": metrics,
        "history": history,
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "code_version": code_version(),
    }


def _gap_text(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _summary_line(label: str, config: GroupConfig, metrics: dict, seconds: str) -> str:
    n = config.train.notion
    clean, attacked = metrics["clean"], metrics["fairness_attack"][n]
    return (
        f"{label}: clean acc {100 * clean['accuracy']:.2f}%, {n} gap hard {_gap_text(clean['gaps_hard'][n])} / "
        f"soft {_gap_text(clean['gaps'][n])} | acc under acc. attack "
        f"{100 * metrics['accuracy_attack']['accuracy']:.2f}% | {n} gap under fair. attack hard "
        f"{_gap_text(attacked['gaps_hard'][n])} / soft {_gap_text(attacked['gaps'][n])}{seconds}"
    )


def _table_overrides(args: argparse.Namespace) -> list[str]:
    """The --csv ... options as data.* overrides (text values verbatim, file paths absolute)."""
    out = []
    if args.csv is not None:
        out.append(f"data.csv={Path(args.csv).resolve()}")
        out.append(f"data.name={args.name or Path(args.csv).stem}")
    elif args.name is not None:
        out.append(f"data.name={args.name}")
    if args.test_csv is not None:
        out.append(f"data.test_csv={Path(args.test_csv).resolve()}")
    for key in ("label", "positive", "sensitive", "privileged"):
        if getattr(args, key) is not None:
            out.append(f"data.{key}={getattr(args, key)}")
    if args.threshold is not None:
        try:
            float(args.threshold)
        except ValueError:
            raise ConfigError(f"--threshold: expected a number, got {args.threshold!r}") from None
        out.append(f"data.threshold={args.threshold}")
    for key in _LIST_OPTIONS:
        items = _split_list(getattr(args, key), key)
        if items is not None:
            quoted = ", ".join("'" + item.replace("'", "''") + "'" for item in items)  # YAML: always strings
            out.append(f"data.{key}=[{quoted}]")
    return out


def run_train(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    preset = args.preset or ("table" if args.csv is not None else None)
    if preset is None:
        raise ConfigError(
            "group train: give --preset (adult, compas, table or a YAML file) or your table with "
            "--csv FILE --label COL --sensitive COL"
        )
    overrides = _table_overrides(args) + list(args.overrides)
    if args.data_root is not None:
        overrides.append(f"data.root={args.data_root}")
    if args.download:
        overrides.append("data.download=true")
    base = load_group_config(preset, overrides)
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
    configs = [
        load_group_config(preset, overrides + [f"train.method={m}", f"train.seed={s}"]) for s in seeds for m in methods
    ]
    data = load_group_data_from_config(base.data)
    out = Path(args.out) if args.out else Path("runs") / "group" / f"{data.name}-{data.sensitive}"
    check_writable(out)
    locks = []
    try:  # one writer per run directory, held from before the check to the last file written
        for c in configs:  # refuse before spending time if any run directory is taken
            locks.append(run_lock.acquire(out / run_dir_name(c), "group train"))
            prepare_run_dir(out / run_dir_name(c), args.overwrite)
        _train_runs(args, configs, data, out)
    finally:
        for lock in reversed(locks):
            lock.release(remove_if_unused=True)  # folders of runs never trained go again
    return 0


def _train_runs(args: argparse.Namespace, configs: list[GroupConfig], data: GroupData, out: Path) -> None:
    _echo(
        f"{data.name} ({data.sensitive}: s=1 {data.group_names[1]!r}, s=0 {data.group_names[0]!r}): "
        f"{len(data.train)} train / {len(data.test)} test rows, {data.layout.num_features} features "
        f"({len(data.layout.continuous)} continuous)"
    )
    for c in configs:
        run_dir = out / run_dir_name(c)
        log = (
            None
            if args.quiet
            else (
                lambda rec, c=c: _echo(
                    f"  {c.train.method} seed {c.train.seed} epoch {rec['epoch']}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in rec.items() if k != "epoch")
                )
            )
        )
        trained = train_group_model(data, c.model, c.train, log=log)
        start = time.perf_counter()
        metrics = evaluate(trained.model, data, c)
        eval_s = time.perf_counter() - start
        save_run(
            run_dir, c, data, trained.model, results_record(c, data, metrics, trained.history, trained.seconds, eval_s)
        )
        _echo(
            _summary_line(
                f"{c.train.method} seed {c.train.seed}",
                c,
                metrics,
                f" [train {trained.seconds:.1f}s, eval {eval_s:.1f}s] -> {run_dir}",
            )
        )


def _run_dirs(targets: list[str]) -> list[Path]:
    runs: list[Path] = []
    for t in targets:
        p = Path(t)
        if (p / "config.yaml").is_file():
            runs.append(p)
        elif p.is_dir():
            found = sorted(c.parent for c in p.rglob("config.yaml") if (c.parent / "model.safetensors").is_file())
            if not found:
                raise ConfigError(f"{t!r} is not a run directory (no config.yaml) and holds none")
            runs.extend(found)
        else:
            raise ConfigError(f"{t!r} is not a run directory (no such directory)")
    if len({r.resolve() for r in runs}) != len(runs):
        raise ConfigError("a run directory is given twice; each is evaluated once")
    return runs


def run_eval(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    overrides = [t for t in args.targets if OVERRIDE.match(t) and not Path(t).exists()]
    targets = [t for t in args.targets if t not in overrides]
    if not targets:
        raise ConfigError("group eval: give a run directory (or a folder of them)")
    bad = [o for o in overrides if not o.startswith("eval.")]
    if bad:
        raise ConfigError(f"eval override {bad[0]!r}: only eval.* settings can change after training")
    runs = _run_dirs(targets)
    if args.json_path and len(runs) > 1:
        raise ConfigError(f"--json: {len(runs)} runs would write one file; use --name for a file in each run")
    overrides += [f"data.root={args.data_root}"] if args.data_root is not None else []
    cache: dict[str, GroupData] = {}
    for run_dir in runs:
        config = load_run_config(run_dir, overrides)
        features = run_dir / "features.json"
        key = repr(to_dict(config.data)) + (features.read_text(encoding="utf-8") if features.is_file() else "")
        if key not in cache:  # runs of one table with one saved encoding share the rebuilt data
            cache[key] = load_run_data(run_dir, config)
        data = cache[key]
        model = load_run_model(run_dir, config, data)
        start = time.perf_counter()
        metrics = evaluate(model, data, config)
        eval_s = time.perf_counter() - start
        output = Path(args.json_path) if args.json_path else run_dir / args.results_name
        write_json(output, results_record(config, data, metrics, [], None, eval_s))
        _echo(_summary_line(str(run_dir), config, metrics, f" [eval {eval_s:.1f}s] -> {output}"))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    results = [read_results(p) for p in find_results(args.paths, args.file)]
    table = format_comparison(
        results, notion=args.notion, fmt=args.fmt, per_group=not args.no_groups, domain=args.domain
    )
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        _echo(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`robustfair group ARGV...` (without the leading 'group'); returns the exit status."""
    from robustfair.commands.group import run_group

    return run_group(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
