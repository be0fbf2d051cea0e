"""BAT's Table 1 at a reduced schedule in one GPU call (driver of scripts/gpu_table1.sh).

"Improving Robust Fairness via Balance Adversarial Training" (Sun et al., AAAI 2023),
Table 1: CIFAR-10, ResNet-18, PGD-AT, TRADES(6), FRL RW+RM and BAT, average and worst-class
standard, boundary and robust error. The paper trains 100 epochs per method; one GPU call
here has about 9 minutes, so this script runs the same protocol at a reduced schedule sized
from the throughput it measures, and labels it so everywhere:

1. the GPU throughput benchmark (`benchmarks/gpu_throughput.py`, sections train, bat, eval;
   at most `--bench-s` seconds, in a subprocess; its JSON is kept);
2. sizing: one training step of each method is timed here (batch 128, robustfair's CUDA
   defaults), and the number of epochs E is the largest that lets PGD-AT, TRADES(6) and
   BAT train and be evaluated within the budget (`plan_schedule`); every method gets the
   same E and the same schedule shape (the paper's: lr 0.1, x0.1 at 75% and x0.01 at 90%
   of the epochs); AutoAttack is the standard version when it fits, else APGD-CE + APGD-T;
3. for each method (PGD-AT, BAT, TRADES(6): BAT before TRADES so that a slow run costs the
   baseline, not the paper's method): `robustfair.engine.trainer.Trainer` trains it
   (the presets `cifar10_resnet18_pgd_at`, `cifar10_resnet18_trades6`, `bat`, all 50,000
   training images, no validation split), evaluates PGD-20 on the 10,000 test images (with
   the sanity checks), then AutoAttack on a class-balanced, seeded 1,000 (100 per class).
   After PGD-AT, the same model is also evaluated in bf16 (eval.amp) to measure the
   precision gap. Before each run the script checks that its estimate fits the time left
   and otherwise skips it, saying so;
4. if time remains, FRL RW+RM (`frl_rwrm` preset, on ResNet-18) fine-tunes the PGD-AT
   model for max(1, round(0.4 E)) epochs (the paper: 40 after 100), with its validation
   split (300 per class);
5. after every run the outputs are rewritten in `--out`: table1.md (the comparison, the
   schedule, timings, settings), results.json (everything), runs.tar.gz (each run's
   config, meta, metrics and results; no checkpoints); the benchmark writes benchmark.json.
   A call cut off at any point still returns every run finished so far.

`--smoke` runs all of it on the CPU in seconds (tiny subsets, one epoch, 2-step attacks,
the small CNN, APGD-CE only); its numbers mean nothing. The test suite runs it.

    python scripts/gpu_table1.py --out DIR [--budget-s 505] [--data-dir DIR] [--work DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `benchmarks` importable when run as a script
sys.path.insert(1, str(REPO / "src"))  # robustfair from the source tree when not installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

PAPER = "Sun et al., AAAI 2023, Table 1 (BAT)"
E_MIN, E_MAX = 4, 40
SAFETY_S = 15.0  # kept free at the end: writing the outputs, rounding of the estimates
AA_SUBSET = 1000


@dataclass(frozen=True)
class MethodSpec:
    key: str
    label: str
    preset: str
    fine_tune_of: str | None = None


# Run order: PGD-AT first (FRL fine-tunes it), then BAT (the paper's method), then TRADES(6);
# the table lists them in Table 1's order (TABLE_ORDER).
CORE = (
    MethodSpec("pgd_at", "PGD-AT", "cifar10_resnet18_pgd_at"),
    MethodSpec("bat", "BAT", "bat"),
    MethodSpec("trades6", "TRADES(6)", "cifar10_resnet18_trades6"),
)
TABLE_ORDER = ("pgd_at", "trades6", "frl_rwrm", "bat")
MARGIN = 1.1  # measured step times are planned with 10% to spare
FRL = MethodSpec("frl_rwrm", "FRL RW+RM (fine-tunes PGD-AT)", "frl_rwrm", fine_tune_of="pgd_at")
SIZED_AS = {"pgd_at": "pgd_at", "trades6": "trades", "bat": "bat", "frl_rwrm": "frl_rwrm"}


# ---- planning (pure, unit-tested) -----------------------------------------------------------


@dataclass
class Estimates:
    """Seconds the planner works with (measured here, or derived from measurements)."""

    step_s: dict[str, float]  # one training step (batch 128) of each method key
    steps_per_epoch: int  # training steps per epoch (core runs)
    pgd20_s: float  # PGD-20 class-wise evaluation of the whole test set
    aa_s: dict[str, float]  # AutoAttack on the class-balanced subset, per version
    run_overhead_s: float = 10.0  # per run: building data and model, checkpoints, sanity checks
    epoch_overhead_s: float = 1.0  # per epoch: checkpoint, metrics, weight checks

    def epoch_s(self, key: str) -> float:
        return self.steps_per_epoch * self.step_s[key] * MARGIN + self.epoch_overhead_s

    def eval_s(self, aa: str | None) -> float:
        return 1.2 * self.pgd20_s + (self.aa_s[aa] if aa else 0.0) + self.run_overhead_s

    def run_s(self, key: str, epochs: int, aa: str | None) -> float:
        return epochs * self.epoch_s(key) + self.eval_s(aa)


@dataclass
class Plan:
    epochs: int
    milestones: list[int]
    factors: list[float]
    autoattack: str | None  # "standard", "lite" (APGD-CE + APGD-T) or None
    frl_epochs: int
    estimated_s: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def schedule_label(self) -> str:
        steps = ", ".join(f"x{f:g} from epoch {m}" for m, f in zip(self.milestones, self.factors))
        return (
            f"REDUCED SCHEDULE: {self.epochs} epoch{'s' if self.epochs != 1 else ''} of batch 128 per method "
            f"(the paper: 100), SGD lr 0.1"
            f"{', ' + steps if steps else ''} (the paper's x0.1 at 75% and x0.01 at 90%, scaled); the same "
            f"for every method"
        )


def schedule_points(epochs: int) -> tuple[list[int], list[float]]:
    """The paper's piecewise shape scaled to `epochs`: x0.1 from 75%, x0.01 from 90% (1-based epochs)."""
    points: list[int] = []
    factors: list[float] = []
    for fraction, factor in ((0.75, 0.1), (0.9, 0.01)):
        milestone = max(2, round(fraction * epochs))
        if milestone > epochs:
            continue
        if points and milestone <= points[-1]:
            factors[-1] = factor  # two milestones on one epoch: the later factor wins
            continue
        points.append(milestone)
        factors.append(factor)
    return points, factors


