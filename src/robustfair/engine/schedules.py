"""Per-epoch learning-rate schedules of the papers (TRADES/BAT piecewise, MultiStep, cosine)."""

from __future__ import annotations

import math

from robustfair.engine.config import ScheduleConfig


def lr_at_epoch(schedule: ScheduleConfig, base_lr: float, epoch: int, num_epochs: int) -> float:
    """Learning rate used throughout 0-based `epoch`.

    Milestones count epochs from 1, as the papers and their code do: TRADES' code sets
    lr *= 0.1 `if epoch >= 75` with epochs numbered 1..N, so milestone 75 means the 75th
    epoch (0-based index 74) is the first one at the lower rate.
    multistep: base * gamma ** (number of milestones reached).
    piecewise: base * factors[i] from milestone i on.
    cosine: from base to min_lr over the epochs after warm-up.
    """
    number = epoch + 1  # 1-based epoch number
    if schedule.warmup_epochs and epoch < schedule.warmup_epochs:
        return base_lr * (epoch + 1) / schedule.warmup_epochs
    if schedule.name == "constant":
        return base_lr
    if schedule.name == "multistep":
        passed = sum(1 for m in schedule.milestones if number >= m)
        return base_lr * schedule.gamma**passed
    if schedule.name == "piecewise":
        factor = 1.0
        for milestone, f in zip(schedule.milestones, schedule.factors):
            if number >= milestone:
                factor = f
        return base_lr * factor
    if schedule.name == "cosine":
        span = max(1, num_epochs - schedule.warmup_epochs)
        t = min(1.0, (epoch - schedule.warmup_epochs) / span)
        return schedule.min_lr + 0.5 * (base_lr - schedule.min_lr) * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule.name!r}")


def eps_scale_at_epoch(epoch: int, warmup_epochs: int) -> float:
    """Factor on the training attack's eps and step in 0-based `epoch`: (e + 1) / (N + 1)
    during a warm-up of N epochs (N = 2: 1/3, 2/3, then 1), else 1.

    A curriculum on the budget, for small models that otherwise sit at chance under a large
    eps from the first step (MNIST at 0.3; Madry et al. 2018, section 5, on capacity).
    """
    if warmup_epochs and epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    return 1.0
