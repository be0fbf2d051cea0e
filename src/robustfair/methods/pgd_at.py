"""PGD-AT: Madry et al., ICLR 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks".

x' = PGD-K on cross-entropy from a uniform start in the L-inf eps-ball (eval mode while
crafting, BatchNorm frozen), then loss = mean_i CE(f(x'_i), y_i) in train mode.
Defaults: eps 8/255, step 2/255, K = 10 (METHODS.md, Baselines).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks import pgd
from robustfair.losses import cross_entropy
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.typed_config import param


@dataclass(frozen=True)
class PGDATConfig(MethodConfig):
    start: str = param("uniform", choices=("uniform", "normal", "none"), help="random start of the attack")


class PGDAT(TrainingMethod):
    name = "pgd_at"
    Config = PGDATConfig

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        x_adv = pgd(
            crafting_model(model), x, y, eps=c.eps, step_size=c.step_size, steps=c.steps, loss="ce", start=c.start
        )
        logits_adv = model(x_adv)
        ce = cross_entropy(logits_adv, y)
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(ce.mean(), {"ce_adv": ce.detach().mean(), "train_robust_acc": robust})
