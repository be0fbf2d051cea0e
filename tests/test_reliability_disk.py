"""A full disk or a read-only run directory gives one clear line, keeps the last good
checkpoint intact, and never leaves a half-written file or a run claiming completion.

The disk is simulated at the two calls `robustfair.engine.run_files` makes to create and
fill files (`_open`, `_write`): a full disk writes part of a chunk and then fails with
ENOSPC, exactly what `write(2)` does; a read-only file system fails `open` with EROFS.
(Tests run as root here, where chmod does not stop writes; the real-permission test
skips honestly in that case.)
"""

import errno
import json
import os
from pathlib import Path

import pytest
import torch

import robustfair.engine.run_files as run_files
from robustfair.cli import main
from robustfair.engine.checkpoint import load_checkpoint, save_checkpoint
from robustfair.engine.config import load_config
from robustfair.engine.run_files import RunFileError, append_line, atomic_write_bytes, check_writable
from robustfair.engine.trainer import Trainer, train

SMALL = [
    "train.epochs=3",
    "data.train_per_class=20",
    "data.val_per_class=4",
    "data.test_per_class=4",
    "train.batch_size=50",
    "eval.sanity_checks=false",
    "train.val_attack=fgsm",
    "eval.attack=fgsm",
]


class FullDisk:
    """Files whose name contains `target` fill the disk once `allowed` of them were opened."""

    def __init__(self, target: str, allowed: int):
        self.target, self.allowed, self.opened, self.doomed, self.full = target, allowed, 0, set(), True
        self.real_open, self.real_write = run_files._open, run_files._write

    def open(self, path, flags, mode=0o777):
        fd = self.real_open(path, flags, mode)
        if self.full and self.target in os.path.basename(path):
            self.opened += 1
            if self.opened > self.allowed:
                self.doomed.add(fd)
        return fd

    def write(self, fd, data):
        if fd in self.doomed:
            self.doomed.discard(fd)
            self.real_write(fd, bytes(data[: max(1, len(data) // 2)]))  # part of it lands, then ENOSPC
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real_write(fd, data)


def install(monkeypatch, disk):
    monkeypatch.setattr(run_files, "_open", disk.open)
    monkeypatch.setattr(run_files, "_write", disk.write)


def temp_files(run: Path) -> list[str]:
    return [p.name for p in run.rglob("*") if p.name.endswith(".tmp")]


def metric_epochs(run: Path) -> list[int]:
    text = (run / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line)["epoch"] for line in text.splitlines()]  # every line parses: none is half-written


@pytest.mark.parametrize(
    "target, allowed, good_epochs",
    [
        ("last.safetensors", 1, 1),  # the disk fills while saving epoch 2's checkpoint
        ("metrics.jsonl", 1, 1),  # ... while appending epoch 2's metrics line
        ("results.json", 0, 3),  # ... while writing the final results
    ],
)
def test_disk_full_keeps_last_good_checkpoint_and_resume_finishes(
    tmp_path, monkeypatch, capsys, target, allowed, good_epochs
):
    run = tmp_path / "run"
    disk = FullDisk(target, allowed)
    install(monkeypatch, disk)
    assert main(["train", "digits_erm", *SMALL, "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robustfair: error: cannot write ")
    assert target in err and "No space left on device; the disk is full: free some space" in err
    assert f"epoch {good_epochs}) is intact" in err and f"robustfair train --resume {run}" in err

    assert load_checkpoint(run / "checkpoints" / "last.safetensors")["epoch"] == good_epochs
    assert load_checkpoint(run / "checkpoints" / "best.safetensors")["epoch"] <= good_epochs
    assert not (run / "results.json").exists()
    assert temp_files(run) == []
    # (a line for the epoch whose checkpoint failed may follow; --resume drops it)
    assert metric_epochs(run)[:good_epochs] == list(range(1, good_epochs + 1))

    disk.full = False  # space was freed
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "results.json").read_text())["run"]["epochs"] == 3
    assert metric_epochs(run) == [1, 2, 3]
    assert temp_files(run) == []


def test_read_only_run_directory_fails_before_any_work(tmp_path, monkeypatch, capsys):
    run = tmp_path / "readonly"
    run.mkdir()
    real_open = run_files._open

    def read_only_open(path, flags, mode=0o777):
        if str(path).startswith(str(run)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, mode)

    loaded = []
    monkeypatch.setattr(run_files, "_open", read_only_open)
    monkeypatch.setattr("robustfair.data.load_dataset", lambda *a, **k: loaded.append(a) or 1 / 0)
    assert main(["train", "digits_erm", *SMALL, "--run-dir", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot write {run / 'checkpoints'}: Read-only file system" in err
    assert "choose a writable --run-dir" in err
    assert loaded == []  # refused before the data was even loaded
    assert list(run.iterdir()) == []  # the probe left nothing behind


def test_unwritable_directory_with_real_permissions(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip(
                "running as root (or without permission checks): chmod cannot make a directory "
                "unwritable here; test_read_only_run_directory_fails_before_any_work covers it"
            )
        with pytest.raises(RunFileError, match="Permission denied; permission denied: choose a directory"):
            check_writable(parent / "run" / "checkpoints")
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)


def test_too_little_free_space_for_the_checkpoints_is_refused_up_front(tmp_path, monkeypatch):
    class Usage:
        free = 64 * 1024

    monkeypatch.setattr(run_files.shutil, "disk_usage", lambda path: Usage())
    monkeypatch.setattr(Trainer, "_train_epoch", lambda self, epoch: pytest.fail("training started"))
    with pytest.raises(RunFileError, match=r"0.1 MiB free but 3 checkpoint files of this model need about"):
        train(load_config("digits_erm", SMALL), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_partial_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = atomic_write_bytes(tmp_path / "f.bin", b"old contents")
    disk = FullDisk("f.bin", 0)
    install(monkeypatch, disk)
    with pytest.raises(RunFileError) as err:
        atomic_write_bytes(path, b"new contents that do not fit")
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert str(err.value) == f"cannot write {path}: No space left on device; the disk is full: free some space"
    assert path.read_bytes() == b"old contents" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    # a checkpoint, the same way
    disk.full = False
    ckpt = save_checkpoint(tmp_path / "last.safetensors", {"epoch": 1, "w": torch.ones(3)})
    disk.full, disk.allowed, disk.opened, disk.target = True, 0, 0, "last.safetensors"
    with pytest.raises(RunFileError):
        save_checkpoint(ckpt, {"epoch": 2, "w": torch.zeros(3)})
    assert load_checkpoint(ckpt)["epoch"] == 1 and temp_files(tmp_path) == []


def test_failed_append_is_rolled_back(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_line(path, '{"epoch": 1}')
    install(monkeypatch, FullDisk("metrics.jsonl", 0))
    with pytest.raises(RunFileError, match="No space left"):
        append_line(path, '{"epoch": 2, "loss": 0.5}')
    assert path.read_text() == '{"epoch": 1}\n'


def test_leftovers_of_a_killed_write_are_cleaned_on_resume(tmp_path):
    run = tmp_path / "run"
    config = load_config("digits_erm", SMALL[1:] + ["train.epochs=1"])
    train(config, run, quiet=True)
    # what a kill during a checkpoint write, and during a metrics append, leave behind
    stale = run / "checkpoints" / ".last.safetensors.1234.abcd.tmp"
    stale.write_bytes(b"half a checkpoint")
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "lo')
    assert main(["train", "--resume", str(run), "train.epochs=2", "--quiet"]) == 0
    assert not stale.exists()
    assert metric_epochs(run) == [1, 2]


def test_continuing_a_finished_run_never_leaves_it_claiming_completion(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(load_config("digits_erm", SMALL[1:] + ["train.epochs=1"]), run, quiet=True)
    first = json.loads((run / "results.json").read_text())

    def interrupted(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    assert main(["train", "--resume", str(run), "train.epochs=2", "--quiet"]) == 130
    assert not (run / "results.json").exists()  # epoch 1's results no longer describe this run
    assert json.loads((run / "results_epoch1.json").read_text()) == first
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "train.epochs=2", "--quiet"]) == 0
    assert json.loads((run / "results.json").read_text())["run"]["epochs"] == 2
