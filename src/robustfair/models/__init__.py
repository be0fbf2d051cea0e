"""Model definitions (no torchvision), the model registry, and your own models.

Every model maps x: [B, in_channels, H, W] (or [B, D] for `mlp`) float in [0, 1] to logits
[B, num_classes]; an optional `Normalize(mean, std)` is its first layer, so attacks stay
in pixel space. No in-place activations: TRADES runs two forward passes before one
backward.

Your own model: a config names it `model.name: "package.module:factory"` (with
`model.kwargs`), built by `build_factory_model` (see `models/factory.py`).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from robustfair.errors import ConfigError
from robustfair.models.factory import (
    build_factory_model,
    factory_path_of,
    import_factory,
    is_factory_path,
    is_object_model_name,
    object_model_name,
)
from robustfair.models.normalize import Normalize, NormalizeSpec
from robustfair.models.preact_resnet import PreActResNet, preact_resnet18
from robustfair.models.resnet import ResNet, resnet18
from robustfair.models.small import MLP, SmallCNN, mlp, small_cnn
from robustfair.models.wide_resnet import WideResNet, wide_resnet, wrn28_10, wrn34_10
from robustfair.registry import Registry

MODELS: Registry = Registry(
    "model",
    {
        "preact_resnet18": preact_resnet18,
        "resnet18": resnet18,
        "wide_resnet": wide_resnet,
        "wrn28_10": wrn28_10,
        "wrn34_10": wrn34_10,
        "small_cnn": small_cnn,
        "mlp": mlp,
    },
)

_SHARED_ARGUMENTS = ("num_classes", "in_channels", "input_size", "normalize")


def model_options(name: str) -> dict[str, Any]:
    """The model-specific keyword arguments of `name` and their defaults."""
    signature = inspect.signature(MODELS[name])
    return {p.name: p.default for p in signature.parameters.values() if p.name not in _SHARED_ARGUMENTS}


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | tuple[int, ...] = 32,
    normalize: NormalizeSpec | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model `name`.

    num_classes: outputs; in_channels: C of the input (D for tabular `mlp`);
    input_size: H (square) or [H, W] (or [] for tabular `mlp`); global-pooling models
    accept any size. normalize: (mean, std), one value or one per channel, applied first.
    kwargs: model options (e.g. depth, widen_factor, dropout for `wide_resnet`); an
    unknown one raises ConfigError naming the valid ones.
    """
    constructor = MODELS[name]
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        valid = ", ".join(sorted(options)) or "none"
        raise ConfigError(f"model.{unknown[0]}: unknown option for model {name!r}; valid options: {valid}")
    if isinstance(input_size, list):
        input_size = tuple(input_size)
    for option in ("hidden_sizes", "conv_channels"):
        if isinstance(kwargs.get(option), list):
            kwargs[option] = tuple(kwargs[option])
    return constructor(
        num_classes=num_classes, in_channels=in_channels, input_size=input_size, normalize=normalize, **kwargs
    )


def model_summary(model: nn.Module) -> dict[str, Any]:
    """Counts for logs and reports: class name, parameters (all and trainable), buffer elements, MiB."""
    model = getattr(model, "module", model)  # the DDP wrapper's inner model
    parameters = list(model.parameters())
    return {
        "model": type(model).__name__,
        "parameters": sum(p.numel() for p in parameters),
        "trainable_parameters": sum(p.numel() for p in parameters if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
        "parameter_mib": sum(p.numel() * p.element_size() for p in parameters) / 2**20,
    }


__all__ = [
    "MODELS",
    "build_model",
    "model_options",
    "model_summary",
    "build_factory_model",
    "import_factory",
    "is_factory_path",
    "is_object_model_name",
    "object_model_name",
    "factory_path_of",
    "Normalize",
    "PreActResNet",
    "ResNet",
    "WideResNet",
    "SmallCNN",
    "MLP",
]
