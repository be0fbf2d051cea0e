"""A training process killed with SIGKILL in the middle of an epoch, then resumed with
`robustfair train --resume`, ends with exactly the weights of an uninterrupted run (CPU).

The killed run is a real `python -m robustfair.cli train` process. Its stderr is a
pseudo-terminal, so the progress bar reports every step and the kill lands at a known
point: step >= 10 of 120 of epoch 2, after epoch 1's checkpoint was written.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from robustfair.cli import main
from robustfair.engine.checkpoint import load_checkpoint
from robustfair.engine.config import load_config
from robustfair.engine.trainer import train

pty = pytest.importorskip("pty", reason="needs a POSIX pseudo-terminal")

CONFIG = {
    "extends": "digits_pgd_at",
    "name": "sigkill",
    "data": {"train_per_class": 120, "val_per_class": 4, "test_per_class": 4},  # 1,200 images
    # enough work per epoch (120 steps of PGD-10) that the progress bar, which redraws at most
    # every 0.5 s, shows epoch 2 mid-way even on a fast, idle machine (with 60 steps of PGD-3
    # an epoch took 0.5 s there, and the bar jumped from 0 to 60/60)
    "method": {"steps": 10},
    "schedule": {"name": "multistep", "milestones": [2]},
    "train": {"epochs": 3, "batch_size": 10, "val_attack": "fgsm", "log_every": 1},  # 120 steps per epoch
    "eval": {"attack": "fgsm", "sanity_checks": False},
}
KILL_AFTER_STEP = 10
PROGRESS = re.compile(rb"epoch 2/3:[^|\r\n]*\|[^|\r\n]*\| *(\d+)/(\d+)")  # tqdm: "epoch 2/3:  17%|█▋  | 10/60 [..."


def kill_mid_epoch_two(config_path, run_dir, timeout=120.0):
    """Run the CLI, SIGKILL it once epoch 2 reports step >= KILL_AFTER_STEP; returns (step, total)."""
    master, slave = pty.openpty()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "robustfair.cli", "train", str(config_path), "--run-dir", str(run_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            seen += chunk
            steps = [(int(a), int(b)) for a, b in PROGRESS.findall(seen[-400:])]
            if steps and steps[-1][0] >= KILL_AFTER_STEP:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                return steps[-1]
        pytest.fail(
            f"never saw step {KILL_AFTER_STEP} of epoch 2 (exit {proc.poll()}): {seen[-2000:].decode(errors='replace')}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path):
    config_path = tmp_path / "sigkill.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    killed = tmp_path / "killed"

    step, total = kill_mid_epoch_two(config_path, killed)
    assert KILL_AFTER_STEP <= step < total == 120
    # The kill landed inside epoch 2: only epoch 1 is on disk, and nothing claims completion.
    assert load_checkpoint(killed / "checkpoints" / "last.safetensors")["epoch"] == 1
    assert [json.loads(l)["epoch"] for l in (killed / "metrics.jsonl").read_text().splitlines()] == [1]
    assert not (killed / "results.json").exists()

    # Resume through the same command line (in this process), and run the reference.
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    reference = tmp_path / "reference"
    train(load_config(str(config_path)), reference, quiet=True)

    a = load_checkpoint(reference / "checkpoints" / "last.safetensors")
    b = load_checkpoint(killed / "checkpoints" / "last.safetensors")
    assert a["epoch"] == b["epoch"] == 3
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [json.loads(l)["epoch"] for l in (killed / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    ra, rb = (json.loads((run / "results.json").read_text()) for run in (reference, killed))
    assert ra["summary"] == rb["summary"] and ra["best"]["epoch"] == rb["best"]["epoch"]
    assert not [p.name for p in (killed / "checkpoints").iterdir() if p.name.endswith(".tmp")]
