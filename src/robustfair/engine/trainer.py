"""The one training loop every method plugs into.

`train(config, run_dir)` builds data, model and method from a validated `RunConfig`,
then for each epoch: `method.on_epoch_start(ctx)`, `method.loss(model, x, y)` per batch
with an SGD step, `method.on_epoch_end(ctx)`, class-wise validation, one line in
`metrics.jsonl`, and atomic checkpoints `checkpoints/last.safetensors` and
`checkpoints/best.safetensors` (best by validation worst-class robust accuracy, never by
test). At the end the last and best models are evaluated class-wise on the test set and
`results.json` is written; its presence marks the run complete.

Reliability (docs/RELIABILITY.md): names, data and the run directory are checked before
the first step (`preflight`, `run_files.check_writable`); every file is written
atomically or rolled back (`run_files`), so a kill or a full disk never leaves a
half-written file; a diverged epoch (non-finite loss or weights, `divergence`) stops the
run before anything of it is saved; `--resume` continues from the last good checkpoint
(optionally with overrides such as a lower `optim.lr`).

Run directory layout:
    config.yaml          the resolved config (every default written out)
    meta.json            code and machine versions
    metrics.jsonl        one JSON line per epoch
    checkpoints/         last.safetensors, best.safetensors
    results.json         final class-wise test results (last model; best under "best")
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import yaml
from torch import nn

import robustfair
from robustfair.engine import distributed as dist_utils
from robustfair.engine import run_files
from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from robustfair.engine.config import RunConfig, config_to_dict, parse_config
from robustfair.engine.divergence import (NO_BAD_STEP, diverged_error, first_bad_step_across_ranks,
                                          mark_first_bad_step, nonfinite_tensors)
from robustfair.engine.preflight import check_names, check_run_data
from robustfair.engine.progress import Progress
from robustfair.engine.run_files import RunFileError
from robustfair.engine.schedules import lr_at_epoch
from robustfair.errors import CheckpointError, ConfigError, RobustfairError
from robustfair.methods import METHODS, EpochContext, TrainingMethod


# --------------------------------------------------------------------------- setup

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available on this machine")
    return device


@dataclass
class RunData:
    """The splits a run uses, after subsetting and carving validation."""

    train: Any
    val: Any | None
    test: Any
    classes: list[str]
    name: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def prepare_data(config: RunConfig) -> RunData:
    """Load, validate, split and subset the run's data; DataError before any training step.

    Both splits pass `validate_dataset` (pixels in [0, 1], no NaN, labels in range, no
    empty class) and the final splits `check_run_data` (same classes, every class present
    in train, validation and test).
    """
    from robustfair.data import class_balanced_subset, load_dataset, split_validation, validate_dataset

    d = config.data
    splits = load_dataset(d.name, root=d.root, download=d.download, **d.options)
    train, test = splits.train, splits.test
    validate_dataset(train)
    validate_dataset(test)
    val = None
    if d.val_per_class:
        train, val = split_validation(train, d.val_per_class, position=d.val_position)
    if d.train_per_class:
        train = class_balanced_subset(train, d.train_per_class, seed=config.seed)
    if d.test_per_class:
        test = class_balanced_subset(test, d.test_per_class, seed=config.seed)
    check_run_data(train, val, test, dataset=d.name)
    return RunData(train=train, val=val, test=test, classes=list(train.classes), name=getattr(train, "name", d.name))


def input_geometry(dataset) -> tuple[int, int]:
    """(in_channels, input_size) for build_model: images [N, C, H, W]; features [N, D] -> (D, 1)."""
    shape = tuple(dataset.x.shape[1:])
    if len(shape) == 3:
        return shape[0], shape[1]
    if len(shape) == 1:
        return shape[0], 1
    raise ConfigError(f"data: unsupported input shape {shape}; expected [C, H, W] images or [D] features")


def build_run_model(config: RunConfig, in_channels: int, input_size: int, num_classes: int) -> nn.Module:
    from robustfair.models import build_model

    m = config.model
    normalize = None if m.normalize_mean is None else (tuple(m.normalize_mean), tuple(m.normalize_std))
    try:
        return build_model(m.name, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                           normalize=normalize, **m.options)
    except RobustfairError:
        raise
    except (TypeError, ValueError) as err:  # a model option of the wrong type or shape
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"model: cannot build {m.name!r} with options {m.options!r} for this data "
                          f"({in_channels} channels, size {input_size}): {first}") from None


def eval_batches(dataset, batch_size: int, device: torch.device, rank: int = 0,
                 world_size: int = 1) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Re-iterable batches of this rank's shard (every world_size-th sample), float in [0, 1].

    The shard is moved to the device once (uint8 images stay uint8 there) and each batch
    is converted to float on the device.
    """
    idx = torch.arange(rank, len(dataset), world_size).numpy()
    x = torch.as_tensor(dataset.x[idx]).to(device)
    y = torch.as_tensor(dataset.y[idx]).to(device)
    scale = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0

    class _Batches:
        def __len__(self) -> int:
            return (len(y) + batch_size - 1) // batch_size

        def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, len(y), batch_size):
                yield x[start:start + batch_size].float() * scale, y[start:start + batch_size]

    return _Batches()


