"""Shared helpers of the benchmarks: timing, machine description, inputs, tables, JSON.

Timing protocol (every benchmark): each measured callable runs `warmup` times untimed,
then `repeats` rounds; in each round every callable runs once, in an order rotated by
one per round, so slow phases of a shared machine hit every callable alike. Ratios are
taken within a round (both sides measured seconds apart) and the median over rounds is
reported, which cancels most of the noise of other processes on the machine.

Two clocks are read around every call: wall time (`time.perf_counter`) and this process's
CPU time (`time.process_time`, all its threads). On a CPU device the figures and targets
use CPU time: other processes on a shared machine stretch wall time (the process waits
for a core) but hardly change the CPU time the work itself takes, so a loaded machine
does not flip a target. On CUDA the figures use wall time (the host mostly waits for the
GPU, and waiting is what is being measured). Both clocks are printed and stored.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 10


# ---- timing ---------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call of `fn`, device work included."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def judged_clock(device: torch.device) -> str:
    """The clock figures and targets are judged on: "cpu" on a CPU device, "wall" on CUDA."""
    return "wall" if device.type == "cuda" else "cpu"


class Timings(dict):
    """{name: [seconds in round 0, 1, ...]} on the judged clock (`clock`: "cpu" or "wall").

    `.wall` and `.cpu` hold both clocks' per-round seconds; `per_round()` gives them for JSON.
    """

    def __init__(self, wall: dict[str, list[float]], cpu: dict[str, list[float]], clock: str):
        super().__init__(cpu if clock == "cpu" else wall)
        self.wall, self.cpu, self.clock = wall, cpu, clock

    def per_round(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "wall_s": {k: list(v) for k, v in self.wall.items()},
            "cpu_s": {k: list(v) for k, v in self.cpu.items()},
        }


def interleaved_times(
    fns: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int,
    device: torch.device,
    after_call: Callable[[str, int], None] | None = None,
    verbose: bool = True,
    clock: str | None = None,
) -> Timings:
    """Seconds of each callable in each of `repeats` rounds, on both clocks (`Timings`).

    Round r runs the callables in their given order rotated by r. `after_call(name, round)`
    runs untimed after each timed call (e.g. to read counters); round -1 marks warm-up.
    clock: the judged clock, "cpu" or "wall" (default `judged_clock(device)`); a callable
    whose work runs in other processes (DataLoader workers) must be judged on "wall".
    """
    clock = clock or judged_clock(device)
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock: {clock!r} must be 'cpu' or 'wall'")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
            if after_call is not None:
                after_call(name, -1)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            w, c = time_once(fns[name], device)
            wall[name].append(w)
            cpu[name].append(c)
            if after_call is not None:
                after_call(name, r)
        if verbose:
            line = ", ".join(f"{n} {wall[n][-1]:.3f}s wall / {cpu[n][-1]:.3f}s cpu" for n in names)
            print(f"  round {r + 1}/{repeats}: {line}", flush=True)
    return Timings(wall, cpu, clock)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[float, float]:
    """(median over rounds of numerator[r] / denominator[r], min(numerator) / min(denominator)).

    The first is the reported figure; the second, a ratio of best times, is a check that
    is insensitive to other processes (they only ever add time) and is printed beside it.
    """
    per_round = median([a / b for a, b in zip(numerator, denominator)])
    return per_round, min(numerator) / min(denominator)


def wall_ratio(times: Timings, numerator: str, denominator: str) -> float:
    """The median per-round ratio on the wall clock, printed beside the judged figure."""
    return median([a / b for a, b in zip(times.wall[numerator], times.wall[denominator])])


# ---- machine --------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_description(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on (printed and written to JSON)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    desc: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "git_commit": _git_commit(),
    }
    if device.type == "cuda":
        desc["gpu"] = torch.cuda.get_device_name(device)
        desc["cuda"] = torch.version.cuda
    return desc


def print_machine(desc: Mapping[str, Any]) -> None:
    gpu = f", GPU {desc['gpu']} (CUDA {desc['cuda']})" if "gpu" in desc else ""
    print(
        f"machine: {desc['cpu']}, {desc['usable_cpus']} usable of {desc['logical_cpus']} logical CPUs, "
        f"torch threads {desc['torch_threads']}, 1-min load average {desc['load_average_1min']} at start{gpu}"
    )
    print(
        f"software: Python {desc['python']}, torch {desc['torch']}, numpy {desc['numpy']}, "
        f"{desc['platform']}; commit {desc['git_commit']}; {desc['date']}"
    )


# ---- arguments and output -------------------------------------------------------------------


def base_parser(description: str, *, repeats: int, warmup: int = 1) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1: stable on a shared machine)"
    )
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed rounds (default {repeats})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed warm-up rounds (default {warmup})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="directory holding cifar10_jpeg.npz (default: $ROBUSTFAIR_DATA, then ../shared/data)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        default=None,
        metavar="PATH",
        help="also write the figures (each ratio by name) as JSON",
    )
    return parser


def setup(args: argparse.Namespace) -> tuple[torch.device, dict[str, Any]]:
    """Threads, seed and device from the common arguments; prints and returns the machine."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    machine = machine_description(device)
    print_machine(machine)
    return device, machine


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 2) -> None:
    """A plain aligned text table (floats with 3 decimals); the first `left` columns left-aligned."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print("  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip())


def write_json(
    path: str | None,
    benchmark: str,
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    ratios: Mapping[str, float],
    measurements: Mapping[str, Any],
    targets: Mapping[str, Any] | None = None,
) -> None:
    """Write {benchmark, command, machine, settings, ratios, measurements, targets} to `path`."""
    if not path:
        return
    record = {
        "benchmark": benchmark,
        "command": "python " + " ".join(sys.argv),
        "machine": dict(machine),
        "settings": dict(settings),
        "ratios": {k: _plain(v) for k, v in ratios.items()},
        "measurements": _plain(measurements),
        "targets": _plain(targets or {}),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {path}")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


# ---- inputs ---------------------------------------------------------------------------------


def data_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("ROBUSTFAIR_DATA") or REPO.parent / "shared" / "data")


def load_images(
    n: int, image_size: int = 32, *, directory: str | None = None, split: str = "test", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(x uint8 [n, 3, s, s], labels int64 [n], description).

    Real CIFAR-10 (JPEG) images when `cifar10_jpeg.npz` is found (a seeded random subset of
    `split`; area-downsampled when s < 32), else uniform noise, which the description says.
    """
    root = data_dir(directory)
    if (root / "cifar10_jpeg.npz").is_file():
        from robustfair.data import load_dataset

        splits = load_dataset("cifar10_jpeg", root=root)
        data = splits.test if split == "test" else splits.train
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
        x = torch.from_numpy(np.ascontiguousarray(data.x[pick.numpy()]))
        labels = torch.from_numpy(np.asarray(data.y[pick.numpy()], dtype=np.int64))
        what = f"CIFAR-10 (JPEG) {split} images"
    else:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
        what = f"uniform noise images (cifar10_jpeg.npz not found in {root})"
    if image_size != x.shape[-1]:
        x = F.interpolate(x.float(), size=(image_size, image_size), mode="area").round().clamp(0, 255).to(torch.uint8)
        what += f", area-downsampled to {image_size}x{image_size}"
    return x, labels, what


