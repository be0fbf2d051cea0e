"""`robustfair eval RUN_OR_CHECKPOINT [--attack pgd20|autoattack|...]`: class-wise evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="class-wise evaluation of a run or checkpoint",
                       description="Evaluate a run directory's checkpoint on its test set under an attack, "
                                   "or a model built from --model/--dataset (untrained, or --weights).")
    p.add_argument("target", nargs="?", help="run directory or checkpoint file (.safetensors)")
    p.add_argument("--model", help="evaluate this registry model, or your own package.module:factory, instead of "
                                   "a run (with --dataset)")
    p.add_argument("--dataset", help="dataset registry name for --model")
    p.add_argument("--data-root", help="directory holding the dataset files (default: $ROBUSTFAIR_DATA)")
    p.add_argument("--weights", help="with --model: a .safetensors file or a .pt/.pth state dict, loaded without "
                                     "running code (default: untrained)")
    p.add_argument("--seed", type=int, default=0, help="with --model: initialisation and subset seed")
    p.add_argument("--attack", default="pgd20", help="attack name (robustfair list attacks) or 'none'")
    p.add_argument("--eps", type=float, help="attack eps (default: the run's)")
    p.add_argument("--which", default="last", choices=["last", "best"], help="checkpoint of a run directory")
    p.add_argument("--test-per-class", type=int, help="evaluate a class-balanced subset of the test set")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", dest="json_path", help="also write the result JSON here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.evaluation import evaluate_checkpoint, evaluate_registry_model
    from robustfair.errors import ConfigError

    if args.model or args.dataset:
        if args.target or not (args.model and args.dataset):
            raise ConfigError("eval: give either a run directory / checkpoint, or both --model and --dataset")
        result = evaluate_registry_model(args.model, args.dataset, root=args.data_root, weights=args.weights,
                                         attack=args.attack, eps=args.eps, test_per_class=args.test_per_class,
                                         device=args.device, seed=args.seed)
        title = f"{args.model} ({'weights ' + args.weights if args.weights else 'untrained'}) on {args.dataset}"
    else:
        if not args.target:
            raise ConfigError("eval: give a run directory or checkpoint file (or --model and --dataset)")
        result = evaluate_checkpoint(args.target, attack=args.attack, eps=args.eps, which=args.which,
                                     test_per_class=args.test_per_class, device=args.device)
        title = f"{args.target} ({args.which})"
    print_result(result, title=f"{title} under {args.attack}, {sum(result['per_class']['count'])} test images")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


def print_result(result: Mapping[str, Any], *, title: str) -> None:
    from robustfair.report.tables import per_class_table, robust_error_by_class, clean_error_by_class, summary_table

    print(title)
    print(summary_table([("model", result["summary"])], title="error %"))
    print(per_class_table([("clean error %", clean_error_by_class(result)),
                           ("robust error %", robust_error_by_class(result))], result["classes"], title="per class"))
