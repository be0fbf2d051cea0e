"""One run directory's life: may it start or resume, tidy it, write its files safely.

Layout:
    config.yaml          the resolved config (every default written out)
    meta.json            code and machine versions
    metrics.jsonl        one JSON line per epoch
    checkpoints/         last.safetensors, best.safetensors
    results.json         final class-wise test results; its presence marks the run complete
    .writer.lock         held by the one process writing the run (`robustfair/run_lock.py`)

One process writes a run at a time: `hold()` takes the run's writer lock before anything
is read or written (a second writer fails at once naming the holder's PID and host), and
the lock goes with the process, so a killed writer never blocks the next `--resume`.
Every write goes through `run_files` (atomic, or rolled back) inside `writing()`, which
turns a failed write into one line saying what state the run is in and how to continue.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

import robustfair
from robustfair import run_lock
from robustfair.engine import run_files
from robustfair.engine.config import RunConfig, config_to_dict
from robustfair.engine.run_files import RunFileError
from robustfair.errors import CheckpointError, ConfigError


class RunDirectory:
    """The files of one run; `saved_epoch` is the number of epochs `last.safetensors` holds."""

    def __init__(self, path: str | Path, log: Callable[[str], None]):
        self.path = Path(path)
        self.log = log
        self.saved_epoch = 0
        self._lock: run_lock.RunLock | None = None

    # ------------------------------------------------------------------ one writer
    def hold(self, command: str = "train") -> None:
        """Take the run's writer lock (RunLockedError if another process writes it); creates the folder."""
        if self._lock is None:
            self._lock = run_lock.acquire(self.path, command)

    def release(self, *, refused: bool = False) -> None:
        """Let go of the writer lock; refused: the run never began, so remove the folders that
        `hold` created if they are still empty."""
        if self._lock is not None:
            self._lock.release(remove_if_unused=refused)
            self._lock = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.safetensors"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / "best.safetensors"

    # ------------------------------------------------------------------ before training
    def should_resume(self, resume: bool) -> bool:
        """Whether to load `last.safetensors`; raises for a run that must not be started or resumed.

        A new run never overwrites a run directory holding a checkpoint or results. With
        resume, a directory whose run stopped before its first checkpoint (config.yaml but
        no checkpoint) starts again from epoch 1.
        """
        last = self.last_checkpoint
        if resume:
            if last.is_file():
                return True
            if (self.path / "config.yaml").is_file() and not (self.path / "results.json").exists():
                self.log(
                    f"{self.path} has no checkpoint yet (its run stopped in the first epoch): "
                    "starting it again from epoch 1"
                )
                return False
            raise CheckpointError(f"cannot resume: {str(last)!r} does not exist")
        if last.exists() or (self.path / "results.json").exists():
            raise ConfigError(
                f"run directory {str(self.path)!r} already holds a run; pass --resume to continue "
                "it, or choose another --run-dir (nothing is overwritten)"
            )
        return False

    def check_writable(self) -> None:
        """RunFileError now if the checkpoint folder cannot be created and written."""
        run_files.check_writable(self.checkpoint_dir)

    def check_free_space(self, checkpoint_bytes: int, fresh: bool) -> None:
        """Room for the checkpoints: last + best + one temporary copy (a resumed run has two already)."""
        copies = 3 if fresh else 1
        existing = self.path if self.path.exists() else self.path.parent
        run_files.check_free_space(
            existing,
            copies * checkpoint_bytes + 2**20,
            f"{copies} checkpoint file{'s' if copies > 1 else ''} of this model",
        )

    def tidy(self, start_epoch: int, total_epochs: int, from_checkpoint: bool) -> None:
        """Before training: drop leftovers of a killed run and anything that would claim completion."""
        for directory in (self.path, self.checkpoint_dir):
            for path in run_files.remove_stale_temp_files(directory):
                self.log(f"removed {path}, a temporary file left by an interrupted write")
        results = self.path / "results.json"
        if results.is_file() and start_epoch < total_epochs:
            # Training continues past a finished run: its results no longer describe this run
            # directory, and must not mark it complete if this continuation is interrupted.
            kept = results.with_name(f"results_epoch{start_epoch}.json")
            try:
                os.replace(results, kept)
            except OSError as err:
                raise run_files.write_error(err, kept) from None
            self.log(f"moved the earlier results to {kept} (training continues to epoch {total_epochs})")
        self.truncate_metrics(start_epoch if from_checkpoint else 0)

    def truncate_metrics(self, completed_epochs: int) -> None:
        """Keep the metrics lines of completed epochs only: drop lines of epochs after the
        checkpoint and half a line left by a kill mid-write."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("epoch", 0) <= completed_epochs:
                kept.append(line)
        run_files.atomic_write_text(path, "".join(line + "\n" for line in kept))

    # ------------------------------------------------------------------ writing
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a failed run-directory write into one line saying what state the run is in."""
        try:
            yield
        except RunFileError as err:
            raise RunFileError(f"{err}; {self.recovery_hint()}", errno_=err.errno, filename=err.filename) from None

    def recovery_hint(self) -> str:
        if self.saved_epoch > 0:
            return (
                f"the run is incomplete (no results.json) and its last good checkpoint "
                f"({self.last_checkpoint}, epoch {self.saved_epoch}) is intact: once the "
                f"directory can be written, continue with: robustfair train --resume {self.path}"
            )
        return (
            "the run is incomplete (no results.json, no checkpoint yet): start it again once the directory "
            "can be written"
        )

    def write_header(
        self, config: RunConfig, device: torch.device, world_size: int, acceleration: dict[str, Any] | None = None
    ) -> None:
        """config.yaml (every default written out) and meta.json (code and machine versions,
        and the device settings the run resolved, `acceleration`, when given)."""
        self.path.mkdir(parents=True, exist_ok=True)
        run_files.atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
        meta = {
            "robustfair": robustfair.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.platform(),
            "device": str(device),
            "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "world_size": world_size,
            "git_commit": git_commit(),
        }
        if acceleration is not None:
            meta["acceleration"] = acceleration
        run_files.atomic_write_text(self.path / "meta.json", json.dumps(meta, indent=2))

    def append_metrics(self, record: dict[str, Any]) -> None:
        run_files.append_line(self.path / "metrics.jsonl", json.dumps(record))

    def write_results(self, results: dict[str, Any]) -> None:
        """Written last: its presence marks the run complete."""
        run_files.atomic_write_text(self.path / "results.json", json.dumps(results, indent=2))


def git_commit() -> str | None:
    """The commit of the source tree robustfair runs from, when it is a git checkout."""
    head = Path(__file__).resolve().parents[3] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


__all__ = ["RunDirectory", "git_commit", "RunFileError"]
