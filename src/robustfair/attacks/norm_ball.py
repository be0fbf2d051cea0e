"""Geometry of the threat model: start points, steepest-ascent steps and projection.

Budgets are per-sample float tensors [B] (see `checks.per_sample_budget`), broadcast over
the remaining dimensions of x, so one code path serves a global eps and FRL's, CFA's or
DAFA's per-class eps. Inputs are [B, ...]; `clamp` is the valid input box (None: none).
"""

from __future__ import annotations

import torch

# Keeps normalisation finite when a gradient or perturbation is exactly zero.
_TINY = 1e-12


def broadcast(budget: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ..., 1] matching x's rank and dtype."""
    return budget.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def draw(kind: str, shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """`rand` or `randn` draws; from `generator` (on its own device) when given, then moved to like's device."""
    fn = torch.rand if kind == "rand" else torch.randn
    if generator is None:
        return fn(shape, device=like.device, dtype=like.dtype)
    return fn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def project(
    x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str, clamp: tuple[float, float] | None
) -> torch.Tensor:
    """Nearest point of the eps-ball around x (L-inf box or per-sample L2 ball), then the input box.

    Clamping after projecting keeps the point in the ball: x lies in the box, so clamping
    only shrinks each coordinate of the perturbation.
    """
    radius = broadcast(eps, x)
    if norm == "linf":
        x_adv = torch.minimum(torch.maximum(x_adv, x - radius), x + radius)
    else:
        delta = x_adv - x
        length = broadcast(_flat_norm(delta), x)
        x_adv = x + delta * torch.clamp(radius / (length + _TINY), max=1.0)
    if clamp is not None:
        x_adv = x_adv.clamp(clamp[0], clamp[1])
    return x_adv


def ascent_step(x_adv: torch.Tensor, grad: torch.Tensor, step_size: torch.Tensor, norm: str) -> torch.Tensor:
    """One steepest-ascent step: `step * sign(grad)` (L-inf) or `step * grad / ||grad||_2` (L2)."""
    step = broadcast(step_size, x_adv)
    if norm == "linf":
        return x_adv + step * grad.sign()
    return x_adv + step * grad / (broadcast(_flat_norm(grad), grad) + _TINY)


def start_point(
    x: torch.Tensor,
    start: str | torch.Tensor,
    eps: torch.Tensor,
    norm: str,
    start_scale: float,
    clamp: tuple[float, float] | None,
    generator: torch.Generator | None,
    projected: bool = True,
) -> torch.Tensor:
    """The first iterate x^0, detached, inside the eps-ball and the input box.

    start: "uniform" - uniform in the eps-ball (Madry et al.'s PGD; for L2, uniform in the
             ball's volume: a Gaussian direction and radius eps * U^(1/d));
           "normal"  - x + start_scale * N(0, I) (TRADES, FAT, BAT: start_scale 0.001);
           "none"    - x itself;
           a tensor shaped like x - that explicit point (for reproducing a trajectory).
    The result is projected onto the ball and the box; for "normal" with the usual 0.001
    scale and eps of a few /255 the ball projection changes nothing in practice, but the
    box clamp moves every pixel at 0 or 1. projected=False returns the point as drawn
    (the TRADES code's unclamped start).
    """
    if isinstance(start, torch.Tensor):
        x0 = start.detach().to(device=x.device, dtype=x.dtype)
    elif start == "none":
        x0 = x.detach().clone()
    elif start == "normal":
        x0 = x + start_scale * draw("randn", x.shape, x, generator)
    elif norm == "linf":
        x0 = x + (2 * draw("rand", x.shape, x, generator) - 1) * broadcast(eps, x)
    else:
        direction = draw("randn", x.shape, x, generator)
        direction = direction / (broadcast(_flat_norm(direction), x) + _TINY)
        dims = x[0].numel()
        fraction = draw("rand", x.shape[:1], x, generator) ** (1.0 / dims)
        x0 = x + direction * broadcast(eps * fraction.to(eps.dtype), x)
    if not projected:
        return x0.detach()
    return project(x0, x, eps, norm, clamp).detach()
