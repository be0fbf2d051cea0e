"""Evaluation throughput: PGD-20 class-wise evaluation against a textbook PGD loop.

Both evaluate the same batches with PGD-20 (L-inf eps 8/255, step 2/255, uniform start,
CE) and produce per-class counts (clean and adversarial confusion matrices, robust-correct
counts). robustfair: `robustfair.metrics.evaluate_classwise(model, batches, attack="pgd20")`.
Textbook (below): the loop of most tutorials - mean CE, `model.zero_grad()` and
`loss.backward()` each step (so parameter gradients are computed too), sign step,
projection, and a Python loop over samples for the counts.

The same seed gives both the same uniform starts; with a power-of-two batch the mean and
the summed CE have gradients of the same sign (an exact power-of-two scale), so the
per-class numbers must be identical, which the table states.

Printed: images per second of each and the ratio library / textbook (target >= 1).

    python benchmarks/eval_throughput.py [--configs small_cnn:128:64:32,preact_resnet18:32:32:16] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

from collections.abc import Iterable  # noqa: E402
from typing import Any

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import (  # noqa: E402
    NUM_CLASSES,
    base_parser,
    build_benchmark_model,
    interleaved_times,
    load_images,
    median,
    paired_ratio,
    print_table,
    realistic_labels,
    setup,
    to_unit,
    wall_ratio,
    write_json,
)
from robustfair.metrics import evaluate_classwise  # noqa: E402

DEFAULT_CONFIGS = "small_cnn:128:64:32,preact_resnet18:32:32:16"
TARGET = 1.0


def textbook_pgd_classwise(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    eps: float = 8 / 255,
    step_size: float = 2 / 255,
    steps: int = 20,
    num_classes: int = NUM_CLASSES,
) -> dict[str, np.ndarray]:
    """Per-class counts under PGD the textbook way.

    Returns {"clean_confusion": int [C, C], "adversarial_confusion": int [C, C],
    "robust_correct": int [C]} (rows = true class), as `ClasswiseResult` holds them.
    """
    clean_confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    adversarial_confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    robust_correct = np.zeros(num_classes, dtype=np.int64)
    model.eval()
    for x, y in batches:
        with torch.no_grad():
            clean_pred = model(x).argmax(1)
        x_adv = x + (2 * torch.rand(x.shape, device=x.device, dtype=x.dtype) - 1) * eps
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            model.zero_grad()
            loss.backward()
            x_adv = x_adv.detach() + step_size * x_adv.grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
        with torch.no_grad():
            adv_pred = model(x_adv).argmax(1)
        for label, clean, adversarial in zip(y.tolist(), clean_pred.tolist(), adv_pred.tolist()):
            clean_confusion[label, clean] += 1
            adversarial_confusion[label, adversarial] += 1
            robust_correct[label] += int(clean == label and adversarial == label)
    return {
        "clean_confusion": clean_confusion,
        "adversarial_confusion": adversarial_confusion,
        "robust_correct": robust_correct,
    }


def same_counts(result, counts: dict[str, np.ndarray]) -> bool:
    """Whether a `ClasswiseResult` holds exactly the textbook loop's counts."""
    return all(np.array_equal(getattr(result, key), value) for key, value in counts.items())


def measure_model(
    name: str, images: int, batch: int, image_size: int, args, device: torch.device
) -> tuple[list[list[Any]], dict[str, float], dict[str, Any]]:
    model = build_benchmark_model(name, image_size, seed=args.seed).to(device).eval()
    x_u8, _, what = load_images(images, image_size, directory=args.data_dir, seed=args.seed)
    x = to_unit(x_u8).to(device)
    y = realistic_labels(model, x, seed=args.seed)
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, images, batch)]
    print(f"\n{name}: {images} images in batches of {batch}, {image_size}x{image_size}, {what}", flush=True)
    outputs: dict[str, Any] = {}

    def library() -> None:
        torch.manual_seed(args.seed + 7)
        outputs["library"] = evaluate_classwise(
            model, batches, attack="pgd20", num_classes=NUM_CLASSES, device=device, seed=args.seed + 7
        )  # the textbook's stream

    def textbook() -> None:
        torch.manual_seed(args.seed + 7)
        outputs["textbook"] = textbook_pgd_classwise(model, batches)

    times = interleaved_times(
        {"textbook": textbook, "library": library}, repeats=args.repeats, warmup=args.warmup, device=device
    )
    identical = same_counts(outputs["library"], outputs["textbook"])
    ratio, best_ratio = paired_ratio(times["textbook"], times["library"])
    wall = wall_ratio(times, "textbook", "library")
    result = outputs["library"]
    rows = [
        [name, "textbook PGD-20 loop", images / median(times["textbook"]), 1.0, 1.0, 1.0, ""],
        [
            name,
            "robustfair evaluate_classwise",
            images / median(times["library"]),
            ratio,
            best_ratio,
            wall,
            f">= {TARGET:g}: {'met' if ratio >= TARGET and identical else 'MISSED'}",
        ],
    ]
    print(
        f"  per-class counts identical: {identical}; clean acc {100 * (1 - result.average_clean_err):.1f}%, "
        f"robust acc {100 * (1 - result.average_robust_err):.1f}%"
    )
    ratios = {
        f"{name}.library_over_textbook_images_per_s": ratio,
        f"{name}.library_over_textbook_images_per_s_best_times": best_ratio,
        f"{name}.library_over_textbook_images_per_s_wall": wall,
    }
    measurements = {
        "images": images,
        "batch": batch,
        "image_size": image_size,
        "data": what,
        "textbook_images_per_s": images / median(times["textbook"]),
        "library_images_per_s": images / median(times["library"]),
        "per_class_identical": identical,
        "clean_acc": 1 - result.average_clean_err,
        "robust_acc": 1 - result.average_robust_err,
        "clock": times.clock,
        "per_round": times.per_round(),
    }
    return rows, ratios, measurements


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=3)
    parser.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help=f"model:images:batch:image_size list (default {DEFAULT_CONFIGS})"
    )
    args = parser.parse_args()
    device, machine = setup(args)
    print(
        f"settings: {args.configs}; PGD-20, eps 8/255, step 2/255, uniform start; labels: the model's "
        f"own predictions with 20% moved; {args.warmup} warm-up + {args.repeats} timed rounds"
    )
    rows, ratios, measurements, targets = [], {}, {}, {}
    for item in args.configs.split(","):
        name, images, batch, size = item.split(":")
        model_rows, model_ratios, model_measurements = measure_model(
            name, int(images), int(batch), int(size), args, device
        )
        rows += model_rows
        ratios.update(model_ratios)
        measurements[name] = model_measurements
        value = model_ratios[f"{name}.library_over_textbook_images_per_s"]
        targets[name] = {
            "target": f">= {TARGET:g} and identical per-class counts",
            "value": value,
            "identical": model_measurements["per_class_identical"],
            "met": value >= TARGET and model_measurements["per_class_identical"],
        }
    clock = "process CPU time" if device.type == "cpu" else "wall time"
    print_table(
        f"PGD-20 class-wise evaluation throughput (ratio = library images/s / textbook images/s; images/s on {clock})",
        ["model", "implementation", "images/s", "ratio", "(best times)", "(wall)", "target"],
        rows,
    )
    print(
        f"ratio: median of per-round ratios on {clock} (the figure, judged against the target); (best times): "
        "from the fastest call of each; (wall): the median per-round ratio on wall time."
    )
    for target in targets.values():
        target["clock"] = clock
    write_json(args.json_path, "eval_throughput", machine, vars(args), ratios, measurements, targets)


if __name__ == "__main__":
    main()
