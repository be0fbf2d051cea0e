"""Your own model in the engine: `model.name: module:factory` through the CLI, and
`robustfair.train(model=..., train_data=..., test_data=...)` with tensors and DataLoaders.

The factories below are named by this module's import name (`test_own_model:tiny_net`),
as a user names theirs; every error is checked to be one line.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import robustfair
from robustfair.cli import main
from robustfair.data import load_dataset
from robustfair.engine.checkpoint import load_checkpoint
from robustfair.errors import ConfigError

MODULE = __name__
TINY = [
    "train.epochs=2",
    "data.train_per_class=10",
    "data.val_per_class=3",
    "data.test_per_class=3",
    "train.batch_size=50",
    "method.steps=2",
    "eval.sanity_checks=false",
    "schedule.milestones=[]",
]


def tiny_net(num_classes: int = 10, in_channels: int = 1, input_size: int = 8, width: int = 16) -> nn.Module:
    """A user's model: flatten, one hidden layer; gets its geometry from the data."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * input_size * input_size, width), nn.ReLU(), nn.Linear(width, num_classes)
    )


def wrong_outputs(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes + 1))


def not_a_module():
    return [1, 2]


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_line_error(argv) -> str:
    code, _, err = run_cli(argv)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("robustfair: error: "), err
    return err


@pytest.fixture(scope="module")
def digits_tensors():
    splits = load_dataset("digits")
    return (
        torch.from_numpy(splits.train.x),
        torch.from_numpy(splits.train.y),
        torch.from_numpy(splits.test.x),
        torch.from_numpy(splits.test.y),
    )


@pytest.fixture(scope="module")
def factory_run(tmp_path_factory):
    """A run of `test_own_model:tiny_net` trained two epochs through the CLI."""
    directory = tmp_path_factory.mktemp("factory")
    config = directory / "mine.yaml"
    config.write_text(
        yaml.safe_dump({"extends": "digits_pgd_at", "model": {"name": f"{MODULE}:tiny_net", "kwargs": {"width": 12}}})
    )
    run = directory / "run"
    code, _, err = run_cli(["train", config, *TINY, "--run-dir", run, "--quiet"])
    assert code == 0, err
    return run


def test_factory_model_trains_resumes_and_evaluates_through_the_cli(factory_run, tmp_path):
    run = factory_run
    assert load_checkpoint(run / "checkpoints" / "last.safetensors")["epoch"] == 2
    code, _, err = run_cli(["train", "--resume", run, "train.epochs=3", "--quiet"])
    assert code == 0, err
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    saved = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert saved["epoch"] == 3
    assert saved["config"]["model"]["name"] == f"{MODULE}:tiny_net"  # the checkpoint records the factory
    assert saved["config"]["model"]["kwargs"] == {"width": 12}
    assert saved["model"]["1.weight"].shape == (12, 64)
    code, out, err = run_cli(["eval", run, "--attack", "pgd10", "--json", tmp_path / "eval.json"])
    assert code == 0, err
    result = json.loads((tmp_path / "eval.json").read_text())
    assert sum(result["per_class"]["count"]) == 30


def test_analyze_and_report_work_on_a_factory_run(factory_run, tmp_path):
    code, _, err = run_cli(
        ["analyze", factory_run, "--steps", "5", "--target-steps", "2", "--out", tmp_path / "analysis.json"]
    )
    assert code == 0, err
    assert (tmp_path / "analysis.json").is_file()
    code, _, err = run_cli(["report", factory_run, "--out", tmp_path / "report.html"])
    assert code == 0, err


def test_a_factory_named_only_inside_a_checkpoint_file_is_never_imported(tmp_path):
    run = tmp_path / "run"
    robustfair.train("digits_erm", run, model=f"{MODULE}:tiny_net", overrides=TINY[1:] + ["train.epochs=1"], quiet=True)
    lone = tmp_path / "elsewhere.safetensors"
    lone.write_bytes((run / "checkpoints" / "last.safetensors").read_bytes())
    err = one_line_error(["eval", lone])
    assert "never imports code named inside a checkpoint file" in err
    # inside its run directory the checkpoint's factory matches config.yaml: allowed
    code, _, err = run_cli(["eval", run / "checkpoints" / "last.safetensors", "--attack", "none"])
    assert code == 0, err
    # a config.yaml naming another factory than the checkpoint does not vouch for it
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["name"] = f"{MODULE}:wrong_outputs"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert "never imports code" in one_line_error(["eval", run])


def test_python_api_with_tensors_trains_resumes_and_evaluates(tmp_path, digits_tensors):
    x, y, x_test, y_test = digits_tensors
    torch.manual_seed(0)
    net = tiny_net()
    run = tmp_path / "run"
    first = robustfair.train(
        "digits_pgd_at", run, model=net, train_data=(x, y), test_data=(x_test, y_test), overrides=TINY, quiet=True
    )  # two epochs
    assert sum(first["per_class"]["count"]) == 30
    results = robustfair.train(
        "digits_pgd_at",
        run,
        model=net,
        train_data=(x, y),
        test_data=(x_test, y_test),
        overrides=TINY + ["train.epochs=3"],
        resume=True,
        quiet=True,
    )
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == "<object torch.nn.modules.container.Sequential>"
    assert saved["data"]["name"] == "<python objects>"
    # the model was trained in place: its weights are the last checkpoint's
    last = load_checkpoint(run / "checkpoints" / "last.safetensors")["model"]
    assert all(torch.equal(last[k], v) for k, v in net.state_dict().items())
    # evaluated from Python with the objects; the same numbers as the run's own final evaluation
    again = robustfair.evaluate(
        run, model=tiny_net(), test_data=(x_test, y_test), attack="none", test_per_class=3, sanity=False
    )
    assert again["per_class"]["clean_acc"] == results["per_class"]["clean_acc"]
    # the command line cannot rebuild either, and says so in one line
    err = one_line_error(["eval", run])
    assert "robustfair.evaluate(run_dir, test_data=...)" in err
    err = one_line_error(["train", "--resume", run, "train.epochs=3"])
    assert "passed to robustfair.train()" in err


