"""Bootstrap confidence intervals over test rows for every gap (and accuracy).

The test rows are resampled with replacement `resamples` times (numpy
`default_rng(seed).integers`, in chunks; the same resamples for every condition of one
evaluation, so clean and attacked numbers are paired). The predictions are held fixed:
an attacked condition's inputs are crafted once on the full test set, so the interval
covers the sampling of test rows, not the attack's randomness or the training seed.

For each resample the per-cell sums (`robustfair.group.rates`) give the signed rate
differences. The interval of a gap is the percentile interval of the *oriented* gap
(each difference signed as in the point estimate, `rates.oriented_gaps`), with its lower
end clipped at 0: the plain |d| of a resample is biased upwards near 0, and its
percentile interval can miss the point estimate; the oriented one is centred on it. A
lower end of 0 means the data do not establish the direction of the gap. A resample in
which a needed (group, label) cell is empty leaves that gap undefined; such resamples are
counted (`undefined_resamples`) and left out of the percentiles.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from robustfair.group.rates import (
    NOTION_RATES,
    cell_sums,
    gaps_from_differences,
    group_rates,
    oriented_gaps,
    rate_differences,
)

CHUNK = 64  # resamples per matrix product: memory CHUNK x N float64


def resample_weights(n_rows: int, resamples: int, seed: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Row multiplicities [b, n_rows] of `resamples` seeded resamples with replacement, in chunks."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        draws = rng.integers(0, n_rows, size=(b, n_rows))
        flat = (draws + n_rows * np.arange(b)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_rows).reshape(b, n_rows).astype(np.float64)
        done += b


def bootstrap_intervals(
    conditions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    y: np.ndarray,
    s: np.ndarray,
    *,
    resamples: int,
    seed: int,
    level: float,
) -> dict[str, dict]:
    """{condition: {"hard": {notion: [low, high] | None}, "soft": {...}, "accuracy": [low, high],
    "undefined_resamples": {notion: count}}} for conditions {name: (p [N], pred [N])}.

    Values are fractions like the point estimates. None: fewer than 2 defined resamples.
    """
    signs = {}
    for name, (p, pred) in conditions.items():
        point = cell_sums(p, pred, y, s)
        signs[name] = {
            kind: {r: float(np.nan_to_num(np.sign(d))) for r, d in rate_differences(group_rates(point, kind)).items()}
            for kind in ("hard", "soft")
        }
    draws: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in conditions}
    for weights in resample_weights(len(y), resamples, seed):
        for name, (p, pred) in conditions.items():
            cells = cell_sums(p, pred, y, s, weights)
            for kind in ("hard", "soft"):
                rates = group_rates(cells, kind)
                for notion, values in oriented_gaps(rate_differences(rates), signs[name][kind]).items():
                    draws[name].setdefault(f"{kind}.{notion}", []).append(values)
            total = cells.n.sum(axis=(-1, -2))
            correct = (cells.hard[..., 1] + cells.n[..., 0] - cells.hard[..., 0]).sum(-1)
            draws[name].setdefault("accuracy", []).append(correct / total)
    alpha = (1.0 - level) / 2.0
    out = {}
    for name in conditions:
        result: dict = {"hard": {}, "soft": {}, "undefined_resamples": {}}
        for key, chunks in draws[name].items():
            values = np.concatenate(chunks)
            defined = values[~np.isnan(values)]
            interval = None
            if len(defined) >= 2:
                low, high = np.quantile(defined, [alpha, 1.0 - alpha])
                interval = [max(float(low), 0.0), float(high)]
            if key == "accuracy":
                result["accuracy"] = interval
                continue
            kind, notion = key.split(".")
            result[kind][notion] = interval
            if len(defined) < len(values):
                result["undefined_resamples"][notion] = max(
                    result["undefined_resamples"].get(notion, 0), int(len(values) - len(defined))
                )
        out[name] = result
    return out


def point_gaps(p: np.ndarray, pred: np.ndarray, y: np.ndarray, s: np.ndarray) -> dict[str, dict[str, float]]:
    """{"hard": {notion: gap}, "soft": {...}} of one set of predictions (NaN where undefined)."""
    cells = cell_sums(p, pred, y, s)
    return {
        kind: {n: float(v) for n, v in gaps_from_differences(rate_differences(group_rates(cells, kind))).items()}
        for kind in ("hard", "soft")
    }


__all__ = ["resample_weights", "bootstrap_intervals", "point_gaps", "NOTION_RATES"]
