"""One training epoch: `method.loss` per batch, an optimiser step, epoch-mean logs.

The loop never branches on the method's name and never reads a value back to the host
inside the step loop: losses and logged scalars are summed on the device, and the first
non-finite loss is marked on the device (`divergence.mark_first_bad_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustfair.data.input_range import check_unit_range
from robustfair.engine import distributed as dist_utils
from robustfair.engine.accelerator import Acceleration, autocast, prepare_inputs, resolve_acceleration
from robustfair.engine.config import EvalConfig, TrainConfig
from robustfair.engine.divergence import NO_BAD_STEP, first_bad_step_across_ranks, mark_first_bad_step
from robustfair.engine.progress import Progress
from robustfair.methods import TrainingMethod


@dataclass
class EpochOutcome:
    """Epoch means of the loss and the method's logged scalars; `bad_step` is the 0-based
    step of the first non-finite loss on any rank (NO_BAD_STEP when none)."""

    logs: dict[str, float]
    bad_step: int
    steps: int


def run_epoch(
    *,
    model: nn.Module,
    parameters,
    method: TrainingMethod,
    optimizer: torch.optim.Optimizer,
    loader,
    cfg: TrainConfig,
    device: torch.device,
    epoch: int,
    world_size: int,
    show_progress: bool,
    acceleration: Acceleration | None = None,
) -> EpochOutcome:
    """Train `model` for one pass of `loader` (already set to this epoch).

    acceleration: the run's resolved device settings (bf16 autocast of the step,
    channels_last inputs); resolved from `cfg` for `device` when None.
    """
    if acceleration is None:
        acceleration = resolve_acceleration(cfg, EvalConfig(), device)
    parameters = list(parameters)  # a generator would be spent by the first clip, leaving later steps unclipped
    model.train()
    sums: dict[str, torch.Tensor] = {}
    first_bad = torch.tensor(NO_BAD_STEP, device=device)
    seen = 0
    progress = Progress(len(loader), f"epoch {epoch + 1}/{cfg.epochs}", enabled=show_progress)
    for step, (x, y) in enumerate(loader):
        if step == 0:  # the input contract, one host sync per epoch (the data were checked when loaded)
            check_unit_range(x, f"training data, epoch {epoch + 1}")
        x = prepare_inputs(x, acceleration)
        with autocast(device, acceleration.amp):  # the attack and the loss; backward and step outside
            out = method.loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip)
        optimizer.step()
        loss = out.loss.detach()
        first_bad = mark_first_bad_step(first_bad, loss, step)
        batch = x.shape[0]
        seen += batch
        for key, value in {"loss": loss, **out.logs}.items():
            value = value.detach().float() * batch
            sums[key] = sums[key] + value if key in sums else value
        if step % cfg.log_every == 0:
            progress.update(step + 1, batch * world_size)
        else:
            progress.items += batch * world_size
    rate = progress.close()
    bad_step = first_bad_step_across_ranks(first_bad)
    total = torch.tensor([float(seen)], device=device)
    keys = sorted(sums)
    stacked = torch.stack([sums[k].reshape(()) for k in keys]) if keys else torch.zeros(0, device=device)
    stacked = dist_utils.all_reduce_sum(stacked)
    total = dist_utils.all_reduce_sum(total)
    logs = {k: float(v) / float(total.item()) for k, v in zip(keys, stacked.tolist())}
    logs["images_per_s"] = rate
    return EpochOutcome(logs=logs, bad_step=bad_step, steps=len(loader))


def to_loggable(value: Any) -> Any:
    """Tensors -> floats or lists, recursively, for metrics.jsonl."""
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {k: to_loggable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_loggable(v) for v in value]
    return value


def epoch_line(record: dict[str, Any]) -> str:
    """The one progress line printed after each epoch."""
    parts = [f"epoch {record['epoch']}", f"lr {record['lr']:.4g}", f"loss {record.get('loss', float('nan')):.4f}"]
    if "val" in record:
        s = record["val"]["summary"]
        parts.append(f"val avg/worst rob err {s['avg_rob_err']:.1f}/{s['worst_rob_err']:.1f}%")
    parts.append(f"{record.get('images_per_s', 0):.0f} img/s")
    return " | ".join(parts)


__all__ = ["EpochOutcome", "run_epoch", "to_loggable", "epoch_line"]
