"""Building a run's data: load, validate, split, subset; batches for evaluation.

`prepare_data(config)` returns the three splits a run uses (`RunData`); `eval_batches`
turns a split into re-iterable device batches of float images in [0, 1].

Data passed to `robustfair.train(train_data=..., test_data=...)` arrives as `splits`
(`DatasetSplits`, see `data/objects.py`) and takes the same path from validation on;
such a run records `data.name: "<python objects>"` (`OBJECT_DATA`), and rebuilding its
data later needs the objects again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from robustfair.engine.config import RunConfig
from robustfair.engine.preflight import check_run_data
from robustfair.errors import ConfigError, DataError, UnknownNameError

OBJECT_DATA = "<python objects>"


@dataclass
class RunData:
    """The splits a run uses, after subsetting and carving validation."""

    train: Any
    val: Any | None
    test: Any
    classes: list[str]
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def object_data_error() -> DataError:
    """Why a run trained on Python objects cannot reload its data, and what to do."""
    return DataError(
        f"data.name {OBJECT_DATA!r}: this run trained on data passed to robustfair.train(), which its "
        "config cannot reload; pass the data again (robustfair.train(config, run_dir, train_data=..., "
        "test_data=..., resume=True) or robustfair.evaluate(run_dir, test_data=...)), or write it to "
        ".npz files and train with data.name: arrays"
    )


def check_data_name(config: RunConfig, *, data_given: bool = False) -> None:
    """UnknownNameError now for a dataset the run could not load (data objects need no name)."""
    from robustfair.data import DATASETS

    if data_given:
        return
    if config.data.name == OBJECT_DATA:
        raise object_data_error()
    try:
        DATASETS[config.data.name]
    except UnknownNameError as err:
        raise UnknownNameError(f"data.name: {err}") from None


def prepare_data(config: RunConfig, splits=None) -> RunData:
    """Load, validate, split and subset the run's data; DataError before any training step.

    splits: the train and test splits given as objects (`DatasetSplits`), used instead of
    loading `data.name`. Both splits pass `validate_dataset` (pixels in [0, 1], no NaN,
    labels in range, no empty class) and the final splits `check_run_data` (same classes,
    every class present in train, validation and test).
    """
    from robustfair.data import class_balanced_subset, load_dataset, split_validation, validate_dataset

    d = config.data
    if splits is None:
        if d.name == OBJECT_DATA:
            raise object_data_error()
        splits = load_dataset(d.name, root=d.root, download=d.download, **d.options)
    train, test = splits.train, splits.test
    validate_dataset(train)
    validate_dataset(test)
    val = None
    if d.val_per_class:
        train, val = split_validation(train, d.val_per_class, position=d.val_position)
    if d.train_per_class:
        train = class_balanced_subset(train, d.train_per_class, seed=config.seed)
    if d.test_per_class:
        test = class_balanced_subset(test, d.test_per_class, seed=config.seed)
    check_run_data(train, val, test, dataset=d.name)
    return RunData(train=train, val=val, test=test, classes=list(train.classes), name=getattr(train, "name", d.name))


def input_geometry(dataset) -> tuple[int, int]:
    """(in_channels, input_size) for build_model: images [N, C, H, W]; features [N, D] -> (D, 1)."""
    shape = tuple(dataset.x.shape[1:])
    if len(shape) == 3:
        return shape[0], shape[1]
    if len(shape) == 1:
        return shape[0], 1
    raise ConfigError(f"data: unsupported input shape {shape}; expected [C, H, W] images or [D] features")


def eval_batches(
    dataset, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Re-iterable batches of this rank's shard (every world_size-th sample), float in [0, 1].

    The shard is moved to the device once (uint8 images stay uint8 there) and each batch
    is converted to float on the device.
    """
    idx = torch.arange(rank, len(dataset), world_size).numpy()
    x = torch.as_tensor(dataset.x[idx]).to(device)
    y = torch.as_tensor(dataset.y[idx]).to(device)
    scale = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0

    class _Batches:
        def __len__(self) -> int:
            return (len(y) + batch_size - 1) // batch_size

        def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, len(y), batch_size):
                yield x[start : start + batch_size].float() * scale, y[start : start + batch_size]

    return _Batches()


__all__ = ["RunData", "prepare_data", "input_geometry", "eval_batches", "check_data_name", "OBJECT_DATA"]
