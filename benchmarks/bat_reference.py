"""BAT step: robustfair's vectorised BAT against a reference-style implementation.

The reference below follows the structure of the authors' code (github.com/silvercherry/
Improving-Robust-Fairness-via-Balance-Adversarial-Training, `train_mode/stop_to_lastclean.py`,
`stop_to_firstadv.py`, `train.py`), written here from METHODS.md's description:
- two separate early-stopped trajectories, each from its own x + 0.001 N(0, I) start;
- per-sample Python loops build index lists of the samples that stop or go on, and the
  outputs are gathered by `torch.cat` in stopping order (the first-adversarial outputs
  then shuffled by a Python permutation);
- each trajectory runs its own clean forward with its graph kept, and every attack step's
  `backward(retain_graph=True)` runs through the parameters and that clean graph;
- three train-mode forwards f(x_lc), f(x_fa), f(x) on the reordered batches, then the loss
  as the code's `BAT_loss` (KLDivLoss sums divided by the batch size).

Printed per model: the step-time ratio library / reference (target <= 0.5), the library's
shared-trajectory option against the reference, and |loss_library - loss_reference| from
the same start noise on identical model copies (target <= 1e-5).

    python benchmarks/bat_reference.py [--configs small_cnn:64:32,preact_resnet18:16:16] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

import copy  # noqa: E402
import random  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    build_benchmark_model,
    freeze_batchnorm_statistics,
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
from robustfair.losses import trades_kl  # noqa: E402
from robustfair.methods import METHODS  # noqa: E402

DEFAULT_CONFIGS = "small_cnn:64:32,preact_resnet18:16:16"
TIME_TARGET = 0.5
LOSS_TARGET = 1e-5


# ---- the reference-style implementation --------------------------------------------------------


def _start(x: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
    """The code's normal start: x + 0.001 N(0, I) from the global generator, clamped."""
    if start is not None:
        return start.detach().clone()
    return (x + 0.001 * torch.randn(x.shape, device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)


def _kl_sum(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """The code's `KLDivLoss(size_average=False)(log_softmax(adv), softmax(clean))`."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="sum")


def _attack_objective(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """The attack's summed KL(p(x) || p(x')), clean side not detached (as in the code).

    Written with `robustfair.losses.trades_kl`, the same expression as the library's attack:
    mathematically the code's KLDivLoss, but at the 0.001-scale start the KL gradient is
    about 1e-7 per pixel and the two expressions' rounding (about 1e-10) flips the sign of
    a few pixels' first step, after which the trajectories part. The comparison is about
    the structure, so both sides use the same expression.
    """
    return trades_kl(logits_clean, logits_adv).sum()


def _signed_step(
    iterate: torch.Tensor, grad: torch.Tensor, clean: torch.Tensor, eps: float, step_size: float
) -> torch.Tensor:
    moved = iterate.detach() + step_size * grad.sign()
    return torch.min(torch.max(moved, clean - eps), clean + eps).clamp(0.0, 1.0)


def reference_last_clean(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.031,
    step_size: float = 0.007,
    steps: int = 10,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`stop_to_lastclean`: (x_lc, their labels, their clean inputs), in stopping order."""
    model.eval()
    iterate = _start(x, start)
    clean, labels = x.detach(), y.detach()
    clean_logits = model(x)  # graph kept, as in the code
    previous = iterate  # the code's tmp_adv: the last iterate still classified correctly
    out_adv: list[torch.Tensor] = []
    out_clean: list[torch.Tensor] = []
    out_labels: list[torch.Tensor] = []
    for _ in range(steps):
        iterate.requires_grad_()
        logits = model(iterate)
        pred = logits.max(1, keepdim=True)[1]
        stop_index, keep_index = [], []
        for idx in range(len(pred)):
            if pred[idx] != labels[idx]:
                stop_index.append(idx)
            else:
                keep_index.append(idx)
        if stop_index:
            out_adv.append(previous[stop_index].detach())
            out_clean.append(clean[stop_index])
            out_labels.append(labels[stop_index])
        model.zero_grad()
        _attack_objective(logits, clean_logits).backward(retain_graph=True)
        grad = iterate.grad
        if not keep_index:
            return torch.cat(out_adv), torch.cat(out_labels), torch.cat(out_clean)
        iterate, clean, labels = iterate[keep_index].detach(), clean[keep_index], labels[keep_index]
        clean_logits, grad = clean_logits[keep_index], grad[keep_index]
        previous = iterate
        iterate = _signed_step(iterate, grad, clean, eps, step_size)
    out_adv.append(iterate.detach())
    out_clean.append(clean)
    out_labels.append(labels)
    return torch.cat(out_adv), torch.cat(out_labels), torch.cat(out_clean)


