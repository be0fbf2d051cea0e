"""scripts/gpu_table1.py: the prepared GPU call for BAT's Table 1 at a reduced schedule.

The planner is pure and pinned here; the whole script runs end to end on the CPU with
--smoke (digits data, small CNN, one epoch; the numbers mean nothing): the fast variant
in-process without the benchmark, the slow one through scripts/gpu_table1.sh with the
benchmark on CIFAR-10 (JPEG). Both check that what comes back fits the GPU machine's
return limits (at most 8 files of at most 16 MiB, no checkpoints), that a cut-off call
still returns the runs finished before it, and that runs that cannot fit are skipped
with a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import gpu_table1  # noqa: E402
from gpu_table1 import Estimates, class_balanced_indices, plan_schedule, schedule_points  # noqa: E402

RETURN_LIMIT_FILES, RETURN_LIMIT_BYTES = 8, 16 * 2**20


def estimates(step: float = 0.05) -> Estimates:
    return Estimates(
        step_s={"pgd_at": step, "trades6": 1.1 * step, "bat": 1.5 * step, "frl_rwrm": 1.1 * step},
        steps_per_epoch=391,
        pgd20_s=5.0,
        aa_s={"standard": 40.0, "lite": 12.0},
    )


def test_schedule_keeps_the_papers_shape():
    assert schedule_points(100) == ([75, 90], [0.1, 0.01])
    assert schedule_points(8) == ([6, 7], [0.1, 0.01])
    assert schedule_points(4) == ([3, 4], [0.1, 0.01])
    assert schedule_points(2) == ([2], [0.01])  # both milestones on the last epoch: the later factor
    assert schedule_points(1) == ([], [])


def test_plan_prefers_standard_autoattack_then_lite_then_none():
    est = estimates()
    per_epoch = sum(est.epoch_s(m) for m in ("pgd_at", "trades6", "bat"))
    roomy = plan_schedule(est, 15 + 3 * est.eval_s("standard") + 10 * per_epoch + 1)
    assert roomy.autoattack == "standard" and roomy.epochs == 10
    assert roomy.milestones == [8, 9] and roomy.frl_epochs == 4
    tight = plan_schedule(est, 15 + 3 * est.eval_s("standard") + 3 * per_epoch)
    assert tight.autoattack == "lite" and tight.epochs >= 4  # standard would leave fewer than 4 epochs
    tiny = plan_schedule(est, 60)
    assert tiny.autoattack is None and tiny.epochs == 1
    huge = plan_schedule(est, 1e6)
    assert huge.epochs == gpu_table1.E_MAX
    # Every method gets the same schedule; the estimates sum to what the budget allows.
    assert set(roomy.estimated_s) == {"pgd_at", "trades6", "bat"}
    assert est.epoch_s("bat") == pytest.approx(391 * 0.075 * gpu_table1.MARGIN + 1.0)
    assert sum(roomy.estimated_s.values()) <= 15 + 3 * est.eval_s("standard") + 10 * per_epoch + 1 - 15
    assert "REDUCED SCHEDULE: 10 epochs" in roomy.schedule_label()


def test_class_balanced_subset_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 1000)
    np.random.default_rng(1).shuffle(labels)
    a = class_balanced_indices(labels, 100, seed=0)
    assert len(a) == 1000 and np.bincount(labels[a]).tolist() == [100] * 10
    assert np.array_equal(a, class_balanced_indices(labels, 100, seed=0))
    assert not np.array_equal(a, class_balanced_indices(labels, 100, seed=1))
    assert not np.array_equal(np.sort(a)[:100], np.arange(100))  # not "the first N"


def _check_returned(out: Path) -> dict:
    files = [p for p in out.iterdir() if p.is_file()]
    assert len(files) <= RETURN_LIMIT_FILES
    assert all(p.stat().st_size <= RETURN_LIMIT_BYTES for p in files)
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert names and not any("checkpoint" in n or n.endswith(".safetensors") for n in names)
    record = json.loads((out / "results.json").read_text())
    table = (out / "table1.md").read_text()
    assert "REDUCED SCHEDULE" in table and "SMOKE TEST" in table
    return record


def test_smoke_run_in_process(tmp_path):
    out = tmp_path / "out"
    code = gpu_table1.main(
        ["--smoke", "--dataset", "digits", "--no-benchmark", "--out", str(out), "--work", str(tmp_path / "work")]
    )
    assert code == 0
    record = _check_returned(out)
    assert record["status"] == "finished"
    assert list(record["runs"]) == ["pgd_at", "bat", "trades6", "frl_rwrm"]  # the run order
    for entry in record["runs"].values():
        assert entry["epochs"] == 1 and "autoattack" in entry
        assert entry["autoattack"]["subset"]["size"] == entry["autoattack"]["num_samples"]
        assert entry["results"]["run"]["acceleration"]["device"] == "cpu"
    assert "precision_gap" in record["runs"]["pgd_at"]
    table = (out / "table1.md").read_text()
    rows = [line.split(" |")[0] for line in table.splitlines() if line.startswith("| ")]
    assert rows[1:5] == ["| PGD-AT", "| TRADES(6)", "| FRL RW+RM (fine-tunes PGD-AT)", "| BAT"]  # Table 1's order


def test_cut_off_call_keeps_finished_runs_and_skips_what_cannot_fit(tmp_path, monkeypatch):
    original = gpu_table1.train_one
    calls = []

    def interrupted_after_first(spec, *args, **kwargs):
        calls.append(spec.key)
        if len(calls) == 2:
            raise KeyboardInterrupt("the time limit's SIGINT")
        return original(spec, *args, **kwargs)

    monkeypatch.setattr(gpu_table1, "train_one", interrupted_after_first)
    out = tmp_path / "out"
    gpu_table1.main(
        [
            "--smoke",
            "--dataset",
            "digits",
            "--no-benchmark",
            "--no-precision-gap",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ]
    )
    record = _check_returned(out)
    assert record["status"].startswith("interrupted") and list(record["runs"]) == ["pgd_at"]

    # Steps measured as 60 s each: no run fits in the budget, so each is skipped with its reason.
    monkeypatch.setattr(gpu_table1, "train_one", original)
    monkeypatch.setattr(gpu_table1, "measure_steps", lambda args, device, keys: {k: 60.0 for k in keys})
    out = tmp_path / "tight"
    gpu_table1.main(
        [
            "--smoke",
            "--dataset",
            "digits",
            "--no-benchmark",
            "--no-frl",
            "--budget-s",
            "60",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work2"),
        ]
    )
    record = json.loads((out / "results.json").read_text())
    assert set(record["skipped"]) == {"pgd_at", "bat", "trades6"} and not record["runs"]
    assert all("s left" in reason for reason in record["skipped"].values())
    assert "## Not run" in (out / "table1.md").read_text()


@pytest.mark.slow
def test_shell_script_smoke_with_benchmark_on_cifar10(tmp_path, shared_data):
    """scripts/gpu_table1.sh run --smoke: the throughput benchmark (smoke) and CIFAR-10 (JPEG)."""
    out = tmp_path / "out"
    env = dict(
        os.environ,
        OUT=str(out),
        PYTHON=sys.executable,
        TABLE1_WORK=str(tmp_path / "work"),
        ROBUSTFAIR_DATA=str(shared_data),
    )
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_table1.sh"), "run", "--smoke", "--no-frl"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = _check_returned(out)
    assert (out / "log.txt").is_file() and (out / "benchmark.json").is_file()
    assert record["runs"]["bat"]["results"]["dataset"].startswith("CIFAR-10 (JPEG)")
    assert "BAT step / PGD-AT step" in (out / "log.txt").read_text()
