"""CFA: Wei et al., CVPR 2023, "CFA: Class-wise Calibrated Fair Adversarial Training".

Three parts, each following the official `train.py` / `attack.py` (mode TRADES with
`--ccm --ccr`, the script's default mode):

- Class-wise calibrated margin (CCM): from epoch `begin_epoch` on, the attack budget of a
  class-k sample is `(lambda_1 + t_k) * eps`, where t_k is class k's robust accuracy on
  the previous epoch's training adversarial examples (predictions of the train-mode loss
  forward, as the official `train_epoch` logs them).
- Class-wise calibrated regularisation (CCR): the per-sample loss is
  `(1 - beta_k) CE(f(x)) + beta_k KL(p(x) || p(x'))` with
  `beta_k = (lambda_2 + t_k) beta / (1 + (lambda_2 + t_k) beta)`, summed and divided by
  the batch size; before `begin_epoch` (or with ccr off) every class uses beta / (1 + beta).
- Fairness-aware weight averaging (FAWA): after each epoch the model's worst-class
  robust accuracy on the validation split (PGD-10, 8/255, step 2/255) is compared with
  `fawa_threshold`; when it is reached, an EMA of the weights (decay 0.88; every floating
  state entry, BatchNorm statistics included) is updated (initialised to the weights the
  first time), otherwise the EMA is left unchanged. `averaged_state()` returns it for
  evaluation; the raw model keeps training.

Attack (TRADES base): KL-PGD from x + 0.001 N(0, I) (not clamped to [0, 1] before the
first gradient, as in the code), K = 10 steps of 2/255 (the official script passes
`--pgd-alpha 2` to the TRADES attack too), per-class eps; the KL is the code's
`kl_div(log_softmax(f(x')), softmax(f(x)))`; train-mode forwards f(x), f(x'), f(x) as the
code's `trades_loss` (`forward_order: clean_adv_clean`; `clean_adv` shares one f(x)).
The `at` base is the official AT+CFA: CE-PGD from a uniform start in the per-class ball,
loss mean CE. The code never puts the model in eval mode for it (`train_epoch` sets train
mode and `pgd_loss` keeps it), so the attack runs on batch statistics and every attack
step updates BatchNorm's running statistics: `at_crafting: train` (default); `eval`
crafts with frozen BatchNorm like the other methods.

BatchNorm bookkeeping: after each optimiser step the official `train_epoch` runs
`model(x)` once more in train mode to log the clean training accuracy; the output is
only logged, but the forward moves BatchNorm's running statistics. `log_clean_forward:
true` (default) replays it: the forward of a batch runs at the start of the next step
(nothing touches the model in between) and the epoch's last one in `on_epoch_end`,
before the FAWA check, so the running statistics equal the code's; false skips it.

Code vs paper: the public script's FAWA threshold default is 0.24; METHODS.md and this
default use 0.2 (`fawa_threshold=0.24` reproduces the script). The script measures t_k as
`C * correct_k / N` (equal to correct_k / n_k on a balanced training set); this uses
correct_k / n_k. The model owns input normalisation (CIFAR-10 mean/std in the preset), as
the official `normalize_cifar` inside every forward. `begin_epoch` counts epochs from 1:
the default 11 is the official `epoch >= 10` with 0-based epochs.

Checked side by side against PKU-ML/CFA@071f3334a59d144cedbe65b18019c9757bece6f2
(`attack.py` `trades_loss`, `cw_trades_loss`, `pgd_loss`, `cw_pgd_loss`; `train.py`
`train_epoch`) on a small BatchNorm CNN with the same start noise over two optimiser
steps: TRADES base bit-identical adversarial points, loss and gradients equal to float
rounding, identical BatchNorm running statistics; `at` base (train-mode crafting) equal to
float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustfair.attacks import crafting_mode, pgd
from robustfair.errors import ConfigError
from robustfair.losses import cross_entropy
from robustfair.losses.peers import cfa_class_beta, cfa_class_eps_scale
from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.tally import ClassAccuracyTally
from robustfair.methods.trades import FORWARD_ORDERS, trades_adversarial, trades_terms
from robustfair.typed_config import param


@dataclass(frozen=True)
class CFAConfig(MethodConfig):
    base: str = param("trades", choices=("trades", "at"), help="base method calibrated by CFA")
    beta: float = param(6.0, low=0.0, help="TRADES beta (beta_k = beta / (1 + beta) before calibration)")
    ccm: bool = param(True, help="class-wise calibrated margin (per-class eps)")
    ccr: bool = param(True, help="class-wise calibrated regularisation (per-class beta)")
    lambda_1: float = param(0.5, low=0.0, help="CCM offset: eps_k = (lambda_1 + t_k) eps")
    lambda_2: float = param(0.5, low=0.0, help="CCR offset: beta_k from (lambda_2 + t_k) beta")
    begin_epoch: int = param(11, low=1, help="first epoch (counted from 1) using the calibration")
    fawa: bool = param(True, help="keep the fairness-aware weight average")
    fawa_decay: float = param(0.88, low=0.0, high=1.0, help="EMA decay of the weight average")
    fawa_threshold: float = param(
        0.2, low=0.0, high=1.0, help="validation worst-class robust accuracy needed to update the average"
    )
    fawa_attack: str = param("pgd10", help="attack preset for the FAWA validation check")
    at_crafting: str = param(
        "train", choices=("train", "eval"), help="BatchNorm mode of the `at` base's attack: train (the code) or eval"
    )
    forward_order: str = param(
        "clean_adv_clean",
        choices=FORWARD_ORDERS,
        help="train-mode forwards of the TRADES base: clean_adv_clean = the code's",
    )
    log_clean_forward: bool = param(True, help="replay the code's post-step train-mode f(x) (BatchNorm statistics)")


def fawa_update(
    average: dict[str, torch.Tensor] | None, state: Mapping[str, torch.Tensor], decay: float
) -> dict[str, torch.Tensor]:
    """One EMA step of the official `weight_average`: `decay * average + (1 - decay) * state`.

    average None: a copy of `state` (the official `init=True`). Floating entries are
    averaged; integer entries (BatchNorm's num_batches_tracked) are copied from state.
    """
    if average is None:
        return {k: v.detach().clone() for k, v in state.items()}
    out = {}
    for key, value in state.items():
        value = value.detach()
        if value.is_floating_point():
            out[key] = average[key].to(value.device) * decay + value * (1.0 - decay)
        else:
            out[key] = value.clone()
    return out


class CFA(TrainingMethod):
    """Class-wise calibrated fair adversarial training (`cfa`); see the module docstring."""

    name = "cfa"
    Config = CFAConfig

    def __init__(self, config: Any, *, num_classes: int):
        super().__init__(config, num_classes=num_classes)
        self.train_robust_acc: torch.Tensor | None = None  # [C], t_k of the previous epoch
        self._tally = ClassAccuracyTally(num_classes)
        self._average: dict[str, torch.Tensor] | None = None
        self._pending_clean: torch.Tensor | None = None  # last batch, for the code's post-step f(x)

    def _replay_clean_forward(self, model: nn.Module) -> None:
        """The official `train_epoch`'s logging `model(x)` of the previous batch, in train mode.

        Its output is discarded (as the code only logs it); BatchNorm's running statistics
        take the update the code's forward makes after that batch's optimiser step.
        """
        if self._pending_clean is None:
            return
        x, self._pending_clean = self._pending_clean, None
        with crafting_mode(model, "train"), torch.no_grad():
            model(x)

    # ---- calibration -------------------------------------------------------------------
    def _acc_on(self, device: torch.device) -> torch.Tensor:
        if self.train_robust_acc.device != device:
            self.train_robust_acc = self.train_robust_acc.to(device)  # once after a resume
        return self.train_robust_acc

    def calibrating(self) -> bool:
        return self.train_robust_acc is not None and self.epoch + 1 >= self.config.begin_epoch

    def class_eps(self, device: torch.device) -> torch.Tensor:
        """[C] attack budget of each class this epoch."""
        c = self.config
        if c.ccm and self.calibrating():
            return cfa_class_eps_scale(self._acc_on(device), c.lambda_1) * c.eps
        return torch.full((self.num_classes,), c.eps, device=device)

    def class_beta(self, device: torch.device) -> torch.Tensor:
        """[C] weight of the KL term of each class this epoch (the CE term gets 1 - beta_k)."""
        c = self.config
        if c.ccr and self.calibrating():
            return cfa_class_beta(self._acc_on(device), c.beta, c.lambda_2)
        return torch.full((self.num_classes,), c.beta / (1.0 + c.beta), device=device)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        crafter = crafting_model(model)
        self._replay_clean_forward(crafter)
        if c.log_clean_forward:
            self._pending_clean = x.detach().clone()  # a copy: the loader may reuse its buffers
        eps = self.class_eps(x.device)[y] if c.ccm and self.calibrating() else c.eps
        if c.base == "at":
            x_adv = pgd(
                crafter,
                x,
                y,
                eps=eps,
                step_size=c.step_size,
                steps=c.steps,
                loss="ce",
                start="uniform",
                bn_mode=c.at_crafting,
            )
            logits_adv = model(x_adv)
            ce_adv = cross_entropy(logits_adv, y)
            self._tally.add(logits_adv, y)
            robust = (logits_adv.detach().argmax(1) == y).float().mean()
            return MethodOutput(ce_adv.mean(), {"ce_adv": ce_adv.detach().mean(), "train_robust_acc": robust})
        x_adv = trades_adversarial(model, x, y, eps=eps, step_size=c.step_size, steps=c.steps)
        t = trades_terms(model, x, x_adv, y, c.forward_order)
        logits_adv, ce, kl = t.logits_adv, t.ce, t.kl
        beta = self.class_beta(x.device)[y]
        loss = ((1.0 - beta) * ce + beta * kl).sum() / x.shape[0]
        self._tally.add(logits_adv, y)
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(loss, {"ce": ce.detach().mean(), "kl": kl.detach().mean(), "train_robust_acc": robust})

    # ---- epoch hooks -------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> Mapping[str, Any]:
        super().on_epoch_start(ctx)
        self._tally.reset()
        logs: dict[str, Any] = {}
        if self.calibrating():
            logs["cfa_eps"] = self.class_eps(ctx.device).tolist()
            logs["cfa_beta"] = self.class_beta(ctx.device).tolist()
        return logs

    def on_epoch_end(self, ctx: EpochContext) -> Mapping[str, Any]:
        self._replay_clean_forward(ctx.model)  # the epoch's last post-step forward, before any evaluation
        logs: dict[str, Any] = {}
        accuracy = self._tally.accuracy(ctx.all_reduce_sum)
        if accuracy is not None:
            self.train_robust_acc = accuracy
            logs["cfa_train_robust_acc"] = self.train_robust_acc.tolist()
        if self.config.fawa:
            logs.update(self._update_average(ctx))
        return logs

    def _update_average(self, ctx: EpochContext) -> dict[str, Any]:
        if ctx.val_loader is None:
            raise ConfigError(
                "cfa: fairness-aware weight averaging needs a validation split; set "
                "data.val_per_class > 0 (CFA used 100 per class) or method.fawa=false"
            )
        result = ctx.evaluate(ctx.model, ctx.val_loader, self.config.fawa_attack)
        # The official check reads the adversarial-input accuracy of each class.
        worst = float(np.nanmin(result.adversarial_acc))
        updated = worst >= self.config.fawa_threshold
        if updated:
            self._average = fawa_update(self._average, ctx.model.state_dict(), self.config.fawa_decay)
        return {"fawa_val_worst_robust_acc": worst, "fawa_updated": updated}

    def averaged_state(self) -> dict[str, torch.Tensor] | None:
        """The FAWA weights as a model state dict, or None until the threshold was first reached."""
        return self._average

    # ---- checkpointing -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "train_robust_acc": None if self.train_robust_acc is None else self.train_robust_acc.detach().cpu(),
            "fawa": None if self._average is None else {k: v.detach().cpu() for k, v in self._average.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        acc = state.get("train_robust_acc")
        self.train_robust_acc = None if acc is None else acc.detach().float().clone()
        average = state.get("fawa")
        self._average = None if average is None else {k: v.detach().clone() for k, v in average.items()}
