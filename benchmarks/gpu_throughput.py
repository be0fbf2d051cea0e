"""GPU throughput: PGD-10 AT, BAT and PGD-20 evaluation of ResNet-18 on one GPU, against targets.

CIFAR-10-sized inputs (3x32x32, 10 classes, CIFAR-10 (JPEG) images when found), ResNet-18,
the methods' default configs (PGD-AT: eps 8/255, step 2/255, K = 10). Sections (--sections):

train   training images/s of PGD-10 AT at batch 512, variants interleaved round by round:
        authors_style     the step as the authors' repositories write it (benchmarks/gpu_steps.py):
                          DataLoader + per-image transforms (--workers processes, pinned memory),
                          fp32 with PyTorch's default flags, eager
        library_fp32      robustfair's step with every device setting off (fp32, no TF32,
                          NCHW, for-loop SGD), robustfair's DeviceLoader
        library           robustfair's CUDA defaults (train.* = auto): bf16 autocast,
                          channels_last, TF32, cudnn.benchmark, fused SGD, masked early stop
        library_compile, library_compile_ro   the same under torch.compile (mode default /
                          reduce-overhead = CUDA graphs); skipped with --no-compile
        and the share of GPU kernel time in matmul/convolution kernels (torch.profiler).
        Targets: library >= 5,000 images/s; library >= 10x authors_style.
bat     BAT's step / PGD-AT's step (library defaults, batch 512), and BAT with the compact
        early stop (one host sync per attack step) for comparison. Target: <= 1.6.
eval    PGD-20 class-wise evaluation (`evaluate_classwise(attack="pgd20")`, batch 500) of
        the 10,000 test images in three precisions on the same model: fp32 without TF32,
        fp32 with TF32 (the default on CUDA: eval.amp false, train.tf32 auto), bf16 autocast
        (eval.amp true); seconds, clean and robust accuracy, and the gaps. --checkpoint
        evaluates a trained run's model (an untrained one makes the accuracies meaningless).
        Target: the default precision < 15 s.
epoch   one full epoch of CIFAR-10 (JPEG) (50,000 images, batch 128) with the library
        defaults, timed end to end (dataset load, model build, every step).

Timing: wall time with CUDA synchronisation (benchmarks/common.py), warm-up first (cuDNN
autotuning, compilation), medians of per-round ratios. Training steps run with lr 0 and
BatchNorm momentum 0 (all the work, the same problem every round); labels are each model's
own predictions with 20% moved (about 80% clean accuracy), so early-stopped attacks stop
at spread-out steps as in training. --budget-s skips sections that would not fit.

Without CUDA it prints "CUDA not available: skipped" (and writes {"skipped": ...} with
--json). `--smoke` runs every code path on the CPU with tiny sizes (device settings forced
on, so their code runs too); its numbers are not measurements and no target is judged.

    python benchmarks/gpu_throughput.py [--sections train,bat,eval,epoch] [--batch 512] [--no-compile]
        [--checkpoint RUN_OR_FILE] [--budget-s 600] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

import re  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    build_benchmark_model,
    data_dir,
    freeze_batchnorm_statistics,
    interleaved_times,
    load_images,
    machine_description,
    median,
    print_machine,
    print_table,
    realistic_labels,
    to_unit,
    write_json,
)
from benchmarks.gpu_steps import (  # noqa: E402
    acceleration,
    all_off,
    authors_style_pgd_at_step,
    dataloader_batches,
    device_batches,
    library_step,
    repeat,
    target_line,
)

SECTIONS = ("train", "bat", "eval", "epoch")
TARGET_IMAGES_PER_S = 5000.0
TARGET_OVER_AUTHORS = 10.0
TARGET_BAT_OVER_PGD_AT = 1.6
TARGET_EVAL_S = 15.0

# cuBLAS/cuDNN/CUTLASS/Triton-template names of GEMM and convolution kernels (device
# profiles), and the ATen operators that run them (CPU profiles in --smoke).
MATMUL_CONV_KERNEL = re.compile(
    r"gemm|conv|xmma|cutlass|wgrad|dgrad|fprop|winograd|implicit|cudnn|matmul|"
    r"mma|triton_tem",
    re.IGNORECASE,
)
MATMUL_CONV_OP = re.compile(
    r"^aten::(mkldnn_convolution|convolution_backward|_?convolution|mm|addmm|bmm|"
    r"matmul|linear|_slow_conv2d\w*|thnn_conv2d\w*)$"
)


class Clock:
    """Seconds left of --budget-s; sections ask before they start."""

    def __init__(self, budget_s: float):
        self.deadline = time.perf_counter() + budget_s

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def kernel_share(step: Callable[[], None], device: torch.device, steps: int) -> dict[str, Any]:
    """Share of profiled time in matmul/convolution: GPU kernel time on CUDA, ATen operator
    self time on the CPU; plus the ten most expensive entries."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    entries = []
    for event in prof.key_averages():
        if device.type == "cuda":
            if event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            seconds = event.self_device_time_total / 1e6
            matched = bool(MATMUL_CONV_KERNEL.search(event.key))
        else:
            seconds = event.self_cpu_time_total / 1e6
            matched = bool(MATMUL_CONV_OP.match(event.key))
        if seconds > 0:
            entries.append((event.key, seconds, matched))
    total = sum(s for _, s, _ in entries)
    matmul_conv = sum(s for _, s, m in entries if m)
    top = sorted(entries, key=lambda e: -e[1])[:10]
    return {
        "share": matmul_conv / total if total else float("nan"),
        "profiled_s": total,
        "top": [{"name": k[:120], "s": s, "matmul_conv": m} for k, s, m in top],
    }


