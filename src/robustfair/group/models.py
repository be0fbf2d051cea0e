"""Binary classifiers for tabular data: logistic regression and an MLP.

Both map x float [B, D] (encoded, standardised features) to one logit per row, [B];
`P(y = 1 | x) = sigmoid(logit)`. One logit (not two) because every group-fairness gap
here is a statement about that one probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustfair.errors import ConfigError
from robustfair.registry import Registry


class LogisticRegression(nn.Module):
    """logit = w . x + b; x: [B, D] -> [B]."""

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLP(nn.Module):
    """Fully connected ReLU network with hidden widths `hidden`; x: [B, D] -> logit [B]."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        if not hidden:
            raise ConfigError("model.hidden: an MLP needs at least one hidden layer; use model.name=logistic for none")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _logistic(in_features: int, hidden: Sequence[int] = ()) -> nn.Module:
    return LogisticRegression(in_features)


def _mlp(in_features: int, hidden: Sequence[int] = (64, 64)) -> nn.Module:
    return MLP(in_features, hidden)


GROUP_MODELS = Registry("group model", {"logistic": _logistic, "mlp": _mlp})


def build_group_model(name: str, in_features: int, hidden: Sequence[int] = (64, 64)) -> nn.Module:
    """A fresh model by registry name (`logistic` ignores `hidden`)."""
    return GROUP_MODELS[name](in_features, hidden)
