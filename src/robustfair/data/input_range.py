"""The input contract: images reach models and attacks as float in [0, 1] (uint8 is converted).

eps is in pixel units and attacks clip to the [0, 1] box, so a batch normalised in the
loader ([-2, 2]) or left in [0, 255] silently measures another threat model (the issue
that motivated this module: 24.3 % robust error with the normalisation in the loader, 39.3 %
with the same weights and the normalisation in the model). Normalisation belongs inside
the model: `robustfair.models.Normalize(mean, std)` as its first layer.

Checks cost one host synchronisation each, so loops check their first batches
(`RangeWatch`: later batches fold into a flag on the device, read once at the end) and
datasets are checked once when loaded (`data.dataset.validate_dataset`).
"""

from __future__ import annotations

import torch

from robustfair.errors import DataError

ADVICE = (
    "keep inputs in [0, 1] and put the normalisation inside the model: "
    "model = torch.nn.Sequential(robustfair.models.Normalize(mean, std), model)"
)
EAGER_BATCHES = 2  # batches of a loop checked on the spot (one host sync each)


class InputRangeError(DataError):
    """Inputs outside [0, 1]; the message says how to move normalisation into the model."""


def advice(low: float | None = None, high: float | None = None) -> str:
    """How to fix inputs found in [low, high] (the [0, 255] case gets its own advice)."""
    if low is not None and high is not None and low >= 0 and 1 < high <= 255:
        return f"they look like [0, 255] pixels: divide by 255 or pass uint8 images, and {ADVICE}"
    return ADVICE


def range_message(where: str, low: float | None = None, high: float | None = None) -> str:
    """One line: what was found and how to fix it."""
    found = f"{where}: inputs must be float in [0, 1] (or uint8)"
    if low is None or high is None:
        return f"{found}, found values outside; {advice()}"
    return f"{found}, found values in [{low:.4g}, {high:.4g}]; {advice(low, high)}"


def as_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float / 255; floating stays; other dtypes (int, bool) are rejected."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise InputRangeError(f"inputs must be float in [0, 1] or uint8 images, got dtype {x.dtype}")
    return x


def out_of_range(x: torch.Tensor) -> torch.Tensor:
    """0-dim bool tensor on x's device: any value outside [0, 1] or NaN (no host sync)."""
    if x.numel() == 0:
        return torch.zeros((), dtype=torch.bool, device=x.device)
    low, high = torch.aminmax(x.detach())
    return ~((low >= 0) & (high <= 1))  # NaN compares false, so it counts as out of range


def check_unit_range(x: torch.Tensor, where: str) -> None:
    """InputRangeError unless float x lies in [0, 1] (one host sync)."""
    if x.numel() and bool(out_of_range(x)):
        low, high = torch.aminmax(x.detach().float())
        raise InputRangeError(range_message(where, float(low), float(high)))


class RangeWatch:
    """Checks a stream of batches: the first `eager` on the spot, the rest on the device.

    `batch(x)` returns x as float (uint8 converted) after checking it; `finish()` raises
    if a later batch was out of range (one host sync for the whole loop).
    """

    def __init__(self, where: str, eager: int = EAGER_BATCHES):
        self.where = where
        self.eager = eager
        self.seen = 0
        self.late_bad: torch.Tensor | None = None
        self.late_first = 0

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        x = as_unit_float(x)
        self.seen += 1
        if self.seen <= self.eager:
            check_unit_range(x, f"{self.where}, batch {self.seen}")
        else:
            bad = out_of_range(x)
            if self.late_bad is None:
                self.late_bad, self.late_first = bad, self.seen
            else:
                self.late_bad = self.late_bad | bad
        return x

    def finish(self) -> None:
        if self.late_bad is not None and bool(self.late_bad):
            raise InputRangeError(range_message(f"{self.where}, a batch after batch {self.late_first - 1}"))


__all__ = [
    "ADVICE",
    "InputRangeError",
    "advice",
    "range_message",
    "as_unit_float",
    "out_of_range",
    "check_unit_range",
    "RangeWatch",
]
