"""TensorBoard event files of a run's epoch records (optional: `pip install 'robustfair[tensorboard]'`).

`metrics.jsonl` stays the record every report and table reads. With
`train.log=[jsonl,tensorboard]` the trainer also writes each epoch's record to
`<run>/tensorboard/` as scalars whose step is the 1-based epoch:

    train/loss, train/<term>        the epoch-mean loss and every loss term the method logs
    train/lr                        the learning rate of the epoch
    time/images_per_s, time/epoch_time_s
    val/<summary key>               validation error %: avg_std_err, worst_std_err, avg_bndy_err,
                                    worst_bndy_err, avg_rob_err, worst_rob_err (clean, boundary,
                                    robust; average over samples and worst class)
    val_robust_err_by_class/<k>_<class>, val_clean_err_by_class/<k>_<class>
                                    per-class validation error % (k zero-padded so classes sort)
    method/<name>, method_<name>/<k>_<class>
                                    a method's logged state: scalars, and per-class vectors such
                                    as FRL's multipliers or class weights

plus a custom-scalars layout that draws each per-class group as one chart, a curve per class
(TensorBoard's "Custom Scalars" tab); the same tags appear in the "Scalars" tab grouped by
prefix. Watch runs with `tensorboard --logdir runs/`.

Resume: the writer opens with `purge_step` = the first epoch this process trains, which
writes a session-start event at that step; TensorBoard then discards that step and later
ones from earlier event files (an epoch logged after the last checkpoint by a killed run),
so a resumed run shows each epoch once. Only rank 0 writes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustfair.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"
PER_CLASS_GROUPS = {"robust_acc": "val_robust_err_by_class", "clean_acc": "val_clean_err_by_class"}
_TIME_KEYS = ("images_per_s", "epoch_time_s")
_SKIPPED_KEYS = ("epoch", "best_epoch", "val", "method")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def check_available(targets: Sequence[str]) -> None:
    """ConfigError (one line) now if `targets` asks for tensorboard and it cannot be imported."""
    if "tensorboard" not in targets:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(
            "train.log: tensorboard needs the tensorboard package: pip install "
            "'robustfair[tensorboard]' (or drop tensorboard from train.log)"
        ) from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def class_tag(index: int, name: str, width: int) -> str:
    """`07_horse` (index zero-padded to `width` digits, so tags sort in class order); `07` when
    the class name is its index (digits, MNIST)."""
    number = f"{index:0{width}d}"
    name = _UNSAFE.sub("_", str(name)).strip("_")
    return number if not name or name == str(index) else f"{number}_{name}"


def _per_class(group: str, values: Sequence[Any], classes: Sequence[str], to_error: bool) -> dict[str, float]:
    names = list(classes) if len(classes) == len(values) else [str(k) for k in range(len(values))]
    width = len(str(max(len(values) - 1, 0)))
    out = {}
    for k, value in enumerate(values):
        number = _number(value)
        if number is not None:
            out[f"{group}/{class_tag(k, names[k], width)}"] = 100.0 - number if to_error else number
    return out


def epoch_scalars(record: Mapping[str, Any], classes: Sequence[str] = ()) -> dict[str, float]:
    """Tag -> value of one metrics.jsonl record (the layout in the module docstring).

    Validation accuracies are stored in % in the record; per-class values become errors in %
    (100 - accuracy). Missing, non-numeric and non-finite values are left out.
    """
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in _SKIPPED_KEYS:
            continue
        number = _number(value)
        if number is not None:
            out[f"time/{key}" if key in _TIME_KEYS else f"train/{key}"] = number
    val = record.get("val")
    if isinstance(val, Mapping):
        for key, value in (val.get("summary") or {}).items():
            number = _number(value)
            if number is not None:
                out[f"val/{key}"] = number
        for key, group in PER_CLASS_GROUPS.items():
            if isinstance(val.get(key), (list, tuple)):
                out.update(_per_class(group, val[key], classes, to_error=True))
    state = record.get("method")
    if isinstance(state, Mapping):
        for key, value in state.items():
            name = _UNSAFE.sub("_", str(key))
            if isinstance(value, (list, tuple)):
                out.update(_per_class(f"method_{name}", value, classes, to_error=False))
            elif _number(value) is not None:
                out[f"method/{name}"] = _number(value)
    return out


def custom_layout() -> dict[str, dict[str, list]]:
    """The Custom Scalars layout: one multi-line chart per per-class group (tags are regexes)."""
    return {
        "per class (validation)": {
            "robust error % by class": ["Multiline", [rf"{PER_CLASS_GROUPS['robust_acc']}/.*"]],
            "clean error % by class": ["Multiline", [rf"{PER_CLASS_GROUPS['clean_acc']}/.*"]],
        }
    }


class TensorBoardLog:
    """Writes epoch records to `<run_dir>/tensorboard/`; `close()` when the run ends."""

    def __init__(self, run_dir: str | Path, *, start_epoch: int, classes: Sequence[str] = ()):
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir) / TENSORBOARD_DIR
        self.classes = list(classes)
        # Epochs are logged at step = epoch (1-based); this process writes from start_epoch + 1 on.
        self.writer = SummaryWriter(log_dir=str(self.path), purge_step=start_epoch + 1)
        self.writer.add_custom_scalars(custom_layout())

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        step = int(record["epoch"])
        for tag, value in epoch_scalars(record, self.classes).items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_epoch_log(
    targets: Sequence[str], run_dir: str | Path, *, start_epoch: int, classes: Sequence[str] = ()
) -> TensorBoardLog | None:
    """A TensorBoardLog when `targets` (train.log) names tensorboard, else None."""
    if "tensorboard" not in targets:
        return None
    check_available(targets)
    return TensorBoardLog(run_dir, start_epoch=start_epoch, classes=classes)


__all__ = [
    "TENSORBOARD_DIR",
    "check_available",
    "epoch_scalars",
    "class_tag",
    "custom_layout",
    "TensorBoardLog",
    "open_epoch_log",
]
