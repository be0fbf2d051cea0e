"""FAAL: Zhang et al., CVPR 2024, "Towards Fairness-Aware Adversarial Learning".

Fairness-aware adversarial learning fine-tunes an adversarially trained model (a hot
start, 2 epochs) with a distributionally robust objective over the class distribution.
Following the official code (TrustAI/FAAL `ft_prn.py`, `FAAL.py`), per batch:

1. x' from PGD (base `at`: CE, uniform start, 10 steps of 2/255, eps 8/255, eval mode);
   train-mode forwards f(x') and then f(x) (the code's order; under base `at` f(x) only
   moves BatchNorm's running statistics).
2. Class scores m_c: the mean over class c's samples of the margin on softmax
   probabilities `max_{j != y} p_j(x') - p_y(x')` (the code's `cw`).
3. Class weights p on the simplex over all C classes maximising
   `sum_i p_{y_i} m_{y_i} = sum_c n_c m_c p_c` (n_c: class c's count in the batch) subject to
   `KL(U || p) <= r` (U uniform over all C classes, r = 0.5). A class absent from the batch
   has no weight in the objective but keeps its place in the simplex and in the KL. p is a
   constant for the gradient (the code solves it on detached values).
4. Loss `(C / B) sum_i p_{y_i} l_i`, l_i = CE(f(x'_i), y_i) (base `at`) or
   `CE(f(x_i), y_i) + beta KL(p(x_i) || p(x'_i))` (base `trades`, the code's KL expression,
   attack from the unclamped x + 0.001 N(0, I)).

The code solves step 3 with cvxpy (ECOS, then MOSEK or SCS); here a one-dimensional
bisection on the dual variable solves the same problem exactly
(`robustfair.losses.peers.faal_class_weights`, given the scores `n_c m_c` over all classes)
with no convex-solver dependency; on the same inputs it agrees with a general solver of the
code's problem to 1e-7.

Recipe (`configs/faal.yaml`, the code's `run_prn.py`): 2 epochs of SGD lr 0.01 (x0.1 after
the first epoch), momentum 0.9, wd 5e-4, batch 128, PreActResNet-18 with CIFAR-10 input
normalisation, hot start from a PGD-AT model of the same architecture.

Options (the behaviour of earlier robustfair versions, which followed the paper's text
before the code was read): `score: logit_margin` (the Carlini-Wagner margin on logits) or
`loss` (class-mean loss); `objective: class_mean` (the simplex and U over the classes
present in the batch, each class counted once, loss `sum_c p_c L_c` with L_c the class-mean
loss); `forward_order: adv` skips the clean forward of base `at`.

Checked side by side against TrustAI/FAAL@b20ee9dbe60c5ab700eaab3d41faa10e5295d39a
(`ft_prn.py` training loop with `--loss AT` and `--loss TRADES`, `utils.py` `pgd_attack`,
`attack_trade`, `cw`; `FAAL.py` `DAW.solve_weight`, with its convex problem solved
independently with scipy's SLSQP) on a small BatchNorm CNN with the same start noise, on a
balanced batch, a batch missing two classes and one with unequal counts: the class weights
agree to 1.2e-7, the loss and gradients to float rounding (2e-6 relative), BatchNorm
running statistics identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks import pgd
from robustfair.errors import ConfigError
from robustfair.losses import cross_entropy, margin, probability_margin
from robustfair.losses.peers import classwise_counts, classwise_sums, faal_class_weights
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.trades import FORWARD_ORDERS, trades_adversarial, trades_terms
from robustfair.typed_config import param

FAAL_SCORES = ("margin", "logit_margin", "loss")
FAAL_OBJECTIVES = ("code", "class_mean")


@dataclass(frozen=True)
class FAALConfig(MethodConfig):
    radius: float = param(0.5, low=0.0, help="r: radius of the KL(U || p) ball of class distributions")
    score: str = param(
        "margin",
        choices=FAAL_SCORES,
        help="class statistic m_c: margin on softmax probabilities (code), on logits, or the loss",
    )
    objective: str = param(
        "code",
        choices=FAAL_OBJECTIVES,
        help="code: classes weighted by batch count, all C in the simplex, loss (C/B) sum p_y l; "
        "class_mean: present classes only, loss sum_c p_c L_c",
    )
    base: str = param("at", choices=("at", "trades"), help="per-sample adversarial loss")
    beta: float = param(6.0, low=0.0, help="TRADES beta (base trades)")
    start: str = param("uniform", choices=("uniform", "normal", "none"), help="PGD start (base at)")
    forward_order: str = param(
        "adv_clean",
        choices=FORWARD_ORDERS + ("adv",),
        help="train-mode forwards: adv_clean = the code's (f(x') then f(x)); adv = base at without the clean forward",
    )

    def __post_init__(self) -> None:
        if self.forward_order == "adv" and self.base != "at":
            raise ConfigError(
                "forward_order: 'adv' skips the clean forward, which base 'trades' needs; "
                "use adv_clean, clean_adv or clean_adv_clean"
            )


def faal_weights_and_loss(
    per_sample: torch.Tensor,
    sample_scores: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    radius: float,
    objective: str = "code",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(class weights p [C] float64, scalar loss) of one FAAL batch.

    per_sample: [B] loss l_i (with gradient); sample_scores: [B] detached per-sample scores
    whose class means are m_c; y: [B].
    objective "code": p maximises sum_c n_c m_c p_c over all C classes, loss
    `(C / B) sum_i p_{y_i} l_i`; "class_mean": p maximises sum_c m_c p_c over the present
    classes, loss `sum_c p_c L_c` with L_c the class-mean loss.
    """
    counts = classwise_counts(y, num_classes, torch.float64)
    present = counts > 0
    class_scores = classwise_sums(sample_scores.detach().double(), y, num_classes) / counts.clamp(min=1)
    if objective == "code":
        weights = faal_class_weights(counts * class_scores, radius)
        batch = y.shape[0]
        loss = (per_sample * weights.to(per_sample.dtype)[y]).sum() * (num_classes / batch)
        return weights, loss
    if objective == "class_mean":
        weights = faal_class_weights(class_scores, radius, present)
        class_loss = classwise_sums(per_sample, y, num_classes) / counts.to(per_sample.dtype).clamp(min=1)
        return weights, (weights.to(per_sample.dtype) * class_loss).sum()
    raise ConfigError(f"faal objective: {objective!r} is not allowed; valid values: {', '.join(FAAL_OBJECTIVES)}")


