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

Cooperative workers: several `robustfair sweep` processes may run the same grid into the
same `<out>`, on one machine or on several sharing a file system, to spread it over the
machines at hand without a scheduler. A worker claims a run by taking its writer lock
(`robustfair/run_lock.py`) and holds it while training, so each run is trained by exactly
one worker; a run another worker holds is passed over and revisited, and a hot start
whose source run is still being trained waits for it. A worker that dies releases its
lock with it (the OS drops the lock), and the next worker to reach that run resumes it
from its last checkpoint. Every worker returns once the whole grid is finished (or
failed), so each one prints the same tables. A run that fails is retried by each worker
that reaches it (each records the failure); a worker waits as long as another holds a run.

The tables reuse `robustfair.report.compare`: one row per preset (in the given order) with
mean ± sample std over its finished seeds, then per-class clean/robust errors, then the
training and wall time per preset (wall: meta.json to results.json modification times).
A preset whose seeds have not all finished shows the seeds that have (the "runs" column).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from robustfair import run_lock
from robustfair.errors import ConfigError, RobustfairError, RunLockedError

POLL_S = 2.0  # how long a worker sleeps when only runs held by other workers remain


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
    elsewhere: list[Path] = field(default_factory=list)  # finished by another worker while this one ran
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


def plan_sweep(
    presets: Sequence[str], seeds: Sequence[int], out: str | Path, overrides: Sequence[str] = ()
) -> list[SweepRun]:
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


def run_sweep(
    presets: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    overrides: Sequence[str] = (),
    *,
    quiet: bool = True,
    log: Callable[[str], None] = print,
    poll_s: float = POLL_S,
) -> SweepOutcome:
    """Train every unfinished run of the grid (see the module docstring); returns what happened.

    Cooperative: other workers may train the same grid at the same time. A run another
    worker holds is passed over and revisited, a hot start whose source run is still being
    trained waits for it, and the call returns once every run of the grid is finished or
    failed (sleeping `poll_s` seconds between passes when only other workers' runs remain).
    A run that fails (any RobustfairError) is recorded in `failed` and the sweep goes on;
    runs that hot-start from a failed source run are recorded as failed too.
    """
    plan = plan_sweep(presets, seeds, out, overrides)
    from robustfair.engine.progress import printing_around_bars, progress_bar

    log = printing_around_bars(log)  # a bar over the runs (on a terminal); lines print above it
    worker = _Worker(plan, {preset_label(p): p for p in presets}, out, quiet, log)
    pending = list(enumerate(plan, 1))
    with progress_bar(len(plan), "sweep", unit="run") as bar:
        while pending:
            before = len(pending)
            pending = [(index, run) for index, run in pending if not worker.attempt(index, run)]
            bar.update(before - len(pending))
            if pending and len(pending) == before:  # only runs other workers hold: give them time
                time.sleep(poll_s)
    return worker.outcome


class _Worker:
    """One sweep process's view of the grid: what it has done and what it is waiting for."""

    def __init__(
        self,
        plan: list[SweepRun],
        preset_by_label: dict[str, str],
        out: str | Path,
        quiet: bool,
        log: Callable[[str], None],
    ):
        self.total = len(plan)
        self.preset_by_label = preset_by_label
        self.out = out
        self.quiet = quiet
        self.log = log
        self.outcome = SweepOutcome()
        self.deferred: set[Path] = set()  # runs passed over at least once (another worker had them)
        self.said: dict[Path, str] = {}  # the last waiting note logged per run, so each is logged once

    def attempt(self, index: int, run: SweepRun) -> bool:
        """Settle `run` (trained, resumed, skipped, failed) and return True, or False to come back later."""
        where = f"[{index}/{self.total}] {run.preset} seed {run.seed}"
        if run.finished:
            return self._finished_elsewhere(run, where)
        waiting = self._source_not_ready(run, where)
        if waiting is not None:
            return waiting
        try:
            claim = run_lock.acquire(run.run_dir, "sweep worker")
        except RunLockedError as err:
            self._wait(run, where, f"being trained by {err.holder.describe()}; coming back to it")
            return False
        except RobustfairError as err:
            return self._fail(run, where, str(err))
        with claim:
            if run.finished:  # finished by another worker between the check above and the claim
                return self._finished_elsewhere(run, where)
            return self._train(run, where)

    def _finished_elsewhere(self, run: SweepRun, where: str) -> bool:
        if run.run_dir in self.deferred:
            self.outcome.elsewhere.append(run.run_dir)
            self.log(f"{where}: finished by another worker ({run.run_dir})")
        else:
            self.outcome.skipped.append(run.run_dir)
            self.log(f"{where}: finished, skipped ({run.run_dir})")
        return True

    def _source_not_ready(self, run: SweepRun, where: str) -> bool | None:
        """None when `run` may start; else False (wait for its hot-start source) or True (failed)."""
        if run.source is None:
            return None
        source = run_dir_for(self.out, run.source, run.seed)
        if (source / "results.json").is_file():
            return None
        if source in self.outcome.failed:
            return self._fail(run, where, f"its hot-start source {run.source} seed {run.seed} did not finish")
        if source not in self.deferred and run_lock.writer_of(source) is None:
            return self._fail(run, where, f"its hot-start source {run.source} seed {run.seed} did not finish")
        self._wait(run, where, f"waiting for its hot-start source {run.source} seed {run.seed}")
        return False

    def _wait(self, run: SweepRun, where: str, note: str) -> None:
        self.deferred.add(run.run_dir)
        if self.said.get(run.run_dir) != note:
            self.said[run.run_dir] = note
            self.log(f"{where}: {note}")

    def _fail(self, run: SweepRun, where: str, message: str) -> bool:
        self.outcome.failed[run.run_dir] = message
        self.log(f"{where}: {'not run' if 'hot-start source' in message else 'failed'}: {message}")
        return True

    def _train(self, run: SweepRun, where: str) -> bool:
        from robustfair.engine.config import load_config
        from robustfair.engine.trainer import train

        resume = run.started
        self.log(f"{where}: {'resuming' if resume else 'training'} -> {run.run_dir}")
        start = time.perf_counter()
        try:
            config = load_config(self.preset_by_label[run.preset], run.overrides)
            train(config, run.run_dir, resume=resume, quiet=self.quiet)
        except RobustfairError as err:
            return self._fail(run, where, str(err))
        (self.outcome.resumed if resume else self.outcome.trained).append(run.run_dir)
        self.log(f"{where}: done in {time.perf_counter() - start:.0f} s")
        return True


