import pickle

import pytest
import torch

from robustfair.engine.checkpoint import load_checkpoint, save_checkpoint
from robustfair.errors import CheckpointError


def test_round_trip_nested_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "method": {"l0": torch.tensor([0.1, 0.2]), "a1": 0.05, "names": ["a", "b"], "none": None},
        "rng": {"torch": torch.get_rng_state()},
    }
    path = save_checkpoint(tmp_path / "last.safetensors", state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["method"]["a1"] == 0.05 and loaded["method"]["names"] == ["a", "b"]
    assert torch.equal(loaded["model"]["weight"], model.weight.detach())
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(loaded["optimizer"])  # integer param ids survive the round trip
    assert torch.equal(
        opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"]
    )
    assert torch.equal(loaded["rng"]["torch"], state["rng"]["torch"])


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle executed code')",))


def test_pickle_checkpoint_is_refused_without_executing(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": _Boom()}))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)
    zipped = tmp_path / "evil_zip.pt"
    torch.save({"x": torch.zeros(2)}, zipped)
    with pytest.raises(CheckpointError, match="pickle/torch.save"):
        load_checkpoint(zipped)


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.safetensors", {"epoch": 1, "w": torch.ones(2)})
    import robustfair.engine.checkpoint as ck

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(2)})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp file left


def test_truncated_file_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(path)
