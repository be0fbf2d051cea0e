"""Text tables of class-wise results in the layout of BAT's Table 1.

Rows are runs; columns the six summary numbers of METHODS.md (error %, lower is better).
"""

from __future__ import annotations

from typing import Mapping, Sequence

SUMMARY_COLUMNS = [
    ("avg_std_err", "Avg. Std."),
    ("worst_std_err", "Worst Std."),
    ("avg_bndy_err", "Avg. Bndy."),
    ("worst_bndy_err", "Worst Bndy."),
    ("avg_rob_err", "Avg. Rob."),
    ("worst_rob_err", "Worst Rob."),
]


def summary_table(rows: Sequence[tuple[str, Mapping[str, float]]], *, title: str = "method") -> str:
    """Markdown table: one row per (name, summary dict), six error columns in %."""
    header = f"| {title} | " + " | ".join(label for _, label in SUMMARY_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(SUMMARY_COLUMNS)
    lines = [header, rule]
    for name, summary in rows:
        cells = " | ".join(f"{summary[key]:.2f}" for key, _ in SUMMARY_COLUMNS)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def per_class_table(rows: Sequence[tuple[str, Sequence[float]]], classes: Sequence[str], *,
                    title: str = "robust error % per class") -> str:
    """Markdown table: one row per (name, per-class values in %), one column per class."""
    names = [c[:8] for c in classes]
    header = f"| {title} | " + " | ".join(names) + " |"
    rule = "|---|" + "---:|" * len(names)
    lines = [header, rule]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines)


def robust_error_by_class(result: Mapping) -> list[float]:
    """Per-class robust error in % from a results.json-shaped dict."""
    return [100.0 * (1.0 - a) for a in result["per_class"]["robust_acc"]]


def clean_error_by_class(result: Mapping) -> list[float]:
    return [100.0 * (1.0 - a) for a in result["per_class"]["clean_acc"]]
