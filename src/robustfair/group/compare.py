"""Comparison tables over group-fairness runs, rendered with the image side's table code.

Runs are grouped by dataset, sensitive attribute and config: two runs share a row when
their whole configs agree except the training seed and the data's location (`data.root`,
`data.csv`, `data.test_csv`, `data.download`) and their data have the same fingerprint
(so a custom table named like a built-in one never merges into its rows). A results file
reached twice (given twice, or inside a directory given too) and two runs of one row with
the same seed (a copied run) are refused: each run counts once.

Tables (numbers in percent / percentage points; mean ± sample std over seeds, ddof 1):
- `gap_rows` / the gap table: clean accuracy, accuracy under the accuracy attack, and for
  one notion the hard (decisions p > threshold) and soft (mean probability) gap, clean and
  under that notion's fairness attack, each followed by the bootstrap interval over test
  rows (per seed, then its ends averaged over seeds), and the hard gap's direction (the
  group with the higher rate), clean -> attacked;
- the per-group table: hard selection rate, TPR, FPR and accuracy of each group, clean
  and under the fairness attack;
- the domain table (`domain=True`): how often the attacks' rows left the feature domain.

Formats: markdown, csv and latex through `robustfair.report.tables.format_table` (csv puts
each interval in two extra columns), and json.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from robustfair.errors import ConfigError, DataError
from robustfair.group.config import TRAINING_NAMES
from robustfair.group.metrics import check_notion
from robustfair.report.tables import Number, format_table, mean_std

FORMATS = ("markdown", "csv", "latex", "json")
_IGNORED = {"train.seed", "data.root", "data.download", "data.csv", "data.test_csv"}
_ALWAYS = ("data.name", "data.sensitive", "train.method")
_TITLES = {
    "data.name": "Dataset",
    "data.sensitive": "Sensitive",
    "train.method": "Training",
    "train.lam": "lam",
    "train.notion": "Trained notion",
    "model.name": "Model",
    "data.fingerprint": "Data",
    "eval.attack.domain": "Attack domain",
    "train.attack.domain": "Training attack domain",
}
NOTION_LABEL = {"dp": "DP", "eopp": "EOpp", "eodds": "EOdds"}


@dataclasses.dataclass(frozen=True)
class RunResult:
    """One results file: where it was found and what it holds."""

    path: Path
    result: dict

    @property
    def metrics(self) -> dict:
        return self.result["metrics"]

    @property
    def seed(self) -> Any:
        return (self.result["config"].get("train") or {}).get("seed")


@dataclasses.dataclass(frozen=True)
class IntervalNumber(Number):
    """A Number followed by its interval [low, high] (None: no interval)."""

    low: float | None = None
    high: float | None = None

    def text(self, plus_minus: str = " ± ") -> str:
        base = super().text(plus_minus)
        if self.missing or self.low is None or self.high is None:
            return base
        return f"{base} [{self.low:.{self.digits}f}, {self.high:.{self.digits}f}]"


def find_results(paths: Sequence[str | Path], filename: str = "results.json") -> list[Path]:
    """Every `filename` under the given directories (recursively) or named directly; DataError
    when one is reached twice."""
    found: list[Path] = []
    first_seen: dict[Path, str] = {}
    for given in paths:
        p = Path(given)
        if p.is_file():
            hits = [p]
        elif p.is_dir():
            hits = sorted(p.rglob(filename))
        else:
            raise DataError(f"{str(p)!r}: no such file or directory")
        for hit in hits:
            key = hit.resolve()
            if key in first_seen:
                raise DataError(
                    f"{str(hit)!r} is reached twice (through {first_seen[key]!r} and {str(given)!r}); "
                    f"each run counts once, so give it once"
                )
            first_seen[key] = str(given)
            found.append(hit)
    if not found:
        raise DataError(f"no {filename} found under {', '.join(repr(str(p)) for p in paths)}")
    return found


def read_results(path: Path) -> RunResult:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{str(path)!r}: unreadable results file ({err})") from None
    if (
        not isinstance(result, dict)
        or not isinstance(result.get("metrics"), dict)
        or not isinstance(result.get("config"), dict)
    ):
        raise DataError(f"{str(path)!r}: not a group results file (no metrics/config)")
    return RunResult(path, result)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tuple(obj) if isinstance(obj, list) else obj}


def _identity(run: RunResult) -> dict[str, Any]:
    flat = {k: v for k, v in _flatten(run.result["config"]).items() if k not in _IGNORED}
    fingerprint = (run.result.get("data") or {}).get("fingerprint") or {}
    flat["data.fingerprint"] = (fingerprint.get("train", "")[:8] + fingerprint.get("test", "")[:8]) or None
    return flat


@dataclasses.dataclass
class RunGroup:
    """Runs of one (dataset, sensitive attribute, config): the seeds of one row."""

    identity: dict[str, Any]
    runs: list[RunResult]


def group_runs(runs: Iterable[RunResult]) -> list[RunGroup]:
    """Group by identity (see the module docstring); DataError on a repeated seed within a group."""
    groups: dict[str, RunGroup] = {}
    for run in runs:
        identity = _identity(run)
        key = json.dumps(identity, sort_keys=True, default=str)
        group = groups.setdefault(key, RunGroup(identity, []))
        twin = next((r for r in group.runs if r.seed == run.seed), None)
        if twin is not None:
            raise DataError(
                f"{str(twin.path)!r} and {str(run.path)!r} are the same run (same data, config and seed "
                f"{run.seed}); each run counts once, so compare it once"
            )
        group.runs.append(run)
    order = {name: i for i, name in enumerate(TRAINING_NAMES)}
    return sorted(
        groups.values(),
        key=lambda g: (
            str(g.identity.get("data.name")),
            str(g.identity.get("data.sensitive")),
            order.get(g.identity.get("train.method"), 99),
            json.dumps(g.identity, sort_keys=True, default=str),
        ),
    )


def _varying_fields(groups: Sequence[RunGroup]) -> list[str]:
    """Identity fields that differ between rows of the same dataset and sensitive attribute
    (settings that only differ across datasets, such as epochs, identify nothing new)."""
    by_data: dict[tuple, list[dict[str, Any]]] = {}
    for g in groups:
        by_data.setdefault((g.identity.get("data.name"), g.identity.get("data.sensitive")), []).append(g.identity)
    keys = sorted({k for g in groups for k in g.identity} - set(_ALWAYS))
    return [k for k in keys if any(len({repr(f.get(k)) for f in part}) > 1 for part in by_data.values())]


def _get(metrics: dict, path: Sequence[str]) -> Any:
    node: Any = metrics
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _percent(values: Sequence[Any]) -> list[float | None]:
    return [None if v is None else 100.0 * float(v) for v in values]


def _cell(runs: Sequence[RunResult], path: Sequence[str], interval: Sequence[str] | None = None) -> Number:
    """mean ± std (percent) of the value at `path` of each run's metrics, with the mean interval."""
    number = mean_std(_percent([_get(r.metrics, path) for r in runs]))
    if interval is None:
        return number
    ends = [_get(r.metrics, interval) for r in runs]
    if number.missing or any(not isinstance(e, list) or len(e) != 2 for e in ends):
        return IntervalNumber(number.value, number.std, number.n)
    low = sum(100.0 * e[0] for e in ends) / len(ends)
    high = sum(100.0 * e[1] for e in ends) / len(ends)
    return IntervalNumber(number.value, number.std, number.n, low=low, high=high)


