"""The benchmark scripts' own machinery: both clocks, the judged one, and the GPU scripts'
CPU paths (skipped without CUDA; --smoke runs their code on the CPU, numbers meaningless)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import Timings, interleaved_times, judged_clock, paired_ratio, wall_ratio  # noqa: E402


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_both_clocks_are_recorded_and_cpu_time_is_judged_on_a_cpu():
    """A call that waits (as a process on a loaded machine waits for a core) adds wall time
    but not CPU time: the CPU-time ratio stays the work's ratio."""
    fns = {"work": lambda: _spin(0.02), "work_and_wait": lambda: (_spin(0.02), time.sleep(0.06))}
    times = interleaved_times(fns, repeats=3, warmup=0, device=torch.device("cpu"), verbose=False)
    assert isinstance(times, Timings) and times.clock == "cpu" == judged_clock(torch.device("cpu"))
    assert judged_clock(torch.device("cuda")) == "wall"
    assert times["work"] == times.cpu["work"] and len(times.wall["work"]) == 3
    ratio, _ = paired_ratio(times["work_and_wait"], times["work"])
    assert 0.7 < ratio < 1.4  # the same CPU work
    # The wait shows on the wall clock only (a sleep never returns early; it uses no CPU).
    assert min(times.wall["work_and_wait"]) >= 0.06 and max(times.cpu["work_and_wait"]) < 0.05
    assert wall_ratio(times, "work_and_wait", "work") > 0
    record = times.per_round()
    assert record["clock"] == "cpu" and set(record["wall_s"]) == set(record["cpu_s"]) == set(fns)
    walled = interleaved_times(fns, repeats=1, warmup=0, device=torch.device("cpu"), verbose=False, clock="wall")
    assert walled["work_and_wait"] == walled.wall["work_and_wait"]
    with pytest.raises(ValueError, match="clock"):
        interleaved_times(fns, repeats=1, warmup=0, device=torch.device("cpu"), clock="gpu")


def _run(script: str, *args: str, tmp_path: Path) -> tuple[str, dict]:
    path = tmp_path / f"{script}.json"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *args, "--json", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout, json.loads(path.read_text())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
@pytest.mark.parametrize("script", ["gpu_throughput", "attack_compile"])
def test_gpu_benchmarks_skip_without_cuda(script, tmp_path):
    stdout, record = _run(script, tmp_path=tmp_path)
    assert "CUDA not available: skipped" in stdout and record["measurements"]["skipped"]


def test_gpu_throughput_smoke_prints_every_target(tmp_path):
    stdout, record = _run("gpu_throughput", "--smoke", "--sections", "train,bat,eval", tmp_path=tmp_path)
    for line in (
        "images/s >= 5000",
        "images/s ratio >= 10",
        "BAT step / PGD-AT step (robustfair defaults) <= 1.6",
        "PGD-20 class-wise evaluation of 10,000 images",
    ):
        assert f"{line}" in stdout
    assert "not judged" in stdout and "PASS" not in stdout and "FAIL" not in stdout
    targets = record["targets"]
    assert set(targets) == {"library_images_per_s", "library_over_authors_style", "bat_over_pgd_at", "eval_10k_s"}
    assert all(t["met"] is None for t in targets.values())
    precisions = record["measurements"]["eval"]["precisions"]
    assert set(precisions) == {"fp32", "bf16", "fp32_no_tf32"}


def test_attack_compile_smoke(tmp_path):
    stdout, record = _run("attack_compile", "--smoke", tmp_path=tmp_path)
    variants = record["measurements"]["variants"]
    assert set(variants) == {"compact_eager", "masked_eager"}
    assert variants["compact_eager"]["flip_steps_agree_percent"] == 100.0  # same points, either variant
