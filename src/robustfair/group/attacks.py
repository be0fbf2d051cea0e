"""Accuracy and fairness attacks on tabular classifiers (seed 002: "To be Robust and to be
Fair: Aligning Fairness with Robustness"; our design in METHODS.md where the paper is silent).

Threat model: x float [B, D] (standardised features), perturbed only on the continuous
columns (`continuous_mask`, bool [D]) within an eps-ball in standardised units, L-inf
(`|delta_j| <= eps` per column) or L2 (`||delta||_2 <= eps` per row). With a `domain`
(`robustfair.group.domain.FeatureDomain`, the default through `attack.domain: bounded`)
every iterate is also clamped into each feature's domain (training range or declared
bounds) and whole-number features get whole-number shifts at the end; `domain=None` is the
unconstrained form (`attack.domain: unbounded`), which can produce a negative capital
gain or a fractional count. One-hot (categorical) columns
stay fixed unless `max_categorical_changes > 0`: then, after PGD, up to that many
one-hot blocks per row are switched to another category, greedily, one block per
round: the switch with the largest first-order gain, kept only if the row's objective
really increases. The sensitive attribute's block (when it is a feature) is never
offered for switching (`FeatureLayout.perturbable_blocks`).

Attacks:
- `accuracy_attack`: PGD ascending the binary cross-entropy of each row.
- `fairness_attack`: the unified fairness attack. PGD ascending
  `sum_i w_i p_i`, p = sigmoid(logit), with `w = unified_weights(p, y, s, notion)`:
  in each label stratum of the notion (DP: all rows; EOpp: y = 1; EOdds: y = 0 and
  y = 1 separately) `+1/n_g` for the currently favoured group (higher mean p) and
  `-1/n_g` for the other, 0 outside the notion's strata. `sum_i w_i p_i` equals the
  current gap, so ascending it widens the gap; the notions differ only in the signs
  (the unification). By default the signs are recomputed from the current iterate at
  each step (`fix_signs=False`); `fix_signs=True` keeps the signs of the clean input.
- `direct_gap_attack`: PGD ascending the gap itself through autograd, the reference the
  unified form must coincide with (identical iterates: with adaptive signs the weighted
  sum has exactly the gap's gradient).

Every attack runs the model in eval mode, restores the caller's mode, never touches the
model's parameter gradients, and returns a detached x_adv of x's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robustfair.errors import ConfigError
from robustfair.group.domain import FeatureDomain
from robustfair.group.metrics import fairness_gap, group_mean_difference, notion_strata
from robustfair.group.tabular import OneHotBlock

NORMS = ("linf", "l2")
STARTS = ("zero", "uniform")

RowObjective = Callable[[torch.Tensor], torch.Tensor]  # x_adv [B, D] -> per-row values [B] to ascend


def _check_budget(eps: float, step_size: float, steps: int, norm: str, start: str) -> None:
    if norm not in NORMS:
        raise ConfigError(f"attack.norm: {norm!r} is not allowed; valid values: {', '.join(NORMS)}")
    if start not in STARTS:
        raise ConfigError(f"attack.start: {start!r} is not allowed; valid values: {', '.join(STARTS)}")
    if not eps >= 0:
        raise ConfigError(f"attack.eps: {eps!r} must be >= 0")
    if not step_size >= 0:
        raise ConfigError(f"attack.step_size: {step_size!r} must be >= 0")
    if steps < 0:
        raise ConfigError(f"attack.steps: {steps!r} must be >= 0")


def project(delta: torch.Tensor, eps: float, norm: str, mask: torch.Tensor) -> torch.Tensor:
    """delta [B, D] projected onto the eps-ball of `norm` over the columns where mask [D] is True
    (and zeroed elsewhere)."""
    delta = delta * mask
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.norm(dim=1, keepdim=True)
    return delta * torch.where(norms > eps, eps / norms.clamp_min(1e-12), torch.ones_like(norms))


def random_start(
    x: torch.Tensor, eps: float, norm: str, mask: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """A random delta [B, D] uniform in the eps-ball over the masked columns."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        return ((2 * u - 1) * eps).to(x.device) * mask
    direction = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device) * mask
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    dims = max(int(mask.sum()), 1)
    radius = eps * torch.rand(x.shape[0], 1, generator=generator, dtype=x.dtype).to(x.device) ** (1.0 / dims)
    return direction * radius


