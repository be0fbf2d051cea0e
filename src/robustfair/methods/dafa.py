"""DAFA: Lee et al., ICLR 2024, "DAFA: Distance-Aware Fair Adversarial Training".

TRADES for `warmup_epochs` epochs (70 of 110); during the last warm-up epoch the softmax
of every training sample's adversarial logits (the train-mode loss forward, as the
official `trades_loss` stores them in `memory_dict`) is averaged per true class into the
class-similarity matrix p ([C, C], p_ij = mean probability of class j over class i's
examples). From it, once, fixed class weights W (`robustfair.losses.peers.
dafa_class_weights`), used for the rest of training:
- per-sample attack budget and step `W_y * eps`, `W_y * step_size`;
- loss `mean_i W_{y_i} CE(f(x_i), y_i) + beta (1/B) sum_i KL(p(x_i) || p(x'_i))`
  (only the clean CE term is weighted).
Attack: TRADES (x + 0.001 N(0, I), not clamped to [0, 1] before the first gradient, as in
the code; K = 10 KL sign steps, eps 0.031, step 0.007), beta 6, lambda 1 (CIFAR-10), as the
official `scripts/trades_dafa.sh` and `arguments.py`. Train-mode forwards in the code's
order, f(x') then f(x) (`forward_order: adv_clean`); the KL is the code's
`kl_div(log_softmax(f(x')), softmax(f(x)))`.

Weight rule: the official `calculate_class_weights` subtracts `lambda p_ji p_ii` when
class i is the easier one since rucy74/DAFA@74657cd (September 2024), the paper's formula
(and METHODS.md), which keeps the total weight at C: `weight_rule: code` (default; `paper`
names the same rule). Before that commit the code subtracted `lambda p_ij p_jj`:
`weight_rule: early_code`. similarity_source "val" computes p on the validation split's
TRADES adversarial examples (eval mode) at the end of the warm-up instead. A weight <= 0
(possible only for extreme similarity matrices) would give a class no attack; budgets are
clamped at 0.

Checked side by side against rucy74/DAFA@c60ba8352d712c6108480a2ce7e7fa7abf30b48a
(`losses.py` `trades_loss`, `utils.py` `calculate_class_weights`) with the same class
weights and start noise on a small BatchNorm CNN: bit-identical adversarial points, the
same loss and class weights to float rounding, identical BatchNorm running statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustfair.attacks import crafting_mode
from robustfair.errors import ConfigError
from robustfair.losses.peers import DAFA_RULES, classwise_counts, classwise_sums, dafa_class_weights
from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod
from robustfair.methods.trades import FORWARD_ORDERS, trades_adversarial, trades_terms
from robustfair.typed_config import param


@dataclass(frozen=True)
class DAFAConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="base perturbation budget (DAFA code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="base attack step size (DAFA code: 0.007)")
    beta: float = param(6.0, low=0.0, help="TRADES beta")
    lam: float = param(1.0, low=0.0, help="lambda, the scale of the class-weight adjustment (CIFAR-10: 1)")
    warmup_epochs: int = param(70, low=1, help="TRADES epochs before the class weights apply")
    weight_rule: str = param(
        "code",
        choices=DAFA_RULES,
        help="code (= paper): the current official weights; early_code: the code before 2024-09",
    )
    similarity_source: str = param(
        "train", choices=("train", "val"), help="adversarial examples the class similarity is measured on"
    )
    forward_order: str = param(
        "adv_clean",
        choices=FORWARD_ORDERS,
        help="train-mode forwards per step (BatchNorm statistics follow them): adv_clean = the code's",
    )


class DAFA(TrainingMethod):
    """Distance-aware fair adversarial training (`dafa`); see the module docstring."""

    name = "dafa"
    Config = DAFAConfig

    def __init__(self, config: Any, *, num_classes: int):
        super().__init__(config, num_classes=num_classes)
        self.class_weights: torch.Tensor | None = None  # [C], set once after the warm-up
        self._prob_sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None

    def recording(self) -> bool:
        """Whether this epoch measures the class similarity on the training examples."""
        return self.config.similarity_source == "train" and self.epoch == self.config.warmup_epochs - 1

    def _weights_on(self, device: torch.device) -> torch.Tensor:
        if self.class_weights.device != device:
            self.class_weights = self.class_weights.to(device)  # once after a resume
        return self.class_weights

    def _record(self, logits_adv: torch.Tensor, y: torch.Tensor) -> None:
        if self._prob_sums is None or self._prob_sums.device != y.device:
            self._prob_sums = torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64, device=y.device)
            self._counts = torch.zeros(self.num_classes, dtype=torch.float64, device=y.device)
        probs = F.softmax(logits_adv.detach().float(), dim=1).double()
        self._prob_sums += classwise_sums(probs, y, self.num_classes)
        self._counts += classwise_counts(y, self.num_classes, torch.float64)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        if self.class_weights is None:
            weight = None
            eps, step = c.eps, c.step_size
        else:
            weight = self._weights_on(x.device)[y]
            eps, step = (weight * c.eps).clamp(min=0), (weight * c.step_size).clamp(min=0)
        x_adv = trades_adversarial(model, x, y, eps=eps, step_size=step, steps=c.steps)
        t = trades_terms(model, x, x_adv, y, c.forward_order)
        logits_adv, ce, kl = t.logits_adv, t.ce, t.kl
        natural = ce.mean() if weight is None else (ce * weight).mean()
        loss = natural + c.beta * kl.sum() / x.shape[0]
        if self.recording():
            self._record(logits_adv, y)
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(loss, {"ce": ce.detach().mean(), "kl": kl.detach().mean(), "train_robust_acc": robust})

    def on_epoch_start(self, ctx: EpochContext) -> Mapping[str, Any]:
        super().on_epoch_start(ctx)
        self._prob_sums = self._counts = None
        return {}

    def _validation_similarity(self, ctx: EpochContext) -> None:
        if ctx.val_loader is None:
            raise ConfigError("dafa: similarity_source='val' needs a validation split; set data.val_per_class > 0")
        c = self.config
        model = ctx.model
        with crafting_mode(model):  # eval mode throughout; every module's own mode restored after
            for x, y in ctx.val_loader:
                x, y = x.to(ctx.device), y.to(ctx.device)
                x_adv = trades_adversarial(model, x, y, eps=c.eps, step_size=c.step_size, steps=c.steps)
                with torch.no_grad():
                    self._record(model(x_adv), y)

    def on_epoch_end(self, ctx: EpochContext) -> Mapping[str, Any]:
        if ctx.epoch != self.config.warmup_epochs - 1 or self.class_weights is not None:
            return {}
        if self.config.similarity_source == "val":
            self._prob_sums = self._counts = None
            self._validation_similarity(ctx)
        if self._counts is None:
            raise ConfigError("dafa: no adversarial examples were recorded in the last warm-up epoch")
        sums = ctx.all_reduce_sum(self._prob_sums)
        counts = ctx.all_reduce_sum(self._counts)
        similarity = sums / counts.clamp(min=1)[:, None]
        self.class_weights = dafa_class_weights(similarity, self.config.lam, self.config.weight_rule).float()
        self._prob_sums = self._counts = None
        return {
            "dafa_weights": self.class_weights.tolist(),
            "dafa_similarity_diag": torch.diagonal(similarity).tolist(),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"class_weights": None if self.class_weights is None else self.class_weights.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        weights = state.get("class_weights")
        self.class_weights = None if weights is None else weights.detach().float().clone()
