"""Evaluate a saved run or checkpoint class-wise, rebuilding data and model from its config.

Reproducible: with its defaults, `evaluate_checkpoint(run)` repeats the run's own final
test evaluation (the run's attack, eps in the run's norm, `eval.seed`, test images and
evaluation batch size), so it returns results.json's class-wise numbers exactly on a CPU.
Everything that differs from the run is said in the record's `evaluation` section.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint
from robustfair.engine.config import parse_config
from robustfair.errors import CheckpointError, ConfigError


def load_model_from_checkpoint(
    target: str | Path,
    *,
    which: str = "last",
    device: str = "auto",
    test_per_class: int | None = None,
    subset_seed: int | None = None,
):
    """(model in eval mode, RunConfig, RunData, device) for a run directory or checkpoint file.

    test_per_class: evaluate a class-balanced subset of that many test images per class,
    drawn with `subset_seed` (default: the run's seed, as the run drew its own subset).
    """
    from robustfair.engine.run_data import input_geometry, prepare_data
    from robustfair.engine.run_model import build_run_model, check_factory_source, resolve_device

    path = resolve_checkpoint(target, which)
    _note_if_being_written(path)
    state = load_checkpoint(path)
    if "config" not in state:
        raise CheckpointError(
            f"{str(path)!r} holds weights only; evaluate it through a run directory "
            "whose config.yaml describes data and model"
        )
    config = parse_config(state["config"])
    check_factory_source(config, target, path)  # never import a factory named only inside a checkpoint file
    if test_per_class is not None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, test_per_class=test_per_class))
    dev = resolve_device(device)
    data = prepare_data(config if subset_seed is None else dataclasses.replace(config, seed=subset_seed))
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


def _saved_config(target: str | Path, which: str):
    state = load_checkpoint(resolve_checkpoint(target, which))
    if "config" not in state:
        raise CheckpointError(
            f"{str(target)!r} holds weights only; evaluate it through a run directory "
            "whose config.yaml describes data and model"
        )
    return parse_config(state["config"])


def _load_weights(model, state: dict, path) -> None:
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise CheckpointError(f"{str(path)!r}: weights do not fit the model: {str(err).splitlines()[0]}") from None


def attack_budget(
    attack: str, *, run_eps: float | None, run_norm: str, eps: float | None, step_size: float | None
) -> tuple[dict[str, float], str]:
    """(overrides, eps_from) of the named attack: `eps` / `step_size` when given (the step
    follows the preset's rule when only eps is), else the run's eps for an attack of the
    run's norm, else the preset's own budget. eps_from says which, in words."""
    from robustfair.attacks import ATTACKS, budget
    from robustfair.engine.run_evaluation import CLEAN_ONLY, run_attack_budget

    if attack in CLEAN_ONLY:
        if eps is not None or step_size is not None:
            raise ConfigError(f"--eps/--step-size: attack {attack!r} is clean only and has no budget")
        return {}, "clean only"
    preset = ATTACKS[attack]
    if eps is not None:
        overrides = budget(attack, eps=eps, step_size=step_size)
        return overrides, f"--eps {eps:g} ({preset.norm})"
    if run_eps is not None:
        overrides, eps_from = run_attack_budget(attack, run_eps, run_norm)
    else:
        overrides, eps_from = (
            {},
            (f"the preset's {preset.norm} eps {preset.eps:g} (no run: give --eps for this dataset's budget)"),
        )
    if step_size is not None:
        overrides = {**overrides, **budget(attack, step_size=step_size)}
    return overrides, eps_from


def evaluate_checkpoint(
    target: str | Path,
    *,
    attack: str | None = None,
    eps: float | None = None,
    step_size: float | None = None,
    which: str = "last",
    test_per_class: int | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    seed: int | None = None,
    sanity: bool = True,
    progress: bool | None = None,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Class-wise evaluation of a run's checkpoint on its test set (the results.json record).

    attack: default the run's `eval.attack`; eps / step_size: an explicit budget (default:
    the run's eps for attacks of the run's norm, the preset's otherwise); seed: default the
    run's `eval.seed`, also the seed of a `test_per_class` subset; batch_size: default the
    run's `train.eval_batch_size` (PGD's random starts are drawn batch by batch, so the
    batching is part of what is reproduced). Adds `checkpoint`, `evaluation` (seed, batch
    size, subset, threat model and where its eps came from), `model` and, with `sanity`,
    the sanity checks in the evaluated threat model.
    """
    from robustfair.engine.run_data import eval_batches
    from robustfair.engine.run_evaluation import evaluate_model
    from robustfair.engine.trainer import _denormals_flushed

    log = log or (lambda msg: print(msg, file=sys.stderr))
    started = time.perf_counter()
    if seed is None and test_per_class is not None:  # the subset is drawn with the run's eval.seed
        seed = _saved_config(target, which).eval.seed
    model, config, data, dev = load_model_from_checkpoint(
        target,
        which=which,
        device=device,
        test_per_class=test_per_class,
        subset_seed=seed if test_per_class is not None else None,
    )
    seed = config.eval.seed if seed is None else seed
    attack = attack or config.eval.attack
    method = config.method_config()
    run_eps = float(config.eval.eps if config.eval.eps is not None else method.eps)
    run_norm = getattr(method, "norm", "linf")
    overrides, eps_from = attack_budget(attack, run_eps=run_eps, run_norm=run_norm, eps=eps, step_size=step_size)
    batch_size = batch_size or config.train.eval_batch_size
    batches = eval_batches(data.test, batch_size, dev)
    with _denormals_flushed(dev.type == "cpu"):  # as the run's own final evaluation
        result = evaluate_model(
            model,
            batches,
            attack=attack,
            eps=run_eps,
            num_classes=data.num_classes,
            classes=data.classes,
            device=dev,
            dataset_name=data.name,
            norm=run_norm,
            seed=seed,
            progress=progress,
            overrides=overrides,
            eps_from=eps_from,
        )
        out = result.to_dict()
        out["checkpoint"] = str(resolve_checkpoint(target, which))
        out["model"] = {
            "name": config.model.name,
            "run": config.name,
            "method": config.method_name(),
            "source": str(target),
            "which": which,
        }
        out["evaluation"] = {
            "seed": seed,
            "batch_size": batch_size,
            "device": str(dev),
            "test_per_class": config.data.test_per_class,
            "subset_seed": None
            if not config.data.test_per_class
            else seed
            if test_per_class is not None
            else config.seed,
            "run_threat_model": {"norm": run_norm, "eps": run_eps},
            "eps_from": eps_from,
        }
        if sanity:
            from robustfair.metrics.sanity import run_sanity_checks

            check_eps, check_norm = result.attack.get("eps", run_eps), result.attack.get("norm", run_norm)
            out["sanity"] = run_sanity_checks(
                model,
                batches,
                result=result,
                eps=check_eps,
                norm=check_norm,
                num_classes=data.num_classes,
                device=dev,
                seed=seed,
                log=log,
                progress=progress,
            )
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def evaluate_registry_model(
    model_name: str,
    dataset: str,
    *,
    root: str | None = None,
    weights: str | None = None,
    attack: str | None = None,
    eps: float | None = None,
    step_size: float | None = None,
    test_per_class: int | None = None,
    device: str = "auto",
    seed: int | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Class-wise evaluation of a registry model (untrained, or with a weights file) on a dataset's test split.

    seed (default 0): the untrained model's initialisation, the `test_per_class` subset and
    every random draw of the attack. eps: the attack's budget (default: the preset's, 8/255
    L-inf for pgd20, which is CIFAR-10's: give eps for other datasets).
    """
    import torch

    from robustfair.engine.config import DataConfig, ModelConfig, RunConfig
    from robustfair.engine.run_data import eval_batches, input_geometry, prepare_data
    from robustfair.engine.run_evaluation import evaluate_model
    from robustfair.engine.run_model import build_run_model, resolve_device

    started = time.perf_counter()
    seed = 0 if seed is None else seed
    attack = attack or "pgd20"
    batch_size = batch_size or 500
    config = RunConfig(
        seed=seed,
        data=DataConfig(name=dataset, root=root, test_per_class=test_per_class),
        model=ModelConfig(name=model_name),
    )
    dev = resolve_device(device)
    data = prepare_data(config)
    torch.manual_seed(seed)
    in_channels, input_size = input_geometry(data.train)
    model = build_run_model(config, in_channels, input_size, data.num_classes).to(dev)
    if weights:
        from robustfair.engine.weights import load_weights

        load_weights(model, weights)  # .safetensors, or a .pt/.pth state dict (weights_only: runs no code)
    model.eval()
    overrides, eps_from = attack_budget(attack, run_eps=None, run_norm="linf", eps=eps, step_size=step_size)
    result = evaluate_model(
        model,
        eval_batches(data.test, batch_size, dev),
        attack=attack,
        eps=0.0,
        num_classes=data.num_classes,
        classes=data.classes,
        device=dev,
        dataset_name=data.name,
        seed=seed,
        progress=progress,
        overrides=overrides,
        eps_from=eps_from,
    )
    out = result.to_dict()
    out["model"] = {
        "name": model_name,
        "weights": weights or f"untrained (seed {seed})",
        "source": weights or f"untrained {model_name}",
    }
    out["evaluation"] = {
        "seed": seed,
        "batch_size": batch_size,
        "device": str(dev),
        "test_per_class": test_per_class,
        "subset_seed": seed if test_per_class else None,
        "eps_from": eps_from,
    }
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


__all__ = ["load_model_from_checkpoint", "attack_budget", "evaluate_checkpoint", "evaluate_registry_model"]
