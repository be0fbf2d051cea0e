"""Is a difference between two methods more than seed noise? Paired differences over seeds.

Runs of two groups that share a seed were trained from the same seed (same initialisation,
data order and attack starts up to what the method changes), so the per-seed difference
`method - baseline` removes the variation both share. For each of the six summary errors
this module reports, against a chosen baseline group:

- the per-seed differences (percentage points, in seed order);
- their mean with a two-sided 95 % Student-t interval over the n shared seeds
  (mean ± t_{0.975, n-1} · sd / sqrt(n)); with n = 1 there is no interval;
- the sign test over seeds (two-sided binomial p-value of the signs, ties dropped). With 3
  seeds its smallest possible p-value is 0.25, so it can never declare a difference by
  itself; it is shown so a reader sees how consistent the sign is.

A cell is marked `*` when the t-interval excludes 0. With 3 seeds this is a weak test
(the interval is wide: t = 4.30); it says "larger than the seed-to-seed spread", not
"significant" in any stronger sense.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from robustfair.errors import ConfigError
from robustfair.report.compare import RunGroup
from robustfair.report.tables import SUMMARY_COLUMNS, format_table

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences (method - baseline) of one summary error, in percentage points."""

    seeds: tuple
    differences: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return sum(self.differences) / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float] | None:
        """Two-sided 95 % Student-t interval of the mean difference; None below 2 seeds."""
        if self.n < 2:
            return None
        from scipy.stats import t

        mean = self.mean
        sd = math.sqrt(sum((d - mean) ** 2 for d in self.differences) / (self.n - 1))
        half = float(t.ppf(0.5 + CONFIDENCE / 2, self.n - 1)) * sd / math.sqrt(self.n)
        return mean - half, mean + half

    @property
    def excludes_zero(self) -> bool:
        interval = self.interval
        return interval is not None and (interval[0] > 0 or interval[1] < 0)

    @property
    def sign_test_p(self) -> float | None:
        """Two-sided sign-test p-value over seeds (zero differences dropped); None if all tie."""
        nonzero = [d for d in self.differences if d != 0]
        if not nonzero:
            return None
        from scipy.stats import binomtest

        return float(binomtest(sum(d > 0 for d in nonzero), len(nonzero), 0.5).pvalue)


def _summary_value(result: dict, key: str) -> float | None:
    value = result.get("summary", {}).get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def paired_difference(
    group: RunGroup, baseline: RunGroup, key: str, *, which: str = "last", attack: str | None = None
) -> PairedDifference:
    """Differences of summary `key` over the seeds both groups have finished, in seed order."""
    base = {run.seed: _summary_value(res, key) for run, res in zip(baseline.runs, baseline.results(which, attack))}
    mine = {run.seed: _summary_value(res, key) for run, res in zip(group.runs, group.results(which, attack))}
    shared = sorted(
        (s for s in mine if s in base and mine[s] is not None and base[s] is not None), key=lambda s: (str(type(s)), s)
    )
    return PairedDifference(tuple(shared), tuple(mine[s] - base[s] for s in shared))


def find_baseline(groups: Sequence[RunGroup], name: str) -> RunGroup:
    """The group labelled `name` (or whose label ends with it); ConfigError naming the choices."""
    for group in groups:
        if group.label == name:
            return group
    matches = [g for g in groups if g.label.endswith(name)]
    if len(matches) == 1:
        return matches[0]
    labels = ", ".join(g.label for g in groups)
    raise ConfigError(f"--baseline {name!r} is not one of the compared rows ({labels})")


def _signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}"


def paired_rows(
    groups: Sequence[RunGroup], baseline: RunGroup, *, which: str = "last", attack: str | None = None
) -> tuple[list[str], list[list], list[list]]:
    """(header, interval rows, per-seed rows) for every group other than the baseline."""
    header = ["run", "seeds"] + [label for _, label in SUMMARY_COLUMNS]
    interval_rows, seed_rows = [], []
    for group in groups:
        if group is baseline:
            continue
        diffs = [paired_difference(group, baseline, key, which=which, attack=attack) for key, _ in SUMMARY_COLUMNS]
        seeds = diffs[0].seeds
        interval_cells, seed_cells = [], []
        for diff in diffs:
            if diff.n == 0:
                interval_cells.append("-")
                seed_cells.append("-")
                continue
            cell = _signed(diff.mean)
            interval = diff.interval
            if interval is not None:
                cell += f" [{_signed(interval[0], 1)}, {_signed(interval[1], 1)}]" + ("*" if diff.excludes_zero else "")
            interval_cells.append(cell)
            p = diff.sign_test_p
            seed_cells.append(
                " / ".join(_signed(d, 1) for d in diff.differences) + (f" (p={p:.2f})" if p is not None else "")
            )
        label_seeds = ", ".join(str(s) for s in seeds) or "none shared"
        interval_rows.append([group.label, label_seeds] + interval_cells)
        seed_rows.append([group.label, label_seeds] + seed_cells)
    return header, interval_rows, seed_rows


def paired_text(
    groups: Sequence[RunGroup],
    baseline_name: str,
    *,
    fmt: str = "markdown",
    which: str = "last",
    attack: str | None = None,
) -> str:
    """Two tables: mean paired difference with its 95 % t-interval, and the per-seed differences."""
    baseline = find_baseline(groups, baseline_name)
    header, interval_rows, seed_rows = paired_rows(groups, baseline, which=which, attack=attack)
    if not interval_rows:
        raise ConfigError(f"--baseline {baseline_name!r}: there is no other row to compare with it")
    plain = fmt == "csv"
    first = (
        f"paired difference vs {baseline.label} (method - baseline, percentage points of error, "
        f"same seed; mean [95 % t-interval over seeds]; * = the interval excludes 0)"
    )
    second = (
        f"per-seed differences vs {baseline.label} in seed order (percentage points), "
        f"with the two-sided sign-test p-value over seeds"
    )
    return "\n\n".join(
        [
            format_table(header, interval_rows, fmt, caption=None if plain else first),
            format_table(header, seed_rows, fmt, caption=None if plain else second),
        ]
    )


__all__ = ["PairedDifference", "paired_difference", "paired_rows", "paired_text", "find_baseline", "CONFIDENCE"]
