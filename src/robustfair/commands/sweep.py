"""`robustfair sweep PRESET [PRESET ...] --seeds N`: a grid of presets x seeds, one table.

Runs go to `<out>/<preset>/seed<k>` (k = 0 .. N-1, or the list given to --seeds), trained
with `seed=k` plus the shared key=value overrides; finished runs are skipped, interrupted
ones resumed, and hot-start presets (FRL, FAAL: `init_from: .../<source preset>`) chain onto
the same seed's run of their source preset when it is in the sweep. Several sweep processes
may run the same command (one machine or several sharing the file system): they split the
grid between them, each run trained by exactly one (see `engine/sweep.py`). Afterwards the summary
(mean ± std over seeds), per-class and training-time tables are printed and, with
--table, written to a file. `--table-only` prints the tables of what has finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustfair.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="train presets x seeds (skipping finished runs) and tabulate mean ± std",
                       description="Train every preset with every seed into OUT/<preset>/seed<k>, skip finished "
                                   "runs, resume interrupted ones, chain hot starts (init_from) onto the same "
                                   "seed's source run, then print one comparison table (mean ± std over seeds). "
                                   "Start the same command several times (or on several machines sharing OUT) "
                                   "to split the grid between workers: each run is trained exactly once.")
    p.add_argument("presets", nargs="+", metavar="PRESET|key=value",
                   help="presets or YAML files, and key=value overrides applied to every run (anywhere on the line)")
    p.add_argument("--seeds", default="3",
                   help="N (seeds 0..N-1) or a comma list of seeds (e.g. 0,1,2); default 3")
    p.add_argument("--out", help="sweep directory (default: runs/sweep/<first preset>)")
    p.add_argument("--table", help="also write the tables to this file")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"], dest="fmt")
    p.add_argument("--which", default="last", choices=["last", "best"], help="last or best-on-validation model")
    p.add_argument("--table-only", action="store_true", help="train nothing; tabulate the finished runs")
    p.add_argument("--threads", type=int, help="torch CPU threads (torch.set_num_threads)")
    p.add_argument("--verbose", action="store_true", help="per-epoch progress of each run")
    p.set_defaults(run=run)


def parse_seeds(text: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0,2,5' -> [0, 2, 5]. Raises ConfigError otherwise."""
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds: {text!r} is neither a count nor a comma list of integers") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: {text!r} must give at least one seed, none negative or repeated")
    return seeds


def run(args: argparse.Namespace) -> int:
    from robustfair.engine.sweep import preset_label, run_sweep, sweep_table

    from robustfair.typed_config import is_override

    presets = [item for item in args.presets if not is_override(item)]
    overrides = [item for item in args.presets if is_override(item)]
    if not presets:
        raise ConfigError("sweep: give at least one preset besides the key=value overrides")
    seeds = parse_seeds(args.seeds)
    out = Path(args.out) if args.out else Path("runs") / "sweep" / preset_label(presets[0])
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    failed = {}
    if not args.table_only:
        outcome = run_sweep(presets, seeds, out, overrides, quiet=not args.verbose,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
        failed = outcome.failed
        others = f", {len(outcome.elsewhere)} by other workers" if outcome.elsewhere else ""
        print(f"sweep {out}: {len(outcome.trained)} trained, {len(outcome.resumed)} resumed{others}, "
              f"{len(outcome.skipped)} skipped, {len(failed)} failed", file=sys.stderr)
    text = sweep_table(presets, seeds, out, fmt=args.fmt, which=args.which)
    print(text)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(text + "\n")
        print(f"wrote {args.table}", file=sys.stderr)
    for run_dir, message in failed.items():
        print(f"robustfair: failed run {run_dir}: {message}", file=sys.stderr)
    if failed:
        raise ConfigError(f"sweep: {len(failed)} run{'s' if len(failed) > 1 else ''} failed (listed above); "
                          f"fix the cause and run the same command again to finish them")
    return 0