def pgd_ascent(
    x: torch.Tensor,
    objective: RowObjective,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    continuous_mask: torch.Tensor,
    start: str = "uniform",
    generator: torch.Generator | None = None,
    domain: FeatureDomain | None = None,
) -> torch.Tensor:
    """Projected gradient ascent of `objective(x_adv).sum()` over the continuous columns.

    L-inf steps move by `step_size * sign(grad)`; L2 steps by `step_size * grad / ||grad||_2`
    per row. Each iterate is projected onto the eps-ball, then (with a `domain`) clamped into
    the feature domain; at the end whole-number features are rounded (`FeatureDomain.round`).
    Returns detached x_adv [B, D] with ||x_adv - x|| <= eps on the masked columns and
    x_adv == x elsewhere.
    """
    _check_budget(eps, step_size, steps, norm, start)
    mask = continuous_mask.to(device=x.device, dtype=x.dtype)
    x = x.detach()

    def feasible(delta: torch.Tensor) -> torch.Tensor:
        delta = project(delta, eps, norm, mask)
        return delta if domain is None else domain.clamp(x + delta, x) - x

    delta = random_start(x, eps, norm, mask, generator) if start == "uniform" else torch.zeros_like(x)
    delta = feasible(delta)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(x + delta).sum(), delta)
        grad = grad * mask
        if norm == "linf":
            step = grad.sign()
        else:
            step = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
        delta = feasible(delta.detach() + step_size * step)
    if domain is None:
        return (x + delta).detach()
    return domain.round(domain.clamp((x + delta).detach(), x), x, eps, norm)


def switch_categories(
    x_adv: torch.Tensor, objective: RowObjective, blocks: Sequence[OneHotBlock], max_changes: int
) -> torch.Tensor:
    """Greedily switch up to `max_changes` one-hot blocks per row to raise `objective` per row.

    Each round: the gradient of the objective gives every (block, category) switch a
    first-order gain `g_c - g . x_block`; each row takes its best switch among blocks it
    has not switched yet, and keeps it only if its objective value really increases.
    Returns detached x_adv with every block still one-hot (or all-zero, if it was).
    """
    x_adv = x_adv.detach().clone()
    if max_changes <= 0 or not blocks:
        return x_adv
    rows = torch.arange(x_adv.shape[0], device=x_adv.device)
    switched = torch.zeros(x_adv.shape[0], len(blocks), dtype=torch.bool, device=x_adv.device)
    for _ in range(max_changes):
        probe = x_adv.clone().requires_grad_(True)
        values = objective(probe)
        (grad,) = torch.autograd.grad(values.sum(), probe)
        best_gain = torch.full((x_adv.shape[0],), float("-inf"), device=x_adv.device)
        best_block = torch.zeros(x_adv.shape[0], dtype=torch.long, device=x_adv.device)
        best_column = torch.zeros(x_adv.shape[0], dtype=torch.long, device=x_adv.device)
        for b, block in enumerate(blocks):
            g = grad[:, block.start : block.stop]
            current = x_adv[:, block.start : block.stop]
            gain = g - (g * current).sum(dim=1, keepdim=True)
            gain = gain.masked_fill(current > 0.5, float("-inf"))  # switching to itself is no switch
            gain[switched[:, b]] = float("-inf")
            block_gain, column = gain.max(dim=1)
            better = block_gain > best_gain
            best_gain = torch.where(better, block_gain, best_gain)
            best_block = torch.where(better, torch.full_like(best_block, b), best_block)
            best_column = torch.where(better, column + block.start, best_column)
        candidate = x_adv.clone()
        starts = torch.tensor([b.start for b in blocks], device=x_adv.device)[best_block]
        stops = torch.tensor([b.stop for b in blocks], device=x_adv.device)[best_block]
        cols = torch.arange(x_adv.shape[1], device=x_adv.device)
        in_block = (cols[None, :] >= starts[:, None]) & (cols[None, :] < stops[:, None])
        candidate[in_block] = 0.0
        candidate[rows, best_column] = 1.0
        with torch.no_grad():
            improved = (objective(candidate) > values.detach()) & torch.isfinite(best_gain) & (best_gain > 0)
        x_adv = torch.where(improved[:, None], candidate, x_adv)
        switched[rows[improved], best_block[improved]] = True
    return x_adv.detach()


