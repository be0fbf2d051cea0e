"""FAT: Zhang et al., ICML 2020, "Attacks Which Do Not Kill Training Make Adversarial Learning Stronger".

Friendly adversarial training trains on early-stopped PGD iterates: each sample stops at
the first iterate that is misclassified once its counter tau is spent (FAT's Algorithm 1,
`robustfair.attacks.early_stopped_pgd`, `first_adv`). tau grows over training
("dynamic tau" in the official code, on by default): it counts the schedule milestones
passed, `tau = tau0 + #{m in tau_milestones : epoch > m}` with epochs counted from 1.

- `fat_at` (official `FAT.py`): CE attack from a uniform start in the eps-ball, with
  0.001 * N(0, I) noise added at every step (omega); tau 0 for epochs <= 50, 1 for <= 90,
  2 after. Loss: mean CE on the friendly adversarial examples.
- `fat_trades` (official `FAT_for_TRADES.py`): KL attack from x + 0.001 * N(0, I), no step
  noise; tau 0 for epochs <= 30, 1 for <= 50, 2 for <= 70, 3 after. Loss: TRADES,
  `mean CE(f(x)) + beta (1/B) sum KL(p(x) || p(x_fat))`, beta = 6.
Both: eps 0.031, step 0.007, K = 10 (the official defaults). The official code reorders
the batch (stopped samples first); the loss is a batch mean, so the order is irrelevant
(up to float rounding, also in BatchNorm's batch statistics). `fat_trades` runs the
code's train-mode forwards, f(x) then f(x_fat) with one shared clean forward
(`forward_order: clean_adv`), and the code's KL `kl_div(log_softmax(f(x')), softmax(f(x)))`
in the attack and the loss; its start x + 0.001 N(0, I) is clamped to [0, 1], as the code's
`earlystop` does.

Checked side by side against zjfheart/Friendly-Adversarial-Training@80a064074891775146bca8c4d8a6b99c1499285a
(`earlystop.py`, `FAT_for_TRADES.py` `train`) on a small BatchNorm CNN with the same start
noise: bit-identical friendly adversarial points, loss and gradients equal to float
rounding (the code's reordered batch), BatchNorm running statistics equal to float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robustfair.attacks import early_stopped_pgd
from robustfair.losses import cross_entropy
from robustfair.methods.base import EpochContext, MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.trades import FORWARD_ORDERS, trades_terms
from robustfair.typed_config import param


def fat_tau(epoch_number: int, base: int, milestones: Sequence[int]) -> int:
    """FAT's dynamic counter for the epoch numbered `epoch_number` (counted from 1).

    `base + #{m in milestones : epoch_number > m}`: with milestones (50, 90), epochs 1..50
    get base, 51..90 base + 1, later base + 2 (official `adjust_tau`). Empty milestones:
    a fixed tau = base (the official `--dynamictau False`).
    """
    return base + sum(1 for m in milestones if epoch_number > m)


@dataclass(frozen=True)
class FATATConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="perturbation budget (FAT code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="attack step size (FAT code: 0.007)")
    tau: int = param(0, low=0, help="counter before the first tau milestone")
    tau_milestones: tuple[int, ...] = param(
        (50, 90), low=0, help="tau grows by one after each of these epochs (from 1); () = fixed"
    )
    noise_std: float = param(0.001, low=0.0, help="omega: std of the Gaussian noise added at every attack step")
    start: str = param("uniform", choices=("uniform", "normal", "none"), help="attack start point")


@dataclass(frozen=True)
class FATTRADESConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="perturbation budget (FAT code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="attack step size (FAT code: 0.007)")
    tau: int = param(0, low=0, help="counter before the first tau milestone")
    tau_milestones: tuple[int, ...] = param(
        (30, 50, 70), low=0, help="tau grows by one after each of these epochs (from 1); () = fixed"
    )
    noise_std: float = param(0.0, low=0.0, help="omega: std of the Gaussian noise added at every attack step")
    start: str = param("normal", choices=("uniform", "normal", "none"), help="attack start point (normal: x + 0.001 N)")
    beta: float = param(6.0, low=0.0, help="weight of the TRADES KL term")
    forward_order: str = param(
        "clean_adv",
        choices=FORWARD_ORDERS,
        help="train-mode forwards per step (BatchNorm statistics follow them): clean_adv = the code's",
    )


class _FAT(TrainingMethod):
    """Shared loop of both FAT variants; subclasses pick the attack objective and the loss."""

    attack_loss: ClassVar[str] = "ce"

    def current_tau(self) -> int:
        c = self.config
        return fat_tau(self.epoch + 1, c.tau, c.tau_milestones)

    def on_epoch_start(self, ctx: EpochContext) -> Mapping[str, Any]:
        super().on_epoch_start(ctx)
        return {"tau": self.current_tau()}

    def friendly_adversarial(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Early-stopped PGD iterates [B, ...] and the per-sample gradient steps taken (int64
        0-d tensor on the device: reading it back would cost a host synchronisation)."""
        c = self.config
        result = early_stopped_pgd(
            crafting_model(model),
            x,
            y,
            eps=c.eps,
            step_size=c.step_size,
            steps=c.steps,
            loss=self.attack_loss,
            start=c.start,
            start_scale=0.001,
            tau=self.current_tau(),
            noise_std=c.noise_std,
            mode="first_adv",
            check_final=False,
        )
        return result.first_adv, result.passes_count


class FATAT(_FAT):
    """FAT for PGD-AT (`fat_at`): CE on early-stopped PGD iterates; see the module docstring."""

    name = "fat_at"
    Config = FATATConfig
    attack_loss = "ce"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        x_adv, passes = self.friendly_adversarial(model, x, y)
        logits_adv = model(x_adv)
        ce = cross_entropy(logits_adv, y)
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        steps = passes.float() / x.shape[0]
        return MethodOutput(
            ce.mean(), {"ce_adv": ce.detach().mean(), "train_robust_acc": robust, "attack_steps": steps}
        )


class FATTRADES(_FAT):
    """FAT for TRADES (`fat_trades`): TRADES loss on early-stopped KL-PGD iterates."""

    name = "fat_trades"
    Config = FATTRADESConfig
    attack_loss = "kl"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        x_adv, passes = self.friendly_adversarial(model, x, y)
        t = trades_terms(model, x, x_adv, y, self.config.forward_order)
        logits_adv, ce, kl = t.logits_adv, t.ce, t.kl
        loss = ce.mean() + self.config.beta * kl.sum() / x.shape[0]
        robust = (logits_adv.detach().argmax(1) == y).float().mean()
        steps = passes.float() / x.shape[0]
        return MethodOutput(
            loss,
            {"ce": ce.detach().mean(), "kl": kl.detach().mean(), "train_robust_acc": robust, "attack_steps": steps},
        )
