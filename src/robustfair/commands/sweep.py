"""`robustfair sweep PRESET [PRESET ...] --seeds N`: a grid of presets x seeds, one table.

Runs go to `<out>/<preset>/seed<k>` (k = 0 .. N-1, or the list given to --seeds), trained
with `seed=k` plus the shared key=value overrides; finished runs are skipped, interrupted
ones resumed, and hot-start presets (FRL, FAAL: `init_from: .../<source preset>`) chain onto
the same seed's run of their source preset when it is in the sweep. Several sweep processes
may run the same command (one machine or several sharing the file system): they split the
grid between them, each run trained by exactly one (see `engine/sweep.py`). Afterwards the summary
(mean ± std over seeds), per-class and training-time tables are printed and, with
--table, written to a file. `--table-only` prints the tables of what has finished.

`--launcher slurm` submits each unfinished run as a Slurm job through submitit instead
(`engine/slurm.py`: hot starts as afterok dependencies of their source's job; `--slurm.*`
options for partition, GPUs, time limit, account, ...) and returns, or with `--wait` waits
for the jobs and prints the tables. `--launcher submitit-local` runs the same jobs with
submitit's local executor on this machine.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from robustfair.errors import ConfigError

LAUNCHERS = ("local", "slurm", "submitit-local")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train presets x seeds (skipping finished runs) and tabulate mean ± std",
        description="Train every preset with every seed into OUT/<preset>/seed<k>, skip finished "
        "runs, resume interrupted ones, chain hot starts (init_from) onto the same "
        "seed's source run, then print one comparison table (mean ± std over seeds). "
        "Start the same command several times (or on several machines sharing OUT) "
        "to split the grid between workers: each run is trained exactly once.",
    )
    p.add_argument(
        "presets",
        nargs="+",
        metavar="PRESET|key=value",
        help="presets or YAML files, and key=value overrides applied to every run (anywhere on the line)",
    )
    p.add_argument(
        "--seeds", default="3", help="N (seeds 0..N-1) or a comma list of seeds (e.g. 0,1,2; one seed: 0,); default 3"
    )
    p.add_argument("--out", help="sweep directory (default: runs/sweep/<first preset>)")
    p.add_argument("--table", help="also write the tables to this file")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"], dest="fmt")
    p.add_argument("--which", default="last", choices=["last", "best"], help="last or best-on-validation model")
    p.add_argument("--table-only", action="store_true", help="train nothing; tabulate the finished runs")
    p.add_argument(
        "--attack",
        help="tabulate this attack of the runs' results (main or extra, e.g. autoattack); default: the main one",
    )
    p.add_argument(
        "--baseline",
        metavar="PRESET",
        help="also print each preset's paired difference per seed against this preset, with a 95%% "
        "t-interval and a sign test over seeds",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads of each run (torch.set_num_threads; with --launcher, set in each job)",
    )
    p.add_argument("--verbose", action="store_true", help="per-epoch progress of each run")
    add_launcher_arguments(p)
    p.set_defaults(run=run)


def add_launcher_arguments(p) -> None:
    """--launcher and the --slurm.* options (engine/slurm.py)."""
    p.add_argument(
        "--launcher",
        default="local",
        choices=LAUNCHERS,
        help="local: train the runs one after the other in this process (default); slurm: submit one "
        "Slurm job per run through submitit; submitit-local: the same jobs as processes here",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="--launcher slurm: wait for the jobs to end, then print the tables (default: submit and exit)",
    )
    g = p.add_argument_group("Slurm jobs (--launcher slurm; pip install 'robustfair[slurm]')")
    g.add_argument("--slurm.partition", dest="slurm_partition", metavar="P", help="partition (sbatch --partition)")
    g.add_argument(
        "--slurm.gpus-per-node",
        dest="slurm_gpus_per_node",
        type=int,
        default=1,
        metavar="N",
        help="GPUs per node and job, one DDP process each (default 1; 0 for a CPU job)",
    )
    g.add_argument(
        "--slurm.timeout",
        dest="slurm_timeout",
        type=int,
        default=240,
        metavar="MIN",
        help="time limit of each job in minutes (default 240); a timed-out job is requeued and resumes",
    )
    g.add_argument(
        "--slurm.nodes", dest="slurm_nodes", type=int, default=1, metavar="N", help="nodes per job (default 1)"
    )
    g.add_argument("--slurm.cpus-per-task", dest="slurm_cpus_per_task", type=int, metavar="N", help="CPUs per task")
    g.add_argument("--slurm.mem-gb", dest="slurm_mem_gb", type=int, metavar="GB", help="memory per node in GB")
    g.add_argument("--slurm.account", dest="slurm_account", metavar="A", help="account to charge (sbatch --account)")
    g.add_argument("--slurm.qos", dest="slurm_qos", metavar="Q", help="quality of service (sbatch --qos)")
    g.add_argument(
        "--slurm.constraint", dest="slurm_constraint", metavar="C", help="node features (sbatch --constraint)"
    )
    g.add_argument(
        "--slurm.job-name",
        dest="slurm_job_name",
        default="robustfair",
        metavar="NAME",
        help="job name prefix; each job is NAME-<preset>-seed<k> (default robustfair)",
    )
    g.add_argument(
        "--slurm.folder",
        dest="slurm_folder",
        metavar="DIR",
        help="submitit's scripts and logs, one folder per job id (default OUT/slurm)",
    )
    g.add_argument(
        "--slurm.setup",
        dest="slurm_setup",
        action="append",
        default=[],
        metavar="LINE",
        help="a shell line run before each job, e.g. 'module load cuda' (repeatable)",
    )
    g.add_argument(
        "--slurm.extra",
        dest="slurm_extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, without its dashes, e.g. gres=gpu:a100:1 (repeatable)",
    )


def parse_seeds(text: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0,2,5' -> [0, 2, 5]; '0,' -> [0] (one seed is a list of one). Raises
    ConfigError otherwise."""
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ConfigError(f"--seeds: {text!r} is neither a count nor a comma list of integers") from None
    if not seeds and text.strip() == "0":
        raise ConfigError("--seeds: '0' is a count of no seeds; for seed 0 alone give a list: --seeds 0,")
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
    launcher = getattr(args, "launcher", "local")
    if launcher != "local" and not args.table_only:
        submitted, failed = launch(args, presets, seeds, out, overrides)
        if not submitted:
            return 2 if failed else 0
    elif not args.table_only:
        _no_slurm_options(args)
        outcome = run_sweep(
            presets,
            seeds,
            out,
            overrides,
            quiet=not args.verbose,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        failed = outcome.failed
        others = f", {len(outcome.elsewhere)} by other workers" if outcome.elsewhere else ""
        print(
            f"sweep {out}: {len(outcome.trained)} trained, {len(outcome.resumed)} resumed{others}, "
            f"{len(outcome.skipped)} skipped, {len(failed)} failed",
            file=sys.stderr,
        )
    text = sweep_table(
        presets,
        seeds,
        out,
        fmt=args.fmt,
        which=args.which,
        attack=args.attack,
        baseline=preset_label(args.baseline) if args.baseline else None,
    )
    print(text)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(text + "\n")
        print(f"wrote {args.table}", file=sys.stderr)
    for run_dir, message in failed.items():
        print(f"robustfair: failed run {run_dir}: {message}", file=sys.stderr)
    if failed:
        raise ConfigError(
            f"sweep: {len(failed)} run{'s' if len(failed) > 1 else ''} failed (listed above); "
            f"fix the cause and run the same command again to finish them"
        )
    return 0


def slurm_options(args: argparse.Namespace):
    """The --slurm.* options as an engine.slurm.SlurmOptions (ConfigError for bad values)."""
    from robustfair.engine.slurm import SlurmOptions, parse_extra

    return SlurmOptions(
        partition=args.slurm_partition,
        gpus_per_node=args.slurm_gpus_per_node,
        timeout_min=args.slurm_timeout,
        nodes=args.slurm_nodes,
        cpus_per_task=args.slurm_cpus_per_task,
        mem_gb=args.slurm_mem_gb,
        account=args.slurm_account,
        qos=args.slurm_qos,
        constraint=args.slurm_constraint,
        job_name=args.slurm_job_name,
        folder=args.slurm_folder,
        setup=tuple(args.slurm_setup),
        extra=parse_extra(args.slurm_extra),
    )


def _no_slurm_options(args: argparse.Namespace) -> None:
    given = [
        name
        for name, default in (
            ("partition", None),
            ("gpus_per_node", 1),
            ("timeout", 240),
            ("nodes", 1),
            ("cpus_per_task", None),
            ("mem_gb", None),
            ("account", None),
            ("qos", None),
            ("constraint", None),
            ("job_name", "robustfair"),
            ("folder", None),
            ("setup", []),
            ("extra", []),
        )
        if getattr(args, f"slurm_{name}", default) != default
    ]
    if given or getattr(args, "wait", False):
        flag = "--slurm." + given[0].replace("_", "-") if given else "--wait"
        raise ConfigError(f"{flag}: only with --launcher slurm (or submitit-local); the local launcher trains here")


def launch(
    args: argparse.Namespace, presets: list[str], seeds: list[int], out: Path, overrides: list[str]
) -> tuple[bool, dict]:
    """Submit the grid's jobs; returns (waited for them, failures). Without waiting, prints
    the job ids and how to get the tables later."""
    from robustfair.engine.slurm import launch_sweep, require_submitit

    require_submitit(args.launcher)
    options = slurm_options(args)
    cluster = "slurm" if args.launcher == "slurm" else "local"
    wait = args.wait or cluster == "local"  # local jobs are children of this process
    outcome = launch_sweep(
        presets,
        seeds,
        out,
        overrides,
        options=options,
        cluster=cluster,
        wait=wait,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        threads=args.threads,
    )
    folder = options.folder or str(Path(out).resolve() / "slurm")
    if wait:
        print(
            f"sweep {out}: {len(outcome.finished)} jobs finished, {len(outcome.skipped)} skipped, "
            f"{len(outcome.failed)} failed (job logs in {folder})",
            file=sys.stderr,
        )
        return True, outcome.failed
    ids = " ".join(str(job.job_id) for job in outcome.jobs.values())
    print(
        f"sweep {out}: submitted {len(outcome.jobs)} jobs ({ids or 'none'}), {len(outcome.skipped)} finished runs "
        f"skipped; job logs in {folder}",
        file=sys.stderr,
    )
    table_command = ["robustfair", "sweep", *args.presets, "--seeds", args.seeds, "--out", str(out), "--table-only"]
    print("when they have finished: " + " ".join(shlex.quote(part) for part in table_command), file=sys.stderr)
    for run_dir, message in outcome.failed.items():
        print(f"robustfair: failed run {run_dir}: {message}", file=sys.stderr)
    return False, outcome.failed