class Workload:
    """The model and data every section shares: a ResNet-18 (BatchNorm momentum 0) and
    training images labelled by the model's own predictions with 20% moved."""

    def __init__(self, args, device: torch.device):
        self.args, self.device = args, device
        self.base = freeze_batchnorm_statistics(build_benchmark_model(args.model, 32, seed=args.seed)).to(device)
        x_u8, _, self.what = load_images(args.train_images, 32, directory=args.data_dir, split="train", seed=args.seed)
        labels = torch.cat(
            [
                realistic_labels(self.base, to_unit(chunk.to(device)), seed=args.seed + i)
                for i, chunk in enumerate(x_u8.split(1000))
            ]
        )
        self.x_u8, self.labels = x_u8.numpy(), labels.cpu().numpy()

    def batches(self, batch: int):
        return device_batches(self.x_u8, self.labels, batch, self.device, seed=self.args.seed)


def library_default(args, device: torch.device):
    """robustfair's defaults on this device; in --smoke, forced on so their code paths run."""
    if args.smoke:
        return acceleration(device, amp=True, channels_last=True, early_stop_attack="masked")
    return acceleration(device)


def section_train(args, device: torch.device, work: Workload, clock: Clock) -> dict[str, Any]:
    batch, steps = args.batch, args.steps
    lib = library_default(args, device)
    wanted = [v for v in args.train_variants.split(",") if v]
    builders: dict[str, Callable[[], Callable[[], None]]] = {
        "authors_style": lambda: authors_style_pgd_at_step(
            work.base, dataloader_batches(work.x_u8, work.labels, batch, device, args.workers), device
        ),
        "library_fp32": lambda: library_step("pgd_at", work.base, work.batches(batch), all_off(device), device),
        "library": lambda: library_step("pgd_at", work.base, work.batches(batch), lib, device),
    }
    variants = {name: builders[name]() for name in builders if name in wanted}
    notes: dict[str, str] = {}
    if not args.no_compile:
        for name, mode in (("library_compile", "default"), ("library_compile_ro", "reduce-overhead")):
            if name not in wanted:
                continue
            if clock.left() < args.compile_budget_s:
                notes[name] = f"skipped: under {args.compile_budget_s:.0f} s of the budget left"
                continue
            variants[name] = library_step("pgd_at", work.base, work.batches(batch), lib, device, compile_mode=mode)
    runnable: dict[str, Callable[[], None]] = {}
    for name, step in variants.items():
        try:
            start = time.perf_counter()
            step()  # first call: compiles, autotunes, starts the DataLoader workers
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            print(f"  {name}: first two steps {time.perf_counter() - start:.1f} s (warm-up, compilation)", flush=True)
        except Exception as err:  # noqa: BLE001 - report and carry on with the other variants
            notes[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            print(f"  {name}: {notes[name]}", flush=True)
            continue
        runnable[name] = step
    if not runnable:
        return {"notes": notes, "targets": {}}
    times = interleaved_times(
        {n: repeat(s, steps) for n, s in runnable.items()}, repeats=args.repeats, warmup=args.warmup, device=device
    )
    images = batch * steps
    throughput = {n: images / median(t) for n, t in times.items()}

    def over(reference: str) -> dict[str, float]:
        if reference not in times:
            return {}
        return {n: median([r / t for r, t in zip(times[reference], times[n])]) for n in times}

    over_fp32, over_authors = over("library_fp32"), over("authors_style")
    profiles = {}
    if args.profile_steps and clock.left() > 20:
        for name in ("library_fp32", "library"):
            if name in runnable:
                profiles[name] = kernel_share(runnable[name], device, args.profile_steps)
    rows = [
        [n, throughput[n], over_authors.get(n, ""), over_fp32.get(n, ""), profiles[n]["share"] if n in profiles else ""]
        for n in throughput
    ]
    rows += [[n, "", "", "", notes[n]] for n in notes]
    share_what = "GPU kernel time" if device.type == "cuda" else "CPU operator time"
    print_table(
        f"PGD-10 AT training throughput, {args.model}, batch {batch}, {steps} steps per timed call",
        ["variant", "images/s", "x authors_style", "x library_fp32", f"matmul/conv share of {share_what}"],
        rows,
        left=1,
    )
    judged = not args.smoke
    targets = {}
    if "library" in throughput:
        targets["library_images_per_s"] = target_line(
            f"PGD-10 AT {args.model} batch {batch}, robustfair defaults, images/s",
            throughput["library"],
            at_least=TARGET_IMAGES_PER_S,
            judged=judged,
        )
    if "library" in over_authors:
        targets["library_over_authors_style"] = target_line(
            "robustfair defaults / authors'-style step (fp32, eager, DataLoader), images/s ratio",
            over_authors["library"],
            at_least=TARGET_OVER_AUTHORS,
            judged=judged,
        )
    return {
        "images_per_s": throughput,
        "over_authors_style": over_authors,
        "over_library_fp32": over_fp32,
        "settings": {"library": lib.to_dict(), "library_fp32": all_off(device).to_dict()},
        "profiles": profiles,
        "notes": notes,
        "per_round": times.per_round(),
        "targets": targets,
    }


def section_bat(args, device: torch.device, work: Workload, clock: Clock) -> dict[str, Any]:
    batch, steps = args.batch, max(1, args.steps // 2)
    lib = library_default(args, device)
    compact = acceleration(device, **{**_switches(lib), "early_stop_attack": "compact"})
    fns = {
        "pgd_at": library_step("pgd_at", work.base, work.batches(batch), lib, device),
        "bat": library_step("bat", work.base, work.batches(batch), lib, device),
        "bat_compact": library_step("bat", work.base, work.batches(batch), compact, device),
    }
    for step in fns.values():
        step()
    times = interleaved_times(
        {n: repeat(s, steps) for n, s in fns.items()}, repeats=args.repeats, warmup=args.warmup, device=device
    )
    ratio = {n: median([t / p for t, p in zip(times[n], times["pgd_at"])]) for n in times}
    rows = [[n, batch * steps / median(times[n]), ratio[n]] for n in times]
    print_table(
        f"BAT against PGD-AT, robustfair defaults, {args.model}, batch {batch} (ratio = step time / PGD-AT's)",
        ["step", "images/s", "ratio to PGD-AT"],
        rows,
        left=1,
    )
    target = target_line(
        "BAT step / PGD-AT step (robustfair defaults)",
        ratio["bat"],
        at_most=TARGET_BAT_OVER_PGD_AT,
        judged=not args.smoke,
    )
    return {
        "step_over_pgd_at": ratio,
        "images_per_s": {n: batch * steps / median(times[n]) for n in times},
        "per_round": times.per_round(),
        "targets": {"bat_over_pgd_at": target},
    }


def _switches(acc) -> dict[str, Any]:
    return {
        "amp": acc.amp,
        "channels_last": acc.channels_last,
        "tf32": acc.tf32,
        "cudnn_benchmark": acc.cudnn_benchmark,
        "optimizer_impl": acc.optimizer_impl,
        "early_stop_attack": acc.early_stop_attack,
    }


def eval_model(args, device: torch.device) -> tuple[torch.nn.Module, str]:
    """The model the eval section attacks: a trained run's (--checkpoint) or an untrained one."""
    model = build_benchmark_model(args.model, 32, seed=args.seed)
    what = f"untrained {args.model} (accuracies meaningless; timing only)"
    if args.checkpoint:
        from robustfair.engine.checkpoint import load_checkpoint, resolve_checkpoint

        path = resolve_checkpoint(args.checkpoint, "last")
        model.load_state_dict(load_checkpoint(path, map_location="cpu")["model"])
        what = f"trained model {path}"
    return model.to(device).eval(), what


def precision_runs(
    model, x: torch.Tensor, y: torch.Tensor, device: torch.device, *, batch: int, seed: int, clock: Clock | None = None
) -> dict[str, dict[str, float]]:
    """PGD-20 class-wise evaluation of (x, y) in three precisions: seconds and accuracies.

    The default precision (fp32 with TF32) first, then bf16, then fp32 without TF32; a
    later one is skipped when `clock` has less time left than three times the first took."""
    from robustfair.engine.accelerator import autocast
    from robustfair.metrics import evaluate_classwise

    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(y), batch)]
    out: dict[str, dict[str, float]] = {}
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for name, tf32, amp in (("fp32", True, False), ("bf16", True, True), ("fp32_no_tf32", False, False)):
            if out and clock is not None and clock.left() < 3 * out["fp32"]["seconds"]:
                print(f"  {name}: skipped ({clock.left():.0f} s of the budget left)", flush=True)
                continue
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            with autocast(device, amp):
                if device.type == "cuda":  # warm-up: cuDNN autotuning, allocator
                    evaluate_classwise(model, batches[:1], attack="pgd20", num_classes=10, device=device)
                    torch.cuda.synchronize(device)
                torch.manual_seed(seed)
                start = time.perf_counter()
                result = evaluate_classwise(model, batches, attack="pgd20", num_classes=10, device=device)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            out[name] = {
                "seconds": time.perf_counter() - start,
                "images": len(y),
                "clean_acc": 100 * (1 - result.average_clean_err),
                "robust_acc": 100 * (1 - result.average_robust_err),
                "worst_class_robust_acc": 100 - result.summary()["worst_rob_err"],
            }
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return out


