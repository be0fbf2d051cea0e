"""Device settings of a run: precision, memory format, kernels, optimizer implementation.

Each setting is a config switch (`train.*`, `eval.amp`). "auto" means on for CUDA and off
elsewhere, so a plain `robustfair train` on a GPU gets the fast settings without asking and a
CPU run keeps PyTorch's defaults. `resolve_acceleration` turns the switches into the values
actually used on this device (an `Acceleration`), which the run records in `meta.json` and
`results.json` (key `acceleration`).

    amp              bf16 autocast around each training step (attacks and loss); the attack
                     objectives and the losses are computed in float32 (their inputs are cast)
    channels_last    model weights and training inputs in channels_last (NHWC) memory format
    tf32             TF32 tensor-core matmuls and convolutions for float32 work (CUDA only)
    cudnn_benchmark  cuDNN times its convolution algorithms once per shape and keeps the
                     fastest (CUDA only; fixed shapes, as here, make that pay)
    optimizer_impl   SGD implementation: fused (one kernel for all parameters, CUDA),
                     foreach (a few multi-tensor kernels) or for_loop (one op per parameter,
                     PyTorch's CPU default); the same update rule, rounding aside
    early_stop_attack  the early-stopped attacks' implementation (`attacks.early_stop`):
                     masked (fixed shapes, no host synchronisation, CUDA) or compact
                     (shrinking batch, less work on a CPU); both return the same points
    eval_amp         bf16 autocast in validation and the final evaluation; off by default,
                     since a robustness number should not depend on reduced precision

`backend_flags` sets the process-wide flags (TF32, cudnn.benchmark) for a block and
restores the previous values afterwards, so code running after `train()` is unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from robustfair.errors import ConfigError

AUTO = "auto"
OPTIMIZER_IMPLEMENTATIONS = ("fused", "foreach", "for_loop")
EARLY_STOP_VARIANTS = ("compact", "masked")


@dataclass(frozen=True)
class Acceleration:
    """The resolved device settings of a run (what was actually used)."""

    device: str
    amp: bool
    channels_last: bool
    tf32: bool
    cudnn_benchmark: bool
    optimizer_impl: str
    compile: bool
    compile_mode: str | None
    early_stop_attack: str
    eval_amp: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_switch(value: bool | str, device: torch.device, *, cuda_only: bool = False) -> bool:
    """True/False as given ("auto": True on CUDA); a CUDA-only flag is False elsewhere."""
    on = device.type == "cuda" if value == AUTO else bool(value)
    return on and (device.type == "cuda" or not cuda_only)


def resolve_acceleration(train: Any, evaluation: Any, device: torch.device) -> Acceleration:
    """The settings a run uses on `device`, from its `TrainConfig` and `EvalConfig`."""
    cuda = device.type == "cuda"
    optimizer = train.optimizer_impl if train.optimizer_impl != AUTO else ("fused" if cuda else "for_loop")
    early_stop = train.early_stop_attack if train.early_stop_attack != AUTO else ("masked" if cuda else "compact")
    return Acceleration(
        device=str(device),
        amp=resolve_switch(train.amp, device),
        channels_last=resolve_switch(train.channels_last, device),
        tf32=resolve_switch(train.tf32, device, cuda_only=True),
        cudnn_benchmark=resolve_switch(train.cudnn_benchmark, device, cuda_only=True),
        optimizer_impl=optimizer,
        compile=bool(train.compile),
        compile_mode=train.compile_mode if train.compile else None,
        early_stop_attack=early_stop,
        eval_amp=bool(evaluation.amp),
    )


@contextlib.contextmanager
def backend_flags(acceleration: Acceleration) -> Iterator[None]:
    """TF32 and cudnn.benchmark as `acceleration` says inside the block, restored afterwards.

    On a CPU run nothing is touched (both flags only concern CUDA kernels).
    """
    if not acceleration.device.startswith("cuda"):
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = acceleration.tf32
    torch.backends.cudnn.allow_tf32 = acceleration.tf32
    torch.backends.cudnn.benchmark = acceleration.cudnn_benchmark
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = saved


def prepare_model(model: nn.Module, acceleration: Acceleration) -> nn.Module:
    """The model in channels_last memory format when asked (in place; returns it)."""
    if acceleration.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def prepare_inputs(x: torch.Tensor, acceleration: Acceleration) -> torch.Tensor:
    """Image batches [B, C, H, W] in channels_last when asked; other inputs unchanged."""
    if acceleration.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on `device` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def build_sgd(
    parameters: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    implementation: str,
) -> torch.optim.SGD:
    """SGD with the chosen implementation (fused / foreach / for_loop); same update rule."""
    if implementation not in OPTIMIZER_IMPLEMENTATIONS:
        raise ConfigError(
            f"train.optimizer_impl: {implementation!r} is not allowed; valid values: "
            f"{', '.join((AUTO,) + OPTIMIZER_IMPLEMENTATIONS)}"
        )
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[implementation]
    try:
        return torch.optim.SGD(
            parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, **flags
        )
    except (RuntimeError, ValueError) as err:
        raise ConfigError(
            f"train.optimizer_impl: {implementation!r} is not available here "
            f"({str(err).splitlines()[0]}); use auto, foreach or for_loop"
        ) from None


__all__ = [
    "AUTO",
    "Acceleration",
    "OPTIMIZER_IMPLEMENTATIONS",
    "EARLY_STOP_VARIANTS",
    "resolve_switch",
    "resolve_acceleration",
    "backend_flags",
    "prepare_model",
    "prepare_inputs",
    "autocast",
    "build_sgd",
]
