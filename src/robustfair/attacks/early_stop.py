"""Early-stopped PGD: flip steps, last clean and first adversarial iterates, vectorised.

FAT: "Attacks Which Do Not Kill Training Make Adversarial Learning Stronger" (Zhang et
al., ICML 2020). BAT: "Improving Robust Fairness via Balance Adversarial Training" (Sun
et al., AAAI 2023). GAIRAT's kappa: "Geometry-aware Instance-reweighted Adversarial
Training" (Zhang et al., ICLR 2021).

The trajectory x^0 (start), x^1, ..., x^K (K = steps) follows PGD sign steps (or L2 steps)
on the per-sample objective; at each step k = 0..K-1 the current iterate of every active
sample is classified, then the samples that keep going take one step. Forward and
backward run only on the still-active subset: the active samples are gathered each step
(one host synchronisation per step, when the subset shrinks; none per sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks.checks import (NORMS, check_batch, check_choice, check_clamp, check_number,
                                       check_start, per_sample_budget)
from robustfair.attacks.mode import crafting_mode
from robustfair.attacks.norm_ball import ascent_step, draw, project, start_point
from robustfair.attacks.objectives import LossFunction, objective_gradient, resolve_objective
from robustfair.errors import ConfigError

MODES = ("both", "first_adv", "last_clean")


@dataclass
class EarlyStopResult:
    """What `early_stopped_pgd` returns. B = batch size, K = steps.

    flip_step: int64 [B], the smallest k in 0..K with x^k misclassified (0: wrong at the
        start), -1 if never. Step K is checked by one extra forward (no gradient) on the
        samples still at x^K; it changes no returned iterate.
    last_clean: [B, ...], x^{flip-1}, the last iterate still classified correctly before
        the first misclassification; x^0 for a sample wrong at the start; x^K for a
        sample not misclassified at any checked step 0..K-1 (as in BAT's code, only steps
        0..K-1 decide; flip_step == K still returns x^K).
    first_adv: [B, ...], FAT's early-stopped iterate with counter tau: the x^k at which a
        misclassified sample with counter 0 stopped, else x^K.
    last_iterate: [B, ...], where each sample's trajectory ended: its stop point
        (= first_adv) with early stop, x^K for everyone with `early_stop=False`.
    passes: FAT's `count`: the number of per-sample gradient steps applied (samples that
        moved, summed over steps). Python int.
    gradient_evaluations: per-sample forward+backward passes computed: `passes` plus one
        for each sample at the step where it stopped (its gradient there is not used).
    correct_steps: int64 [B], the number of checked iterates (0..K-1) at which the sample,
        while active, was classified correctly: GAIRAT's kappa with `early_stop=False`.
    predictions: int64 [K+1, B] predicted class of each sample's iterate at each step (a
        stopped sample keeps its last prediction), or None unless `record_predictions`.
    """

    flip_step: torch.Tensor
    last_clean: torch.Tensor
    first_adv: torch.Tensor
    last_iterate: torch.Tensor
    passes: int
    gradient_evaluations: int
    correct_steps: torch.Tensor
    predictions: torch.Tensor | None = None

    @property
    def kappa(self) -> torch.Tensor:
        """GAIRAT's name for `correct_steps`."""
        return self.correct_steps


