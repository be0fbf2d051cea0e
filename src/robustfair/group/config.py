"""Typed configuration of a group-fairness run, and its presets (`configs/group/*.yaml`).

A run is `GroupConfig(data, model, train, eval)`; each section is a frozen dataclass
validated by `robustfair.typed_config.build` (one-line ConfigError naming the field).
`load_group_config(preset_or_path, overrides)` reads a preset by name (`adult`,
`compas`, `table`) or a YAML path through the main CLI's config reader
(`robustfair.engine.config.load_raw_config`: same messages, `extends:` works) and applies
`a.b=value` overrides.

Overrides of the text fields that name columns, values and files (`data.name`,
`data.csv`, `data.test_csv`, `data.label`, `data.positive`, `data.sensitive`,
`data.privileged`, `data.root`) are taken verbatim, not parsed as YAML, so
`data.positive=1` or `data.privileged=yes` mean the strings "1" and "yes" of the CSV file.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from robustfair.errors import ConfigError, UnknownNameError
from robustfair.typed_config import apply_overrides, build, param, to_dict

PRESET_DIR = Path(__file__).resolve().parents[3] / "configs" / "group"
TRAINING_NAMES = ("erm", "fair_erm", "acc_at", "fair_at", "joint")
BUILTIN_DATASETS = ("adult", "compas")
MISSING_VALUES = ("", "?", "NA", "N/A", "NaN", "nan")
VERBATIM_KEYS = tuple(
    f"data.{k}" for k in ("name", "csv", "test_csv", "label", "positive", "sensitive", "privileged", "root")
)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which table, which label and which binary sensitive attribute (see robustfair.group.table)."""

    name: str = param("adult", help="dataset: adult or compas (built in), or the name of a CSV table (data.csv)")
    csv: str | None = param(None, help="CSV file of a table: all of it, or its training part when test_csv is given")
    test_csv: str | None = param(None, help="CSV file of the test part (default: a seeded stratified split of csv)")
    delimiter: str = param(",", choices=(",", ";", "\t", "|"), help="field separator of the CSV files")
    label: str | None = param(None, help="label column (CSV tables; built-in datasets have theirs)")
    positive: str | None = param(None, help="label value meaning y = 1 (default for labels 0/1: 1)")
    sensitive: str | None = param(None, help="sensitive column (default: adult sex, compas race)")
    privileged: str | None = param(
        None, help="value of the sensitive column meaning s = 1 (adult/compas sex: Male, race: White/Caucasian)"
    )
    threshold: float | None = param(None, help="numeric sensitive column: s = 1 when its value >= threshold")
    continuous: tuple[str, ...] | None = param(None, help="continuous feature columns (CSV; default: detected)")
    categorical: tuple[str, ...] | None = param(None, help="categorical feature columns (CSV; default: detected)")
    integer: tuple[str, ...] | None = param(
        None, help="continuous columns holding whole numbers, rounded by attacks (CSV; default: detected)"
    )
    drop: tuple[str, ...] = param((), help="columns left out of the features (CSV tables)")
    bounds: dict = param(
        default_factory=dict,
        help="{column: [low, high]}: declared domain of continuous columns (default: the training range)",
    )
    missing: tuple[str, ...] = param(MISSING_VALUES, help="values marking a missing entry; rows with one are dropped")
    include_sensitive: bool = param(False, help="keep the sensitive column among the features (never attacked)")
    split_seed: int = param(0, low=0, help="seed of the stratified train/test split (fixed across training seeds)")
    test_fraction: float = param(
        0.3,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        help="test share of the split (not used with test_csv or Adult's official split)",
    )
    root: str | None = param(
        None, help="data directory of adult/compas (default $ROBUSTFAIR_DATA, then ../shared/data)"
    )
    download: bool = param(False, help="download missing adult/compas files from the official URLs (md5-checked)")

    def __post_init__(self) -> None:
        if self.privileged is not None and self.threshold is not None:
            raise ConfigError(
                "data.privileged and data.threshold: give one (a value of a categorical sensitive "
                "column, or a threshold for a numeric one), not both"
            )
        for column, pair in self.bounds.items():
            ok = (
                isinstance(pair, (list, tuple))
                and len(pair) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
            )
            if not ok or not pair[0] <= pair[1]:
                raise ConfigError(f"data.bounds.{column}: {pair!r} must be [low, high] with low <= high")

    @property
    def builtin(self) -> bool:
        return self.csv is None and self.name in BUILTIN_DATASETS


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
    domain: str = param(
        "bounded",
        choices=("bounded", "unbounded"),
        help="bounded: stay in each feature's domain (training range or data.bounds) with whole "
        "numbers where declared; unbounded: the eps-ball only",
    )
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
class BootstrapConfig:
    """Percentile bootstrap over test rows for every gap (robustfair.group.bootstrap)."""

    resamples: int = param(1000, low=0, help="resamples of the test rows (0: no intervals)")
    seed: int = param(0, low=0, help="seed of the resampling")
    level: float = param(0.95, low=0.0, high=1.0, low_open=True, high_open=True, help="confidence level")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    attack: AttackConfig = param(
        default_factory=lambda: AttackConfig(steps=50, step_size=0.01),
        help="attack used in evaluation (accuracy and fairness)",
    )
    seed: int = param(0, low=0, help="seed of the evaluation attacks' random starts")
    threshold: float = param(0.5, low=0.0, high=1.0, help="hard decision: predict 1 when P(y = 1 | x) > threshold")
    bootstrap: BootstrapConfig = param(default_factory=BootstrapConfig, help="confidence intervals of the gaps")