def sweep_groups(presets: Sequence[str], seeds: Sequence[int], out: str | Path):
    """One `RunGroup` per preset (given order) holding its finished seeds; presets without any
    finished run are left out."""
    from robustfair.report.compare import RunGroup
    from robustfair.report.runs import load_run

    groups = []
    for preset in presets:
        label = preset_label(preset)
        runs = [
            load_run(run_dir_for(out, label, seed))
            for seed in seeds
            if run_dir_for(out, label, seed).joinpath("results.json").is_file()
        ]
        if runs:
            groups.append(RunGroup(label, runs))
    return groups


def unfinished_text(presets: Sequence[str], seeds: Sequence[int], groups) -> str:
    """One line naming the grid's runs that `sweep_groups` found unfinished (left out of the
    tables); '' when every run has finished."""
    finished = {g.label: set(g.seeds) for g in groups}
    missing = []
    for preset in presets:
        label = preset_label(preset)
        absent = [s for s in seeds if s not in finished.get(label, ())]
        if absent:
            missing.append(f"{label} seed{'s' if len(absent) > 1 else ''} {', '.join(str(s) for s in absent)}")
    return f"not finished, left out of the tables: {'; '.join(missing)}" if missing else ""


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
    return (
        f"wall clock of the whole grid: {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC "
        f"(first run's meta.json to last results.json): {(window[1] - window[0]) / 60:.1f} min; "
        f"summed wall time of its runs: {summed_s / 60:.1f} min"
    )


def sweep_table(
    presets: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    fmt: str = "markdown",
    which: str = "last",
    attack: str | None = None,
    baseline: str | None = None,
) -> str:
    """The sweep's tables: summary (mean ± std over seeds), per-class errors, time per preset, and
    with `baseline` (a preset label) the paired differences per seed against it.

    Raises ConfigError when no run of the grid has finished.
    """
    from robustfair.report.compare import comparison_text
    from robustfair.report.tables import Number, format_table, mean_std

    groups = sweep_groups(presets, seeds, out)
    if not groups:
        raise ConfigError(f"sweep: no finished run under {str(out)!r} for these presets and seeds")
    text = comparison_text(groups, fmt=fmt, which=which, attack=attack)
    if baseline is not None:
        from robustfair.report.paired import paired_text

        text += "\n\n" + paired_text(groups, baseline, fmt=fmt, which=which, attack=attack)
    header = ["run", "seeds", "train time per run (s)", "wall time per run (s)", "total wall time (s)"]
    rows = []
    for g in groups:
        train_times = [r.results.get("run", {}).get("train_time_s") for r in g.runs]
        walls = [run_wall_time(r.path) for r in g.runs]
        rows.append(
            [
                g.label,
                ", ".join(str(s) for s in g.seeds),
                mean_std([t for t in train_times if t is not None], digits=0),
                mean_std([w for w in walls if w is not None], digits=0),
                Number(sum(w for w in walls if w is not None), None, len(g.runs), digits=0),
            ]
        )
    caption = (
        (
            "time: training (results.json run.train_time_s) and wall clock from the run's start to its "
            "results.json (meta.json to results.json modification times: data loading, training and "
            "the final evaluation; for a resumed run, its last start)"
        )
        if fmt != "csv"
        else None
    )
    table = text + "\n\n" + format_table(header, rows, fmt, caption=caption)
    if fmt == "csv":
        return table
    run_dirs = [r.path for g in groups for r in g.runs]
    summed = sum(w for w in (run_wall_time(d) for d in run_dirs) if w is not None)
    lines = [window_text(sweep_window(run_dirs), summed), unfinished_text(presets, seeds, groups)]
    return "\n\n".join([table, *(line for line in lines if line)])


__all__ = [
    "SweepRun",
    "SweepOutcome",
    "plan_sweep",
    "run_sweep",
    "sweep_groups",
    "sweep_table",
    "run_dir_for",
    "preset_label",
    "hot_start_source",
    "run_wall_time",
    "sweep_window",
]
