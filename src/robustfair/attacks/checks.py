"""Argument checks shared by the attacks; every error names the field and what is allowed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from robustfair.errors import ConfigError

NORMS = ("linf", "l2")
STARTS = ("uniform", "normal", "none")


def check_batch(x: Any, y: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """x: floating tensor [B, ...] (at least 2-D); y: integer tensor [B]. Returns (x, y as int64)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise ConfigError(
            f"{where}: x must be a floating tensor of shape [B, ...], got "
            f"{type(x).__name__ if not isinstance(x, torch.Tensor) else f'{x.dtype} {tuple(x.shape)}'}"
        )
    y = check_labels(y, x, f"{where}: y")
    return x, y


def check_labels(y: Any, x: torch.Tensor, where: str) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
        raise ConfigError(
            f"{where} must be an integer tensor of shape [B], got "
            f"{type(y).__name__ if not isinstance(y, torch.Tensor) else f'{y.dtype} {tuple(y.shape)}'}"
        )
    if y.shape[0] != x.shape[0]:
        raise ConfigError(f"{where} has {y.shape[0]} labels for a batch of {x.shape[0]} inputs")
    return y.to(device=x.device, dtype=torch.long)


def check_number(value: Any, field: str, *, low: float = 0.0, low_open: bool = False, integer: bool = False) -> None:
    """A finite real number (an integer when `integer`; numpy scalars too) >= low (> low when `low_open`)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{field}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{field}: {value!r} is not a finite number")
    if value < low or (low_open and value == low):
        raise ConfigError(f"{field}: {value!r} is out of range; allowed: {'>' if low_open else '>='} {low:g}")


def check_choice(value: Any, field: str, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{field}: {value!r} is not allowed; valid values: {', '.join(choices)}")


def per_sample_budget(value: Any, x: torch.Tensor, field: str) -> torch.Tensor:
    """A budget (eps or step size) as a float32 (float64 for float64 x) tensor [B] on x's device.

    value: a Python number >= 0, or a tensor [B] (or 0-d) of finite values >= 0, e.g. FRL's
    per-class eps gathered by label. A CPU tensor's values are checked here (ConfigError);
    a CUDA tensor's by an asynchronous device assertion, so the attack never waits for the
    GPU (a bad value then fails at the next synchronisation, as a device-side assertion).
    """
    batch = x.shape[0]
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = value.expand(batch)
        if value.dim() != 1 or value.shape[0] != batch:
            raise ConfigError(f"{field}: a per-sample tensor must have shape [{batch}], got {tuple(value.shape)}")
        value = value.detach().to(device=x.device, dtype=_budget_dtype(x))
        valid = torch.isfinite(value).all() & (value >= 0).all()
        if value.device.type == "cuda":
            torch._assert_async(valid, f"{field}: every per-sample value must be finite and >= 0")
        elif not bool(valid):
            raise ConfigError(f"{field}: every per-sample value must be finite and >= 0")
        return value
    check_number(value, field)
    return torch.full((batch,), float(value), device=x.device, dtype=_budget_dtype(x))


def _budget_dtype(x: torch.Tensor) -> torch.dtype:
    # float64 inputs keep float64 budgets, so the ball is exact in double-precision tests.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_clamp(clamp: Any) -> tuple[float, float] | None:
    """None (no box) or (low, high) with low < high."""
    if clamp is None:
        return None
    if (
        not isinstance(clamp, (tuple, list))
        or len(clamp) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in clamp)
        or not clamp[0] < clamp[1]
    ):
        raise ConfigError(f"clamp: expected None or (low, high) with low < high, got {clamp!r}")
    return float(clamp[0]), float(clamp[1])


def check_start(start: Any, x: torch.Tensor) -> None:
    """A start name (`uniform`, `normal`, `none`) or an explicit start point shaped like x."""
    if isinstance(start, torch.Tensor):
        if start.shape != x.shape:
            raise ConfigError(
                f"start: an explicit start point must have shape {tuple(x.shape)}, got {tuple(start.shape)}"
            )
        return
    check_choice(start, "start", STARTS)