def section_eval(args, device: torch.device, clock: Clock) -> dict[str, Any]:
    model, what = eval_model(args, device)
    x_u8, labels, data_what = load_images(args.eval_images, 32, directory=args.data_dir, split="test", seed=args.seed)
    x, y = to_unit(x_u8).to(device), labels.to(device)
    runs = precision_runs(model, x, y, device, batch=args.eval_batch, seed=args.seed, clock=clock)
    rows = [
        [
            n,
            r["seconds"],
            r["images"] / r["seconds"],
            r["clean_acc"],
            r["robust_acc"],
            r["robust_acc"] - runs["fp32"]["robust_acc"],
        ]
        for n, r in runs.items()
    ]
    print(f"\nmodel: {what}; data: {len(y)} {data_what}")
    print_table(
        "PGD-20 class-wise evaluation (evaluate_classwise, eps 8/255, step 2/255) in three precisions",
        ["precision", "seconds", "images/s", "clean acc %", "robust acc %", "robust - fp32 (points)"],
        rows,
        left=1,
    )
    scale = 10000 / len(y)
    target = target_line(
        f"PGD-20 class-wise evaluation of 10,000 images, default precision (fp32 with TF32)"
        f"{'' if scale == 1 else f', scaled from {len(y)} images'}, seconds",
        runs["fp32"]["seconds"] * scale,
        below=TARGET_EVAL_S,
        judged=not args.smoke,
    )
    gap = {}
    if "bf16" in runs:
        gap["robust_gap_bf16_minus_fp32"] = runs["bf16"]["robust_acc"] - runs["fp32"]["robust_acc"]
    if "fp32_no_tf32" in runs:
        gap["robust_gap_fp32_minus_no_tf32"] = runs["fp32"]["robust_acc"] - runs["fp32_no_tf32"]["robust_acc"]
    return {"model": what, "data": data_what, "precisions": runs, **gap, "targets": {"eval_10k_s": target}}