def _consensus(names: Sequence[Any]) -> str:
    known = [str(n) for n in names if n is not None]
    if not known:
        return "-"
    top = max(set(known), key=known.count)
    return top if known.count(top) == len(names) else f"{top} {known.count(top)}/{len(names)}"


def _notion(group: RunGroup, notion: str | None) -> str:
    return notion or str(group.identity.get("train.notion") or "dp")


def _label(groups: Sequence[RunGroup], notion: str | None) -> str:
    notions = {_notion(g, notion) for g in groups}
    return NOTION_LABEL[notions.pop()] if len(notions) == 1 else "Target"


def gap_rows(groups: Sequence[RunGroup], fields: Sequence[str], notion: str | None) -> tuple[list[str], list[list]]:
    label = _label(groups, notion)
    header = [_TITLES.get(f, f) for f in fields] + [
        "Seeds",
        "Clean acc.",
        "Acc. under acc. attack",
        f"{label} hard",
        f"{label} soft",
        f"{label} hard, fair. attack",
        f"{label} soft, fair. attack",
        "Higher rate (hard): clean -> attacked",
    ]
    rows = []
    for g in groups:
        n, runs = _notion(g, notion), g.runs
        attacked = ("fairness_attack", n)
        cells = [_cell(runs, ("clean", "accuracy")), _cell(runs, ("accuracy_attack", "accuracy"))]
        for where in (("clean",), attacked):
            for kind, key in (("hard", "gaps_hard"), ("soft", "gaps")):
                cells.append(_cell(runs, (*where, key, n), (*where, "intervals", kind, n)))
        higher = [
            _consensus([_get(r.metrics, (*where, "direction", "hard", n)) for r in runs])
            for where in (("clean",), attacked)
        ]
        rows.append(
            [str(g.identity.get(f)) for f in fields] + [str(len(runs))] + cells + [f"{higher[0]} -> {higher[1]}"]
        )
    return header, rows


