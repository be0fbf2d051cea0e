"""Calling a dataset reader with checked options, and validating what it returns."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from robustfair.data.dataset import DatasetSplits, validate_dataset
from robustfair.errors import ConfigError, DataError


def reader_options(reader: Callable[..., DatasetSplits]) -> list[str]:
    """The keyword options a reader accepts beyond (root, download)."""
    params = inspect.signature(reader).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def call_reader(
    name: str, reader: Callable[..., DatasetSplits], root: Any, download: bool, options: dict[str, Any]
) -> DatasetSplits:
    """reader(root, download, **options), after checking option names; validates both splits."""
    valid = reader_options(reader)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"dataset {name!r}: unknown option {unknown[0]!r}; valid options: {', '.join(valid) if valid else '(none)'}"
        )
    splits = reader(root, bool(download), **options)
    if not isinstance(splits, DatasetSplits):
        raise DataError(f"dataset {name!r}: reader returned {type(splits).__name__}, not DatasetSplits")
    validate_dataset(splits.train)
    validate_dataset(splits.test)
    if splits.train.classes != splits.test.classes:
        raise DataError(f"dataset {name!r}: train and test class lists differ")
    return splits
