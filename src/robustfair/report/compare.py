"""Comparison tables across runs (BAT's Table 1 layout), with mean ± std over seeds.

Runs whose resolved config.yaml differs only in the ignored keys (by default `seed` and
`name`) form one group; a group of several runs reports the mean and the sample standard
deviation of each number over its runs. Rows are groups, in the order their first run was
given.

Best (bold) marks the lowest value of each summary column among the *ranked* rows only. A
row is ranked when every run in it
- passed its evaluation sanity checks (results.json `sanity`, `metrics/sanity.py`); a run
  without a sanity record is not ranked, since nothing says its numbers can be trusted; and
- beats chance on clean data: its average clean error is below the chance-level floor
  100 (1 - 1/C) - CHANCE_MARGIN percent for C classes (80 % for 10 classes, 40 % for 2).
A model at chance level has no robustness to lose, so its boundary error is near 0 %
(a broken 1-epoch PGD-AT with 89.9 % clean error shows 0.00 %): such a row is never bold.
Rows left out are named, with the reason, in `ranking_notes`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from robustfair.errors import DataError
from robustfair.report.runs import RunRecord, attack_label
from robustfair.report.tables import SUMMARY_COLUMNS, bold_lowest, format_table, mean_std

DEFAULT_IGNORED = ("seed", "name")
# Percentage points by which a run's average clean error must stay below chance level
# (100 (1 - 1/C)) to be ranked: far enough to exclude a constant or barely trained model.
CHANCE_MARGIN = 10.0


@dataclass
class RunGroup:
    """Runs that share a config up to the ignored keys (typically seeds of one experiment)."""

    label: str
    runs: list[RunRecord]

    @property
    def seeds(self) -> list[Any]:
        return [run.seed for run in self.runs]

    def results(self, which: str = "last", attack: str | None = None) -> list[dict[str, Any]]:
        return [run.result(which, attack) for run in self.runs]


def config_key(config: Mapping[str, Any], ignored: Sequence[str] = DEFAULT_IGNORED) -> str:
    """A canonical string of `config` without the ignored dotted keys (e.g. "seed", "train.device")."""
    stripped = json.loads(json.dumps(config, default=str))
    for dotted in ignored:
        node = stripped
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return json.dumps(stripped, sort_keys=True)


def group_runs(
    runs: Sequence[RunRecord], *, ignored: Sequence[str] = DEFAULT_IGNORED, group: bool = True
) -> list[RunGroup]:
    """Group runs by config (ignoring `ignored`); `group=False` gives one group per run.

    A run without config.yaml is never grouped with another.
    """
    buckets: dict[str, list[RunRecord]] = {}
    for index, run in enumerate(runs):
        key = config_key(run.config, ignored) if (group and run.config) else f"#{index}"
        buckets.setdefault(key, []).append(run)
    groups = [RunGroup(_group_label(members), members) for members in buckets.values()]
    seen: dict[str, int] = {}
    for g in groups:
        seen[g.label] = seen.get(g.label, 0) + 1
    for g in groups:
        if seen[g.label] > 1:
            g.label = g.runs[0].label if len(g.runs) == 1 else f"{g.label}@{g.runs[0].path.name}"
    return groups


def _group_label(runs: Sequence[RunRecord]) -> str:
    if len(runs) == 1:
        return runs[0].label
    names = [run.name for run in runs]
    if len(set(names)) == 1:
        return names[0]
    prefix = os.path.commonprefix(names).rstrip("_-.@ ")
    return prefix or names[0]


def chance_floor(num_classes: int) -> float:
    """The clean error (%) a run must stay below to be ranked: chance level minus CHANCE_MARGIN."""
    return 100.0 * (1.0 - 1.0 / num_classes) - CHANCE_MARGIN


def failed_sanity_checks(run: RunRecord) -> list[str] | None:
    """Names of the run's failed sanity checks ([] if all passed); None when none were recorded."""
    sanity = run.results.get("sanity")
    if not isinstance(sanity, Mapping):
        return None
    if isinstance(sanity.get("checks"), list):
        failed = [str(c.get("name", "?")) for c in sanity["checks"] if isinstance(c, Mapping) and not c.get("passed")]
        if sanity.get("passed") is False and not failed:
            failed = ["(unnamed)"]
        return failed
    flat = {k: v for k, v in sanity.items() if isinstance(v, bool)}  # an older {name: passed} record
    return [k for k, v in flat.items() if not v] if flat else None


def ranking_problem(run: RunRecord, result: Mapping[str, Any]) -> str | None:
    """Why the run may not be marked best (see the module docstring), or None when it may.

    result: the run's result in the table (last or best model, attack).
    """
    failed = failed_sanity_checks(run)
    if failed is None:
        return "no sanity checks recorded"
    if failed:
        return f"failed sanity check{'s' if len(failed) > 1 else ''} {', '.join(failed)}"
    num_classes = len(result.get("classes") or (result.get("per_class") or {}).get("clean_acc") or [])
    clean = (result.get("summary") or {}).get("avg_std_err")
    if num_classes >= 2 and clean is not None and not clean < chance_floor(num_classes):
        return (
            f"clean error {clean:.2f} % is at chance level (not below {chance_floor(num_classes):.2f} %: chance "
            f"{100.0 * (1 - 1 / num_classes):.2f} % for {num_classes} classes minus {CHANCE_MARGIN:g} points)"
        )
    return None