def eval_attack_overrides(attack: str, eps: float) -> dict[str, float]:
    """Budget of a named evaluation attack at the run's eps (PGD/CW step = eps/4, as 2/255 at 8/255)."""
    if attack in ("none", "clean"):
        return {}
    overrides: dict[str, float] = {"eps": eps}
    if attack.startswith(("pgd", "cw")) and not attack.endswith("_trades"):
        overrides["step_size"] = eps / 4
    return overrides


def evaluate_model(model: nn.Module, data, *, attack: str, eps: float, num_classes: int, classes: list[str],
                   device: torch.device, dataset_name: str, reduce: Callable | None = None):
    from robustfair.metrics import evaluate_classwise

    if attack in ("none", "clean"):
        return evaluate_classwise(model, data, attack=None, num_classes=num_classes, classes=classes,
                                  device=device, dataset_name=dataset_name, reduce=reduce)
    return evaluate_classwise(model, data, attack=attack, num_classes=num_classes, classes=classes, device=device,
                              dataset_name=dataset_name, attack_overrides=eval_attack_overrides(attack, eps),
                              reduce=reduce)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _to_loggable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {k: _to_loggable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_loggable(v) for v in value]
    return value


def _worst_class_robust_acc(result) -> float:
    return float(min(result.to_dict()["per_class"]["robust_acc"]))


# --------------------------------------------------------------------------- the loop

