"""TRADES: Zhang et al., ICML 2019, "Theoretically Principled Trade-off between Robustness and Accuracy".

x' from x + 0.001 * N(0, I) (not clamped to [0, 1] before the first gradient, as in the
code), K = 10 sign steps of 0.007 ascending sum_i KL(p(x_i) || p(x'_i)) (eval mode),
each projected to the L-inf ball (eps 0.031) and clamped to [0, 1]. Loss in train mode:
mean_i CE(f(x_i), y_i) + beta * (1/B) sum_i KL(p(x_i) || p(x'_i)), p(x) not detached.
beta = 6 by default (BAT's table also reports beta = 1).

Checked side by side against yaodongyu/TRADES@6e8e11b7c281371c2f027ffadfbaea80361f09de
(`trades.py`, `trades_loss`) with the same start noise on a small BatchNorm CNN: the
adversarial points are bit-identical, the loss and parameter gradients equal to float
rounding, the BatchNorm running statistics after a step identical.

- Start: the code does not clamp x + 0.001 N(0, I) to [0, 1]; neither does this
  (`trades_adversarial(..., clamp_start=True)` is the clamped start BAT's code uses).
- KL: the code's own expression `kl_div(log_softmax(f(x')), softmax(f(x)))`
  (`robustfair.losses.trades_kl`), for the attack and the loss.
- Forwards (`forward_order`): the code evaluates f(x) for the CE term, then f(x'), then
  f(x) again inside the KL, all in train mode, so BatchNorm's running statistics see
  three batches per step: `clean_adv_clean` (default). `clean_adv` shares one f(x)
  between both terms: the same gradients (up to rounding) for one forward fewer, but
  running statistics that drift from the code's (faster; docs/PERFORMANCE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks import pgd
from robustfair.errors import ConfigError
from robustfair.losses import cross_entropy, trades_kl
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.typed_config import param

#: Train-mode forward passes of a TRADES-family step, in order; BatchNorm's running
#: statistics follow this order. clean_adv_clean: f(x) for CE, f(x'), f(x) again for the
#: KL (TRADES, FRL, CFA code); clean_adv: one shared f(x), then f(x') (WAT, FAT code);
#: adv_clean: f(x') then one shared f(x) (DAFA, FAAL code).
FORWARD_ORDERS = ("clean_adv_clean", "clean_adv", "adv_clean")


@dataclass(frozen=True)
class TRADESConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="perturbation budget (TRADES code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="attack step size (TRADES code: 0.007)")
    beta: float = param(6.0, low=0.0, help="weight of the KL robustness term")
    forward_order: str = param(
        "clean_adv_clean",
        choices=FORWARD_ORDERS,
        help="train-mode forwards per step: clean_adv_clean = the code's (f(x) twice); "
        "clean_adv = one shared f(x), faster, other BatchNorm statistics",
    )


def trades_adversarial(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps,
    step_size,
    steps: int,
    start_scale: float = 0.001,
    clamp_start: bool = False,
) -> torch.Tensor:
    """The TRADES attack: KL-PGD from x + start_scale * N(0, I). eps/step_size: float or [B].

    clamp_start=False (the TRADES code and its derivatives) takes the first gradient at the
    unclamped start; True projects the start onto the ball and [0, 1] first (BAT's code).
    """
    return pgd(
        crafting_model(model),
        x,
        y,
        eps=eps,
        step_size=step_size,
        steps=steps,
        loss="kl",
        start="normal",
        start_scale=start_scale,
        project_start=clamp_start,
    )


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


def trades_terms(
    model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, order: str = "clean_adv_clean"
) -> TradesTerms:
    """CE and KL terms from train-mode forwards in `order` (one of FORWARD_ORDERS).

    clean_adv_clean: CE on a first f(x), KL between f(x') and a second f(x), as the TRADES
    code builds its graph (both clean forwards give the same logits in train mode; only
    BatchNorm's running statistics see the extra batch). `logits` is the first f(x).
    """
    if order == "clean_adv_clean":
        logits = model(x)
        logits_adv = model(x_adv)
        logits_kl = model(x)
        return TradesTerms(logits, logits_adv, cross_entropy(logits, y), trades_kl(logits_kl, logits_adv))
    if order == "clean_adv":
        logits = model(x)
        logits_adv = model(x_adv)
    elif order == "adv_clean":
        logits_adv = model(x_adv)
        logits = model(x)
    else:
        raise ConfigError(f"forward_order: {order!r} is not allowed; valid values: {', '.join(FORWARD_ORDERS)}")
    return TradesTerms(logits, logits_adv, cross_entropy(logits, y), trades_kl(logits, logits_adv))


class TRADES(TrainingMethod):
    name = "trades"
    Config = TRADESConfig

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        x_adv = trades_adversarial(model, x, y, eps=c.eps, step_size=c.step_size, steps=c.steps)
        t = trades_terms(model, x, x_adv, y, c.forward_order)
        loss = t.ce.mean() + c.beta * t.kl.sum() / x.shape[0]
        return MethodOutput(
            loss, {"ce": t.ce.detach().mean(), "kl": t.kl.detach().mean(), "train_robust_acc": t.robust_accuracy(y)}
        )