class FAAL(TrainingMethod):
    """Fairness-aware adversarial learning (`faal`), a fine-tune of an AT model; see the module docstring."""

    name = "faal"
    Config = FAALConfig
    hot_start = True

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        logs = {}
        if c.base == "at":
            x_adv = pgd(
                crafting_model(model), x, y, eps=c.eps, step_size=c.step_size, steps=c.steps, loss="ce", start=c.start
            )
            if c.forward_order in ("clean_adv", "clean_adv_clean"):
                _clean_forward(model, x)
            logits_adv = model(x_adv)
            if c.forward_order in ("adv_clean", "clean_adv_clean"):
                _clean_forward(model, x)
            per_sample = cross_entropy(logits_adv, y)
            logs["ce_adv"] = per_sample.detach().mean()
        else:
            x_adv = trades_adversarial(model, x, y, eps=c.eps, step_size=c.step_size, steps=c.steps)
            t = trades_terms(model, x, x_adv, y, c.forward_order)
            logits_adv, ce, kl = t.logits_adv, t.ce, t.kl
            per_sample = ce + c.beta * kl
            logs.update(ce=ce.detach().mean(), kl=kl.detach().mean())
        if c.score == "margin":
            scores = probability_margin(logits_adv.detach(), y)
        elif c.score == "logit_margin":
            scores = margin(logits_adv.detach(), y)
        else:
            scores = per_sample.detach()
        weights, loss = faal_weights_and_loss(per_sample, scores, y, self.num_classes, c.radius, c.objective)
        logs["class_weight_max"] = weights.max().float()
        logs["train_robust_acc"] = (logits_adv.detach().argmax(1) == y).float().mean()
        return MethodOutput(loss, logs)


def _clean_forward(model: nn.Module, x: torch.Tensor) -> None:
    """The code's train-mode f(x) under base `at`: unused by the loss, it moves BatchNorm's statistics."""
    with torch.no_grad():
        crafting_model(model)(x)
