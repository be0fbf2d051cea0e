"""The contract every training method implements.

The engine's one training loop calls, for each batch, `method.loss(model, x, y)`, and at
each epoch boundary `method.on_epoch_start(ctx)` / `method.on_epoch_end(ctx)`. It never
branches on the method's name. A method crafts its own adversarial examples (with
`robustfair.attacks`, on `crafting_model(model)`, which the attacks put in eval mode and
restore), and keeps every piece of state that must survive a resume in `state_dict()`.

Shapes: x is [B, C, H, W] (or [B, D]) float in [0, 1]; y is [B] int64.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robustfair.typed_config import param


@dataclass
class MethodOutput:
    """What `TrainingMethod.loss` returns.

    loss: scalar tensor to back-propagate.
    logs: scalar tensors (detached) averaged over the epoch by the engine, e.g.
          {"ce": ..., "kl": ...}. Keep them tensors: no host synchronisation per step.
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class EpochContext:
    """What the engine hands to epoch hooks.

    epoch: 0-based index of the epoch about to start (on_epoch_start) or just finished.
    model: the unwrapped model (never the DDP wrapper); its mode is restored by the caller.
    val_loader: iterable of (x, y) batches of the validation split, or None when the
        run has no validation split.
    evaluate(model, loader, attack, **attack_overrides) -> robustfair.metrics.ClasswiseResult:
        class-wise evaluation under a named attack (e.g. "pgd20"), reduced across ranks.
    all_reduce_sum(tensor) -> tensor summed over distributed ranks (identity on one process).
    """

    epoch: int
    num_epochs: int
    model: nn.Module
    device: torch.device
    num_classes: int
    val_loader: Iterable | None
    evaluate: Callable[..., Any]
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    eps: float = 8 / 255


@dataclass(frozen=True)
class MethodConfig:
    """Fields shared by every method: the training threat model (L-inf, pixel units)."""

    eps: float = param(8 / 255, low=0.0, help="perturbation budget in pixel units ([0, 1] scale)")
    step_size: float = param(2 / 255, low=0.0, low_open=True, help="attack step size")
    steps: int = param(10, low=0, help="attack steps while training")


class TrainingMethod:
    """Base class: subclasses set `name`, `Config` and implement `loss`.

    Subclass docstrings open with the paper's title and state the defaults.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    #: True for methods meant to fine-tune another run's checkpoint (FRL, FAAL).
    hot_start: ClassVar[bool] = False

    def __init__(self, config: Any, *, num_classes: int):
        self.config = config
        self.num_classes = num_classes
        self.epoch = 0
        self.num_epochs = 1

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        raise NotImplementedError

    def on_epoch_start(self, ctx: EpochContext) -> Mapping[str, Any]:
        """Called before each epoch; returns values to log (floats or lists of floats)."""
        self.epoch = ctx.epoch
        self.num_epochs = ctx.num_epochs
        return {}

    def on_epoch_end(self, ctx: EpochContext) -> Mapping[str, Any]:
        """Called after each epoch's last step; returns values to log."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values (no objects) needed to resume."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


def crafting_model(model: nn.Module) -> nn.Module:
    """The module attacks should run on: the DDP wrapper's inner module, or `model` itself.

    Crafting through the DDP wrapper would arm its gradient reducer without a parameter
    backward; crafting needs input gradients only.
    """
    return getattr(model, "module", model)


def config_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
