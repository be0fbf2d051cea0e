"""What `robustfair.train(config, model=..., train_data=..., test_data=...)` trains and records.

The run directory, checkpoints, resume and reports are those of any run; what changes is
where the model and data come from, and what the saved config records so that the run
can be rebuilt later:

- model, a string: a registry name or `package.module:factory` (as `model.name`);
- model, a function or class importable by its path: recorded as that factory;
- model, an `nn.Module` object: trained in place (moved to the run's device). When the
  config's `model.name` is a factory, the factory is recorded (and must build the same
  architecture), so `robustfair eval RUN` can rebuild the model; otherwise the run
  records `<object package.module.Class>` and rebuilding needs the object again;
- train_data / test_data (together): tensors, arrays, DataLoaders or map-style datasets
  (`robustfair.data.as_array_dataset`); recorded as `data.name: "<python objects>"`.
  `data.val_per_class`, `train_per_class` and `test_per_class` apply to them as to any
  dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from robustfair.engine.config import RunConfig, config_to_dict, load_config, load_raw_config, parse_config
from robustfair.engine.config import _deep_merge as merge_sections
from robustfair.engine.run_data import OBJECT_DATA
from robustfair.errors import ConfigError


@dataclass
class UserObjects:
    """The config to record, the model object to train (or None) and the data splits (or None)."""

    config: RunConfig
    model: nn.Module | None
    splits: Any | None


def as_run_config(config: RunConfig | Mapping[str, Any] | str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """A RunConfig from a RunConfig, a mapping of sections (`extends: PRESET` allowed, as in a
    YAML file), or a preset name / YAML path; then the dotted `key=value` overrides."""
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(config, RunConfig):
        return parse_config(config_to_dict(config), overrides) if overrides else config
    if isinstance(config, (str, Path)):
        return load_config(str(config), overrides)
    if isinstance(config, Mapping):
        raw = dict(config)
        parent = raw.pop("extends", None)
        if parent is not None:  # as in a YAML file: the named preset under these sections
            base = load_raw_config(str(parent))
            base.pop("name", None)
            raw = merge_sections(base, raw)
        return parse_config(raw, overrides)
    raise ConfigError(
        f"config: expected a RunConfig, a mapping of sections, or a preset name / YAML path; got "
        f"{type(config).__name__}"
    )


def _with_model(config: RunConfig, **changes: Any) -> RunConfig:
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **changes))


def resolve_model(config: RunConfig, model: Any) -> tuple[RunConfig, nn.Module | None]:
    """(config recording the model, model object to train or None); see the module docstring."""
    from robustfair.models import factory_path_of, is_factory_path, object_model_name

    if model is None:
        return config, None
    if isinstance(model, str):
        user = is_factory_path(model)
        return _with_model(
            config, name=model, options={} if user else config.model.options, kwargs=config.model.kwargs if user else {}
        ), None
    if isinstance(model, nn.Module):
        if is_factory_path(config.model.name):
            return config, model
        return _with_model(config, name=object_model_name(model), options={}, kwargs={}), model
    if callable(model):
        path = factory_path_of(model)
        if path is None:
            raise ConfigError(
                f"model: {getattr(model, '__qualname__', model)!r} cannot be imported by its name "
                "(defined in __main__, a notebook or a function), so a run could not rebuild it; put "
                "it in a module, or pass the model object itself (model=factory())"
            )
        return _with_model(config, name=path, options={}), None
    raise ConfigError(
        f"model: expected a torch.nn.Module, a factory function or class, or a name; got {type(model).__name__}"
    )


def resolve_data(
    config: RunConfig, train_data: Any, test_data: Any, classes: Sequence[str] | None
) -> tuple[RunConfig, Any | None]:
    """(config recording the data, DatasetSplits or None)."""
    from robustfair.data import DatasetSplits, as_array_dataset

    if train_data is None and test_data is None:
        if classes is not None:
            raise ConfigError("classes: only with train_data and test_data")
        return config, None
    if train_data is None or test_data is None:
        raise ConfigError(
            "train_data and test_data go together: the test split is evaluated once, at the end; "
            "validation is carved from train_data (data.val_per_class)"
        )
    train = as_array_dataset(train_data, classes=classes, what="train_data")
    test = as_array_dataset(test_data, classes=classes, what="test_data")
    if classes is None and train.classes != test.classes:
        longer = max(train.classes, test.classes, key=len)
        if longer[: len(train.classes)] == train.classes and longer[: len(test.classes)] == test.classes:
            train.classes, test.classes = list(longer), list(longer)  # labels 0..K-1 seen in one split only
    data = dataclasses.replace(config.data, name=OBJECT_DATA, root=None, download=False, options={})
    return dataclasses.replace(config, data=data), DatasetSplits(train, test)


def resolve_user_objects(
    config: RunConfig,
    *,
    model: Any = None,
    train_data: Any = None,
    test_data: Any = None,
    classes: Sequence[str] | None = None,
) -> UserObjects:
    config, model_object = resolve_model(config, model)
    config, splits = resolve_data(config, train_data, test_data, classes)
    return UserObjects(config, model_object, splits)


__all__ = ["UserObjects", "as_run_config", "resolve_model", "resolve_data", "resolve_user_objects"]
