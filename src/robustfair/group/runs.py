"""Run directories of group-fairness trainings: what is written, and reading it back.

A run directory holds
- `config.yaml`: the resolved GroupConfig (one method, one seed);
- `model.safetensors`: the model's weights (metadata: model name, input width);
- `features.json`: the fitted feature encoding (`TableEncoder.to_dict`), the feature
  layout, the group and label names and the data's fingerprint;
- `results.json`: the results schema below.

Every file is written atomically (`robustfair.engine.run_files`), like the image runs'.
`robustfair group eval` rebuilds the test inputs from config.yaml's data section and the
saved encoding (not a refit), and refuses when the rebuilt test rows differ from the ones
the run was evaluated on (the data file changed, or the config does not describe the data).

results.json: {"schema": "robustfair.group.results/2", "config": {...}, "data": summary
(rows, groups, fingerprint, label / sensitive binarisation, column roles), "metrics":
{"clean": m, "accuracy_attack": m, "fairness_attack": {"dp": m, "eopp": m, "eodds": m},
"bootstrap": {...}}, "history": [per-epoch logs], "train_seconds", "eval_seconds",
"code_version": {"robustfair", "git_commit"}}, each m as in `evaluation.evaluate_group_model`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

import robustfair
from robustfair.engine.run_files import atomic_write_bytes, atomic_write_text
from robustfair.errors import CheckpointError, ConfigError, DataError
from robustfair.group.config import GroupConfig, config_to_yaml, group_config_from_dict, read_yaml
from robustfair.group.data import load_group_data_from_config
from robustfair.group.encoding import TableEncoder
from robustfair.group.models import build_group_model
from robustfair.group.tabular import GroupData

RESULTS_SCHEMA = "robustfair.group.results/2"
_REPOSITORY = Path(__file__).resolve().parents[3]


def code_version() -> dict[str, str | None]:
    """The package version and, when run from a git checkout, its commit."""
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(_REPOSITORY), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"robustfair": robustfair.__version__, "git_commit": commit}


def run_dir_name(config: GroupConfig) -> str:
    return f"{config.train.method}-seed{config.train.seed}"


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create `path`; refuse (ConfigError) to reuse one that already holds results unless overwrite."""
    if (path / "results.json").exists() and not overwrite:
        raise ConfigError(f"{str(path)!r} already holds a run; pass --overwrite or choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, atomically (NaN is never written: undefined numbers are null)."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def save_run(path: Path, config: GroupConfig, data: GroupData, model: nn.Module, results: dict) -> None:
    """Write config.yaml, model.safetensors, features.json and results.json into `path`."""
    atomic_write_text(path / "config.yaml", config_to_yaml(config))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(
        path / "model.safetensors",
        save(state, metadata={"model": config.model.name, "in_features": str(data.layout.num_features)}),
    )
    write_json(
        path / "features.json",
        {
            "encoder": None if data.encoder is None else data.encoder.to_dict(),
            "layout": data.layout.to_dict(),
            "standardisation": data.standardisation,
            "group_names": list(data.group_names),
            "label_names": list(data.label_names),
            "fingerprint": dict(data.fingerprint),
        },
    )
    write_json(path / "results.json", results)


def load_run_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> GroupConfig:
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.yaml)")
    return group_config_from_dict(read_yaml(config_file), overrides)


def _saved_features(path: Path) -> dict:
    features_file = path / "features.json"
    if not features_file.is_file():
        return {}
    try:
        saved = json.loads(features_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{str(features_file)!r}: unreadable ({err})") from None
    return saved if isinstance(saved, dict) else {}


def load_run_data(path: Path, config: GroupConfig) -> GroupData:
    """The run's data rebuilt from `config.data` and the saved encoding, checked against the run."""
    saved = _saved_features(path)
    encoder = TableEncoder.from_dict(saved["encoder"]) if saved.get("encoder") else None
    data = load_group_data_from_config(config.data, encoder)
    before = (saved.get("fingerprint") or {}).get("test")
    if before is not None and before != data.fingerprint.get("test"):
        raise DataError(
            f"{str(path)!r}: the test rows rebuilt from its config.data ({config.data.name!r}) differ from "
            f"the ones it was trained and evaluated with (the data file changed, or the run was built "
            f"from a table its config.data does not describe)"
        )
    names = (saved.get("layout") or {}).get("names")
    if names is not None and list(names) != list(data.layout.names):
        raise CheckpointError(
            f"{str(path)!r}: the features rebuilt from its config.data ({config.data.name!r}) differ "
            f"from the ones the model was trained on ({len(names)} saved, "
            f"{data.layout.num_features} now); a run trained on your own table needs it described "
            f"in config.data (csv, label, positive, sensitive)"
        )
    return data


def load_run_model(path: Path, config: GroupConfig, data: GroupData) -> nn.Module:
    """Rebuild the model of run `path` and load its weights (safetensors only)."""
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{str(path)!r}: model.safetensors is missing")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{str(weights)!r}: unreadable ({err})") from None
    model = build_group_model(config.model.name, data.layout.num_features, config.model.hidden)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{str(weights)!r}: does not fit the configured model ({str(err).splitlines()[0]})"
        ) from None
    model.eval()
    return model
