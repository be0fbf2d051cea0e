"""`train.grad_clip` clips every optimiser step of an epoch, not only the first.

The loop once received the model's parameters as a generator, which the first
clip_grad_norm_ call spent: every later step of the epoch ran unclipped, with only a
warning. With SGD (lr 1, no momentum, no weight decay) each clipped step moves the
parameters by at most `grad_clip`, so an epoch of n steps moves them by at most n * clip.
"""

from __future__ import annotations

import torch
from torch import nn

from robustfair.engine.config import TrainConfig, resolve_method_config
from robustfair.engine.epoch_loop import run_epoch
from robustfair.methods import METHODS


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _epoch_displacement(grad_clip: float | None, steps: int = 6) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with torch.no_grad():
        model[1].weight.mul_(50.0)  # confidently wrong logits: gradients far above the clip
    method = METHODS["erm"](resolve_method_config({"name": "erm"}), num_classes=3)
    generator = torch.Generator().manual_seed(1)
    loader = [(torch.rand(8, 3, 2, 2, generator=generator), torch.arange(8) % 3) for _ in range(steps)]
    before = _flat(model)
    run_epoch(
        model=model,
        parameters=model.parameters(),  # a generator, as nn.Module gives it
        method=method,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        loader=loader,
        cfg=TrainConfig(grad_clip=grad_clip),
        device=torch.device("cpu"),
        epoch=0,
        world_size=1,
        show_progress=False,
    )
    return float((_flat(model) - before).norm())


def test_every_step_of_an_epoch_is_clipped():
    clip, steps = 1e-3, 6
    unclipped = _epoch_displacement(None, steps)
    assert unclipped > 100 * steps * clip  # the bound below is not met by accident
    clipped = _epoch_displacement(clip, steps)
    assert 0 < clipped <= steps * clip * (1 + 1e-4)
