"""Building a run's model on its device from the config and the data's geometry."""

from __future__ import annotations

import torch
from torch import nn

from robustfair.engine.config import RunConfig
from robustfair.errors import ConfigError, RobustfairError


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; a named device must exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available on this machine")
    return device


def build_run_model(config: RunConfig, in_channels: int, input_size: int, num_classes: int) -> nn.Module:
    """The config's model for inputs [C, size, size] (or [D] features) and `num_classes` outputs."""
    from robustfair.models import build_model

    m = config.model
    normalize = None if m.normalize_mean is None else (tuple(m.normalize_mean), tuple(m.normalize_std))
    try:
        return build_model(m.name, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                           normalize=normalize, **m.options)
    except RobustfairError:
        raise
    except (TypeError, ValueError) as err:  # a model option of the wrong type or shape
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"model: cannot build {m.name!r} with options {m.options!r} for this data "
                          f"({in_channels} channels, size {input_size}): {first}") from None


__all__ = ["resolve_device", "build_run_model"]
