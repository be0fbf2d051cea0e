"""Checkpoints never execute code when loaded, on every path that loads one (`--resume`,
`init_from`, `load_checkpoint`), and a checkpoint that does not fit is a clear error.

Round trip, torch.save refusal and atomic replacement of a single file are pinned in
tests/test_checkpoint.py; a kill or a full disk during a run's writes in
tests/test_reliability_crash.py and tests/test_reliability_disk.py.
"""

import pickle

import pytest
import torch

from robustfair.cli import main
from robustfair.engine.checkpoint import load_checkpoint, save_checkpoint
from robustfair.engine.config import load_config
from robustfair.engine.trainer import train
from robustfair.errors import CheckpointError

SMALL = [
    "train.epochs=1",
    "data.train_per_class=10",
    "data.val_per_class=2",
    "data.test_per_class=2",
    "train.batch_size=50",
    "eval.sanity_checks=false",
    "train.val_attack=none",
    "eval.attack=none",
]
EXECUTED = []


class Payload:
    """Unpickling this calls EXECUTED.append: proof that code ran."""

    def __reduce__(self):
        return (EXECUTED.append, ("pickle executed code",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_is_refused_unread(tmp_path, protocol):
    path = tmp_path / "last.safetensors"  # the name does not make it trusted
    path.write_bytes(pickle.dumps({"model": Payload()}, protocol=protocol))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "robustfair loads only .safetensors checkpoints" in str(err.value)
    assert "cannot execute code" in str(err.value)
    assert EXECUTED == []


def test_resume_and_init_from_refuse_a_crafted_pickle(tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config("digits_erm", SMALL), run, quiet=True)
    last = run / "checkpoints" / "last.safetensors"
    last.write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    assert main(["train", "--resume", str(run), "train.epochs=2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pickle/torch.save file and is refused unread" in err
    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    assert (
        main(
            [
                "train",
                "digits_erm",
                *SMALL,
                f"init_from={tmp_path / 'evil.pt'}",
                "--run-dir",
                str(tmp_path / "other"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "refused unread" in capsys.readouterr().err
    assert EXECUTED == []


def test_a_checkpoint_that_does_not_fit_the_config_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    train(load_config("digits_erm", SMALL), run, quiet=True)
    changed = load_config("digits_erm", SMALL + ["train.epochs=2", "model.name=mlp"])
    with pytest.raises(CheckpointError, match=r"cannot resume from .*last.safetensors: it does not fit this config"):
        train(changed, run, resume=True, quiet=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "bad metadata"])
def test_damaged_checkpoints_are_clear_errors(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.safetensors", {"epoch": 1, "w": torch.ones(64)})
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 10])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a well-formed file whose JSON state points at a tensor that is not there
        save_checkpoint(path, {"w": torch.ones(2)})
        text = path.read_bytes().replace(b'\\"w\\"}', b'\\"x\\"}')
        path.write_bytes(text)
    with pytest.raises(CheckpointError, match="not a valid safetensors|metadata is corrupt"):
        load_checkpoint(path)


def test_a_header_length_starting_with_the_pickle_byte_still_loads(tmp_path):
    # safetensors pads its header to a multiple of 8, so its little-endian length can begin
    # with 0x80, the first byte of a pickle: such a checkpoint (here 384 = 0x180) must load.
    for pad in range(400):
        path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(1), "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    assert load_checkpoint(path)["pad"] == "x" * pad