def group_rate_rows(
    groups: Sequence[RunGroup], fields: Sequence[str], notion: str | None
) -> tuple[list[str], list[list]]:
    label = _label(groups, notion)
    rates = (("selection_rate", "Sel. rate"), ("tpr", "TPR"), ("fpr", "FPR"))
    header = (
        [_TITLES.get(f, f) for f in fields]
        + ["Group", "Test rows"]
        + [t for _, t in rates]
        + ["Acc."]
        + [f"{t}, {label} attack" for _, t in rates]
    )
    rows = []
    for g in groups:
        n = _notion(g, notion)
        for s in ("0", "1"):
            first = g.runs[0].metrics
            name = _get(first, ("clean", "groups", s, "name")) or s
            count = _get(first, ("clean", "groups", s, "rows"))
            cells = [_cell(g.runs, ("clean", "groups", s, "hard", r)) for r, _ in rates]
            cells.append(_cell(g.runs, ("clean", "groups", s, "hard", "accuracy")))
            cells += [_cell(g.runs, ("fairness_attack", n, "groups", s, "hard", r)) for r, _ in rates]
            rows.append([str(g.identity.get(f)) for f in fields] + [str(name), str(count)] + cells)
    return header, rows


def domain_rows(groups: Sequence[RunGroup], fields: Sequence[str], notion: str | None) -> tuple[list[str], list[list]]:
    label = _label(groups, notion)
    header = [_TITLES.get(f, f) for f in fields] + [
        "Seeds",
        "Outside range, acc. attack",
        f"Outside range, {label} attack",
        "Fractional, acc. attack",
        f"Fractional, {label} attack",
        "Most often outside, acc. attack",
        f"Most often outside, {label} attack",
    ]
    rows = []
    for g in groups:
        n = _notion(g, notion)
        where = (("accuracy_attack",), ("fairness_attack", n))
        cells = [_cell(g.runs, (*w, "domain", "rows_out_of_range")) for w in where]
        cells += [_cell(g.runs, (*w, "domain", "rows_non_integer")) for w in where]
        worst = []
        for w in where:
            by_feature: dict[str, list[float]] = {}
            for r in g.runs:
                for feature, share in (_get(r.metrics, (*w, "domain", "out_of_range_by_feature")) or {}).items():
                    by_feature.setdefault(feature, []).append(share)
            means = {f: sum(v) / len(v) for f, v in by_feature.items()}
            top = max(means, key=means.get) if means else None
            worst.append("-" if top is None or means[top] == 0 else f"{top} {100 * means[top]:.2f}")
        rows.append([str(g.identity.get(f)) for f in fields] + [str(len(g.runs))] + cells + worst)
    return header, rows


