"""`robustfair.evaluate(run, ...)`: class-wise evaluation of a run from Python.

For a run the command line can rebuild (registry model or `package.module:factory`, a
named dataset) this is `robustfair eval RUN` (`engine/evaluation.py`). A run trained on a
model object or data objects is evaluated by passing them again: `model=` (the same
architecture; the checkpoint's weights are loaded into it) and/or `test_data=` (tensors,
arrays, a DataLoader or a map-style dataset, x in [0, 1]).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn


def evaluate(
    run: str | Path,
    *,
    model: nn.Module | None = None,
    test_data: Any = None,
    classes: Sequence[str] | None = None,
    attack: str = "pgd20",
    eps: float | None = None,
    which: str = "last",
    test_per_class: int | None = None,
    device: str = "auto",
    batch_size: int = 500,
    sanity: bool = True,
) -> dict[str, Any]:
    """The class-wise result (the dict `robustfair eval --json` writes) of a run's checkpoint.

    run: a run directory or checkpoint file; which: "last" or "best". eps: default the
    run's. test_per_class: a class-balanced subset (seeded by the run's seed).
    """
    from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint
    from robustfair.engine.config import parse_config
    from robustfair.engine.evaluation import evaluate_checkpoint
    from robustfair.errors import CheckpointError

    if model is None and test_data is None:
        if classes is not None:
            raise CheckpointError("classes: only with test_data")
        return evaluate_checkpoint(
            run,
            attack=attack,
            eps=eps,
            which=which,
            test_per_class=test_per_class,
            device=device,
            batch_size=batch_size,
            sanity=sanity,
        )
    from robustfair.data import as_array_dataset, class_balanced_subset
    from robustfair.engine.run_data import eval_batches, input_geometry, prepare_data
    from robustfair.engine.run_evaluation import evaluate_model
    from robustfair.engine.run_model import build_run_model, check_factory_source, resolve_device
    from robustfair.engine.weights import check_fit

    path = resolve_checkpoint(run, which)
    state = load_checkpoint(path)
    if "config" not in state:
        raise CheckpointError(
            f"{str(path)!r} holds weights only; for a weights file use "
            "robustfair.engine.weights.load_weights and robustfair.metrics.evaluate_classwise"
        )
    config = parse_config(state["config"])
    dev = resolve_device(device)
    if test_data is not None:
        test = as_array_dataset(test_data, classes=classes, what="test_data")
        if test_per_class is not None:
            test = class_balanced_subset(test, test_per_class, seed=config.seed)
    else:
        if test_per_class is not None:
            config = dataclasses.replace(config, data=dataclasses.replace(config.data, test_per_class=test_per_class))
        test = prepare_data(config).test
    if model is None:
        check_factory_source(config, run, path)
        in_channels, input_size = input_geometry(test)
        model = build_run_model(config, in_channels, input_size, len(test.classes))
    check_fit(state["model"], model, str(path))
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    if eps is None:
        eps = config.eval.eps if config.eval.eps is not None else config.method_config().eps
    result = evaluate_model(
        model,
        eval_batches(test, batch_size, dev),
        attack=attack,
        eps=float(eps),
        num_classes=len(test.classes),
        classes=list(test.classes),
        device=dev,
        dataset_name=test.name,
    )
    out = result.to_dict()
    out["checkpoint"] = str(path)
    if sanity:
        from robustfair.metrics.sanity import run_sanity_checks

        out["sanity"] = run_sanity_checks(
            model,
            eval_batches(test, batch_size, dev),
            result=result,
            eps=float(eps),
            num_classes=len(test.classes),
            device=dev,
            log=lambda msg: print(msg, file=sys.stderr),
        )
    return out


__all__ = ["evaluate"]
