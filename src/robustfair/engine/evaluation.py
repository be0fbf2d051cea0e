"""Evaluate a saved run or checkpoint class-wise, rebuilding data and model from its config."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint
from robustfair.engine.config import parse_config
from robustfair.errors import CheckpointError


def load_model_from_checkpoint(target: str | Path, *, which: str = "last", device: str = "auto",
                               test_per_class: int | None = None):
    """(model in eval mode, RunConfig, RunData) for a run directory or checkpoint file."""
    from robustfair.engine.run_data import input_geometry, prepare_data
    from robustfair.engine.run_model import build_run_model, check_factory_source, resolve_device

    path = resolve_checkpoint(target, which)
    _note_if_being_written(path)
    state = load_checkpoint(path)
    if "config" not in state:
        raise CheckpointError(f"{str(path)!r} holds weights only; evaluate it through a run directory "
                              "whose config.yaml describes data and model")
    config = parse_config(state["config"])
    check_factory_source(config, target, path)  # never import a factory named only inside a checkpoint file
    if test_per_class is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, test_per_class=test_per_class))
    dev = resolve_device(device)
    data = prepare_data(config)
    in_channels, input_size = input_geometry(data.train)
    model = build_run_model(config, in_channels, input_size, data.num_classes).to(dev)
    _load_weights(model, state, path)
    model.eval()
    return model, config, data, dev


def _note_if_being_written(checkpoint: Path) -> None:
    """A note when the checkpoint's run is being trained now (the read never waits: checkpoints are
    replaced atomically, so this reads a whole one, possibly not the last)."""
    from robustfair.run_lock import being_written_note

    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    writing = being_written_note(run_dir)
    if writing:
        print(f"robustfair: note: {writing}; evaluating its checkpoint as it is now", file=sys.stderr, flush=True)


def _load_weights(model, state: dict, path) -> None:
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{str(path)!r}: weights do not fit the model: {str(err).splitlines()[0]}") from None


def evaluate_checkpoint(target: str | Path, *, attack: str = "pgd20", eps: float | None = None,
                        which: str = "last", test_per_class: int | None = None, device: str = "auto",
                        batch_size: int = 500, sanity: bool = True) -> dict[str, Any]:
    from robustfair.engine.run_data import eval_batches
    from robustfair.engine.run_evaluation import evaluate_model

    model, config, data, dev = load_model_from_checkpoint(target, which=which, device=device,
                                                          test_per_class=test_per_class)
    if eps is None:
        eps = config.eval.eps if config.eval.eps is not None else config.method_config().eps
    result = evaluate_model(model, eval_batches(data.test, batch_size, dev), attack=attack, eps=float(eps),
                            num_classes=data.num_classes, classes=data.classes, device=dev, dataset_name=data.name)
    out = result.to_dict()
    out["checkpoint"] = str(resolve_checkpoint(target, which))
    if sanity:
        from robustfair.metrics.sanity import run_sanity_checks

        out["sanity"] = run_sanity_checks(model, eval_batches(data.test, batch_size, dev), result=result,
                                          eps=float(eps), num_classes=data.num_classes, device=dev,
                                          log=lambda msg: print(msg, file=sys.stderr))
    return out


def evaluate_registry_model(model_name: str, dataset: str, *, root: str | None = None, weights: str | None = None,
                            attack: str = "pgd20", eps: float | None = None, test_per_class: int | None = None,
                            device: str = "auto", seed: int = 0, batch_size: int = 500) -> dict[str, Any]:
    """Class-wise evaluation of a registry model (untrained, or with a weights file) on a dataset's test split."""
    import torch

    from robustfair.engine.config import DataConfig, ModelConfig, RunConfig
    from robustfair.engine.run_data import eval_batches, input_geometry, prepare_data
    from robustfair.engine.run_evaluation import evaluate_model
    from robustfair.engine.run_model import build_run_model, resolve_device

    config = RunConfig(seed=seed, data=DataConfig(name=dataset, root=root, test_per_class=test_per_class),
                       model=ModelConfig(name=model_name))
    dev = resolve_device(device)
    data = prepare_data(config)
    torch.manual_seed(seed)
    in_channels, input_size = input_geometry(data.train)
    model = build_run_model(config, in_channels, input_size, data.num_classes).to(dev)
    if weights:
        from robustfair.engine.weights import load_weights

        load_weights(model, weights)  # .safetensors, or a .pt/.pth state dict (weights_only: runs no code)
    model.eval()
    eps = 8 / 255 if eps is None else eps
    result = evaluate_model(model, eval_batches(data.test, batch_size, dev), attack=attack, eps=float(eps),
                            num_classes=data.num_classes, classes=data.classes, device=dev, dataset_name=data.name)
    out = result.to_dict()
    out["model"] = {"name": model_name, "weights": weights or "untrained (seed %d)" % seed}
    return out
