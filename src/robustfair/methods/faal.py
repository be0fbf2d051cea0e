"""FAAL: Zhang et al., CVPR 2024, "Towards Fairness-Aware Adversarial Learning".

Fairness-aware adversarial learning fine-tunes an adversarially trained model (a hot
start, 2 epochs) with a distributionally robust objective over the class distribution:
per batch, the class weights p maximise `sum_c p_c m_c` over the simplex subject to
`KL(U || p) <= r` (U uniform over the classes present in the batch, r = 0.5), and the loss
is `sum_c p_c L_c`, L_c the mean per-sample loss of class c in the batch. p is treated as
a constant (Danskin: the gradient of the inner max is the gradient at its maximiser).

m_c (score): "margin" (default, METHODS.md): class c's mean adversarial Carlini-Wagner
margin `max_{j != y} z_j - z_y` (larger: more vulnerable); "loss": L_c itself, the
textbook DRO inner problem. p is solved exactly by a one-dimensional bisection on the dual
variable (`robustfair.losses.peers.faal_class_weights`), with no convex-solver dependency.

Base: "at" (default): x' = CE-PGD-10, step 2/255, uniform start, eps 8/255; per-sample
loss CE(f(x'), y). "trades": x' from the TRADES attack, per-sample loss
CE(f(x), y) + beta KL(p(x) || p(x')). The authors' code was not available to this
project; this follows METHODS.md and the paper's description.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks import pgd
from robustfair.losses import cross_entropy, margin
from robustfair.losses.peers import classwise_counts, classwise_sums, faal_class_weights
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.trades import trades_adversarial, trades_terms
from robustfair.typed_config import param


@dataclass(frozen=True)
class FAALConfig(MethodConfig):
    radius: float = param(0.5, low=0.0, help="r: radius of the KL(U || p) ball of class distributions")
    score: str = param("margin", choices=("margin", "loss"), help="class statistic m_c the worst case maximises")
    base: str = param("at", choices=("at", "trades"), help="per-sample adversarial loss")
    beta: float = param(6.0, low=0.0, help="TRADES beta (base trades)")
    start: str = param("uniform", choices=("uniform", "normal", "none"), help="PGD start (base at)")


class FAAL(TrainingMethod):
    """Fairness-aware adversarial learning (`faal`), a fine-tune of an AT model."""

    name = "faal"
    Config = FAALConfig
    hot_start = True

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        logs = {}
        if c.base == "at":
            x_adv = pgd(crafting_model(model), x, y, eps=c.eps, step_size=c.step_size, steps=c.steps,
                        loss="ce", start=c.start)
            logits_adv = model(x_adv)
            per_sample = cross_entropy(logits_adv, y)
            logs["ce_adv"] = per_sample.detach().mean()
        else:
            x_adv = trades_adversarial(model, x, y, eps=c.eps, step_size=c.step_size, steps=c.steps)
            t = trades_terms(model, x, x_adv, y)
            logits_adv, ce, kl = t.logits_adv, t.ce, t.kl
            per_sample = ce + c.beta * kl
            logs.update(ce=ce.detach().mean(), kl=kl.detach().mean())
        counts = classwise_counts(y, self.num_classes)
        present = counts > 0
        class_loss = classwise_sums(per_sample, y, self.num_classes) / counts.clamp(min=1)
        if c.score == "margin":
            scores = classwise_sums(margin(logits_adv.detach(), y), y, self.num_classes) / counts.clamp(min=1)
        else:
            scores = class_loss.detach()
        weights = faal_class_weights(scores, c.radius, present).to(class_loss.dtype)
        logs["class_weight_max"] = weights.max()
        logs["train_robust_acc"] = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput((weights * class_loss).sum(), logs)
