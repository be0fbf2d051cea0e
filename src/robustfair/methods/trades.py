"""TRADES: Zhang et al., ICML 2019, "Theoretically Principled Trade-off between Robustness and Accuracy".

x' from x + 0.001 * N(0, I), K = 10 sign steps of 0.007 ascending sum_i KL(p(x_i) || p(x'_i))
(eval mode), projected to the L-inf ball (eps 0.031) and clamped to [0, 1]. Loss in train
mode: mean_i CE(f(x_i), y_i) + beta * (1/B) sum_i KL(p(x_i) || p(x'_i)), p(x) not detached.
beta = 6 by default (BAT's table also reports beta = 1).

The official code evaluates f(x) twice in train mode (once for CE, once inside the KL);
the gradients are identical to one shared forward, which is what this does; only the
BatchNorm running statistics see one update fewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks import pgd
from robustfair.losses import cross_entropy, trades_kl
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.typed_config import param


@dataclass(frozen=True)
class TRADESConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="perturbation budget (TRADES code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="attack step size (TRADES code: 0.007)")
    beta: float = param(6.0, low=0.0, help="weight of the KL robustness term")


def trades_adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps, step_size, steps: int) -> torch.Tensor:
    """The TRADES attack: KL-PGD from x + 0.001 * N(0, I). eps/step_size: float or [B]."""
    return pgd(crafting_model(model), x, y, eps=eps, step_size=step_size, steps=steps,
               loss="kl", start="normal", start_scale=0.001)


@dataclass
class TradesTerms:
    """Train-mode outputs of a TRADES-family loss: logits [B, C] of x and x', and the
    per-sample CE(f(x), y) and KL(p(x) || p(x')) [B] (gradients flow through both sides)."""

    logits: torch.Tensor
    logits_adv: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor

    def robust_accuracy(self, y: torch.Tensor) -> torch.Tensor:
        return (self.logits_adv.detach().argmax(1) == y).float().mean()


def trades_terms(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> TradesTerms:
    """f(x) then f(x') in the model's current (train) mode, as the TRADES code orders them."""
    logits = model(x)
    logits_adv = model(x_adv)
    return TradesTerms(logits, logits_adv, cross_entropy(logits, y), trades_kl(logits, logits_adv))


class TRADES(TrainingMethod):
    name = "trades"
    Config = TRADESConfig

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        x_adv = trades_adversarial(model, x, y, eps=c.eps, step_size=c.step_size, steps=c.steps)
        t = trades_terms(model, x, x_adv, y)
        loss = t.ce.mean() + c.beta * t.kl.sum() / x.shape[0]
        return MethodOutput(loss, {"ce": t.ce.detach().mean(), "kl": t.kl.detach().mean(),
                                   "train_robust_acc": t.robust_accuracy(y)})
