"""The run configuration: one frozen dataclass per section, loaded from YAML.

A preset (`configs/*.yaml`) or any YAML file gives the sections below; `key=value`
overrides (dotted) are applied before validation, so an override gets the same checks as
the file. The `method` section holds `name` plus that method's own fields, validated by
the method's `Config` dataclass. The resolved config is saved in every run directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robustfair.errors import ConfigError, UnknownNameError
from robustfair.registry import unknown_name_message
from robustfair.typed_config import apply_overrides, build, param, to_dict

PRESET_DIR = Path(__file__).resolve().parents[3] / "configs"


@dataclass(frozen=True)
class DataConfig:
    name: str = param("digits", help="dataset registry name (robustfair list)")
    root: str | None = param(None, help="local directory holding the dataset files (no download)")
    download: bool = param(False, help="download into the cache directory when files are missing")
    options: dict = param(default_factory=dict, help="dataset-specific options")
    val_per_class: int = param(0, low=0, help="validation images carved per class from the training set")
    val_position: str = param("last", choices=("last", "first"), help="which images of each class go to validation")
    train_per_class: int | None = param(None, low=1, help="class-balanced training subset (smoke runs)")
    test_per_class: int | None = param(None, low=1, help="class-balanced test subset for the final evaluation")
    augment: str | None = param(None, choices=("crop_flip", "flip"), help="tensor augmentation while training")
    padding: int = param(4, low=0, help="zero padding of the random crop")


@dataclass(frozen=True)
class ModelConfig:
    name: str = param("small_cnn", help="model registry name, or your own 'package.module:factory'")
    normalize_mean: tuple[float, ...] | None = param(
        None, help="per-channel mean of a normalisation layer owned by the model"
    )
    normalize_std: tuple[float, ...] | None = param(None, low=0.0, low_open=True, help="per-channel std of that layer")
    options: dict = param(default_factory=dict, help="model-specific keyword arguments of a registry model")
    kwargs: dict = param(default_factory=dict, help="keyword arguments of a 'package.module:factory' model")

    def __post_init__(self) -> None:
        if (self.normalize_mean is None) != (self.normalize_std is None):
            raise ConfigError("model.normalize_mean and model.normalize_std must be given together")
        from robustfair.models.factory import is_factory_path, is_object_model_name

        user_model = is_factory_path(self.name) or is_object_model_name(self.name)
        if user_model and self.options:
            raise ConfigError(f"model.options: {self.name!r} is your own model; its arguments go in model.kwargs")
        if not user_model and self.kwargs:
            raise ConfigError(
                f"model.kwargs: only for a 'package.module:factory' model; the options of the "
                f"registry model {self.name!r} go in model.options"
            )


@dataclass(frozen=True)
class OptimConfig:
    lr: float = param(0.1, low=0.0, low_open=True, help="initial learning rate")
    momentum: float = param(0.9, low=0.0, high=1.0, high_open=True)
    weight_decay: float = param(2e-4, low=0.0)
    nesterov: bool = param(False)


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = param(
        "multistep", choices=("constant", "multistep", "piecewise", "cosine"), help="per-epoch learning-rate schedule"
    )
    milestones: tuple[int, ...] = param((), low=1, help="epochs at which the lr changes (multistep, piecewise)")
    gamma: float = param(0.1, low=0.0, low_open=True, help="multistep: factor applied at each milestone")
    factors: tuple[float, ...] = param((), low=0.0, help="piecewise: lr factor from each milestone on")
    warmup_epochs: int = param(0, low=0, help="linear warm-up epochs before the schedule")
    min_lr: float = param(0.0, low=0.0, help="cosine: final learning rate")

    def __post_init__(self) -> None:
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"schedule.milestones: {list(self.milestones)} must be increasing")
        if self.name == "piecewise" and len(self.factors) != len(self.milestones):
            raise ConfigError(
                f"schedule.factors: piecewise needs one factor per milestone "
                f"({len(self.milestones)}), got {len(self.factors)}"
            )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = param(10, low=1)
    eps_warmup_epochs: int = param(
        0,
        low=0,
        help="linear warm-up of the training attack: in 0-based epoch e < N, the method's eps and step_size are "
        "scaled by (e + 1) / (N + 1); 0 = off. Validation and test evaluation keep the full eps",
    )
    batch_size: int = param(128, low=1, help="global batch size (split across DDP ranks)")
    device: str = param("auto", help="auto, cpu, cuda or cuda:N")
    # Device settings (engine/accelerator.py); "auto" = on for CUDA, off elsewhere. The values
    # actually used are recorded in meta.json and results.json ("acceleration").
    amp: bool | str = param("auto", choices=("auto",), help="bf16 autocast of training steps: true, false or auto")
    channels_last: bool | str = param(
        "auto", choices=("auto",), help="channels_last model and inputs: true, false or auto"
    )
    tf32: bool | str = param("auto", choices=("auto",), help="TF32 matmuls/convolutions (CUDA): true, false or auto")
    cudnn_benchmark: bool | str = param(
        "auto", choices=("auto",), help="cuDNN picks its fastest convolution algorithm (CUDA): true, false, auto"
    )
    optimizer_impl: str = param(
        "auto",
        choices=("auto", "fused", "foreach", "for_loop"),
        help="SGD implementation (auto: fused on CUDA, for_loop on CPU)",
    )
    early_stop_attack: str = param(
        "auto",
        choices=("auto", "compact", "masked"),
        help="early-stopped attacks: masked (fixed shapes, no host sync) or compact (auto: masked on CUDA)",
    )
    compile: bool = param(False, help="torch.compile the model")
    compile_mode: str = param(
        "default",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        help="torch.compile mode (reduce-overhead: CUDA graphs)",
    )
    val_attack: str = param("pgd20", help="attack for validation class-wise numbers ('none' for clean only)")
    val_every: int = param(1, low=1, help="validate every N epochs (and at the last epoch)")
    eval_batch_size: int = param(500, low=1)
    grad_clip: float | None = param(None, low=0.0, low_open=True, help="clip the gradient norm")
    log_every: int = param(20, low=1, help="progress refresh in steps")
    log: tuple[str, ...] = param(
        ("jsonl",),
        choices=("jsonl", "tensorboard"),
        help="epoch logs: jsonl (metrics.jsonl, always) and optionally tensorboard "
        "(<run>/tensorboard/, needs the tensorboard extra)",
    )

    def __post_init__(self) -> None:
        if "jsonl" not in self.log:
            raise ConfigError(
                f"train.log: {list(self.log)} must include jsonl (metrics.jsonl is the record every "
                "report reads); for example train.log=[jsonl,tensorboard]"
            )


@dataclass(frozen=True)
class EvalConfig:
    attack: str = param("pgd20", help="attack for the final class-wise test evaluation")
    eps: float | None = param(None, low=0.0, help="attack eps (default: the method's training eps)")
    extra_attacks: tuple[str, ...] = param((), help="more attacks evaluated at the end (e.g. autoattack)")
    extra_attacks_per_class: int | None = param(
        None,
        low=1,
        help="evaluate the extra attacks on a class-balanced subset of the test split, this many images per "
        "class drawn with eval.seed (default: the whole test split)",
    )
    sanity_checks: bool = param(True, help="run evaluation sanity checks and record them")
    seed: int = param(0, low=0, help="seed of every random draw of the evaluation attacks (recorded in results.json)")
    amp: bool = param(False, help="bf16 autocast in validation and test evaluation (default fp32)")


@dataclass(frozen=True)
class RunConfig:
    name: str = param("run", help="run name")
    seed: int = param(0, low=0)
    data: DataConfig = param(default_factory=DataConfig)
    model: ModelConfig = param(default_factory=ModelConfig)
    method: dict = param(default_factory=lambda: {"name": "erm"}, help="method name and its fields")
    optim: OptimConfig = param(default_factory=OptimConfig)
    schedule: ScheduleConfig = param(default_factory=ScheduleConfig)
    train: TrainConfig = param(default_factory=TrainConfig)
    eval: EvalConfig = param(default_factory=EvalConfig)
    init_from: str | None = param(None, help="run directory or checkpoint to start from (hot start)")

    def method_name(self) -> str:
        return self.method["name"]

    def method_config(self) -> Any:
        """The method's own validated Config dataclass."""
        return resolve_method_config(self.method)


