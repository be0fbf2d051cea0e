"""The one training loop every method plugs into.

`train(config, run_dir)` builds data, model and method from a validated `RunConfig`,
then for each epoch: `method.on_epoch_start(ctx)`, `method.loss(model, x, y)` per batch
with an SGD step, `method.on_epoch_end(ctx)`, class-wise validation, one line in
`metrics.jsonl`, and atomic checkpoints `checkpoints/last.safetensors` and
`checkpoints/best.safetensors` (best by validation worst-class robust accuracy, never by
test). At the end the last and best models are evaluated class-wise on the test set and
`results.json` is written; its presence marks the run complete.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import yaml
from torch import nn

import robustfair
from robustfair.engine import distributed as dist_utils
from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from robustfair.engine.config import RunConfig, config_to_dict, parse_config
from robustfair.engine.progress import Progress
from robustfair.engine.schedules import lr_at_epoch
from robustfair.errors import CheckpointError, ConfigError, RobustfairError, TrainingDivergedError
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
    return build_model(m.name, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                       normalize=normalize, **m.options)


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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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

        self._check_run_dir(resume)
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
        # Every rank seeds differently for attack starts; the model init above is shared.
        torch.manual_seed(config.seed * 1000 + self.dist.rank + 1)
        if resume:
            self._resume()

    # ------------------------------------------------------------------ setup helpers
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _check_run_dir(self, resume: bool) -> None:
        last = self.run_dir / "checkpoints" / "last.safetensors"
        if resume:
            if not last.is_file():
                raise CheckpointError(f"cannot resume: {str(last)!r} does not exist")
            return
        if last.exists() or (self.run_dir / "results.json").exists():
            raise ConfigError(f"run directory {str(self.run_dir)!r} already holds a run; pass --resume to continue "
                              "it, or choose another --run-dir (nothing is overwritten)")

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
        state = load_checkpoint(self.checkpoint_dir / "last.safetensors", map_location=self.device)
        self.core.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state.get("method", {}))
        self.start_epoch = int(state["epoch"])
        self.best_score = float(state.get("best_score", -1.0))
        self.best_epoch = int(state.get("best_epoch", 0))
        _set_rng_state(state["rng"], self.device)
        self._truncate_metrics(self.start_epoch)
        self._log(f"resumed {self.run_dir} at epoch {self.start_epoch + 1}")

    def _truncate_metrics(self, completed_epochs: int) -> None:
        """Drop metrics lines of epochs after the checkpoint (written just before a crash)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists() or not self.dist.is_main:
            return
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("epoch", 0) <= completed_epochs]
        _atomic_write_text(path, "".join(line + "\n" for line in kept))

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
        first_bad = torch.tensor(-1, device=self.device)
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
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), torch.tensor(step, device=self.device),
                                    first_bad)
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
        bad_step = int(first_bad.item())
        if self.dist.enabled:
            bad_step = int(dist_utils.all_reduce_sum(torch.tensor([max(bad_step, -1) + 1], device=self.device)).item()) - 1
        weights_finite = all(torch.isfinite(p).all() for p in self.core.parameters())
        if bad_step >= 0 or not weights_finite:
            where = f"step {bad_step + 1}" if bad_step >= 0 else "the weights after the last step"
            raise TrainingDivergedError(
                f"non-finite loss at epoch {epoch + 1}, {where}; the last good checkpoint "
                f"({self.checkpoint_dir / 'last.safetensors'}) is kept: continue with "
                f"`robustfair train --resume {self.run_dir} optim.lr=<lower>`")
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
        _atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(self.config), sort_keys=False))
        meta = {"robustfair": robustfair.__version__, "torch": torch.__version__, "python": platform.python_version(),
                "machine": platform.platform(), "device": str(self.device),
                "cuda_device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
                "world_size": self.dist.world_size, "git_commit": _git_commit()}
        _atomic_write_text(self.run_dir / "meta.json", json.dumps(meta, indent=2))

    # ------------------------------------------------------------------ fit
    def fit(self) -> dict[str, Any]:
        cfg = self.config
        main = self.dist.is_main
        if main:
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
                            save_checkpoint(self.checkpoint_dir / "best.safetensors", self._checkpoint_state(epoch + 1))
            record["epoch_time_s"] = time.perf_counter() - epoch_start
            record["best_epoch"] = self.best_epoch
            if main:
                with open(self.run_dir / "metrics.jsonl", "a") as handle:
                    handle.write(json.dumps(_to_loggable(record)) + "\n")
                save_checkpoint(self.checkpoint_dir / "last.safetensors", self._checkpoint_state(epoch + 1))
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
            best["epoch"] = self.best_epoch
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
            _atomic_write_text(self.run_dir / "results.json", json.dumps(results, indent=2))
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
    return parse_config(yaml.safe_load(path.read_text()), overrides)


__all__ = ["train", "Trainer", "load_run_config", "prepare_data", "build_run_model", "evaluate_model",
           "eval_batches", "resolve_device", "RobustfairError"]