@dataclasses.dataclass(frozen=True)
class GroupConfig:
    data: DataConfig = param(default_factory=DataConfig)
    model: ModelConfig = param(default_factory=ModelConfig)
    train: TrainConfig = param(default_factory=TrainConfig)
    eval: EvalConfig = param(default_factory=EvalConfig)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []


def preset_path(preset_or_path: str) -> Path:
    """A preset name (`adult`, `compas`, `table`) or a YAML file path -> the file to read."""
    path = Path(preset_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config file {preset_or_path!r} not found")
        return path
    candidate = PRESET_DIR / f"{preset_or_path}.yaml"
    if not candidate.is_file():
        names = preset_names()
        close = difflib.get_close_matches(preset_or_path, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(
            f"unknown group preset {preset_or_path!r}; {hint}valid group presets: "
            f"{', '.join(names) or '(none found in ' + str(PRESET_DIR) + ')'}"
        )
    return candidate


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file as a mapping, read like every other config (`extends:` resolved)."""
    from robustfair.engine.config import load_raw_config

    return load_raw_config(str(path))


def apply_group_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`raw` with `a.b=value` overrides applied, the VERBATIM_KEYS as plain strings."""
    out = apply_overrides(raw, ())
    for text in overrides:
        key, _, value = text.partition("=")
        if key.strip() in VERBATIM_KEYS and "=" in text:
            section = out.get("data")
            if section is None:
                section = out["data"] = {}
            elif not isinstance(section, dict):
                raise ConfigError(f"override {text!r}: data is not a section")
            section[key.strip().split(".", 1)[1]] = value
        else:
            out = apply_overrides(out, [text])
    return out


def _text_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """YAML reads `positive: 1` as a number; the data section's text fields mean the CSV's text."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in (k.split(".", 1)[1] for k in VERBATIM_KEYS):
            value = data.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                data[key] = str(value)
    return raw


def group_config_from_dict(raw: dict[str, Any] | None, overrides: Sequence[str] = ()) -> GroupConfig:
    """Validate a plain mapping (plus `a.b=value` overrides) into a GroupConfig."""
    return build(GroupConfig, apply_group_overrides(_text_fields(apply_overrides(raw or {}, ())), overrides))


def load_group_config(preset_or_path: str | None = None, overrides: Sequence[str] = ()) -> GroupConfig:
    """The preset `preset_or_path` (name or YAML path; None: built-in defaults) with overrides."""
    raw = read_yaml(preset_path(preset_or_path)) if preset_or_path else {}
    return group_config_from_dict(raw, overrides)


def config_to_yaml(config: GroupConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
