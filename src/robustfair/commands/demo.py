"""`robustfair demo`: the embedded CPU demo on scikit-learn's bundled digits.

Trains every demo preset (configs/digits_*.yaml) with a small CNN, one run directory per
method under ./runs/demo/, then prints a class-wise table like BAT's Table 1 and a
per-class robust-error row per method. Finished runs are reused; interrupted runs resume.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoRun:
    label: str
    preset: str
    hot_start_from: str | None = None  # preset whose run this one fine-tunes
    default: bool = True  # part of the default (5-minute) demo


DEMO_RUNS = [
    DemoRun("ERM", "digits_erm"),
    DemoRun("PGD-AT", "digits_pgd_at"),
    DemoRun("TRADES(1)", "digits_trades1", default=False),
    DemoRun("TRADES(6)", "digits_trades"),
    DemoRun("FRL RW", "digits_frl_rw", "digits_pgd_at", default=False),
    DemoRun("FRL RW+RM", "digits_frl_rwrm", "digits_pgd_at"),
    DemoRun("BAT", "digits_bat"),
    DemoRun("FAT", "digits_fat_at", default=False),
    DemoRun("GAIRAT", "digits_gairat", default=False),
    DemoRun("CFA", "digits_cfa", default=False),
    DemoRun("WAT", "digits_wat", default=False),
    DemoRun("DAFA", "digits_dafa", default=False),
    DemoRun("FAAL", "digits_faal", "digits_pgd_at", default=False),
]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="train the embedded digits demo and print a class-wise table",
        description="Trains ERM, PGD-AT, TRADES, FRL and BAT (and with --methods all, every "
        "method) with a small CNN on the bundled digits data, on CPU.",
    )
    p.add_argument(
        "--methods",
        default="default",
        help="'default', 'all', or a comma list of demo presets/labels (e.g. digits_bat,ERM)",
    )
    p.add_argument("--out", default="runs/demo", help="where the run directories go")
    p.add_argument("--quiet", action="store_true", help="only the final tables")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run (e.g. train.epochs=2)")
    p.set_defaults(run=run)


def selected_runs(spec: str) -> list[DemoRun]:
    from robustfair.engine.config import list_presets, load_raw_config
    from robustfair.errors import ConfigError
    from robustfair.methods import METHODS
    from robustfair.registry import closest_names, or_list

    available = [
        r
        for r in DEMO_RUNS
        if r.preset in list_presets() and load_raw_config(r.preset).get("method", {}).get("name") in METHODS
    ]
    if spec == "default":
        return [r for r in available if r.default]
    if spec == "all":
        return available
    wanted = [w.strip() for w in spec.split(",") if w.strip()]
    valid = ["default", "all", *(r.preset for r in available)]
    if not wanted:
        raise ConfigError(
            f"demo --methods: {spec!r} names no method; give default, all, or a comma list of {', '.join(valid[2:])}"
        )
    by_key = {**{r.preset: r for r in available}, **{r.label: r for r in available}}
    unknown = [w for w in wanted if w not in by_key]
    if unknown:
        close = closest_names(unknown[0], list(by_key))
        hint = f"; did you mean {or_list(close)}?" if close else ";"
        raise ConfigError(f"demo --methods: unknown {', '.join(map(repr, unknown))}{hint} valid: {', '.join(valid)}")
    chosen = [by_key[w] for w in wanted]
    for r in list(chosen):  # a fine-tune needs its hot start
        if r.hot_start_from and r.hot_start_from not in [c.preset for c in chosen]:
            chosen.insert(0, next(a for a in available if a.preset == r.hot_start_from))
    order = [r.preset for r in DEMO_RUNS]
    return sorted({r.preset: r for r in chosen}.values(), key=lambda r: order.index(r.preset))


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.config import load_config
    from robustfair.engine.trainer import train
    from robustfair.report.tables import per_class_table, robust_error_by_class, summary_table

    out = Path(args.out)
    runs = selected_runs(args.methods)
    start = time.perf_counter()
    results = {}
    for r in runs:
        overrides = list(args.overrides)
        if r.hot_start_from:
            overrides.append(f"init_from={out / r.hot_start_from}")
        config = load_config(r.preset, overrides)
        run_dir = out / r.preset
        done = run_dir / "results.json"
        if done.is_file():
            results[r.label] = json.loads(done.read_text())
            print(f"[demo] {r.label}: reusing finished run {run_dir}", file=sys.stderr)
            continue
        resume = (run_dir / "checkpoints" / "last.safetensors").is_file()
        print(
            f"[demo] {r.label}: training {config.method_name()} -> {run_dir}{' (resuming)' if resume else ''}",
            file=sys.stderr,
        )
        t0 = time.perf_counter()
        results[r.label] = train(config, run_dir, resume=resume, quiet=args.quiet, progress=not args.quiet)
        print(f"[demo] {r.label}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    first = next(iter(results.values()))
    attack = first.get("attack", {})
    print(
        f"\nrobustfair demo: {first['dataset']} test set ({sum(first['per_class']['count'])} images), "
        f"small CNN, attack {attack.get('name', '?')} eps {attack.get('eps', float('nan')):.3f}; "
        f"error % (lower is better), last epoch"
    )
    print(summary_table([(label, res["summary"]) for label, res in results.items()]))
    print()
    print(
        per_class_table(
            [(label, robust_error_by_class(res)) for label, res in results.items()],
            first["classes"],
            title="robust error % by class",
        )
    )
    print(f"\n{len(results)} runs in {out}/ ({time.perf_counter() - start:.0f}s)")
    return 0
