"""Class-aware splits: validation carve-outs, balanced subsets, stratified train/test.

Model selection never touches the test set: FRL (Xu et al. 2021, "To be Robust or to be
Fair") validates on images 4700-4999 of each CIFAR-10 class, i.e. the last 300 per class
(`split_validation(ds, 300, "last")`); CFA uses the first 100 (`position="first"`).
Every function keeps the samples in their original order within each returned split.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from robustfair.data.dataset import ArrayDataset
from robustfair.errors import ConfigError, DataError


def _class_indices(dataset: ArrayDataset) -> list[np.ndarray]:
    return [np.flatnonzero(dataset.y == c) for c in range(dataset.num_classes)]


def _check_positive_int(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{field}: {value!r} is not allowed; expected an integer >= 1")


def split_validation(
    dataset: ArrayDataset, per_class: int, position: Literal["last", "first"] = "last"
) -> tuple[ArrayDataset, ArrayDataset]:
    """Carve `per_class` samples of every class out of `dataset` as a validation split.

    position: "last" takes each class's last `per_class` samples in dataset order (FRL),
    "first" its first ones (CFA). Returns (train, val); train keeps everything else.
    Raises DataError if a class has no more than `per_class` samples (train would lose it).
    """
    _check_positive_int(per_class, "per_class")
    if position not in ("last", "first"):
        raise ConfigError(f"position: {position!r} is not allowed; valid values: last, first")
    val_parts = []
    for c, idx in enumerate(_class_indices(dataset)):
        if len(idx) <= per_class:
            raise DataError(
                f"class {dataset.classes[c]!r} has {len(idx)} samples; a validation split of "
                f"{per_class} per class needs more than {per_class}"
            )
        val_parts.append(idx[-per_class:] if position == "last" else idx[:per_class])
    val_idx = np.sort(np.concatenate(val_parts))
    train_mask = np.ones(len(dataset), dtype=bool)
    train_mask[val_idx] = False
    return dataset.subset(np.flatnonzero(train_mask)), dataset.subset(val_idx)


def class_balanced_subset(dataset: ArrayDataset, per_class: int, seed: int = 0) -> ArrayDataset:
    """`per_class` samples of every class drawn without replacement (seeded), in dataset order.

    Raises DataError if a class has fewer than `per_class` samples.
    """
    _check_positive_int(per_class, "per_class")
    rng = np.random.default_rng(seed)
    parts = []
    for c, idx in enumerate(_class_indices(dataset)):
        if len(idx) < per_class:
            raise DataError(
                f"class {dataset.classes[c]!r} has {len(idx)} samples; a balanced subset needs {per_class} per class"
            )
        parts.append(rng.choice(idx, size=per_class, replace=False))
    return dataset.subset(np.sort(np.concatenate(parts)))


def stratified_counts(class_sizes: np.ndarray, total: int) -> np.ndarray:
    """How many of each class go into a stratified sample of `total` (largest remainder).

    Each class gets floor(n_c * total / N); the leftover units go to the classes with the
    largest fractional parts (ties: lower class index first), so the counts sum to `total`
    exactly and stay within one of the proportional share.
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    n = int(sizes.sum())
    if not 0 <= total <= n:
        raise ConfigError(f"test_size: {total} is out of range; allowed: 0 to {n}")
    exact = sizes * total
    base = exact // n
    remainder = exact - base * n
    leftover = total - int(base.sum())
    order = sorted(range(len(sizes)), key=lambda c: (-int(remainder[c]), c))
    base[order[:leftover]] += 1
    return base


def stratified_split(dataset: ArrayDataset, test_size: int | float, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Split into (train, test) with class proportions preserved, seeded.

    test_size: number of test samples (int) or a fraction in (0, 1). Per-class test counts
    come from `stratified_counts`; which samples go to test is a seeded permutation per
    class (classes drawn in label order from one `numpy.random.default_rng(seed)`).
    Raises DataError if a class would end up with no train or no test sample.
    """
    n = len(dataset)
    if isinstance(test_size, float) and not isinstance(test_size, bool):
        if not 0.0 < test_size < 1.0:
            raise ConfigError(f"test_size: {test_size!r} is out of range; a fraction must be in (0, 1)")
        total = int(round(test_size * n))
    else:
        _check_positive_int(test_size, "test_size")
        total = int(test_size)
    indices = _class_indices(dataset)
    counts = stratified_counts(np.array([len(i) for i in indices]), total)
    rng = np.random.default_rng(seed)
    test_parts = []
    for c, idx in enumerate(indices):
        if counts[c] == 0 or counts[c] == len(idx):
            raise DataError(
                f"class {dataset.classes[c]!r} ({len(idx)} samples) would get {counts[c]} "
                f"test samples; stratified_split needs each class in both splits"
            )
        test_parts.append(rng.permutation(idx)[: counts[c]])
    test_idx = np.sort(np.concatenate(test_parts))
    train_mask = np.ones(n, dtype=bool)
    train_mask[test_idx] = False
    return dataset.subset(np.flatnonzero(train_mask)), dataset.subset(test_idx)
