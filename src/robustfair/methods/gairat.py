"""GAIRAT: Zhang et al., ICLR 2021, "Geometry-aware Instance-reweighted Adversarial Training".

Each training sample is weighted by how close it sits to the decision boundary, measured
by its geometry value kappa: the number of the K CE-PGD iterates x^0 .. x^{K-1} (uniform
start in the eps-ball, all K steps taken, no early stop) that the model still classifies
correctly (official `GA_PGD`). Weight `w = (1 + tanh(lam + 5 (1 - 2 kappa / K))) / 2`,
normalised to mean 1 in the batch (`robustfair.losses.peers.gairat_weights`); the loss is
`mean_i w_i CE(f(x_i^K), y_i)` from epoch `begin_epoch` on (counted from 1, official
`(epoch + 1) >= begin_epoch`, 60), plain mean CE before.

Defaults are the official `GAIRAT.py`: eps 0.031, step 0.007, K = 10, lambda = -1 with
its 'fixed' lambda schedule (the official 'piecewise' schedule is identical to 'fixed'
because of an unreachable `elif`, and 'linear' needs a finite Lambda_max; neither is
offered), Tanh weight assignment.

Two switch epochs (`lambda_rule`): the weights are applied from `begin_epoch`, but the
code's `adjust_Lambda` keeps lambda = +inf (uniform weights) until epoch 60 in runs of at
least 110 epochs and until epoch 30 in shorter runs. `code` (default) reproduces that: the
geometry-aware weights need both `epoch >= begin_epoch` and `epoch >= 60` (runs of >= 110
epochs) or `epoch >= 30` (shorter runs), epochs counted from 1; a run shorter than 30
epochs is then plain PGD-AT, as the code's would be. `begin_epoch` applies lambda from
begin_epoch alone (the short presets use it and say so).

Checked against zjfheart/Geometry-aware-Instance-reweighted-Adversarial-Training
@16813b5b08449ed60af8835c8f1e3b1960ce2ff3
(`GAIRAT.py` `train`, `adjust_Lambda`; `GAIR.py`): `gairat_lambda_epoch` and the weights
per epoch equal the code's for 10- to 120-epoch runs (tests/test_peers_methods.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks import early_stopped_pgd
from robustfair.losses import cross_entropy
from robustfair.losses.peers import gairat_weights
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.typed_config import param


@dataclass(frozen=True)
class GAIRATConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="perturbation budget (GAIRAT code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="attack step size (GAIRAT code: 0.007)")
    steps: int = param(10, low=2, help="attack steps K (kappa counts correct iterates among K)")
    lam: float = param(-1.0, help="lambda, the offset inside the tanh weight")
    begin_epoch: int = param(60, low=1, help="first epoch (counted from 1) with the geometry-aware weights")
    start: str = param("uniform", choices=("uniform", "normal", "none"), help="attack start point")
    lambda_rule: str = param(
        "code",
        choices=("code", "begin_epoch"),
        help="code: lambda only from epoch 60 (runs >= 110 epochs) or 30 (shorter), as "
        "adjust_Lambda; begin_epoch: from begin_epoch",
    )


def gairat_lambda_epoch(num_epochs: int) -> int:
    """First epoch (counted from 1) of the official `adjust_Lambda` ('fixed') with a finite lambda.

    60 for runs of at least 110 epochs, 30 for shorter ones; before it lambda is +inf
    (uniform weights).
    """
    return 60 if num_epochs >= 110 else 30


class GAIRAT(TrainingMethod):
    """Geometry-aware instance-reweighted PGD-AT (`gairat`); see the module docstring."""

    name = "gairat"
    Config = GAIRATConfig

    def reweighting(self) -> bool:
        return self.epoch + 1 >= self.config.begin_epoch

    def current_lambda(self) -> float:
        """lambda of this epoch: +inf (uniform weights) before the code's switch epoch."""
        c = self.config
        if c.lambda_rule == "code" and self.epoch + 1 < gairat_lambda_epoch(self.num_epochs):
            return math.inf
        return c.lam

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        result = early_stopped_pgd(
            crafting_model(model),
            x,
            y,
            eps=c.eps,
            step_size=c.step_size,
            steps=c.steps,
            loss="ce",
            start=c.start,
            start_scale=0.001,
            early_stop=False,
            check_final=False,
        )
        logits_adv = model(result.last_iterate)
        ce = cross_entropy(logits_adv, y)
        kappa = result.correct_steps
        logs = {
            "ce_adv": ce.detach().mean(),
            "kappa": kappa.float().mean(),
            "train_robust_acc": (logits_adv.detach().argmax(1) == y).float().mean(),
        }
        if self.reweighting():
            weight = gairat_weights(kappa, c.steps, self.current_lambda())
            logs["weight_max"] = weight.max()
            return MethodOutput((ce * weight).mean(), logs)
        return MethodOutput(ce.mean(), logs)
