"""What an attack ascends: a per-sample objective built from `robustfair.losses`.

An objective maps `(logits_adv [B, C], labels [B], logits_clean [B, C] or None) -> [B]`
(float32; float64 when the model computes in float64). The attack ascends the batch *sum*,
so each sample's gradient is its own term's gradient, independent of the batch size and of
the other samples (eval-mode BN).

Names: `ce` (cross entropy), `kl` (TRADES: KL(p(x) || p(x')) with p(x) from the clean
input computed once, without gradient), `margin` (Carlini-Wagner: max_{j != y} z_j - z_y).

`kl` is the TRADES code's own expression, `kl_div(log_softmax(f(x')), softmax(f(x)))`
(`robustfair.losses.trades_kl`), checked against yaodongyu/TRADES@6e8e11b `trades.py`:
ascending its batch sum gives the same input gradient, bit for bit, as the code's
`reduction="sum"`, so the sign steps agree (other algebraically equal forms flip the first
step of a few pixels at the 0.001-scale start).

A callable `loss(logits_adv, labels, logits_clean) -> [B]` is accepted too. It receives
clean logits only when it declares it needs them with an attribute
`needs_clean_logits = True` (otherwise `logits_clean` is None), which spares a forward
pass for the common label-based losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from robustfair.errors import ConfigError
from robustfair.losses import cross_entropy, margin, trades_kl

LOSSES = ("ce", "kl", "margin")

LossFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _ce(logits_adv: torch.Tensor, labels: torch.Tensor, logits_clean: torch.Tensor | None) -> torch.Tensor:
    return cross_entropy(logits_adv, labels)


def _kl(logits_adv: torch.Tensor, labels: torch.Tensor, logits_clean: torch.Tensor | None) -> torch.Tensor:
    return trades_kl(logits_clean, logits_adv)


def _margin(logits_adv: torch.Tensor, labels: torch.Tensor, logits_clean: torch.Tensor | None) -> torch.Tensor:
    return margin(logits_adv, labels)


def objective_precision(values: torch.Tensor) -> torch.Tensor:
    """Logits or losses at the precision objectives use: float64 stays float64 (a float64
    model), anything lower (bfloat16 and float16 under autocast) becomes float32."""
    return values if values.dtype == torch.float64 else values.float()


@dataclass(frozen=True)
class Objective:
    """A resolved attack objective; `name` is what results.json records."""

    name: str
    function: LossFunction
    needs_clean_logits: bool

    def __call__(
        self, logits_adv: torch.Tensor, labels: torch.Tensor, logits_clean: torch.Tensor | None
    ) -> torch.Tensor:
        value = self.function(logits_adv, labels, logits_clean)
        if value.dim() != 1 or value.shape[0] != logits_adv.shape[0]:
            raise ConfigError(
                f"loss {self.name!r} must return one value per sample, shape "
                f"[{logits_adv.shape[0]}], got {tuple(value.shape)}"
            )
        return objective_precision(value)


_NAMED = {
    "ce": Objective("ce", _ce, needs_clean_logits=False),
    "kl": Objective("kl", _kl, needs_clean_logits=True),
    "margin": Objective("margin", _margin, needs_clean_logits=False),
}


def loss_name(loss: Any) -> str:
    """The name results.json records for a loss given by name or as a callable."""
    if isinstance(loss, str):
        return loss
    return getattr(loss, "__name__", type(loss).__name__)


def resolve_objective(loss: str | LossFunction, *, targeted: bool = False) -> Objective:
    """The objective for `loss` (a name in LOSSES or a callable); `kl` cannot be targeted."""
    if isinstance(loss, str):
        if loss not in _NAMED:
            raise ConfigError(
                f"loss: {loss!r} is not allowed; valid values: {', '.join(LOSSES)} "
                "or a callable (logits_adv, labels, logits_clean) -> [B]"
            )
        if targeted and loss == "kl":
            raise ConfigError("loss: 'kl' has no target class; a targeted attack needs 'ce', 'margin' or a callable")
        return _NAMED[loss]
    if not callable(loss):
        raise ConfigError(f"loss: expected one of {', '.join(LOSSES)} or a callable, got {loss!r}")
    return Objective(loss_name(loss), loss, bool(getattr(loss, "needs_clean_logits", False)))


def objective_gradient(
    model: torch.nn.Module,
    x_adv: torch.Tensor,
    objective: Objective,
    labels: torch.Tensor,
    logits_clean: torch.Tensor | None,
    direction: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of `direction * sum_i objective_i` w.r.t. the input only, and the detached logits.

    Uses `torch.autograd.grad` on the input, so no parameter `.grad` is touched. Works under
    a caller's autocast: the objective is evaluated in float32 (float64 for a float64 model). x_adv: [B, ...], detached.
    """
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_adv)
        total = objective(logits, labels, logits_clean).sum()
        if direction != 1.0:
            total = total * direction
        (grad,) = torch.autograd.grad(total, x_adv, allow_unused=True)
    if grad is None:  # an output that ignores its input: nothing to ascend
        grad = torch.zeros_like(x_adv)
    return grad, logits.detach()