def ranking_problems(
    groups: Sequence[RunGroup], *, which: str = "last", attack: str | None = None
) -> dict[str, list[str]]:
    """Group label -> the reasons its row may not be bold: "seed k: reason" per run of a
    group of several runs, the bare reason for a single run."""
    problems: dict[str, list[str]] = {}
    for g in groups:
        for run, result in zip(g.runs, g.results(which, attack)):
            problem = ranking_problem(run, result)
            if problem is not None:
                problems.setdefault(g.label, []).append(f"seed {run.seed}: {problem}" if len(g.runs) > 1 else problem)
    return problems


def ranking_notes(groups: Sequence[RunGroup], *, which: str = "last", attack: str | None = None) -> list[str]:
    """One line per row left out of the bold marking, naming it and why; [] when none is."""
    return [
        f"not marked best: {label}: {'; '.join(reasons)}"
        for label, reasons in ranking_problems(groups, which=which, attack=attack).items()
    ]


def summary_rows(
    groups: Sequence[RunGroup], *, which: str = "last", attack: str | None = None, bold: bool = True
) -> tuple[list[str], list[list]]:
    """(header, rows): one row per group, the six error columns in %, mean ± std over its runs.

    A "runs" column appears when some group holds more than one run. With bold, the lowest
    value of each column among the ranked rows is bold (see the module docstring).
    """
    with_n = any(len(g.runs) > 1 for g in groups)
    header = ["run"] + (["runs"] if with_n else []) + [label for _, label in SUMMARY_COLUMNS]
    rows = []
    for g in groups:
        results = g.results(which, attack)
        cells = [mean_std([r["summary"].get(key) for r in results]) for key, _ in SUMMARY_COLUMNS]
        rows.append([g.label] + ([str(len(g.runs))] if with_n else []) + cells)
    if bold:
        first = 2 if with_n else 1
        problems = ranking_problems(groups, which=which, attack=attack)
        rows = bold_lowest(rows, range(first, len(header)), eligible=[g.label not in problems for g in groups])
    return header, rows


def per_class_rows(
    groups: Sequence[RunGroup], *, which: str = "last", attack: str | None = None
) -> tuple[list[str], list[list]]:
    """(header, rows): for each group a clean-error row and a robust-error row, one column per
    class, in %, mean ± std over the group's runs. The runs must share their classes."""
    classes = common_classes(groups, which, attack)
    header = ["run", "error"] + classes
    rows = []
    for g in groups:
        results = g.results(which, attack)
        for kind, key in (("clean", "clean_acc"), ("robust", "robust_acc")):
            cells = []
            for c in range(len(classes)):
                errors = [None if r["per_class"][key][c] is None else 100.0 - r["per_class"][key][c] for r in results]
                cells.append(mean_std(errors, digits=1))
            rows.append([g.label, kind] + cells)
    return header, rows


def common_classes(groups: Sequence[RunGroup], which: str = "last", attack: str | None = None) -> list[str]:
    classes = None
    for g in groups:
        for run, result in zip(g.runs, g.results(which, attack)):
            names = list(result.get("classes") or [])
            if classes is None:
                classes = names
            elif names != classes:
                raise DataError(
                    f"run {str(run.path)!r} has classes {names[:4]}... but an earlier run has "
                    f"{classes[:4]}...; per-class tables need runs on the same dataset"
                )
    return classes or []


def comparison_notes(groups: Sequence[RunGroup], *, which: str = "last", attack: str | None = None) -> list[str]:
    """Human-readable warnings: runs evaluated on different data, attacks or sample counts."""
    notes = []
    seen: dict[str, dict[str, list[str]]] = {"dataset": {}, "attack": {}, "samples": {}}
    for g in groups:
        for run, result in zip(g.runs, g.results(which, attack)):
            for field, value in (
                ("dataset", str(result.get("dataset", "?"))),
                ("attack", attack_label(result)),
                ("samples", str(result.get("num_samples", sum(result["per_class"].get("count", []))))),
            ):
                seen[field].setdefault(value, []).append(run.label)
    for field, values in seen.items():
        if len(values) > 1:
            detail = "; ".join(f"{value}: {', '.join(labels)}" for value, labels in values.items())
            notes.append(f"note: the runs differ in {field} ({detail}); their numbers are not directly comparable")
    return notes


def comparison_text(
    groups: Sequence[RunGroup],
    *,
    fmt: str = "markdown",
    which: str = "last",
    attack: str | None = None,
    per_class: bool = True,
) -> str:
    """The whole `robustfair compare` output: summary table, then the per-class table."""
    header, rows = summary_rows(groups, which=which, attack=attack, bold=fmt != "csv")
    first = groups[0].results(which, attack)[0] if groups else {}
    caption = None
    if groups:
        caption = f"error % (lower is better), {which} model, {attack_label(first)}"
        if first.get("num_samples"):
            caption += f", on {first['num_samples']:,} test samples"
    parts = [format_table(header, rows, fmt, caption=caption if fmt != "csv" else None)]
    notes = ranking_notes(groups, which=which, attack=attack) if fmt != "csv" else []
    if notes:  # below the table: why a row with low numbers is not bold
        parts[0] += "\n\n" + "\n".join(("% " if fmt == "latex" else "") + note for note in notes)
    if per_class:
        header, rows = per_class_rows(groups, which=which, attack=attack)
        parts.append(format_table(header, rows, fmt, caption="per-class error %" if fmt != "csv" else None))
    return "\n\n".join(parts)


__all__ = [
    "RunGroup",
    "group_runs",
    "config_key",
    "summary_rows",
    "per_class_rows",
    "comparison_notes",
    "comparison_text",
    "common_classes",
    "DEFAULT_IGNORED",
    "CHANCE_MARGIN",
    "chance_floor",
    "failed_sanity_checks",
    "ranking_problem",
    "ranking_problems",
    "ranking_notes",
]
