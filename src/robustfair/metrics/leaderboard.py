"""A shareable, leaderboard-style entry for one evaluation (`robustfair eval --json`).

One schema, `robustfair.leaderboard_entry/1`, documented field by field in
docs/EVALUATION.md: the model, the dataset (and subset), the threat model, clean and
robust accuracy overall and for the worst class, the per-class arrays, the attack's
settings (seed and implementation included), and the code version. Accuracies are in
percent; nothing in it depends on time, so two evaluations with the same seed give the
same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SCHEMA = "robustfair.leaderboard_entry/1"


def leaderboard_entry(
    result: Mapping[str, Any], *, model: Mapping[str, Any], evaluation: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The entry for `result` (a `ClasswiseResult.to_dict()` record).

    model: {"name": ..., "source": run directory / weights file, ...} as known to the caller;
    evaluation: {"seed", "batch_size", "test_per_class", "subset_seed", ...} of the run.
    """
    import torch

    import robustfair
    from robustfair.engine.run_directory import git_commit

    per_class = result["per_class"]
    attack = dict(result.get("attack") or {"name": "none"})
    counts = per_class["count"]
    clean_correct = [row[i] for i, row in enumerate(result["confusion"]["clean"])]
    robust_correct = per_class["robust_correct"]
    total = sum(counts)
    present = [i for i, n in enumerate(counts) if n > 0]
    entry: dict[str, Any] = {
        "schema": SCHEMA,
        "model": dict(model),
        "dataset": {
            "name": result.get("dataset", ""),
            "split": "test",
            "num_samples": total,
            "classes": list(result["classes"]),
        },
        "threat_model": {"norm": attack.get("norm"), "eps": attack.get("eps"), "eps_from": attack.get("eps_from")},
        "units": "percent",
        "clean_accuracy": _percent(sum(clean_correct), total),
        "robust_accuracy": _percent(sum(robust_correct), total),
        "worst_class_clean_accuracy": min(per_class["clean_acc"][i] for i in present),
        "worst_class_robust_accuracy": min(per_class["robust_acc"][i] for i in present),
        "per_class": {
            "count": list(counts),
            "clean_accuracy": list(per_class["clean_acc"]),
            "robust_accuracy": list(per_class["robust_acc"]),
        },
        "attack": attack,
        "evaluation": dict(evaluation or {}),
        "code": {
            "robustfair": robustfair.__version__,
            "git_commit": git_commit(),
            "torch": torch.__version__,
            "attack_implementation": attack.get("implementation"),
        },
    }
    if "broken_by" in result:
        entry["per_class"]["broken_by"] = {name: list(column) for name, column in result["broken_by"].items()}
    return entry


def _percent(part: int, whole: int) -> float | None:
    value = 100.0 * part / whole if whole else math.nan
    return value if math.isfinite(value) else None


__all__ = ["SCHEMA", "leaderboard_entry"]