def early_stopped_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                      eps: float | torch.Tensor, step_size: float | torch.Tensor, steps: int,
                      loss: str | LossFunction = "kl", norm: str = "linf",
                      start: str | torch.Tensor = "normal", start_scale: float = 0.001,
                      tau: int = 0, noise_std: float = 0.0,
                      clamp: tuple[float, float] | None = (0.0, 1.0), bn_mode: str = "eval",
                      mode: str = "both", early_stop: bool = True, check_final: bool = True,
                      record_predictions: bool = False,
                      generator: torch.Generator | None = None,
                      logits_clean: torch.Tensor | None = None) -> EarlyStopResult:
    """PGD that stops each sample when it is misclassified (FAT's rule with counter tau).

    eps, step_size: numbers or per-sample tensors [B], as in `pgd`. loss: "kl" (TRADES KL
        on p(x) computed once without gradient; the batch sum is ascended), "ce",
        "margin" or a callable as in `pgd`. start: "normal" (x + start_scale * N(0, I),
        clamped: FAT's TRADES version and BAT), "uniform" (FAT's AT version), "none", or
        an explicit start point shaped like x.
    tau: FAT's counter. Every sample starts with counter tau; at step k, a misclassified
        x^k with counter 0 stops and is returned as first_adv; misclassified with counter
        > 0 decrements the counter and keeps stepping; correct keeps stepping.
    noise_std: FAT's omega: `noise_std * N(0, I)` added to each step before projection.
    mode: "both" / "first_adv": one trajectory, stopping by the counter; last_clean is read
        off the same trajectory. "last_clean": stop at the first misclassification (tau
        must be 0), which saves the steps past it. BAT's official code runs two separate
        trajectories with independent starts (mode="last_clean", then mode="first_adv"
        with tau=1); the shared one (mode="both", tau=1) gives both points in one run.
    early_stop: False runs all K steps for every sample while still recording flip steps,
        last_clean, first_adv (where the counter would have stopped) and correct_steps.
    check_final: classify x^K of the still-active samples not yet flipped to detect
        flip_step == K (one forward, no gradient; forced on by record_predictions).
    record_predictions: also return predictions [K+1, B].
    generator: for the random start and the per-step noise (drawn for the whole batch,
        so a sample's draws do not depend on which other samples are still active).
    logits_clean: float [B, C] logits of the clean x in the crafting mode, when the caller
        already has them (BAT's two trajectories share one clean forward); computed here
        when None and the loss needs them.

    With eval-mode BatchNorm (the default) samples are independent, so each sample's
    results do not depend on the rest of the batch (given the same start point).
    """
    x, y = check_batch(x, y, "early_stopped_pgd")
    eps_b = per_sample_budget(eps, x, "eps")
    step_b = per_sample_budget(step_size, x, "step_size")
    check_number(steps, "steps", integer=True)
    check_choice(norm, "norm", NORMS)
    objective = resolve_objective(loss)
    check_start(start, x)
    check_number(start_scale, "start_scale")
    check_number(tau, "tau", integer=True)
    check_number(noise_std, "noise_std")
    check_choice(mode, "mode", MODES)
    if mode == "last_clean" and tau != 0:
        raise ConfigError(f"tau: mode='last_clean' stops at the first misclassification, so tau must be 0, got {tau}")
    clamp = check_clamp(clamp)

    batch, num_steps = x.shape[0], steps
    with crafting_mode(model, bn_mode), torch.inference_mode(False), torch.enable_grad():
        x = x.detach()
        if not objective.needs_clean_logits:
            logits_clean = None
        elif logits_clean is None:
            with torch.no_grad():
                logits_clean = model(x).float()
        else:
            logits_clean = logits_clean.detach().float()
        current = start_point(x, start, eps_b, norm, start_scale, clamp, generator)
        last_clean = current.clone()
        first_adv = current.clone()
        flip_step = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        counter = torch.full((batch,), tau, dtype=torch.long, device=x.device)
        correct_steps = torch.zeros(batch, dtype=torch.long, device=x.device)
        stopped = torch.zeros(batch, dtype=torch.bool, device=x.device)
        latest_pred = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        predictions = (torch.empty((num_steps + 1, batch), dtype=torch.long, device=x.device)
                       if record_predictions else None)
        active = torch.arange(batch, device=x.device)
        passes = gradient_evaluations = 0
        steps_run = 0

        for k in range(num_steps):
            if active.numel() == 0:
                break
            x_k = current[active]
            labels = y[active]
            grad, logits = objective_gradient(model, x_k, objective, labels,
                                              None if logits_clean is None else logits_clean[active])
            gradient_evaluations += active.numel()
            pred = logits.argmax(dim=1)
            wrong = pred != labels

            flips = flip_step[active]
            never_flipped = flips < 0
            last_clean[active] = torch.where(_rows(~wrong & never_flipped, x), x_k, last_clean[active])
            flip_step[active] = torch.where(wrong & never_flipped, k, flips)
            correct_steps[active] += (~wrong).long()

            count = counter[active]
            stop = wrong & (count == 0) & ~stopped[active]
            counter[active] = torch.where(wrong & (count > 0), count - 1, count)
            first_adv[active] = torch.where(_rows(stop, x), x_k, first_adv[active])
            stopped[active] |= stop
            if predictions is not None:
                latest_pred[active] = pred
                predictions[k] = latest_pred

            x_next = ascent_step(x_k, grad, step_b[active], norm)
            if noise_std > 0:
                x_next = x_next + noise_std * draw("randn", x.shape, x, generator)[active]
            x_next = project(x_next, x[active], eps_b[active], norm, clamp)
            if early_stop:
                moving = ~stop
                active, x_next = active[moving], x_next[moving]
            current[active] = x_next
            passes += active.numel()
            steps_run = k + 1

        if predictions is not None and steps_run < num_steps:
            predictions[steps_run:num_steps] = latest_pred  # everyone stopped early
        if (check_final or predictions is not None) and active.numel() > 0:
            # Samples still active sit at x^K: classify it (no gradient, iterates unchanged).
            final = active if predictions is not None else active[flip_step[active] < 0]
            if final.numel() > 0:
                with torch.no_grad():
                    pred = model(current[final]).argmax(dim=1)
                flips = flip_step[final]
                flip_step[final] = torch.where((pred != y[final]) & (flips < 0), num_steps, flips)
                latest_pred[final] = pred
        if predictions is not None:
            predictions[num_steps] = latest_pred

        # Not misclassified at any checked step 0..K-1: last clean is the K-th iterate.
        unflipped = (flip_step < 0) | (flip_step == num_steps)
        last_clean = torch.where(_rows(unflipped, x), current, last_clean)
        first_adv = torch.where(_rows(stopped, x), first_adv, current)

    return EarlyStopResult(flip_step=flip_step, last_clean=last_clean.detach(),
                           first_adv=first_adv.detach(), last_iterate=current.detach(),
                           passes=int(passes), gradient_evaluations=int(gradient_evaluations),
                           correct_steps=correct_steps, predictions=predictions)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))
