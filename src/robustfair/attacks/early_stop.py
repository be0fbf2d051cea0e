"""Early-stopped PGD: flip steps, last clean and first adversarial iterates, vectorised.

FAT: "Attacks Which Do Not Kill Training Make Adversarial Learning Stronger" (Zhang et
al., ICML 2020). BAT: "Improving Robust Fairness via Balance Adversarial Training" (Sun
et al., AAAI 2023). GAIRAT's kappa: "Geometry-aware Instance-reweighted Adversarial
Training" (Zhang et al., ICLR 2021).

The trajectory x^0 (start), x^1, ..., x^K (K = steps) follows PGD sign steps (or L2 steps)
on the per-sample objective; at each step k = 0..K-1 the current iterate of every active
sample is classified, then the samples that keep going take one step.

Two implementations return the same points, flip steps and counts (`variant`):
- "compact": forward and backward run only on the still-active samples, gathered each step
  (`active = active[moving]`). Least work, but one host synchronisation per step and a new
  batch shape every step. Used on the CPU, where skipped work is saved time.
- "masked": every step runs on the whole batch, fixed shapes; a stopped sample is frozen by
  a mask (its gradient is computed and discarded, its iterate and records no longer
  change). No value is read back to the host inside the step loop, so a GPU never waits,
  and the step (`masked_step`, a function of tensors) suits CUDA graphs and torch.compile.
  Used on CUDA.
"auto" (default) picks by device, unless an `early_stop_variant(...)` block says otherwise
(the trainer sets it from `train.early_stop_attack`).

With eval-mode BatchNorm (the default) samples are independent, so both variants give the
same results. They differ in what they draw from the random generator after every sample
has stopped: "compact" stops drawing the per-step noise, "masked" draws it for all K
steps, so the generator's state after the call differs (never the returned values). With
train-mode BatchNorm the batch statistics differ between the variants (the compact batch
shrinks), so only eval mode is equivalent.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from robustfair.attacks.checks import (
    NORMS,
    check_batch,
    check_choice,
    check_clamp,
    check_number,
    check_start,
    per_sample_budget,
)
from robustfair.attacks.mode import crafting_mode
from robustfair.attacks.norm_ball import ascent_step, draw, project, start_point
from robustfair.attacks.objectives import (
    LossFunction,
    Objective,
    objective_gradient,
    objective_precision,
    resolve_objective,
)
from robustfair.errors import ConfigError

MODES = ("both", "first_adv", "last_clean")
VARIANTS = ("auto", "compact", "masked")

_DEFAULT_VARIANT: contextvars.ContextVar[str] = contextvars.ContextVar("early_stop_variant", default="auto")


@contextlib.contextmanager
def early_stop_variant(variant: str) -> Iterator[None]:
    """Inside the block, `variant="auto"` calls use `variant` ("auto", "compact" or "masked")."""
    check_choice(variant, "variant", VARIANTS)
    token = _DEFAULT_VARIANT.set(variant)
    try:
        yield
    finally:
        _DEFAULT_VARIANT.reset(token)


def resolve_variant(variant: str, device: torch.device) -> str:
    """ "compact" or "masked": an explicit choice, else the enclosing block's, else by device."""
    check_choice(variant, "variant", VARIANTS)
    if variant == "auto":
        variant = _DEFAULT_VARIANT.get()
    if variant == "auto":
        variant = "masked" if device.type == "cuda" else "compact"
    return variant


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
    passes_count: int64 0-d tensor, FAT's `count`: the number of per-sample gradient
        steps applied (samples that moved, summed over steps); `passes` reads it as an int.
    gradient_evaluations_count: int64 0-d tensor, the per-sample gradient passes the
        algorithm needs: `passes` plus one for each sample at the step where it stopped
        (its gradient there is not used); `gradient_evaluations` reads it as an int. The
        masked variant computes all B rows at every step; this counts the needed ones.
    correct_steps: int64 [B], the number of checked iterates (0..K-1) at which the sample,
        while active, was classified correctly: GAIRAT's kappa with `early_stop=False`.
    predictions: int64 [K+1, B] predicted class of each sample's iterate at each step (a
        stopped sample keeps its last prediction), or None unless `record_predictions`.
    variant: "compact" or "masked", the implementation that ran.

    The counts stay on the device: reading `passes` or `gradient_evaluations` is one host
    synchronisation, after the attack.
    """

    flip_step: torch.Tensor
    last_clean: torch.Tensor
    first_adv: torch.Tensor
    last_iterate: torch.Tensor
    passes_count: torch.Tensor
    gradient_evaluations_count: torch.Tensor
    correct_steps: torch.Tensor
    predictions: torch.Tensor | None = None
    variant: str = "compact"

    @property
    def passes(self) -> int:
        return int(self.passes_count)

    @property
    def gradient_evaluations(self) -> int:
        return int(self.gradient_evaluations_count)

    @property
    def kappa(self) -> torch.Tensor:
        """GAIRAT's name for `correct_steps`."""
        return self.correct_steps


