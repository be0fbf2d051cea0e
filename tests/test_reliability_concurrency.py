"""One writer per run directory, and sweep workers that share a grid.

Writers are real `python -m robustfair.cli train` processes. A gate (a file the test
creates) holds the writer before its second epoch, so the test acts while the writer
is known to be mid-run, with no timing guesswork: a second writer (train, train --resume)
fails at once naming the holder's PID and host and leaves the first writer's files
intact; a SIGKILLed writer leaves its lock to the OS, and `--resume` finishes the run.
`group train` takes the same lock for each of its tabular runs.
Sweep workers are checked in-process against a stand-in worker (a process holding a
run's lock), then three real `robustfair sweep` processes share one grid (slow).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from robustfair import run_lock
from robustfair.cli import main
from robustfair.engine import sweep
from robustfair.engine.sweep import run_dir_for, run_sweep
from robustfair.errors import RunLockedError
from robustfair.report.runs import load_run

REPO = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()
CONFIG = {
    "extends": "digits_erm",
    "name": "locked",
    "data": {"train_per_class": 6, "val_per_class": 2, "test_per_class": 2},
    "train": {"epochs": 3, "batch_size": 30, "val_attack": "none"},
    "eval": {"attack": "fgsm", "sanity_checks": False},
}
# A train process whose second epoch waits until the gate file exists (then it finishes).
GATED_TRAIN = textwrap.dedent("""
    import pathlib, sys, time
    import robustfair.engine.trainer as trainer
    gate, real = pathlib.Path(sys.argv[1]), trainer.run_epoch
    def gated(**kwargs):
        if kwargs["epoch"] == 1:
            while not gate.exists():
                time.sleep(0.05)
        return real(**kwargs)
    trainer.run_epoch = gated
    from robustfair.cli import main
    raise SystemExit(main(sys.argv[2:]))
""")
# A stand-in sweep worker: holds one run's lock, optionally marks it started, then on
# "finish" writes results.json and lets go (or is killed).
HOLDER = textwrap.dedent("""
    import pathlib, sys
    from robustfair import run_lock
    run = pathlib.Path(sys.argv[1])
    lock = run_lock.acquire(run, "stand-in worker")
    if sys.argv[2] == "started":
        (run / "config.yaml").write_text("name: stand-in\\n")
    print("holding", flush=True)
    if sys.stdin.readline().strip() == "finish":
        (run / "results.json").write_text("{}")
    lock.release()