def plan_schedule(
    est: Estimates,
    seconds_left: float,
    *,
    methods: tuple[str, ...] = ("pgd_at", "bat", "trades6"),
    precision_gap_s: float = 0.0,
    e_min: int = E_MIN,
    e_max: int = E_MAX,
) -> Plan:
    """The largest common epoch count E (<= e_max) that fits `seconds_left`, preferring the
    standard AutoAttack when E >= e_min still fits with it, else APGD-CE + APGD-T, else none."""
    usable = seconds_left - SAFETY_S - precision_gap_s
    per_epoch = sum(est.epoch_s(m) for m in methods)
    chosen: tuple[int, str | None] | None = None
    for aa in ("standard", "lite", None):
        fixed = sum(est.eval_s(aa) for _ in methods)
        epochs = int((usable - fixed) // per_epoch) if per_epoch > 0 else e_max
        if epochs >= e_min or (aa is None and chosen is None):
            chosen = (min(max(epochs, 1), e_max), aa)
            break
    epochs, aa = chosen
    milestones, factors = schedule_points(epochs)
    estimated = {m: est.run_s(m, epochs, aa) for m in methods}
    reason = (
        f"{seconds_left:.0f} s left; per epoch of all {len(methods)} methods {per_epoch:.1f} s; "
        f"evaluation per method {est.eval_s(aa):.1f} s (AutoAttack {aa or 'none'})"
    )
    return Plan(
        epochs=epochs,
        milestones=milestones,
        factors=factors,
        autoattack=aa,
        frl_epochs=max(1, round(0.4 * epochs)),
        estimated_s=estimated,
        reason=reason,
    )


# ---- measuring ---------------------------------------------------------------------------------


def run_benchmark(args, out: Path) -> dict[str, Any] | None:
    """benchmarks/gpu_throughput.py in a subprocess (time-limited); its JSON, or None."""
    path = out / "benchmark.json"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_throughput.py"),
        "--json",
        str(path),
        "--budget-s",
        str(args.bench_s),
    ]
    if args.smoke:
        command += ["--smoke", "--sections", "bat"]
    else:
        command += [
            "--sections",
            "train,bat,eval",
            "--train-variants",
            "authors_style,library",
            "--no-compile",
            "--steps",
            "4",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--profile-steps",
            "0",
            "--threads",
            str(max(1, min(8, os.cpu_count() or 1))),
        ]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    print(f"\n== GPU throughput benchmark (at most {args.bench_s:.0f} s) ==\n$ {' '.join(command)}", flush=True)
    try:
        subprocess.run(command, cwd=REPO, env=env, timeout=args.bench_s + 30, check=False)
    except subprocess.TimeoutExpired:
        print("benchmark: stopped at its time limit", flush=True)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def measure_steps(args, device: torch.device, keys: tuple[str, ...]) -> dict[str, float]:
    """Seconds per training step (batch 128, robustfair's defaults on `device`) of each method."""
    from benchmarks.common import (
        build_benchmark_model,
        freeze_batchnorm_statistics,
        load_images,
        realistic_labels,
        to_unit,
    )
    from benchmarks.gpu_steps import acceleration, device_batches, library_step

    model_name = "small_cnn" if args.smoke else "resnet18"
    batch = 8 if args.smoke else 128
    base = freeze_batchnorm_statistics(build_benchmark_model(model_name, 32, seed=0)).to(device)
    x_u8, _, _ = load_images(batch * (2 if args.smoke else 16), 32, directory=args.data_dir, split="train")
    labels = realistic_labels(base, to_unit(x_u8).to(device)).cpu().numpy()
    acc = acceleration(device)
    found = {}
    for key in keys:
        step = library_step(SIZED_AS[key], base, device_batches(x_u8.numpy(), labels, batch, device), acc, device)
        for _ in range(1 if args.smoke else 3):
            step()
        times = []
        for _ in range(1 if args.smoke else 6):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        found[key] = float(np.median(times)) * (128 / batch)
        print(f"  {key}: {found[key] * 1000:.1f} ms per step of batch 128", flush=True)
    return found


