"""Training steps the GPU benchmarks time: robustfair's (with chosen device settings) and
the authors'-style step; data sources feeding them; target lines.

`library_step` runs exactly what `robustfair train` runs per batch (engine/epoch_loop.py):
inputs prepared by the run's `Acceleration`, `method.loss` under its autocast, backward, the
optimizer built by `build_sgd`, with the TF32 / cudnn flags and the early-stopping variant
set for the duration of the step (so variants can be interleaved round by round).

`authors_style_pgd_at_step` is PGD-AT written the way the authors' repositories write it:
a `torch.utils.data.DataLoader` with per-image transforms in worker processes and pinned
memory, batches copied to the GPU each step, fp32 with PyTorch's default flags, eager, the
attack in eval mode with `torch.autograd.grad` input gradients (the TRADES repository's
`pgd` pattern), then `torch.optim.SGD` with PyTorch's default implementation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustfair.attacks import early_stop_variant
from robustfair.data import ArrayDataset, DeviceLoader
from robustfair.engine.accelerator import (
    Acceleration,
    autocast,
    backend_flags,
    build_sgd,
    prepare_inputs,
    prepare_model,
    resolve_acceleration,
)
from robustfair.engine.config import EvalConfig, TrainConfig
from robustfair.methods import METHODS


def acceleration(device: torch.device, **switches: Any) -> Acceleration:
    """The run settings `robustfair train` resolves on `device` with these `train.*` switches."""
    return resolve_acceleration(TrainConfig(**switches), EvalConfig(), device)


def all_off(device: torch.device) -> Acceleration:
    """Every device setting off: plain fp32 (no TF32), NCHW, for-loop SGD, compact early stop."""
    return acceleration(
        device,
        amp=False,
        channels_last=False,
        tf32=False,
        cudnn_benchmark=False,
        optimizer_impl="for_loop",
        early_stop_attack="compact",
    )


def cycle(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A DeviceLoader's batches, epoch after epoch, forever."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def device_batches(
    x_u8: np.ndarray, labels: np.ndarray, batch: int, device: torch.device, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Crop/flip batches from robustfair's DeviceLoader (data resident on the device)."""
    dataset = ArrayDataset(
        np.ascontiguousarray(x_u8), np.asarray(labels, dtype=np.int64), [str(c) for c in range(10)], "benchmark"
    )
    return cycle(
        DeviceLoader(dataset, batch, shuffle=True, augment="crop_flip", device=device, seed=seed, drop_last=True)
    )


def dataloader_batches(
    x_u8: np.ndarray, labels: np.ndarray, batch: int, device: torch.device, workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Crop/flip batches from a DataLoader with per-image transforms, copied to `device`."""
    from torch.utils.data import DataLoader

    from benchmarks.data_pipeline import PerImageAugmentDataset

    dataset = PerImageAugmentDataset(np.ascontiguousarray(x_u8), np.asarray(labels, dtype=np.int64), padding=4)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def library_step(
    method_name: str,
    base: nn.Module,
    batches: Iterator,
    acc: Acceleration,
    device: torch.device,
    *,
    compile_mode: str | None = None,
    lr: float = 0.0,
) -> Callable[[], None]:
    """One `robustfair train` step of `method_name` (default config) on the next batch.

    lr 0 by default (with BatchNorm momentum 0 on `base`, see
    `common.freeze_batchnorm_statistics`): the step does all its work, but every round
    times the same problem. compile_mode: None (eager), "default" or "reduce-overhead".
    """
    model = prepare_model(copy.deepcopy(base).to(device), acc)
    optimizer = build_sgd(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=False, implementation=acc.optimizer_impl
    )
    runner = (
        model
        if compile_mode is None
        else torch.compile(model, mode=None if compile_mode == "default" else compile_mode)
    )
    method = METHODS[method_name](METHODS[method_name].Config(), num_classes=10)

    def step() -> None:
        x, y = next(batches)
        with backend_flags(acc), early_stop_variant(acc.early_stop_attack):
            x = prepare_inputs(x, acc)
            model.train()
            with autocast(device, acc.amp):
                loss = method.loss(runner, x, y).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return step


def authors_style_pgd_at_step(
    base: nn.Module,
    batches: Iterator,
    device: torch.device,
    *,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 10,
    lr: float = 0.0,
) -> Callable[[], None]:
    """PGD-10 AT as the authors' repositories write it (module docstring), on the next batch."""
    model = copy.deepcopy(base).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        x, y = next(batches)
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
        # PyTorch's defaults: no TF32 for matmuls, TF32 allowed in cuDNN convolutions, no autotuning.
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
        torch.backends.cudnn.benchmark = False
        try:
            model.eval()
            x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0.0, 1.0)
            for _ in range(steps):
                x_adv.requires_grad_()
                with torch.enable_grad():
                    loss = F.cross_entropy(model(x_adv), y)
                grad = torch.autograd.grad(loss, [x_adv])[0]
                x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
            model.train()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x_adv), y)
            loss.backward()
            optimizer.step()
        finally:
            (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = (
                saved
            )

    return step


def repeat(step: Callable[[], None], times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            step()

    return run


def target_line(
    description: str,
    value: float,
    *,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    unit: str = "",
    judged: bool = True,
) -> dict[str, Any]:
    """Print and return one explicit target line: "target: ...: PASS (value)" / FAIL / not judged."""
    if at_least is not None:
        passed, rule = value >= at_least, f">= {at_least:g}"
    elif at_most is not None:
        passed, rule = value <= at_most, f"<= {at_most:g}"
    else:
        passed, rule = value < below, f"< {below:g}"
    verdict = ("PASS" if passed else "FAIL") if judged else "not judged (smoke test on the CPU)"
    print(f"target: {description} {rule}{unit}: {verdict} (measured {value:,.3f}{unit})", flush=True)
    return {"target": f"{description} {rule}{unit}", "value": value, "met": bool(passed) if judged else None}
