"""`robustfair eval RUN_OR_CHECKPOINT [--attack pgd20|autoattack|...]`: class-wise evaluation.

With its defaults, `eval RUN` repeats the run's own final test evaluation (attack, eps,
seed, images, batching) and prints the numbers of its results.json. The output states the
threat model and where its eps came from; under AutoAttack it adds, per class, which
component attack broke each sample first; then the sanity checks with their thresholds.
`--json PATH` writes the full record and, beside it, a leaderboard entry
(`PATH` with `.leaderboard.json`; schema in docs/EVALUATION.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="class-wise evaluation of a run or checkpoint",
        description="Evaluate a run directory's checkpoint on its test set under an attack, "
        "or a model built from --model/--dataset (untrained, or --weights). "
        "Inputs must be float in [0, 1] (or uint8); normalisation belongs inside the "
        "model (robustfair.models.Normalize).",
    )
    p.add_argument("target", nargs="?", help="run directory or checkpoint file (.safetensors)")
    p.add_argument(
        "--model",
        help="evaluate this registry model, or your own package.module:factory, instead of a run (with --dataset)",
    )
    p.add_argument("--dataset", help="dataset registry name for --model")
    p.add_argument("--data-root", help="directory holding the dataset files (default: $ROBUSTFAIR_DATA)")
    p.add_argument(
        "--weights",
        help="with --model: a .safetensors file or a .pt/.pth state dict, loaded without "
        "running code (default: untrained)",
    )
    p.add_argument(
        "--attack",
        help="attack name (robustfair list attacks) or 'none'; default: the run's "
        "eval.attack (pgd20 with --model); autoattack, autoattack_plus, autoattack_rand",
    )
    p.add_argument(
        "--eps",
        type=float,
        help="attack budget in pixel units (default: the run's eps for attacks of "
        "the run's norm, the preset's otherwise)",
    )
    p.add_argument("--step-size", type=float, help="PGD step size (default: the preset's rule, e.g. eps/4)")
    p.add_argument(
        "--seed",
        type=int,
        help="seed of every random draw of the attack and of a --test-per-class "
        "subset (default: the run's eval.seed, 0); with --model also the "
        "initialisation",
    )
    p.add_argument("--which", default="last", choices=["last", "best"], help="checkpoint of a run directory")
    p.add_argument("--test-per-class", type=int, help="evaluate a class-balanced subset of the test set")
    p.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's train.eval_batch_size)")
    p.add_argument("--no-sanity", dest="sanity", action="store_false", help="skip the sanity checks")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--json",
        dest="json_path",
        help="also write the result JSON here, and a leaderboard entry beside it (NAME.leaderboard.json)",
    )
    p.add_argument("--leaderboard", help="where to write the leaderboard entry (default: beside --json)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.progress import quiet_if

    with quiet_if(args.quiet):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from robustfair.engine.evaluation import evaluate_checkpoint, evaluate_registry_model
    from robustfair.errors import ConfigError
    from robustfair.metrics.leaderboard import leaderboard_entry

    for name in ("test_per_class", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: {value} must be >= 1")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed: {args.seed} must be >= 0")
    for name in ("eps", "step_size"):
        value = getattr(args, name)
        if value is not None and not (value >= 0 and value != float("inf")):
            raise ConfigError(f"--{name.replace('_', '-')}: {value} must be a finite number >= 0")
    if args.model or args.dataset:
        if args.target or not (args.model and args.dataset):
            raise ConfigError("eval: give either a run directory / checkpoint, or both --model and --dataset")
        result = evaluate_registry_model(
            args.model,
            args.dataset,
            root=args.data_root,
            weights=args.weights,
            attack=args.attack,
            eps=args.eps,
            step_size=args.step_size,
            test_per_class=args.test_per_class,
            device=args.device,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        title = f"{args.model} ({'weights ' + args.weights if args.weights else 'untrained'}) on {args.dataset}"
    else:
        if not args.target:
            raise ConfigError("eval: give a run directory or checkpoint file (or --model and --dataset)")
        result = evaluate_checkpoint(
            args.target,
            attack=args.attack,
            eps=args.eps,
            step_size=args.step_size,
            which=args.which,
            test_per_class=args.test_per_class,
            device=args.device,
            batch_size=args.batch_size,
            seed=args.seed,
            sanity=args.sanity,
        )
        title = f"{args.target} ({args.which})"
    name = result["attack"].get("name", "none")
    print_result(result, title=f"{title} under {name}, {sum(result['per_class']['count'])} test images")
    if args.json_path or args.leaderboard:
        entry = leaderboard_entry(result, model=result.get("model", {}), evaluation=result.get("evaluation"))
        if args.json_path:
            write_json(Path(args.json_path), result)
        entry_path = Path(args.leaderboard) if args.leaderboard else leaderboard_path(Path(args.json_path))
        write_json(entry_path, entry)
        print(f"wrote {args.json_path + ' and ' if args.json_path else ''}{entry_path}")
    return 0


def leaderboard_path(json_path: Path) -> Path:
    """results.json -> results.leaderboard.json"""
    return json_path.with_name(json_path.stem + ".leaderboard.json")


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    from robustfair.engine.run_files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def print_result(result: Mapping[str, Any], *, title: str) -> None:
    """The title, the threat model line, the error tables, the component table (AutoAttack)
    and the sanity checks."""
    from robustfair.report.tables import clean_error_by_class, per_class_table, robust_error_by_class, summary_table

    print(title)
    print(attack_line(result["attack"]))
    print(summary_table([("model", result["summary"])], title="error %"))
    print(
        per_class_table(
            [("clean error %", clean_error_by_class(result)), ("robust error %", robust_error_by_class(result))],
            result["classes"],
            title="per class",
        )
    )
    if result.get("broken_by"):
        print()
        print(broken_by_table(result))
    if result.get("sanity"):
        print()
        print(sanity_table(result["sanity"]))


def attack_line(attack: Mapping[str, Any]) -> str:
    """One line: the attack, its threat model and where its eps came from, its steps, seed and
    implementation, e.g. "attack pgd20: linf eps 0.1 (the run's linf eps 0.1), step 0.025, ..."."""
    if attack.get("name") in (None, "none"):
        return "attack: none (clean only)"
    parts = [
        f"{attack.get('norm')} eps {attack.get('eps'):.4g}"
        + (f" ({attack['eps_from']})" if attack.get("eps_from") else "")
    ]
    if attack.get("version"):
        parts.append(f"AutoAttack {attack['version']}: {', '.join(attack.get('components') or [])}")
    else:
        parts.append(
            f"step {attack.get('step_size'):.4g}, {attack.get('steps')} steps, "
            f"{attack.get('restarts')} restart{'s' if attack.get('restarts') != 1 else ''}, "
            f"loss {attack.get('loss')}"
        )
    parts.append(f"seed {attack.get('seed')}")
    return f"attack {attack['name']}: " + ", ".join(parts) + f" ({attack.get('implementation', '?')})"


COMPONENT_LABELS = {
    "misclassified_clean": "clean wrong",
    "apgd-ce": "APGD-CE",
    "apgd-dlr": "APGD-DLR",
    "apgd-t": "APGD-T",
    "fab": "FAB",
    "fab-t": "FAB-T",
    "square": "Square",
    "robust": "robust",
}


def broken_by_table(result: Mapping[str, Any]) -> str:
    """Markdown: per class, how many samples each component broke first (AutoAttack's order),
    the clean mistakes (never attacked) and the robust rest; a total row."""
    columns = list(result["broken_by"])
    counts = result["per_class"]["count"]
    header = ["class", "n"] + [COMPONENT_LABELS.get(c, c) for c in columns]
    lines = [
        "first broken by (samples per class; AutoAttack's components in the order they run)",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for i, name in enumerate(result["classes"]):
        cells = [str(result["broken_by"][c][i]) for c in columns]
        lines.append(f"| {name} | {counts[i]} | " + " | ".join(cells) + " |")
    totals = [str(sum(result["broken_by"][c])) for c in columns]
    lines.append(f"| all | {sum(counts)} | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def sanity_table(sanity: Mapping[str, Any]) -> str:
    """Markdown: each sanity check, passed or not, its threshold and what it found."""
    lines = [
        f"sanity checks ({sanity.get('norm')} eps {sanity.get('eps', 0):.4g}, {sanity.get('num_samples')} "
        f"samples, seed {sanity.get('seed')}): {'all passed' if sanity.get('passed') else 'SOME FAILED'}",
        "| check | passed | threshold | result |",
        "|---|---|---|---|",
    ]
    for check in sanity.get("checks", []):
        lines.append(
            f"| {check['name']} | {'yes' if check['passed'] else 'NO'} | {check.get('threshold', '')} | "
            f"{check.get('message', '')} |".replace("\n", " ")
        )
    return "\n".join(lines)
