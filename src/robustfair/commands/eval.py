"""`robustfair eval RUN_OR_CHECKPOINT [--attack pgd20|autoattack|...]`: class-wise evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="class-wise evaluation of a run or checkpoint",
                       description="Evaluate a run directory's checkpoint on its test set under an attack.")
    p.add_argument("target", help="run directory or checkpoint file (.safetensors)")
    p.add_argument("--attack", default="pgd20", help="attack name (robustfair list attacks) or 'none'")
    p.add_argument("--eps", type=float, help="attack eps (default: the run's)")
    p.add_argument("--which", default="last", choices=["last", "best"], help="checkpoint of a run directory")
    p.add_argument("--test-per-class", type=int, help="evaluate a class-balanced subset of the test set")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", dest="json_path", help="also write the result JSON here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(args.target, attack=args.attack, eps=args.eps, which=args.which,
                                 test_per_class=args.test_per_class, device=args.device)
    print_result(result, title=f"{args.target} ({args.which}) under {args.attack}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


def print_result(result: Mapping[str, Any], *, title: str) -> None:
    from robustfair.report.tables import per_class_table, robust_error_by_class, clean_error_by_class, summary_table

    print(title)
    print(summary_table([("model", result["summary"])], title="error %"))
    print(per_class_table([("clean error %", clean_error_by_class(result)),
                           ("robust error %", robust_error_by_class(result))], result["classes"], title="per class"))
