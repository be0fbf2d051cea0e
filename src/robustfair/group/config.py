"""Typed configuration of a group-fairness run, and its presets (`configs/group/*.yaml`).

A run is `GroupConfig(data, model, train, eval)`; each section is a frozen dataclass
validated by `robustfair.typed_config.build` (one-line ConfigError naming the field).
`load_group_config(preset_or_path, overrides)` reads a preset by name (`adult`,
`compas`) or a YAML path and applies `a.b=value` overrides.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import yaml

from robustfair.errors import ConfigError, UnknownNameError
from robustfair.typed_config import apply_overrides, build, param, to_dict

PRESET_DIR = Path(__file__).resolve().parents[3] / "configs" / "group"
TRAINING_NAMES = ("erm", "fair_erm", "acc_at", "fair_at", "joint")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    name: str = param("adult", choices=("adult", "compas"), help="dataset")
    sensitive: str = param("sex", choices=("sex", "race"), help="binary sensitive attribute s")
    include_sensitive: bool = param(False, help="keep s's one-hot block among the features (never attacked)")
    split_seed: int = param(0, low=0, help="seed of COMPAS's stratified train/test split (fixed across training seeds)")
    test_fraction: float = param(0.3, low=0.0, high=1.0, low_open=True, high_open=True,
                                 help="COMPAS test share (Adult uses its official split)")
    root: str | None = param(None, help="data directory (default $ROBUSTFAIR_DATA, then ../shared/data)")
    download: bool = param(False, help="download missing files from the official URLs (md5-checked)")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = param("mlp", choices=("mlp", "logistic"), help="classifier")
    hidden: tuple[int, ...] = param(default_factory=lambda: (64, 64), low=1, help="MLP hidden widths")


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """One PGD budget, shared by the accuracy attack and the fairness attack."""

    norm: str = param("linf", choices=("linf", "l2"), help="ball on the continuous features")
    eps: float = param(0.1, low=0.0, help="radius in standardised units")
    step_size: float = param(0.025, low=0.0, help="PGD step")
    steps: int = param(10, low=0, help="PGD iterations")
    start: str = param("uniform", choices=("zero", "uniform"), help="PGD start")
    max_categorical_changes: int = param(0, low=0, help="one-hot blocks per row an attack may switch (0: none)")
    fix_signs: bool = param(False, help="fairness attack: keep the clean input's signs instead of recomputing")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    method: str = param("erm", choices=TRAINING_NAMES, help="training")
    notion: str = param("dp", choices=("dp", "eopp", "eodds"), help="gap penalised and attacked in training")
    lam: float = param(1.0, low=0.0, help="weight of the gap term (fair_erm, fair_at, joint)")
    epochs: int = param(20, low=1, help="passes over the training set")
    batch_size: int = param(256, low=0, help="rows per step; 0 = full batch")
    optimizer: str = param("adam", choices=("adam", "sgd"), help="optimiser")
    lr: float = param(1e-3, low=0.0, low_open=True, help="learning rate")
    momentum: float = param(0.9, low=0.0, high=1.0, help="SGD momentum")
    weight_decay: float = param(0.0, low=0.0, help="L2 weight decay")
    seed: int = param(0, low=0, help="seed of initialisation, batch order and attack starts")
    attack: AttackConfig = param(default_factory=AttackConfig, help="attack used while training")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    attack: AttackConfig = param(default_factory=lambda: AttackConfig(steps=50, step_size=0.01),
                                 help="attack used in evaluation (accuracy and fairness)")
    seed: int = param(0, low=0, help="seed of the evaluation attacks' random starts")


@dataclasses.dataclass(frozen=True)
class GroupConfig:
    data: DataConfig = param(default_factory=DataConfig)
    model: ModelConfig = param(default_factory=ModelConfig)
    train: TrainConfig = param(default_factory=TrainConfig)
    eval: EvalConfig = param(default_factory=EvalConfig)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []


def preset_path(preset_or_path: str) -> Path:
    """A preset name (`adult`, `compas`) or a YAML file path -> the file to read."""
    path = Path(preset_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config file {preset_or_path!r} not found")
        return path
    candidate = PRESET_DIR / f"{preset_or_path}.yaml"
    if not candidate.is_file():
        raise UnknownNameError(f"unknown group preset {preset_or_path!r}; valid group presets: "
                               f"{', '.join(preset_names()) or '(none found in ' + str(PRESET_DIR) + ')'}")
    return candidate


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, train, eval)")
    return raw


def group_config_from_dict(raw: dict[str, Any] | None, overrides: Sequence[str] = ()) -> GroupConfig:
    """Validate a plain mapping (plus `a.b=value` overrides) into a GroupConfig."""
    return build(GroupConfig, apply_overrides(raw or {}, overrides))


def load_group_config(preset_or_path: str | None = None, overrides: Sequence[str] = ()) -> GroupConfig:
    """The preset `preset_or_path` (name or YAML path; None: built-in defaults) with overrides."""
    raw = read_yaml(preset_path(preset_or_path)) if preset_or_path else {}
    return group_config_from_dict(raw, overrides)


def config_to_yaml(config: GroupConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
