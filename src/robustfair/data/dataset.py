"""The in-memory dataset every reader returns, and its validation.

An `ArrayDataset` holds the whole split as NumPy arrays:

- images: `x` uint8 [N, C, H, W] (0..255), converted to float in [0, 1] only when a batch
  is drawn (the loaders keep uint8 on the device, four times smaller than float32);
- features or pre-scaled images: `x` float32 [N, ...] already in [0, 1];
- `y` int64 [N] with labels in [0, len(classes)).

Construction only normalises dtypes; `validate_dataset` is the checkpoint that every
reader (and `load_dataset`) runs before handing a dataset out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from robustfair.errors import DataError


@dataclass
class ArrayDataset:
    """A labelled split held in memory.

    x: uint8 [N, C, H, W] images, or float32 [N, ...] values in [0, 1].
    y: int64 [N] labels in [0, num_classes).
    classes: class names; index order = label order.
    name: display name used in reports (e.g. "CIFAR-10 (JPEG)").
    info: free-form facts about the data (source file checksum, affine map, ...).
    """

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x)
        y = np.asarray(self.y)
        if y.dtype != np.int64 and np.issubdtype(y.dtype, np.integer):
            y = y.astype(np.int64)
        self.y = y
        self.classes = [str(c) for c in self.classes]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        """True for [N, C, H, W] data (what crop/flip augmentation needs)."""
        return self.x.ndim == 4

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArrayDataset:
        """The samples at `indices` (in that order), same classes, name and info."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise DataError(f"subset indices must be 1-D, got shape {idx.shape}")
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"subset indices out of range for a dataset of {len(self)} samples")
        return replace(self, x=self.x[idx], y=self.y[idx], classes=list(self.classes), info=dict(self.info))

    def as_float(self) -> np.ndarray:
        """x as float32 in [0, 1] (uint8 divided by 255; float data returned as float32)."""
        if self.x.dtype == np.uint8:
            return self.x.astype(np.float32) / np.float32(255.0)
        return self.x.astype(np.float32, copy=False)

    def class_counts(self) -> np.ndarray:
        """int64 [num_classes]: samples per class (labels outside the range are ignored)."""
        y = self.y[(self.y >= 0) & (self.y < self.num_classes)]
        return np.bincount(y, minlength=self.num_classes).astype(np.int64)


@dataclass
class DatasetSplits:
    """What `load_dataset` returns: the train and test splits of one dataset."""

    train: ArrayDataset
    test: ArrayDataset

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


def validate_dataset(ds: ArrayDataset, *, allow_empty_classes: bool = False) -> None:
    """Raise `DataError` naming the first problem found, or return None.

    Checks: x and y lengths match; y is 1-D integer; labels lie in [0, num_classes);
    x is uint8 or floating; float x has no NaN and lies in [0, 1]; class names are unique;
    every class has at least one sample (unless `allow_empty_classes`, e.g. for a small
    evaluation subset).
    """
    where = f"dataset {ds.name!r}" if ds.name else "dataset"
    x, y = ds.x, ds.y
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DataError(f"{where}: x and y must be NumPy arrays, got {type(x).__name__} and {type(y).__name__}")
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D [N], got shape {y.shape}")
    if x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"{where}: mismatched lengths: x has shape {x.shape} but y has {y.shape[0]} labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if not ds.classes:
        raise DataError(f"{where}: no class names given")
    if len(set(ds.classes)) != len(ds.classes):
        dupes = sorted({c for c in ds.classes if ds.classes.count(c) > 1})
        raise DataError(f"{where}: duplicate class names {dupes}")
    k = ds.num_classes
    bad = (y < 0) | (y >= k)
    if bad.any():
        values = np.unique(y[bad])[:5].tolist()
        raise DataError(f"{where}: {int(bad.sum())} labels out of range [0, {k}), e.g. {values}")
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        nan = np.isnan(x)
        if nan.any():
            first = int(np.argwhere(nan.reshape(len(x), -1).any(axis=1))[0, 0])
            raise DataError(f"{where}: {int(nan.sum())} NaN values (first in sample {first})")
        if x.size:
            lo, hi = float(x.min()), float(x.max())
            if lo < 0.0 or hi > 1.0:
                from robustfair.data.input_range import InputRangeError, advice

                raise InputRangeError(
                    f"{where}: float values must lie in [0, 1], found range [{lo:g}, {hi:g}]; {advice(lo, hi)}"
                )
    else:
        raise DataError(f"{where}: x must be uint8 images or float values in [0, 1], got dtype {x.dtype}")
    if not allow_empty_classes:
        counts = np.bincount(y, minlength=k)
        empty = [ds.classes[c] for c in np.flatnonzero(counts == 0)]
        if empty:
            raise DataError(f"{where}: {len(empty)} classes have no samples: {empty[:10]}")
