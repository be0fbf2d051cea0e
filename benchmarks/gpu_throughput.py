"""GPU throughput: PGD-10 adversarial training of ResNet-18 with bf16, channels_last, compile.

On a CUDA device, for CIFAR-10-sized inputs (3x32x32, 10 classes), ResNet-18 and PGD-AT
(`METHODS["pgd_at"]`: eps 8/255, step 2/255, K = 10; SGD lr 0.1, momentum 0.9, wd 5e-4):

1. training throughput (images/s) of each variant, interleaved round by round:
   fp32        eager, TF32 off (the plain fp32 reference)
   tf32        eager, TF32 matmuls and convolutions allowed
   bf16_cl     bf16 autocast + channels_last, eager
   bf16_cl_compile   the same under torch.compile (skipped with --no-compile or if it fails)
   each reported as a ratio to fp32 on the same card;
2. the share of GPU kernel time spent in matmul/convolution kernels (torch.profiler, a few
   steps of fp32 and of the fastest variant);
3. one full epoch of CIFAR-10 (JPEG) (`cifar10_jpeg.npz`, 50,000 images, batch 128,
   `DeviceLoader` with crop/flip on the GPU) with the fastest variant, timed end to end:
   dataset load, model build, compilation and all steps.

Without CUDA it prints "CUDA not available: skipped" (and writes {"skipped": true} with
--json). `--smoke` runs every code path on the CPU with tiny sizes to check the script;
its numbers are not measurements.

    python benchmarks/gpu_throughput.py [--batch 128] [--steps 20] [--no-compile] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

import contextlib  # noqa: E402
import copy  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import (base_parser, build_benchmark_model, data_dir, interleaved_times,  # noqa: E402
                               load_images, machine_description, median, print_machine, print_table,
                               realistic_labels, to_unit, write_json)
from robustfair.methods import METHODS  # noqa: E402

# cuBLAS/cuDNN/CUTLASS/Triton-template names of GEMM and convolution kernels (device
# profiles), and the ATen operators that run them (CPU profiles in --smoke).
MATMUL_CONV_KERNEL = re.compile(r"gemm|conv|xmma|cutlass|wgrad|dgrad|fprop|winograd|implicit|cudnn|matmul|"
                                r"mma|triton_tem", re.IGNORECASE)
MATMUL_CONV_OP = re.compile(r"^aten::(mkldnn_convolution|convolution_backward|_?convolution|mm|addmm|bmm|"
                            r"matmul|linear|_slow_conv2d\w*|thnn_conv2d\w*)$")


class Variant:
    """One way of running the same training step: precision, memory format, compilation."""

    def __init__(self, name: str, *, autocast: bool, channels_last: bool, compile: bool, tf32: bool):
        self.name, self.autocast, self.channels_last = name, autocast, channels_last
        self.compile, self.tf32 = compile, tf32

    def build_step(self, base: nn.Module, device: torch.device, x: torch.Tensor, y: torch.Tensor
                   ) -> Callable[[], None]:
        """A closure running one full training step (attack, loss, backward, SGD step)."""
        model = copy.deepcopy(base).to(device)
        inputs = x
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = x.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        runner = torch.compile(model) if self.compile else model
        method = METHODS["pgd_at"](METHODS["pgd_at"].Config(), num_classes=10)

        def step() -> None:
            self.apply_precision_flags()
            model.train()
            with self.autocast_context(device):
                loss = method.loss(runner, inputs, y).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    def autocast_context(self, device: torch.device):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def apply_precision_flags(self) -> None:
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32


VARIANTS = [
    Variant("fp32", autocast=False, channels_last=False, compile=False, tf32=False),
    Variant("tf32", autocast=False, channels_last=False, compile=False, tf32=True),
    Variant("bf16_cl", autocast=True, channels_last=True, compile=False, tf32=True),
    Variant("bf16_cl_compile", autocast=True, channels_last=True, compile=True, tf32=True),
]


def repeat(step: Callable[[], None], times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            step()
    return run


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
    return {"share": matmul_conv / total if total else float("nan"), "profiled_s": total,
            "top": [{"name": k[:120], "s": s, "matmul_conv": m} for k, s, m in top]}


def full_epoch(variant: Variant, args, device: torch.device) -> dict[str, Any]:
    """One epoch of CIFAR-10 (JPEG) with `variant`, timed from before the dataset load."""
    from robustfair.data import DeviceLoader, load_dataset

    root = data_dir(args.data_dir)
    if not (root / "cifar10_jpeg.npz").is_file():
        return {"skipped": f"cifar10_jpeg.npz not found in {root}"}
    start = time.perf_counter()
    train = load_dataset("cifar10_jpeg", root=root).train
    if args.smoke:
        train = train.subset(list(range(args.batch * 2)))
    loaded = time.perf_counter()
    loader = DeviceLoader(train, args.batch, shuffle=True, augment="crop_flip", device=device, seed=args.seed)
    model = build_benchmark_model("resnet18", 32, seed=args.seed).to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if variant.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    method = METHODS["pgd_at"](METHODS["pgd_at"].Config(), num_classes=10)
    variant.apply_precision_flags()
    model.train()
    steps = 0
    for x, y in loader:
        if variant.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with variant.autocast_context(device):
            loss = method.loss(runner, x, y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.perf_counter()
    return {"variant": variant.name, "images": len(train), "steps": steps, "end_to_end_s": end - start,
            "data_load_s": loaded - start, "images_per_s_end_to_end": len(train) / (end - start)}


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=3, warmup=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed call (default 20)")
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--no-epoch", action="store_true", help="skip the full-epoch timing")
    parser.add_argument("--smoke", action="store_true",
                        help="run every code path on the CPU with tiny sizes (not a measurement)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.smoke:
        device = torch.device("cpu")
        args.batch, args.steps, args.repeats, args.profile_steps = 4, 1, 1, 1
        args.no_compile = True  # compiling on the CPU is slow; the GPU run exercises it
        print("SMOKE TEST on the CPU with tiny sizes: checks the code paths; the numbers are not measurements")
    elif not torch.cuda.is_available():
        print("CUDA not available: skipped")
        write_json(args.json_path, "gpu_throughput", machine_description(torch.device("cpu")), vars(args),
                   {}, {"skipped": "CUDA not available"})
        return
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
    machine = machine_description(device)
    print_machine(machine)
    print(f"settings: resnet18, batch {args.batch}, 3x32x32, PGD-AT (K 10); {args.steps} steps per timed call; "
          f"{args.warmup} warm-up + {args.repeats} timed rounds, variants interleaved")

    base = build_benchmark_model("resnet18", 32, seed=args.seed)
    x_u8, _, what = load_images(args.batch, 32, directory=args.data_dir, split="train", seed=args.seed)
    x = to_unit(x_u8).to(device)
    y = realistic_labels(base.to(device), x, seed=args.seed)
    print(f"data: {what}")

    variants = [v for v in VARIANTS if not (v.compile and args.no_compile)]
    steps: dict[str, Callable[[], None]] = {}
    notes: dict[str, str] = {}
    for variant in variants:
        step = variant.build_step(base, device, x, y)
        try:
            step()  # compiles the compiled variant; fails early if a variant cannot run here
        except Exception as err:  # noqa: BLE001 - report and carry on with the other variants
            notes[variant.name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
            print(f"  {variant.name}: {notes[variant.name]}")
            continue
        steps[variant.name] = step
    times = interleaved_times({n: repeat(s, args.steps) for n, s in steps.items()}, repeats=args.repeats,
                              warmup=args.warmup, device=device)
    images = args.batch * args.steps
    throughput = {n: images / median(t) for n, t in times.items()}
    speedup = {n: median([f / t for f, t in zip(times["fp32"], times[n])]) for n in times}
    fastest = max(throughput, key=throughput.get)

    profiles = {}
    for name in dict.fromkeys(["fp32", fastest]):
        profiles[name] = kernel_share(steps[name], device, args.profile_steps)
    rows = [[n, throughput[n], speedup[n], profiles[n]["share"] if n in profiles else ""] for n in throughput]
    rows += [[n, "", "", notes[n]] for n in notes]
    share_what = "GPU kernel time" if device.type == "cuda" else "CPU operator time"
    print_table(f"PGD-10 AT training throughput, resnet18, batch {args.batch} (ratio = / fp32 eager, TF32 off)",
                ["variant", "images/s", "ratio to fp32", f"matmul/conv share of {share_what}"], rows, left=1)

    epoch = None
    if not args.no_epoch:
        fastest_variant = next(v for v in variants if v.name == fastest)
        epoch = full_epoch(fastest_variant, args, device)
        if "skipped" in epoch:
            print(f"\nfull epoch: skipped ({epoch['skipped']})")
        else:
            print(f"\nfull epoch of CIFAR-10 (JPEG), {epoch['images']} images, {epoch['steps']} steps, variant "
                  f"{epoch['variant']}: {epoch['end_to_end_s']:.1f} s end to end (dataset load "
                  f"{epoch['data_load_s']:.1f} s), {epoch['images_per_s_end_to_end']:.0f} images/s")

    ratios = {f"{n}_over_fp32_images_per_s": speedup[n] for n in speedup}
    ratios.update({f"{n}_matmul_conv_share": p["share"] for n, p in profiles.items()})
    write_json(args.json_path, "gpu_throughput", machine, vars(args), ratios,
               {"images_per_s": throughput, "profiles": profiles, "failed_variants": notes,
                "full_epoch": epoch, "smoke": args.smoke})


if __name__ == "__main__":
    main()
