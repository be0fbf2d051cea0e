"""Memory: peak memory of one training step of each registered method.

A step is `METHODS[name].loss(model, x, y)` (default config) + backward + SGD step, on a
fresh copy of the same model and batch. Each method runs one warm-up step (optimizer
state, kernel caches), then the measured step:

- CUDA: `torch.cuda.max_memory_allocated()` during the step minus the memory allocated
  before it (tensors only, allocator cache excluded);
- CPU: peak resident set size (VmHWM, reset through /proc/self/clear_refs) during the
  step minus the RSS before it. The measuring process runs with glibc's
  MALLOC_MMAP_THRESHOLD_=65536, so freed large buffers go back to the OS and RSS follows
  live memory instead of the allocator's cache.

Printed: MiB per method and the ratio to the plain training step (`erm`).

    python benchmarks/memory.py [--model small_cnn] [--batch 64] [--image-size 32] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

import argparse  # noqa: E402
import copy  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    build_benchmark_model,
    load_images,
    print_table,
    realistic_labels,
    setup,
    to_unit,
    write_json,
)
from robustfair.methods import METHODS  # noqa: E402

MIB = 2**20
CHILD_FLAG = "--measure-in-this-process"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def method_names() -> list[str]:
    names = sorted(METHODS)
    return ["erm"] + [n for n in names if n != "erm"]


def measure_all(args, device: torch.device) -> dict[str, Any]:
    """{method: peak MiB of its step above the memory before it}, plus how it was measured."""
    base = build_benchmark_model(args.model, args.image_size, seed=args.seed).to(device)
    x_u8, _, what = load_images(args.batch, args.image_size, directory=args.data_dir, seed=args.seed)
    x = to_unit(x_u8).to(device)
    y = realistic_labels(base, x, seed=args.seed)
    peaks: dict[str, float] = {}
    seconds: dict[str, float] = {}
    how = "cuda max_memory_allocated" if device.type == "cuda" else "RSS (VmHWM - VmRSS)"
    for name in method_names():
        model = copy.deepcopy(base)
        method = METHODS[name](METHODS[name].Config(), num_classes=10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, method=method, optimizer=optimizer) -> None:
            model.train()
            loss = method.loss(model, x, y).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up: momentum buffers, kernel caches
        gc.collect()
        start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            step()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
        else:
            before = _status_kib("VmRSS") * 1024
            if not _reset_peak_rss():
                raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs); run on Linux")
            step()
            peak = _status_kib("VmHWM") * 1024 - before
        seconds[name] = time.perf_counter() - start
        peaks[name] = peak / MIB
        print(f"  {name}: {peaks[name]:.1f} MiB ({seconds[name]:.1f} s)", flush=True)
        del model, method, optimizer, step
    return {"peak_mib": peaks, "step_s": seconds, "how": how, "data": what}


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=1, warmup=1)
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument(CHILD_FLAG, dest="child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # the measuring process: print the figures as one JSON line
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        print("RESULT " + json.dumps(measure_all(args, torch.device(args.device))), flush=True)
        return

    device, machine = setup(args)
    print(
        f"settings: {args.model}, batch {args.batch}, {args.image_size}x{args.image_size}; every method's "
        f"default config; one warm-up step, then the measured step; measured in a child process "
        f"with MALLOC_MMAP_THRESHOLD_=65536",
        flush=True,
    )
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG] + _without_json(sys.argv[1:])
    child = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = child.stdout.splitlines()
    for line in lines:
        if not line.startswith("RESULT "):
            print(line)
    results = [line for line in lines if line.startswith("RESULT ")]
    if child.returncode != 0 or not results:
        sys.stderr.write(child.stderr)
        raise SystemExit(f"measuring process failed with exit code {child.returncode}")
    figures = json.loads(results[-1][len("RESULT ") :])
    peaks = figures["peak_mib"]
    plain = peaks["erm"]
    rows = [[name, peaks[name], peaks[name] / plain, figures["step_s"][name]] for name in peaks]
    print_table(
        f"Peak memory of one training step ({figures['how']}; ratio = / plain training step 'erm')",
        ["method", "peak MiB", "ratio to erm", "step s"],
        rows,
        left=1,
    )
    ratios = {f"{name}.peak_over_erm": peaks[name] / plain for name in peaks}
    write_json(
        args.json_path,
        "memory",
        machine,
        vars(args),
        ratios,
        {
            "peak_mib": peaks,
            "step_s": figures["step_s"],
            "measured_as": figures["how"],
            "data": figures["data"],
            "model": args.model,
            "batch": args.batch,
            "image_size": args.image_size,
        },
    )


def _without_json(command: list[str]) -> list[str]:
    """The command line minus `--json PATH` / `--json=PATH` (the parent writes the JSON)."""
    out, skip = [], False
    for item in command:
        if skip:
            skip = False
            continue
        if item == "--json":
            skip = True
            continue
        if item.startswith("--json="):
            continue
        out.append(item)
    return out


if __name__ == "__main__":
    main()
