"""FGSM and PGD as pure functions with an injectable loss.

PGD: "Towards Deep Learning Models Resistant to Adversarial Attacks" (Madry et al., 2018);
its KL form is the inner maximisation of "Theoretically Principled Trade-off between
Robustness and Accuracy" (TRADES, Zhang et al., 2019). FGSM: "Explaining and Harnessing
Adversarial Examples" (Goodfellow et al., 2015).

Inputs x: [B, ...] floating, in [0, 1] for images (eps in the same units); y: int64 [B].
Crafting runs in eval mode unless `bn_mode="train"`, and restores every submodule's mode
afterwards (also on exceptions). Only input gradients are computed
(`torch.autograd.grad`), so parameter `.grad` is never touched. The returned x_adv is
detached. Gradients are enabled inside, so the attacks also work when an evaluation loop
calls them under `torch.no_grad()` or `torch.inference_mode()`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustfair.attacks.checks import (
    NORMS,
    check_batch,
    check_choice,
    check_clamp,
    check_labels,
    check_number,
    check_start,
    per_sample_budget,
)
from robustfair.attacks.mode import crafting_mode
from robustfair.attacks.norm_ball import ascent_step, project, start_point
from robustfair.attacks.objectives import (
    LossFunction,
    Objective,
    objective_gradient,
    objective_precision,
    resolve_objective,
)
from robustfair.errors import ConfigError

Budget = float | torch.Tensor
RESTART_VARIANTS = ("auto", "compact", "masked")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Budget,
    step_size: Budget,
    steps: int,
    norm: str = "linf",
    loss: str | LossFunction = "ce",
    start: str | torch.Tensor = "uniform",
    start_scale: float = 0.001,
    project_start: bool = True,
    restarts: int = 1,
    targeted: bool = False,
    target: torch.Tensor | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    bn_mode: str = "eval",
    generator: torch.Generator | None = None,
    return_logits: bool = False,
    restart_variant: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Projected gradient ascent on `loss` within the eps-ball around x.

    eps, step_size: Python numbers >= 0 or per-sample tensors [B] (per-class budgets
        gathered by label, e.g. FRL's `eps * s_{y_i}`); broadcast for both norms.
    steps: number of gradient steps (0 returns the start point).
    norm: "linf" (sign steps, projection onto the box) or "l2" (steps along the
        normalised gradient, per-sample projection onto the L2 ball).
    loss: "ce", "kl" (TRADES: KL(p(x) || p(x')), p(x) from the clean input computed once
        without gradient; the batch sum is ascended, as in the official code), "margin"
        (CW), or a callable `(logits_adv, labels, logits_clean) -> [B]`; see
        `robustfair.attacks.objectives` for when a callable receives clean logits.
    start: "uniform" in the eps-ball (Madry), "normal" = x + start_scale * N(0, I)
        (TRADES uses 0.001; the KL objective has zero gradient at x, so it needs it),
        "none", or an explicit start point shaped like x.
    project_start: False takes the first gradient at the start point as drawn, neither
        projected onto the ball nor clamped to the box (the TRADES code's unclamped
        x + 0.001 N(0, I)); every step still projects and clamps.
    restarts: > 1 runs further random restarts on the samples not yet fooled and keeps,
        per sample, the first restart that fools the model, else the one with the highest
        loss (worst case per sample, as a robust evaluation should). Each restart's start
        is drawn for the whole batch, so a sample's draws do not depend on which others
        are still unfooled.
    restart_variant: how restarts skip fooled samples: "compact" (gather the unfooled
        ones: least work, one host synchronisation per restart), "masked" (run the whole
        batch and keep results by mask: fixed shapes, no synchronisation) or "auto"
        (masked on CUDA, compact elsewhere). Both return the same x_adv.
    targeted: descend the loss towards `target` (int64 [B]) instead of ascending it on y;
        "fooled" then means predicted as the target.
    clamp: the valid input box, (0, 1) for images; None for standardised tabular data.
    bn_mode: "eval" (default, BatchNorm frozen) or "train".
    generator: torch.Generator for the random start (drawn on its own device).
    return_logits: also return the float32 logits of x_adv computed in the crafting mode.

    Returns x_adv [B, ...] detached (and logits [B, C] when return_logits).
    """
    x, y = check_batch(x, y, "pgd")
    eps_b, step_b, objective, clamp = _check_common(x, eps, step_size, steps, norm, loss, targeted, clamp)
    check_start(start, x)
    check_number(start_scale, "start_scale")
    check_number(restarts, "restarts", low=1, integer=True)
    if restarts > 1 and (isinstance(start, torch.Tensor) or start == "none"):
        raise ConfigError(
            f"restarts: {restarts} restarts from a fixed start repeat the same attack; "
            "use start='uniform' or start='normal'"
        )
    if targeted:
        if target is None:
            raise ConfigError("target: a targeted attack needs target labels, int64 [B]")
        labels = check_labels(target, x, "target")
    elif target is not None:
        raise ConfigError("target: target labels were given but targeted=False")
    else:
        labels = y
    direction = -1.0 if targeted else 1.0
    check_choice(restart_variant, "restart_variant", RESTART_VARIANTS)
    masked = restart_variant == "masked" or (restart_variant == "auto" and x.device.type == "cuda")

    with crafting_mode(model, bn_mode), torch.inference_mode(False), torch.enable_grad():
        logits_clean = _logits(model, x) if objective.needs_clean_logits else None
        run = dict(model=model, objective=objective, direction=direction, steps=steps, norm=norm, clamp=clamp)
        x_start = start_point(x, start, eps_b, norm, start_scale, clamp, generator, projected=project_start)
        x_adv = _ascend(
            x=x, x_start=x_start, labels=labels, logits_clean=logits_clean, eps=eps_b, step_size=step_b, **run
        )
        logits_adv = None
        if restarts > 1:
            logits_adv = _logits(model, x_adv)
            fooled, score = _outcome(objective, direction, targeted, logits_adv, labels, logits_clean)
            for _ in range(restarts - 1):
                # Drawn for the whole batch in both variants: the same start for every sample.
                x_start = start_point(x, start, eps_b, norm, start_scale, clamp, generator, projected=project_start)
                if masked:
                    candidate = _ascend(
                        x=x,
                        x_start=x_start,
                        labels=labels,
                        logits_clean=logits_clean,
                        eps=eps_b,
                        step_size=step_b,
                        **run,
                    )
                    cand_logits = _logits(model, candidate)
                    cand_fooled, cand_score = _outcome(
                        objective, direction, targeted, cand_logits, labels, logits_clean
                    )
                    better = ~fooled & (cand_fooled | (cand_score > score))
                    x_adv = torch.where(_rows(better, x), candidate, x_adv)
                    logits_adv = torch.where(better[:, None], cand_logits, logits_adv)
                    score = torch.where(better, cand_score, score)
                    fooled = fooled | cand_fooled
                    continue
                todo = torch.nonzero(~fooled).squeeze(1)
                if todo.numel() == 0:
                    break
                clean_todo = None if logits_clean is None else logits_clean[todo]
                candidate = _ascend(
                    x=x[todo],
                    x_start=x_start[todo],
                    labels=labels[todo],
                    logits_clean=clean_todo,
                    eps=eps_b[todo],
                    step_size=step_b[todo],
                    **run,
                )
                cand_logits = _logits(model, candidate)
                cand_fooled, cand_score = _outcome(
                    objective, direction, targeted, cand_logits, labels[todo], clean_todo
                )
                better = cand_fooled | (cand_score > score[todo])
                x_adv[todo] = torch.where(_rows(better, x), candidate, x_adv[todo])
                logits_adv[todo] = torch.where(better[:, None], cand_logits, logits_adv[todo])
                fooled[todo] = cand_fooled
                score[todo] = torch.where(better, cand_score, score[todo])
        if return_logits and logits_adv is None:
            logits_adv = _logits(model, x_adv)
    x_adv = x_adv.detach()
    return (x_adv, logits_adv) if return_logits else x_adv


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Budget,
    norm: str = "linf",
    loss: str | LossFunction = "ce",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    bn_mode: str = "eval",
) -> torch.Tensor:
    """Fast gradient (sign) method: one step of size eps from x, no random start.

    L-inf: x + eps * sign(grad); L2: x + eps * grad / ||grad||. Same arguments as `pgd`.
    The KL objective is rejected: its gradient is zero (up to rounding) at the clean input.
    """
    if isinstance(loss, str) and loss == "kl":
        raise ConfigError(
            "loss: 'kl' has zero gradient (up to rounding) at the clean input, so FGSM cannot ascend it; "
            "use pgd(..., loss='kl', start='normal')"
        )
    return pgd(
        model, x, y, eps=eps, step_size=eps, steps=1, norm=norm, loss=loss, start="none", clamp=clamp, bn_mode=bn_mode
    )


