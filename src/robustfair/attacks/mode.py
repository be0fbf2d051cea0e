"""The module mode used while crafting adversarial examples, restored afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from robustfair.errors import ConfigError

BN_MODES = ("eval", "train")


@contextlib.contextmanager
def crafting_mode(model: nn.Module, bn_mode: str = "eval") -> Iterator[nn.Module]:
    """Put `model` in eval (`bn_mode="eval"`, BatchNorm frozen) or train mode for crafting.

    On exit, even on an exception, every submodule gets back its own `training` flag, so a
    caller that keeps some layers frozen in eval inside a training model keeps that mix.
    With `bn_mode="train"` BatchNorm uses batch statistics (samples are no longer
    independent) and updates its running statistics, as methods choosing it expect.
    """
    if bn_mode not in BN_MODES:
        raise ConfigError(f"bn_mode: {bn_mode!r} is not allowed; valid values: {', '.join(BN_MODES)}")
    saved = [(module, module.training) for module in model.modules()]
    model.train(bn_mode == "train")
    try:
        yield model
    finally:
        for module, training in saved:
            module.training = training