def estimates_from(
    step_s: dict[str, float], bench: dict[str, Any] | None, *, train_images: int, test_images: int, smoke: bool
) -> Estimates:
    """Planner inputs: measured steps, the benchmark's PGD-20 time (scaled to the test set)
    when it has one, else an estimate from the PGD-AT step (21 passes against its 11, fp32)."""
    pgd20 = None
    try:
        fp32 = bench["measurements"]["eval"]["precisions"]["fp32"]
        pgd20 = fp32["seconds"] * test_images / fp32["images"]
    except (KeyError, TypeError, ZeroDivisionError):
        pass
    if pgd20 is None:
        pgd20 = 2.5 * (test_images / 128) * step_s["pgd_at"] * 21 / 11
    # AutoAttack in PGD-20-of-the-test-set units: standard ~ 1.7M gradient-pass equivalents on
    # 1,000 images (APGD-CE, 9 x APGD-T, 9 x FAB-T, Square 5,000 queries on the robust half),
    # APGD-CE + APGD-T ~ 0.5M, against PGD-20's 21 x 10,000; plus a fixed overhead.
    unit = pgd20 / (21 * test_images)
    aa = {"standard": 1.7e6 * unit * 1.5 + 10, "lite": 0.5e6 * unit * 1.5 + 5}
    if smoke:
        aa = {"standard": 5.0, "lite": 2.0}
    return Estimates(
        step_s=step_s,
        steps_per_epoch=math.ceil(train_images / 128),
        pgd20_s=pgd20,
        aa_s=aa,
        run_overhead_s=2.0 if smoke else 10.0,
    )


