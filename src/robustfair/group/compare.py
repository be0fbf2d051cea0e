"""Comparison table over group-fairness runs: mean +- std over seeds.

Runs are grouped by their whole config except the training seed (and the data location);
each group becomes one row. Columns: the config fields that identify the row (dataset,
sensitive attribute, training, and any other field that differs between groups of the
same dataset), the
number of seeds, then for one fairness notion (`notion`, default: each run's
`train.notion`), in percent / percentage points:

- clean accuracy, clean balanced accuracy, clean gap,
- accuracy under the accuracy attack,
- gap under the fairness attack aimed at that notion.

std is the sample standard deviation (ddof = 1) over seeds; a single seed shows no std.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from robustfair.errors import ConfigError, DataError
from robustfair.group.config import TRAINING_NAMES
from robustfair.group.metrics import check_notion

FORMATS = ("markdown", "text", "csv", "json")
_IGNORED = {"train.seed", "data.root", "data.download"}
_ALWAYS = ("data.name", "data.sensitive", "train.method")
_TITLES = {"data.name": "Dataset", "data.sensitive": "Sensitive", "train.method": "Training",
           "train.lam": "lam", "train.notion": "Trained notion", "model.name": "Model"}
_NOTION_LABEL = {"dp": "DP", "eopp": "EOpp", "eodds": "EOdds"}


def find_results(paths: Sequence[str | Path], filename: str = "results.json") -> list[Path]:
    """Every `filename` under the given directories (recursively) or named directly."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.rglob(filename)))
        else:
            raise DataError(f"{p}: no such file or directory")
    if not found:
        raise DataError(f"no {filename} found under {', '.join(map(str, paths))}")
    return found


def read_results(path: Path) -> dict:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable results file ({err})") from None
    if not isinstance(result, dict) or "metrics" not in result or "config" not in result:
        raise DataError(f"{path}: not a group results file (no metrics/config)")
    return result


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tuple(obj) if isinstance(obj, list) else obj}


def _varying_fields(flats: list[dict[str, Any]]) -> list[str]:
    """Config fields that differ between groups of the same dataset and sensitive attribute
    (settings that only differ across datasets, such as epochs, identify nothing new)."""
    by_data: dict[tuple, list[dict[str, Any]]] = {}
    for f in flats:
        by_data.setdefault((f.get("data.name"), f.get("data.sensitive")), []).append(f)
    keys = sorted({k for f in flats for k in f} - set(_ALWAYS))
    return [k for k in keys if any(len({repr(f.get(k)) for f in part}) > 1 for part in by_data.values())]


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def comparison_rows(results: Iterable[dict], notion: str | None = None,
                    hard: bool = False) -> tuple[list[str], list[dict]]:
    """(identifying config fields, rows); each row has those fields, "seeds", and per metric
    (mean, std or None) in percent."""
    if notion is not None:
        check_notion(notion)
    groups: dict[str, list[dict]] = {}
    flats: dict[str, dict[str, Any]] = {}
    for r in results:
        flat = {k: v for k, v in _flatten(r["config"]).items() if k not in _IGNORED}
        key = json.dumps(flat, sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
        flats[key] = flat
    varying = _varying_fields(list(flats.values()))
    fields = list(_ALWAYS) + varying
    gaps = "gaps_hard" if hard else "gaps"
    rows = []
    for key, members in groups.items():
        flat = flats[key]
        n = notion or flat.get("train.notion", "dp")
        metrics = [m["metrics"] for m in members]
        columns = {
            "clean_accuracy": [100 * m["clean"]["accuracy"] for m in metrics],
            "clean_balanced_accuracy": [100 * m["clean"]["balanced_accuracy"] for m in metrics],
            "clean_gap": [100 * m["clean"][gaps][n] for m in metrics],
            "accuracy_under_accuracy_attack": [100 * m["accuracy_attack"]["accuracy"] for m in metrics],
            "gap_under_fairness_attack": [100 * m["fairness_attack"][n][gaps][n] for m in metrics],
        }
        row = {f: flat.get(f) for f in fields}
        row.update({"notion": n, "seeds": len(members), **{k: _mean_std(v) for k, v in columns.items()}})
        rows.append(row)
    order = {name: i for i, name in enumerate(TRAINING_NAMES)}
    rows.sort(key=lambda r: (str(r["data.name"]), str(r["data.sensitive"]), order.get(r["train.method"], 99),
                             json.dumps({f: r[f] for f in varying}, sort_keys=True, default=str)))
    return fields, rows


def _cell(value: tuple[float, float | None]) -> str:
    mean, std = value
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def format_comparison(results: Iterable[dict], notion: str | None = None, hard: bool = False,
                      fmt: str = "markdown") -> str:
    """The comparison table as markdown, aligned text, CSV or JSON."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not allowed; valid values: {', '.join(FORMATS)}")
    fields, rows = comparison_rows(results, notion, hard)
    if fmt == "json":
        return json.dumps({"notion": notion, "hard": hard, "unit": "percent", "rows": rows}, indent=2, default=str)
    notions = {r["notion"] for r in rows}
    gap_name = _NOTION_LABEL[notions.pop()] if len(notions) == 1 else "target"
    gap_name += " gap (hard)" if hard else " gap"
    header = [_TITLES.get(f, f) for f in fields] + [
        "Seeds", "Clean acc.", "Clean bal. acc.", f"Clean {gap_name}", "Acc. under acc. attack",
        f"{gap_name[0].upper() + gap_name[1:]} under fair. attack"]
    body = [[str(r[f]) for f in fields] + [str(r["seeds"])] + [_cell(r[k]) for k in (
        "clean_accuracy", "clean_balanced_accuracy", "clean_gap", "accuracy_under_accuracy_attack",
        "gap_under_fairness_attack")] for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body])
