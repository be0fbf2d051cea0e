"""A non-finite loss or weight stops the run naming epoch and step, keeps the last good
checkpoint (never saving the bad epoch, neither as `last` nor as `best`), and
`robustfair train --resume RUN optim.lr=<lower>` continues the run to completion."""

import itertools
import json

import pytest
import torch
import yaml

from robustfair.cli import main
from robustfair.engine.checkpoint import load_checkpoint
from robustfair.engine.config import list_presets, load_config
from robustfair.engine.trainer import train
from robustfair.errors import TrainingDivergedError
from robustfair.methods.base import MethodOutput
from robustfair.methods.erm import ERM

# 200 training images / batch 50 = 4 steps per epoch.
SMALL = [
    "train.epochs=3",
    "data.train_per_class=20",
    "data.val_per_class=4",
    "data.test_per_class=4",
    "train.batch_size=50",
    "eval.sanity_checks=false",
    "train.val_attack=fgsm",
    "eval.attack=fgsm",
    "schedule.name=constant",
    "schedule.milestones=[]",
]
STEPS = 4


def poison_loss_at(monkeypatch, epoch, step):
    """Make ERM's loss NaN at (1-based) epoch/step; returns nothing, patch undone by monkeypatch."""
    calls = itertools.count()
    target = (epoch - 1) * STEPS + (step - 1)
    original = ERM.loss

    def loss(self, model, x, y):
        out = original(self, model, x, y)
        if next(calls) == target:
            return MethodOutput(out.loss * float("nan"), out.logs)
        return out

    monkeypatch.setattr(ERM, "loss", loss)


def epochs_in_metrics(run):
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_bad_epoch_not_saved(run, good_epochs):
    last = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert last["epoch"] == good_epochs
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    best = load_checkpoint(run / "checkpoints" / "best.safetensors")
    assert best["epoch"] <= good_epochs
    assert all(torch.isfinite(t).all() for t in best["model"].values())
    assert epochs_in_metrics(run) == list(range(1, good_epochs + 1))
    assert not (run / "results.json").exists()


def test_nan_loss_names_epoch_and_step_keeps_last_good_and_resumes_with_lower_lr(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    poison_loss_at(monkeypatch, epoch=2, step=3)
    with pytest.raises(TrainingDivergedError) as err:
        train(load_config("digits_erm", SMALL), run, quiet=True)
    message = str(err.value)
    assert "non-finite loss at epoch 2, step 3 of 4" in message
    assert "last.safetensors (after epoch 1) is kept" in message
    assert f"robustfair train --resume {run} optim.lr=<lower>" in message
    assert "\n" not in message
    assert_bad_epoch_not_saved(run, good_epochs=1)

    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "optim.lr=0.01", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"resumed {run} at epoch 2") and "Traceback" not in err
    assert epochs_in_metrics(run) == [1, 2, 3]
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs == [0.05, 0.01, 0.01]  # digits_base lr for the good epoch, the lower one after
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 0.01
    assert (run / "results.json").is_file()
    assert load_checkpoint(run / "checkpoints" / "last.safetensors")["epoch"] == 3


def test_nonfinite_weights_with_a_finite_loss_are_caught(tmp_path, monkeypatch):
    # The last optimiser step of epoch 2 writes an infinity into one weight: no later loss
    # of that epoch can reveal it, only the end-of-epoch weight check.
    run = tmp_path / "run"
    steps = itertools.count()
    original = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if next(steps) == 2 * STEPS - 1:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    with pytest.raises(TrainingDivergedError, match=r"non-finite weights \(.+\) at epoch 2, by the end of its 4 steps"):
        train(load_config("digits_erm", SMALL), run, quiet=True)
    assert_bad_epoch_not_saved(run, good_epochs=1)


def test_nonfinite_weights_from_an_end_of_epoch_hook_are_never_saved(tmp_path, monkeypatch):
    # A method whose end-of-epoch update (e.g. weight averaging) breaks the weights.
    def on_epoch_end(self, ctx):
        if ctx.epoch == 1:
            with torch.no_grad():
                next(ctx.model.parameters()).fill_(float("nan"))
        return {}

    monkeypatch.setattr(ERM, "on_epoch_end", on_epoch_end)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="at epoch 2, after the method's end-of-epoch update"):
        train(load_config("digits_erm", SMALL), run, quiet=True)
    assert_bad_epoch_not_saved(run, good_epochs=1)


def test_divergence_in_the_first_epoch_then_resume_starts_over(tmp_path, capsys):
    # A real divergence: an absurd learning rate. No epoch completes, so there is no
    # checkpoint; --resume with a sane lr starts the run again from epoch 1.
    run = tmp_path / "run"
    argv = ["train", "digits_erm", *SMALL, "train.epochs=1", "optim.lr=1.0e+30", "--run-dir", str(run), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robustfair: error: non-finite")
    assert "at epoch 1, step" in err and "no checkpoint" in err
    assert not (run / "checkpoints" / "last.safetensors").exists() and not (run / "results.json").exists()
    assert main(["train", "--resume", str(run), "optim.lr=0.01", "--quiet"]) == 0
    assert (run / "results.json").is_file() and epochs_in_metrics(run) == [1]
    assert "the likely cause is optim.lr=1e+30 (default 0.1)" in err  # the extreme setting, named


def test_a_divergence_from_an_extreme_setting_names_that_setting_not_the_learning_rate(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "digits_trades",
        *SMALL,
        "train.epochs=1",
        "method.steps=1",
        "method.beta=1e300",
        "--run-dir",
        str(run),
        "--quiet",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robustfair: error: non-finite loss at epoch 1, step 1 of 4")
    assert err.rstrip().endswith(
        "the likely cause is method.beta=1e+300 (default 6): continue with a moderate "
        f"value: robustfair train --resume {run} method.beta=<moderate>"
    )
    assert "lower learning rate" not in err


def test_extreme_settings_are_judged_against_their_defaults():
    from robustfair.engine.divergence import extreme_settings

    assert extreme_settings(load_config("digits_trades")) == []  # a preset's own values are never "extreme"
    assert extreme_settings(load_config("digits_trades", ["method.beta=6e4", "optim.lr=2e7"])) == [
        "optim.lr=2e+07 (default 0.1)",
        "method.beta=60000 (default 6)",
    ]  # largest ratio first
    assert extreme_settings(load_config("digits_trades", ["method.beta=5e4"])) == []  # under 10,000 x its default
    assert all(extreme_settings(load_config(preset)) == [] for preset in list_presets())
