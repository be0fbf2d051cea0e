"""A grid of presets x seeds trained into one directory tree, and its comparison tables.

Layout: the run of preset P with seed k lives in `<out>/<P>/seed<k>` and is trained with the
override `seed=k` on top of the sweep's own overrides. A run whose `results.json` exists is
finished and skipped; a run directory with a `config.yaml` but no results (an interrupted
run) is resumed from its last checkpoint (from epoch 1 if it stopped before the first one).

Hot starts (FRL, FAAL): a preset whose raw config has `init_from` names its *source
preset* by the last path component of that value, e.g. `init_from: runs/demo/digits_pgd_at`
names `digits_pgd_at`. When the source preset is also in the sweep, the run with seed k
starts from `<out>/<source>/seed<k>` (the same seed's run), and sources are trained before
the runs that chain onto them. When the source is not in the sweep, `init_from` is left as
the preset gives it. An explicit `init_from=...` override is never rewritten.

The tables reuse `robustfair.report.compare`: one row per preset (in the given order) with
mean ± sample std over its finished seeds, then per-class clean/robust errors, then the
training and wall time per preset (wall: meta.json to results.json modification times).
A preset whose seeds have not all finished shows the seeds that have (the "runs" column).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from robustfair.errors import ConfigError, RobustfairError


@dataclass(frozen=True)
class SweepRun:
    """One (preset, seed) cell of the grid: where it goes and the overrides it is trained with."""

    preset: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]
    source: str | None = None  # the preset this run hot-starts from, when it is in the sweep

    @property
    def finished(self) -> bool:
        return (self.run_dir / "results.json").is_file()

    @property
    def started(self) -> bool:
        return (self.run_dir / "config.yaml").is_file()


@dataclass
class SweepOutcome:
    """What `run_sweep` did: run directories by state, and the failures with their messages."""

    trained: list[Path] = field(default_factory=list)
    resumed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


def run_dir_for(out: str | Path, preset: str, seed: int) -> Path:
    """`<out>/<preset>/seed<seed>`; `preset` may be a YAML path, whose stem names the directory."""
    return Path(out) / preset_label(preset) / f"seed{seed}"


def preset_label(preset: str) -> str:
    """The directory and table name of a preset: the name itself, or a YAML file's stem."""
    path = Path(preset)
    return path.stem if path.suffix in (".yaml", ".yml") else preset


def hot_start_source(preset: str) -> str | None:
    """The preset named by the last path component of the preset's `init_from`, if any."""
    from robustfair.engine.config import load_raw_config

    init_from = load_raw_config(preset).get("init_from")
    if not init_from:
        return None
    return Path(str(init_from).rstrip("/")).name or None


def plan_sweep(presets: Sequence[str], seeds: Sequence[int], out: str | Path,
               overrides: Sequence[str] = ()) -> list[SweepRun]:
    """Every (preset, seed) run in training order: sources of hot starts first, else as given.

    Raises ConfigError for an empty grid, a repeated preset, a negative seed, or an override
    without '='. Each run's config is loaded (validated) here, so a bad preset or override
    fails before any training starts.
    """
    from robustfair.engine.config import load_config

    if not presets:
        raise ConfigError("sweep: give at least one preset")
    if not seeds:
        raise ConfigError("sweep: --seeds must be at least 1")
    labels = [preset_label(p) for p in presets]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"sweep: preset given twice: {', '.join(repeated)}")
    for seed in seeds:
        if seed < 0:
            raise ConfigError(f"sweep: seeds must be >= 0, got {seed}")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (for example train.epochs=5)")
    explicit_init = any(item.split("=", 1)[0].strip() == "init_from" for item in overrides)

    sources: dict[str, str | None] = {}
    for preset, label in zip(presets, labels):
        source = None if explicit_init else hot_start_source(preset)
        sources[label] = source if source in labels and source != label else None

    preset_by_label = dict(zip(labels, presets))
    runs = []
    for label in _source_first(labels, sources):
        preset, source = preset_by_label[label], sources[label]
        for seed in seeds:
            run_overrides = [*overrides, f"seed={seed}"]
            if source is not None:
                run_overrides.append(f"init_from={run_dir_for(out, source, seed)}")
            load_config(preset, run_overrides)  # validate the whole grid up front
            runs.append(SweepRun(label, seed, run_dir_for(out, label, seed), tuple(run_overrides), source))
    return runs


def _source_first(labels: Sequence[str], sources: dict[str, str | None]) -> list[str]:
    """`labels` reordered so that a hot-start source precedes the presets chaining onto it."""
    order: list[str] = []

    def visit(label: str, chain: tuple[str, ...]) -> None:
        if label in order:
            return
        if label in chain:
            raise ConfigError(f"sweep: hot starts form a cycle: {' -> '.join(chain + (label,))}")
        source = sources.get(label)
        if source is not None:
            visit(source, chain + (label,))
        order.append(label)

    for label in labels:
        visit(label, ())
    return order


