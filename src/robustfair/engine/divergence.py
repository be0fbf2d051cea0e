"""Detecting a run that has diverged (non-finite loss or weights) and saying where.

The trainer records the first step of an epoch whose loss is not finite in a device
tensor (no host synchronisation per step) and reads it once at the end of the epoch;
then it checks every floating parameter and buffer. A diverged epoch is never saved:
the last good checkpoint stays in place and the run can be resumed with a lower
learning rate, or, when a setting is far beyond its default (`method.beta=1e300`), with
a moderate value of that setting, which the message names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from robustfair.errors import TrainingDivergedError

NO_BAD_STEP = -1


def mark_first_bad_step(first_bad: torch.Tensor, loss: torch.Tensor, step: int) -> torch.Tensor:
    """`first_bad` (int64 scalar, NO_BAD_STEP until set) updated with `step` if `loss` is not finite.

    Stays on the device: no `.item()`, so the training loop never waits for the GPU.
    """
    bad_now = ~torch.isfinite(loss.detach()).all()
    return torch.where((first_bad == NO_BAD_STEP) & bad_now, torch.full_like(first_bad, step), first_bad)


def first_bad_step_across_ranks(first_bad: torch.Tensor) -> int:
    """The earliest bad step over all ranks (0-based), or NO_BAD_STEP; one host sync."""
    if dist.is_available() and dist.is_initialized():
        # MIN over ranks with "no bad step" mapped above every real step.
        big = torch.iinfo(torch.int64).max
        value = torch.where(first_bad == NO_BAD_STEP, torch.full_like(first_bad, big), first_bad).clone()
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        step = int(value.item())
        return NO_BAD_STEP if step == big else step
    return int(first_bad.item())


def nonfinite_tensors(module: nn.Module) -> list[str]:
    """Names of the floating parameters and buffers of `module` holding a NaN or an infinity."""
    named = [
        (name, t) for name, t in module.state_dict().items() if isinstance(t, torch.Tensor) and t.is_floating_point()
    ]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()  # one host sync
    return [name for (name, _), ok in zip(named, finite.tolist()) if not ok]


# A setting this many times its default (or this large where the default is 0) is named as the
# likely cause of a divergence, instead of the generic advice to lower the learning rate.
EXTREME_FACTOR = 1e4
EXTREME_ABSOLUTE = 1e6


def _numeric_fields(obj: Any, prefix: str) -> list[tuple[str, float, float | None]]:
    """(dotted name, value, default) of the float-valued fields of a config dataclass."""
    rows = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, float):
            continue
        default = f.default if isinstance(f.default, (int, float)) and not isinstance(f.default, bool) else None
        rows.append((f"{prefix}.{f.name}", value, default))
    return rows


def extreme_settings(config: Any) -> list[str]:
    """'method.beta=1e+300 (default 6.0)' for each float setting of the run far beyond its default:
    the settings a divergence most likely comes from (largest ratio first)."""
    candidates = _numeric_fields(config.method_config(), "method")
    for section in ("optim", "schedule", "train"):
        candidates += _numeric_fields(getattr(config, section), section)
    flagged = []
    for name, value, default in candidates:
        if not math.isfinite(value):
            continue
        scale = abs(default) if default else 0.0
        if abs(value) >= EXTREME_ABSOLUTE or (scale and abs(value) >= EXTREME_FACTOR * scale):
            flagged.append(
                (
                    abs(value) / scale if scale else abs(value),
                    f"{name}={value:g}" + (f" (default {default:g})" if default is not None else ""),
                )
            )
    return [text for _, text in sorted(flagged, key=lambda pair: -pair[0])]


def diverged_error(
    *,
    what: str,
    epoch: int,
    where: str,
    last_good: Path | None,
    run_dir: Path,
    last_good_epoch: int | None = None,
    suspects: Sequence[str] = (),
) -> TrainingDivergedError:
    """The one-line error for a diverged run.

    what: "loss" or "weights (conv1.weight, ...)"; epoch: 1-based; where: e.g. "step 3 of 21".
    last_good: the checkpoint that is kept (None when no epoch completed yet). suspects:
    extreme settings (`extreme_settings`); the advice names the first instead of the learning rate.
    """
    if last_good is not None and last_good.is_file():
        kept = (
            f"the last good checkpoint {last_good}"
            + (f" (after epoch {last_good_epoch})" if last_good_epoch is not None else "")
            + " is kept"
        )
    else:
        kept = "no epoch had completed, so there is no checkpoint to keep"
    head = f"non-finite {what} at epoch {epoch}, {where}; the weights of this epoch were not saved and {kept}; "
    if suspects:
        field = suspects[0].split("=", 1)[0]
        also = f" (also extreme: {', '.join(suspects[1:3])})" if len(suspects) > 1 else ""
        return TrainingDivergedError(
            head + f"the likely cause is {suspects[0]}{also}: continue with a moderate value: "
            f"robustfair train --resume {run_dir} {field}=<moderate>"
        )
    return TrainingDivergedError(
        head + f"continue with a lower learning rate: robustfair train --resume {run_dir} optim.lr=<lower>"
    )
