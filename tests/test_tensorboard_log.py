"""`train.log=[jsonl,tensorboard]`: TensorBoard event files next to metrics.jsonl.

The event files are read back with TensorBoard's own reader (EventAccumulator) and compared
with metrics.jsonl, the source of truth; a resumed run shows each epoch once; a missing
tensorboard package is a one-line error before anything is written. Skips the tests that
need the package when it is not installed (pip install 'robustfair[tensorboard]').
"""

from __future__ import annotations

import json
import sys

import pytest

from robustfair.cli import main
from robustfair.engine.config import load_config
from robustfair.engine.tensorboard_log import TensorBoardLog, class_tag, epoch_scalars
from robustfair.engine.trainer import train
from robustfair.errors import ConfigError

TINY = [
    "data.train_per_class=8",
    "data.test_per_class=3",
    "data.val_per_class=2",
    "train.batch_size=32",
    "train.val_attack=pgd10",
    "method.steps=1",
    "eval.attack=pgd10",
    "eval.sanity_checks=false",
    "train.log=[jsonl,tensorboard]",
]
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:  # the optional extra is not installed
    EventAccumulator = None
needs_tensorboard = pytest.mark.skipif(
    EventAccumulator is None, reason="tensorboard not installed (pip install 'robustfair[tensorboard]')"
)


def _events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return accumulator


def _series(accumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@needs_tensorboard
def test_training_writes_the_metrics_records_as_scalars_and_resumes_without_duplicates(tmp_path):
    run_dir = tmp_path / "run"
    train(load_config("digits_pgd_at", [*TINY, "train.epochs=2"]), run_dir, quiet=True)
    events = _events(run_dir)
    records = _metrics(run_dir)
    tags = events.Tags()["scalars"]
    for tag in (
        "train/loss",
        "train/lr",
        "time/epoch_time_s",
        "val/avg_std_err",
        "val/worst_std_err",
        "val/avg_rob_err",
        "val/worst_rob_err",
        "val/avg_bndy_err",
        "val/worst_bndy_err",
    ):
        assert tag in tags, tag
    assert [f"val_robust_err_by_class/{k}" for k in range(10)] == sorted(t for t in tags if "robust_err_by" in t)
    assert _series(events, "train/loss") == [(r["epoch"], pytest.approx(r["loss"], rel=1e-6)) for r in records]
    assert _series(events, "train/lr") == [(r["epoch"], pytest.approx(r["lr"])) for r in records]
    assert _series(events, "val/worst_rob_err") == [
        (r["epoch"], pytest.approx(r["val"]["summary"]["worst_rob_err"], rel=1e-6)) for r in records
    ]
    for k in range(10):
        assert _series(events, f"val_robust_err_by_class/{k}") == [
            (r["epoch"], pytest.approx(100.0 - r["val"]["robust_acc"][k], rel=1e-6, abs=1e-4)) for r in records
        ]
    assert "custom_scalars__config__" in events.Tags()["tensors"]  # the per-class multi-line charts

    # Continue the finished run to 3 epochs: every step appears once, and matches the jsonl.
    train(load_config("digits_pgd_at", [*TINY, "train.epochs=3"]), run_dir, resume=True, quiet=True)
    events = _events(run_dir)
    records = _metrics(run_dir)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert _series(events, "train/loss") == [(r["epoch"], pytest.approx(r["loss"], rel=1e-6)) for r in records]


@needs_tensorboard
def test_a_resumed_writer_replaces_epochs_logged_after_the_last_checkpoint(tmp_path):
    first = TensorBoardLog(tmp_path, start_epoch=0)
    for epoch in (1, 2, 3):  # epoch 3 was logged, then the run was killed before its checkpoint
        first.log_epoch({"epoch": epoch, "loss": float(epoch)})
    first.close()
    again = TensorBoardLog(tmp_path, start_epoch=2)  # resumed from the epoch-2 checkpoint
    again.log_epoch({"epoch": 3, "loss": 30.0})
    again.log_epoch({"epoch": 4, "loss": 40.0})
    again.close()
    assert _series(_events(tmp_path), "train/loss") == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]


def test_epoch_scalars_layout():
    record = {
        "epoch": 2,
        "lr": 0.1,
        "loss": 1.5,
        "ce_adv": 1.2,
        "images_per_s": 900.0,
        "best_epoch": 2,
        "method": {"lam": 0.5, "w": [1.0, 2.0, None] + [1.0] * 7, "note": "x"},
        "val": {
            "summary": {"avg_rob_err": 40.0, "worst_rob_err": 70.0},
            "clean_acc": [90.0] * 10,
            "robust_acc": [60.0, 30.0] + [None] + [50.0] * 7,
        },
    }
    scalars = epoch_scalars(record, CIFAR)
    assert scalars["train/loss"] == 1.5 and scalars["train/ce_adv"] == 1.2 and scalars["train/lr"] == 0.1
    assert scalars["time/images_per_s"] == 900.0 and "train/best_epoch" not in scalars
    assert scalars["val/worst_rob_err"] == 70.0
    assert scalars["val_robust_err_by_class/1_automobile"] == pytest.approx(70.0)
    assert "val_robust_err_by_class/2_bird" not in scalars  # missing values are left out
    assert scalars["val_clean_err_by_class/9_truck"] == pytest.approx(10.0)
    assert scalars["method/lam"] == 0.5 and scalars["method_w/1_automobile"] == 2.0
    assert class_tag(3, "3", 2) == "03" and class_tag(7, "pick up/truck", 1) == "7_pick_up_truck"


def test_missing_tensorboard_is_a_one_line_error_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    run_dir = tmp_path / "run"
    assert main(["train", "digits_erm", *TINY, "train.epochs=1", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'robustfair[tensorboard]'" in err
    assert not run_dir.exists()


def test_train_log_must_keep_the_jsonl():
    with pytest.raises(ConfigError, match="must include jsonl"):
        load_config("digits_erm", ["train.log=[tensorboard]"])
    with pytest.raises(ConfigError, match="valid values: jsonl, tensorboard"):
        load_config("digits_erm", ["train.log=[jsonl,wandb]"])