def build_benchmark_model(name: str, image_size: int, *, seed: int = 0, **options: Any) -> nn.Module:
    """`robustfair.models.build_model(name)` for 3-channel images with 10 classes.

    A linear layer initialised to all zeros (SmallCNN's last layer, after the TRADES
    reference) gets PyTorch's default init instead: an untrained SmallCNN otherwise has
    zero input gradients and every attack stops at its start point.
    """
    from robustfair.models import build_model

    torch.manual_seed(seed)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=3, input_size=image_size, **options)
    for module in model.modules():
        if isinstance(module, nn.Linear) and not module.weight.detach().any():
            module.reset_parameters()
    return model


def freeze_batchnorm_statistics(model: nn.Module) -> nn.Module:
    """Momentum 0 for every BatchNorm: train-mode forwards still normalise by batch
    statistics (the same work), but the running statistics the eval-mode attacks use stay
    put, so repeated timed steps keep attacking the same model."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return model


def realistic_labels(model: nn.Module, x: torch.Tensor, *, wrong_fraction: float = 0.2, seed: int = 0) -> torch.Tensor:
    """Labels that make an untrained model behave like a partly trained one under attack.

    Each label is the model's own clean prediction (eval mode), except a `wrong_fraction`
    of them moved to another class: about 80% clean accuracy, and early-stopped attacks
    flip the correct samples at spread-out steps, as during adversarial training.
    """
    saved = model.training
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    model.train(saved)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    wrong = torch.randperm(n, generator=generator)[: int(round(wrong_fraction * n))]
    shift = torch.randint(1, NUM_CLASSES, (wrong.numel(),), generator=generator).to(pred.device)
    labels = pred.clone()
    labels[wrong.to(pred.device)] = (pred[wrong.to(pred.device)] + shift) % NUM_CLASSES
    return labels


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]."""
    return x.float().div_(255.0)