@dataclass
class _State:
    """The per-sample records both variants update, all [B, ...] on x's device."""

    current: torch.Tensor
    last_clean: torch.Tensor
    first_adv: torch.Tensor
    flip_step: torch.Tensor
    counter: torch.Tensor
    correct_steps: torch.Tensor
    stopped: torch.Tensor
    latest_pred: torch.Tensor
    active: torch.Tensor  # compact: int64 indices of the active samples; masked: bool [B]
    passes: torch.Tensor
    evaluations: torch.Tensor


def early_stopped_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float | torch.Tensor,
    step_size: float | torch.Tensor,
    steps: int,
    loss: str | LossFunction = "kl",
    norm: str = "linf",
    start: str | torch.Tensor = "normal",
    start_scale: float = 0.001,
    tau: int = 0,
    noise_std: float = 0.0,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    bn_mode: str = "eval",
    mode: str = "both",
    early_stop: bool = True,
    check_final: bool = True,
    record_predictions: bool = False,
    generator: torch.Generator | None = None,
    logits_clean: torch.Tensor | None = None,
    variant: str = "auto",
) -> EarlyStopResult:
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
    variant: "compact", "masked" or "auto" (module docstring): the same results either way.

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
    chosen = resolve_variant(variant, x.device)

    batch, num_steps = x.shape[0], steps
    with crafting_mode(model, bn_mode), torch.inference_mode(False), torch.enable_grad():
        x = x.detach()
        if not objective.needs_clean_logits:
            logits_clean = None
        elif logits_clean is None:
            with torch.no_grad():
                logits_clean = objective_precision(model(x))
        else:
            logits_clean = objective_precision(logits_clean.detach())
        current = start_point(x, start, eps_b, norm, start_scale, clamp, generator)
        device = x.device
        state = _State(
            current=current,
            last_clean=current.clone(),
            first_adv=current.clone(),
            flip_step=torch.full((batch,), -1, dtype=torch.long, device=device),
            counter=torch.full((batch,), tau, dtype=torch.long, device=device),
            correct_steps=torch.zeros(batch, dtype=torch.long, device=device),
            stopped=torch.zeros(batch, dtype=torch.bool, device=device),
            latest_pred=torch.full((batch,), -1, dtype=torch.long, device=device),
            active=(
                torch.ones(batch, dtype=torch.bool, device=device)
                if chosen == "masked"
                else torch.arange(batch, device=device)
            ),
            passes=torch.zeros((), dtype=torch.long, device=device),
            evaluations=torch.zeros((), dtype=torch.long, device=device),
        )
        predictions = (
            torch.empty((num_steps + 1, batch), dtype=torch.long, device=device) if record_predictions else None
        )
        problem = dict(
            model=model,
            objective=objective,
            x=x,
            y=y,
            logits_clean=logits_clean,
            eps=eps_b,
            step_size=step_b,
            norm=norm,
            clamp=clamp,
            early_stop=early_stop,
        )
        noise = (lambda: noise_std * draw("randn", x.shape, x, generator)) if noise_std > 0 else (lambda: None)

        if chosen == "masked":
            step_index = torch.zeros((), dtype=torch.long, device=device)
            for k in range(num_steps):
                masked_step(state, step_index, noise(), **problem)
                if predictions is not None:
                    predictions[k] = state.latest_pred
                step_index += 1
            steps_run = num_steps
        else:
            steps_run = 0
            for k in range(num_steps):
                if state.active.numel() == 0:  # host read: the compact variant's one sync per step
                    break
                _compact_step(state, k, noise(), **problem)
                if predictions is not None:
                    predictions[k] = state.latest_pred
                steps_run = k + 1

        if predictions is not None and steps_run < num_steps:
            predictions[steps_run:num_steps] = state.latest_pred  # everyone stopped early
        if check_final or predictions is not None:
            _final_check(state, model, y, num_steps, every_active=predictions is not None, masked=chosen == "masked")
        if predictions is not None:
            predictions[num_steps] = state.latest_pred

        # Not misclassified at any checked step 0..K-1: last clean is the K-th iterate.
        flip_step, current = state.flip_step, state.current
        unflipped = (flip_step < 0) | (flip_step == num_steps)
        last_clean = torch.where(_rows(unflipped, x), current, state.last_clean)
        first_adv = torch.where(_rows(state.stopped, x), state.first_adv, current)

    return EarlyStopResult(
        flip_step=flip_step,
        last_clean=last_clean.detach(),
        first_adv=first_adv.detach(),
        last_iterate=current.detach(),
        passes_count=state.passes,
        gradient_evaluations_count=state.evaluations,
        correct_steps=state.correct_steps,
        predictions=predictions,
        variant=chosen,
    )


