"""Per-group rates, gaps and their direction, from the four (group, label) cells.

Everything a fairness table reports is a function of per-cell sums: with cell (g, k) the
rows with s = g and y = k, `n[g, k]` rows, `soft[g, k]` the sum of p = P(y = 1 | x) and
`hard[g, k]` the number of positive decisions (p > threshold). Per group g:

- selection rate  = (hard[g, 0] + hard[g, 1]) / (n[g, 0] + n[g, 1])
- TPR             = hard[g, 1] / n[g, 1];   FPR = hard[g, 0] / n[g, 0]
- accuracy        = (hard[g, 1] + n[g, 0] - hard[g, 0]) / (n[g, 0] + n[g, 1])

and the soft rates replace `hard` by `soft` (mean probability). Gaps (fractions; tables
print percentage points), with d_r = r(s=1) - r(s=0):

- DP    = |d_selection_rate|
- EOpp  = |d_TPR|
- EOdds = |d_TPR| + |d_FPR|, the SUM of the two (fairlearn's `equalized_odds_difference`
  reports the max, or with agg="mean" half of this sum).

A gap's direction is the group with the higher rate (EOdds: higher TPR and FPR; "mixed"
when they disagree, "none" when equal): the favoured group when y = 1 is the desirable
outcome (Adult: income >50K), the disadvantaged one when it is not (COMPAS: recidivism).
A rate whose cell is empty is NaN and the gaps that need it are undefined (None in
results, with the reason), never 0.

Arrays may carry leading batch dimensions (bootstrap resamples): n, soft, hard [..., 2, 2].
"""

from __future__ import annotations

import dataclasses

import numpy as np

NOTION_RATES = {"dp": ("selection_rate",), "eopp": ("tpr",), "eodds": ("tpr", "fpr")}
LABEL_TEXT = {0: "negative", 1: "positive"}


@dataclasses.dataclass(frozen=True)
class Cells:
    """Weighted per-cell sums [..., 2 (s), 2 (y)]: row counts, sums of p, positive decisions."""

    n: np.ndarray
    soft: np.ndarray
    hard: np.ndarray


def cell_onehot(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """float64 [N, 4]: row i's cell (s, y) as column 2 * s + y."""
    out = np.zeros((len(y), 4))
    out[np.arange(len(y)), 2 * np.asarray(s, dtype=np.int64) + np.asarray(y, dtype=np.int64)] = 1.0
    return out


def cell_sums(
    p: np.ndarray, pred: np.ndarray, y: np.ndarray, s: np.ndarray, weights: np.ndarray | None = None
) -> Cells:
    """Cells of one set of predictions; weights [B, N] (row multiplicities) give [B, 2, 2] each."""
    onehot = cell_onehot(y, s)
    w = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=np.float64)
    sums = w @ np.concatenate([onehot, onehot * p[:, None], onehot * pred[:, None]], axis=1)
    n, soft, hard = (sums[:, 4 * k : 4 * k + 4].reshape(-1, 2, 2) for k in range(3))
    if weights is None:
        n, soft, hard = n[0], soft[0], hard[0]
    return Cells(n, soft, hard)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def group_rates(cells: Cells, kind: str) -> dict[str, np.ndarray]:
    """{"selection_rate", "tpr", "fpr"[, "accuracy" for hard]}: each [..., 2] indexed by group s."""
    pos = cells.hard if kind == "hard" else cells.soft
    n = cells.n
    out = {
        "selection_rate": _ratio(pos.sum(-1), n.sum(-1)),
        "tpr": _ratio(pos[..., 1], n[..., 1]),
        "fpr": _ratio(pos[..., 0], n[..., 0]),
    }
    if kind == "hard":
        out["accuracy"] = _ratio(pos[..., 1] + n[..., 0] - pos[..., 0], n.sum(-1))
    return out


def rate_differences(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """d_r = r(s=1) - r(s=0) for selection rate, TPR and FPR; [...]."""
    return {r: rates[r][..., 1] - rates[r][..., 0] for r in ("selection_rate", "tpr", "fpr")}


def gaps_from_differences(diff: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """DP, EOpp and EOdds (sum form) from the signed differences; NaN where undefined."""
    return {notion: sum(np.abs(diff[r]) for r in rates) for notion, rates in NOTION_RATES.items()}


def oriented_gaps(diff: dict[str, np.ndarray], signs: dict[str, float]) -> dict[str, np.ndarray]:
    """Each gap with every difference signed as in the point estimate (`signs`: +1, -1 or 0).

    Equal to the gap where the resample agrees with the point estimate's direction, lower
    (possibly negative) where it does not; a 0 sign falls back to |d|. The bootstrap uses
    it so that the interval does not inherit |.|'s upward bias (see bootstrap.py).
    """

    def part(r: str) -> np.ndarray:
        return np.abs(diff[r]) if signs[r] == 0 else signs[r] * diff[r]

    return {notion: sum(part(r) for r in rates) for notion, rates in NOTION_RATES.items()}


def higher_group(diff: dict[str, float], group_names: tuple[str, str]) -> dict[str, str | None]:
    """Per notion: the name of the group with the higher rate, "none" (equal rates), "mixed"
    (EOdds strata disagree) or None (undefined)."""

    def sign(r: str) -> float | None:
        d = diff[r]
        return None if np.isnan(d) else float(np.sign(d))

    out: dict[str, str | None] = {}
    for notion, rates in NOTION_RATES.items():
        signs = [sign(r) for r in rates]
        if any(v is None for v in signs):
            out[notion] = None
            continue
        nonzero = {v for v in signs if v != 0}
        if not nonzero:
            out[notion] = "none"
        elif len(nonzero) > 1:
            out[notion] = "mixed"
        else:
            out[notion] = group_names[1] if nonzero.pop() > 0 else group_names[0]
    return out


def undefined_reasons(n: np.ndarray, group_names: tuple[str, str]) -> dict[str, str]:
    """{notion: why its gap is undefined} for the notions that need an empty (group, label) cell.

    n: [2, 2] row counts. DP needs rows of each group; EOpp positive rows (y = 1) of each
    group; EOdds positive and negative rows of each group.
    """
    needs = {"dp": (None,), "eopp": (1,), "eodds": (1, 0)}
    reasons = {}
    for notion, labels in needs.items():
        for g in (0, 1):
            for k in labels:
                count = n[g].sum() if k is None else n[g, k]
                if count == 0 and notion not in reasons:
                    rows = "rows" if k is None else f"{LABEL_TEXT[k]} rows (y={k})"
                    reasons[notion] = f"no {rows} of group {group_names[g]!r} (s={g}) in this set"
    return reasons
