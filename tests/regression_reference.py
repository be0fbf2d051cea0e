"""Stored class-wise reference numbers of short digits runs, for `test_regression_classwise.py`.

A change that alters what a training method or the evaluation computes moves these numbers.
When such a change is intended (a fidelity fix, say), regenerate the file on purpose and say
so in the commit:

    OMP_NUM_THREADS=1 python tests/regression_reference.py --write

Each case trains a digits preset for 3 epochs on one CPU thread (seed 0), then records the
first epoch's mean training loss and, for the last model, each class's count of test images
that are correct clean and correct under the run's PGD-20 evaluation (450 test images).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

REFERENCE = Path(__file__).resolve().parent / "reference" / "regression_digits.json"
CASES = {  # name: (preset, overrides)
    "pgd_at": ("digits_pgd_at", ()),
    "trades": ("digits_trades", ()),
    "bat": ("digits_bat", ()),
    "dafa": ("digits_dafa", ()),
}
OVERRIDES = ("train.epochs=3", "schedule.milestones=[3]")


def measure(name: str, run_root: Path) -> dict:
    """Train case `name` into `run_root/name`; its first-epoch loss and per-class correct counts."""
    import torch

    from robustfair.engine.config import load_config
    from robustfair.engine.trainer import train

    torch.set_num_threads(1)
    preset, extra = CASES[name]
    config = load_config(preset, [*OVERRIDES, *extra])
    run_dir = run_root / name
    results = train(config, run_dir, quiet=True, progress=False)
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    per_class = results["per_class"]
    counts = per_class["count"]

    def correct(key: str) -> list[int]:
        return [round(acc * n / 100) for acc, n in zip(per_class[key], counts)]

    return {
        "preset": preset,
        "overrides": [*OVERRIDES, *extra],
        "first_epoch_loss": first["loss"],
        "count": counts,
        "clean_correct": correct("clean_acc"),
        "robust_correct": correct("robust_acc"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {REFERENCE}")
    args = parser.parse_args()
    with TemporaryDirectory() as tmp:
        values = {name: measure(name, Path(tmp)) for name in CASES}
    text = json.dumps(values, indent=1)
    if args.write:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(text + "\n")
        print(f"wrote {REFERENCE}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