def test_python_api_with_dataloaders_and_a_recorded_factory(tmp_path, digits_tensors):
    x, y, x_test, y_test = digits_tensors
    from torch.utils.data import DataLoader, TensorDataset

    train_loader = DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=100)
    net = tiny_net(width=16)
    run = tmp_path / "run"
    robustfair.train(
        "digits_pgd_at",
        run,
        model=net,
        train_data=train_loader,
        test_data=test_loader,
        overrides=TINY + [f"model.name={MODULE}:tiny_net"],
        quiet=True,
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == f"{MODULE}:tiny_net"  # a model object plus a factory: the factory is recorded
    robustfair.train(
        "digits_pgd_at",
        run,
        model=net,
        train_data=train_loader,
        test_data=test_loader,
        overrides=TINY + [f"model.name={MODULE}:tiny_net", "train.epochs=3"],
        resume=True,
        quiet=True,
    )
    assert load_checkpoint(run / "checkpoints" / "last.safetensors")["epoch"] == 3
    # the data were objects, so the CLI cannot reload them; the model it could rebuild
    assert "data.name '<python objects>'" in one_line_error(["eval", run])
    result = robustfair.evaluate(run, test_data=test_loader, attack="none", sanity=False)
    assert sum(result["per_class"]["count"]) == len(y_test)


def test_reading_a_shuffling_dataloader_does_not_move_the_random_stream(digits_tensors):
    x, y, _, _ = digits_tensors
    from torch.utils.data import DataLoader, TensorDataset

    from robustfair.data import as_array_dataset

    torch.manual_seed(3)
    before = torch.get_rng_state()
    dataset = as_array_dataset(DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True))
    assert torch.equal(torch.get_rng_state(), before)
    assert sorted(dataset.y.tolist()) == sorted(y.tolist()) and dataset.x.dtype == np.float32


def test_object_model_must_match_a_named_factory(tmp_path, digits_tensors):
    x, y, x_test, y_test = digits_tensors
    with pytest.raises(ConfigError, match="is not what model.name") as err:
        robustfair.train(
            "digits_pgd_at",
            tmp_path / "r",
            model=tiny_net(width=7),
            train_data=(x, y),
            test_data=(x_test, y_test),
            overrides=TINY + [f"model.name={MODULE}:tiny_net"],
            quiet=True,
        )
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_such_module_xyz:net", "no module named 'no_such_module_xyz'"),
        (f"{MODULE}:tiny_nett", "did you mean 'tiny_net'"),
        (f"{MODULE}:wrong_outputs", "returns shape [2, 11]"),
        (f"{MODULE}:not_a_module", "returned a list, not a torch.nn.Module"),
        ("my-models:net", "expected a registry name or 'package.module:factory'"),
    ],
)
def test_factory_errors_are_one_line(tmp_path, name, message):
    err = one_line_error(["train", "digits_erm", *TINY, f"model.name={name}", "--run-dir", tmp_path / "r"])
    assert message in err


def test_factory_kwargs_errors_are_one_line(tmp_path):
    err = one_line_error(
        [
            "train",
            "digits_erm",
            *TINY,
            f"model.name={MODULE}:tiny_net",
            "model.kwargs.widht=3",
            "--run-dir",
            tmp_path / "r",
        ]
    )
    assert "model.kwargs.widht" in err and "did you mean 'width'" in err
    err = one_line_error(["train", "digits_erm", *TINY, "model.kwargs.width=3", "--run-dir", tmp_path / "r"])
    assert "model.kwargs: only for a 'package.module:factory' model" in err
    err = one_line_error(
        [
            "train",
            "digits_erm",
            *TINY,
            f"model.name={MODULE}:tiny_net",
            "model.options.width=3",
            "--run-dir",
            tmp_path / "r",
        ]
    )
    assert "its arguments go in model.kwargs" in err


def test_a_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "cwd_models_15.py").write_text(
        "from torch import nn\n\ndef net(num_classes, in_channels, input_size):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size ** 2, num_classes))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_models_15", raising=False)
    code, _, err = run_cli(
        [
            "train",
            "digits_erm",
            *TINY,
            "train.epochs=1",
            "model.name=cwd_models_15:net",
            "--run-dir",
            tmp_path / "r",
            "--quiet",
        ]
    )
    assert code == 0, err
    sys.modules.pop("cwd_models_15", None)


def test_train_data_without_test_data_is_a_one_line_error(digits_tensors, tmp_path):
    x, y, _, _ = digits_tensors
    with pytest.raises(ConfigError, match="train_data and test_data go together"):
        robustfair.train("digits_erm", tmp_path / "r", train_data=(x, y), quiet=True)
    with pytest.raises(ConfigError, match="cannot be imported by its name"):
        robustfair.train("digits_erm", tmp_path / "r", model=lambda: tiny_net(), quiet=True)


def test_config_forms_accepted_by_train():
    from robustfair.engine.config import load_config
    from robustfair.engine.user_objects import as_run_config

    preset = load_config("digits_bat", ["train.epochs=3"])
    mapping = as_run_config({"extends": "digits_bat", "name": "digits_bat"}, ["train.epochs=3"])
    assert mapping == preset == as_run_config("digits_bat", ["train.epochs=3"])
    assert as_run_config(preset, ["train.epochs=4"]).train.epochs == 4
    with pytest.raises(ConfigError, match="expected a RunConfig"):
        as_run_config(3)
