"""Training-step efficiency: each method's step against its floor.

Adversarial training costs K + 1 forward/backward passes per step. For a model and a
batch of B images this benchmark times, interleaved round by round (see
`common.interleaved_times`):

    train_step   forward + backward + SGD step on B inputs (train mode)
    input_grad   forward + input-gradient backward on B inputs (eval mode): one attack pass
    pgd_at, trades, frl_rwrm, bat   `METHODS[name].loss` + backward + SGD step (default configs)
    trades_shared_forward           TRADES with `forward_order: clean_adv` (one shared f(x))

and, next to each method, its floor: a step written here that does only the work the
algorithm cannot avoid, with the same kernels and nothing else (no projection, no
bookkeeping, no extra forward):

    floor_pgd_at   K input_grad passes + train_step
    floor_trades   one eval forward without graph (the attack's target p(x)) + K input_grad
                   passes + TRADES' training part as the TRADES code runs it (f(x) for CE,
                   f(x_adv), f(x) again for the KL; CE + beta KL, backward, SGD step); also
                   FRL's floor (the same passes; its weights cost nothing)
    floor_trades_shared   the same with one shared f(x) (f(x), f(x_adv)): the floor of the
                   `forward_order: clean_adv` option
    floor_bat      one eval forward without graph (both trajectories target the same p(x))
                   + the input_grad passes BAT's early-stopped attacks actually computed, at
                   the sizes they had (the samples still active at each step, recorded by a
                   forward hook during the last BAT step and replayed) + BAT's training part
                   (f(x_lc), f(x_fa), f(x), BAT loss, backward, SGD step)

Printed: floor / measured per method (1.0 = no work beyond the floor), the median of the
per-round ratios. Target: PGD-AT and TRADES >= 1 / 1.1 (within 10% of the floor). SGD runs
with lr 0 and BatchNorm with momentum 0 (the step's work is done, the weights and running
statistics stay put), so every round times the same problem.

    python benchmarks/train_step.py [--configs small_cnn:64:32:4,preact_resnet18:16:16:3] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make `benchmarks` importable

from collections import Counter  # noqa: E402
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
    judged_clock,
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
from robustfair.losses.bat import bat_loss_terms  # noqa: E402
from robustfair.methods import METHODS  # noqa: E402

DEFAULT_CONFIGS = "small_cnn:64:32:4,preact_resnet18:16:16:3"
DEFAULT_METHODS = "pgd_at,trades,trades_shared_forward,frl_rwrm,bat"
TARGET = 1 / 1.1  # floor / measured of a step within 10% of its floor
TARGETED = ("pgd_at", "trades")
FLOOR_OF = {
    "pgd_at": "floor_pgd_at",
    "trades": "floor_trades",
    "trades_shared_forward": "floor_trades_shared",
    "frl_rw": "floor_trades",
    "frl_rwrm": "floor_trades",
    "frl_rm": "floor_trades",
    "bat": "floor_bat",
}
#: Benchmark names for a method with non-default options: name -> (registry name, config fields).
VARIANTS = {"trades_shared_forward": ("trades", {"forward_order": "clean_adv"})}


def build_timed_method(name: str):
    registry_name, fields = VARIANTS.get(name, (name, {}))
    cls = METHODS[registry_name]
    return cls(cls.Config(**fields), num_classes=10)


class PassCounter:
    """What goes through a model's forward, from a forward pre-hook on the model.

    samples[kind]: samples per kind - input_grad (eval mode with an input requiring grad:
    an attack's gradient pass), no_grad (eval mode without graph: clean targets, final
    checks), train (train mode). grad_sizes: the batch size of each input_grad pass, in order.
    """

    def __init__(self, model: nn.Module):
        self.reset()
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        if module.training:
            kind = "train"
        elif torch.is_grad_enabled() and x.requires_grad:
            kind = "input_grad"
            self.grad_sizes.append(x.shape[0])
        else:
            kind = "no_grad"
        self.samples[kind] += x.shape[0]

    def reset(self) -> None:
        self.samples: Counter[str] = Counter()
        self.grad_sizes: list[int] = []

    def remove(self) -> None:
        self.handle.remove()


def parse_configs(text: str) -> list[tuple[str, int, int, int | None]]:
    """ "model:batch:image_size[:repeats],..." -> [(model, batch, size, repeats or None)]."""
    configs = []
    for item in text.split(","):
        parts = item.split(":")
        repeats = int(parts[3]) if len(parts) > 3 else None
        configs.append((parts[0], int(parts[1]), int(parts[2]), repeats))
    return configs


def measure_model(
    name: str, batch: int, image_size: int, repeats: int, method_names: list[str], args, device: torch.device
) -> tuple[list[list[Any]], dict[str, float], dict[str, Any]]:
    model = freeze_batchnorm_statistics(build_benchmark_model(name, image_size, seed=args.seed).to(device))
    x_u8, _, what = load_images(batch, image_size, directory=args.data_dir, seed=args.seed)
    x = to_unit(x_u8).to(device)
    y = realistic_labels(model, x, seed=args.seed)
    print(
        f"\n{name}: batch {batch}, {image_size}x{image_size}, {what}; labels: the model's own "
        f"predictions with 20% moved to another class; {repeats} timed rounds",
        flush=True,
    )
    generator = torch.Generator().manual_seed(args.seed + 1)
    # Stand-ins for adversarial inputs in the floors (their values do not change the work).
    x_adv = (x + 0.02 * torch.randn(x.shape, generator=generator).to(device)).clamp(0, 1)
    x_adv2 = (x + 0.02 * torch.randn(x.shape, generator=generator).to(device)).clamp(0, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    methods = {m: build_timed_method(m) for m in method_names}
    steps = {m: methods[m].config.steps for m in method_names}
    k = max(steps.values(), default=10)
    if len(set(steps.values())) > 1:
        raise SystemExit(f"methods use different attack steps {steps}; time them in separate runs")
    counter = PassCounter(model)

    def optimize(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def input_grad_pass(n: int) -> None:
        inputs = x_adv[:n].detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(inputs), y[:n], reduction="sum"), inputs)

    def clean_forward() -> None:
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        model.train()
        optimize(F.cross_entropy(model(x_adv), y))

    def input_grad() -> None:
        model.eval()
        input_grad_pass(batch)
        model.train()

    def floor_pgd_at() -> None:
        model.eval()
        for _ in range(k):
            input_grad_pass(batch)
        train_step()

    def floor_trades() -> None:
        model.eval()
        clean_forward()
        for _ in range(k):
            input_grad_pass(batch)
        model.train()
        logits, logits_adv, logits_kl = model(x), model(x_adv), model(x)
        optimize(F.cross_entropy(logits, y) + 6.0 * trades_kl(logits_kl, logits_adv).sum() / batch)

    def floor_trades_shared() -> None:
        model.eval()
        clean_forward()
        for _ in range(k):
            input_grad_pass(batch)
        model.train()
        logits, logits_adv = model(x), model(x_adv)
        optimize(F.cross_entropy(logits, y) + 6.0 * trades_kl(logits, logits_adv).sum() / batch)

    bat_sizes: list[int] = []  # input_grad pass sizes of the last BAT step

    def floor_bat() -> None:
        model.eval()
        clean_forward()
        for n in bat_sizes:
            input_grad_pass(n)
        model.train()
        logits_lc, logits_fa, logits = model(x_adv), model(x_adv2), model(x)
        optimize(bat_loss_terms(logits, logits_lc, logits_fa, y)["total"].mean())

    def method_step(method_name: str) -> Callable[[], None]:
        method = methods[method_name]

        def step() -> None:
            counter.reset()
            model.train()
            optimize(method.loss(model, x, y).loss)

        return step

    fns: dict[str, Callable[[], None]] = {"train_step": train_step, "input_grad": input_grad}
    for m in method_names:  # each floor right before its method: rotation keeps them adjacent
        if m not in FLOOR_OF:
            raise SystemExit(f"no floor defined for method {m!r}; known: {', '.join(FLOOR_OF)}")
        floor = FLOOR_OF[m]
        if floor not in fns:
            fns[floor] = {
                "floor_pgd_at": floor_pgd_at,
                "floor_trades": floor_trades,
                "floor_trades_shared": floor_trades_shared,
                "floor_bat": floor_bat,
            }[floor]
        fns[m] = method_step(m)
    if "bat" in method_names:  # the BAT floor replays a real BAT step's pass sizes: run one first
        fns["bat"]()
        bat_sizes[:] = counter.grad_sizes
    counts: dict[str, list[Counter[str]]] = {m: [] for m in method_names}
    replayed: list[int] = []

    def record(fn_name: str, round_index: int) -> None:
        if fn_name == "bat":
            bat_sizes[:] = counter.grad_sizes
        if fn_name == "floor_bat" and round_index >= 0:
            replayed.append(sum(bat_sizes))
        if fn_name in counts and round_index >= 0:
            counts[fn_name].append(counter.samples.copy())

    times = interleaved_times(
        fns, repeats=repeats, warmup=args.warmup, device=device, after_call=record, clock=args.clock
    )
    counter.remove()

    rows: list[list[Any]] = [
        [name, "train_step", median(times["train_step"]), "", "", "", "", "", "", ""],
        [name, "input_grad (one pass)", median(times["input_grad"]), "", "", "", "", "", "", ""],
    ]
    ratios: dict[str, float] = {}
    measurements: dict[str, Any] = {
        "batch": batch,
        "image_size": image_size,
        "data": what,
        "repeats": repeats,
        "train_step_s": median(times["train_step"]),
        "input_grad_s": median(times["input_grad"]),
        "clock": times.clock,
        "per_round": times.per_round(),
    }
    for m in method_names:
        floor = FLOOR_OF[m]
        efficiency, best_efficiency = paired_ratio(times[floor], times[m])
        efficiency_wall = wall_ratio(times, floor, m)
        grad_passes = median([c["input_grad"] / batch for c in counts[m]])
        no_grad = median([c["no_grad"] / batch for c in counts[m]])
        train_forwards = median([c["train"] / batch for c in counts[m]])
        target = f">= {TARGET:.3f}: {'met' if efficiency >= TARGET else 'MISSED'}" if m in TARGETED else ""
        rows.append(
            [
                name,
                m,
                median(times[m]),
                median(times[floor]),
                f"{grad_passes:.2f}",
                f"{no_grad:.2f}",
                f"{train_forwards:.2f}",
                efficiency,
                best_efficiency,
                efficiency_wall,
                target,
            ]
        )
        ratios[f"{name}.{m}.floor_over_measured"] = efficiency
        ratios[f"{name}.{m}.floor_over_measured_best_times"] = best_efficiency
        ratios[f"{name}.{m}.floor_over_measured_wall"] = efficiency_wall
        measurements[m] = {
            "measured_s": median(times[m]),
            "floor_s": median(times[floor]),
            "floor": floor,
            "input_grad_passes": grad_passes,
            "no_grad_forwards": no_grad,
            "train_forwards": train_forwards,
            "attack_steps": steps[m],
        }
    if replayed:
        measurements["floor_bat_replayed_input_grad_passes"] = median(replayed) / batch
    ratios[f"{name}.input_grad_over_train_step"] = median(
        [a / b for a, b in zip(times["input_grad"], times["train_step"])]
    )
    return rows, ratios, measurements


def main() -> None:
    parser = base_parser(__doc__.split("\n")[0], repeats=3)
    parser.set_defaults(repeats=None)
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help=f"model:batch:image_size[:repeats] list (default {DEFAULT_CONFIGS}); "
        f"--repeats overrides the per-model repeats",
    )
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"methods to time (default {DEFAULT_METHODS})")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="the clock ratios are judged on: cpu = process CPU time (other processes on a shared "
        "machine do not inflate it; the default on a CPU device), wall = elapsed time (the "
        "default on CUDA); both are recorded",
    )
    args = parser.parse_args()
    device, machine = setup(args)
    args.clock = args.clock or judged_clock(device)
    configs = parse_configs(args.configs)
    method_names = [m for m in args.methods.split(",") if m]
    print(
        f"settings: {args.configs}; methods {','.join(method_names)} with their default configs "
        f"(variants: {VARIANTS}) "
        f"(K = 10 attack steps); SGD lr 0, BatchNorm momentum 0; {args.clock} clock; {args.warmup} warm-up round, "
        f"then the timed rounds with the "
        f"order rotated each round; medians of per-round ratios"
    )

    rows, ratios, measurements = [], {}, {}
    for name, batch, size, repeats in configs:
        repeats = args.repeats or repeats or 3
        model_rows, model_ratios, model_measurements = measure_model(
            name, batch, size, repeats, method_names, args, device
        )
        rows += model_rows
        ratios.update(model_ratios)
        measurements[name] = model_measurements

    clock = "process CPU time" if args.clock == "cpu" else "wall time"
    print_table(
        f"Training-step efficiency (floor / measured; 1.0 = no work beyond the floor; times and ratios on {clock})",
        [
            "model",
            "step",
            "measured s",
            "floor s",
            "grad passes xB",
            "no-grad fwd xB",
            "train fwd xB",
            "floor/measured",
            "(best times)",
            "(wall)",
            "target",
        ],
        rows,
    )
    print(
        f"floor/measured: median of per-round ratios on {clock} (the figure, judged against the target); "
        "(best times): fastest floor / fastest step, a check insensitive to other processes; (wall): the "
        "median per-round ratio on wall time.\ngrad passes xB: per-sample input gradients the "
        "step computed, in batches of B; no-grad fwd xB: eval forwards without graph (clean targets, final "
        "flip checks), in batches of B; train fwd xB: train-mode forwards (BatchNorm updates), in batches of B."
    )
    targets = {
        key: {"target": f">= {TARGET:.4f}", "value": value, "met": value >= TARGET}
        for key, value in ratios.items()
        if key.split(".")[1] in TARGETED and key.endswith("floor_over_measured")
    }
    for target in targets.values():
        target["clock"] = clock
    write_json(args.json_path, "train_step", machine, vars(args), ratios, measurements, targets)


if __name__ == "__main__":
    main()
