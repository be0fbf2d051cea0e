"""Tables of a source/target-class analysis (analysis.json), for `robustfair analyze` and the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustfair.report.tables import Number

CORRELATION_NAMES = {
    "steps_vs_robust_acc": "mean steps to misclassify",
    "flipped_steps_vs_robust_acc": "mean steps, flipped samples only",
    "target_kl_vs_robust_acc": "KL(targets of the class || uniform)",
    "target_share_vs_robust_acc": "share of adversarial examples landing in the class",
}


def analysis_table(analysis: Mapping[str, Any]) -> tuple[list[str], list[list]]:
    """(header, rows) of the per-class analysis table (also printed by `robustfair analyze`).

    "misclassified" counts the class's samples wrong after the target attack: the target
    statistics (top target, KL) of a class with few of them rest on few samples."""
    classes = analysis["classes"]
    pc = analysis["per_class"]
    header = [
        "class",
        "n",
        "mean steps",
        "steps if flipped",
        "never flipped %",
        "clean acc %",
        "robust acc %",
        "misclassified",
        "top target",
        "top target %",
        "target KL",
        "as target %",
    ]
    rows = []
    for c, name in enumerate(classes):
        top = pc["top_target"][c]
        flipped = pc.get("mean_steps_flipped") or [None] * len(classes)
        wrong = pc.get("misclassified") or [None] * len(classes)
        rows.append(
            [
                name,
                Number(pc["count"][c], digits=0),
                Number(pc["mean_steps"][c], digits=1),
                Number(flipped[c], digits=1),
                Number(_pct(pc["never_flipped"][c]), digits=1),
                Number(_pct(pc["clean_acc"][c]), digits=1),
                Number(_pct(pc["robust_acc"][c]), digits=1),
                Number(wrong[c], digits=0),
                "-" if top is None else classes[top],
                Number(_pct(pc["top_target_share"][c]), digits=1),
                Number(pc["target_kl"][c], digits=3),
                Number(_pct(pc["target_share"][c]), digits=1),
            ]
        )
    return header, rows


def correlation_table(analysis: Mapping[str, Any]) -> tuple[list[str], list[list]]:
    """(header, rows): Pearson and Spearman correlation of each per-class quantity with robust accuracy."""
    rows = []
    for key, value in analysis.get("correlations", {}).items():
        rows.append(
            [
                CORRELATION_NAMES.get(key, key),
                Number(value.get("pearson"), digits=3),
                Number(value.get("spearman"), digits=3),
                str(value.get("n", "")),
            ]
        )
    return ["per-class quantity", "Pearson", "Spearman", "classes"], rows


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


__all__ = ["analysis_table", "correlation_table", "CORRELATION_NAMES"]
