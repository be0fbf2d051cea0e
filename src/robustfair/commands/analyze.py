"""`robustfair analyze RUN_OR_CHECKPOINT`: source- and target-class fairness (BAT Figure 2).

Runs the early-stopped attack with many small steps (steps to misclassify, per class) and a
fixed PGD whose confusion matrix at every step gives the target-class distributions, prints
a per-class table and the correlations with class-wise robust accuracy, and writes
`analysis.json` into the run directory (or `--out`); `robustfair report` picks it up.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from robustfair.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="source/target-class fairness analysis of a run (BAT Figure 2)",
        description="Per class: attack steps needed to misclassify (early-stopped PGD with many "
        "small steps) and the distribution of adversarial target classes with its KL "
        "from uniform; correlations with class-wise robust accuracy. Defaults follow "
        "BAT Figure 2 scaled to the run's eps: 1000 steps of eps/20 (0.4/255 at 8/255) "
        "and PGD-10 of eps/4 (2/255 at 8/255).",
    )
    p.add_argument("target", help="run directory or checkpoint file (.safetensors)")
    p.add_argument("--which", default="last", choices=["last", "best"], help="checkpoint of a run directory")
    p.add_argument("--eps", type=float, help="attack budget (default: the run's evaluation eps)")
    p.add_argument("--steps", type=int, default=1000, help="steps of the early-stopped attack (default 1000)")
    p.add_argument("--step-size", type=float, help="its step size (default eps/20)")
    p.add_argument("--target-steps", type=int, default=10, help="steps of the target-class attack (default 10)")
    p.add_argument("--target-step-size", type=float, help="its step size (default eps/4)")
    p.add_argument("--loss", default="ce", choices=["ce", "margin"], help="objective both attacks ascend")
    p.add_argument("--test-per-class", type=int, help="analyse a class-balanced subset of the test set")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--out", help="where to write the JSON (default: RUN/analysis.json, analysis_best.json for --which best)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.checkpoint import resolve_checkpoint
    from robustfair.engine.evaluation import load_model_from_checkpoint
    from robustfair.engine.progress import quiet_if
    from robustfair.metrics.analysis import fairness_analysis

    for name in ("steps", "target_steps", "batch_size", "test_per_class"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: {value} must be >= 1")
    for name in ("eps", "step_size", "target_step_size"):
        value = getattr(args, name)
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise ConfigError(f"--{name.replace('_', '-')}: {value} must be a number > 0")
    checkpoint = resolve_checkpoint(args.target, args.which)
    out = Path(args.out) if args.out else default_output(Path(args.target), checkpoint, args.which)
    model, config, data, device = load_model_from_checkpoint(
        args.target, which=args.which, device=args.device, test_per_class=args.test_per_class
    )
    method = config.method_config()
    eps = args.eps
    if eps is None:
        eps = config.eval.eps if config.eval.eps is not None else method.eps
    norm = getattr(method, "norm", "linf")
    started = time.perf_counter()
    with quiet_if(args.quiet):
        record = fairness_analysis(
            model,
            data.test,
            num_classes=data.num_classes,
            classes=data.classes,
            eps=float(eps),
            steps=args.steps,
            step_size=args.step_size,
            target_steps=args.target_steps,
            target_step_size=args.target_step_size,
            loss=args.loss,
            norm=norm,
            batch_size=args.batch_size,
            device=device,
            dataset_name=data.name,
        )
    record["run"] = {
        "target": str(args.target),
        "checkpoint": str(checkpoint),
        "which": args.which,
        "name": config.name,
        "method": config.method_name(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print_analysis(record, title=f"{config.name} ({args.which}), {data.name} test set")
    print(f"wrote {out}")
    return 0


def default_output(target: Path, checkpoint: Path, which: str) -> Path:
    """RUN/analysis.json (analysis_best.json for the best checkpoint); next to a bare checkpoint otherwise."""
    name = "analysis.json" if which == "last" else f"analysis_{which}.json"
    if target.is_dir():
        return target / name
    run_dir = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and (run_dir / "config.yaml").is_file():
        return run_dir / ("analysis.json" if checkpoint.stem == "last" else f"analysis_{checkpoint.stem}.json")
    return checkpoint.with_suffix(".analysis.json")


def print_analysis(record: dict, *, title: str) -> None:
    from robustfair.report.analysis_tables import analysis_table, correlation_table
    from robustfair.report.tables import format_table

    source, target = record["source"]["attack"], record["target"]["attack"]
    print(f"{title}: {record['num_samples']} samples, eps {record['eps']:.4g}")
    print(
        f"steps to misclassify: early-stopped PGD ({source['loss']}), {source['steps']} steps of "
        f"{source['step_size']:.4g}; never misclassified counts as {record['source']['censored_value']}"
    )
    print(f"targets and robust accuracy: PGD ({target['loss']}), {target['steps']} steps of {target['step_size']:.4g}")
    print(format_table(*analysis_table(record), "markdown"))
    kl = record["target"].get("kl_to_uniform")
    print(f"overall target distribution: KL to uniform {'-' if kl is None else f'{kl:.4f}'} nats")
    print()
    print(
        format_table(
            *correlation_table(record),
            "markdown",
            caption="correlation with class-wise robust accuracy "
            "(BAT: positive for steps, negative for the share as target)",
        )
    )