def reference_first_adv(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.031,
    step_size: float = 0.007,
    steps: int = 10,
    tau: int = 1,
    start: torch.Tensor | None = None,
    shuffle_seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`stop_to_firstadv` with counter tau: (x_fa, labels, clean inputs), shuffled."""
    model.eval()
    order = list(range(len(x)))
    random.Random(shuffle_seed).shuffle(order)
    control = torch.full((len(y),), float(tau), device=x.device)
    iterate = _start(x, start)
    clean, labels = x.detach(), y.detach()
    clean_logits = model(x)  # graph kept, as in the code
    out_adv: list[torch.Tensor] = []
    out_clean: list[torch.Tensor] = []
    out_labels: list[torch.Tensor] = []
    for _ in range(steps):
        iterate.requires_grad_()
        logits = model(iterate)
        pred = logits.max(1, keepdim=True)[1]
        stop_index, keep_index = [], []
        for idx in range(len(pred)):
            if pred[idx] != labels[idx]:
                if control[idx] == 0:
                    stop_index.append(idx)
                else:
                    control[idx] -= 1
                    keep_index.append(idx)
            else:
                keep_index.append(idx)
        if stop_index:
            out_adv.append(iterate[stop_index].detach())
            out_clean.append(clean[stop_index])
            out_labels.append(labels[stop_index])
        model.zero_grad()
        _attack_objective(logits, clean_logits).backward(retain_graph=True)
        grad = iterate.grad
        if not keep_index:
            return torch.cat(out_adv)[order], torch.cat(out_labels)[order], torch.cat(out_clean)[order]
        control = control[keep_index]
        iterate, clean, labels = iterate[keep_index].detach(), clean[keep_index], labels[keep_index]
        clean_logits, grad = clean_logits[keep_index], grad[keep_index]
        iterate = _signed_step(iterate, grad, clean, eps, step_size)
    out_adv.append(iterate.detach())
    out_clean.append(clean)
    out_labels.append(labels)
    return torch.cat(out_adv)[order], torch.cat(out_labels)[order], torch.cat(out_clean)[order]


def reference_bat_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.031,
    step_size: float = 0.007,
    steps: int = 10,
    beta: float = 6.0,
    tau: int = 1,
    start_last_clean: torch.Tensor | None = None,
    start_first_adv: torch.Tensor | None = None,
    shuffle_seed: int = 0,
) -> torch.Tensor:
    """The code's training loss on one batch (model left in train mode).

    Starts default to the global generator, x_lc's drawn first, as the library's `BAT` does,
    so the same seed gives both the same start noise.
    """
    last_clean, lc_labels, _ = reference_last_clean(
        model, x, y, eps=eps, step_size=step_size, steps=steps, start=start_last_clean
    )
    first_adv, _, fa_clean = reference_first_adv(
        model,
        x,
        y,
        eps=eps,
        step_size=step_size,
        steps=steps,
        tau=tau,
        start=start_first_adv,
        shuffle_seed=shuffle_seed,
    )
    model.train()
    logits_lc = model(last_clean)
    logits_fa = model(first_adv)
    logits_clean = model(fa_clean)
    batch = len(y)
    uniform = torch.full_like(logits_fa, 0.1)
    natural = F.cross_entropy(logits_lc, lc_labels)
    uniform_term = (_kl_sum(uniform, logits_lc) + _kl_sum(uniform, logits_fa)) / batch
    robust = _kl_sum(logits_fa, logits_clean) / batch
    return natural + beta * robust + uniform_term


# ---- the benchmark ---------------------------------------------------------------------------------


def measure_model(
    name: str, batch: int, image_size: int, args, device: torch.device
) -> tuple[list[list[Any]], dict[str, float], dict[str, Any]]:
    # No dropout: train-mode forwards of reordered batches then see the same function.
    options = {"dropout": 0.0} if name == "small_cnn" else {}
    base = freeze_batchnorm_statistics(build_benchmark_model(name, image_size, seed=args.seed, **options).to(device))
    x_u8, _, what = load_images(batch, image_size, directory=args.data_dir, seed=args.seed)
    x = to_unit(x_u8).to(device)
    y = realistic_labels(base, x, seed=args.seed)
    print(f"\n{name}: batch {batch}, {image_size}x{image_size}, {what}", flush=True)
    bat = METHODS["bat"](METHODS["bat"].Config(), num_classes=10)
    bat_shared = METHODS["bat"](METHODS["bat"].Config(shared_trajectory=True), num_classes=10)

    # Same loss from the same start noise, on identical copies (also the warm-up).
    copies = {k: copy.deepcopy(base) for k in ("library", "reference")}
    torch.manual_seed(args.seed + 100)
    loss_library = bat.loss(copies["library"], x, y).loss.item()
    torch.manual_seed(args.seed + 100)
    loss_reference = reference_bat_loss(copies["reference"], x, y).item()
    loss_gap = abs(loss_library - loss_reference)
    print(f"  loss: library {loss_library:.7f}, reference {loss_reference:.7f}, |difference| {loss_gap:.2e}")

    def training_step(loss_fn: Callable[[nn.Module], torch.Tensor]) -> Callable[[], None]:
        model = copy.deepcopy(base)
        # lr 0 (and BatchNorm momentum 0): every round times the same problem
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=2e-4)

        def step() -> None:
            model.train()
            loss = loss_fn(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    fns = {
        "reference": training_step(lambda m: reference_bat_loss(m, x, y)),
        "library": training_step(lambda m: bat.loss(m, x, y).loss),
        "library_shared": training_step(lambda m: bat_shared.loss(m, x, y).loss),
    }
    times = interleaved_times(fns, repeats=args.repeats, warmup=args.warmup, device=device)
    ratio, best_ratio = paired_ratio(times["library"], times["reference"])
    ratio_shared, best_shared = paired_ratio(times["library_shared"], times["reference"])
    wall, wall_shared = wall_ratio(times, "library", "reference"), wall_ratio(times, "library_shared", "reference")
    rows = [
        [name, "reference-style (two trajectories, Python index lists)", median(times["reference"]), 1.0, 1.0, 1.0, ""],
        [
            name,
            "robustfair BAT (two trajectories, default)",
            median(times["library"]),
            ratio,
            best_ratio,
            wall,
            f"<= {TIME_TARGET}: {'met' if ratio <= TIME_TARGET else 'MISSED'}",
        ],
        [
            name,
            "robustfair BAT (shared_trajectory: true)",
            median(times["library_shared"]),
            ratio_shared,
            best_shared,
            wall_shared,
            "",
        ],
        [
            name,
            "|loss library - loss reference|",
            loss_gap,
            "",
            "",
            "",
            f"<= {LOSS_TARGET:g}: {'met' if loss_gap <= LOSS_TARGET else 'MISSED'}",
        ],
    ]
    ratios = {
        f"{name}.library_over_reference": ratio,
        f"{name}.shared_over_reference": ratio_shared,
        f"{name}.library_over_reference_best_times": best_ratio,
        f"{name}.shared_over_reference_best_times": best_shared,
        f"{name}.library_over_reference_wall": wall,
        f"{name}.shared_over_reference_wall": wall_shared,
    }
    measurements = {
        "batch": batch,
        "image_size": image_size,
        "data": what,
        "reference_s": median(times["reference"]),
        "library_s": median(times["library"]),
        "library_shared_s": median(times["library_shared"]),
        "loss_library": loss_library,
        "loss_reference": loss_reference,
        "loss_abs_difference": loss_gap,
        "clock": times.clock,
        "per_round": times.per_round(),
    }
    return rows, ratios, measurements


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=3, warmup=0)
    parser.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help=f"model:batch:image_size list (default {DEFAULT_CONFIGS})"
    )
    args = parser.parse_args()
    device, machine = setup(args)
    print(
        f"settings: {args.configs}; BAT defaults (eps 0.031, step 0.007, K 10, beta 6, tau 1); full "
        f"training steps (loss, backward, SGD) on separate model copies; the loss check doubles as "
        f"warm-up, then {args.warmup} warm-up + {args.repeats} timed rounds; medians of per-round ratios"
    )
    rows, ratios, measurements, targets = [], {}, {}, {}
    for item in args.configs.split(","):
        name, batch, size = item.split(":")
        model_rows, model_ratios, model_measurements = measure_model(name, int(batch), int(size), args, device)
        rows += model_rows
        ratios.update(model_ratios)
        measurements[name] = model_measurements
        targets[f"{name}.library_over_reference"] = {
            "target": f"<= {TIME_TARGET}",
            "value": model_ratios[f"{name}.library_over_reference"],
            "met": model_ratios[f"{name}.library_over_reference"] <= TIME_TARGET,
        }
        targets[f"{name}.loss_abs_difference"] = {
            "target": f"<= {LOSS_TARGET:g}",
            "value": model_measurements["loss_abs_difference"],
            "met": model_measurements["loss_abs_difference"] <= LOSS_TARGET,
        }
    clock = "process CPU time" if device.type == "cpu" else "wall time"
    print_table(
        f"BAT step against the reference-style implementation (ratio = step time / reference step time; on {clock})",
        ["model", "implementation", "step s", "ratio", "(best times)", "(wall)", "target"],
        rows,
    )
    print(
        f"ratio: median of per-round ratios on {clock} (the figure, judged against the target); (best times): "
        "fastest / fastest reference step; (wall): the median per-round ratio on wall time."
    )
    for target in targets.values():
        target["clock"] = clock
    write_json(args.json_path, "bat_reference", machine, vars(args), ratios, measurements, targets)


if __name__ == "__main__":
    main()
