"""Bad data stops a run with one clear line before any training step.

Each case hands the trainer a small dataset (3 classes of 8x8 images) with one defect
through `robustfair.data.load_dataset` (patched for the test), runs `robustfair train`,
and checks: exit status 2, one line naming the defect, no training step, nothing written.
The dataset-level checks themselves (`validate_dataset`, `split_validation`) are tested
in tests/test_data_dataset.py; these tests pin that the engine runs them on every split
before training.
"""

import re

import numpy as np
import pytest
import torch

from robustfair.cli import main
from robustfair.data import ArrayDataset, DatasetSplits
from robustfair.engine.trainer import Trainer

CLASSES = ["a", "b", "c"]
ARGS = [
    "digits_erm",
    "train.epochs=1",
    "data.val_per_class=2",
    "train.batch_size=10",
    "train.val_attack=none",
    "eval.attack=none",
    "eval.sanity_checks=false",
]


def images(per_class, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    return rng.random((len(y), 1, 8, 8), dtype=np.float32), y


def splits(edit=lambda tx, ty, sx, sy, classes: None):
    tx, ty = images(10, 0)
    sx, sy = images(4, 1)
    classes = {"train": list(CLASSES), "test": list(CLASSES)}
    edit(tx, ty, sx, sy, classes)
    return DatasetSplits(
        ArrayDataset(tx, ty, classes["train"], name="toy"), ArrayDataset(sx, sy, classes["test"], name="toy")
    )


def set_(array, index, value):
    array[index] = value


CASES = {
    "pixel above 1": (
        lambda tx, ty, sx, sy, c: set_(tx, (3, 0, 2, 2), 1.5),
        r"float values must lie in \[0, 1\], found range \[.*, 1.5\]",
    ),
    "negative pixel in test": (
        lambda tx, ty, sx, sy, c: set_(sx, (0, 0, 0, 0), -0.25),
        r"float values must lie in \[0, 1\], found range \[-0.25",
    ),
    "NaN pixel": (lambda tx, ty, sx, sy, c: set_(tx, (7, 0, 1, 1), np.nan), r"1 NaN values \(first in sample 7\)"),
    "label out of range": (lambda tx, ty, sx, sy, c: set_(ty, 4, 3), r"1 labels out of range \[0, 3\), e.g. \[3\]"),
    "negative label": (lambda tx, ty, sx, sy, c: set_(sy, 0, -1), r"labels out of range"),
    "empty class": (lambda tx, ty, sx, sy, c: set_(ty, slice(20, 30), 0), r"1 classes have no samples: \['c'\]"),
    "empty class in test": (lambda tx, ty, sx, sy, c: set_(sy, slice(4, 8), 0), r"no samples: \['b'\]"),
    # refused by split_validation, and by check_run_data should a split let it through
    "class missing from validation": (
        lambda tx, ty, sx, sy, c: set_(ty, slice(20, 28), 0),
        r"class 'c' has 2 samples; a validation split of 2 per class needs more|"
        r"no samples in the (training|validation) split: \['c'\]",
    ),
    "train and test classes differ": (
        lambda tx, ty, sx, sy, c: set_(c["test"], 2, "z"),
        r"the train and test splits have different classes",
    ),
}


@pytest.fixture
def trained_steps(monkeypatch):
    steps = []
    original = Trainer._train_epoch

    def record(self, epoch):
        steps.append(epoch)
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", record)
    return steps


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_is_refused_before_training(tmp_path, monkeypatch, capsys, trained_steps, case):
    edit, message = CASES[case]
    data = splits(edit)
    monkeypatch.setattr("robustfair.data.load_dataset", lambda *args, **kwargs: data)
    run = tmp_path / "run"
    assert main(["train", *ARGS, "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robustfair: error: ")
    assert re.search(message, err), err
    assert trained_steps == []
    assert not run.exists()


def test_the_same_data_without_a_defect_trains(tmp_path, monkeypatch, capsys, trained_steps):
    data = splits()
    monkeypatch.setattr("robustfair.data.load_dataset", lambda *args, **kwargs: data)
    assert main(["train", *ARGS, "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert trained_steps == [0] and (tmp_path / "run" / "results.json").is_file()
    # training flushes denormals for speed on CPU, and restores IEEE subnormals afterwards
    assert (torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() != 0.0
