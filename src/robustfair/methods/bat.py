"""BAT: Sun et al., AAAI 2023, "Improving Robust Fairness via Balance Adversarial Training".

Two boundary examples per input, crafted in eval mode by early-stopped PGD ascending the
summed KL(p(x) || p(x~)) from x + 0.001 N(0, I) (clamped to [0, 1]), sign steps of 0.007,
at most K = 10 steps, eps = 0.031:
- last clean x_lc: the last iterate still classified correctly (the start point for a
  sample wrong at the start, the K-th iterate for one never flipped at steps 0..K-1);
- first adversarial x_fa: FAT's early stop with counter tau = 1 (a misclassified iterate
  with counter 0 stops; with counter > 0 it decrements and keeps going; the rest return
  the K-th iterate), i.e. one step past the first misclassification when that step
  stays wrong.

Loss (train mode), beta = 6, alpha = 1, all terms batch means as in the code:
    CE(f(x_lc), y) + beta KL(p(x) || p(x_fa)) + alpha [KL(p(x_lc) || U) + KL(p(x_fa) || U)]
with p(x) not detached (TRADES). Per-sample terms: `robustfair.losses.bat.bat_loss_terms`.
Training recipe: ResNet-18, SGD lr 0.1 (x0.1 at 75, x0.01 at 90, x0.001 at 100), momentum
0.9, wd 2e-4, batch 128, no normalisation (configs/bat.yaml).

Official code (github.com/silvercherry/Improving-Robust-Fairness-via-Balance-Adversarial-Training)
versus paper, and the switches here:
- Uniform term: the code computes KL(p || U) = log C - H(p) (`uniform_direction: code`,
  default); the paper writes KL(U || p) (`uniform_direction: paper`).
- The code crafts x_lc and x_fa in two separate trajectories with independent starts
  (default). `shared_trajectory: true` reads both off one trajectory (about half the
  attack cost); with the same start it yields exactly the same two points (tests/test_bat.py).
- The code's per-sample Python loops reorder the batch; every loss term pairs only
  matching inputs, so the batch means are unchanged by our keeping the original order.
- Train-mode forwards run in the code's order and batching: f(x_lc), f(x_fa), f(x) (then
  f(x_adv) for the fixed-step ablations), each a separate batch for BatchNorm.
- The KL terms (attack and loss) and the uniform term use the code's expressions,
  `kl_div(log_softmax(.), softmax(.))` (`robustfair.losses`): with it the early-stopped KL
  iterates equal the code's bit for bit from the same start noise (checked on FAT's
  `earlystop`, which BAT's `stop_to_firstadv` / `stop_to_lastclean` follow).

Ablations (paper Table 2; presets configs/bat_ablation_*.yaml):
- `target_term`: none (row 1), last_clean (row 2), first_adv (row 3), fixed_step (row 4:
  x_adv from the plain 10-step TRADES KL-PGD), both (row 5 = BAT).
- `source_term`: boundary (CE on x_lc, KL to x_fa; BAT) or fixed_step (row 6: CE on x,
  KL to the fixed-step x_adv, with the uniform term on both boundary examples).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks import crafting_mode, early_stopped_pgd
from robustfair.losses.bat import SOURCE_TERMS, TARGET_TERMS, bat_loss_terms, bat_needs
from robustfair.methods.base import MethodConfig, MethodOutput, TrainingMethod, crafting_model
from robustfair.methods.trades import trades_adversarial
from robustfair.typed_config import param


@dataclass
class BoundaryExamples:
    """x_lc and x_fa [B, ...] (detached, in the eps-ball and [0, 1]) and the flip steps.

    flip_step: int64 [B] of the last-clean trajectory: the first step k in 0..K at which
    the iterate was misclassified, -1 if never (see `robustfair.attacks.EarlyStopResult`).
    """

    last_clean: torch.Tensor
    first_adv: torch.Tensor
    flip_step: torch.Tensor


def boundary_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.031,
    step_size: float = 0.007,
    steps: int = 10,
    tau: int = 1,
    start_scale: float = 0.001,
    shared_trajectory: bool = False,
    start: str | torch.Tensor = "normal",
    generator: torch.Generator | None = None,
    check_final: bool = True,
) -> BoundaryExamples:
    """BAT's last clean and first adversarial examples of a batch (model put in eval mode).

    shared_trajectory=False (official): two early-stopped KL-PGD runs, each from its own
    start x + start_scale N(0, I): one stopping at the first misclassification (x_lc), one
    with FAT's counter tau (x_fa). True: one run with counter tau gives both.
    start: "normal", or an explicit start point [B, ...] used by every trajectory (tests
    compare the two versions from the same start).
    check_final: also classify the K-th iterate so flip_step can read K (one forward without
    gradient); the training loss never needs it, so BAT.loss turns it off (flip_step is
    then -1 for a sample first wrong at step K).
    """
    with crafting_mode(model), torch.no_grad():  # one clean forward serves both trajectories
        logits_clean = model(x.detach()).float()
    common = dict(
        eps=eps,
        step_size=step_size,
        steps=steps,
        loss="kl",
        start=start,
        start_scale=start_scale,
        generator=generator,
        logits_clean=logits_clean,
    )
    if shared_trajectory:
        both = early_stopped_pgd(model, x, y, tau=tau, mode="both", check_final=check_final, **common)
        return BoundaryExamples(both.last_clean, both.first_adv, both.flip_step)
    clean = early_stopped_pgd(model, x, y, tau=0, mode="last_clean", check_final=check_final, **common)
    # Only x_fa is read from this run: skip the final no-grad check that detects flips at step K.
    adversarial = early_stopped_pgd(model, x, y, tau=tau, mode="first_adv", check_final=False, **common)
    return BoundaryExamples(clean.last_clean, adversarial.first_adv, clean.flip_step)


@dataclass(frozen=True)
class BATConfig(MethodConfig):
    eps: float = param(0.031, low=0.0, help="perturbation budget (BAT code: 0.031)")
    step_size: float = param(0.007, low=0.0, low_open=True, help="attack step size (BAT code: 0.007)")
    steps: int = param(10, low=1, help="maximum attack steps K")
    beta: float = param(6.0, low=0.0, help="weight of the KL source-class term")
    alpha: float = param(1.0, low=0.0, help="weight of the uniform (target-class) term")
    tau: int = param(1, low=0, help="FAT counter of the first adversarial example")
    start_scale: float = param(0.001, low=0.0, help="std of the Gaussian start of the attacks")
    uniform_direction: str = param(
        "code", choices=("code", "paper"), help="uniform term KL(p || U) (code) or KL(U || p) (paper)"
    )
    source_term: str = param(
        "boundary", choices=SOURCE_TERMS, help="CE on x_lc + KL to x_fa (boundary), or CE on x + KL to fixed-step x_adv"
    )
    target_term: str = param("both", choices=TARGET_TERMS, help="inputs given the uniform term (Table 2 rows 1-5)")
    shared_trajectory: bool = param(False, help="read x_lc and x_fa off one trajectory (faster)")


class BAT(TrainingMethod):
    """Balance Adversarial Training ("Improving Robust Fairness via Balance Adversarial Training").

    Defaults (official code): eps 0.031, step 0.007, K = 10, beta 6, alpha 1, tau 1,
    uniform term KL(p || U), two trajectories. Stateless across epochs.
    """

    name = "bat"
    Config = BATConfig

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MethodOutput:
        c = self.config
        needs_boundary, needs_fixed = bat_needs(c.source_term, c.target_term)
        logs: dict[str, torch.Tensor] = {}
        examples = x_adv = None
        if needs_boundary:
            examples = boundary_examples(
                crafting_model(model),
                x,
                y,
                eps=c.eps,
                step_size=c.step_size,
                steps=c.steps,
                tau=c.tau,
                start_scale=c.start_scale,
                shared_trajectory=c.shared_trajectory,
                check_final=False,
            )
            flipped = (examples.flip_step >= 0) & (examples.flip_step < c.steps)
            logs["flip_rate"] = flipped.float().mean()
        if needs_fixed:
            # BAT's code clamps its 0.001-scale starts to [0, 1]; the fixed-step ablation does too
            x_adv = trades_adversarial(
                model,
                x,
                y,
                eps=c.eps,
                step_size=c.step_size,
                steps=c.steps,
                start_scale=c.start_scale,
                clamp_start=True,
            )

        logits_lc = model(examples.last_clean) if examples is not None else None
        logits_fa = model(examples.first_adv) if examples is not None else None
        logits_clean = model(x)
        logits_adv = model(x_adv) if x_adv is not None else None
        terms = bat_loss_terms(
            logits_clean,
            logits_lc,
            logits_fa,
            y,
            beta=c.beta,
            alpha=c.alpha,
            direction=c.uniform_direction,
            source=c.source_term,
            target=c.target_term,
            logits_adv=logits_adv,
        )
        logs.update({k: terms[k].detach().mean() for k in ("ce", "kl", "uniform")})
        return MethodOutput(terms["total"].mean(), logs)
