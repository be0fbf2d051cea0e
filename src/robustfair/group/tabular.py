"""Tabular data with a binary sensitive attribute: the encoded splits and their feature layout.

Encoding (`robustfair.group.encoding.TableEncoder`, fit on the training rows only, then
applied to the test rows):
- continuous columns: standardised `(v - mean) / std` with the training mean and
  population std (a constant column keeps std 1), placed first;
- categorical columns: one-hot blocks over the categories seen in training, in sorted
  order; a test value never seen in training encodes as an all-zero block.

`FeatureLayout` records which columns are continuous, where each one-hot block lies and
each continuous column's domain (raw-unit bounds, whole numbers or not, and the
standardisation that maps raw units to inputs), so attacks perturb only what they are
allowed to and stay in the data's domain (`robustfair.group.domain`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

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
    sensitive column when it is a feature (a one-hot block or a continuous column; attacks
    never change it), else None.
    Per continuous column (aligned with `continuous`; empty when unknown): mean and std
    of the standardisation, the domain [low, high] in raw units, and whether it holds
    whole numbers.
    """

    names: tuple[str, ...]
    continuous: tuple[int, ...]
    blocks: tuple[OneHotBlock, ...]
    protected_block: str | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    integer: tuple[bool, ...] = ()

    @property
    def num_features(self) -> int:
        return len(self.names)

    @property
    def has_domain(self) -> bool:
        n = len(self.continuous)
        return all(len(v) == n for v in (self.mean, self.std, self.low, self.high, self.integer))

    def continuous_mask(self) -> torch.Tensor:
        """bool [D]: True on the continuous (standardised) columns an attack may move."""
        mask = torch.zeros(self.num_features, dtype=torch.bool)
        mask[[j for j in self.continuous if self.names[j] != self.protected_block]] = True
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
    encoder: the fitted `TableEncoder` (saved with each run, so `eval` encodes the test
    rows exactly as in training); None for data built by hand.
    fingerprint: {"train": sha256, "test": sha256} of the rows used (label, sensitive
    attribute and features as read), so a run can tell whether its data changed.
    info: how the table was read (label, positive value, binarisation, column roles).
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
    encoder: Any = None
    fingerprint: dict[str, str] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict:
        """Sizes, group/label counts, provenance and fingerprint, for logs and results files."""

        def counts(split: TabularSplit) -> dict:
            return {
                "rows": len(split),
                "positive_rate": float(split.y.float().mean()) if len(split) else None,
                **{f"s={g} ({self.group_names[g]})": int((split.s == g).sum()) for g in (0, 1)},
            }

        return {
            "dataset": self.name,
            "sensitive": self.sensitive,
            "group_names": list(self.group_names),
            "label_names": list(self.label_names),
            "features": self.layout.num_features,
            "continuous": len(self.layout.continuous),
            "train": counts(self.train),
            "test": counts(self.test),
            "fingerprint": dict(self.fingerprint),
            **self.info,
            "notes": list(self.notes),
        }


def encode_tables(
    train_rows: Sequence[Mapping[str, str]],
    test_rows: Sequence[Mapping[str, str]],
    continuous: Sequence[str],
    categorical: Sequence[str],
    protected_block: str | None = None,
    integer: Sequence[str] = (),
) -> tuple[torch.Tensor, torch.Tensor, FeatureLayout, dict[str, tuple[float, float]]]:
    """Encode raw string rows into float32 matrices [N_train, D] and [N_test, D].

    Statistics (means, stds, ranges, category lists) come from `train_rows` only. Raises
    DataError naming the column and value for a continuous value that is not a number.
    """
    from robustfair.group.encoding import TableEncoder  # encoding builds on this module's layout

    encoder = TableEncoder.fit(train_rows, continuous, categorical, integer=integer, protected=protected_block)
    x_test = encoder.encode(test_rows) if test_rows else torch.zeros(0, encoder.num_features)
    return encoder.encode(train_rows), x_test, encoder.layout(), encoder.standardisation


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
