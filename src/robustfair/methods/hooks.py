"""Epoch hooks in your own training loop: the context the engine builds, and a loop helper.

Some methods adapt between epochs (FRL's multipliers, CFA's calibration and weight
average, WAT's Hedge weights, DAFA's class weights; FAT, GAIRAT and the reweighting
baselines follow the epoch count). The engine calls `method.on_epoch_start(ctx)` before
each epoch's first step and `method.on_epoch_end(ctx)` after its last one; in your own
loop, `epochs(...)` does the same:

    for epoch in robustfair.methods.epochs(method, model, 10, val_data=(x_val, y_val)):
        model.train()
        for x, y in loader:
            ...  # method.loss(model, x, y), backward, optimiser step

`epoch_context(...)` builds the `EpochContext` for calling the hooks yourself. The engine
builds its contexts with the same function, so a hand loop and a run see the same
validation batches and the same evaluation (attack budget: the method's eps, PGD step
eps/4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from robustfair.methods.base import EpochContext, TrainingMethod


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def validation_batches(val_data: Any, device: torch.device, batch_size: int = 500) -> Iterable | None:
    """Re-iterable (x float in [0, 1], y) batches on `device` of val_data (tensors, a loader, a dataset).

    A DataLoader (or any re-iterable of batches other than a dataset) is used as it is;
    (x, y) tensors, arrays and map-style datasets are read once into memory.
    """
    from torch.utils.data import DataLoader

    from robustfair.data import ArrayDataset, DeviceLoader, as_array_dataset

    if val_data is None:
        return None
    if isinstance(val_data, DataLoader):
        return val_data
    dataset = val_data if isinstance(val_data, ArrayDataset) else as_array_dataset(val_data, what="val_data")
    return DeviceLoader(dataset, batch_size, shuffle=False, device=device)


def epoch_context(
    model: nn.Module,
    *,
    epoch: int,
    num_epochs: int,
    num_classes: int,
    eps: float,
    val_loader: Iterable | None = None,
    device: torch.device | str | None = None,
    classes: list[str] | None = None,
    dataset_name: str = "validation",
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = _identity,
    norm: str = "linf",
    seed: int | None = 0,
    amp: bool = False,
) -> EpochContext:
    """The EpochContext for epoch `epoch` (0-based) of `num_epochs`.

    model: the unwrapped model (not a DDP wrapper). val_loader: (x, y) batches of the
    validation split, float in [0, 1], or None. eps: the budget of `ctx.evaluate`'s attacks.
    all_reduce_sum: sum over distributed ranks (identity in one process). norm: the run's
    threat model (its eps applies to attacks of that norm only); seed: every random draw of
    `ctx.evaluate`'s attacks comes from it (the run's eval.seed); amp: bf16 autocast in
    those evaluations (the run's eval.amp; fp32 by default).
    """
    device = torch.device(device) if device is not None else _model_device(model)

    def evaluate(eval_model, loader, attack="pgd20", **overrides):
        from robustfair.engine.accelerator import autocast
        from robustfair.engine.run_evaluation import eval_attack_overrides
        from robustfair.metrics import evaluate_classwise

        clean = attack in (None, "none", "clean")
        budget = {} if clean else eval_attack_overrides(attack, eps, norm)
        budget.update(overrides)
        with autocast(device, amp):
            return evaluate_classwise(
                eval_model,
                loader,
                attack=None if clean else attack,
                num_classes=num_classes,
                classes=classes,
                device=device,
                dataset_name=dataset_name,
                attack_overrides=budget,
                reduce=all_reduce_sum,
                seed=seed,
                progress=False,
            )

    return EpochContext(
        epoch=epoch,
        num_epochs=num_epochs,
        model=model,
        device=device,
        num_classes=num_classes,
        val_loader=val_loader,
        evaluate=evaluate,
        all_reduce_sum=all_reduce_sum,
        eps=eps,
    )


def epochs(
    method: TrainingMethod,
    model: nn.Module,
    num_epochs: int,
    *,
    val_data: Any = None,
    start_epoch: int = 0,
    eps: float | None = None,
    batch_size: int = 500,
    log: Callable[[int, dict[str, Any]], None] | None = None,
) -> Iterator[int]:
    """Yield epochs start_epoch..num_epochs-1, calling the method's hooks around each.

    Before yielding epoch e: `method.on_epoch_start(ctx)`; when the loop body has finished
    (the next iteration is asked for): `method.on_epoch_end(ctx)`. Leaving the loop early
    (break) skips that epoch's end hook. The model's train/eval mode is restored after
    every hook. val_data: the validation split (tensors, arrays, a dataset or a DataLoader
    of (x, y) in [0, 1]) that FRL, WAT, DAFA (similarity_source=val) and CFA (fawa) need;
    never the test set. eps: attack budget of the hooks' evaluations (default: the
    method's eps). log(epoch, values): receives what the hooks return, when they return
    anything.
    """
    device = _model_device(model)
    val_loader = validation_batches(val_data, device, batch_size)
    budget = float(eps if eps is not None else getattr(method.config, "eps", 8 / 255))
    for epoch in range(start_epoch, num_epochs):
        ctx = epoch_context(
            model,
            epoch=epoch,
            num_epochs=num_epochs,
            num_classes=method.num_classes,
            eps=budget,
            val_loader=val_loader,
            device=device,
        )
        _call_hook(method.on_epoch_start, ctx, model, epoch, log)
        yield epoch
        _call_hook(method.on_epoch_end, ctx, model, epoch, log)


def _call_hook(
    hook: Callable[[EpochContext], Any],
    ctx: EpochContext,
    model: nn.Module,
    epoch: int,
    log: Callable[[int, dict[str, Any]], None] | None,
) -> None:
    was_training = model.training
    try:
        values = hook(ctx)
    finally:
        model.train(was_training)
    if log is not None and values:
        log(epoch, dict(values))


__all__ = ["epoch_context", "epochs", "validation_batches"]
