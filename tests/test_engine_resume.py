"""An interrupted run resumed from its last checkpoint ends exactly where an uninterrupted run does."""

import json

import pytest
import torch

from robustfair.engine.checkpoint import load_checkpoint
from robustfair.engine.config import load_config
from robustfair.engine.trainer import Trainer, train
from robustfair.errors import CheckpointError, ConfigError

SMALL = [
    "train.epochs=3",
    "data.train_per_class=20",
    "data.val_per_class=4",
    "data.test_per_class=4",
    "train.batch_size=50",
    "method.steps=3",
    "eval.sanity_checks=false",
    "schedule.milestones=[2]",
]


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.safetensors")["model"]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, monkeypatch):
    config = load_config("digits_pgd_at", SMALL)
    full = tmp_path / "full"
    train(config, full, quiet=True)

    crashed = tmp_path / "crashed"
    original = Trainer._train_epoch

    def crash_in_third_epoch(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config, crashed, quiet=True)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert load_checkpoint(crashed / "checkpoints" / "last.safetensors")["epoch"] == 2
    assert not (crashed / "results.json").exists()

    with pytest.raises(ConfigError, match="--resume"):
        train(config, crashed, quiet=True)  # never silently overwrites
    train(config, crashed, resume=True, quiet=True)

    a, b = weights(full), weights(crashed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = [json.loads(l) for l in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    results = json.loads((crashed / "results.json").read_text())
    assert results["summary"] == json.loads((full / "results.json").read_text())["summary"]


def test_run_directory_contents(tmp_path):
    config = load_config("digits_trades", SMALL[:1] + ["train.epochs=2"] + SMALL[1:])
    run = tmp_path / "run"
    results = train(config, run, quiet=True)
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "meta.json",
        "metrics.jsonl",
        "checkpoints",
        "results.json",
    }
    assert set(results["summary"]) == {
        "avg_std_err",
        "worst_std_err",
        "avg_bndy_err",
        "worst_bndy_err",
        "avg_rob_err",
        "worst_rob_err",
    }
    assert results["best"]["selected_by"].startswith("validation")
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert {"epoch", "lr", "loss", "images_per_s", "val"} <= set(line)
    for c, r in zip(results["per_class"]["clean_acc"], results["per_class"]["robust_acc"]):
        assert r <= c


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    config = load_config("digits_erm", SMALL)
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(config, tmp_path / "nothing", resume=True, quiet=True)