def _caption(groups: Sequence[RunGroup], notion: str | None, what: str) -> str:
    config = groups[0].runs[0].result["config"]
    attack = (config.get("eval") or {}).get("attack") or {}
    boot = groups[0].runs[0].metrics.get("bootstrap") or {}
    label = _label(groups, notion)
    budget = (
        f"{attack.get('norm')} eps {attack.get('eps')}, {attack.get('steps')} steps, "
        f"domain {attack.get('domain', 'unbounded')}"
    )
    parts = {
        "gaps": f"{label} gap in percentage points on the test set: hard = decisions (p > "
        f"{(config.get('eval') or {}).get('threshold', 0.5)}), soft = mean P(y=1|x); mean ± std over "
        f"training seeds"
        + (
            f", [{100 * boot['level']:g}% bootstrap interval over test rows, "
            f"{boot['resamples']} resamples, seed {boot['seed']}; ends averaged over "
            f"seeds]"
            if boot
            else ""
        )
        + f"; attacks: {budget}",
        "groups": f"per-group rates of the decisions in %, clean and under the {label} fairness attack; "
        f"mean ± std over training seeds",
        "domain": f"% of attacked test rows outside the feature domain (training range) or with a fractional "
        f"whole-number feature; mean ± std over training seeds; attacks: {budget}",
    }
    return parts[what]


def _split_intervals(header: list[str], rows: list[list]) -> tuple[list[str], list[list]]:
    """CSV: each interval column becomes value (± std) plus `low` and `high` columns."""
    cols = [i for i in range(len(header)) if any(isinstance(r[i], IntervalNumber) for r in rows)]
    new_header, new_rows = [], [[] for _ in rows]
    for i, h in enumerate(header):
        new_header.append(h)
        if i in cols:
            new_header += [f"{h} low", f"{h} high"]
        for k, r in enumerate(rows):
            c = r[i]
            if i in cols:
                new_rows[k] += [
                    Number(c.value, c.std, c.n),
                    Number(getattr(c, "low", None)),
                    Number(getattr(c, "high", None)),
                ]
            else:
                new_rows[k].append(c)
    return new_header, new_rows


def _json_cell(c: Any) -> Any:
    if isinstance(c, Number):
        out = {"mean": None if c.missing else c.value, "std": c.std, "n": c.n}
        if isinstance(c, IntervalNumber):
            out["interval"] = None if c.low is None else [c.low, c.high]
        return out
    return c


def format_comparison(
    results: Iterable[RunResult],
    notion: str | None = None,
    fmt: str = "markdown",
    per_group: bool = True,
    domain: bool = False,
) -> str:
    """The comparison as markdown, CSV, LaTeX or JSON: the gap table and the per-group table,
    or (domain=True) the domain table."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not allowed; valid values: {', '.join(FORMATS)}")
    if notion is not None:
        check_notion(notion)
    groups = group_runs(results)
    fields = list(_ALWAYS) + _varying_fields(groups)
    tables = (
        [("domain", domain_rows(groups, fields, notion))]
        if domain
        else [("gaps", gap_rows(groups, fields, notion))]
        + ([("groups", group_rate_rows(groups, fields, notion))] if per_group else [])
    )
    if fmt == "json":
        return json.dumps(
            {
                name: {
                    "caption": _caption(groups, notion, name),
                    "header": header,
                    "rows": [[_json_cell(c) for c in row] for row in rows],
                }
                for name, (header, rows) in tables
            },
            indent=2,
            default=str,
        )
    parts = []
    for name, (header, rows) in tables:
        if fmt == "csv":
            header, rows = _split_intervals(header, rows)
        parts.append(format_table(header, rows, fmt, caption=None if fmt == "csv" else _caption(groups, notion, name)))
    return "\n\n".join(parts)
