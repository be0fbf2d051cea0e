"""Long-tail class reweighting applied to PGD-AT (Benz et al. 2021, "Robustness May Be at Odds
with Fairness: An Empirical Study on Class-wise Accuracy", question (c)).

Benz et al. asked whether long-tail remedies fix the class-wise robustness gap of
adversarial training. Their code is not public; these are the two simple forms, fed by
each class's robust accuracy instead of its sample count:

- `at_reweight`: `mean_i w_{y_i} CE(f(x'_i), y_i)` with `w_c proportional to
  robacc_c^-power`, normalised to mean 1 over the classes (`inverse_accuracy_weights`,
  accuracies floored at `floor`).
- `at_logit_adjust`: LDAM-style margins, `CE(f(x') - Delta_y e_y, y)` with
  `Delta_c = max_margin * (r_c / max_k r_k) ** power`, r_c the robust error
  (`error_margins`): the weakest class must win by the largest margin.

x' is PGD-10 on plain CE (step 2/255, uniform start, eps 8/255), as PGD-AT. The class
statistic comes from the previous epoch: `source = "train"` uses the training
adversarial examples' predictions (train-mode loss forward, free), `"val"` a class-wise
evaluation of the validation split under `val_attack` (robust = correct clean and
attacked, the evaluation protocol). Until a statistic exists (and before `begin_epoch`,
counted from 1) the loss is plain PGD-AT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustfair.attacks import pgd
from robustfair.errors import ConfigError
from robustfair.losses import cross_entropy
from robustfair.losses.peers import error_margins, inverse_accuracy_weights, margin_adjusted_logits
from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.tally import ClassAccuracyTally
from robustfair.typed_config import param


@dataclass(frozen=True)
class ATReweightConfig(MethodConfig):
    source: str = param(
        "train", choices=("train", "val"), help="where last epoch's per-class robust accuracy comes from"
    )
    val_attack: str = param("pgd10", help="attack preset for source=val")
    begin_epoch: int = param(2, low=1, help="first epoch (counted from 1) using the class statistic")
    floor: float = param(0.05, low=0.0, low_open=True, high=1.0, help="smallest accuracy used in the inverse")
    power: float = param(1.0, low=0.0, help="w_c proportional to accuracy_c ** -power")


@dataclass(frozen=True)
class ATLogitAdjustConfig(MethodConfig):
    source: str = param("val", choices=("train", "val"), help="where last epoch's per-class robust error comes from")
    val_attack: str = param("pgd10", help="attack preset for source=val")
    begin_epoch: int = param(2, low=1, help="first epoch (counted from 1) using the class statistic")
    max_margin: float = param(0.5, low=0.0, help="logit margin of the class with the largest robust error")
    power: float = param(1.0, low=0.0, help="Delta_c proportional to (r_c / max r) ** power")


class _RobustAccuracyFeedback(TrainingMethod):
    """PGD-AT whose loss depends on last epoch's per-class robust accuracy ([C] in [0, 1])."""

    def __init__(self, config: Any, *, num_classes: int):
        super().__init__(config, num_classes=num_classes)
        self.robust_acc: torch.Tensor | None = None
        self._tally = ClassAccuracyTally(num_classes)

    def active(self) -> bool:
        return self.robust_acc is not None and self.epoch + 1 >= self.config.begin_epoch

    def _acc_on(self, device: torch.device) -> torch.Tensor:
        if self.robust_acc.device != device:
            self.robust_acc = self.robust_acc.to(device)  # once after a resume
        return self.robust_acc

    def adversarial_logits(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.config
        x_adv = pgd(
            crafting_model(model), x, y, eps=c.eps, step_size=c.step_size, steps=c.steps, loss="ce", start="uniform"
        )
        logits_adv = model(x_adv)
        if self.config.source == "train":
            self._tally.add(logits_adv, y)
        return logits_adv

    def on_epoch_start(self, ctx: EpochContext) -> Mapping[str, Any]:
        super().on_epoch_start(ctx)
        self._tally.reset()
        return {}

    def on_epoch_end(self, ctx: EpochContext) -> Mapping[str, Any]:
        if self.config.source == "train":
            accuracy = self._tally.accuracy(ctx.all_reduce_sum)
            if accuracy is None:
                return {}
            self.robust_acc = accuracy
        else:
            if ctx.val_loader is None:
                raise ConfigError(
                    f"{self.name}: source='val' needs a validation split; set data.val_per_class > 0 "
                    "or method.source=train"
                )
            result = ctx.evaluate(ctx.model, ctx.val_loader, self.config.val_attack)
            accuracy = np.nan_to_num(np.asarray(result.robust_acc, dtype=np.float64), nan=1.0)
            self.robust_acc = torch.tensor(accuracy, dtype=torch.float32, device=ctx.device)
        return {"class_robust_acc": self.robust_acc.tolist()}

    def state_dict(self) -> dict[str, Any]:
        return {"robust_acc": None if self.robust_acc is None else self.robust_acc.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        acc = state.get("robust_acc")
        self.robust_acc = None if acc is None else acc.detach().float().clone()


class ATReweight(_RobustAccuracyFeedback):
    """PGD-AT with inverse-robust-accuracy class weights (`at_reweight`)."""

    name = "at_reweight"
    Config = ATReweightConfig

    def class_weights(self, device: torch.device) -> torch.Tensor | None:
        if not self.active():
            return None
        return inverse_accuracy_weights(self._acc_on(device), self.config.floor, self.config.power)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        logits_adv = self.adversarial_logits(model, x, y)
        ce = cross_entropy(logits_adv, y)
        weights = self.class_weights(x.device)
        loss = ce.mean() if weights is None else (weights[y] * ce).mean()
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(loss, {"ce_adv": ce.detach().mean(), "train_robust_acc": robust})


class ATLogitAdjust(_RobustAccuracyFeedback):
    """PGD-AT with LDAM-style per-class logit margins from robust error (`at_logit_adjust`)."""

    name = "at_logit_adjust"
    Config = ATLogitAdjustConfig

    def class_margins(self, device: torch.device) -> torch.Tensor | None:
        if not self.active():
            return None
        return error_margins(1.0 - self._acc_on(device), self.config.max_margin, self.config.power)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        logits_adv = self.adversarial_logits(model, x, y)
        margins = self.class_margins(x.device)
        adjusted = logits_adv if margins is None else margin_adjusted_logits(logits_adv, y, margins)
        ce = cross_entropy(adjusted, y)
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(ce.mean(), {"ce_adv": ce.detach().mean(), "train_robust_acc": robust})
