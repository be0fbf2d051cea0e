"""ERM: standard training, cross-entropy on clean inputs (the baseline without attack)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.losses import cross_entropy
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod


@dataclass(frozen=True)
class ERMConfig(MethodConfig):
    """ERM crafts nothing; eps/step_size/steps only set the evaluation threat model."""


class ERM(TrainingMethod):
    """Empirical risk minimisation: loss = mean_i CE(f(x_i), y_i)."""

    name = "erm"
    Config = ERMConfig

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        logits = model(x)
        ce = cross_entropy(logits, y)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return MethodOutput(ce.mean(), {"ce": ce.detach().mean(), "train_acc": acc})