class Trainer:
    """Owns one run: build once, then `fit()`; `train()` below is the usual entry point."""

    def __init__(self, config: RunConfig, run_dir: str | Path, *, resume: bool = False, quiet: bool = False,
                 progress: bool = True, log: Callable[[str], None] | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.show_progress = progress and not quiet
        self.device = resolve_device(config.train.device)
        self.dist = dist_utils.init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.method_config = config.method_config()
        self.eps = float(config.eval.eps if config.eval.eps is not None else self.method_config.eps)

        # Everything that can be checked before the first step is checked here, cheapest first.
        check_names(config, lambda name: eval_attack_overrides(name, self.eps))
        from_checkpoint = self._check_run_dir(resume)
        self._check_writable()
        torch.manual_seed(config.seed)
        self.data = prepare_data(config)
        in_channels, input_size = input_geometry(self.data.train)
        self.core = build_run_model(config, in_channels, input_size, self.data.num_classes).to(self.device)
        if config.train.channels_last and self.device.type == "cuda":
            self.core = self.core.to(memory_format=torch.channels_last)
        if config.init_from:
            self._init_from(config.init_from)
        self.method: TrainingMethod = METHODS[config.method_name()](self.method_config,
                                                                    num_classes=self.data.num_classes)
        self.optimizer = torch.optim.SGD(self.core.parameters(), lr=config.optim.lr, momentum=config.optim.momentum,
                                         weight_decay=config.optim.weight_decay, nesterov=config.optim.nesterov)
        model: nn.Module = self.core
        if config.train.compile:
            model = torch.compile(model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.model = model

        from robustfair.data import DeviceLoader

        self.loader = DeviceLoader(self.data.train, config.train.batch_size, shuffle=True, augment=config.data.augment,
                                   padding=config.data.padding, device=self.device, seed=config.seed,
                                   drop_last=self.dist.enabled, rank=self.dist.rank, world_size=self.dist.world_size)
        self.val_loader = None if self.data.val is None else eval_batches(
            self.data.val, config.train.eval_batch_size, self.device, self.dist.rank, self.dist.world_size)
        self.start_epoch = 0
        self.best_score = -1.0
        self.best_epoch = 0
        self.saved_epoch = 0  # epochs held by checkpoints/last.safetensors
        # Every rank seeds differently for attack starts; the model init above is shared.
        torch.manual_seed(config.seed * 1000 + self.dist.rank + 1)
        if from_checkpoint:
            self._resume()
        self._check_free_space(fresh=not from_checkpoint)
        if self.dist.is_main:
            with self._writing():
                self._tidy_run_dir(from_checkpoint)

    # ------------------------------------------------------------------ setup helpers
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _check_run_dir(self, resume: bool) -> bool:
        """Whether to load `last.safetensors`; raises for a run that must not be started or resumed.

        A new run never overwrites a run directory holding a checkpoint or results. With
        resume, a directory whose run stopped before its first checkpoint (config.yaml but
        no checkpoint) starts again from epoch 1.
        """
        last = self.checkpoint_dir / "last.safetensors"
        if resume:
            if last.is_file():
                return True
            if (self.run_dir / "config.yaml").is_file() and not (self.run_dir / "results.json").exists():
                self._log(f"{self.run_dir} has no checkpoint yet (its run stopped in the first epoch): "
                          "starting it again from epoch 1")
                return False
            raise CheckpointError(f"cannot resume: {str(last)!r} does not exist")
        if last.exists() or (self.run_dir / "results.json").exists():
            raise ConfigError(f"run directory {str(self.run_dir)!r} already holds a run; pass --resume to continue "
                              "it, or choose another --run-dir (nothing is overwritten)")
        return False

    def _check_writable(self) -> None:
        """Fail now, on every rank, if rank 0 cannot write the run directory."""
        problem = None
        if self.dist.is_main:
            try:
                run_files.check_writable(self.checkpoint_dir)
            except RunFileError as err:
                problem = (str(err), err.errno)
        problem = dist_utils.broadcast_object(problem)
        if problem is not None:
            raise RunFileError(problem[0], errno_=problem[1], filename=str(self.run_dir))

    def _check_free_space(self, fresh: bool) -> None:
        """Room for the checkpoints: last + best + one temporary copy (a resumed run has two already)."""
        if not self.dist.is_main:
            return
        tensors = [t for t in self.core.state_dict().values() if isinstance(t, torch.Tensor)]
        tensors += [t for state in self.optimizer.state_dict()["state"].values() for t in state.values()
                    if isinstance(t, torch.Tensor)]
        size = sum(t.numel() * t.element_size() for t in tensors)
        if not self.optimizer.state:  # momentum buffers appear after the first step
            size += sum(p.numel() * p.element_size() for p in self.core.parameters())
        copies = 3 if fresh else 1
        existing = self.run_dir if self.run_dir.exists() else self.run_dir.parent
        run_files.check_free_space(existing, copies * size + 2**20,
                                   f"{copies} checkpoint file{'s' if copies > 1 else ''} of this model")

    def _tidy_run_dir(self, from_checkpoint: bool) -> None:
        """Before training: drop leftovers of a killed run and anything that would claim completion."""
        for directory in (self.run_dir, self.checkpoint_dir):
            for path in run_files.remove_stale_temp_files(directory):
                self._log(f"removed {path}, a temporary file left by an interrupted write")
        results = self.run_dir / "results.json"
        if results.is_file() and self.start_epoch < self.config.train.epochs:
            # Training continues past a finished run: its results no longer describe this run
            # directory, and must not mark it complete if this continuation is interrupted.
            kept = results.with_name(f"results_epoch{self.start_epoch}.json")
            try:
                os.replace(results, kept)
            except OSError as err:
                raise run_files.write_error(err, kept) from None
            self._log(f"moved the earlier results to {kept} (training continues to epoch {self.config.train.epochs})")
        self._truncate_metrics(self.start_epoch if from_checkpoint else 0)

    def _init_from(self, source: str) -> None:
        path = resolve_checkpoint(source, "last")
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.core.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as err:
            raise CheckpointError(f"init_from {source!r}: weights do not fit model {self.config.model.name!r}: "
                                  f"{str(err).splitlines()[0]}") from None
        self._log(f"initialised weights from {path}")

    def _resume(self) -> None:
        path = self.checkpoint_dir / "last.safetensors"
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.core.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.method.load_state_dict(state.get("method", {}))
            self.start_epoch = int(state["epoch"])
            self.best_score = float(state.get("best_score", -1.0))
            self.best_epoch = int(state.get("best_epoch", 0))
            _set_rng_state(state["rng"], self.device)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(f"cannot resume from {path}: it does not fit this config (an override changed "
                                  f"the model, data or method?): {first}") from None
        self.saved_epoch = self.start_epoch
        if not self.quiet:
            self._log_config_changes(state.get("config"))
        self._log(f"resumed {self.run_dir} at epoch {self.start_epoch + 1}")

    def _log_config_changes(self, saved: dict | None) -> None:
        if not isinstance(saved, dict):
            return
        before, after = _flatten_dict(saved), _flatten_dict(config_to_dict(self.config))
        changed = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(set(before) | set(after))
                   if before.get(k) != after.get(k)]
        if changed:
            self._log("resuming with changed settings: " + "; ".join(changed))

    def _truncate_metrics(self, completed_epochs: int) -> None:
        """Keep the metrics lines of completed epochs only: drop lines of epochs after the
        checkpoint and half a line left by a kill mid-write."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists() or not self.dist.is_main:
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

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed run-directory write into one line saying what state the run is in."""
        try:
            yield
        except RunFileError as err:
            raise RunFileError(f"{err}; {self._recovery_hint()}", errno_=err.errno, filename=err.filename) from None

    def _recovery_hint(self) -> str:
        if self.saved_epoch > 0:
            return (f"the run is incomplete (no results.json) and its last good checkpoint "
                    f"({self.checkpoint_dir / 'last.safetensors'}, epoch {self.saved_epoch}) is intact: once the "
                    f"directory can be written, continue with: robustfair train --resume {self.run_dir}")
        return ("the run is incomplete (no results.json, no checkpoint yet): start it again once the directory "
                "can be written")

    def _check_weights(self, epoch: int, where: str) -> None:
        """TrainingDivergedError if any parameter or buffer holds a NaN or infinity (on any rank)."""
        bad = nonfinite_tensors(self.core)
        count = dist_utils.all_reduce_sum(torch.tensor([len(bad)], device=self.device))
        if int(count.item()) > 0:
            names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "") if bad else "on another rank"
            raise self._diverged(f"weights ({names})", epoch, where)

    def _diverged(self, what: str, epoch: int, where: str):
        return diverged_error(what=what, epoch=epoch + 1, where=where,
                              last_good=self.checkpoint_dir / "last.safetensors" if self.saved_epoch else None,
                              last_good_epoch=self.saved_epoch or None, run_dir=self.run_dir)

    # ------------------------------------------------------------------ pieces of the loop
    def context(self, epoch: int) -> EpochContext:
        def evaluate(model, loader, attack="pgd20", **overrides):
            from robustfair.metrics import evaluate_classwise

            budget = eval_attack_overrides(attack, self.eps) if attack not in (None, "none") else {}
            budget.update(overrides)
            return evaluate_classwise(model, loader, attack=None if attack in (None, "none") else attack,
                                      num_classes=self.data.num_classes, classes=self.data.classes,
                                      device=self.device, dataset_name=self.data.name, attack_overrides=budget,
                                      reduce=dist_utils.all_reduce_sum)

        return EpochContext(epoch=epoch, num_epochs=self.config.train.epochs, model=self.core, device=self.device,
                            num_classes=self.data.num_classes, val_loader=self.val_loader, evaluate=evaluate,
                            all_reduce_sum=dist_utils.all_reduce_sum, eps=self.eps)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.config.train
        self.model.train()
        self.loader.set_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        first_bad = torch.tensor(NO_BAD_STEP, device=self.device)
        seen = 0
        progress = Progress(len(self.loader), f"epoch {epoch + 1}/{cfg.epochs}", enabled=self.show_progress)
        for step, (x, y) in enumerate(self.loader):
            if cfg.channels_last and self.device.type == "cuda" and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                out = self.method.loss(self.model, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.core.parameters(), cfg.grad_clip)
            self.optimizer.step()
            loss = out.loss.detach()
            first_bad = mark_first_bad_step(first_bad, loss, step)
            batch = x.shape[0]
            seen += batch
            for key, value in {"loss": loss, **out.logs}.items():
                value = value.detach().float() * batch
                sums[key] = sums[key] + value if key in sums else value
            if step % cfg.log_every == 0:
                progress.update(step + 1, batch * self.dist.world_size)
            else:
                progress.items += batch * self.dist.world_size
        rate = progress.close()
        steps = len(self.loader)
        bad_step = first_bad_step_across_ranks(first_bad)
        if bad_step != NO_BAD_STEP:
            raise self._diverged("loss", epoch, f"step {bad_step + 1} of {steps}")
        self._check_weights(epoch, f"by the end of its {steps} steps")
        total = torch.tensor([float(seen)], device=self.device)
        keys = sorted(sums)
        stacked = torch.stack([sums[k].reshape(()) for k in keys]) if keys else torch.zeros(0, device=self.device)
        stacked = dist_utils.all_reduce_sum(stacked)
        total = dist_utils.all_reduce_sum(total)
        logs = {k: float(v) / float(total.item()) for k, v in zip(keys, stacked.tolist())}
        logs["images_per_s"] = rate
        return logs

    def _validate(self) -> Any | None:
        if self.val_loader is None:
            return None
        attack = self.config.train.val_attack
        return evaluate_model(self.core, self.val_loader, attack=attack, eps=self.eps,
                              num_classes=self.data.num_classes, classes=self.data.classes, device=self.device,
                              dataset_name=f"{self.data.name} (validation)", reduce=dist_utils.all_reduce_sum)

    def _checkpoint_state(self, next_epoch: int) -> dict[str, Any]:
        return {
            "epoch": next_epoch,
            "model": self.core.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "rng": _rng_state(self.device),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "config": config_to_dict(self.config),
            "robustfair_version": robustfair.__version__,
        }

    def _write_run_header(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        run_files.atomic_write_text(self.run_dir / "config.yaml",
                                    yaml.safe_dump(config_to_dict(self.config), sort_keys=False))
        meta = {"robustfair": robustfair.__version__, "torch": torch.__version__, "python": platform.python_version(),
                "machine": platform.platform(), "device": str(self.device),
                "cuda_device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
                "world_size": self.dist.world_size, "git_commit": _git_commit()}
        run_files.atomic_write_text(self.run_dir / "meta.json", json.dumps(meta, indent=2))

    # ------------------------------------------------------------------ fit
    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, evaluate, write results.json; returns the results."""
        with _denormals_flushed(self.device.type == "cpu"):
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg = self.config
        main = self.dist.is_main
        if main:
            with self._writing():
                self._write_run_header()
        start_time = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.train.epochs):
            lr = lr_at_epoch(cfg.schedule, cfg.optim.lr, epoch, cfg.train.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            epoch_start = time.perf_counter()
            start_logs = self.method.on_epoch_start(self.context(epoch))
            train_logs = self._train_epoch(epoch)
            end_logs = self.method.on_epoch_end(self.context(epoch))
            self._check_weights(epoch, "after the method's end-of-epoch update")  # before anything is saved
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **train_logs}
            if start_logs:
                record["method"] = _to_loggable(dict(start_logs))
            if end_logs:
                record.setdefault("method", {}).update(_to_loggable(dict(end_logs)))
            last_epoch = epoch + 1 == cfg.train.epochs
            if (epoch + 1) % cfg.train.val_every == 0 or last_epoch:
                val = self._validate()
                if val is not None:
                    summary = val.to_dict()
                    record["val"] = {"summary": summary["summary"], "clean_acc": summary["per_class"]["clean_acc"],
                                     "robust_acc": summary["per_class"]["robust_acc"]}
                    score = _worst_class_robust_acc(val)
                    if score > self.best_score:
                        self.best_score, self.best_epoch = score, epoch + 1
                        if main:
                            with self._writing():
                                save_checkpoint(self.checkpoint_dir / "best.safetensors",
                                                self._checkpoint_state(epoch + 1))
            record["epoch_time_s"] = time.perf_counter() - epoch_start
            record["best_epoch"] = self.best_epoch
            if main:
                with self._writing():
                    run_files.append_line(self.run_dir / "metrics.jsonl", json.dumps(_to_loggable(record)))
                    save_checkpoint(self.checkpoint_dir / "last.safetensors", self._checkpoint_state(epoch + 1))
            self.saved_epoch = epoch + 1
            if main:
                if not self.quiet:
                    self._log(_epoch_line(record))
            dist_utils.barrier()
        train_time = time.perf_counter() - start_time
        results = self.final_evaluation(train_time)
        dist_utils.barrier()
        return results

    def final_evaluation(self, train_time: float) -> dict[str, Any]:
        cfg = self.config
        test = eval_batches(self.data.test, cfg.train.eval_batch_size, self.device, self.dist.rank,
                            self.dist.world_size)
        common = dict(eps=self.eps, num_classes=self.data.num_classes, classes=self.data.classes,
                      device=self.device, dataset_name=self.data.name, reduce=dist_utils.all_reduce_sum)
        last = evaluate_model(self.core, test, attack=cfg.eval.attack, **common)
        results = last.to_dict()
        results["model_selection"] = "last epoch"
        extra = {name: evaluate_model(self.core, test, attack=name, **common).to_dict()
                 for name in cfg.eval.extra_attacks}
        if extra:
            results["extra_attacks"] = extra
        if cfg.eval.sanity_checks:
            results["sanity"] = self._sanity(test, last)
        best_path = self.checkpoint_dir / "best.safetensors"
        if best_path.is_file():
            state = load_checkpoint(best_path, map_location=self.device)
            current = {k: v.clone() for k, v in self.core.state_dict().items()}
            self.core.load_state_dict(state["model"])
            best = evaluate_model(self.core, test, attack=cfg.eval.attack, **common).to_dict()
            best["epoch"] = int(state.get("epoch", self.best_epoch))  # what the file holds
            best["selected_by"] = "validation worst-class robust accuracy (never the test set)"
            results["best"] = best
            self.core.load_state_dict(current)
        averaged = getattr(self.method, "averaged_state", lambda: None)()
        if averaged is not None:  # e.g. CFA's fairness-aware weight average
            current = {k: v.clone() for k, v in self.core.state_dict().items()}
            self.core.load_state_dict(averaged)
            results["averaged"] = evaluate_model(self.core, test, attack=cfg.eval.attack, **common).to_dict()
            results["averaged"]["selected_by"] = f"{cfg.method_name()} weight averaging (last epoch)"
            self.core.load_state_dict(current)
        results["run"] = {"name": cfg.name, "method": cfg.method_name(), "model": cfg.model.name,
                          "epochs": cfg.train.epochs, "seed": cfg.seed, "train_time_s": round(train_time, 2),
                          "device": str(self.device), "world_size": self.dist.world_size,
                          "eps": self.eps, "robustfair": robustfair.__version__}
        if self.dist.is_main:
            with self._writing():  # written last: its presence marks the run complete
                run_files.atomic_write_text(self.run_dir / "results.json", json.dumps(results, indent=2))
        return results

    def _sanity(self, test, result) -> dict[str, Any]:
        try:
            from robustfair.metrics.sanity import run_sanity_checks
        except ImportError:
            per_class = result.to_dict()["per_class"]
            ok = all(r <= c + 1e-12 for r, c in zip(per_class["robust_acc"], per_class["clean_acc"]))
            return {"robust_not_above_clean": ok}
        return run_sanity_checks(self.core, test, result=result, eps=self.eps, num_classes=self.data.num_classes,
                                 device=self.device, log=self._log)


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}", f"lr {record['lr']:.4g}", f"loss {record.get('loss', float('nan')):.4f}"]
    if "val" in record:
        s = record["val"]["summary"]
        parts.append(f"val avg/worst rob err {s['avg_rob_err']:.1f}/{s['worst_rob_err']:.1f}%")
    parts.append(f"{record.get('images_per_s', 0):.0f} img/s")
    return " | ".join(parts)


def _denormals_are_flushed() -> bool:
    return (torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() == 0.0


@contextmanager
def _denormals_flushed(enabled: bool) -> Iterator[None]:
    """Flush denormal floats to zero inside the block, then restore the previous setting.

    Attack gradients near the clean point (TRADES' 0.001 start, KL steps) produce denormal
    floats, which x86 CPUs process up to 100x slower; flushing them to zero changes
    nothing measurable and keeps CPU steps at full speed. The setting is process-wide CPU
    state, so it is restored: code running after `train()` (NumPy, hypothesis, the
    caller's own) keeps IEEE subnormals.
    """
    if not enabled:
        yield
        return
    previous = _denormals_are_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(previous)


def _flatten_dict(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, for listing changed settings."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten_dict(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _git_commit() -> str | None:
    head = Path(__file__).resolve().parents[3] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def train(config: RunConfig, run_dir: str | Path, *, resume: bool = False, quiet: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train `config` into `run_dir` (resuming from its last checkpoint if asked); returns results.json."""
    trainer = Trainer(config, run_dir, resume=resume, quiet=quiet, progress=progress)
    try:
        return trainer.fit()
    finally:
        dist_utils.shutdown()


def load_run_config(run_dir: str | Path, overrides=()) -> RunConfig:
    """The config saved in a run directory, with optional overrides (e.g. a lower lr on resume)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CheckpointError(f"{str(path)!r} cannot be read as a run config: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{str(path)!r} is not a run config (expected a mapping of sections)")
    return parse_config(raw, overrides)


__all__ = ["train", "Trainer", "load_run_config", "prepare_data", "build_run_model", "evaluate_model",
           "eval_batches", "resolve_device", "RobustfairError"]