# ---- one run ---------------------------------------------------------------------------------------


def overrides_for(spec: MethodSpec, plan: Plan, args, runs: Path) -> list[str]:
    common = [f"name=table1_{spec.key}", "train.batch_size=128", "train.log_every=100", "eval.sanity_checks=true"]
    if args.data_dir:
        common.append(f"data.root={args.data_dir}")
    if spec.fine_tune_of is None:
        points = "[" + ",".join(map(str, plan.milestones)) + "]"
        factors = "[" + ",".join(f"{f:g}" for f in plan.factors) + "]"
        common += [
            f"train.epochs={plan.epochs}",
            "data.val_per_class=0",
            f"schedule.name={'piecewise' if plan.milestones else 'constant'}",
            f"schedule.milestones={points}",
            f"schedule.factors={factors}",
        ]
    else:
        common += [
            f"train.epochs={plan.frl_epochs}",
            "model.name=resnet18",
            "data.val_per_class=300",
            f"init_from={runs / spec.fine_tune_of}",
        ]
    if args.smoke:
        common += [
            f"data.name={args.dataset}",
            "model.name=small_cnn",
            "data.train_per_class=6",
            "data.test_per_class=3",
            "method.steps=2",
            "train.eval_batch_size=50",
        ]
        if spec.fine_tune_of is not None:
            common += ["data.val_per_class=2"]
        if args.dataset != "cifar10_jpeg":
            common += ["data.root=null", "data.augment=null"]
    return common


