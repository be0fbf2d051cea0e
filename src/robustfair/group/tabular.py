"""Tabular data with a binary sensitive attribute, and its encoding into model inputs.

Encoding (fit on the training rows only, then applied to the test rows):
- continuous columns: standardised `(v - mean) / std` with the training mean and
  population std (a constant column keeps std 1), placed first;
- categorical columns: one-hot blocks over the categories seen in training, in sorted
  order; a test value never seen in training encodes as an all-zero block.

`FeatureLayout` records which columns are continuous and where each one-hot block lies,
so attacks perturb only what they are allowed to (continuous coordinates by default).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import torch

from robustfair.errors import DataError


@dataclasses.dataclass(frozen=True)
class OneHotBlock:
    """The columns `[start, stop)` that one-hot encode categorical column `name`."""

    name: str
    start: int
    stop: int
    categories: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Which input columns are continuous and which form one-hot blocks.

    names: one name per column (`age`, `sex=Male`, ...). continuous: indices of the
    standardised columns. blocks: the one-hot blocks. protected_block: the name of the
    block encoding the sensitive attribute when it is included as a feature (attacks
    never change it), else None.
    """

    names: tuple[str, ...]
    continuous: tuple[int, ...]
    blocks: tuple[OneHotBlock, ...]
    protected_block: str | None = None

    @property
    def num_features(self) -> int:
        return len(self.names)

    def continuous_mask(self) -> torch.Tensor:
        """bool [D]: True on the continuous (standardised) columns."""
        mask = torch.zeros(self.num_features, dtype=torch.bool)
        mask[list(self.continuous)] = True
        return mask

    def perturbable_blocks(self) -> tuple[OneHotBlock, ...]:
        """The one-hot blocks an attack may change (all but the sensitive attribute's)."""
        return tuple(b for b in self.blocks if b.name != self.protected_block)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TabularSplit:
    """One split: x float32 [N, D] (encoded), y int64 [N] in {0, 1}, s int64 [N] in {0, 1}."""

    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclasses.dataclass(frozen=True)
class GroupData:
    """A binary classification dataset with a binary sensitive attribute.

    group_names[g] names the group with s = g; label_names[k] the class with y = k.
    standardisation: {column: (mean, std)} fitted on the training rows.
    """

    name: str
    sensitive: str
    train: TabularSplit
    test: TabularSplit
    layout: FeatureLayout
    group_names: tuple[str, str]
    label_names: tuple[str, str]
    standardisation: dict[str, tuple[float, float]]
    notes: tuple[str, ...] = ()

    def summary(self) -> dict:
        """Sizes and group/label counts, for logs and results files."""
        def counts(split: TabularSplit) -> dict:
            return {"rows": len(split), "positive_rate": float(split.y.float().mean()),
                    **{f"s={g} ({self.group_names[g]})": int((split.s == g).sum()) for g in (0, 1)}}
        return {"dataset": self.name, "sensitive": self.sensitive, "features": self.layout.num_features,
                "continuous": len(self.layout.continuous), "train": counts(self.train),
                "test": counts(self.test), "notes": list(self.notes)}


def encode_tables(train_rows: Sequence[Mapping[str, str]], test_rows: Sequence[Mapping[str, str]],
                  continuous: Sequence[str], categorical: Sequence[str],
                  protected_block: str | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, FeatureLayout, dict[str, tuple[float, float]]]:
    """Encode raw string rows into float32 matrices [N_train, D] and [N_test, D].

    Statistics (means, stds, category lists) come from `train_rows` only. Raises
    DataError naming the column and value for a continuous value that is not a number.
    """
    if not train_rows:
        raise DataError("cannot encode an empty training table")
    names: list[str] = []
    train_cols: list[np.ndarray] = []
    test_cols: list[np.ndarray] = []
    stats: dict[str, tuple[float, float]] = {}
    for col in continuous:
        tr = _numbers(train_rows, col)
        te = _numbers(test_rows, col)
        mean = float(tr.mean())
        std = float(tr.std())
        std = std if std > 0 else 1.0  # a constant column stays constant (zero) instead of dividing by 0
        stats[col] = (mean, std)
        names.append(col)
        train_cols.append((tr - mean) / std)
        test_cols.append((te - mean) / std)
    blocks: list[OneHotBlock] = []
    for col in categorical:
        categories = tuple(sorted({row[col] for row in train_rows}))
        index = {c: i for i, c in enumerate(categories)}
        start = len(names)
        names.extend(f"{col}={c}" for c in categories)
        blocks.append(OneHotBlock(col, start, start + len(categories), categories))
        train_cols.extend(_one_hot(train_rows, col, index).T)
        test_cols.extend(_one_hot(test_rows, col, index).T)
    layout = FeatureLayout(tuple(names), tuple(range(len(continuous))), tuple(blocks), protected_block)
    x_train = torch.from_numpy(np.stack(train_cols, axis=1).astype(np.float32))
    x_test = torch.from_numpy(np.stack(test_cols, axis=1).astype(np.float32)) if test_rows else \
        torch.zeros(0, len(names))
    return x_train, x_test, layout, stats


def _numbers(rows: Sequence[Mapping[str, str]], col: str) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        try:
            out[i] = float(row[col])
        except ValueError:
            raise DataError(f"column {col!r}: {row[col]!r} is not a number (row {i})") from None
    return out


def _one_hot(rows: Sequence[Mapping[str, str]], col: str, index: Mapping[str, int]) -> np.ndarray:
    out = np.zeros((len(rows), len(index)), dtype=np.float64)
    for i, row in enumerate(rows):
        j = index.get(row[col])
        if j is not None:
            out[i, j] = 1.0
    return out


def stratified_split(y: np.ndarray, s: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test indices, stratified by the (y, s) cell so each keeps its share.

    Each cell's indices are shuffled with `numpy.random.default_rng(seed)` and its first
    `round(test_fraction * n_cell)` go to test. Returns sorted (train_idx, test_idx).
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction: {test_fraction!r} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for yv in (0, 1):
        for sv in (0, 1):
            cell = np.flatnonzero((y == yv) & (s == sv))
            cell = cell[rng.permutation(len(cell))]
            n_test = int(round(test_fraction * len(cell)))
            test.append(cell[:n_test])
            train.append(cell[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
