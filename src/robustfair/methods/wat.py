"""WAT: Li & Liu, AAAI 2023, "WAT: Improve the Worst-class Robustness in Adversarial Training".

Worst-class adversarial training plays a no-regret game: a Hedge learner (exponential
weights, rate eta = 0.1) keeps a distribution over C + 1 "experts", the C classes and
the average loss, and the model minimises the weighted TRADES loss. Following the
official `train_wat.py` (`--alg wat`):

- Training loss (train mode), with w the current weights ([C + 1], summing to C):
  `(1/B) sum_i w_{y_i} (CE(f(x_i), y_i) + beta KL(p(x_i) || p(x'_i)))`
  `+ w_C * (mean_i CE(f(x_i), y_i) + beta (1/B) sum_i KL(p(x_i) || p(x'_i)))`,
  x' from the TRADES attack (x + 0.001 N(0, I), 10 KL sign steps of 0.007, eps 0.031).
- After each epoch, on the validation split (attack in eval mode, losses in eval mode
  without gradient): the TRADES cost of class k, `c_k = mean over class k of
  (CE + beta KL)`, and of the whole split, c_C = the mean over all samples. The costs
  add up over epochs, L += c, and `w = C * softmax(eta * L)`
  (`robustfair.losses.peers.hedge_weights`).
- Before the first validation every weight is 1 (the official initialisation).

The code's attack start x + 0.001 N(0, I) is not clamped to [0, 1] before the first
gradient (its `attack_generator.trades`), and neither is this one; train-mode forwards
f(x), f(x') with one shared clean forward, as the code (`forward_order: clean_adv`); the
KL is the code's `kl_div(log_softmax(f(x')), softmax(f(x)))`.

Validation cost scale (`cost_normalization`): the code divides each class's validation
sum by `batches * batch_size` (its loader: batches of 128, the last one partial) and
multiplies by C, and the whole split's sum by the same `batches * batch_size`:
`c_k = C * sum_k / D`, `c_C = sum / D`, with `D = ceil(N / b) * b` for N validation
images and b = `cost_batch_size` (128). `code` (default) does exactly that; with the
code's own split (300 per class, N = 3,000) it scales every cost, hence the effective
eta, by 3000 / 3072 = 0.977. `count` divides by the exact counts (per-class means and
the overall mean).

Checked side by side against boqili/WAT@62d1184f9b88909c9e782ab8234128324235ac84
(`worst_class_adversarial_train.py` `train` and `validate`, `attack_generator.trades`) on
a small BatchNorm CNN with the same start noise: bit-identical adversarial points, loss
and gradients equal to float rounding, identical BatchNorm running statistics, and the
same validation costs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robustfair.attacks import crafting_mode
from robustfair.errors import ConfigError
from robustfair.losses import cross_entropy, trades_kl
from robustfair.losses.peers import classwise_counts, classwise_sums, hedge_weights
from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod
from robustfair.methods.trades import FORWARD_ORDERS, trades_adversarial, trades_terms
from robustfair.typed_config import param


@dataclass(frozen=True)
class WATConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="perturbation budget (WAT code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="attack step size (WAT code: 0.007)")
    beta: float = param(6.0, low=0.0, help="TRADES beta")
    eta: float = param(0.1, low=0.0, help="Hedge learning rate")
    cost_normalization: str = param(
        "code",
        choices=("code", "count"),
        help="validation cost divisor: code = batches x cost_batch_size, count = exact counts",
    )
    cost_batch_size: int = param(
        128, low=1, help="batch size of the code's validation loader (cost_normalization code)"
    )
    forward_order: str = param(
        "clean_adv",
        choices=FORWARD_ORDERS,
        help="train-mode forwards per step (BatchNorm statistics follow them): clean_adv = the code's",
    )


def wat_validation_costs(
    sums: torch.Tensor, counts: torch.Tensor, normalization: str = "code", batch_size: int = 128
) -> torch.Tensor:
    """[C + 1] validation costs from per-class cost sums and counts ([C] each).

    normalization "code": `C * sums / D` per class and `sum(sums) / D` overall, with
    D = ceil(N / batch_size) * batch_size, N = sum(counts) (the official `validate`, whose
    loader has batches of batch_size); "count": per-class means and the overall mean.
    """
    if normalization == "count":
        per_class = sums / counts.clamp(min=1)
        overall = sums.sum() / counts.sum().clamp(min=1)
    elif normalization == "code":
        total = int(round(float(counts.sum())))
        divisor = max(math.ceil(total / batch_size), 1) * batch_size
        per_class = sums * (sums.shape[0] / divisor)
        overall = sums.sum() / divisor
    else:
        raise ConfigError(f"cost_normalization: {normalization!r} is not allowed; valid values: code, count")
    return torch.cat([per_class, overall.view(1)])


class WAT(TrainingMethod):
    """Worst-class adversarial training (`wat`); see the module docstring."""

    name = "wat"
    Config = WATConfig

    def __init__(self, config: Any, *, num_classes: int):
        super().__init__(config, num_classes=num_classes)
        self.cumulative_cost = torch.zeros(num_classes + 1, dtype=torch.float64)
        self.weights = torch.ones(num_classes + 1)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        x_adv = trades_adversarial(model, x, y, eps=c.eps, step_size=c.step_size, steps=c.steps)
        t = trades_terms(model, x, x_adv, y, c.forward_order)
        logits_adv, ce, kl = t.logits_adv, t.ce, t.kl
        cost = ce + c.beta * kl
        if self.weights.device != x.device:
            self.weights = self.weights.to(x.device)  # once, not a host-to-device copy per step
        weights = self.weights
        class_part = (weights[y] * cost).sum() / x.shape[0]
        mean_part = weights[self.num_classes] * cost.mean()
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(
            class_part + mean_part, {"ce": ce.detach().mean(), "kl": kl.detach().mean(), "train_robust_acc": robust}
        )

    def validation_costs(self, ctx: EpochContext) -> torch.Tensor:
        """[C + 1] mean TRADES cost per class and over the whole validation split."""
        if ctx.val_loader is None:
            raise ConfigError("wat: the Hedge weights are fitted on a validation split; set data.val_per_class > 0")
        c = self.config
        model = ctx.model
        sums = torch.zeros(self.num_classes, dtype=torch.float64, device=ctx.device)
        counts = torch.zeros(self.num_classes, dtype=torch.float64, device=ctx.device)
        with crafting_mode(model):  # eval mode throughout; every module's own mode restored after
            for x, y in ctx.val_loader:
                x, y = x.to(ctx.device), y.to(ctx.device)
                x_adv = trades_adversarial(model, x, y, eps=c.eps, step_size=c.step_size, steps=c.steps)
                with torch.no_grad():
                    logits = model(x)
                    cost = cross_entropy(logits, y) + c.beta * trades_kl(logits, model(x_adv))
                sums += classwise_sums(cost.double(), y, self.num_classes)
                counts += classwise_counts(y, self.num_classes, torch.float64)
        sums = ctx.all_reduce_sum(sums)
        counts = ctx.all_reduce_sum(counts)
        return wat_validation_costs(sums, counts, c.cost_normalization, c.cost_batch_size)

    def on_epoch_end(self, ctx: EpochContext) -> Mapping[str, Any]:
        costs = self.validation_costs(ctx).cpu()
        self.cumulative_cost = self.cumulative_cost + costs
        self.weights = hedge_weights(self.cumulative_cost, self.config.eta, self.num_classes).float()
        return {"wat_val_cost": costs.tolist(), "wat_weights": self.weights.tolist()}

    def state_dict(self) -> dict[str, Any]:
        return {"cumulative_cost": self.cumulative_cost.clone(), "weights": self.weights.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.cumulative_cost = state["cumulative_cost"].detach().double().cpu().clone()
        self.weights = state["weights"].detach().float().cpu().clone()
