"""Training engine: config, the one training loop, schedules, checkpoints, distributed."""

from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from robustfair.engine.config import RunConfig, config_to_dict, list_presets, load_config, parse_config
from robustfair.engine.schedules import lr_at_epoch

__all__ = [
    "RunConfig",
    "config_to_dict",
    "list_presets",
    "load_config",
    "parse_config",
    "lr_at_epoch",
    "load_checkpoint",
    "save_checkpoint",
    "resolve_checkpoint",
]
