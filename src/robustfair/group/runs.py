"""Run directories of group-fairness trainings: what is written, and reading it back.

A run directory holds
- `config.yaml`: the resolved GroupConfig (one method, one seed);
- `model.safetensors`: the model's weights (metadata: model name, input width);
- `features.json`: the feature layout and standardisation statistics;
- `results.json`: the results schema below.

results.json: {"schema": "robustfair.group.results/1", "config": {...}, "data": summary,
"metrics": {"clean": m, "accuracy_attack": m, "fairness_attack": {"dp": m, "eopp": m,
"eodds": m}}, "history": [per-epoch logs], "train_seconds", "eval_seconds",
"code_version": {"robustfair", "git_commit"}}, each m as in `metrics.group_metrics`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import robustfair
from robustfair.errors import CheckpointError, ConfigError
from robustfair.group.config import GroupConfig, config_to_yaml, group_config_from_dict, read_yaml
from robustfair.group.models import build_group_model
from robustfair.group.tabular import GroupData

RESULTS_SCHEMA = "robustfair.group.results/1"
_REPOSITORY = Path(__file__).resolve().parents[3]


def code_version() -> dict[str, str | None]:
    """The package version and, when run from a git checkout, its commit."""
    try:
        commit = subprocess.run(["git", "-C", str(_REPOSITORY), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"robustfair": robustfair.__version__, "git_commit": commit}


def run_dir_name(config: GroupConfig) -> str:
    return f"{config.train.method}-seed{config.train.seed}"


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create `path`; refuse (ConfigError) to reuse one that already holds results unless overwrite."""
    if (path / "results.json").exists() and not overwrite:
        raise ConfigError(f"{path} already holds a run; pass --overwrite or choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def save_run(path: Path, config: GroupConfig, data: GroupData, model: nn.Module, results: dict) -> None:
    """Write config.yaml, model.safetensors, features.json and results.json into `path`."""
    (path / "config.yaml").write_text(config_to_yaml(config), encoding="utf-8")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"),
              metadata={"model": config.model.name, "in_features": str(data.layout.num_features)})
    write_json(path / "features.json", {"layout": data.layout.to_dict(),
                                        "standardisation": data.standardisation})
    write_json(path / "results.json", results)


def load_run_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> GroupConfig:
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"{path} is not a run directory (no config.yaml)")
    return group_config_from_dict(read_yaml(config_file), overrides)


def load_run_model(path: Path, config: GroupConfig, data: GroupData) -> nn.Module:
    """Rebuild the model of run `path` and load its weights; checks the features still match."""
    features_file = path / "features.json"
    if features_file.is_file():
        saved = json.loads(features_file.read_text(encoding="utf-8"))["layout"]["names"]
        if list(saved) != list(data.layout.names):
            raise CheckpointError(f"{path}: the data's features differ from the ones the model was trained on "
                                  f"({len(saved)} saved, {data.layout.num_features} now)")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{path}: model.safetensors is missing")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: unreadable ({err})") from None
    model = build_group_model(config.model.name, data.layout.num_features, config.model.hidden)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{weights}: does not fit the configured model ({str(err).splitlines()[0]})") from None
    model.eval()
    return model
