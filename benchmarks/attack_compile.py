"""Early-stopped attacks on a GPU: compact vs masked, eager vs torch.compile / CUDA graphs.

Times BAT's boundary examples (`methods.bat.boundary_examples`: two early-stopped KL-PGD
trajectories, K = 10, eps 0.031, step 0.007, as in `BAT.loss`) on ResNet-18, batch 512,
with robustfair's CUDA defaults (bf16 autocast, channels_last, TF32, cudnn.benchmark),
variants interleaved round by round:

    compact_eager          the compact variant: the active batch shrinks each step (one
                           host synchronisation per step, a new shape every step)
    masked_eager           the masked variant (default on CUDA): fixed shapes, no sync
    masked_compile         masked, the model under torch.compile (mode "default")
    masked_compile_ro      masked, the model under torch.compile(mode="reduce-overhead"):
                           its forward and backward replayed as CUDA graphs
    masked_compile_step_ro masked, the model and `early_stop.masked_step` (the per-step
                           bookkeeping) both under reduce-overhead
    compact_compile        compact, the model under torch.compile: every new batch size is
                           a new shape (dynamic-shape recompilation)

Printed: milliseconds per call, ratio to masked_eager, warm-up (compilation) seconds, and
the share of samples whose flip step equals masked_eager's (compilation and bf16 change
rounding, so a few samples may flip one step apart). A variant that fails is reported and
skipped. Inputs are CIFAR-10 (JPEG) images with labels from the model's own predictions
(20% moved), so samples stop at spread-out steps as in training.

Without CUDA it prints "CUDA not available: skipped". `--smoke` runs the eager variants on
the CPU with tiny sizes (add --smoke-compile to also compile there; minutes).

    python benchmarks/attack_compile.py [--batch 512] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

import contextlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    build_benchmark_model,
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
from benchmarks.gpu_steps import acceleration  # noqa: E402
from robustfair.attacks import early_stop  # noqa: E402
from robustfair.engine.accelerator import autocast, backend_flags, prepare_inputs, prepare_model  # noqa: E402
from robustfair.methods.bat import boundary_examples  # noqa: E402

VARIANTS = (
    "compact_eager",
    "masked_eager",
    "masked_compile",
    "masked_compile_ro",
    "masked_compile_step_ro",
    "compact_compile",
)


@contextlib.contextmanager
def patched_step(step: Callable | None):
    """Replace `early_stop.masked_step` inside the block (the compiled-step variant)."""
    if step is None:
        yield
        return
    original = early_stop.masked_step
    early_stop.masked_step = step
    try:
        yield
    finally:
        early_stop.masked_step = original


def build_variant(
    name: str,
    base: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    acc,
    device: torch.device,
    outputs: dict[str, torch.Tensor],
) -> Callable[[], None]:
    variant = "compact" if name.startswith("compact") else "masked"
    mode = None
    if name.endswith("_compile"):
        mode = "default"
    elif name.endswith("_ro"):
        mode = "reduce-overhead"
    model = base if mode is None else torch.compile(base, mode=None if mode == "default" else mode)
    step = torch.compile(early_stop.masked_step, mode="reduce-overhead") if name == "masked_compile_step_ro" else None

    def call() -> None:
        with backend_flags(acc), autocast(device, acc.amp), early_stop.early_stop_variant(variant), patched_step(step):
            if mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            torch.manual_seed(0)
            examples = boundary_examples(model, x, y, eps=0.031, step_size=0.007, steps=10, tau=1, check_final=False)
            outputs[name] = examples.flip_step.clone()

    return call


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=5, warmup=1)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--smoke", action="store_true", help="eager variants on the CPU, tiny sizes (no measurement)")
    parser.add_argument("--smoke-compile", action="store_true", help="with --smoke: also the compiled variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; valid: {', '.join(VARIANTS)}")
    if args.smoke:
        device = torch.device("cpu")
        args.batch, args.repeats, args.warmup = 8, 1, 0
        if args.model == "resnet18":
            args.model = "small_cnn"
        if not args.smoke_compile:
            names = [n for n in names if n.endswith("_eager")]
        names = [n for n in names if not n.endswith("_ro")]  # CUDA graphs need CUDA
        acc = acceleration(device, amp=True, channels_last=True)
        print("SMOKE TEST on the CPU with tiny sizes: checks the code paths; the numbers are not measurements")
    elif not torch.cuda.is_available():
        print("CUDA not available: skipped")
        write_json(
            args.json_path,
            "attack_compile",
            machine_description(torch.device("cpu")),
            vars(args),
            {},
            {"skipped": "CUDA not available"},
        )
        return
    else:
        device = torch.device("cuda")
        acc = acceleration(device)
    machine = machine_description(device)
    print_machine(machine)
    base = prepare_model(build_benchmark_model(args.model, 32, seed=args.seed).to(device), acc).eval()
    x_u8, _, what = load_images(args.batch, 32, directory=args.data_dir, split="train", seed=args.seed)
    x = prepare_inputs(to_unit(x_u8).to(device), acc)
    y = realistic_labels(base, x, seed=args.seed)
    print(
        f"settings: {args.model}, batch {args.batch}, {what}; BAT boundary examples (two trajectories, K 10); "
        f"device settings {acc.to_dict()}",
        flush=True,
    )

    outputs: dict[str, torch.Tensor] = {}
    calls: dict[str, Callable[[], None]] = {}
    warmup_s: dict[str, float] = {}
    notes: dict[str, str] = {}
    for name in names:
        call = build_variant(name, base, x, y, acc, device, outputs)
        try:
            start = time.perf_counter()
            for _ in range(3):  # compilation, CUDA-graph recording, autotuning
                call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            warmup_s[name] = time.perf_counter() - start
            print(f"  {name}: warm-up (3 calls) {warmup_s[name]:.1f} s", flush=True)
        except Exception as err:  # noqa: BLE001 - report and carry on
            notes[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            print(f"  {name}: {notes[name]}", flush=True)
            continue
        calls[name] = call
    times = interleaved_times(calls, repeats=args.repeats, warmup=args.warmup, device=device)
    reference = "masked_eager" if "masked_eager" in times else next(iter(times))
    rows: list[list[Any]] = []
    measurements: dict[str, Any] = {
        "batch": args.batch,
        "model": args.model,
        "data": what,
        "smoke": args.smoke,
        "acceleration": acc.to_dict(),
        "variants": {},
        "notes": notes,
        "per_round": times.per_round(),
    }
    for name in times:
        ratio = median([t / r for t, r in zip(times[name], times[reference])])
        agree = float((outputs[name] == outputs[reference]).float().mean())
        rows.append([name, 1000 * median(times[name]), ratio, warmup_s[name], 100 * agree])
        measurements["variants"][name] = {
            "ms_per_call": 1000 * median(times[name]),
            "ratio": ratio,
            "warmup_s": warmup_s[name],
            "flip_steps_agree_percent": 100 * agree,
        }
    rows += [[n, "", "", "", notes[n]] for n in notes]
    print_table(
        f"BAT boundary examples, {args.model}, batch {args.batch} (ratio = time / {reference})",
        ["variant", "ms per call", f"ratio to {reference}", "warm-up s", f"flip steps = {reference} %"],
        rows,
        left=1,
    )
    if times:
        fastest = min(times, key=lambda n: median(times[n]))
        print(f"fastest: {fastest}")
        measurements["fastest"] = fastest
    write_json(
        args.json_path,
        "attack_compile",
        machine,
        vars(args),
        {f"{n}_over_{reference}": v["ratio"] for n, v in measurements["variants"].items()},
        measurements,
    )


if __name__ == "__main__":
    main()
