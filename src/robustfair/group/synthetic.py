"""A small synthetic tabular dataset with a sensitive attribute, for tests and demos.

Rows (seeded): s ~ Bernoulli(0.4); three continuous columns u, v, w ~ N(0, 1) with
u shifted by +0.8 for s = 1; a categorical column `color` (red/green/blue) whose
distribution depends on s; a categorical `group` column holding s itself (a feature only
with `include_sensitive`). Label y = 1[u + 0.5 v - 0.3 + 0.5 noise > 0], so a classifier
learns a positive-rate gap between the groups through u.
"""

from __future__ import annotations

import numpy as np
import torch

from robustfair.group.tabular import GroupData, TabularSplit, encode_tables


def synthetic_group_data(
    n_train: int = 400, n_test: int = 200, seed: int = 0, include_sensitive: bool = False
) -> GroupData:
    """GroupData named "synthetic" with 3 continuous columns and a 3-category block."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    s = (rng.random(n) < 0.4).astype(np.int64)
    u = rng.normal(size=n) + 0.8 * s
    v = rng.normal(size=n)
    w = rng.normal(size=n)
    y = (u + 0.5 * v - 0.3 + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    colors = np.where(rng.random(n) < 0.5 + 0.3 * s, "red", np.where(rng.random(n) < 0.5, "green", "blue"))
    rows = [
        {
            "u": repr(float(u[i])),
            "v": repr(float(v[i])),
            "w": repr(float(w[i])),
            "color": str(colors[i]),
            "group": "b" if s[i] else "a",
        }
        for i in range(n)
    ]
    categorical = ["color", "group"] if include_sensitive else ["color"]
    x_train, x_test, layout, stats = encode_tables(
        rows[:n_train],
        rows[n_train:],
        ["u", "v", "w"],
        categorical,
        protected_block="group" if include_sensitive else None,
    )

    def split(lo: int, hi: int, x: torch.Tensor) -> TabularSplit:
        return TabularSplit(x, torch.from_numpy(y[lo:hi]), torch.from_numpy(s[lo:hi]))

    return GroupData(
        "synthetic",
        "group",
        split(0, n_train, x_train),
        split(n_train, n, x_test),
        layout,
        ("a", "b"),
        ("negative", "positive"),
        stats,
    )
