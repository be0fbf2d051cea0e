"""The one training loop every method plugs into.

`train(config, run_dir)` builds data, model and method from a validated `RunConfig`
(or a preset name, YAML path or mapping; your own model and data may be passed as
objects: `train(config, run_dir, model=net, train_data=..., test_data=...)`),
then for each epoch: `method.on_epoch_start(ctx)`, `method.loss(model, x, y)` per batch
with an optimiser step, `method.on_epoch_end(ctx)`, class-wise validation, one line in
`metrics.jsonl`, and atomic checkpoints `checkpoints/last.safetensors` and
`checkpoints/best.safetensors` (best by validation worst-class robust accuracy, never by
test). At the end the last and best models are evaluated class-wise on the test set and
`results.json` is written; its presence marks the run complete.

The pieces live in their own modules, each readable alone:
    run_data.py        building the data (load, validate, split, subset; eval batches)
    run_model.py       building the model on its device (registry, your factory, your object)
    user_objects.py    what a run records for a model or data passed as Python objects
    run_directory.py   the run directory: start or resume, tidy, safe writes, layout
    epoch_loop.py      one training epoch
    run_evaluation.py  validation, model selection, final test results
This module wires them together and owns the run's state (epochs, best score, RNG).

Reliability (docs/RELIABILITY.md): names, data and the run directory are checked before
the first step (`preflight`, `run_files.check_writable`); every file is written
atomically or rolled back (`run_files`), so a kill or a full disk never leaves a
half-written file; a diverged epoch (non-finite loss or weights, `divergence`) stops the
run before anything of it is saved; `--resume` continues from the last good checkpoint
(optionally with overrides such as a lower `optim.lr`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import robustfair
from robustfair.engine import distributed as dist_utils
from robustfair.engine.accelerator import autocast, backend_flags, build_sgd, prepare_model, resolve_acceleration
from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from robustfair.engine.config import RunConfig, config_to_dict, parse_config
from robustfair.engine.divergence import NO_BAD_STEP, diverged_error, extreme_settings, nonfinite_tensors
from robustfair.engine.epoch_loop import epoch_line, run_epoch, to_loggable
from robustfair.engine.preflight import check_names
from robustfair.engine.run_data import RunData, eval_batches, input_geometry, prepare_data
from robustfair.engine.run_directory import RunDirectory
from robustfair.engine.run_evaluation import (
    eval_attack_overrides,
    evaluate_model,
    final_test_results,
    selection_score,
    validation_record,
)
from robustfair.engine.run_files import RunFileError
from robustfair.engine.run_model import build_run_model, check_model_output, resolve_device
from robustfair.engine.schedules import eps_scale_at_epoch, lr_at_epoch
from robustfair.engine.tensorboard_log import check_available as check_log_targets
from robustfair.engine.tensorboard_log import open_epoch_log
from robustfair.engine.user_objects import as_run_config, resolve_user_objects
from robustfair.errors import CheckpointError, RobustfairError, RunLockedError
from robustfair.methods import METHODS, EpochContext, TrainingMethod
from robustfair.methods.hooks import epoch_context
from robustfair.models import is_factory_path


def step_seed(seed: int, rank: int = 0) -> int:
    """The torch seed set before the first training step (the model is built under `seed`).

    A hand loop that seeds `torch.manual_seed(seed)`, builds the model, then seeds
    `step_seed(seed)` draws the same attack starts as the engine's run.
    """
    return seed * 1000 + rank + 1


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class Trainer:
    """Owns one run: build once, then `fit()`; `train()` below is the usual entry point."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        quiet: bool = False,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        model: nn.Module | None = None,
        splits=None,
    ):
        """model / splits: a model object and data splits (DatasetSplits) given as objects; the
        config must record them as `user_objects.resolve_user_objects` does."""
        self.config = config
        self.quiet = quiet
        self.show_progress = progress and not quiet
        self.device = resolve_device(config.train.device)
        self.dist = dist_utils.init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.run = RunDirectory(run_dir, self._log)
        self.method_config = config.method_config()
        self.eps = float(config.eval.eps if config.eval.eps is not None else self.method_config.eps)
        self.norm = getattr(self.method_config, "norm", "linf")  # the threat model the run trains against

        # Everything that can be checked before the first step is checked here, cheapest first.
        check_names(
            config,
            lambda name: eval_attack_overrides(name, self.eps, self.norm),
            model_given=model is not None,
            data_given=splits is not None,
        )
        check_log_targets(config.train.log)  # train.log=[jsonl,tensorboard] without tensorboard installed
        self.epoch_log = None  # the TensorBoard writer while fit() runs (rank 0, train.log names tensorboard)
        self._hold_run_directory()  # one writer per run: before the directory is read or written
        try:
            self._build(config, resume, model, splits)
        except BaseException:
            self.run.release(refused=True)
            raise

    def _build(self, config: RunConfig, resume: bool, model: nn.Module | None, splits) -> None:
        """Everything after the run directory is held: data, model, method, optimiser, resume."""
        from_checkpoint = self.run.should_resume(resume)
        self._check_writable()
        torch.manual_seed(config.seed)
        self.data: RunData = prepare_data(config, splits)
        in_channels, input_size = input_geometry(self.data.train)
        # Device settings ("auto" = the fast ones on CUDA), resolved once and recorded.
        self.acceleration = resolve_acceleration(config.train, config.eval, self.device)
        self.core = build_run_model(config, in_channels, input_size, self.data.num_classes, model=model).to(self.device)
        if model is not None or is_factory_path(config.model.name):  # your own model: try it on two samples
            check_model_output(self.core, self._sample_batch(2), self.data.num_classes, config.model.name)
        self.core = prepare_model(self.core, self.acceleration)
        if config.init_from:
            self._init_from(config.init_from)
        self.method: TrainingMethod = METHODS[config.method_name()](
            self.method_config, num_classes=self.data.num_classes
        )
        self.optimizer = build_sgd(
            self.core.parameters(),
            lr=config.optim.lr,
            momentum=config.optim.momentum,
            weight_decay=config.optim.weight_decay,
            nesterov=config.optim.nesterov,
            implementation=self.acceleration.optimizer_impl,
        )
        wrapped: nn.Module = self.core
        if config.train.compile:
            mode = config.train.compile_mode
            wrapped = torch.compile(wrapped, mode=None if mode == "default" else mode)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(
                wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.model = wrapped

        from robustfair.data import DeviceLoader

        self.loader = DeviceLoader(
            self.data.train,
            config.train.batch_size,
            shuffle=True,
            augment=config.data.augment,
            padding=config.data.padding,
            device=self.device,
            seed=config.seed,
            drop_last=self.dist.enabled,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.val_loader = (
            None
            if self.data.val is None
            else eval_batches(
                self.data.val, config.train.eval_batch_size, self.device, self.dist.rank, self.dist.world_size
            )
        )
        self.start_epoch = 0
        self.best_score = -1.0
        self.best_epoch = 0
        # Every rank seeds differently for attack starts; the model init above is shared.
        torch.manual_seed(step_seed(config.seed, self.dist.rank))
        if from_checkpoint:
            self._resume()
        self._check_free_space(fresh=not from_checkpoint)
        if self.dist.is_main:
            with self.run.writing():
                self.run.tidy(self.start_epoch, config.train.epochs, from_checkpoint)

    def _sample_batch(self, n: int) -> torch.Tensor:
        """The first n training samples as float in [0, 1] on the device."""
        x = torch.as_tensor(self.data.train.x[:n]).to(self.device)
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    # ------------------------------------------------------------------ run directory
    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def checkpoint_dir(self) -> Path:
        return self.run.checkpoint_dir

    @property
    def saved_epoch(self) -> int:
        """Epochs held by checkpoints/last.safetensors."""
        return self.run.saved_epoch

    @saved_epoch.setter
    def saved_epoch(self, value: int) -> None:
        self.run.saved_epoch = value

    def _hold_run_directory(self) -> None:
        """Rank 0 takes the run's writer lock; every rank fails if it cannot (DDP: only rank 0 writes)."""
        problem = None
        if self.dist.is_main:
            try:
                self.run.hold()
            except RobustfairError as err:
                if not self.dist.enabled:
                    raise
                problem = str(err)
        problem = dist_utils.broadcast_object(problem)
        if problem is not None:
            raise RunLockedError(problem)

    def _check_writable(self) -> None:
        """Fail now, on every rank, if rank 0 cannot write the run directory."""
        problem = None
        if self.dist.is_main:
            try:
                self.run.check_writable()
            except RunFileError as err:
                problem = (str(err), err.errno)
        problem = dist_utils.broadcast_object(problem)
        if problem is not None:
            raise RunFileError(problem[0], errno_=problem[1], filename=str(self.run_dir))

    def _check_free_space(self, fresh: bool) -> None:
        if not self.dist.is_main:
            return
        tensors = [t for t in self.core.state_dict().values() if isinstance(t, torch.Tensor)]
        tensors += [
            t
            for state in self.optimizer.state_dict()["state"].values()
            for t in state.values()
            if isinstance(t, torch.Tensor)
        ]
        size = sum(t.numel() * t.element_size() for t in tensors)
        if not self.optimizer.state:  # momentum buffers appear after the first step
            size += sum(p.numel() * p.element_size() for p in self.core.parameters())
        self.run.check_free_space(size, fresh)

    def _writing(self):
        return self.run.writing()

    # ------------------------------------------------------------------ starting points
    def _init_from(self, source: str) -> None:
        path = resolve_checkpoint(source, "last")
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.core.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as err:
            raise CheckpointError(
                f"init_from {source!r}: weights do not fit model {self.config.model.name!r}: {str(err).splitlines()[0]}"
            ) from None
        self._log(f"initialised weights from {path}")

    def _resume(self) -> None:
        path = self.run.last_checkpoint
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
            raise CheckpointError(
                f"cannot resume from {path}: it does not fit this config (an override changed "
                f"the model, data or method?): {first}"
            ) from None
        self.saved_epoch = self.start_epoch
        if not self.quiet:
            self._log_config_changes(state.get("config"))
        self._log(f"resumed {self.run_dir} at epoch {self.start_epoch + 1}")

    def _log_config_changes(self, saved: dict | None) -> None:
        if not isinstance(saved, dict):
            return
        before, after = _flatten_dict(saved), _flatten_dict(config_to_dict(self.config))
        changed = [
            f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
            for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)
        ]
        if changed:
            self._log("resuming with changed settings: " + "; ".join(changed))

    # ------------------------------------------------------------------ divergence
    def _check_weights(self, epoch: int, where: str) -> None:
        """TrainingDivergedError if any parameter or buffer holds a NaN or infinity (on any rank)."""
        bad = nonfinite_tensors(self.core)
        count = dist_utils.all_reduce_sum(torch.tensor([len(bad)], device=self.device))
        if int(count.item()) > 0:
            names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "") if bad else "on another rank"
            raise self._diverged(f"weights ({names})", epoch, where)

    def _diverged(self, what: str, epoch: int, where: str):
        return diverged_error(
            what=what,
            epoch=epoch + 1,
            where=where,
            last_good=self.run.last_checkpoint if self.saved_epoch else None,
            last_good_epoch=self.saved_epoch or None,
            run_dir=self.run_dir,
            suspects=extreme_settings(self.config),
        )

    # ------------------------------------------------------------------ pieces of the loop
    def context(self, epoch: int) -> EpochContext:
        """What the method's epoch hooks receive; the same builder serves a user's own loop."""
        return epoch_context(
            self.core,
            epoch=epoch,
            num_epochs=self.config.train.epochs,
            num_classes=self.data.num_classes,
            eps=self.eps,
            val_loader=self.val_loader,
            device=self.device,
            classes=self.data.classes,
            dataset_name=self.data.name,
            all_reduce_sum=dist_utils.all_reduce_sum,
            norm=self.norm,
            seed=self.config.eval.seed,
            amp=self.acceleration.eval_amp,
        )

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        self.loader.set_epoch(epoch)
        outcome = run_epoch(
            model=self.model,
            parameters=self.core.parameters(),
            method=self.method,
            optimizer=self.optimizer,
            loader=self.loader,
            cfg=self.config.train,
            device=self.device,
            epoch=epoch,
            world_size=self.dist.world_size,
            show_progress=self.show_progress,
            acceleration=self.acceleration,
        )
        if outcome.bad_step != NO_BAD_STEP:
            raise self._diverged("loss", epoch, f"step {outcome.bad_step + 1} of {outcome.steps}")
        self._check_weights(epoch, f"by the end of its {outcome.steps} steps")
        return outcome.logs

    def _evaluate(
        self, model: nn.Module, data, attack: str, dataset_name: str | None = None, progress: bool | None = False
    ):
        # fp32 unless eval.amp: a robustness number should not depend on reduced precision.
        with autocast(self.device, self.acceleration.eval_amp):
            return evaluate_model(
                model,
                data,
                attack=attack,
                eps=self.eps,
                num_classes=self.data.num_classes,
                classes=self.data.classes,
                device=self.device,
                dataset_name=dataset_name or self.data.name,
                reduce=dist_utils.all_reduce_sum,
                norm=self.norm,
                seed=self.config.eval.seed,
                progress=progress,
            )

    def _validate(self) -> Any | None:
        if self.val_loader is None:
            return None
        return self._evaluate(
            self.core, self.val_loader, self.config.train.val_attack, f"{self.data.name} (validation)"
        )

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

    # ------------------------------------------------------------------ fit
    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, evaluate, write results.json; returns the results."""
        from robustfair.attacks import early_stop_variant

        try:
            with (
                _denormals_flushed(self.device.type == "cpu"),
                backend_flags(self.acceleration),
                early_stop_variant(self.acceleration.early_stop_attack),
                self._opened_epoch_log(),
            ):
                return self._fit()
        finally:
            self.run.release()

    @contextmanager
    def _opened_epoch_log(self) -> Iterator[None]:
        """TensorBoard event files next to metrics.jsonl while training (tensorboard_log.py)."""
        if self.dist.is_main:
            self.epoch_log = open_epoch_log(
                self.config.train.log, self.run_dir, start_epoch=self.start_epoch, classes=self.data.classes
            )
        try:
            yield
        finally:
            if self.epoch_log is not None:
                self.epoch_log.close()
                self.epoch_log = None

    def _warm_up_attack(self, epoch: int) -> float:
        """The training attack's budget in `epoch` (train.eps_warmup_epochs); returns its scale.

        Every method reads eps and step_size from its config at each call, so the warm-up
        is one config swap per epoch; the method's own state (class weights, budgets) is kept.
        """
        scale = eps_scale_at_epoch(epoch, self.config.train.eps_warmup_epochs)
        base = self.method_config
        self.method.config = (
            base if scale == 1.0 else dataclasses.replace(base, eps=base.eps * scale, step_size=base.step_size * scale)
        )
        return scale

    def _fit(self) -> dict[str, Any]:
        cfg = self.config
        main = self.dist.is_main
        if main:
            with self.run.writing():
                self.run.write_header(cfg, self.device, self.dist.world_size, acceleration=self.acceleration.to_dict())
        start_time = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.train.epochs):
            lr = lr_at_epoch(cfg.schedule, cfg.optim.lr, epoch, cfg.train.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            epoch_start = time.perf_counter()
            eps_scale = self._warm_up_attack(epoch)
            start_logs = self.method.on_epoch_start(self.context(epoch))
            train_logs = self._train_epoch(epoch)
            end_logs = self.method.on_epoch_end(self.context(epoch))
            self._check_weights(epoch, "after the method's end-of-epoch update")  # before anything is saved
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **train_logs}
            if eps_scale != 1.0:
                record["train_eps"] = self.method.config.eps
            if start_logs:
                record["method"] = to_loggable(dict(start_logs))
            if end_logs:
                record.setdefault("method", {}).update(to_loggable(dict(end_logs)))
            last_epoch = epoch + 1 == cfg.train.epochs
            if (epoch + 1) % cfg.train.val_every == 0 or last_epoch:
                val = self._validate()
                if val is not None:
                    record["val"] = validation_record(val)
                    score = selection_score(val)
                    if score > self.best_score:
                        self.best_score, self.best_epoch = score, epoch + 1
                        if main:
                            with self.run.writing():
                                save_checkpoint(self.run.best_checkpoint, self._checkpoint_state(epoch + 1))
            record["epoch_time_s"] = time.perf_counter() - epoch_start
            record["best_epoch"] = self.best_epoch
            if main:
                with self.run.writing():
                    self.run.append_metrics(to_loggable(record))
                    save_checkpoint(self.run.last_checkpoint, self._checkpoint_state(epoch + 1))
                if self.epoch_log is not None:
                    self.epoch_log.log_epoch(to_loggable(record))
            self.saved_epoch = epoch + 1
            if main and not self.quiet:
                self._log(epoch_line(record))
            dist_utils.barrier()
        train_time = time.perf_counter() - start_time
        results = self.final_evaluation(train_time)
        dist_utils.barrier()
        return results

    def final_evaluation(self, train_time: float) -> dict[str, Any]:
        cfg = self.config
        test = eval_batches(
            self.data.test, cfg.train.eval_batch_size, self.device, self.dist.rank, self.dist.world_size
        )
        averaged = getattr(self.method, "averaged_state", lambda: None)()
        extra_test = test
        if cfg.eval.extra_attacks and cfg.eval.extra_attacks_per_class:
            from robustfair.data import class_balanced_subset

            subset = class_balanced_subset(self.data.test, cfg.eval.extra_attacks_per_class, seed=cfg.eval.seed)
            extra_test = eval_batches(
                subset, cfg.train.eval_batch_size, self.device, self.dist.rank, self.dist.world_size
            )
        results = final_test_results(
            self.core,
            test,
            attack=cfg.eval.attack,
            extra_attacks=cfg.eval.extra_attacks,
            evaluate=lambda model, attack: self._evaluate(
                model, test, attack, progress=None if self.show_progress else False
            ),
            evaluate_extra=lambda model, attack: self._evaluate(
                model, extra_test, attack, progress=None if self.show_progress else False
            ),
            best_checkpoint=self.run.best_checkpoint,
            best_epoch=self.best_epoch,
            averaged_state=averaged,
            averaged_label=f"{cfg.method_name()} weight averaging (last epoch)",
            device=self.device,
            sanity=(lambda last: self._sanity(test, last)) if cfg.eval.sanity_checks else None,
        )
        results["run"] = {
            "name": cfg.name,
            "method": cfg.method_name(),
            "model": cfg.model.name,
            "epochs": cfg.train.epochs,
            "seed": cfg.seed,
            "train_time_s": round(train_time, 2),
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "eps": self.eps,
            "norm": self.norm,
            "eval_seed": cfg.eval.seed,
            "eval_batch_size": cfg.train.eval_batch_size,
            "robustfair": robustfair.__version__,
            "acceleration": self.acceleration.to_dict(),
        }
        if self.dist.is_main:
            with self.run.writing():
                self.run.write_results(results)
        return results

    def _sanity(self, test, result) -> dict[str, Any]:
        from robustfair.metrics.sanity import run_sanity_checks

        # The threat model of the evaluated attack (an L2 attack is checked in L2); the run's for a clean one.
        eps, norm = result.attack.get("eps", self.eps), result.attack.get("norm", self.norm)
        return run_sanity_checks(
            self.core,
            test,
            result=result,
            num_classes=self.data.num_classes,
            eps=eps,
            norm=norm,
            device=self.device,
            log=self._log,
            seed=self.config.eval.seed,
            progress=None if self.show_progress else False,
        )


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


def train(
    config: RunConfig | Mapping[str, Any] | str | Path,
    run_dir: str | Path | None = None,
    *,
    model: Any = None,
    train_data: Any = None,
    test_data: Any = None,
    classes: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    quiet: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `config` into `run_dir` (resuming from its last checkpoint if asked); returns results.json.

    config: a RunConfig, a mapping of config sections, or a preset name / YAML path;
    overrides: dotted `key=value` strings applied on top. run_dir: default
    `runs/<config name>`.
    model: your model instead of `model.name`: an `nn.Module` (trained in place), a
    factory function or class importable by its path, or a name (registry or
    `package.module:factory`). train_data / test_data: your data instead of `data.name`,
    together: (x, y) tensors or arrays, DataLoaders or map-style datasets yielding (x, y),
    x float in [0, 1] (or uint8), y class indices; classes: their names. What the run
    records for each, and so what can rebuild it later: `engine/user_objects.py`.
    """
    objects = resolve_user_objects(
        as_run_config(config, overrides), model=model, train_data=train_data, test_data=test_data, classes=classes
    )
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / objects.config.name
    trainer = Trainer(
        objects.config,
        run_dir,
        resume=resume,
        quiet=quiet,
        progress=progress,
        model=objects.model,
        splits=objects.splits,
    )
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


__all__ = [
    "train",
    "Trainer",
    "step_seed",
    "load_run_config",
    "prepare_data",
    "build_run_model",
    "evaluate_model",
    "eval_batches",
    "eval_attack_overrides",
    "resolve_device",
    "input_geometry",
    "RunData",
    "RobustfairError",
]