def _check_common(
    x: torch.Tensor, eps: Any, step_size: Any, steps: Any, norm: Any, loss: Any, targeted: bool, clamp: Any
) -> tuple[torch.Tensor, torch.Tensor, Objective, Any]:
    eps_b = per_sample_budget(eps, x, "eps")
    step_b = per_sample_budget(step_size, x, "step_size")
    check_number(steps, "steps", integer=True)
    check_choice(norm, "norm", NORMS)
    objective = resolve_objective(loss, targeted=targeted)
    return eps_b, step_b, objective, check_clamp(clamp)


def _ascend(
    *,
    model: nn.Module,
    x: torch.Tensor,
    x_start: torch.Tensor,
    labels: torch.Tensor,
    logits_clean: torch.Tensor | None,
    objective: Objective,
    direction: float,
    eps: torch.Tensor,
    step_size: torch.Tensor,
    steps: int,
    norm: str,
    clamp: tuple[float, float] | None,
) -> torch.Tensor:
    """One PGD run from `x_start`; returns the K-th iterate, detached."""
    x = x.detach()
    x_adv = x_start
    for _ in range(steps):
        grad, _ = objective_gradient(model, x_adv, objective, labels, logits_clean, direction)
        x_adv = project(ascent_step(x_adv, grad, step_size, norm), x, eps, norm, clamp).detach()
    return x_adv


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """float32 (float64 for a float64 model) logits without gradient, in the current (crafting) mode."""
    with torch.no_grad():
        logits = model(x)
    return objective_precision(logits)


def _outcome(
    objective: Objective,
    direction: float,
    targeted: bool,
    logits: torch.Tensor,
    labels: torch.Tensor,
    logits_clean: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fooled [B] bool, score [B] = the ascended value) of a finished run."""
    pred = logits.argmax(dim=1)
    fooled = pred == labels if targeted else pred != labels
    return fooled, direction * objective(logits, labels, logits_clean)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))
