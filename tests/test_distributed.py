"""Two processes over gloo (torchrun + DDP) match one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from robustfair.engine.checkpoint import load_checkpoint

CONFIG = {
    "name": "ddp_check",
    "data": {"name": "digits", "train_per_class": 32, "test_per_class": 4},
    "model": {"name": "mlp"},
    "method": {"name": "pgd_at", "eps": 0.1, "step_size": 0.05, "steps": 2, "start": "none"},
    "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005},
    "schedule": {"name": "constant"},
    "train": {"epochs": 2, "batch_size": 64, "val_attack": "none"},
    "eval": {"attack": "fgsm", "sanity_checks": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def test_two_process_ddp_matches_one_process(tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    one = run_cli(
        [sys.executable, "-m", "robustfair.cli", "train", str(cfg), "--run-dir", str(tmp_path / "one"), "--quiet"]
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = run_cli(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--nnodes=1",
            f"--master_port={free_port()}",
            "-m",
            "robustfair.cli",
            "train",
            str(cfg),
            "--run-dir",
            str(tmp_path / "two"),
            "--quiet",
        ]
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.safetensors")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.safetensors")
    assert b["config"]["train"]["batch_size"] == 64
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], atol=1e-5, rtol=1e-4), key
    assert (tmp_path / "two" / "results.json").is_file()
    ra = json.loads((tmp_path / "one" / "results.json").read_text())
    rb = json.loads((tmp_path / "two" / "results.json").read_text())
    assert rb["run"]["world_size"] == 2
    assert ra["per_class"]["count"] == rb["per_class"]["count"]  # metrics summed over both ranks' shards
    assert ra["per_class"]["clean_acc"] == pytest.approx(rb["per_class"]["clean_acc"])
