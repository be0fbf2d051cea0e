"""The five trainings compared in the group-fairness study (seed 002: "To be Robust and to
be Fair: Aligning Fairness with Robustness"; METHODS.md, last section).

With BCE the binary cross-entropy, p = sigmoid(f(x)), gap = `fairness_gap(notion, ...)`
on the minibatch, x_acc = accuracy attack, x_fair = unified fairness attack (for
`notion`), both crafted on the minibatch with `train.attack`, and lam = `train.lam`:

- erm:      BCE(f(x), y)
- fair_erm: BCE(f(x), y)     + lam * gap(p(x))          (fairness-regularised ERM)
- acc_at:   BCE(f(x_acc), y)                            (accuracy adversarial training)
- fair_at:  BCE(f(x), y)     + lam * gap(p(x_fair))     (fairness adversarial training)
- joint:    BCE(f(x_acc), y) + lam * gap(p(x_fair))     (the seed's joint training)

The gap of a minibatch needs both groups in it, so batches should not be tiny (a stratum
missing a group contributes 0 to the loss; reported gaps never do, see metrics.py).
Attacks respect the feature domain unless `attack.domain: unbounded`. Everything is
seeded by `train.seed`: initialisation, batch order and the attacks' random starts.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustfair.errors import TrainingDivergedError
from robustfair.group.attacks import accuracy_attack, fairness_attack
from robustfair.group.config import AttackConfig, ModelConfig, TrainConfig
from robustfair.group.domain import FeatureDomain
from robustfair.group.metrics import fairness_gap
from robustfair.group.models import build_group_model
from robustfair.group.tabular import FeatureLayout, GroupData
from robustfair.registry import Registry


@dataclasses.dataclass(frozen=True)
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor


@dataclasses.dataclass
class TrainingContext:
    """What a training loss needs besides the model and the batch."""

    config: TrainConfig
    attack_args: dict
    generator: torch.Generator


TrainingLoss = Callable[[nn.Module, Batch, TrainingContext], tuple[torch.Tensor, dict[str, float]]]


def attack_arguments(attack: AttackConfig, layout: FeatureLayout) -> dict:
    """Keyword arguments shared by `accuracy_attack` and `fairness_attack` for this budget
    (with `attack.domain: bounded`, the layout's feature domain)."""
    return {
        "eps": attack.eps,
        "step_size": attack.step_size,
        "steps": attack.steps,
        "norm": attack.norm,
        "start": attack.start,
        "continuous_mask": layout.continuous_mask(),
        "blocks": layout.perturbable_blocks() if attack.max_categorical_changes else (),
        "max_categorical_changes": attack.max_categorical_changes,
        "domain": FeatureDomain.from_layout(layout) if attack.domain == "bounded" else None,
    }


def _bce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(model(x), y.float())


def _gap(model: nn.Module, x: torch.Tensor, batch: Batch, notion: str) -> torch.Tensor:
    return fairness_gap(notion, torch.sigmoid(model(x)), batch.y, batch.s)


def _x_acc(model: nn.Module, batch: Batch, ctx: TrainingContext) -> torch.Tensor:
    return accuracy_attack(model, batch.x, batch.y, generator=ctx.generator, **ctx.attack_args)


def _x_fair(model: nn.Module, batch: Batch, ctx: TrainingContext) -> torch.Tensor:
    return fairness_attack(
        model,
        batch.x,
        batch.y,
        batch.s,
        notion=ctx.config.notion,
        fix_signs=ctx.config.attack.fix_signs,
        generator=ctx.generator,
        **ctx.attack_args,
    )


def _combine(ce: torch.Tensor, gap: torch.Tensor | None, lam: float) -> tuple[torch.Tensor, dict[str, float]]:
    if gap is None:
        return ce, {"ce": float(ce.detach())}
    return ce + lam * gap, {"ce": float(ce.detach()), "gap": float(gap.detach())}


def erm_loss(model: nn.Module, batch: Batch, ctx: TrainingContext) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE(f(x), y)."""
    return _combine(_bce(model, batch.x, batch.y), None, 0.0)


def fair_erm_loss(model: nn.Module, batch: Batch, ctx: TrainingContext) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE(f(x), y) + lam * gap(p(x))."""
    return _combine(_bce(model, batch.x, batch.y), _gap(model, batch.x, batch, ctx.config.notion), ctx.config.lam)


def acc_at_loss(model: nn.Module, batch: Batch, ctx: TrainingContext) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE(f(x_acc), y)."""
    return _combine(_bce(model, _x_acc(model, batch, ctx), batch.y), None, 0.0)


def fair_at_loss(model: nn.Module, batch: Batch, ctx: TrainingContext) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE(f(x), y) + lam * gap(p(x_fair))."""
    x_fair = _x_fair(model, batch, ctx)
    return _combine(_bce(model, batch.x, batch.y), _gap(model, x_fair, batch, ctx.config.notion), ctx.config.lam)


def joint_loss(model: nn.Module, batch: Batch, ctx: TrainingContext) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE(f(x_acc), y) + lam * gap(p(x_fair))."""
    x_acc = _x_acc(model, batch, ctx)
    x_fair = _x_fair(model, batch, ctx)
    return _combine(_bce(model, x_acc, batch.y), _gap(model, x_fair, batch, ctx.config.notion), ctx.config.lam)


TRAININGS: Registry[TrainingLoss] = Registry(
    "group training",
    {
        "erm": erm_loss,
        "fair_erm": fair_erm_loss,
        "acc_at": acc_at_loss,
        "fair_at": fair_at_loss,
        "joint": joint_loss,
    },
)


@dataclasses.dataclass
class TrainingResult:
    model: nn.Module
    history: list[dict[str, float]]
    seconds: float


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train_group_model(
    data: GroupData, model_config: ModelConfig, config: TrainConfig, log: Callable[[dict], None] | None = None
) -> TrainingResult:
    """Train a fresh model on `data.train` with `config.method`; returns it in eval mode.

    history: one dict per epoch with the mean loss, ce and (where used) gap over its steps.
    Raises TrainingDivergedError (naming epoch and step) on a non-finite loss.
    """
    loss_fn = TRAININGS[config.method]
    torch.manual_seed(config.seed)
    model = build_group_model(model_config.name, data.layout.num_features, model_config.hidden)
    optimizer = _optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    ctx = TrainingContext(config, attack_arguments(config.attack, data.layout), generator)
    x, y, s = data.train.x, data.train.y, data.train.s
    n = len(data.train)
    batch_size = n if config.batch_size == 0 else min(config.batch_size, n)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    model.train()
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(n, generator=generator)
        sums: dict[str, float] = {}
        steps = 0
        for step, first in enumerate(range(0, n, batch_size), start=1):
            idx = order[first : first + batch_size]
            loss, logs = loss_fn(model, Batch(x[idx], y[idx], s[idx]), ctx)
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(f"{config.method}: loss is {loss.item()} at epoch {epoch}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            for k, v in {"loss": loss.item(), **logs}.items():
                sums[k] = sums.get(k, 0.0) + v
        record = {"epoch": epoch, **{k: v / steps for k, v in sums.items()}}
        history.append(record)
        if log is not None:
            log(record)
    optimizer.zero_grad(set_to_none=True)  # hand back a model without stale gradients
    model.eval()
    return TrainingResult(model, history, time.perf_counter() - start)