def masked_step(
    state: _State,
    step_index: torch.Tensor,
    noise: torch.Tensor | None,
    *,
    model: nn.Module,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    logits_clean: torch.Tensor | None,
    eps: torch.Tensor,
    step_size: torch.Tensor,
    norm: str,
    clamp: tuple[float, float] | None,
    early_stop: bool,
) -> None:
    """One step k (= `step_index`, int64 0-d on the device) of the masked variant, in place.

    Every tensor keeps its shape and nothing is read back to the host: the active samples
    are a bool mask, and a stopped sample's rows are frozen by `torch.where`.
    """
    active = state.active
    grad, logits = objective_gradient(model, state.current, objective, y, logits_clean)
    state.evaluations += active.sum()
    pred = logits.argmax(dim=1)
    wrong = pred != y
    never_flipped = state.flip_step < 0
    state.last_clean = torch.where(_rows(active & ~wrong & never_flipped, x), state.current, state.last_clean)
    state.flip_step = torch.where(active & wrong & never_flipped, step_index, state.flip_step)
    state.correct_steps += (active & ~wrong).long()
    counter = state.counter
    stop = active & wrong & (counter == 0) & ~state.stopped
    state.counter = torch.where(active & wrong & (counter > 0), counter - 1, counter)
    state.first_adv = torch.where(_rows(stop, x), state.current, state.first_adv)
    state.stopped = state.stopped | stop
    state.latest_pred = torch.where(active, pred, state.latest_pred)

    x_next = ascent_step(state.current, grad, step_size, norm)
    if noise is not None:
        x_next = x_next + noise
    x_next = project(x_next, x, eps, norm, clamp)
    if early_stop:
        active = active & ~stop
    state.current = torch.where(_rows(active, x), x_next, state.current)
    state.passes += active.sum()
    state.active = active


def _compact_step(
    state: _State,
    k: int,
    noise: torch.Tensor | None,
    *,
    model: nn.Module,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    logits_clean: torch.Tensor | None,
    eps: torch.Tensor,
    step_size: torch.Tensor,
    norm: str,
    clamp: tuple[float, float] | None,
    early_stop: bool,
) -> None:
    """One step k of the compact variant, in place: gradients only for the active samples."""
    active = state.active
    x_k = state.current[active]
    labels = y[active]
    grad, logits = objective_gradient(
        model, x_k, objective, labels, None if logits_clean is None else logits_clean[active]
    )
    state.evaluations += active.numel()
    pred = logits.argmax(dim=1)
    wrong = pred != labels

    flips = state.flip_step[active]
    never_flipped = flips < 0
    state.last_clean[active] = torch.where(_rows(~wrong & never_flipped, x), x_k, state.last_clean[active])
    state.flip_step[active] = torch.where(wrong & never_flipped, k, flips)
    state.correct_steps[active] += (~wrong).long()

    count = state.counter[active]
    stop = wrong & (count == 0) & ~state.stopped[active]
    state.counter[active] = torch.where(wrong & (count > 0), count - 1, count)
    state.first_adv[active] = torch.where(_rows(stop, x), x_k, state.first_adv[active])
    state.stopped[active] |= stop
    state.latest_pred[active] = pred

    x_next = ascent_step(x_k, grad, step_size[active], norm)
    if noise is not None:
        x_next = x_next + noise[active]
    x_next = project(x_next, x[active], eps[active], norm, clamp)
    if early_stop:
        moving = ~stop
        active, x_next = active[moving], x_next[moving]
    state.current[active] = x_next
    state.passes += active.numel()
    state.active = active


def _final_check(
    state: _State, model: nn.Module, y: torch.Tensor, num_steps: int, *, every_active: bool, masked: bool
) -> None:
    """Classify x^K of the samples still active (all of them when recording predictions,
    else those not yet flipped): flip_step K for the ones it misclassifies. No gradient."""
    if masked:
        final = state.active if every_active else state.active & (state.flip_step < 0)
        with torch.no_grad():
            pred = model(state.current).argmax(dim=1)
        state.flip_step = torch.where(final & (pred != y) & (state.flip_step < 0), num_steps, state.flip_step)
        state.latest_pred = torch.where(final, pred, state.latest_pred)
        return
    active = state.active
    if active.numel() == 0:
        return
    final = active if every_active else active[state.flip_step[active] < 0]
    if final.numel() == 0:
        return
    with torch.no_grad():
        pred = model(state.current[final]).argmax(dim=1)
    flips = state.flip_step[final]
    state.flip_step[final] = torch.where((pred != y[final]) & (flips < 0), num_steps, flips)
    state.latest_pred[final] = pred


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))