def class_balanced_indices(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """`per_class` seeded random indices of each class (all of a smaller class), sorted."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def autoattack_subset(trainer, plan: Plan, args) -> dict[str, Any]:
    """AutoAttack of the trained model on a class-balanced, seeded subset of the test set."""
    from robustfair.engine.accelerator import backend_flags
    from robustfair.metrics import evaluate_classwise

    test = trainer.data.test
    per_class = max(1, AA_SUBSET // trainer.data.num_classes)
    index = class_balanced_indices(np.asarray(test.y), per_class, seed=0)
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(test.x)[index])).to(trainer.device).float().div_(255.0)
    y = torch.from_numpy(np.asarray(test.y)[index].astype(np.int64)).to(trainer.device)
    overrides: dict[str, Any] = {"eps": trainer.eps, "batch_size": 500}
    if plan.autoattack == "lite" or args.smoke:
        overrides["attacks"] = ["apgd-ce"] if args.smoke else ["apgd-ce", "apgd-t"]
    start = time.perf_counter()
    with backend_flags(trainer.acceleration):  # the run's evaluation precision: fp32 (TF32 on CUDA)
        result = evaluate_classwise(
            trainer.core,
            [(x, y)],
            attack="autoattack",
            num_classes=trainer.data.num_classes,
            classes=trainer.data.classes,
            device=trainer.device,
            dataset_name=f"{trainer.data.name} test, class-balanced {len(index)}",
            attack_overrides=overrides,
        )
    record = result.to_dict()
    record["seconds"] = time.perf_counter() - start
    counts = np.bincount(np.asarray(test.y)[index], minlength=trainer.data.num_classes)
    record["subset"] = {"per_class": int(counts.max()), "seed": 0, "size": int(len(index))}
    return record


def precision_gap(trainer, fp32_result: dict[str, Any]) -> dict[str, Any]:
    """PGD-20 on the test set in bf16 (eval.amp) against the run's fp32 evaluation, same model."""
    from robustfair.engine.accelerator import autocast, backend_flags
    from robustfair.engine.run_data import eval_batches

    test = eval_batches(trainer.data.test, trainer.config.train.eval_batch_size, trainer.device)
    start = time.perf_counter()
    torch.manual_seed(0)
    with backend_flags(trainer.acceleration), autocast(trainer.device, True):
        bf16 = trainer._evaluate(trainer.core, test, trainer.config.eval.attack).to_dict()
    seconds = time.perf_counter() - start
    gap = {k: bf16["summary"][k] - fp32_result["summary"][k] for k in fp32_result["summary"]}
    return {
        "bf16_summary": bf16["summary"],
        "fp32_summary": fp32_result["summary"],
        "bf16_minus_fp32": gap,
        "bf16_seconds": seconds,
    }


def train_one(spec: MethodSpec, plan: Plan, args, runs: Path, record: dict[str, Any]) -> dict[str, Any]:
    from robustfair.engine.config import load_config
    from robustfair.engine.trainer import Trainer

    config = load_config(spec.preset, overrides_for(spec, plan, args, runs))
    started = time.perf_counter()
    trainer = Trainer(config, runs / spec.key, quiet=False, progress=False)
    results = trainer.fit()
    trained = time.perf_counter()
    entry: dict[str, Any] = {
        "label": spec.label,
        "preset": spec.preset,
        "results": results,
        "wall_s": trained - started,
        "epochs": config.train.epochs,
        "train_time_s": results["run"]["train_time_s"],
        "train_images": len(trainer.data.train),
    }
    record["runs"][spec.key] = entry
    if plan.autoattack is not None:
        entry["autoattack"] = autoattack_subset(trainer, plan, args)
        aa = entry["autoattack"]
        print(
            f"  AutoAttack ({plan.autoattack}) on {aa['num_samples']} test images: {aa['seconds']:.1f} s, "
            f"avg/worst robust error {aa['summary']['avg_rob_err']:.2f}/{aa['summary']['worst_rob_err']:.2f}",
            flush=True,
        )
    if spec.key == "pgd_at" and not args.no_precision_gap:
        entry["precision_gap"] = precision_gap(trainer, results)
    entry["wall_s"] = time.perf_counter() - started
    return entry


# ---- outputs ---------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.replace(tmp, path)


def pack_runs(runs: Path) -> bytes:
    """Each run's small files (config, meta, metrics, results) as tar.gz; no checkpoints."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for run in sorted(p for p in runs.iterdir() if p.is_dir()):
            for name in ("config.yaml", "meta.json", "metrics.jsonl", "results.json"):
                if (run / name).is_file():
                    tar.add(run / name, arcname=f"{run.name}/{name}")
    return buffer.getvalue()


def table_text(record: dict[str, Any]) -> str:
    from robustfair.report.tables import per_class_table, robust_error_by_class, summary_table

    plan = record.get("plan") or {}
    lines = [
        f"# {PAPER} at a reduced schedule: CIFAR-10 (JPEG), ResNet-18",
        "",
        f"**{plan.get('label', 'schedule not planned yet')}.** Not the paper's protocol: "
        "numbers from a few epochs are far from converged and say nothing final about the methods.",
        "",
    ]
    if record.get("smoke"):
        lines += ["**SMOKE TEST on the CPU (tiny subsets, small CNN, 2-step attacks): the numbers mean nothing.**", ""]
    lines += [
        f"GPU: {record['machine'].get('gpu', 'none')}; torch {record['machine']['torch']}; Python "
        f"{record['machine']['python']}; code {record['machine'].get('commit')}; {record['machine']['date']}.",
        f"Command: `{record['command']}`",
        "",
    ]
    runs = {k: record["runs"][k] for k in TABLE_ORDER if k in record["runs"]}
    if runs:
        rows = [(e["label"], e["results"]["summary"]) for e in runs.values()]
        first = next(iter(runs.values()))["results"]
        attack = first["attack"]
        lines += [
            f"## PGD-20 on the {first['num_samples']} test images (eps {attack.get('eps', 0):.4f}, step "
            f"{attack.get('step_size', 0):.4f}, fp32), last epoch; error % (lower is better)",
            "",
            summary_table(rows),
            "",
        ]
        aa_rows = [(e["label"], e["autoattack"]["summary"]) for e in runs.values() if "autoattack" in e]
        if aa_rows:
            aa = next(e["autoattack"] for e in runs.values() if "autoattack" in e)
            spec = aa["attack"]
            which = ", ".join(a.upper() for a in spec["attacks"]) if spec.get("attacks") else spec.get("version")
            lines += [
                f"## AutoAttack ({which}, eps {spec.get('eps', 0):.4f}) on a class-balanced "
                f"{aa['num_samples']} of the test images "
                f"(seeded, {aa['subset']['per_class']} per class); error %",
                "",
                summary_table(aa_rows),
                "",
            ]
        classes = first["classes"]
        lines += [
            "## Robust error % by class (PGD-20, test set)",
            "",
            per_class_table([(e["label"], robust_error_by_class(e["results"])) for e in runs.values()], classes),
            "",
        ]
        lines += [
            "## Time per run",
            "",
            "| method | epochs | train s | train images/s | wall s (train + evaluation) |",
            "|---|---:|---:|---:|---:|",
        ]
        for e in runs.values():
            images = e.get("train_images", 0)
            rate = f"{images * e['epochs'] / e['train_time_s']:.0f}" if images and e["train_time_s"] else ""
            lines.append(f"| {e['label']} | {e['epochs']} | {e['train_time_s']:.1f} | {rate} | {e['wall_s']:.1f} |")
        lines.append("")
        gap = runs.get("pgd_at", {}).get("precision_gap")
        if gap:
            d = gap["bf16_minus_fp32"]
            lines += [
                "## Evaluation precision on the PGD-AT model (PGD-20, test set)",
                "",
                f"bf16 (eval.amp) minus fp32, error points: avg rob {d['avg_rob_err']:+.2f}, worst rob "
                f"{d['worst_rob_err']:+.2f}, avg std {d['avg_std_err']:+.2f} (bf16 evaluation "
                f"{gap['bf16_seconds']:.1f} s).",
                "",
            ]
        settings = first["run"].get("acceleration", {})
        lines += [f"Device settings used (train.* auto): {json.dumps(settings)}", ""]
    if record.get("skipped"):
        lines += ["## Not run", ""] + [f"- {k}: {v}" for k, v in record["skipped"].items()] + [""]
    if record.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {v}" for k, v in record["errors"].items()] + [""]
    bench = record.get("benchmark_targets")
    if bench:
        lines += ["## GPU benchmark targets (benchmark.json)", ""]
        for t in bench.values():
            verdict = {True: "PASS", False: "FAIL", None: "not judged"}[t.get("met")]
            lines.append(f"- {t['target']}: {verdict} ({t['value']:,.3f})")
        lines.append("")
    lines.append(f"Status: {record['status']}; {record['elapsed_s']:.0f} s of a {record['budget_s']:.0f} s budget.")
    return "\n".join(lines) + "\n"


def write_outputs(record: dict[str, Any], out: Path, runs: Path, started: float) -> None:
    record["elapsed_s"] = time.perf_counter() - started
    write_atomic(out / "results.json", json.dumps(record, indent=1, default=str))
    write_atomic(out / "table1.md", table_text(record))
    if runs.is_dir():
        write_atomic(out / "runs.tar.gz", pack_runs(runs))


# ---- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for table1.md, results.json, runs.tar.gz, benchmark.json")
    parser.add_argument("--work", default=None, help="run directories (default: OUT/../table1_runs or a temp dir)")
    parser.add_argument("--budget-s", type=float, default=505.0, help="the script's own deadline (seconds)")
    parser.add_argument("--bench-s", type=float, default=60.0, help="time for the throughput benchmark")
    parser.add_argument("--data-dir", default=os.environ.get("ROBUSTFAIR_DATA"))
    parser.add_argument("--dataset", default="cifar10_jpeg", help="(--smoke only) another registry dataset")
    parser.add_argument("--no-frl", action="store_true", help="skip the FRL fine-tune")
    parser.add_argument("--no-benchmark", action="store_true")
    parser.add_argument("--no-precision-gap", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="everything on the CPU in seconds (no measurement)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    deadline = started + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    if args.work:  # a fresh folder per call: run directories are never overwritten
        Path(args.work).mkdir(parents=True, exist_ok=True)
        runs = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=args.work))
    else:
        runs = Path(tempfile.mkdtemp(prefix="robustfair-table1-"))

    from benchmarks.common import machine_description

    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.smoke:
        print("CUDA not available: this script is for a GPU (use --smoke to check it on the CPU)")
        return 2
    machine = machine_description(device)
    commit_file = REPO / ".gpu_carry" / "commit.txt"
    machine["commit"] = (
        (commit_file.read_text().strip().splitlines() or [None])[0]
        if commit_file.is_file()
        else machine.get("git_commit")
    )
    record: dict[str, Any] = {
        "paper": PAPER,
        "smoke": args.smoke,
        "machine": machine,
        "budget_s": args.budget_s,
        "command": "python " + " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
        "runs": {},
        "skipped": {},
        "errors": {},
        "status": "running",
    }
    print(
        f"robustfair Table 1 (reduced schedule): device {device}, budget {args.budget_s:.0f} s, runs in {runs}",
        flush=True,
    )
    try:
        bench = None if args.no_benchmark else run_benchmark(args, out)
        if bench is not None:
            record["benchmark_targets"] = bench.get("targets", {})
        print("\n== sizing: one training step per method ==", flush=True)
        keys = tuple(s.key for s in CORE) + (() if args.no_frl else (FRL.key,))
        step_s = measure_steps(args, device, keys)
        train_images = 50000 if not args.smoke else 60
        est = estimates_from(
            step_s, bench, train_images=train_images, test_images=10000 if not args.smoke else 30, smoke=args.smoke
        )
        gap_s = 0.0 if args.no_precision_gap else 0.8 * est.pgd20_s
        plan = plan_schedule(
            est,
            deadline - time.perf_counter(),
            precision_gap_s=gap_s,
            e_min=1 if args.smoke else E_MIN,
            e_max=1 if args.smoke else E_MAX,
        )
        record["plan"] = {
            **dataclasses.asdict(plan),
            "label": plan.schedule_label(),
            "estimates": dataclasses.asdict(est),
        }
        print(f"\nplan: {plan.schedule_label()}; AutoAttack {plan.autoattack or 'none'}; {plan.reason}", flush=True)
        write_outputs(record, out, runs, started)

        for spec in CORE + (() if args.no_frl else (FRL,)):
            left = deadline - time.perf_counter()
            if spec.fine_tune_of is not None:
                if spec.fine_tune_of not in record["runs"]:
                    record["skipped"][spec.key] = f"its source run {spec.fine_tune_of} did not finish"
                    continue
                # FRL validates every epoch (PGD on 3,000 images) on top of its steps.
                need = plan.frl_epochs * (est.epoch_s(spec.key) + 0.3 * est.pgd20_s) + est.eval_s(plan.autoattack)
            else:
                need = est.run_s(spec.key, plan.epochs, plan.autoattack) + (gap_s if spec.key == "pgd_at" else 0)
            if need > left - 5:
                record["skipped"][spec.key] = f"needs about {need:.0f} s, {left:.0f} s left"
                print(f"\n{spec.label}: skipped (needs about {need:.0f} s, {left:.0f} s left)", flush=True)
                continue
            print(f"\n== {spec.label}: {spec.preset}, estimated {need:.0f} s of {left:.0f} s left ==", flush=True)
            try:
                entry = train_one(spec, plan, args, runs, record)
                entry["estimated_s"] = need
            except Exception as err:  # noqa: BLE001 - record, keep the finished runs, go on
                record["errors"][spec.key] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                traceback.print_exc()
            write_outputs(record, out, runs, started)
        record["status"] = "finished"
    except KeyboardInterrupt:
        record["status"] = "interrupted at the time limit; the runs listed finished"
        print("\ninterrupted: writing what finished", flush=True)
    write_outputs(record, out, runs, started)
    print("\n" + table_text(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