def resolve_method_config(section: Mapping[str, Any]) -> Any:
    from robustfair.methods import METHODS

    if not isinstance(section, Mapping) or "name" not in section:
        raise ConfigError(f"method: needs a 'name'; valid method names: {', '.join(METHODS.names())}")
    cls = METHODS[section["name"]]
    fields = {k: v for k, v in section.items() if k != "name"}
    return build(cls.Config, fields, f"method ({section['name']})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except OSError as err:
        hint = " (a run directory? continue it with --resume)" if path.is_dir() else ""
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror}{hint}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file {str(path)!r} is not a text YAML file (a checkpoint or other binary file?)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping of sections")
    return data


def list_presets() -> list[str]:
    if not PRESET_DIR.is_dir():
        return []
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def find_config(name_or_path: str) -> Path:
    """A YAML path as given, or the preset of that name in configs/."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    presets = list_presets()
    head = f"unknown preset {name_or_path!r}"
    if not presets:
        raise UnknownNameError(
            f"{head} (and no such file): no presets found, {str(PRESET_DIR)!r} holds no *.yaml "
            "(presets come with a source checkout, configs/ beside src/); give a YAML file's path"
        )
    message = unknown_name_message("preset", name_or_path, presets, list_command="robustfair list presets")
    raise UnknownNameError(head + " (and no such file)" + message[len(head) :])


def parse_config(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> RunConfig:
    """Validate a raw mapping (+ overrides) into a RunConfig, method fields included."""
    merged = apply_overrides(raw, overrides)
    config = build(RunConfig, merged)
    resolve_method_config(config.method)  # validate now, not mid-run
    return config


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section (the method section too: a base preset holds
    only the fields every method shares, such as the threat model)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_raw_config(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a preset or YAML file, with `extends: OTHER` presets merged under it."""
    path = find_config(name_or_path)
    if str(path) in _seen:
        raise ConfigError(f"config {str(path)!r}: 'extends' forms a cycle")
    raw = load_yaml(path)
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"config {str(path)!r}: extends must be a preset name or path, got {parent!r}")
        base = load_raw_config(parent, _seen + (str(path),))
        base.pop("name", None)
        raw = _deep_merge(base, raw)
    return raw


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> RunConfig:
    raw = load_raw_config(name_or_path)
    if "name" not in raw:
        raw["name"] = Path(name_or_path).stem
    return parse_config(raw, overrides)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain dict with the method section fully resolved (every default written out)."""
    out = to_dict(config)
    out["method"] = {"name": config.method_name(), **to_dict(config.method_config())}
    return out


def replace(config: RunConfig, **changes: Any) -> RunConfig:
    return dataclasses.replace(config, **changes)