def run_sweep(presets: Sequence[str], seeds: Sequence[int], out: str | Path, overrides: Sequence[str] = (),
              *, quiet: bool = True, log: Callable[[str], None] = print) -> SweepOutcome:
    """Train every unfinished run of the grid (see the module docstring); returns what happened.

    A run that fails (any RobustfairError) is recorded in `failed` and the sweep goes on;
    runs that hot-start from a failed or missing source run are recorded as failed too.
    """
    from robustfair.engine.config import load_config
    from robustfair.engine.trainer import train

    from robustfair.engine.progress import printing_around_bars, progress_iter

    preset_by_label = {preset_label(p): p for p in presets}
    outcome = SweepOutcome()
    plan = plan_sweep(presets, seeds, out, overrides)
    log = printing_around_bars(log)  # a bar over the runs (on a terminal); lines print above it
    for index, run in enumerate(progress_iter(plan, "sweep", unit="run"), 1):
        where = f"[{index}/{len(plan)}] {run.preset} seed {run.seed}"
        if run.finished:
            outcome.skipped.append(run.run_dir)
            log(f"{where}: finished, skipped ({run.run_dir})")
            continue
        if run.source is not None and not run_dir_for(out, run.source, run.seed).joinpath("results.json").is_file():
            outcome.failed[run.run_dir] = f"its hot-start source {run.source} seed {run.seed} did not finish"
            log(f"{where}: not run, {outcome.failed[run.run_dir]}")
            continue
        resume = run.started
        log(f"{where}: {'resuming' if resume else 'training'} -> {run.run_dir}")
        start = time.perf_counter()
        try:
            config = load_config(preset_by_label[run.preset], run.overrides)
            train(config, run.run_dir, resume=resume, quiet=quiet)
        except RobustfairError as err:
            outcome.failed[run.run_dir] = str(err)
            log(f"{where}: failed: {err}")
            continue
        (outcome.resumed if resume else outcome.trained).append(run.run_dir)
        log(f"{where}: done in {time.perf_counter() - start:.0f} s")
    return outcome


def sweep_groups(presets: Sequence[str], seeds: Sequence[int], out: str | Path):
    """One `RunGroup` per preset (given order) holding its finished seeds; presets without any
    finished run are left out."""
    from robustfair.report.compare import RunGroup
    from robustfair.report.runs import load_run

    groups = []
    for preset in presets:
        label = preset_label(preset)
        runs = [load_run(run_dir_for(out, label, seed)) for seed in seeds
                if run_dir_for(out, label, seed).joinpath("results.json").is_file()]
        if runs:
            groups.append(RunGroup(label, runs))
    return groups


def run_wall_time(run_dir: str | Path) -> float | None:
    """Seconds from the run's (last) start, meta.json's write, to its results.json; None if unknown."""
    try:
        return (Path(run_dir) / "results.json").stat().st_mtime - (Path(run_dir) / "meta.json").stat().st_mtime
    except OSError:
        return None


def sweep_window(run_dirs: Sequence[str | Path]) -> tuple[float, float] | None:
    """(first start, last finish) as POSIX times over `run_dirs`: the earliest meta.json write
    and the latest results.json write; None when no run has both files."""
    starts, ends = [], []
    for run_dir in run_dirs:
        try:
            start = (Path(run_dir) / "meta.json").stat().st_mtime
            end = (Path(run_dir) / "results.json").stat().st_mtime
        except OSError:
            continue
        starts.append(start)
        ends.append(end)
    return (min(starts), max(ends)) if starts else None


def window_text(window: tuple[float, float] | None, summed_s: float) -> str:
    """One line: the sweep's wall-clock window in UTC and its length, next to the summed run time."""
    if window is None:
        return ""
    start, end = (datetime.fromtimestamp(t, tz=timezone.utc) for t in window)
    return (f"wall clock of the whole grid: {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC "
            f"(first run's meta.json to last results.json): {(window[1] - window[0]) / 60:.1f} min; "
            f"summed wall time of its runs: {summed_s / 60:.1f} min")


def sweep_table(presets: Sequence[str], seeds: Sequence[int], out: str | Path, *, fmt: str = "markdown",
                which: str = "last", attack: str | None = None) -> str:
    """The sweep's tables: summary (mean ± std over seeds), per-class errors, time per preset.

    Raises ConfigError when no run of the grid has finished.
    """
    from robustfair.report.compare import comparison_text
    from robustfair.report.tables import Number, format_table, mean_std

    groups = sweep_groups(presets, seeds, out)
    if not groups:
        raise ConfigError(f"sweep: no finished run under {str(out)!r} for these presets and seeds")
    text = comparison_text(groups, fmt=fmt, which=which, attack=attack)
    header = ["run", "seeds", "train time per run (s)", "wall time per run (s)", "total wall time (s)"]
    rows = []
    for g in groups:
        train_times = [r.results.get("run", {}).get("train_time_s") for r in g.runs]
        walls = [run_wall_time(r.path) for r in g.runs]
        rows.append([g.label, ", ".join(str(s) for s in g.seeds),
                     mean_std([t for t in train_times if t is not None], digits=0),
                     mean_std([w for w in walls if w is not None], digits=0),
                     Number(sum(w for w in walls if w is not None), None, len(g.runs), digits=0)])
    caption = ("time: training (results.json run.train_time_s) and wall clock from the run's start to its "
               "results.json (meta.json to results.json modification times: data loading, training and "
               "the final evaluation; for a resumed run, its last start)") if fmt != "csv" else None
    table = text + "\n\n" + format_table(header, rows, fmt, caption=caption)
    if fmt == "csv":
        return table
    run_dirs = [r.path for g in groups for r in g.runs]
    summed = sum(w for w in (run_wall_time(d) for d in run_dirs) if w is not None)
    line = window_text(sweep_window(run_dirs), summed)
    return table + ("\n\n" + line if line else "")


__all__ = ["SweepRun", "SweepOutcome", "plan_sweep", "run_sweep", "sweep_groups", "sweep_table",
           "run_dir_for", "preset_label", "hot_start_source", "run_wall_time", "sweep_window"]
