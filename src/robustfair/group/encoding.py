"""The fitted feature encoding of a table: raw string rows -> model inputs, saved with every run.

`TableEncoder.fit(train_rows, continuous, categorical, ...)` learns, from the training rows
only:
- per continuous column: mean and population std (a constant column keeps std 1), its
  domain `[low, high]` in raw units (declared bounds, else the training range) and
  whether it holds whole numbers (attacks round those);
- per categorical column: the categories seen in training, sorted (one-hot block; a value
  never seen in training encodes as an all-zero block).

`encode(rows)` applies it: continuous columns first, standardised `(v - mean) / std`, then
the one-hot blocks, float32 [N, D]. `to_dict` / `from_dict` round-trip it through JSON
(floats are written with `repr`, so a reloaded encoder encodes bit-identically), which is
how `robustfair group eval` rebuilds a run's inputs instead of refitting them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from robustfair.errors import DataError
from robustfair.group.tabular import FeatureLayout, OneHotBlock


@dataclasses.dataclass(frozen=True)
class ContinuousColumn:
    """A standardised column: x = (v - mean) / std; domain [low, high] in raw units."""

    name: str
    mean: float
    std: float
    low: float
    high: float
    integer: bool = False


@dataclasses.dataclass(frozen=True)
class CategoricalColumn:
    """A one-hot block over `categories` (sorted, as seen in training)."""

    name: str
    categories: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TableEncoder:
    """Fitted encoding of raw rows ({column: string}) into float32 inputs [N, D].

    protected: the sensitive column when it is among the features (attacks never move it).
    """

    continuous: tuple[ContinuousColumn, ...]
    categorical: tuple[CategoricalColumn, ...]
    protected: str | None = None

    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, str]],
        continuous: Sequence[str],
        categorical: Sequence[str],
        *,
        integer: Sequence[str] = (),
        bounds: Mapping[str, Sequence[float]] | None = None,
        protected: str | None = None,
        where: str = "",
    ) -> TableEncoder:
        """Fit on the training rows. bounds: {column: (low, high)} declared domains (raw units)."""
        if not rows:
            raise DataError("cannot encode an empty training table")
        bounds = bounds or {}
        columns = []
        for name in continuous:
            values = column_numbers(rows, name, where)
            mean, std = float(values.mean()), float(values.std())
            std = std if std > 0 else 1.0  # a constant column stays constant (zero) instead of dividing by 0
            low, high = (
                (float(b) for b in bounds[name]) if name in bounds else (float(values.min()), float(values.max()))
            )
            columns.append(ContinuousColumn(name, mean, std, low, high, name in integer))
        blocks = [CategoricalColumn(name, tuple(sorted({row[name] for row in rows}))) for name in categorical]
        return cls(tuple(columns), tuple(blocks), protected)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.continuous) + tuple(
            f"{b.name}={c}" for b in self.categorical for c in b.categories
        )

    @property
    def num_features(self) -> int:
        return len(self.continuous) + sum(len(b.categories) for b in self.categorical)

    @property
    def standardisation(self) -> dict[str, tuple[float, float]]:
        return {c.name: (c.mean, c.std) for c in self.continuous}

    def encode(self, rows: Sequence[Mapping[str, str]], where: str = "") -> torch.Tensor:
        """float32 [len(rows), num_features]; DataError naming column and row for a non-number."""
        out = np.zeros((len(rows), self.num_features), dtype=np.float64)
        for j, c in enumerate(self.continuous):
            out[:, j] = (column_numbers(rows, c.name, where) - c.mean) / c.std
        start = len(self.continuous)
        for block in self.categorical:
            index = {category: i for i, category in enumerate(block.categories)}
            for i, row in enumerate(rows):
                k = index.get(row[block.name])
                if k is not None:
                    out[i, start + k] = 1.0
            start += len(block.categories)
        return torch.from_numpy(out.astype(np.float32))

    def layout(self) -> FeatureLayout:
        """Column roles, one-hot blocks and each continuous column's domain, for the attacks."""
        blocks, start = [], len(self.continuous)
        for b in self.categorical:
            names = tuple(f"{b.name}={c}" for c in b.categories)
            blocks.append(OneHotBlock(b.name, start, start + len(names), b.categories))
            start += len(names)
        cont = self.continuous
        return FeatureLayout(
            self.names,
            tuple(range(len(cont))),
            tuple(blocks),
            self.protected,
            mean=tuple(c.mean for c in cont),
            std=tuple(c.std for c in cont),
            low=tuple(c.low for c in cont),
            high=tuple(c.high for c in cont),
            integer=tuple(c.integer for c in cont),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "continuous": [dataclasses.asdict(c) for c in self.continuous],
            "categorical": [{"name": b.name, "categories": list(b.categories)} for b in self.categorical],
            "protected": self.protected,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TableEncoder:
        try:
            return cls(
                tuple(ContinuousColumn(**c) for c in raw["continuous"]),
                tuple(CategoricalColumn(b["name"], tuple(b["categories"])) for b in raw["categorical"]),
                raw.get("protected"),
            )
        except (KeyError, TypeError) as err:
            raise DataError(f"not a saved feature encoding ({type(err).__name__}: {err})") from None


def parse_number(text: str) -> float | None:
    """float(text) when it is a finite number, else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def column_numbers(rows: Sequence[Mapping[str, str]], col: str, where: str = "") -> np.ndarray:
    """The column's values as float64 [N]; DataError naming the column, value and row otherwise."""
    out = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        value = parse_number(row[col])
        if value is None:
            place = f" in {where}" if where else ""
            raise DataError(f"column {col!r}: {row[col]!r} is not a finite number (row {i}{place})")
        out[i] = value
    return out