def section_epoch(args, device: torch.device) -> dict[str, Any]:
    """One epoch of CIFAR-10 (JPEG) with the library defaults, timed from before the dataset load."""
    from robustfair.data import DeviceLoader, load_dataset
    from robustfair.engine.accelerator import autocast, backend_flags, build_sgd, prepare_inputs, prepare_model
    from robustfair.methods import METHODS

    root = data_dir(args.data_dir)
    if not (root / "cifar10_jpeg.npz").is_file():
        return {"skipped": f"cifar10_jpeg.npz not found in {root}"}
    lib = library_default(args, device)
    start = time.perf_counter()
    train = load_dataset("cifar10_jpeg", root=root).train
    if args.smoke:
        train = train.subset(list(range(8)))
    loaded = time.perf_counter()
    loader = DeviceLoader(train, 128, shuffle=True, augment="crop_flip", device=device, seed=args.seed)
    model = prepare_model(build_benchmark_model(args.model, 32, seed=args.seed).to(device), lib)
    optimizer = build_sgd(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False, implementation=lib.optimizer_impl
    )
    method = METHODS["pgd_at"](METHODS["pgd_at"].Config(), num_classes=10)
    steps = 0
    with backend_flags(lib):
        model.train()
        for x, y in loader:
            with autocast(device, lib.amp):
                loss = method.loss(model, prepare_inputs(x, lib), y).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    print(
        f"\nfull epoch of CIFAR-10 (JPEG), {len(train)} images, {steps} steps of batch 128, robustfair defaults: "
        f"{end - start:.1f} s end to end (dataset load {loaded - start:.1f} s), "
        f"{len(train) / (end - start):.0f} images/s"
    )
    return {
        "images": len(train),
        "steps": steps,
        "end_to_end_s": end - start,
        "data_load_s": loaded - start,
        "images_per_s_end_to_end": len(train) / (end - start),
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=3, warmup=1)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--model", default="resnet18", help="registry model (default resnet18; --smoke: small_cnn)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed call (default 10)")
    parser.add_argument("--train-images", type=int, default=10240, help="training images the loaders cycle over")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the authors'-style step")
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument(
        "--train-variants",
        default="authors_style,library_fp32,library,library_compile,library_compile_ro",
        help="train section variants (comma list)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument(
        "--compile-budget-s",
        type=float,
        default=150.0,
        help="start a compiled variant only with this much of the budget left",
    )
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--eval-batch", type=int, default=500)
    parser.add_argument("--checkpoint", default=None, help="run directory or checkpoint for the eval section")
    parser.add_argument("--budget-s", type=float, default=900.0, help="skip sections once this much time is spent")
    parser.add_argument(
        "--smoke", action="store_true", help="run every code path on the CPU with tiny sizes (not a measurement)"
    )
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"--sections: unknown {unknown}; valid: {', '.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clock = Clock(args.budget_s)

    if args.smoke:
        device = torch.device("cpu")
        args.batch, args.steps, args.repeats, args.warmup, args.profile_steps = 4, 1, 1, 0, 1
        args.train_images, args.eval_images, args.eval_batch, args.workers = 16, 4, 4, 0
        if args.model == "resnet18":
            args.model = "small_cnn"  # seconds instead of minutes on a CPU
        args.no_compile = True  # compiling on the CPU takes minutes; the GPU run exercises it
        print("SMOKE TEST on the CPU with tiny sizes: checks the code paths; the numbers are not measurements")
    elif not torch.cuda.is_available():
        print("CUDA not available: skipped")
        write_json(
            args.json_path,
            "gpu_throughput",
            machine_description(torch.device("cpu")),
            vars(args),
            {},
            {"skipped": "CUDA not available"},
        )
        return
    else:
        device = torch.device("cuda")
    machine = machine_description(device)
    print_machine(machine)
    print(
        f"settings: {args.model}, 3x32x32, batch {args.batch}, {args.steps} steps per timed call, {args.warmup} "
        f"warm-up + {args.repeats} timed rounds, variants interleaved; sections {','.join(sections)}; "
        f"budget {args.budget_s:.0f} s",
        flush=True,
    )

    measurements: dict[str, Any] = {"smoke": args.smoke}
    work = Workload(args, device) if {"train", "bat"} & set(sections) else None
    if work is not None:
        print(f"data: {work.what}")
    minimum = {"train": 30, "bat": 15, "eval": 15, "epoch": 30}
    for section in sections:
        if clock.left() < minimum[section]:
            measurements[section] = {"skipped": f"{clock.left():.0f} s of the budget left"}
            print(f"\n{section}: skipped ({clock.left():.0f} s of the budget left)", flush=True)
            continue
        print(f"\n== {section} ==", flush=True)
        started = time.perf_counter()
        if section == "train":
            measurements[section] = section_train(args, device, work, clock)
        elif section == "bat":
            measurements[section] = section_bat(args, device, work, clock)
        elif section == "eval":
            measurements[section] = section_eval(args, device, clock)
        else:
            measurements[section] = section_epoch(args, device)
        measurements[section]["section_s"] = time.perf_counter() - started

    ratios: dict[str, float] = {}
    targets: dict[str, Any] = {}
    for found in measurements.values():
        if isinstance(found, dict):
            targets.update(found.get("targets", {}))
    if "images_per_s" in measurements.get("train", {}):
        train = measurements["train"]
        ratios.update({f"{n}_over_authors_style": v for n, v in train["over_authors_style"].items()})
        ratios.update({f"{n}_images_per_s": v for n, v in train["images_per_s"].items()})
    if "step_over_pgd_at" in measurements.get("bat", {}):
        ratios.update({f"{n}_over_pgd_at": v for n, v in measurements["bat"]["step_over_pgd_at"].items()})
    if "robust_gap_bf16_minus_fp32" in measurements.get("eval", {}):
        ratios["eval_robust_gap_bf16_minus_fp32_points"] = measurements["eval"]["robust_gap_bf16_minus_fp32"]
    if targets:
        print("\ntargets:")
        for found in targets.values():
            verdict = {True: "PASS", False: "FAIL", None: "not judged (smoke)"}[found["met"]]
            print(f"  {found['target']}: {verdict} ({found['value']:,.3f})")
    write_json(
        args.json_path, "gpu_throughput", machine, vars(args), ratios, measurements, {k: v for k, v in targets.items()}
    )


if __name__ == "__main__":
    main()
