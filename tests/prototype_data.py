"""Shared by the attack tests: noisy copies of 5 fixed prototypes and a small MLP trained on them."""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 5


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy copies of 5 fixed prototypes in [0, 1]^48, shaped as tiny 3x4x4 images."""
    prototypes = 0.2 + 0.6 * torch.rand(NUM_CLASSES, 48, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = (prototypes[y] + 0.3 * torch.randn(n, 48, generator=g)).clamp(0, 1)
    return x.view(n, 3, 4, 4), y


def trained_mlp() -> nn.Module:
    """A small ReLU network trained deterministically on the prototype data, in eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES))
    x, y = make_data(200, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()


class RowwiseLinear(nn.Module):
    """`nn.Linear` computed as a broadcast product and a last-dimension sum, row by row."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) * self.weight).sum(-1) + self.bias


def rowwise_mlp() -> nn.Module:
    """The trained MLP in float64 with batch-independent rounding: a sample's outputs and
    input gradients are bit-for-bit the same whichever samples share its batch (a BLAS
    matmul's rounding can depend on the batch size), so implementations that batch
    differently (compact vs masked attacks) can be compared for exact equality."""
    trained = trained_mlp().double()
    return nn.Sequential(nn.Flatten(), RowwiseLinear(trained[1]), nn.ReLU(), RowwiseLinear(trained[3])).eval()
