"""Checks shared by the readers and loaders.

Options: one-line ConfigErrors naming the field. File contents: one-line DataErrors naming
the file and what is wrong (labels that are not integers in range, a file that is not
the format its name says).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from robustfair.errors import ConfigError, DataError


def check_int(field: str, value: Any, *, low: int | None = None) -> int:
    """`value` as an int, or ConfigError naming `field` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{field}: expected an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ConfigError(f"{field}: {value!r} is out of range; allowed: >= {low}")
    return value


def check_float(field: str, value: Any, *, low: float | None = None, low_open: bool = False) -> float:
    """`value` as a finite float, or ConfigError naming `field`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{field}: expected a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{field}: {value!r} is not a finite number")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{field}: {value!r} is out of range; allowed: {'>' if low_open else '>='} {low}")
    return value


def check_choice(field: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ConfigError(f"{field}: {value!r} is not allowed; valid values: {', '.join(map(str, choices))}")
    return value


def check_labels(values: Any, where: str, num_classes: int | None = None) -> np.ndarray:
    """int64 [N] labels from `values`, or DataError naming `where`.

    Labels must be integers: integer arrays, or floats with integral values (MATLAB files
    store doubles); strings, booleans, fractions (0.5 is not truncated to 0) and objects are
    refused. With `num_classes`, every label must lie in [0, num_classes).
    """
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as err:
        raise DataError(f"{where}: labels are not an array of integers ({err})") from None
    if array.ndim != 1:
        array = array.reshape(-1) if array.ndim == 2 and 1 in array.shape else array
    if array.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D list, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "f":
        fractional = ~np.isfinite(array) | (array != np.round(array))
        if fractional.any():
            raise DataError(
                f"{where}: labels must be integers, found {array[fractional][0].item()!r} "
                f"({int(fractional.sum())} such labels)"
            )
    elif kind not in "iu":
        example = array.reshape(-1)[0].item() if array.size else None
        what = {"U": "strings", "S": "byte strings", "b": "booleans", "O": "objects"}.get(kind, f"dtype {array.dtype}")
        raise DataError(f"{where}: labels must be integers, found {what} (e.g. {example!r})")
    labels = array.astype(np.int64)
    if num_classes is not None and labels.size:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            raise DataError(
                f"{where}: {int(bad.sum())} labels out of range [0, {num_classes}), e.g. "
                f"{np.unique(labels[bad])[:5].tolist()}"
            )
    return labels


def check_magic(path: Any, data: bytes, magics: Sequence[bytes], what: str) -> None:
    """DataError unless `data` (the file's first bytes) starts with one of `magics`."""
    if not any(data.startswith(m) for m in magics):
        head = data[:16]
        looks = "text" if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary data"
        raise DataError(f"{path}: not {what} (it starts with {looks} {head!r}{'...' if len(data) > 16 else ''})")
