"""Option checks shared by the readers and loaders: one-line ConfigErrors naming the field."""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from robustfair.errors import ConfigError


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
