"""Building a run's model on its device from the config and the data's geometry.

`model.name` is a registry name (`robustfair list models`), your own
`package.module:factory` (`models/factory.py`), or the marker `<object ...>` of a model
passed to `robustfair.train(model=...)` as an object, which only that object can fill
(`build_run_model(..., model=obj)`). A model of yours is tried on two samples of the data
before the first step (`check_model_output`), so a wrong output shape is one line, not a
failure deep inside a loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from robustfair.engine.config import RunConfig
from robustfair.errors import CheckpointError, ConfigError, RobustfairError, UnknownNameError


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


def object_model_error(name: str) -> ConfigError:
    """Why a run whose model was passed as an object cannot be rebuilt, and what to do."""
    return ConfigError(
        f"model.name {name!r}: this run trained a model object passed to robustfair.train(), which "
        "its config cannot rebuild; pass the same model again (robustfair.train(config, run_dir, "
        "model=net, resume=True) or robustfair.evaluate(run_dir, model=net)), or train with "
        "model.name: 'package.module:factory' so the command line can rebuild it"
    )


def check_model_name(config: RunConfig, *, model_given: bool = False) -> None:
    """UnknownNameError / ConfigError now for a model name the run could not build."""
    from robustfair.models import MODELS, import_factory, is_factory_path, is_object_model_name

    name = config.model.name
    if is_object_model_name(name):
        if not model_given:
            raise object_model_error(name)
    elif is_factory_path(name):
        import_factory(name)
    else:
        try:
            MODELS[name]
        except UnknownNameError as err:
            raise UnknownNameError(f"model.name: {err}; or your own model as 'package.module:factory'") from None


def build_run_model(
    config: RunConfig, in_channels: int, input_size: int, num_classes: int, model: nn.Module | None = None
) -> nn.Module:
    """The config's model for inputs [C, size, size] (or [D] features) and `num_classes` outputs.

    model: a model object passed to `robustfair.train`; used as is. When the config also
    names a factory, the factory must rebuild the same architecture (same state-dict keys
    and shapes), so that `eval` and `analyze` can rebuild the run's model later.
    """
    from robustfair.models import build_factory_model, build_model, is_factory_path, is_object_model_name

    m = config.model
    normalize = None if m.normalize_mean is None else (tuple(m.normalize_mean), tuple(m.normalize_std))
    if is_object_model_name(m.name) and model is None:
        raise object_model_error(m.name)
    if is_factory_path(m.name):
        built = build_factory_model(
            m.name,
            m.kwargs,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            normalize=normalize,
        )
        if model is not None:
            check_same_architecture(model, built, m.name)
            return model
        return built
    if model is not None:
        return model
    try:
        return build_model(
            m.name,
            num_classes=num_classes,
            in_channels=in_channels,
            input_size=input_size,
            normalize=normalize,
            **m.options,
        )
    except RobustfairError:
        raise
    except (TypeError, ValueError) as err:  # a model option of the wrong type or shape
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"model: cannot build {m.name!r} with options {m.options!r} for this data "
            f"({in_channels} channels, size {input_size}): {first}"
        ) from None


def check_same_architecture(model: nn.Module, rebuilt: nn.Module, factory: str) -> None:
    """ConfigError unless `rebuilt` has the same state-dict keys and shapes as `model`."""
    given = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    built = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if given == built:
        return
    differ = sorted(set(given) ^ set(built)) or sorted(k for k in given if given[k] != built[k])
    raise ConfigError(
        f"model: the model object passed to robustfair.train() is not what model.name {factory!r} "
        f"builds ({len(given)} vs {len(built)} tensors; first difference: {differ[0]!r}); name the "
        "factory that builds this model, or leave model.name unset"
    )


def check_model_output(model: nn.Module, x: torch.Tensor, num_classes: int, label: str) -> None:
    """Run `model` (eval mode, no gradient) on a few samples x; ConfigError unless logits [n, num_classes].

    The model's mode is restored; eval mode draws no random numbers and updates no
    BatchNorm statistics, so the run's random stream is unchanged.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(
            f"model {label!r} fails on a batch of this data (x {list(x.shape)}, float in [0, 1]): "
            f"{type(err).__name__}{': ' + first if first else ''}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(
            f"model {label!r} returned a {type(out).__name__}; it must return logits, a tensor [batch, {num_classes}]"
        )
    if tuple(out.shape) != (x.shape[0], num_classes):
        raise ConfigError(
            f"model {label!r} returns shape {list(out.shape)} for a batch of {x.shape[0]}; the data "
            f"has {num_classes} classes, so logits must be [{x.shape[0]}, {num_classes}]"
        )


def check_factory_source(config: RunConfig, target: str | Path, checkpoint: str | Path) -> None:
    """Refuse to import a factory named only inside a checkpoint file.

    A run directory's `config.yaml` is a config like the ones `robustfair train` reads, so
    a factory it names is imported (that is how `eval RUN` rebuilds your model). A factory
    named only in a checkpoint's metadata is never imported: a checkpoint file from
    elsewhere must not run code. Raises CheckpointError saying what to do instead.
    """
    from robustfair.models import is_factory_path

    name = config.model.name
    if not is_factory_path(name):
        return
    target, checkpoint = Path(target), Path(checkpoint)
    run_dir = (
        target if target.is_dir() else (checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None)
    )
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        try:
            saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
            model = saved.get("model") or {}
            if model.get("name") == name and (model.get("kwargs") or {}) == dict(config.model.kwargs):
                return
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            pass
    raise CheckpointError(
        f"{str(checkpoint)!r} names the model factory {name!r}, and robustfair never imports code "
        "named inside a checkpoint file: evaluate the run directory whose config.yaml names it, or "
        f"name it yourself: robustfair eval --model {name} --dataset NAME --weights {checkpoint}"
    )


__all__ = [
    "resolve_device",
    "build_run_model",
    "check_model_name",
    "check_model_output",
    "check_same_architecture",
    "check_factory_source",
    "object_model_error",
]