class _EvalMode:
    """Run the model in eval mode inside the block; restore the caller's mode after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


def accuracy_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    continuous_mask: torch.Tensor,
    norm: str = "linf",
    start: str = "uniform",
    blocks: Sequence[OneHotBlock] = (),
    max_categorical_changes: int = 0,
    generator: torch.Generator | None = None,
    domain: FeatureDomain | None = None,
) -> torch.Tensor:
    """PGD on the binary cross-entropy of each row (untargeted accuracy attack).

    model: x [B, D] -> logit [B]; y int [B] in {0, 1}. Returns x_adv [B, D].
    """
    target = y.to(x.dtype)

    def row_loss(x_adv: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(x_adv), target, reduction="none")

    with _EvalMode(model):
        x_adv = pgd_ascent(
            x,
            row_loss,
            eps=eps,
            step_size=step_size,
            steps=steps,
            norm=norm,
            continuous_mask=continuous_mask,
            start=start,
            generator=generator,
            domain=domain,
        )
        return switch_categories(x_adv, row_loss, blocks, max_categorical_changes)


def unified_weights(p: torch.Tensor, y: torch.Tensor, s: torch.Tensor, notion: str) -> torch.Tensor:
    """The unified fairness attack's per-row weights w [N] (detached) for `notion`.

    In each label stratum m of the notion, with d = E[p | s=1, m] - E[p | s=0, m]:
    `w_i = sign(d) * (1[s_i=1]/n_1m - 1[s_i=0]/n_0m)` for rows i in m, 0 elsewhere.
    Then `sum_i w_i p_i` equals `fairness_gap(notion, p, y, s)`, and with p held fixed
    in w it has the same gradient (sign(0) = 0 matches the subgradient torch uses for
    |.| at 0; a stratum missing a group gets weight 0, as its gap is defined 0).
    """
    p = p.detach()
    w = torch.zeros_like(p)
    for m in notion_strata(notion, y):
        in1 = (m & (s == 1)).to(p.dtype)
        in0 = (m & (s == 0)).to(p.dtype)
        n1, n0 = in1.sum(), in0.sum()
        if n1 == 0 or n0 == 0:
            continue
        sign = torch.sign(group_mean_difference(p, s, m))
        w = w + sign * (in1 / n1 - in0 / n0)
    return w


def fairness_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    s: torch.Tensor,
    *,
    notion: str,
    eps: float,
    step_size: float,
    steps: int,
    continuous_mask: torch.Tensor,
    norm: str = "linf",
    start: str = "uniform",
    fix_signs: bool = False,
    blocks: Sequence[OneHotBlock] = (),
    max_categorical_changes: int = 0,
    generator: torch.Generator | None = None,
    domain: FeatureDomain | None = None,
) -> torch.Tensor:
    """The unified fairness attack: PGD widening the `notion` gap of the batch (x, y, s).

    The gap is a batch-level quantity, so the batch should be the whole evaluation set
    (or the training minibatch). Returns x_adv [B, D].
    """
    fixed = None
    if fix_signs:
        with _EvalMode(model), torch.no_grad():
            fixed = unified_weights(torch.sigmoid(model(x)), y, s, notion)

    def weighted_probability(x_adv: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(model(x_adv))
        w = fixed if fixed is not None else unified_weights(p, y, s, notion)
        return w * p

    with _EvalMode(model):
        x_adv = pgd_ascent(
            x,
            weighted_probability,
            eps=eps,
            step_size=step_size,
            steps=steps,
            norm=norm,
            continuous_mask=continuous_mask,
            start=start,
            generator=generator,
            domain=domain,
        )
        return switch_categories(x_adv, weighted_probability, blocks, max_categorical_changes)


def direct_gap_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    s: torch.Tensor,
    *,
    notion: str,
    eps: float,
    step_size: float,
    steps: int,
    continuous_mask: torch.Tensor,
    norm: str = "linf",
    start: str = "uniform",
    generator: torch.Generator | None = None,
    domain: FeatureDomain | None = None,
) -> torch.Tensor:
    """PGD ascending `fairness_gap(notion, sigmoid(model(x_adv)), y, s)` through autograd.

    The per-notion reference for the unified attack (continuous columns only).
    """

    def gap_as_rows(x_adv: torch.Tensor) -> torch.Tensor:
        # pgd_ascent sums the rows; a one-element "row vector" carries the batch-level gap
        return fairness_gap(notion, torch.sigmoid(model(x_adv)), y, s).reshape(1)

    with _EvalMode(model):
        return pgd_ascent(
            x,
            gap_as_rows,
            eps=eps,
            step_size=step_size,
            steps=steps,
            norm=norm,
            continuous_mask=continuous_mask,
            start=start,
            generator=generator,
            domain=domain,
        )
