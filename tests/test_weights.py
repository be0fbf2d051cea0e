"""Checkpoints people have: `.pt`/`.pth` state dicts load through `torch.load(weights_only=True)`,
wrappers and DataParallel prefixes are handled, and a pickle that would run code is refused."""

from __future__ import annotations

import io
import json
import os
import pickle
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from torch import nn

from robustfair.cli import main
from robustfair.engine.checkpoint import save_checkpoint
from robustfair.engine.weights import fit_keys, load_weights, read_state_dict, unwrap_state_dict
from robustfair.errors import CheckpointError

MODULE = __name__
MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / f"robustfair-weights-test-{os.getpid()}"


def tiny_net(num_classes: int = 10, in_channels: int = 1, input_size: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * input_size * input_size, 16), nn.ReLU(), nn.Linear(16, num_classes)
    )


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_a_pt_state_dict_with_a_module_prefix_evaluates(tmp_path):
    from robustfair.data import load_dataset

    torch.manual_seed(1)
    trained = tiny_net()  # a few plain SGD steps, so the classes' accuracies differ
    train = load_dataset("digits").train
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.5)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(trained(torch.from_numpy(train.x)), torch.from_numpy(train.y)).backward()
        optimizer.step()
    path = tmp_path / "published.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}, "epoch": 90}, path)
    code, out, err = run_cli(
        [
            "eval",
            "--model",
            f"{MODULE}:tiny_net",
            "--dataset",
            "digits",
            "--weights",
            path,
            "--attack",
            "none",
            "--test-per-class",
            "5",
            "--json",
            tmp_path / "r.json",
        ]
    )
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    # the numbers are those of the saved weights, computed here independently
    from robustfair.engine.config import DataConfig, RunConfig
    from robustfair.engine.run_data import prepare_data

    data = prepare_data(RunConfig(data=DataConfig(name="digits", test_per_class=5)))
    with torch.no_grad():
        pred = trained.eval()(torch.from_numpy(data.test.x)).argmax(1).numpy()
    correct = [100.0 * float((pred[data.test.y == c] == c).mean()) for c in range(10)]
    assert len(set(correct)) > 2
    assert result["per_class"]["clean_acc"] == pytest.approx(correct)


def test_a_pt_holding_code_is_refused_without_running_it(tmp_path):
    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": RunsCode()}, evil)
    raw = tmp_path / "raw.pth"  # a plain pickle (the legacy torch.save format), same payload
    raw.write_bytes(pickle.dumps({"model": RunsCode()}, protocol=2))
    for path in (evil, raw):
        code, _, err = run_cli(
            ["eval", "--model", f"{MODULE}:tiny_net", "--dataset", "digits", "--weights", path, "--attack", "none"]
        )
        assert code == 2 and err.count("\n") == 1, err
        assert "holds pickled Python objects other than tensors" in err and "system" in err
    assert not MARKER.exists()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"net": {f"module.model.{k}": v for k, v in sd.items()}},
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
    ],
)
def test_wrappers_and_prefixes_are_unwrapped(tmp_path, wrap):
    source = tiny_net()
    path = tmp_path / "w.pth"
    torch.save(wrap(source.state_dict()), path)
    target = load_weights(tiny_net(), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_safetensors_files_load_too(tmp_path):
    source = tiny_net()
    save_checkpoint(tmp_path / "ckpt.safetensors", {"model": source.state_dict(), "epoch": 3})
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "plain.safetensors")
    for name in ("ckpt.safetensors", "plain.safetensors"):
        target = load_weights(tiny_net(), tmp_path / name)
        assert torch.equal(target[3].weight, source[3].weight)


def test_a_model_own_prefix_is_kept_when_it_fits_best():
    model = nn.Sequential()
    model.add_module("model", tiny_net())
    state = {f"model.{k}": v for k, v in tiny_net().state_dict().items()}
    assert set(fit_keys(state, set(model.state_dict()))) == set(model.state_dict())
    assert set(fit_keys({f"module.{k}": v for k, v in state.items()}, set(model.state_dict()))) == set(state)


def test_keys_that_do_not_fit_are_one_clear_error(tmp_path):
    state = tiny_net().state_dict()
    state.pop("3.bias")
    state["head.weight"] = torch.zeros(2)
    state["1.weight"] = torch.zeros(16, 65)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as err:
        load_weights(tiny_net(), tmp_path / "w.pt")
    message = str(err.value)
    assert "\n" not in message
    assert "1 missing ('3.bias')" in message and "1 unexpected ('head.weight')" in message
    assert "1 of another shape ('1.weight': file [16, 65], model [16, 64])" in message


def test_files_that_are_no_state_dict_are_one_clear_error(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, tmp_path / "meta.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "meta.pt").read_bytes()[:40])
    for name, match in [
        ("notes.pt", "neither a .safetensors file nor a torch.save"),
        ("list.pt", "holds a list, not a state dict"),
        ("meta.pt", "holds no state dict of tensors"),
        ("cut.pt", "cannot be read as a torch.save state dict"),
        ("missing.pt", "does not exist"),
    ]:
        with pytest.raises(CheckpointError, match=match) as err:
            read_state_dict(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="top-level keys: 'epoch', 'args'"):
        unwrap_state_dict({"epoch": 3, "args": {}}, "x")