""")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def wait_for(condition, what: str, timeout: float = 120.0, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def start_gated_writer(tmp_path: Path, run: Path) -> tuple[subprocess.Popen, Path, Path]:
    config = tmp_path / "locked.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    script, gate = tmp_path / "gated_train.py", tmp_path / "gate"
    script.write_text(GATED_TRAIN)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(gate), "train", str(config), "--run-dir", str(run), "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    # mid-run: epoch 1 is on disk (its metrics line, then its checkpoint) and the writer waits at the
    # gate before epoch 2, writing nothing until the gate opens
    wait_for(
        lambda: (
            (run / "metrics.jsonl").is_file()
            and epochs(run) == [1]
            and (run / "checkpoints" / "last.safetensors").is_file()
        ),
        "epoch 1",
        proc=proc,
    )
    return proc, config, gate


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- the lock itself


def test_the_lock_is_reentrant_in_a_process_and_leaves_nothing_behind(tmp_path):
    run = tmp_path / "a" / "run"
    outer = run_lock.acquire(run)
    inner = run_lock.acquire(run)
    assert inner is outer
    record = json.loads(run_lock.lock_path(run).read_text())
    assert record["pid"] == os.getpid() and record["host"] == HOST
    assert run_lock.writer_of(run).pid == os.getpid()
    inner.release()
    assert run_lock.lock_path(run).exists()  # the outer holder still has it
    outer.release(remove_if_unused=True)
    assert not (tmp_path / "a").exists()  # the folders it created for a run that never began
    assert run_lock.writer_of(run) is None


def test_another_process_holding_the_lock_is_named_and_its_death_frees_it(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), "fresh"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        seen = run_lock.writer_of(run)
        assert (seen.pid, seen.host, seen.command) == (holder.pid, HOST, "stand-in worker")
        started = time.monotonic()
        with pytest.raises(
            RunLockedError,
            match=f"is being written by PID {holder.pid} on host {HOST} "
            r"\(stand-in worker, since .* UTC\); a second writer",
        ):
            run_lock.acquire(run)
        assert time.monotonic() - started < 5  # at once, not after the holder finishes
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert run_lock.writer_of(run) is None  # the OS released the dead holder's lock
    with run_lock.acquire(run):
        assert json.loads(run_lock.lock_path(run).read_text())["pid"] == os.getpid()
    assert not run_lock.lock_path(run).exists()


# ---------------------------------------------------------------------------- train


def test_a_second_writer_fails_at_once_and_the_first_writers_files_are_intact(tmp_path, capsys):
    run = tmp_path / "run"
    proc, config, gate = start_gated_writer(tmp_path, run)
    try:
        before = snapshot(run)
        for argv in (
            ["train", str(config), "--run-dir", str(run), "--quiet"],
            ["train", "--resume", str(run), "--quiet"],
            ["train", "--resume", str(run), "optim.lr=0.01", "--quiet"],
        ):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert err.count("\n") == 1, err
            assert (
                f"robustfair: error: run directory {str(run)!r} is being written by PID {proc.pid} on host "
                f"{HOST} (train, since " in err
            )
            assert "a second writer would corrupt it" in err
        assert snapshot(run) == before  # not a byte changed by the refused writers
        # readers never wait: they say the run is being written, and read what is there
        with pytest.raises(Exception, match=f"is still being written by PID {proc.pid}"):
            load_run(run)
        assert main(["eval", str(run), "--attack", "none"]) == 0
        assert (
            f"robustfair: note: {run} is still being written by PID {proc.pid} on host {HOST} (train, since "
            in capsys.readouterr().err
        )
        assert snapshot(run) == before
        gate.touch()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert epochs(run) == [1, 2, 3]
    assert load_run(run).results["run"]["epochs"] == 3
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "meta.json",
        "metrics.jsonl",
        "results.json",
    ]  # the lock went with its writer


def test_sigkill_of_a_locked_writer_then_resume_finishes_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    proc, _, _ = start_gated_writer(tmp_path, run)
    proc.send_signal(signal.SIGKILL)  # held at the gate before epoch 2: the gate never opens
    proc.wait(timeout=30)
    assert json.loads(run_lock.lock_path(run).read_text())["pid"] == proc.pid  # its record stays behind ...
    assert run_lock.writer_of(run) is None  # ... but the OS dropped the lock with the process
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "resumed" in capsys.readouterr().err
    assert epochs(run) == [1, 2, 3]
    assert (run / "results.json").is_file() and not run_lock.lock_path(run).exists()


def test_a_writer_refused_before_it_began_leaves_no_folder(tmp_path, capsys):
    run = tmp_path / "new" / "run"
    bad = [
        "train",
        "digits_erm",
        "data.name=imagefolder",
        f"data.root={tmp_path / 'no_such_folder'}",
        "--run-dir",
        str(run),
        "--quiet",
    ]
    assert main(bad) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_group_train_refuses_a_run_directory_another_process_writes(tmp_path, capsys):
    from group_tables import credit_csv

    table = credit_csv(tmp_path / "german.csv", n=120)
    out = tmp_path / "runs"
    holder = start_holder(out / "erm-seed1")
    try:
        argv = ["group", "train", "--csv", str(table), "--label", "credit", "--positive", "good"]
        argv += ["--sensitive", "age", "--threshold", "25", "--drop", "id", "--methods", "erm", "--seeds", "0,1"]
        assert main([*argv, "--out", str(out), "--quiet", "train.epochs=1"]) == 2
        err = capsys.readouterr().err
        assert f"is being written by PID {holder.pid} on host {HOST}" in err and err.count("\n") == 1
        assert not (out / "erm-seed0").exists()  # nothing trained, no folder left behind
        assert (out / "erm-seed1").is_dir() and run_lock.writer_of(out / "erm-seed1").pid == holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert main([*argv, "--out", str(out), "--quiet", "train.epochs=1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["erm-seed0", "erm-seed1"]
    assert not list(out.glob("*/.writer.lock"))


# ---------------------------------------------------------------------------- sweep workers


def start_holder(run: Path, state: str = "fresh") -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), state],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
    return holder


@pytest.fixture
def fake_train(monkeypatch):
    """Training that writes results.json at once; records (run directory, resume)."""
    from robustfair.engine import trainer

    calls = []

    def train(config, run_dir, *, resume=False, quiet=False):
        with run_lock.acquire(run_dir):  # as the real trainer does: re-entrant under the sweep's claim
            calls.append((Path(run_dir).relative_to(run_dir.parents[1]).as_posix(), resume))
            (Path(run_dir) / "results.json").write_text("{}")

    monkeypatch.setattr(trainer, "train", train)
    return calls


def finish_later(holder: subprocess.Popen, seconds: float):
    import threading

    def finish():
        time.sleep(seconds)
        holder.stdin.write("finish\n")
        holder.stdin.flush()

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_a_run_another_worker_holds_is_left_to_it_and_the_sweep_waits_for_it(tmp_path, fake_train):
    held = run_dir_for(tmp_path, "digits_erm", 1)
    holder = start_holder(held)
    lines = []
    thread = finish_later(holder, 1.0)
    outcome = run_sweep(["digits_erm"], [0, 1, 2], tmp_path, log=lines.append, poll_s=0.05)
    thread.join()
    assert holder.wait(timeout=30) == 0
    assert fake_train == [("digits_erm/seed0", False), ("digits_erm/seed2", False)]
    assert outcome.elsewhere == [held] and outcome.failed == {}
    assert any(f"being trained by PID {holder.pid} on host {HOST} (stand-in worker" in line for line in lines)
    assert sum("coming back to it" in line for line in lines) == 1  # said once, not once per pass


def test_a_dead_workers_run_is_resumed_by_the_next_worker(tmp_path, fake_train):
    held = run_dir_for(tmp_path, "digits_erm", 0)
    holder = start_holder(held, "started")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    outcome = run_sweep(["digits_erm"], [0], tmp_path, log=lambda line: None, poll_s=0.05)
    assert fake_train == [("digits_erm/seed0", True)]
    assert outcome.resumed == [held]


def test_a_hot_start_waits_for_its_source_run_held_by_another_worker(tmp_path, fake_train):
    source = run_dir_for(tmp_path, "digits_pgd_at", 0)
    holder = start_holder(source)
    lines = []
    thread = finish_later(holder, 1.0)
    outcome = run_sweep(["digits_pgd_at", "digits_frl_rwrm"], [0], tmp_path, log=lines.append, poll_s=0.05)
    thread.join()
    holder.wait(timeout=30)
    assert fake_train == [("digits_frl_rwrm/seed0", False)]  # after its source finished, not failed
    assert outcome.failed == {} and outcome.elsewhere == [source]
    assert any("waiting for its hot-start source digits_pgd_at seed 0" in line for line in lines)


@pytest.mark.slow
def test_three_sweep_workers_train_every_run_exactly_once(tmp_path):
    """Three real `robustfair sweep` processes over one grid with hot starts: each run is
    trained by exactly one of them, completely (epochs 1..E once each), and all three
    print the same tables."""
    tiny = [
        "data.train_per_class=8",
        "data.test_per_class=3",
        "data.val_per_class=2",
        "train.epochs=2",
        "train.batch_size=32",
        "train.val_attack=none",
        "method.steps=1",
        "eval.attack=fgsm",
        "eval.sanity_checks=false",
    ]
    presets, seeds = ["digits_pgd_at", "digits_frl_rwrm"], [0, 1, 2]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "robustfair.cli",
                "sweep",
                *presets,
                "--seeds",
                "3",
                "--out",
                str(tmp_path / "grid"),
                *tiny,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=tmp_path,
        )
        for _ in range(3)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    trained = [
        line.split("-> ", 1)[1]
        for _, err in outputs
        for line in err.splitlines()
        if ": training -> " in line or ": resuming -> " in line
    ]
    cells = [str(run_dir_for(tmp_path / "grid", p, s)) for p in presets for s in seeds]
    assert sorted(trained) == sorted(cells)  # each run once, by one worker
    for cell in cells:
        assert epochs(Path(cell)) == [1, 2]
    assert outputs[0][0] == outputs[1][0] == outputs[2][0] != ""  # the same tables
    assert outputs[0][0] == sweep.sweep_table(presets, seeds, tmp_path / "grid") + "\n"


def _sweep_worker(presets, seeds, out, overrides, log_path):
    """One forked worker: the real sweep and trainer, its log lines to a file."""
    import torch

    torch.set_num_threads(1)
    with open(log_path, "w") as log:
        outcome = run_sweep(
            presets, seeds, out, overrides, log=lambda line: print(line, file=log, flush=True), poll_s=0.1
        )
    os._exit(0 if not outcome.failed else 3)


def test_three_forked_sweep_workers_train_every_run_exactly_once(tmp_path):
    """The same check as the slow test with forked workers (no interpreter start-up): three
    workers on one grid with hot starts; each run trained once, completely, by one worker."""
    import multiprocessing

    tiny = [
        "data.train_per_class=6",
        "data.test_per_class=2",
        "data.val_per_class=2",
        "train.epochs=2",
        "train.batch_size=30",
        "train.val_attack=none",
        "method.steps=1",
        "eval.attack=fgsm",
        "eval.sanity_checks=false",
    ]
    presets, seeds, out = ["digits_pgd_at", "digits_frl_rwrm"], [0, 1, 2], tmp_path / "grid"
    context = multiprocessing.get_context("fork")
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [context.Process(target=_sweep_worker, args=(presets, seeds, out, tiny, log)) for log in logs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    lines = [line for log in logs for line in log.read_text().splitlines()]
    trained = sorted(line.split("-> ", 1)[1] for line in lines if ": training -> " in line)
    cells = sorted(str(run_dir_for(out, p, s)) for p in presets for s in seeds)
    assert trained == cells, lines  # every run once, by exactly one worker
    assert not [line for line in lines if "resuming" in line or "failed" in line]
    for cell in cells:
        assert epochs(Path(cell)) == [1, 2]
        assert json.loads((Path(cell) / "results.json").read_text())["run"]["epochs"] == 2
        assert not run_lock.lock_path(cell).exists()
